//! Shipping: the agent's stream to the collector (`driftwatch.v1.Ingest/Stream`; the contract
//! is the comments of `proto/proto/driftwatch/v1/agent.proto`), the last room of the agent's
//! data path. The uplink task (`stream.rs`) connects, says who this host is ([`identity`]),
//! reads the spool and reports acknowledgements; the daemon's side of it is `daemon/link.rs`.
//!
//! ```text
//!  daemon Session                                     uplink task                 collector
//!  ledger ─ Head (watch: seq, digest, items, ──────►  Hello                    ──►
//!           spool's last seq)                         records after the cursor ──► EventBatch
//!  spool (Arc<Mutex>) ◄─ one bounded read per batch ─ heartbeat every N s      ──► Heartbeat
//!  ledger ─ snapshot, made on request (mpsc 1) ─────► snapshot chunks          ──► SnapshotChunk
//!  checkpoint: save ledger, then release ◄─ acked seq (watch) ◄─ Welcome, Ack  ◄──
//! ```
//!
//! # Who owns what
//!
//! The Session owns the ledger and decides everything about the spool (append, release,
//! compaction); the uplink reads spool records and reports what the collector acknowledged.
//!
//! - Nothing is released that the collector did not acknowledge: the uplink publishes the
//!   acknowledged sequence number (clamped to what it sent on that stream; a `Welcome` counts
//!   when it needs no snapshot), and the Session's checkpoint saves the ledger and only then
//!   releases spool records up to that number ([`release`](crate::spool::shared::release)).
//! - Memory does not grow with the event rate: the Session never queues anything for the
//!   uplink, it only replaces a watch value ([`Head`]); the uplink reads at most
//!   [`MAX_BATCH_EVENTS`] records (about [`MAX_BATCH_BYTES`]) at a time, after its cursor, at
//!   the pace the collector takes them (an outbound queue of [`OUTBOUND_QUEUE`] messages, then
//!   HTTP/2 flow control). The spool lock is held for one bounded read.
//! - Snapshots are consistent: the Session makes one in a single step on its own task (every
//!   item in its wire form, at the ledger's sequence number), and the stream continues with the
//!   records after that number.
//! - Sequence numbers go out in order without gaps: when the spool no longer holds the next
//!   record the collector needs (compacted while the collector was away, or a record that does
//!   not decode), the uplink sends a snapshot instead. The hello's `oldest_seq` says the same
//!   to the collector, which then asks for one at once.
//!
//! # Connection lifecycle
//!
//! Connect, hello, welcome; then events, heartbeats and snapshots until the stream fails or
//! ends, then reconnect after a jittered exponential backoff ([`BACKOFF_MIN`] doubling to
//! [`BACKOFF_MAX`], ±20 %), reset once a connection stayed up [`STABLE_AFTER`]; with several
//! collector URLs (replicas sharing a database) each new connection goes to the next. A failure is
//! logged when the state changes (connected → failing, or a different error), not on every
//! retry. On shutdown the uplink stops sending and waits up to [`DRAIN_DEADLINE`] for the
//! acknowledgement of what it sent, so a clean restart does not resend it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::CollectorConfig;
use crate::ledger::{DriftItem, Ledger};
use crate::spool::shared::SharedSpool;
use crate::spool::{Spool, SpoolError};
use crate::telemetry::{CollectorStatus, Shared};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 256;
/// Spool bytes read for one batch (the record crossing the bound is included; the collector
/// takes messages of up to 4 MiB).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Most items in one snapshot chunk, and their bytes (same rule as batches).
pub const SNAPSHOT_CHUNK_ITEMS: usize = 500;
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Messages queued for the transport; beyond it the uplink waits (and reads nothing).
pub const OUTBOUND_QUEUE: usize = 4;
/// TCP (and TLS) connection time limit.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the collector may take to answer the hello.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff: one that fails right after its
/// welcome (a refused batch, say) keeps backing off instead of hammering the collector.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long shutdown waits for the acknowledgement of what was sent.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// An uplink failure; each ends one connection (the uplink reconnects), except as noted.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// A configuration problem: reported by `validate` and at start.
    #[error("collector {url}: invalid endpoint")]
    Endpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A configuration problem: reported by `validate` and at start.
    #[error("cannot read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration problem: reported by `validate` and at start.
    #[error("collector {url}: TLS settings (collector.ca, collector.cert, collector.key)")]
    Tls {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the collector ended the stream: {code:?}: {message}")]
    Rejected { code: tonic::Code, message: String },
    /// The connection failed under a call (reset, closed, a TLS alert after the handshake):
    /// a status the transport made, not the collector's answer.
    #[error("the connection to the collector failed")]
    Transport(#[source] TransportFailure),
    #[error("the collector closed the stream")]
    Closed,
    #[error("the collector broke the protocol: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("the host identity: {0}")]
    Identity(#[from] identity::IdentityError),
    #[error("enrollment: {0}")]
    Enroll(#[from] enroll::EnrollError),
    #[error("reading the spool")]
    Spool(#[from] SpoolError),
    /// The daemon side went away (shutdown): not a failure.
    #[error("the daemon stopped")]
    DaemonGone,
}

impl From<tonic::Status> for UplinkError {
    fn from(status: tonic::Status) -> Self {
        // A status decoded from the collector's answer has no source; one with a source was
        // made on this side from the transport's error.
        if std::error::Error::source(&status).is_some() {
            return UplinkError::Transport(TransportFailure(status));
        }
        UplinkError::Rejected {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// A status tonic made from a transport error: shown as its message, with the transport's
/// error (hyper, io, rustls) as its source, so the chain can be walked and diagnosed.
#[derive(Debug)]
pub struct TransportFailure(pub tonic::Status);

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for TransportFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// An uplink failure for the log and the status: the error and its sources, and before the
/// stream was up (`connecting`), what they mean for the operator when that can be told
/// (see [`driftwatch_proto::transport`]): "…: the collector requires a client certificate
/// (mTLS): set collector.cert and collector.key".
pub fn describe(error: &UplinkError, collector: &CollectorConfig, connecting: bool) -> String {
    use driftwatch_proto::transport::{Settings, diagnose};
    let text = crate::errors::error_chain(error);
    if !connecting
        || !matches!(
            error,
            UplinkError::Connect { .. } | UplinkError::Transport(_)
        )
    {
        return text;
    }
    let ca = collector.ca.as_ref().map(|p| p.display().to_string());
    let settings = Settings {
        url: collector.url(),
        ca: ca.as_deref(),
        client_cert: collector.cert.is_some(),
        ca_setting: "collector.ca",
        cert_setting: "collector.cert and collector.key",
    };
    match diagnose(error, &settings) {
        Some(diagnosis) => format!("{}: {text}", diagnosis.explain(&settings)),
        None => text,
    }
}

/// The gRPC endpoint for the collector, with TLS (the configured CA, and the client
/// certificate for mTLS) when the URL is https. Reads and parses the PEM files, so a bad one
/// is reported by `validate` and at start, not at the first connection.
pub fn endpoint(c: &CollectorConfig) -> Result<Endpoint, UplinkError> {
    endpoint_with(c, None)
}

/// [`endpoint`], presenting the host's enrolled certificate when given (instead of
/// `collector.cert` and `collector.key`).
pub fn endpoint_with(
    c: &CollectorConfig,
    enrolled: Option<&enroll::Credentials>,
) -> Result<Endpoint, UplinkError> {
    let invalid = |source| UplinkError::Endpoint {
        url: c.url().to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(c.url().to_owned())
        .map_err(invalid)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        // A collector that vanished without closing the connection is noticed in 40 s, not
        // after TCP's retransmission timeout.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .user_agent(format!("driftwatch-agent/{}", env!("CARGO_PKG_VERSION")))
        .map_err(invalid)?;
    if c.is_tls() {
        let read = |what, path: &Path| {
            // PEM files of a few KiB: any size is not read whole.
            crate::fsutil::read_bounded(path, 1 << 20).map_err(|source| UplinkError::ReadFile {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &c.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("collector.ca", ca)?));
        }
        if let Some(enrolled) = enrolled {
            tls = tls.identity(Identity::from_pem(&enrolled.cert_pem, &enrolled.key_pem));
        } else if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
            tls = tls.identity(Identity::from_pem(
                read("collector.cert", cert)?,
                read("collector.key", key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|source| UplinkError::Tls {
                url: c.url().to_owned(),
                source,
            })?;
    }
    Ok(endpoint)
}

/// What the Session tells the uplink, replaced after every change (a watch value: the uplink
/// sees the latest, nothing queues).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The ledger's sequence number: the highest produced (the hello's `last_seq`).
    pub seq: u64,
    /// The ledger's digest and item count at `seq` (heartbeats).
    pub digest: [u8; 32],
    pub items: u64,
    /// The spool's last sequence number: records up to it can be read. Lower than `seq` only
    /// after the ledger's numbering jumped for a snapshot.
    pub spool_last: u64,
    /// Why the spool is not durable ("unavailable: disk full"), "" while it is (heartbeats).
    pub spool_problem: String,
    /// Corrupt spool files quarantined at start (heartbeats).
    pub quarantined: u64,
}

impl Head {
    pub fn of(ledger: &Ledger, spool: &Spool) -> Head {
        Head {
            seq: ledger.seq(),
            digest: ledger.digest(),
            items: ledger.len() as u64,
            spool_last: spool.last_seq().unwrap_or(0),
            spool_problem: spool
                .unavailable()
                .map(|why| format!("unavailable: {why}"))
                .unwrap_or_default(),
            quarantined: spool.quarantined(),
        }
    }
}

/// The uplink asks the Session for a snapshot of the ledger.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// The snapshot must be numbered after this (the collector's last sequence number), if
    /// given; the ledger's numbering jumps when it is behind.
    pub after: Option<u64>,
    pub reply: oneshot::Sender<Snapshot>,
}

/// The ledger's items in their wire form, as of `seq`.
#[derive(Debug)]
pub struct Snapshot {
    pub seq: u64,
    pub items: Vec<driftwatch_proto::v1::DriftItem>,
}

/// Answers a snapshot request from the ledger (on the Session's task, so the items and the
/// sequence number are one consistent state). Returns whether the ledger's sequence number
/// moved, in which case the caller must save the ledger.
pub fn answer(request: SnapshotRequest, ledger: &mut Ledger) -> bool {
    if request.reply.is_closed() {
        return false;
    }
    // A snapshot is never numbered 0, and comes after what the collector holds: a collector
    // ahead of the agent (a state directory restored from a backup) must not have its numbers
    // reused for other events.
    let floor = request.after.map_or(1, |a| a.saturating_add(1));
    let advanced = ledger.seq() < floor;
    if advanced {
        tracing::info!(
            from = ledger.seq(),
            to = floor,
            "Numbering jumps ahead of the collector's for the snapshot."
        );
        ledger.advance_seq_to(floor);
    }
    let items = ledger.items().map(DriftItem::to_wire).collect();
    let _ = request.reply.send(Snapshot {
        seq: ledger.seq(),
        items,
    });
    advanced
}

/// What the uplink needs to say who it is.
#[derive(Clone, Debug)]
pub struct Settings {
    pub collector: CollectorConfig,
    pub identity: identity::Sources,
    pub stream_id: String,
    pub baseline_id: String,
    pub image_name: String,
    pub image_version: String,
}

/// Something the Session must act on.
#[derive(Debug)]
pub enum LinkEvent {
    /// The collector acknowledged up to this sequence number: checkpoint.
    Acked(u64),
    /// Make a snapshot: [`answer`].
    Snapshot(SnapshotRequest),
}

/// The Session's end of the uplink.
pub struct Link {
    head: watch::Sender<Head>,
    acked: watch::Receiver<u64>,
    requests: mpsc::Receiver<SnapshotRequest>,
    closed: bool,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Link {
    /// Starts the uplink task. Fails only on configuration problems (the endpoint).
    pub fn start(
        settings: Settings,
        spool: SharedSpool,
        head: Head,
        shared: Shared,
        cancel: CancellationToken,
    ) -> Result<Link, UplinkError> {
        // One endpoint per URL, in the list's order (rotated with it on failover); each
        // built now, so a bad one is a configuration error at start.
        let mut endpoints = Vec::with_capacity(settings.collector.urls.len());
        let mut collector = settings.collector.clone();
        for _ in 0..collector.urls.len() {
            endpoints.push(endpoint(&collector)?);
            warn_if_cleartext(collector.url());
            collector.fail_over();
        }
        let (head_tx, head_rx) = watch::channel(head);
        let (acked_tx, acked_rx) = watch::channel(0);
        let (requests_tx, requests_rx) = mpsc::channel(1);
        {
            let mut status = shared.status.lock().unwrap_or_else(|e| e.into_inner());
            status.collector = Some(CollectorStatus {
                url: settings.collector.url().to_owned(),
                state: "connecting".into(),
                stream_id: settings.stream_id.clone(),
                ..CollectorStatus::default()
            });
        }
        // Wakes the renewal when the uplink enrolled (a new certificate to renew in time).
        let enrolled = Arc::new(tokio::sync::Notify::new());
        if let Some(enrolling) = settings.collector.enroll.clone() {
            tokio::spawn(enroll::renewal(
                enrolling,
                settings.collector.clone(),
                enrolled.clone(),
                cancel.clone(),
            ));
        }
        let uplink = Uplink {
            settings,
            endpoints,
            spool,
            head: head_rx,
            acked: acked_tx,
            requests: requests_tx,
            shared,
            enrolled,
            cancel: cancel.clone(),
        };
        Ok(Link {
            head: head_tx,
            acked: acked_rx,
            requests: requests_rx,
            closed: false,
            cancel,
            task: Some(tokio::spawn(uplink.run())),
        })
    }

    /// Tells the uplink the new state (new records, a new digest).
    pub fn publish(&self, head: Head) {
        self.head.send_if_modified(|h| {
            let changed = *h != head;
            *h = head;
            changed
        });
    }

    /// The highest sequence number the collector acknowledged so far.
    pub fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The next thing to act on; pending forever once the uplink stopped.
    pub async fn next(&mut self) -> LinkEvent {
        while !self.closed {
            tokio::select! {
                changed = self.acked.changed() => match changed {
                    Ok(()) => return LinkEvent::Acked(*self.acked.borrow_and_update()),
                    Err(_) => self.closed = true,
                },
                request = self.requests.recv() => match request {
                    Some(r) => return LinkEvent::Snapshot(r),
                    None => self.closed = true,
                },
            }
        }
        std::future::pending().await
    }

    /// Stops the uplink: it stops sending, waits up to [`DRAIN_DEADLINE`] for the
    /// acknowledgement of what it sent, and closes the stream.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            // Snapshot requests are no longer answered: the uplink sees them fail and ends.
            self.requests.close();
            if let Err(error) = task.await {
                tracing::error!(%error, "The uplink task failed.");
            }
        }
    }
}

fn warn_if_cleartext(url: &str) {
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return;
    };
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if uri.scheme_str() == Some("http") && !loopback {
        tracing::warn!(
            url,
            "The collector is reached without TLS off loopback: drift reports travel in clear \
             text and the collector cannot authenticate this host. Use https with \
             collector.ca, collector.cert and collector.key."
        );
    }
}

/// A new random stream id: 16 random bytes, hex.
pub fn new_stream_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

pub mod enroll;
pub mod identity;
mod stream;
use stream::Uplink;

#[cfg(test)]
pub(crate) mod tests;
