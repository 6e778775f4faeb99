//! The whole daemon in-process, streaming to the fake collector of the uplink's tests: real
//! files, inotify, the startup comparison, the spool, checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Session, SessionEnd};
use crate::bake::{self, ImageLabel};
use crate::config::{AgentConfig, CollectorConfig, Overrides};
use crate::rules::Rules;
use crate::ship::tests::{Fake, Store};
use crate::telemetry::{Shared, Status};

const WAIT: Duration = Duration::from_secs(20);

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A root with a few files under /etc, baselined.
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let host = Host { dir };
        host.write("/etc/motd", "Welcome\n");
        host.write("/etc/app.conf", "a = 1\n");
        host.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        let built = bake::build(
            &host.root(),
            &Rules::builtin(),
            &ImageLabel {
                name: "web".into(),
                version: "7".into(),
            },
            None,
            false,
        );
        std::fs::write(host.dir.path().join("baseline.dwb"), &built.bytes).unwrap();
        host
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn config(&self, collector: &str, spool_max_bytes: u64) -> AgentConfig {
        AgentConfig {
            baseline: self.dir.path().join("baseline.dwb"),
            root: self.root(),
            state_dir: self.state(),
            public_key: None,
            collector: Some(CollectorConfig {
                urls: vec![collector.into()],
                ca: None,
                cert: None,
                key: None,
                heartbeat: Duration::from_millis(100),
                identity_file: None,
                metadata_service: false,
                enroll: None,
            }),
            listen: None,
            status_socket: None,
            rescan_interval: Duration::from_secs(3600),
            full_hash_every: 4,
            degraded_interval: Duration::from_secs(3600),
            hash_rate: 0,
            hash_background_above: 64 << 20,
            coalesce: Duration::from_millis(1),
            max_watches: None,
            spool_max_bytes,
        }
    }
}

fn shared() -> Shared {
    Shared {
        metrics: Arc::default(),
        status: Arc::default(),
    }
}

fn status(shared: &Shared) -> Status {
    shared.status.lock().unwrap().clone()
}

/// Runs the session while `body` runs, then drains it as SIGTERM would.
async fn run_session(
    config: AgentConfig,
    shared: &Shared,
    body: impl std::future::Future<Output = ()>,
) {
    let cancel = CancellationToken::new();
    let mut session = Session::start(config, shared.clone(), "now", cancel.clone())
        .await
        .unwrap();
    let mut hup = signal(SignalKind::hangup()).unwrap();
    let mut term = signal(SignalKind::terminate()).unwrap();
    let overrides = Overrides::default();
    tokio::select! {
        end = session.run(&mut hup, &mut term, &overrides) => match end {
            SessionEnd::Failed(e) => panic!("session failed: {e:#}"),
            _ => panic!("session ended"),
        },
        () = body => {}
    }
    cancel.cancel();
    session.finish().await.unwrap();
}

async fn wait_status(shared: &Shared, what: &str, cond: impl Fn(&Status) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(&status(shared)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            status(shared)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stream_id_file(state: &Path) -> String {
    std::fs::read_to_string(state.join("stream-id"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_collector_acks_release_the_spool_and_a_restart_resumes() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let host = Host::new();
    host.write("/etc/motd", "Changed while stopped\n");
    let shared = shared();
    let config = host.config(&format!("http://{addr}"), 1 << 20);
    run_session(config.clone(), &shared, async {
        // The startup comparison's event, then a live one.
        fake.wait("the startup event", |s| {
            s.set.contains_key("path:/etc/motd")
        })
        .await;
        host.write("/etc/app.conf", "a = 2\n");
        fake.wait("the live event", |s| s.last_seq == 2).await;
        assert!(fake.get(|s| s.set.contains_key("path:/etc/app.conf")));
        // Acknowledged, then released by the checkpoint (after the ledger is saved).
        wait_status(&shared, "the release", |s| s.spool.acked_seq == 2).await;
        let st = status(&shared);
        assert_eq!(st.spool.unacked, 0);
        let c = st.collector.unwrap();
        assert_eq!((c.state.as_str(), c.last_ack_seq), ("connected", 2));
        assert!(c.host.starts_with("machine-id:"), "{c:?}");
        // Heartbeats describe the ledger at its seq, as the collector computes it.
        fake.wait("a heartbeat at seq 2", |s| {
            s.heartbeats.iter().any(|h| h.seq == 2)
        })
        .await;
        let beat = fake.get(|s| s.heartbeats.iter().rev().find(|h| h.seq == 2).cloned());
        assert_eq!(beat.unwrap().digest, fake.get(Store::digest).to_vec());
    })
    .await;
    let hello = fake.get(|s| s.hellos[0].clone());
    let stream_id = stream_id_file(&host.state());
    assert_eq!(hello.stream_id, stream_id);
    assert_eq!(
        (hello.image_name.as_str(), hello.image_version.as_str()),
        ("web", "7")
    );
    assert_eq!(fake.get(Store::all_batched), [1, 2]);

    // A restart continues the stream: same id, nothing resent, the next event is 3.
    run_session(config, &shared, async {
        fake.wait("the second hello", |s| s.hellos.len() == 2).await;
        host.write("/etc/app.conf", "a = 1\n");
        fake.wait("the resolution", |s| s.last_seq == 3).await;
    })
    .await;
    let hello = fake.get(|s| s.hellos[1].clone());
    assert_eq!(hello.stream_id, stream_id);
    assert_eq!((hello.last_seq, hello.oldest_seq), (2, 0));
    assert!(!fake.get(|s| s.welcomes[1].snapshot_required));
    assert_eq!(fake.get(Store::all_batched), [1, 2, 3]);
    assert!(!fake.get(|s| s.set.contains_key("path:/etc/app.conf")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_filled_while_the_collector_is_away_is_compacted_and_a_snapshot_follows() {
    // The collector's address, with nobody listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let host = Host::new();
    let shared = shared();
    // A small spool: 400 added files overflow it.
    let config = host.config(&format!("http://{addr}"), 64 << 10);
    let fake = Fake::default();
    run_session(config, &shared, async {
        for i in 0..400 {
            host.write(&format!("/etc/many/f{i:03}.conf"), "x = 1\n");
        }
        wait_status(&shared, "all events", |s| s.drift_count == 401).await;
        let st = status(&shared);
        assert!(st.spool.last_seq >= 401, "{:?}", st.spool);
        assert!(st.spool.unacked < 401, "compacted: {:?}", st.spool);
        assert!(st.spool.bytes < 64 << 10, "{:?}", st.spool);
        // The collector appears: it cannot be brought up to date from the records, so it
        // gets a snapshot of the whole drift set.
        fake.serve_at(addr).await;
        fake.wait("a snapshot", |s| !s.snapshots.is_empty()).await;
        fake.wait("the whole set", |s| s.set.len() == 401).await;
        let hello = fake.get(|s| s.hellos[0].clone());
        assert!(hello.oldest_seq == 0 || hello.oldest_seq > 1, "{hello:?}");
        wait_status(&shared, "the release", |s| s.spool.unacked == 0).await;
    })
    .await;
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_files_are_quarantined_and_the_collector_gets_a_snapshot() {
    let fake = Fake::default();
    let addr = fake.serve().await;
    let host = Host::new();
    let shared = shared();
    let config = host.config(&format!("http://{addr}"), 1 << 20);
    run_session(config.clone(), &shared, async {
        host.write("/etc/motd", "Changed\n");
        fake.wait("the event", |s| s.last_seq == 1).await;
        host.write("/etc/app.conf", "a = 2\n");
        fake.wait("the second event", |s| s.last_seq == 2).await;
    })
    .await;
    let first_stream = stream_id_file(&host.state());
    // (what is damaged, what the status says, spool files quarantined)
    let segment = || {
        std::fs::read_dir(host.state().join("spool"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap()
    };
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(Damage, &str, u64)> = vec![
        (
            Box::new(|| std::fs::write(host.state().join("ledger.pb"), b"DWLG\0\0\0\0xx").unwrap()),
            "ledger.pb is damaged (checksum mismatch); moved it to ",
            0,
        ),
        (
            Box::new(|| std::fs::write(segment(), b"NOTASEGMENT").unwrap()),
            "is corrupt (not a spool segment (bad magic) at byte 0); moved it to ",
            1,
        ),
        (
            Box::new(|| std::fs::write(host.state().join("stream-id"), b"\xff\xfe").unwrap()),
            "stream-id is damaged (not 32 hex digits); moved it to ",
            0,
        ),
    ];
    let mut streams = vec![first_stream];
    for (damage, says, quarantined) in cases {
        damage();
        let snapshots = fake.get(|s| s.snapshots.len());
        let shared = self::shared();
        run_session(config.clone(), &shared, async {
            fake.wait("a snapshot", |s| s.snapshots.len() > snapshots)
                .await;
            fake.wait("the drift set", |s| {
                s.set.contains_key("path:/etc/motd") && s.set.contains_key("path:/etc/app.conf")
            })
            .await;
            let st = status(&shared);
            assert_eq!(st.faults.len(), 1, "{:?}", st.faults);
            assert!(st.faults[0].contains(says), "{:?}", st.faults);
            assert_eq!(st.spool.quarantined, quarantined);
            assert_eq!(st.drift_count, 2);
        })
        .await;
        let stream = stream_id_file(&host.state());
        assert!(!streams.contains(&stream), "a new stream after: {says}");
        streams.push(stream);
    }
    let quarantine = host.state().join("quarantine");
    assert_eq!(std::fs::read_dir(quarantine).unwrap().count(), 3);
    assert_eq!(fake.get(|s| s.violations.clone()), Vec::<String>::new());
}
