//! The agents' streams (`driftwatch.v1.Ingest/Stream`).
//!
//! Per stream: a hello, then batches, heartbeats and snapshots, handled one at a time in
//! arrival order (an agent's events are ordered; there is nothing to gain from reordering
//! them). Every write goes through the group writer and is acknowledged only once committed.
//! Whatever is wrong with a message ends the stream with a status that says what, and a log
//! line; nothing of a refused batch is stored. When the collector stops, each stream ends with
//! `UNAVAILABLE` once the message in hand is handled (a batch committed and acknowledged).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_proto::v1::{self, agent_message::Body, collector_message};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Caller, ClientSerial};
use crate::metrics::Metrics;
use crate::status;
use crate::store::{
    self, EventRecord, HostIdentity, HostInfo, ItemError, ItemRecord, Store, StoreError,
    StreamHead, StreamState, Transition, Write, blocking,
};
use driftwatch_proto::drift::DriftError;
use reader::Reader;
use writer::Writer;

pub mod reader;
pub mod writer;

/// Per-connection limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest message accepted (decoded); larger ones end the stream with `OUT_OF_RANGE`.
    pub max_message_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Most items in one snapshot (all chunks).
    pub max_snapshot_items: usize,
    /// How long a new stream may take to say hello.
    pub hello_timeout: Duration,
    /// The heartbeat interval asked of agents; a stream silent for three of them is closed.
    pub heartbeat: Duration,
    /// How long an unanswered snapshot request stands before a heartbeat that still
    /// disagrees asks again.
    pub snapshot_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_batch_events: 10_000,
            max_snapshot_items: 1_000_000,
            hello_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            snapshot_interval: Duration::from_secs(60),
        }
    }
}

pub struct IngestService<S> {
    store: Arc<S>,
    writer: Writer,
    reader: Reader,
    metrics: Arc<Metrics>,
    limits: Limits,
    shutdown: CancellationToken,
    streams: TaskTracker,
}

impl<S: Store> IngestService<S> {
    /// Starts the heartbeats' [`Reader`]: call it on the server's runtime.
    pub fn new(store: Arc<S>, writer: Writer, metrics: Arc<Metrics>, limits: Limits) -> Self {
        IngestService {
            reader: Reader::start(store.clone(), metrics.clone()),
            store,
            writer,
            metrics,
            limits,
            shutdown: CancellationToken::new(),
            streams: TaskTracker::new(),
        }
    }

    /// Ends every stream when `shutdown` is cancelled; each stream's task is spawned on
    /// `streams`, for the server to wait for.
    pub fn stopping(mut self, shutdown: CancellationToken, streams: TaskTracker) -> Self {
        self.shutdown = shutdown;
        self.streams = streams;
        self
    }

    pub fn into_server(self) -> v1::ingest_server::IngestServer<Self> {
        let max = self.limits.max_message_bytes;
        v1::ingest_server::IngestServer::new(self).max_decoding_message_size(max)
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<v1::CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Store> v1::ingest_server::Ingest for IngestService<S> {
    type StreamStream = Outbound;

    async fn stream(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        // Put there by the access check; an agent's certificate binds the stream to its host.
        let bound = match Caller::of(&request) {
            Caller::Agent { host } => Some(host),
            _ => None,
        };
        let certificate = bound
            .as_ref()
            .and(request.extensions().get::<ClientSerial>())
            .map(|ClientSerial(serial)| serial.clone());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let conn = Connection {
            store: self.store.clone(),
            writer: self.writer.clone(),
            reader: self.reader.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits.clone(),
            tx,
            peer,
            bound,
            certificate,
            host: String::new(),
            stream_id: String::new(),
            last_seq: 0,
            connection: 0,
            snapshot_asked: None,
            last_seen_written: None,
            spool_health: Default::default(),
            shutdown: self.shutdown.clone(),
        };
        self.metrics.streams.inc();
        self.metrics.streams_total.inc();
        self.streams.spawn(conn.run(inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One agent's stream.
struct Connection<S> {
    store: Arc<S>,
    writer: Writer,
    reader: Reader,
    metrics: Arc<Metrics>,
    limits: Limits,
    tx: mpsc::Sender<Result<v1::CollectorMessage, Status>>,
    peer: String,
    /// The host the client certificate names: the only one this stream may speak for.
    bound: Option<String>,
    /// That certificate's serial while it may be one the fleet CA issued (enrollment): its
    /// revocation ends the stream at the next heartbeat. `None` once it is known not to be.
    certificate: Option<String>,
    host: String,
    stream_id: String,
    /// The last sequence number stored for this stream.
    last_seq: u64,
    /// The number the store gave this stream's hello ([`StreamState::connection`]).
    connection: u64,
    /// When a snapshot was last asked for, until it arrives.
    snapshot_asked: Option<tokio::time::Instant>,
    last_seen_written: Option<tokio::time::Instant>,
    /// The agent's spool health as its last heartbeat told it (problem, quarantined files):
    /// logged when it changes.
    spool_health: (String, u64),
    /// The collector is stopping: end the stream between messages.
    shutdown: CancellationToken,
}

/// Why a stream ends.
struct End(Status);

impl End {
    fn shutting_down() -> End {
        End(status::shutting_down())
    }
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> End {
        End(status::store(e))
    }
}

impl<S: Store> Connection<S> {
    async fn run(mut self, mut inbound: Streaming<v1::AgentMessage>) {
        let result = self.serve(&mut inbound).await;
        self.metrics.streams.dec();
        match result {
            Ok(()) => tracing::debug!(host = %self.host, peer = %self.peer, "Agent stream closed."),
            Err(End(status)) => {
                // When stopping, every agent is told the same at once: the server logs it once.
                if self.shutdown.is_cancelled() {
                    tracing::debug!(host = %self.host, peer = %self.peer, "Agent stream ended: {}", status.message());
                } else {
                    tracing::warn!(
                        host = %self.host,
                        peer = %self.peer,
                        code = ?status.code(),
                        "Agent stream ended: {}",
                        status.message()
                    );
                }
                let _ = Box::pin(self.tx.send(Err(status))).await;
            }
        }
    }

    async fn serve(&mut self, inbound: &mut Streaming<v1::AgentMessage>) -> Result<(), End> {
        let hello = tokio::time::timeout(self.limits.hello_timeout, inbound.message());
        let first = match self.unless_stopping(hello).await? {
            Err(_) => {
                self.metrics.reject("hello_timeout");
                return Err(End(Status::deadline_exceeded(format!(
                    "no hello within {:?}",
                    self.limits.hello_timeout
                ))));
            }
            Ok(message) => self.received(message)?,
        };
        let Some(Body::Hello(hello)) = first.and_then(|m| m.body) else {
            self.metrics.reject("no_hello");
            return Err(End(Status::invalid_argument(
                "the first message of a stream must be a hello",
            )));
        };
        // The handlers' futures are boxed: a stream spends its life waiting for its next
        // message, and its task should hold only what that wait needs, not room for the
        // largest handler and its message.
        Box::pin(self.hello(hello)).await?;
        let idle = self.limits.heartbeat * 3;
        let mut snapshot: Option<(u64, Vec<ItemRecord>)> = None;
        loop {
            let message = match self
                .unless_stopping(tokio::time::timeout(idle, inbound.message()))
                .await?
            {
                Err(_) => {
                    return Err(End(Status::deadline_exceeded(format!(
                        "nothing received for {idle:?} (heartbeats are due every {:?})",
                        self.limits.heartbeat
                    ))));
                }
                Ok(message) => match self.received(message)? {
                    None => return Ok(()),
                    Some(message) => message,
                },
            };
            Box::pin(self.handle(message, &mut snapshot)).await?;
        }
    }

    /// One message after the hello: a batch, a heartbeat or a snapshot chunk.
    async fn handle(
        &mut self,
        message: v1::AgentMessage,
        snapshot: &mut Option<(u64, Vec<ItemRecord>)>,
    ) -> Result<(), End> {
        match message.body {
            Some(Body::Batch(batch)) => self.batch(batch).await,
            Some(Body::Heartbeat(hb)) => self.heartbeat(hb).await,
            Some(Body::Snapshot(chunk)) => self.snapshot_chunk(chunk, snapshot).await,
            Some(Body::Hello(_)) => {
                self.metrics.reject("second_hello");
                Err(End(Status::invalid_argument(
                    "a stream says hello once; open a new stream to start over",
                )))
            }
            None => {
                self.metrics.reject("empty_message");
                Err(End(Status::invalid_argument("empty message")))
            }
        }
    }

    /// Waits for `next` (the next message), unless the collector is stopping first. Only
    /// waits are cut short: a message in hand is handled to the end, so a batch that reached
    /// the writer is committed and acknowledged before the stream ends.
    async fn unless_stopping<T>(&self, next: impl Future<Output = T>) -> Result<T, End> {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(End::shutting_down()),
            next = next => Ok(next),
        }
    }

    /// Turns a receive error into the status the agent gets.
    fn received(
        &self,
        message: Result<Option<v1::AgentMessage>, Status>,
    ) -> Result<Option<v1::AgentMessage>, End> {
        message.map_err(|status| {
            let reason = match status.code() {
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => "oversized",
                tonic::Code::Internal => "malformed",
                _ => "transport",
            };
            self.metrics.reject(reason);
            End(status)
        })
    }

    async fn send(&self, body: collector_message::Body) -> Result<(), End> {
        self.tx
            .send(Ok(v1::CollectorMessage { body: Some(body) }))
            .await
            .map_err(|_| End(Status::cancelled("the agent went away")))
    }

    async fn hello(&mut self, hello: v1::Hello) -> Result<(), End> {
        if hello.protocol_version != v1::PROTOCOL_VERSION {
            self.metrics.reject("protocol_version");
            let upgrade = if hello.protocol_version < v1::PROTOCOL_VERSION {
                "; upgrade driftwatch-agent to this collector's release"
            } else {
                ""
            };
            return Err(End(Status::failed_precondition(format!(
                "unsupported protocol version {} (this collector speaks {}){upgrade}",
                hello.protocol_version,
                v1::PROTOCOL_VERSION
            ))));
        }
        let identity = hello.identity.unwrap_or_default();
        check_field("identity.host", &identity.host, true)?;
        check_field("stream_id", &hello.stream_id, true)?;
        for (name, value) in [
            ("identity.hostname", &identity.hostname),
            ("agent_version", &hello.agent_version),
            ("baseline_id", &hello.baseline_id),
        ] {
            check_field(name, value, false)?;
        }
        if let Some(bound) = self.bound.as_deref()
            && bound != identity.host
        {
            self.metrics.reject("identity");
            self.metrics.identity_refused.inc();
            tracing::warn!(
                certificate_host = bound,
                claimed_host = %identity.host,
                peer = %self.peer,
                "Refused a hello for another host than the client certificate's."
            );
            return Err(End(Status::permission_denied(format!(
                "this client certificate is for host {bound}; a hello as host {} is refused",
                identity.host
            ))));
        }
        self.host = identity.host.clone();
        self.stream_id = hello.stream_id.clone();
        let info = HostInfo {
            host: identity.host.clone(),
            identity: host_identity(identity),
            agent_version: hello.agent_version,
            baseline_id: hello.baseline_id,
            image_name: hello.image_name,
            image_version: hello.image_version,
            boot_id: hello.boot_id,
        };
        let store = self.store.clone();
        let state = blocking(move || store.hello(&info, store::now_millis())).await?;
        let (welcome_seq, snapshot) =
            resume(&state, &hello.stream_id, hello.last_seq, hello.oldest_seq);
        self.connection = state.connection;
        self.last_seq = if state.stream_id == self.stream_id {
            state.last_seq
        } else {
            0
        };
        if let Some(reason) = &snapshot {
            self.snapshot_asked = Some(tokio::time::Instant::now());
            self.metrics.snapshot_requests.inc();
            tracing::info!(host = %self.host, peer = %self.peer, "Agent connected; asking for a snapshot: {reason}.");
        } else {
            tracing::info!(host = %self.host, peer = %self.peer, resume_after = welcome_seq, "Agent connected.");
        }
        self.send(collector_message::Body::Welcome(v1::Welcome {
            last_seq: welcome_seq,
            snapshot_required: snapshot.is_some(),
            reason: snapshot.unwrap_or_default(),
            collector_version: env!("CARGO_PKG_VERSION").into(),
            heartbeat_seconds: self.limits.heartbeat.as_secs().max(1) as u32,
        }))
        .await
    }

    async fn batch(&mut self, batch: v1::EventBatch) -> Result<(), End> {
        if batch.events.len() > self.limits.max_batch_events {
            self.metrics.reject("batch_too_large");
            return Err(End(Status::out_of_range(format!(
                "batch of {} events (limit {})",
                batch.events.len(),
                self.limits.max_batch_events
            ))));
        }
        if batch.events.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(batch.events.len());
        for e in batch.events {
            events.push(event_record(e).map_err(|m| {
                self.metrics.reject("malformed_event");
                End(Status::invalid_argument(m.to_string()))
            })?);
        }
        let result = self
            .writer
            .write(Write::Batch {
                host: self.host.clone(),
                stream_id: self.stream_id.clone(),
                events,
                received_at: store::now_millis(),
            })
            .await;
        let applied = match result {
            Ok(applied) => applied,
            Err(StoreError::Rejected(m)) => {
                self.metrics.reject("sequence");
                return Err(End(Status::failed_precondition(m)));
            }
            Err(e) => return Err(e.into()),
        };
        self.last_seq = applied.last_seq;
        self.last_seen_written = Some(tokio::time::Instant::now());
        self.send(collector_message::Body::Ack(v1::Ack {
            seq: applied.last_seq,
        }))
        .await
    }

    /// Ends the stream of a host whose enrolled certificate an admin revoked since it
    /// connected (the access check refuses it at its next connection).
    async fn not_revoked(&mut self) -> Result<(), End> {
        let Some(serial) = self.certificate.clone() else {
            return Ok(());
        };
        match self.reader.certificate(&serial).await? {
            // Not issued by enrollment (a hand-made PKI's): nothing to follow.
            None => self.certificate = None,
            Some(c) if c.revoked_at.is_some() => {
                let message = crate::access::revoked(&self.host, &c);
                tracing::warn!(host = %self.host, peer = %self.peer, "Ending the stream of a revoked certificate.");
                self.metrics.reject("revoked");
                return Err(End(Status::unauthenticated(message)));
            }
            Some(_) => {}
        }
        Ok(())
    }

    async fn heartbeat(&mut self, hb: v1::Heartbeat) -> Result<(), End> {
        self.note_spool_health(&hb);
        let now = tokio::time::Instant::now();
        // last_seen is kept to within a third of the silence threshold, not per heartbeat.
        if self
            .last_seen_written
            .is_none_or(|t| now.duration_since(t) >= self.limits.heartbeat * 2)
        {
            self.writer.write_detached(Write::Seen {
                host: self.host.clone(),
                at: store::now_millis(),
            });
            self.last_seen_written = Some(now);
        }
        self.not_revoked().await?;
        // A snapshot asked for and not yet received is asked again only after
        // `snapshot_interval`: until then there is no digest to compare.
        let pending = self
            .snapshot_asked
            .is_some_and(|t| now.duration_since(t) < self.limits.snapshot_interval);
        let Some(StreamHead { state, digest }) = self.reader.stream(&self.host, !pending).await?
        else {
            return Ok(());
        };
        if state.connection > self.connection {
            // The host said hello again since, here or through another collector sharing the
            // database (a flapping network, a half-open connection the agent gave up on): one
            // live stream per host, the newest. Its writes were idempotent all along.
            self.metrics.reject("replaced");
            tracing::info!(host = %self.host, peer = %self.peer, "A newer connection of this host replaced this stream; ending it.");
            return Err(End(Status::aborted(format!(
                "a newer connection of host {} replaced this stream",
                self.host
            ))));
        }
        // Anti-entropy, on every heartbeat: at the same sequence number the agent's set and
        // ours must agree, and the stored set must be this stream's.
        let Some(digest) = digest else {
            return Ok(());
        };
        if state.stream_id.is_empty() {
            // The host has stored nothing yet: there is no set to compare with.
            return Ok(());
        }
        let reason = if state.stream_id != self.stream_id {
            // Another stream spoke for this host since this one said hello (a reinstalled
            // agent, or a second one with this identity): this live one is the host now.
            format!(
                "another stream replaced this host's drift set (at sequence {}) after this \
                 stream said hello",
                state.last_seq
            )
        } else if state.last_seq != hb.seq {
            // Events in flight one way or the other: nothing to compare yet.
            return Ok(());
        } else if digest.as_slice() == hb.digest.as_slice() {
            self.snapshot_asked = None;
            return Ok(());
        } else {
            format!(
                "drift set digest differs from the collector's at sequence {}",
                hb.seq
            )
        };
        self.snapshot_asked = Some(now);
        self.metrics.snapshot_requests.inc();
        tracing::warn!(host = %self.host, seq = hb.seq, "{reason}; asking for a snapshot.");
        self.send(collector_message::Body::SnapshotRequest(
            v1::SnapshotRequest { reason },
        ))
        .await
    }

    /// Logs what an agent's heartbeat says about its spool, when it changes: a spool that is
    /// not durable (a full disk on the host), corrupt spool files it quarantined.
    fn note_spool_health(&mut self, hb: &v1::Heartbeat) {
        let health = (hb.spool_problem.clone(), hb.spool_quarantined);
        if health == self.spool_health {
            return;
        }
        let (problem, quarantined) = &health;
        if *quarantined > self.spool_health.1 {
            tracing::warn!(host = %self.host, quarantined, "The agent quarantined corrupt spool files at its start and re-synced by snapshot.");
        }
        if *problem != self.spool_health.0 {
            if problem.is_empty() {
                tracing::info!(host = %self.host, "The agent's spool is durable again.");
            } else {
                // The agent's words: bounded and quoted in the log.
                let spool: String = problem.chars().take(200).collect();
                tracing::warn!(host = %self.host, ?spool, "The agent's spool is not durable; its events still arrive, from its memory.");
            }
        }
        self.spool_health = health;
    }

    async fn snapshot_chunk(
        &mut self,
        chunk: v1::SnapshotChunk,
        pending: &mut Option<(u64, Vec<ItemRecord>)>,
    ) -> Result<(), End> {
        let (seq, items) = pending.get_or_insert_with(|| (chunk.seq, Vec::new()));
        if *seq != chunk.seq {
            self.metrics.reject("snapshot");
            return Err(End(Status::invalid_argument(format!(
                "snapshot chunk for sequence {} inside a snapshot for {seq}",
                chunk.seq
            ))));
        }
        // Storing it would move the stream back: the sequence numbers after it, already in the
        // history, would then be refused forever when the agent sends them (again).
        if *seq < self.last_seq {
            self.metrics.reject("snapshot");
            return Err(End(Status::failed_precondition(format!(
                "snapshot as of sequence {seq} is older than what the collector holds of this \
                 stream (up to sequence {}); number it after that",
                self.last_seq
            ))));
        }
        if items.len() + chunk.items.len() > self.limits.max_snapshot_items {
            self.metrics.reject("snapshot_too_large");
            return Err(End(Status::out_of_range(format!(
                "snapshot of more than {} items",
                self.limits.max_snapshot_items
            ))));
        }
        for item in chunk.items {
            items.push(ItemRecord::from_wire(item).map_err(|m| {
                self.metrics.reject("malformed_event");
                End(Status::invalid_argument(format!("snapshot item: {m}")))
            })?);
        }
        if !chunk.last {
            return Ok(());
        }
        let (seq, items) = pending.take().expect("just inserted");
        let count = items.len();
        self.writer
            .write(Write::Snapshot {
                host: self.host.clone(),
                stream_id: self.stream_id.clone(),
                seq,
                items,
                received_at: store::now_millis(),
            })
            .await?;
        self.metrics.snapshots.inc();
        self.last_seq = seq;
        self.snapshot_asked = None;
        tracing::info!(host = %self.host, seq, items = count, "Snapshot replaced the host's drift set.");
        self.send(collector_message::Body::Ack(v1::Ack { seq }))
            .await
    }
}

/// Where an agent resumes: the sequence number to continue after, and whether (and why) it
/// must send a snapshot instead because the store cannot be brought up to date from the
/// records the agent still holds.
pub fn resume(
    stored: &StreamState,
    stream_id: &str,
    agent_last: u64,
    agent_oldest: u64,
) -> (u64, Option<String>) {
    let fresh_host = stored.stream_id.is_empty() && stored.last_seq == 0;
    if !fresh_host && stored.stream_id != stream_id {
        return (
            0,
            Some("the agent's stream is new to the collector (its state was reset)".into()),
        );
    }
    let have = stored.last_seq;
    if agent_last < have {
        return (
            have,
            Some(format!(
                "the collector holds up to sequence {have}, beyond the agent's {agent_last}"
            )),
        );
    }
    if agent_last > have && (agent_oldest == 0 || agent_oldest > have + 1) {
        return (
            have,
            Some(format!(
                "the agent no longer holds sequence {} (its oldest is {agent_oldest})",
                have + 1
            )),
        );
    }
    (have, None)
}

/// Why an event of a batch was refused.
#[derive(Debug, thiserror::Error)]
enum EventError {
    #[error("{0}")]
    SeqZero(DriftError),
    #[error("event {seq}: {source}")]
    Invalid {
        seq: u64,
        #[source]
        source: ItemError,
    },
    #[error("event {seq}: observed_at {text:?} is not an RFC 3339 time")]
    ObservedAt { seq: u64, text: String },
}

fn event_record(e: v1::Event) -> Result<EventRecord, EventError> {
    let seq = e.seq;
    if seq == 0 {
        return Err(EventError::SeqZero(DriftError::SeqZero));
    }
    let invalid = |source| EventError::Invalid { seq, source };
    let transition =
        Transition::from_wire(e.transition).map_err(|d| invalid(ItemError::Invalid(d)))?;
    let observed_at =
        store::parse_rfc3339(&e.observed_at).ok_or_else(|| EventError::ObservedAt {
            seq,
            text: e.observed_at.clone(),
        })?;
    let item = e
        .item
        .ok_or(ItemError::Invalid(DriftError::Empty))
        .and_then(ItemRecord::from_wire)
        .map_err(invalid)?;
    Ok(EventRecord {
        seq: e.seq,
        transition,
        observed_at,
        item,
    })
}

/// What a hello says of the host, as the store keeps it.
fn host_identity(id: v1::HostIdentity) -> HostIdentity {
    HostIdentity {
        source: id.source,
        hostname: id.hostname,
        cloud: id.cloud,
        region: id.region,
        availability_zone: id.availability_zone,
        instance_id: id.instance_id,
        image_id: id.image_id,
        private_ip: id.private_ip,
        machine_id_hash: id.machine_id_hash,
        user_data_sha1: id.user_data_sha1,
        tags: id.tags.into_iter().collect(),
        account_id: id.account_id,
    }
}

fn check_field(name: &str, value: &str, required: bool) -> Result<(), End> {
    if required && value.is_empty() {
        return Err(End(Status::invalid_argument(format!(
            "hello without {name}"
        ))));
    }
    if value.len() > 512 || value.chars().any(char::is_control) {
        return Err(End(Status::invalid_argument(format!(
            "hello {name} is longer than 512 bytes or holds control characters"
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(stream: &str, last: u64) -> StreamState {
        StreamState {
            connection: 1,
            stream_id: stream.into(),
            last_seq: last,
        }
    }

    #[test]
    fn resume_continues_after_what_is_stored() {
        assert_eq!(resume(&state("", 0), "s", 0, 0), (0, None));
        assert_eq!(resume(&state("", 0), "s", 10, 1), (0, None));
        assert_eq!(resume(&state("s", 4), "s", 10, 3), (4, None));
        assert_eq!(resume(&state("s", 4), "s", 10, 5), (4, None));
        assert_eq!(resume(&state("s", 10), "s", 10, 0), (10, None));
    }

    #[test]
    fn resume_asks_for_a_snapshot_when_records_are_gone() {
        // A new host whose first records were already released (compacted spool).
        assert!(resume(&state("", 0), "s", 10, 6).1.is_some());
        // The agent released records the collector never stored.
        assert!(resume(&state("s", 4), "s", 10, 7).1.is_some());
        assert!(resume(&state("s", 4), "s", 10, 0).1.is_some());
        // The agent is behind the store: its state was restored from an old copy.
        assert_eq!(resume(&state("s", 9), "s", 5, 1).0, 9);
        assert!(resume(&state("s", 9), "s", 5, 1).1.is_some());
        // A new stream for a known host (state directory wiped).
        assert!(resume(&state("old", 9), "new", 3, 1).1.is_some());
    }
}
