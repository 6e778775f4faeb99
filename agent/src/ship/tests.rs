//! The uplink against an in-process collector on 127.0.0.1:0.
//!
//! The fake collector keeps what the real one keeps per host (stream id, last sequence number,
//! the current set as received), applies the protocol's rules (contiguous batches, snapshots
//! replace the set) and records every message, so each test checks what went over the wire
//! and what a collector would have stored. The daemon side is a small loop doing what the
//! Session does with a [`Link`]: append events, answer snapshot requests, save the ledger and
//! then release acknowledged records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch_proto::v1::ingest_server::{Ingest, IngestServer};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

use driftwatch_proto::v1::{self, agent_message, collector_message};
use tokio_stream::wrappers::ReceiverStream;

use super::stream::Backoff;
use super::*;
use crate::config::DEFAULT_HEARTBEAT;
use crate::errors::error_chain;
use crate::ledger::Subject;
use crate::spool::SpoolConfig;
use crate::spool::shared::{lock, release};
use crate::telemetry::Metrics;

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The fake collector.

#[derive(Debug, Default)]
pub(crate) struct Store {
    /// What a collector persists per host.
    pub(crate) stream_id: String,
    pub(crate) last_seq: u64,
    pub(crate) set: BTreeMap<String, v1::DriftItem>,
    /// Behaviour.
    pub(crate) no_acks: bool,
    /// Welcome with this last_seq and no snapshot, whatever the state (a collector that got
    /// resume wrong), to exercise the agent's own gap detection.
    pub(crate) lie_in_welcome: Option<u64>,
    /// Ack this instead of what was stored.
    pub(crate) ack_offset: u64,
    /// Observations.
    pub(crate) connections: usize,
    pub(crate) hellos: Vec<v1::Hello>,
    pub(crate) welcomes: Vec<v1::Welcome>,
    pub(crate) batches: Vec<Vec<u64>>,
    pub(crate) heartbeats: Vec<v1::Heartbeat>,
    /// (seq, items, chunks) of each snapshot applied.
    pub(crate) snapshots: Vec<(u64, usize, usize)>,
    /// Chunk sizes of the snapshot being received.
    pub(crate) chunk_sizes: Vec<usize>,
    /// Protocol violations seen (the stream was refused).
    pub(crate) violations: Vec<String>,
    /// The current connection: inject messages, or end it.
    pub(crate) current: Option<mpsc::Sender<Result<v1::CollectorMessage, Status>>>,
    pub(crate) kill: Option<CancellationToken>,
}

impl Store {
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut digests: Vec<[u8; 32]> = self
            .set
            .values()
            .map(|i| Sha256::digest(prost::Message::encode_to_vec(i)).into())
            .collect();
        digests.sort_unstable();
        let mut h = Sha256::new();
        for d in &digests {
            h.update(d);
        }
        h.finalize().into()
    }

    pub(crate) fn all_batched(&self) -> Vec<u64> {
        self.batches.iter().flatten().copied().collect()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Fake {
    store: Arc<Mutex<Store>>,
    changed: Arc<Notify>,
}

/// The subject an item names (what the collector keys the current set by).
fn subject_of(item: &v1::DriftItem) -> String {
    match item.item.as_ref().expect("an item") {
        v1::drift_item::Item::File(f) => format!("path:{}", f.path),
        v1::drift_item::Item::Package(p) => format!("package:{}:{}", p.name, p.arch),
    }
}

impl Fake {
    pub(crate) fn with(&self, f: impl FnOnce(&mut Store)) {
        f(&mut self.store.lock().unwrap());
        self.changed.notify_waiters();
    }

    pub(crate) fn get<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.lock().unwrap())
    }

    /// Waits until `cond` holds (re-checked on every message), or fails with the state.
    pub(crate) async fn wait(&self, what: &str, cond: impl Fn(&Store) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if cond(&self.store.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {what}; collector state: {:#?}",
                    self.store.lock().unwrap()
                );
            }
        }
    }

    /// Ends the current stream with UNAVAILABLE, as a collector restart would.
    pub(crate) fn drop_stream(&self) {
        self.with(|s| {
            if let Some(kill) = s.kill.take() {
                kill.cancel();
            }
            s.current = None;
        });
    }

    fn send(&self, body: collector_message::Body) {
        let tx = self.get(|s| s.current.clone()).expect("a connection");
        tx.try_send(Ok(v1::CollectorMessage { body: Some(body) }))
            .unwrap();
    }

    pub(crate) async fn serve(&self) -> SocketAddr {
        self.serve_at("127.0.0.1:0".parse().unwrap()).await
    }

    pub(crate) async fn serve_at(&self, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = IngestServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    /// One message; `Err` refuses the stream, as the collector does.
    fn handle(
        &self,
        m: v1::AgentMessage,
        reply: &mpsc::Sender<Result<v1::CollectorMessage, Status>>,
    ) -> Result<(), String> {
        let mut s = self.store.lock().unwrap();
        let answer = |body| {
            let _ = reply.try_send(Ok(v1::CollectorMessage { body: Some(body) }));
        };
        match m.body {
            Some(agent_message::Body::Hello(h)) => {
                let fresh = s.stream_id.is_empty() && s.last_seq == 0;
                let (last, reason) = if let Some(lie) = s.lie_in_welcome {
                    (lie, None)
                } else if !fresh && s.stream_id != h.stream_id {
                    (0, Some("new stream"))
                } else if h.last_seq < s.last_seq {
                    (s.last_seq, Some("collector ahead"))
                } else if h.last_seq > s.last_seq
                    && (h.oldest_seq == 0 || h.oldest_seq > s.last_seq + 1)
                {
                    (s.last_seq, Some("records gone"))
                } else {
                    (s.last_seq, None)
                };
                if reason.is_some() {
                    // The stored sequence number counts the new stream from its snapshot on.
                    s.last_seq = if s.stream_id == h.stream_id {
                        s.last_seq
                    } else {
                        0
                    };
                }
                s.stream_id = h.stream_id.clone();
                let welcome = v1::Welcome {
                    last_seq: last,
                    snapshot_required: reason.is_some(),
                    reason: reason.unwrap_or_default().into(),
                    collector_version: "fake".into(),
                    heartbeat_seconds: 0,
                };
                s.hellos.push(h);
                s.welcomes.push(welcome.clone());
                answer(collector_message::Body::Welcome(welcome));
            }
            Some(agent_message::Body::Batch(b)) => {
                let seqs: Vec<u64> = b.events.iter().map(|e| e.seq).collect();
                s.batches.push(seqs);
                for e in b.events {
                    if e.seq <= s.last_seq {
                        continue; // a replay
                    }
                    if e.seq != s.last_seq + 1 {
                        let v = format!("gap: event {} after {}", e.seq, s.last_seq);
                        s.violations.push(v.clone());
                        return Err(v);
                    }
                    let item = e.item.expect("typed item");
                    let subject = subject_of(&item);
                    if e.transition == v1::Transition::Resolved as i32 {
                        s.set.remove(&subject);
                    } else {
                        s.set.insert(subject, item);
                    }
                    s.last_seq = e.seq;
                }
                if !s.no_acks {
                    answer(collector_message::Body::Ack(v1::Ack {
                        seq: s.last_seq + s.ack_offset,
                    }));
                }
            }
            Some(agent_message::Body::Heartbeat(h)) => s.heartbeats.push(h),
            Some(agent_message::Body::Snapshot(c)) => {
                s.chunk_sizes.push(c.items.len());
                if s.chunk_sizes.len() == 1 {
                    s.set.clear();
                }
                for i in c.items {
                    s.set.insert(subject_of(&i), i);
                }
                if c.last {
                    let items = s.set.len();
                    let chunks = s.chunk_sizes.len();
                    s.chunk_sizes.clear();
                    s.snapshots.push((c.seq, items, chunks));
                    s.last_seq = c.seq;
                    if !s.no_acks {
                        answer(collector_message::Body::Ack(v1::Ack { seq: c.seq }));
                    }
                }
            }
            None => return Err("empty message".into()),
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Ingest for Fake {
    type StreamStream = ReceiverStream<Result<v1::CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let kill = CancellationToken::new();
        self.with(|s| {
            s.connections += 1;
            s.current = Some(tx.clone());
            s.kill = Some(kill.clone());
        });
        let fake = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = kill.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("collector restarting"))).await;
                        break;
                    }
                    m = inbound.message() => match m {
                        Ok(Some(m)) => {
                            let result = fake.handle(m, &tx);
                            fake.changed.notify_waiters();
                            if let Err(v) = result {
                                let _ = tx.send(Err(Status::failed_precondition(v))).await;
                                break;
                            }
                        }
                        _ => break,
                    },
                }
            }
            fake.with(|s| {
                if s.current.as_ref().is_some_and(|c| c.same_channel(&tx)) {
                    s.current = None;
                }
            });
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon side: what the Session does with a Link.

enum Cmd {
    /// Sets a path's drift (its mode) or resolves it (`None`); emits the events.
    Set(Vec<(String, Option<String>)>),
    /// Replaces every unacked record with nothing, as a full spool does with a collector away.
    Compact,
    Inspect(oneshot::Sender<Inspect>),
    Stop(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Inspect {
    seq: u64,
    digest: [u8; 32],
    items: usize,
    spool_acked: u64,
    spool_unacked: u64,
    spool_last: u64,
}

struct Agent {
    cmds: mpsc::Sender<Cmd>,
    shared: Shared,
    stream_id: String,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

fn drift(path: &str, mode: &str) -> DriftItem {
    crate::ledger::tests::item(path, u32::from_str_radix(mode, 8).unwrap())
}

use crate::ledger::Event;

/// Appends the events of these changes to the spool (as the Session's emit does).
fn apply(ledger: &mut Ledger, spool: &SharedSpool, changes: Vec<(String, Option<String>)>) {
    let mut events: Vec<Event> = Vec::new();
    for (path, mode) in changes {
        let item = mode.map(|m| drift(&path, &m));
        events.extend(ledger.update(Subject::Path(path.into()), item, "2026-01-01T00:00:00.000Z"));
    }
    let encoded: Vec<(u64, Vec<u8>)> = events
        .iter()
        .map(|e| (e.seq, crate::spool::record::encode(e)))
        .collect();
    let records: Vec<(u64, &[u8])> = encoded.iter().map(|(s, b)| (*s, b.as_slice())).collect();
    lock(spool).append(&records).unwrap();
}

struct AgentOptions {
    url: String,
    heartbeat: Duration,
    /// Changes made before the uplink starts (already in the spool).
    before: Vec<(String, Option<String>)>,
    compact_before_start: bool,
    state_dir: Option<tempfile::TempDir>,
    stream_id: Option<String>,
}

fn options(addr: SocketAddr) -> AgentOptions {
    AgentOptions {
        url: format!("http://{addr}"),
        heartbeat: DEFAULT_HEARTBEAT,
        before: Vec::new(),
        compact_before_start: false,
        state_dir: None,
        stream_id: None,
    }
}

fn changes(paths: &[&str], mode: Option<&str>) -> Vec<(String, Option<String>)> {
    paths
        .iter()
        .map(|p| ((*p).to_owned(), mode.map(str::to_owned)))
        .collect()
}

impl Agent {
    async fn start(o: AgentOptions) -> Agent {
        let dir = o.state_dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/hostname"), "web-1\n").unwrap();
        let state = dir.path().join("state");
        let (spool, _) = Spool::open(SpoolConfig::new(state.join("spool"))).unwrap();
        let spool: SharedSpool = Arc::new(Mutex::new(spool));
        let ledger_path = state.join("ledger.pb");
        let mut ledger = Ledger::load(&ledger_path).unwrap().unwrap_or_default();
        ledger.advance_seq_to(lock(&spool).last_seq().unwrap_or(0));
        apply(&mut ledger, &spool, o.before);
        if o.compact_before_start {
            ledger.save(&ledger_path).unwrap();
            lock(&spool).compact(&[]).unwrap();
        }
        let stream_id = o.stream_id.unwrap_or_else(|| new_stream_id().unwrap());
        let shared = Shared {
            metrics: Arc::new(Metrics::default()),
            status: Arc::default(),
        };
        let settings = Settings {
            collector: CollectorConfig {
                urls: vec![o.url],
                ca: None,
                cert: None,
                key: None,
                heartbeat: o.heartbeat,
                identity_file: None,
                metadata_service: false,
                enroll: None,
            },
            identity: identity::Sources {
                root: root.clone(),
                identity_file: None,
                metadata_service: None,
            },
            stream_id: stream_id.clone(),
            baseline_id: "b".repeat(64),
            image_name: "web".into(),
            image_version: "2026.1".into(),
        };
        let head = Head::of(&ledger, &lock(&spool));
        let mut link = Link::start(
            settings,
            spool.clone(),
            head,
            shared.clone(),
            CancellationToken::new(),
        )
        .unwrap();
        let (cmds, mut rx) = mpsc::channel::<Cmd>(8);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Set(changes)) => apply(&mut ledger, &spool, changes),
                        Some(Cmd::Compact) => {
                            ledger.save(&ledger_path).unwrap();
                            lock(&spool).compact(&[]).unwrap();
                        }
                        Some(Cmd::Inspect(reply)) => {
                            let s = lock(&spool);
                            let _ = reply.send(Inspect {
                                seq: ledger.seq(),
                                digest: ledger.digest(),
                                items: ledger.len(),
                                spool_acked: s.acked_seq(),
                                spool_unacked: s.unacked_count(),
                                spool_last: s.last_seq().unwrap_or(0),
                            });
                        }
                        Some(Cmd::Stop(done)) => {
                            link.stop().await;
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    },
                    event = link.next() => match event {
                        // The Session's checkpoint: the ledger first, then the spool.
                        LinkEvent::Acked(acked) => {
                            ledger.save(&ledger_path).unwrap();
                            release(&mut lock(&spool), acked).unwrap();
                        }
                        LinkEvent::Snapshot(request) => {
                            if answer(request, &mut ledger) {
                                ledger.save(&ledger_path).unwrap();
                            }
                        }
                    },
                }
                link.publish(Head::of(&ledger, &lock(&spool)));
            }
        });
        Agent {
            cmds,
            shared,
            stream_id,
            state,
            _dir: dir,
        }
    }

    async fn set(&self, paths: &[&str], mode: Option<&str>) {
        self.cmds
            .send(Cmd::Set(changes(paths, mode)))
            .await
            .unwrap();
    }

    async fn inspect(&self) -> Inspect {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Inspect(tx)).await.unwrap();
        rx.await.unwrap()
    }

    /// Waits until the daemon side satisfies `cond`.
    async fn wait(&self, what: &str, cond: impl Fn(&Inspect) -> bool) -> Inspect {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.inspect().await;
            if cond(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {state:?}"
            );
            // Releases happen on the daemon's loop; look again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> tempfile::TempDir {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Stop(tx)).await.unwrap();
        rx.await.unwrap();
        self._dir
    }

    fn status(&self) -> CollectorStatus {
        self.shared
            .status
            .lock()
            .unwrap()
            .collector
            .clone()
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn hello_says_who_and_where_then_events_flow_and_acks_release_the_spool() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b", "/etc/c"], Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("the first batch", |s| s.last_seq == 3).await;
    let hello = fake.get(|s| s.hellos[0].clone());
    assert_eq!(hello.protocol_version, v1::PROTOCOL_VERSION);
    assert_eq!(hello.stream_id, agent.stream_id);
    assert_eq!((hello.last_seq, hello.oldest_seq), (3, 1));
    assert_eq!(hello.baseline_id, "b".repeat(64));
    assert_eq!(
        (hello.image_name.as_str(), hello.image_version.as_str()),
        ("web", "2026.1")
    );
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.boot_id, identity::boot_id());
    let id = hello.identity.unwrap();
    assert_eq!(id.source, "machine_id");
    assert_eq!(id.host, format!("machine-id:{}", id.machine_id_hash));
    assert_eq!(id.hostname, "web-1");
    // A fresh host that can be brought up to date from the records: no snapshot.
    assert!(!fake.get(|s| s.welcomes[0].snapshot_required));
    assert_eq!(fake.get(|s| s.batches.clone()), [vec![1, 2, 3]]);
    // Acknowledged records leave the spool (after the ledger is saved).
    let state = agent.wait("the release", |i| i.spool_acked == 3).await;
    assert_eq!(state.spool_unacked, 0);
    assert!(agent.state.join("ledger.pb").exists());
    // New events follow as they are appended: no polling, no resend.
    agent.set(&["/etc/b"], None).await;
    agent.set(&["/etc/d"], Some("0700")).await;
    fake.wait("events 4 and 5", |s| s.last_seq == 5).await;
    assert_eq!(fake.get(Store::all_batched), [1, 2, 3, 4, 5]);
    let state = agent.wait("the release", |i| i.spool_acked == 5).await;
    assert_eq!(
        fake.get(Store::digest),
        state.digest,
        "the collector's set is the ledger's"
    );
    let status = agent.status();
    assert_eq!(
        (status.state.as_str(), status.last_ack_seq),
        ("connected", 5)
    );
    assert_eq!(status.host, id.host);
    assert_eq!(agent.shared.metrics.uplink_connected.get(), 1);
    assert_eq!(agent.shared.metrics.uplink_events_sent.get(), 5);
    assert_eq!(agent.shared.metrics.uplink_acked_seq.get(), 5);
    agent.stop().await;
}

#[tokio::test]
async fn resumes_after_what_the_collector_holds() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let stream_id = new_stream_id().unwrap();
    // The collector already stored 1..=2 of this stream (acked, but the agent crashed before
    // releasing them).
    fake.with(|s| {
        s.stream_id = stream_id.clone();
        s.last_seq = 2;
        s.set
            .insert("path:/etc/a".into(), drift("/etc/a", "0600").to_wire());
        s.set
            .insert("path:/etc/b".into(), drift("/etc/b", "0600").to_wire());
    });
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b", "/etc/c", "/etc/d"], Some("0600")),
        stream_id: Some(stream_id),
        ..options(addr)
    })
    .await;
    fake.wait("events 3 and 4", |s| s.last_seq == 4).await;
    assert_eq!(fake.get(|s| s.welcomes[0].last_seq), 2);
    assert_eq!(
        fake.get(Store::all_batched),
        [3, 4],
        "1 and 2 are not resent"
    );
    // The welcome counts as an acknowledgement of what the collector holds.
    let state = agent.wait("the release", |i| i.spool_acked == 4).await;
    assert_eq!(fake.get(Store::digest), state.digest);
    agent.stop().await;
}

#[tokio::test]
async fn a_new_stream_for_a_known_host_sends_a_snapshot() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    // The host is known under another stream (its state directory was wiped), with an item
    // that no longer exists: the snapshot must replace the set, not add to it.
    fake.with(|s| {
        s.stream_id = "0".repeat(32);
        s.last_seq = 40;
        s.set.insert(
            "path:/etc/gone".into(),
            drift("/etc/gone", "0600").to_wire(),
        );
    });
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
    assert!(fake.get(|s| s.welcomes[0].snapshot_required));
    assert_eq!(
        fake.get(|s| s.snapshots[0]),
        (2, 2, 1),
        "(seq, items, chunks)"
    );
    assert!(
        fake.get(|s| s.batches.is_empty()),
        "the records are covered by the snapshot"
    );
    let state = agent.wait("the release", |i| i.spool_acked == 2).await;
    assert_eq!(fake.get(Store::digest), state.digest);
    // Then events continue after the snapshot.
    agent.set(&["/etc/a"], None).await;
    fake.wait("event 3", |s| s.last_seq == 3).await;
    assert_eq!(fake.get(Store::all_batched), [3]);
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
    agent.stop().await;
}

#[tokio::test]
async fn a_collector_ahead_of_the_agent_gets_a_snapshot_numbered_after_its_own() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let stream_id = new_stream_id().unwrap();
    // Same stream, but the collector holds up to 100 (the agent's state was restored from an
    // older backup): numbers 3..=100 must not be reused for other events.
    fake.with(|s| {
        s.stream_id = stream_id.clone();
        s.last_seq = 100;
    });
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        stream_id: Some(stream_id),
        ..options(addr)
    })
    .await;
    fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
    assert_eq!(fake.get(|s| s.snapshots[0]), (101, 2, 1));
    let state = agent
        .wait("the jump saved", |i| i.seq == 101 && i.spool_acked == 2)
        .await;
    assert_eq!(state.spool_last, 2);
    // The next event is 102, contiguous for the collector.
    agent.set(&["/etc/c"], Some("0600")).await;
    fake.wait("event 102", |s| s.last_seq == 102).await;
    assert_eq!(fake.get(Store::all_batched), [102]);
    agent.wait("the release", |i| i.spool_acked == 102).await;
    agent.stop().await;
}

#[tokio::test]
async fn a_jump_in_numbering_the_collector_lost_is_bridged_by_a_new_snapshot() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let stream_id = new_stream_id().unwrap();
    fake.with(|s| {
        s.stream_id = stream_id.clone();
        s.last_seq = 100;
        s.no_acks = true;
    });
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        stream_id: Some(stream_id),
        ..options(addr)
    })
    .await;
    fake.wait("a snapshot at 101", |s| {
        s.snapshots.first().is_some_and(|x| x.0 == 101)
    })
    .await;
    // The collector loses the snapshot (never acknowledged), and on reconnect resumes after
    // 100 because the agent still holds record 1: no record leads from 100 to 101.
    fake.with(|s| {
        s.last_seq = 100;
        s.set.clear();
        s.no_acks = false;
    });
    fake.drop_stream();
    fake.wait("a second snapshot", |s| s.snapshots.len() == 2)
        .await;
    let hello = fake.get(|s| s.hellos[1].clone());
    assert_eq!((hello.last_seq, hello.oldest_seq), (101, 1));
    assert!(!fake.get(|s| s.welcomes[1].snapshot_required));
    assert_eq!(fake.get(|s| s.snapshots[1]), (101, 2, 1));
    let state = agent.wait("the release", |i| i.spool_acked == 2).await;
    assert_eq!(fake.get(Store::digest), state.digest);
    assert!(fake.get(|s| s.batches.is_empty()));
    agent.stop().await;
}

#[tokio::test]
async fn snapshot_on_request_comes_in_bounded_chunks() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let paths: Vec<String> = (0..1203).map(|i| format!("/etc/f{i:04}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let agent = Agent::start(AgentOptions {
        before: changes(&refs, Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("all events", |s| s.last_seq == 1203).await;
    // Batches are bounded.
    let sizes: Vec<usize> = fake.get(|s| s.batches.iter().map(Vec::len).collect());
    assert!(sizes.iter().all(|n| *n <= MAX_BATCH_EVENTS), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 1203);
    // The collector doubts its copy: a snapshot, at the ledger's seq, in chunks of <= 500.
    fake.with(|s| {
        s.set.clear();
    });
    fake.send(collector_message::Body::SnapshotRequest(
        v1::SnapshotRequest {
            reason: "digest differs".into(),
        },
    ));
    fake.wait("the snapshot", |s| !s.snapshots.is_empty()).await;
    assert_eq!(fake.get(|s| s.snapshots[0]), (1203, 1203, 3));
    let state = agent.inspect().await;
    assert_eq!(fake.get(Store::digest), state.digest);
    assert_eq!(agent.shared.metrics.uplink_snapshots_sent.get(), 1);
    agent.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_collector_drops_the_stream_and_nothing_is_lost() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a"], Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("event 1", |s| s.last_seq == 1).await;
    // Acks stop, events flow, then the collector restarts: what it stored is kept, what it
    // did not acknowledge stays in the spool and is resent after the reconnect.
    fake.with(|s| s.no_acks = true);
    agent.set(&["/etc/b", "/etc/c"], Some("0600")).await;
    fake.wait("events 2 and 3", |s| s.last_seq == 3).await;
    let state = agent
        .wait("no release without acks", |i| i.spool_acked == 1)
        .await;
    assert_eq!(state.spool_unacked, 2);
    fake.with(|s| {
        s.no_acks = false;
        // The restart lost the last write.
        s.last_seq = 2;
        s.set.remove("path:/etc/c");
    });
    fake.drop_stream();
    fake.wait("the reconnect", |s| s.hellos.len() == 2).await;
    fake.wait("event 3 again", |s| s.last_seq == 3).await;
    let hello = fake.get(|s| s.hellos[1].clone());
    assert_eq!((hello.last_seq, hello.oldest_seq), (3, 2));
    assert_eq!(fake.get(|s| s.welcomes[1].last_seq), 2);
    assert_eq!(fake.get(Store::all_batched), [1, 2, 3, 3]);
    let state = agent.wait("the release", |i| i.spool_acked == 3).await;
    assert_eq!(fake.get(Store::digest), state.digest);
    let status = agent.status();
    assert_eq!(status.state, "connected");
    assert!(status.reconnects >= 1, "{status:?}");
    assert!(
        status
            .last_error
            .is_some_and(|e| e.contains("collector restarting"))
    );
    // While the collector is down, events wait in the spool and go out on reconnect.
    fake.drop_stream();
    agent.set(&["/etc/d"], Some("0600")).await;
    fake.wait("event 4", |s| s.last_seq == 4).await;
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
    agent.stop().await;
}

#[tokio::test]
async fn an_unreachable_collector_is_retried_with_backoff_until_it_appears() {
    // A port nobody listens on yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a"], Some("0600")),
        ..options(addr)
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while agent.status().reconnects < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            agent.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = agent.status();
    assert_eq!(status.state, "disconnected");
    assert!(status.last_error.unwrap().contains("cannot connect"));
    // The collector comes up on that port: the agent finds it.
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestServer::new(fake.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    fake.wait("event 1", |s| s.last_seq == 1).await;
    agent.wait("the release", |i| i.spool_acked == 1).await;
    agent.stop().await;
}

#[tokio::test]
async fn heartbeats_carry_the_ledgers_digest_at_its_seq() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        heartbeat: Duration::from_millis(50),
        ..options(addr)
    })
    .await;
    agent.set(&["/etc/a"], Some("0666")).await;
    fake.wait("event 3", |s| s.last_seq == 3).await;
    let state = agent.inspect().await;
    fake.wait("a heartbeat at seq 3", |s| {
        s.heartbeats.iter().any(|h| h.seq == 3)
    })
    .await;
    let beat = fake.get(|s| {
        s.heartbeats
            .iter()
            .rev()
            .find(|h| h.seq == 3)
            .cloned()
            .unwrap()
    });
    assert_eq!(beat.digest, state.digest.to_vec());
    assert_eq!(beat.items, state.items as u64);
    // ... which is what the collector computes from the texts it stored.
    assert_eq!(fake.get(Store::digest).to_vec(), beat.digest);
    agent.stop().await;
}

#[tokio::test]
async fn a_compacted_spool_makes_the_collector_ask_for_a_snapshot() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    // Five events the collector never got, then the spool filled and was compacted.
    let agent = Agent::start(AgentOptions {
        before: changes(
            &["/etc/a", "/etc/b", "/etc/c", "/etc/d", "/etc/e"],
            Some("0600"),
        ),
        compact_before_start: true,
        ..options(addr)
    })
    .await;
    fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
    let hello = fake.get(|s| s.hellos[0].clone());
    assert_eq!(
        (hello.last_seq, hello.oldest_seq),
        (5, 0),
        "holds none of them"
    );
    assert_eq!(fake.get(|s| s.snapshots[0]), (5, 5, 1));
    assert!(fake.get(|s| s.batches.is_empty()));
    agent.stop().await;
}

#[tokio::test]
async fn a_gap_in_the_spool_is_bridged_by_a_snapshot_even_if_the_collector_does_not_ask() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    fake.with(|s| s.no_acks = true);
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a"], Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("event 1", |s| s.last_seq == 1).await;
    // The collector goes away; meanwhile the spool is compacted and more events come.
    fake.drop_stream();
    agent.set(&["/etc/b"], Some("0600")).await;
    agent.cmds.send(Cmd::Compact).await.unwrap();
    agent.set(&["/etc/c"], Some("0600")).await;
    // A collector that (wrongly) resumes after 1 without asking for a snapshot: the agent
    // must not send 3 after 1.
    fake.with(|s| {
        s.no_acks = false;
        s.lie_in_welcome = Some(1);
    });
    fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
    fake.wait("the set", |s| s.set.len() == 3).await;
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
    let state = agent.inspect().await;
    assert_eq!(fake.get(|s| s.snapshots[0].0), state.seq);
    assert_eq!(fake.get(Store::digest), state.digest);
    agent.stop().await;
}

#[tokio::test]
async fn a_record_damaged_after_the_spool_was_opened_is_bridged_by_a_snapshot() {
    // The collector's address, with nobody listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("state/spool");
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        state_dir: Some(dir),
        ..options(addr)
    })
    .await;
    // The last byte of record 2 goes bad on disk.
    let segment = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();
    // Not a reconnect loop on a read error: the collector gets the set as a snapshot.
    let fake = Fake::default();
    fake.serve_at(addr).await;
    fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
    fake.wait("the set", |s| s.set.len() == 2).await;
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
    assert_eq!(fake.get(Store::digest), agent.inspect().await.digest);
    agent.stop().await;
}

#[tokio::test]
async fn acks_beyond_what_was_sent_release_nothing_more() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    fake.with(|s| s.ack_offset = 1000);
    let agent = Agent::start(AgentOptions {
        before: changes(&["/etc/a", "/etc/b"], Some("0600")),
        ..options(addr)
    })
    .await;
    fake.wait("events", |s| s.last_seq == 2).await;
    let state = agent.wait("the release", |i| i.spool_acked == 2).await;
    assert_eq!(state.spool_acked, 2);
    assert_eq!(agent.status().last_ack_seq, 2);
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_waits_briefly_for_the_last_acks() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let agent = Agent::start(options(addr)).await;
    fake.wait("the hello", |s| s.hellos.len() == 1).await;
    agent.set(&["/etc/a"], Some("0600")).await;
    fake.wait("event 1", |s| s.last_seq == 1).await;
    let acked = agent.wait("the ack", |i| i.spool_acked == 1).await;
    assert_eq!(acked.spool_unacked, 0);
    let started = std::time::Instant::now();
    agent.stop().await;
    assert!(
        started.elapsed() < DRAIN_DEADLINE,
        "nothing was left to wait for"
    );
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter() {
    let mut b = Backoff::default();
    let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
    let base = |i: u32| (BACKOFF_MIN * 2u32.pow(i)).min(BACKOFF_MAX);
    for (i, d) in delays.iter().enumerate() {
        let base = base(i as u32);
        assert!(
            *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
            "{i}: {d:?} vs {base:?}"
        );
    }
    assert!(delays[11] <= BACKOFF_MAX.mul_f64(1.2));
}

#[test]
fn stream_ids_are_random_hex() {
    let (a, b) = (new_stream_id().unwrap(), new_stream_id().unwrap());
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn error_chain_shows_each_source_once() {
    let read = identity::IdentityError::Read {
        path: "/etc/driftwatch/identity.json".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    // The identity error already ends with its source's text; the uplink error does not.
    let error = UplinkError::from(read);
    assert_eq!(
        error_chain(&error),
        "the host identity: cannot read /etc/driftwatch/identity.json: entity not found"
    );
    let spool = UplinkError::Spool(SpoolError::Poisoned { dir: "/s".into() });
    assert_eq!(
        error_chain(&spool),
        "reading the spool: the spool in /s could not undo a failed append; reopen it"
    );
}
