//! The agent's metrics (Prometheus) and its local status listener.
//!
//! Metric names follow `driftwatch_agent_<what>_<unit>[_total]`, all declared here. Labels never
//! carry a path or a host id.

use std::net::SocketAddr;
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
    pub coverage: Gauge<f64, AtomicU64>,
    pub queue_depth: Gauge,
    pub spool_bytes: Gauge,
    pub spool_unacked: Gauge,
    pub hashed_bytes: Counter,
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
            coverage: Gauge::default(),
            queue_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_unacked: Gauge::default(),
            hashed_bytes: Counter::default(),
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
            "hashed_bytes",
            "Bytes hashed by rescans",
            m.hashed_bytes.clone(),
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
    pub bytes: u64,
    pub unacked: u64,
    pub last_seq: u64,
    pub acked_seq: u64,
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

/// Serves `/metrics`, `/status` and `/healthz` on `addr` until `cancel` fires. Returns the bound
/// address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "Status and metrics listener is reachable off this host.");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared);
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "Status listener failed.");
        }
    });
    Ok(bound)
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

/// GET `path` from a local listener (the agent's `/status` for `driftwatch-agent status`), from
/// blocking code; the body of a 200 answer, else an error naming the address, path and status.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let request = http_client::empty_request(hyper::Method::GET, &addr.to_string(), path, &[])
        .map_err(std::io::Error::other)?;
    // The local listener is trusted: its answer is not capped (a status lists every item).
    let exchange = http_client::request_tcp(addr, request, STATUS_TIMEOUT, usize::MAX);
    let response = http_client::block_on(exchange)?.map_err(std::io::Error::other)?;
    if response.status != hyper::StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "{addr}{path}: HTTP {}",
            response.status
        )));
    }
    String::from_utf8(response.body.into()).map_err(std::io::Error::other)
}
