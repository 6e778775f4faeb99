//! The uplink task: connections, the stream loop, snapshots on the way out, batches read from
//! the spool, backoff. See the parent module for the design.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use driftwatch_proto::v1::{self, agent_message, collector_message, ingest_client::IngestClient};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::identity::{self, HostIdentity};
use super::*;
use crate::ledger::now_rfc3339;
use crate::spool::shared::lock;
use crate::spool::{SpoolError, record};
use crate::telemetry::{CollectorStatus, Shared};

/// The uplink task's state across connections.
pub(super) struct Uplink {
    pub(super) settings: Settings,
    /// An endpoint per collector URL, in the order of `settings.collector.urls` (the first in
    /// use).
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) spool: SharedSpool,
    pub(super) head: watch::Receiver<Head>,
    pub(super) acked: watch::Sender<u64>,
    pub(super) requests: mpsc::Sender<SnapshotRequest>,
    pub(super) shared: Shared,
    /// Told when this uplink enrolled the host (the renewal then plans the next renewal).
    pub(super) enrolled: std::sync::Arc<tokio::sync::Notify>,
    pub(super) cancel: CancellationToken,
}

/// Why a connection ended without an error.
enum End {
    Cancelled,
}

type PendingSnapshot = Pin<Box<dyn Future<Output = Result<Snapshot, UplinkError>> + Send>>;

impl Uplink {
    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut last_failure: Option<String> = None;
        let mut identity: Option<HostIdentity> = None;
        let mut attempts = 0u64;
        loop {
            if attempts > 0 {
                self.shared.metrics.uplink_reconnects.inc();
                self.status(|s| s.reconnects += 1);
            }
            attempts += 1;
            let mut connected_at = None;
            let result = self.connect(&mut identity, &mut connected_at).await;
            self.shared.metrics.uplink_connected.set(0);
            self.status(|s| {
                s.state = "disconnected".into();
                s.connected_since = None;
            });
            match result {
                Ok(End::Cancelled) | Err(UplinkError::DaemonGone) => return,
                Err(error) => {
                    let text =
                        super::describe(&error, &self.settings.collector, connected_at.is_none());
                    let url = self.settings.collector.url();
                    if connected_at.is_some() {
                        tracing::warn!(url, error = %text, "Lost the collector; reconnecting.");
                    } else if last_failure.as_deref() != Some(text.as_str()) {
                        tracing::warn!(url, error = %text, "Cannot stream to the collector; retrying with backoff.");
                    } else {
                        tracing::debug!(url, error = %text, "Still cannot stream to the collector.");
                    }
                    self.status(|s| s.last_error = Some(text.clone()));
                    last_failure = Some(text);
                }
            }
            if connected_at.is_some_and(|t: Instant| t.elapsed() >= STABLE_AFTER) {
                backoff = Backoff::default();
            }
            // Replicas: the next connection goes to the next URL (a replica that died or
            // cannot be reached), after the same backoff.
            if self.settings.collector.fail_over() {
                self.endpoints.rotate_left(1);
                let url = self.settings.collector.url().to_owned();
                tracing::info!(url, "Failing over to the next collector.");
                last_failure = None;
                self.status(|s| s.url = url);
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    fn status(&self, change: impl FnOnce(&mut CollectorStatus)) {
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = status.collector.as_mut() {
            change(c);
        }
    }

    /// One connection: identity (once), connect, hello, welcome, then the stream until it
    /// fails, ends, or the daemon stops.
    async fn connect(
        &mut self,
        identity: &mut Option<HostIdentity>,
        connected_at: &mut Option<Instant>,
    ) -> Result<End, UplinkError> {
        let id = match identity {
            Some(id) => id.clone(),
            None => {
                let resolved = tokio::select! {
                    _ = self.cancel.cancelled() => return Ok(End::Cancelled),
                    r = identity::resolve(&self.settings.identity) => r?,
                };
                tracing::info!(host = %resolved.host, source = %resolved.source, "Host identity resolved.");
                self.status(|s| {
                    s.host = resolved.host.clone();
                    s.identity_source = resolved.source.clone();
                });
                identity.insert(resolved).clone()
            }
        };
        let url = self.settings.collector.url().to_owned();
        // An enrolled host presents the certificate enrollment gave it (enrolling first if it
        // has none): read at every connection, so a renewed one is used from the next.
        let endpoint = match &self.settings.collector.enroll {
            None => self.endpoints[0].clone(),
            Some(enrolling) => {
                let credentials = tokio::select! {
                    _ = self.cancel.cancelled() => return Ok(End::Cancelled),
                    c = super::enroll::ensure(enrolling, &self.settings.collector, &id, &self.settings.image_name) => c?,
                };
                if credentials.fresh {
                    self.enrolled.notify_one();
                }
                super::endpoint_with(&self.settings.collector, Some(&credentials))?
            }
        };
        let channel = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(End::Cancelled),
            c = endpoint.connect() => c.map_err(|source| UplinkError::Connect { url: url.clone(), source })?,
        };
        let mut client = IngestClient::new(channel);
        let hello = self.hello(&id).await?;
        let (last_seq, oldest_seq) = (hello.last_seq, hello.oldest_seq);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tx.try_send(message(agent_message::Body::Hello(hello)))
            .expect("a new channel has room");
        let call = tokio::time::timeout(WELCOME_TIMEOUT, async {
            let response = client.stream(ReceiverStream::new(rx)).await?;
            let mut inbound = response.into_inner();
            let first = inbound.message().await?;
            Ok::<_, UplinkError>((inbound, first))
        });
        let (inbound, first) = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(End::Cancelled),
            r = call => r.map_err(|_| UplinkError::Timeout("the collector's welcome"))??,
        };
        let welcome = match first.and_then(|m| m.body) {
            Some(collector_message::Body::Welcome(w)) => w,
            None => return Err(UplinkError::Closed),
            Some(other) => {
                return Err(UplinkError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )));
            }
        };
        *connected_at = Some(Instant::now());
        self.shared.metrics.uplink_connected.set(1);
        self.status(|s| {
            s.state = "connected".into();
            s.connected_since = Some(now_rfc3339());
        });
        tracing::info!(
            url,
            host = %id.host,
            last_seq,
            oldest_seq,
            collector_last_seq = welcome.last_seq,
            snapshot = welcome.snapshot_required,
            reason = %welcome.reason,
            collector_version = %welcome.collector_version,
            "Connected to the collector."
        );
        let heartbeat = match welcome.heartbeat_seconds {
            0 => self.settings.collector.heartbeat,
            asked => self
                .settings
                .collector
                .heartbeat
                .min(Duration::from_secs(asked.into())),
        };
        let mut stream = Stream {
            tx,
            inbound,
            // The collector holds everything up to its last sequence number; unless it needs a
            // snapshot, that counts as acknowledged and the stream continues after it.
            cursor: welcome.last_seq,
            sent: if welcome.snapshot_required {
                0
            } else {
                welcome.last_seq
            },
            acked: 0,
            pending: None,
            outgoing: None,
            heartbeat: tokio::time::interval_at(Instant::now() + heartbeat, heartbeat),
            drain_until: None,
        };
        stream
            .heartbeat
            .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if welcome.snapshot_required {
            stream.pending = Some(self.request_snapshot(Some(welcome.last_seq)));
        } else {
            self.acknowledged(&mut stream.acked, stream.sent, welcome.last_seq);
        }
        self.stream(&mut stream).await
    }

    async fn hello(&self, id: &HostIdentity) -> Result<v1::Hello, UplinkError> {
        let head = self.head.borrow().clone();
        let spool = self.spool.clone();
        let oldest = tokio::task::spawn_blocking(move || lock(&spool).first_unacked_seq())
            .await
            .map_err(|_| UplinkError::DaemonGone)??;
        Ok(v1::Hello {
            protocol_version: v1::PROTOCOL_VERSION,
            identity: Some(to_proto(id)),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            baseline_id: self.settings.baseline_id.clone(),
            image_name: self.settings.image_name.clone(),
            image_version: self.settings.image_version.clone(),
            boot_id: identity::boot_id(),
            stream_id: self.settings.stream_id.clone(),
            last_seq: head.seq,
            oldest_seq: oldest.unwrap_or(0),
        })
    }

    fn request_snapshot(&self, after: Option<u64>) -> PendingSnapshot {
        let requests = self.requests.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            requests
                .send(SnapshotRequest { after, reply })
                .await
                .map_err(|_| UplinkError::DaemonGone)?;
            answer.await.map_err(|_| UplinkError::DaemonGone)
        })
    }

    /// Records an acknowledgement: never beyond what this stream sent (a confused collector
    /// must not release records it never received).
    fn acknowledged(&self, acked: &mut u64, sent: u64, seq: u64) {
        let seq = seq.min(sent);
        *acked = (*acked).max(seq);
        let raised = self.acked.send_if_modified(|a| {
            let raise = seq > *a;
            if raise {
                *a = seq;
            }
            raise
        });
        if raised {
            self.shared.metrics.uplink_acked_seq.set(seq as i64);
            self.status(|s| s.last_ack_seq = seq);
        }
    }

    /// The stream's main loop.
    async fn stream(&mut self, s: &mut Stream) -> Result<End, UplinkError> {
        loop {
            let (seq, spool_last) = {
                let head = self.head.borrow_and_update();
                (head.seq, head.spool_last)
            };
            let sending = s.drain_until.is_none();
            let idle = s.pending.is_none() && s.outgoing.is_none();
            // The ledger's numbering jumped past what the collector holds (for a snapshot it
            // did not keep) and no record bridges the jump: only a snapshot can.
            if sending && idle && seq > s.cursor && spool_last <= s.cursor {
                tracing::info!(
                    collector_seq = s.cursor,
                    seq,
                    "No records lead from the collector's sequence number to the agent's; sending a snapshot."
                );
                s.pending = Some(self.request_snapshot(Some(s.cursor)));
            }
            let want_records =
                sending && s.pending.is_none() && s.outgoing.is_none() && s.cursor < spool_last;
            let want_chunk = sending && s.outgoing.is_some();
            tokio::select! {
                biased;
                received = s.inbound.message() => {
                    let body = received?.ok_or(UplinkError::Closed)?.body;
                    match body {
                        Some(collector_message::Body::Ack(ack)) => {
                            self.acknowledged(&mut s.acked, s.sent, ack.seq);
                            if s.drain_until.is_some() && s.acked >= s.sent {
                                return Ok(End::Cancelled);
                            }
                        }
                        Some(collector_message::Body::SnapshotRequest(r)) => {
                            tracing::info!(reason = %r.reason, "The collector asks for a snapshot.");
                            if s.pending.is_none() && s.outgoing.is_none() {
                                s.pending = Some(self.request_snapshot(None));
                            }
                        }
                        Some(collector_message::Body::Welcome(_)) => {
                            return Err(UplinkError::Protocol("a second welcome".into()));
                        }
                        // A message of a newer protocol revision: not for us.
                        None => tracing::debug!("Ignoring an unknown message from the collector."),
                    }
                }
                _ = self.cancel.cancelled(), if sending => {
                    if s.acked >= s.sent {
                        return Ok(End::Cancelled);
                    }
                    s.drain_until = Some(Instant::now() + DRAIN_DEADLINE);
                }
                _ = sleep_until(s.drain_until), if s.drain_until.is_some() => return Ok(End::Cancelled),
                snapshot = async { s.pending.as_mut().expect("guarded").await }, if s.pending.is_some() => {
                    s.pending = None;
                    let snapshot = snapshot?;
                    tracing::info!(seq = snapshot.seq, items = snapshot.items.len(), "Sending a snapshot.");
                    s.outgoing = Some(Outgoing::new(snapshot));
                }
                permit = s.tx.reserve(), if want_records || want_chunk => {
                    let permit = permit.map_err(|_| UplinkError::Closed)?;
                    if let Some(out) = s.outgoing.as_mut() {
                        let chunk = out.next_chunk();
                        let last = chunk.last;
                        permit.send(message(agent_message::Body::Snapshot(chunk)));
                        if last {
                            let seq = out.seq;
                            s.outgoing = None;
                            s.cursor = seq;
                            s.sent = s.sent.max(seq);
                            self.shared.metrics.uplink_snapshots_sent.inc();
                        }
                    } else {
                        let spool = self.spool.clone();
                        let after = s.cursor;
                        let read = tokio::task::spawn_blocking(move || read_events(&spool, after))
                            .await
                            .map_err(|_| UplinkError::DaemonGone)??;
                        match read {
                            Read::Events(events) => {
                                let last = events.last().map_or(after, |e| e.seq);
                                let count = events.len() as u64;
                                permit.send(message(agent_message::Body::Batch(v1::EventBatch { events })));
                                s.cursor = last;
                                s.sent = s.sent.max(last);
                                self.shared.metrics.uplink_events_sent.inc_by(count);
                            }
                            Read::Gap(reason) => {
                                tracing::warn!(after, %reason, "The spool no longer holds what the collector needs; sending a snapshot instead.");
                                s.pending = Some(self.request_snapshot(Some(after)));
                            }
                        }
                    }
                }
                _ = s.heartbeat.tick(), if sending => {
                    let head = self.head.borrow().clone();
                    let beat = v1::Heartbeat {
                        seq: head.seq,
                        digest: head.digest.to_vec(),
                        items: head.items,
                        spool_problem: head.spool_problem,
                        spool_quarantined: head.quarantined,
                    };
                    // A full queue means messages are flowing, which keeps the stream alive.
                    let _ = s.tx.try_send(message(agent_message::Body::Heartbeat(beat)));
                }
                changed = self.head.changed() => {
                    if changed.is_err() {
                        return Err(UplinkError::DaemonGone);
                    }
                }
            }
        }
    }
}

/// One open stream.
struct Stream {
    tx: mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::CollectorMessage>,
    /// The last sequence number the collector has or is being sent: records after it are next.
    cursor: u64,
    /// The highest sequence number sent on this stream (or held by the collector already).
    sent: u64,
    /// The highest acknowledged on this stream.
    acked: u64,
    /// A snapshot asked of the Session.
    pending: Option<PendingSnapshot>,
    /// A snapshot being sent.
    outgoing: Option<Outgoing>,
    heartbeat: tokio::time::Interval,
    /// Shutting down: nothing more is sent; wait for acks until then.
    drain_until: Option<Instant>,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn message(body: agent_message::Body) -> v1::AgentMessage {
    v1::AgentMessage { body: Some(body) }
}

/// A snapshot on its way out, chunk by chunk.
struct Outgoing {
    seq: u64,
    items: std::vec::IntoIter<v1::DriftItem>,
}

impl Outgoing {
    fn new(snapshot: Snapshot) -> Outgoing {
        Outgoing {
            seq: snapshot.seq,
            items: snapshot.items.into_iter(),
        }
    }

    /// The next chunk; the one that empties the snapshot is `last` (an empty snapshot is one
    /// empty, last chunk).
    fn next_chunk(&mut self) -> v1::SnapshotChunk {
        let mut items = Vec::new();
        let mut bytes = 0;
        while items.len() < SNAPSHOT_CHUNK_ITEMS && bytes < SNAPSHOT_CHUNK_BYTES {
            let Some(item) = self.items.next() else { break };
            bytes += item.encoded_len();
            items.push(item);
        }
        v1::SnapshotChunk {
            seq: self.seq,
            items,
            last: self.items.len() == 0,
        }
    }
}

enum Read {
    /// Contiguous events, starting right after the cursor.
    Events(Vec<v1::Event>),
    /// The next record is not there (or does not decode).
    Gap(String),
}

/// Reads the next batch after `after`: contiguous from `after + 1`, stopping before a gap or
/// a record that does not decode (which the next read then reports as [`Read::Gap`]).
fn read_events(spool: &SharedSpool, after: u64) -> Result<Read, SpoolError> {
    let records = match lock(spool).read_batch(after, MAX_BATCH_EVENTS, MAX_BATCH_BYTES) {
        Ok(records) => records,
        // Damaged since it was opened: the snapshot moves the cursor past it.
        Err(error @ SpoolError::Corrupt { .. }) => {
            tracing::error!(error = %error, "The spool is damaged; the collector gets a snapshot instead.");
            return Ok(Read::Gap(error.to_string()));
        }
        Err(error) => return Err(error),
    };
    let mut events = Vec::with_capacity(records.len());
    let mut problem = None;
    for (seq, payload) in &records {
        let expected = after + 1 + events.len() as u64;
        if *seq != expected {
            problem = Some(format!(
                "sequence {expected} is gone (the next record is {seq})"
            ));
            break;
        }
        match record::decode_wire(payload) {
            Ok(e) if e.seq == *seq => events.push(e),
            Ok(e) => {
                problem = Some(format!("record {seq} holds event {}", e.seq));
                break;
            }
            Err(error) => {
                tracing::error!(seq, %error, "A spool record does not decode; the collector gets a snapshot instead.");
                problem = Some(format!("record {seq} does not decode: {error}"));
                break;
            }
        }
    }
    if events.is_empty() {
        let reason = problem.unwrap_or_else(|| format!("sequence {} is gone", after + 1));
        return Ok(Read::Gap(reason));
    }
    Ok(Read::Events(events))
}

fn to_proto(id: &HostIdentity) -> v1::HostIdentity {
    v1::HostIdentity {
        host: id.host.clone(),
        source: id.source.clone(),
        hostname: id.hostname.clone(),
        cloud: id.cloud.clone(),
        region: id.region.clone(),
        availability_zone: id.availability_zone.clone(),
        instance_id: id.instance_id.clone(),
        image_id: id.image_id.clone(),
        private_ip: id.private_ip.clone(),
        machine_id_hash: id.machine_id_hash.clone(),
        user_data_sha1: id.user_data_sha1.clone(),
        tags: id.tags.clone().into_iter().collect(),
        account_id: id.account_id.clone(),
    }
}

/// Jittered exponential backoff.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The next delay, ±20 %: agents that lost the same collector do not all come back in
    /// the same instant.
    pub(super) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let random = getrandom::u32().unwrap_or(u32::MAX / 2);
        base.mul_f64(0.8 + 0.4 * f64::from(random) / f64::from(u32::MAX))
    }
}
