//! The agent's metrics (Prometheus) and its two local listeners.
//!
//! Metric names follow `driftwatch_agent_<what>_<unit>[_total]`, all declared here. Labels never
//! carry a path or a host id.
//!
//! - The **status socket** (unix, [`serve_status`]) serves `/status`: the drift items with
//!   their diffs, which may quote files only root can read (`/etc/shadow`). It is created mode
//!   0600, so only the agent's user and root connect to it (`sudo driftwatch-agent status`).
//! - The **metrics listener** (TCP, [`serve_metrics`]) serves `/metrics` and `/healthz` only:
//!   counts and states, never a path or a file's content, so any local user (a Prometheus
//!   scraper) may read it. `/status` there is a 404.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::evaluate::baseline::ImageInfo;
use crate::http_client;
use crate::ledger::DriftItem;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabel {
    pub transition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RescanLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: &'static str,
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    pub events: Family<TransitionLabel, Counter>,
    pub rescans: Family<RescanLabel, Counter>,
    pub overflows: Counter,
    pub watched_dirs: Gauge,
    pub unwatched_dirs: Gauge,
    /// Recorded trees that are not directories (yet), watched for from an ancestor.
    pub pending_dirs: Gauge,
    pub coverage: Gauge<f64, AtomicU64>,
    pub queue_depth: Gauge,
    pub spool_bytes: Gauge,
    pub spool_unacked: Gauge,
    /// 1 while the spool writes to disk, 0 while it is unavailable (disk full).
    pub spool_available: Gauge,
    /// Events held in memory while the spool is unavailable.
    pub spool_held: Gauge,
    /// Corrupt spool files moved to quarantine.
    pub spool_quarantined: Counter,
    /// Damaged ledger and stream-id files moved to quarantine.
    pub state_quarantined: Counter,
    pub hashed_bytes: Counter,
    /// Large files waiting to be hashed (or being hashed) off the event path.
    pub background_hashes: Gauge,
    /// Large files not queued for a background hash (the queue was full).
    pub background_hashes_dropped: Counter,
    pub evaluations: Counter,
    pub evaluation_errors: Counter,
    pub drift_items: Family<SeverityLabel, Gauge>,
    /// 1 while a stream to the collector is open (the Welcome received), else 0.
    pub uplink_connected: Gauge,
    /// The highest sequence number the collector acknowledged.
    pub uplink_acked_seq: Gauge,
    pub uplink_reconnects: Counter,
    pub uplink_events_sent: Counter,
    pub uplink_snapshots_sent: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("driftwatch_agent");
        let m = Metrics {
            events: Family::default(),
            rescans: Family::default(),
            overflows: Counter::default(),
            watched_dirs: Gauge::default(),
            unwatched_dirs: Gauge::default(),
            pending_dirs: Gauge::default(),
            coverage: Gauge::default(),
            queue_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_unacked: Gauge::default(),
            spool_available: Gauge::default(),
            spool_held: Gauge::default(),
            spool_quarantined: Counter::default(),
            state_quarantined: Counter::default(),
            hashed_bytes: Counter::default(),
            background_hashes: Gauge::default(),
            background_hashes_dropped: Counter::default(),
            evaluations: Counter::default(),
            evaluation_errors: Counter::default(),
            drift_items: Family::default(),
            uplink_connected: Gauge::default(),
            uplink_acked_seq: Gauge::default(),
            uplink_reconnects: Counter::default(),
            uplink_events_sent: Counter::default(),
            uplink_snapshots_sent: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events",
            "Drift events emitted, by transition",
            m.events.clone(),
        );
        registry.register(
            "rescans",
            "Rescans, by kind (startup, periodic, full_hash, overflow, degraded)",
            m.rescans.clone(),
        );
        registry.register(
            "inotify_overflows",
            "Kernel inotify queue overflows",
            m.overflows.clone(),
        );
        registry.register(
            "watched_directories",
            "Directories with an inotify watch",
            m.watched_dirs.clone(),
        );
        registry.register(
            "unwatched_directories",
            "Directories left to periodic rescans (watch limit)",
            m.unwatched_dirs.clone(),
        );
        registry.register(
            "pending_directories",
            "Recorded trees that do not exist (yet), watched for from their nearest existing ancestor",
            m.pending_dirs.clone(),
        );
        registry.register(
            "coverage_ratio",
            "Watched directories / directories to watch",
            m.coverage.clone(),
        );
        registry.register(
            "queue_depth_paths",
            "Paths waiting to be evaluated",
            m.queue_depth.clone(),
        );
        registry.register(
            "spool_size_bytes",
            "Bytes of records in the on-disk spool (preallocated space not counted)",
            m.spool_bytes.clone(),
        );
        registry.register(
            "spool_unacked_records",
            "Spool records not yet acknowledged",
            m.spool_unacked.clone(),
        );
        registry.register(
            "spool_available",
            "1 while the spool writes to disk, 0 while it is unavailable (disk full)",
            m.spool_available.clone(),
        );
        registry.register(
            "spool_held_records",
            "Events held in memory while the spool is unavailable",
            m.spool_held.clone(),
        );
        registry.register(
            "spool_quarantined",
            "Corrupt spool files moved to the quarantine directory",
            m.spool_quarantined.clone(),
        );
        registry.register(
            "state_quarantined",
            "Damaged ledger and stream-id files moved to the quarantine directory",
            m.state_quarantined.clone(),
        );
        registry.register(
            "hashed_bytes",
            "Bytes hashed by rescans",
            m.hashed_bytes.clone(),
        );
        registry.register(
            "background_hashes",
            "Large files waiting to be hashed, or being hashed, off the event path",
            m.background_hashes.clone(),
        );
        registry.register(
            "background_hashes_dropped",
            "Large files left with their hash pending until the next rescan (the queue was full)",
            m.background_hashes_dropped.clone(),
        );
        registry.register(
            "evaluations",
            "Paths evaluated after a change",
            m.evaluations.clone(),
        );
        registry.register(
            "evaluation_errors",
            "Paths that could not be evaluated",
            m.evaluation_errors.clone(),
        );
        registry.register(
            "drift_items",
            "Current drift items, by severity",
            m.drift_items.clone(),
        );
        registry.register(
            "uplink_connected",
            "1 while the stream to the collector is up, else 0",
            m.uplink_connected.clone(),
        );
        registry.register(
            "uplink_acked_sequence",
            "Highest sequence number the collector acknowledged",
            m.uplink_acked_seq.clone(),
        );
        registry.register(
            "uplink_reconnects",
            "Connection attempts to the collector after a failure or a closed stream",
            m.uplink_reconnects.clone(),
        );
        registry.register(
            "uplink_events_sent",
            "Events sent to the collector (a resend after a reconnect counts again)",
            m.uplink_events_sent.clone(),
        );
        registry.register(
            "uplink_snapshots_sent",
            "Full drift-set snapshots sent to the collector",
            m.uplink_snapshots_sent.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Coverage of the watched trees.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub watched_dirs: usize,
    pub unwatched_dirs: usize,
    pub ratio: f64,
    /// Up to 20 unwatched directories, for the operator.
    pub unwatched_sample: Vec<String>,
    /// Recorded trees that are not directories (missing, deleted, or something else in
    /// their place): watched for from their nearest existing ancestor, and watched as trees
    /// once they appear. Not counted in `ratio`: nothing of them exists to watch yet.
    pub pending_dirs: usize,
    /// Up to 20 pending trees.
    pub pending_sample: Vec<String>,
}

/// The last rescan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RescanInfo {
    pub kind: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub entries: u64,
    pub bytes_hashed: u64,
    pub errors: usize,
}

/// The spool's state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpoolInfo {
    /// `durable`, or `unavailable: disk full` (events held in memory, still sent).
    pub state: String,
    pub bytes: u64,
    pub unacked: u64,
    pub last_seq: u64,
    pub acked_seq: u64,
    /// Events held in memory while unavailable.
    pub held: u64,
    /// Corrupt spool files moved to quarantine at start.
    pub quarantined: u64,
}

/// The uplink to the collector (collector mode only).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectorStatus {
    pub url: String,
    /// `connecting` (the first attempt), `connected` or `disconnected`.
    pub state: String,
    /// The host key sent in the hello, once resolved.
    pub host: String,
    pub identity_source: String,
    pub stream_id: String,
    /// The highest sequence number the collector acknowledged (0: none yet).
    pub last_ack_seq: u64,
    /// Why the last connection failed or ended; `None` while connected after a clean start.
    pub last_error: Option<String>,
    pub reconnects: u64,
    /// RFC 3339, when the current connection was established.
    pub connected_since: Option<String>,
}

/// What `driftwatch-agent status` shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// `starting`, `watching` or `degraded` (some directories have no watch).
    pub state: String,
    pub pid: u32,
    pub started_at: String,
    pub baseline_id: String,
    pub image: Option<ImageInfo>,
    pub root: String,
    pub seq: u64,
    pub drift_count: usize,
    pub coverage: Coverage,
    pub last_rescan: Option<RescanInfo>,
    pub spool: SpoolInfo,
    pub evaluation_errors: u64,
    /// Large files whose hash is being computed off the event path (their drift says "hash
    /// pending" until it is done).
    pub hashes_pending: usize,
    /// Damaged state files found at start, each with what was done about it.
    pub faults: Vec<String>,
    /// `None` when standalone.
    pub collector: Option<CollectorStatus>,
    pub drift: Vec<DriftItem>,
}

/// State shared between the daemon and the listener.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub status: Arc<Mutex<Status>>,
}

/// Serves `/metrics` and `/healthz` on `addr` (TCP) until `cancel` fires: nothing that carries
/// a path or a file's content. Returns the bound address (port 0 picks one).
pub async fn serve_metrics(
    addr: SocketAddr,
    shared: Shared,
    cancel: CancellationToken,
) -> io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "Metrics listener is reachable off this host.");
    }
    let app = metrics_routes(Router::new()).with_state(shared);
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "Metrics listener failed.");
        }
    });
    Ok(bound)
}

/// What both listeners serve: counts and states, no path, no content.
fn metrics_routes(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Serves `/status` (and `/metrics`, `/healthz`) on a unix socket at `path`, mode 0600, until
/// `cancel` fires; then removes the socket if it is still this one. See [`bind_private_socket`]
/// for how it is created.
pub fn serve_status(path: &Path, shared: Shared, cancel: CancellationToken) -> io::Result<()> {
    let listener = bind_private_socket(path)?;
    let ours = std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))?;
    let app = metrics_routes(Router::new().route("/status", get(status))).with_state(shared);
    let path = path.to_owned();
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "Status socket failed.");
        }
        // A new session may have put its own socket there already: leave that one.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == ours) {
            let _ = std::fs::remove_file(&path);
        }
    });
    Ok(())
}

/// Why the status socket cannot be created.
#[derive(Debug, thiserror::Error)]
#[error("{} exists and is not a socket (refusing to replace it)", path.display())]
pub struct NotASocket {
    pub path: PathBuf,
}

/// Binds a unix socket at `path` that only its owner (and root) can connect to, whatever the
/// umask: it is bound inside a fresh 0700 directory next to `path` (so nobody else can reach
/// it while it is still open to all), set to 0600, then renamed into place. The rename
/// replaces a stale socket left by a crash, or a symlink — the link itself, never what it
/// points to; anything else at `path` (a file, a directory) is refused.
pub fn bind_private_socket(path: &Path) -> io::Result<tokio::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt as _;
            let kind = m.file_type();
            if !(kind.is_socket() || kind.is_symlink()) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    NotASocket {
                        path: path.to_owned(),
                    },
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // ".sXXXXXX/s" is as long as "agent.sock": the temporary path fits where the final one does.
    let private = tempfile::Builder::new()
        .prefix(".s")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)?;
    let inner = private.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&inner)?;
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&inner, path)?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn status(State(shared): State<Shared>) -> impl IntoResponse {
    let status = shared
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(status)
}

/// How long `driftwatch-agent status` waits for the listener's whole answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);

/// GET `path` from the agent's metrics listener at `addr`, from blocking code; the body of a
/// 200 answer, else an error naming the address, path and status.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let request = http_client::empty_request(hyper::Method::GET, &addr.to_string(), path, &[])
        .map_err(io::Error::other)?;
    // The local listener is trusted: its answer is not capped.
    let exchange = http_client::request_tcp(addr, request, STATUS_TIMEOUT, usize::MAX);
    let response = http_client::block_on(exchange)?.map_err(io::Error::other)?;
    body_of(response, &format!("{addr}{path}"))
}

/// Why the status socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {}", socket.display())]
pub struct SocketConnectError {
    pub socket: PathBuf,
    #[source]
    pub source: io::Error,
}

/// GET `path` from the agent's status socket (`driftwatch-agent status`), from blocking code;
/// the body of a 200 answer. A failed connection keeps its kind (`NotFound`: no agent there;
/// `PermissionDenied`: not the agent's user nor root), with a [`SocketConnectError`] inside.
pub fn socket_get(socket: &Path, path: &str) -> io::Result<String> {
    let request = http_client::empty_request(hyper::Method::GET, "localhost", path, &[])
        .map_err(io::Error::other)?;
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| {
                io::Error::new(
                    source.kind(),
                    SocketConnectError {
                        socket: socket.to_owned(),
                        source,
                    },
                )
            })?;
        // The agent is trusted: its answer is not capped (a status lists every item).
        http_client::request_on(stream, request, STATUS_TIMEOUT, usize::MAX)
            .await
            .map_err(io::Error::other)
    };
    let response = http_client::block_on(exchange)??;
    body_of(response, &format!("{}:{path}", socket.display()))
}

fn body_of(response: http_client::Response, what: &str) -> io::Result<String> {
    if response.status != hyper::StatusCode::OK {
        return Err(io::Error::other(format!(
            "{what}: HTTP {}",
            response.status
        )));
    }
    String::from_utf8(response.body.into()).map_err(io::Error::other)
}
