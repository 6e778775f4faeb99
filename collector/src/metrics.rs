//! The collector's Prometheus metrics. Names follow `driftwatch_collector_<what>[_unit][_total]`;
//! labels never carry a host id or a path (cardinality stays fixed whatever the fleet size).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub streams: Gauge,
    pub streams_total: Counter,
    pub connections_refused: Counter,
    pub events_stored: Counter,
    pub events_replayed: Counter,
    pub batches: Counter,
    pub snapshots: Counter,
    pub snapshot_requests: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub calls_refused: Family<ReasonLabel, Counter>,
    pub identity_refused: Counter,
    pub certificates_issued: Family<KindLabel, Counter>,
    pub enrollments_refused: Family<ReasonLabel, Counter>,
    pub commits: Counter,
    pub commit_seconds: Histogram,
    pub writes_per_commit: Histogram,
    pub write_queue: Gauge,
    pub heartbeat_reads_per_call: Histogram,
    pub watchers: Gauge,
    pub queries: Counter,
    pub query_seconds: Histogram,
    pub imports: Family<KindLabel, Counter>,
    pub state_source_imports: Counter,
    pub state_source_errors: Counter,
    pub up: Gauge<f64, AtomicU64>,
    /// The database pool's connections by state (busy, idle), set at each scrape.
    pub store_connections: Family<StateLabel, Gauge>,
    pub store_connections_max: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("driftwatch_collector");
        let mut m = Metrics {
            registry: Registry::default(),
            streams: Gauge::default(),
            streams_total: Counter::default(),
            connections_refused: Counter::default(),
            events_stored: Counter::default(),
            events_replayed: Counter::default(),
            batches: Counter::default(),
            snapshots: Counter::default(),
            snapshot_requests: Counter::default(),
            rejected: Family::default(),
            calls_refused: Family::default(),
            identity_refused: Counter::default(),
            certificates_issued: Family::default(),
            enrollments_refused: Family::default(),
            commits: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            writes_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            write_queue: Gauge::default(),
            heartbeat_reads_per_call: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            watchers: Gauge::default(),
            queries: Counter::default(),
            query_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            imports: Family::default(),
            state_source_imports: Counter::default(),
            state_source_errors: Counter::default(),
            up: Gauge::default(),
            store_connections: Family::default(),
            store_connections_max: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "store_connections",
            "Connections of the database pool, by state: busy or idle (PostgreSQL).",
            m.store_connections.clone(),
        );
        r.register(
            "store_connections_max",
            "The most connections the database pool opens (PostgreSQL).",
            m.store_connections_max.clone(),
        );
        r.register(
            "agent_streams",
            "Agent streams open now.",
            m.streams.clone(),
        );
        r.register(
            "agent_streams_opened",
            "Agent streams opened.",
            m.streams_total.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once because the connection limit was reached.",
            m.connections_refused.clone(),
        );
        r.register(
            "events_stored",
            "Drift events stored.",
            m.events_stored.clone(),
        );
        r.register(
            "events_replayed",
            "Events received again after a reconnect and skipped (already stored).",
            m.events_replayed.clone(),
        );
        r.register("batches", "Event batches applied.", m.batches.clone());
        r.register(
            "snapshots",
            "Snapshots that replaced a host's drift set.",
            m.snapshots.clone(),
        );
        r.register(
            "snapshot_requests",
            "Snapshots asked of agents (lost spool, digest mismatch).",
            m.snapshot_requests.clone(),
        );
        r.register(
            "rejected",
            "Messages or streams refused, by reason.",
            m.rejected.clone(),
        );
        r.register(
            "calls_refused",
            "Calls refused by the access check: unauthenticated (no usable credential) or \
             denied (the credential does not allow the call).",
            m.calls_refused.clone(),
        );
        r.register(
            "identity_refused",
            "Agent hellos refused because they name another host than the client certificate.",
            m.identity_refused.clone(),
        );
        r.register(
            "certificates_issued",
            "Certificates the fleet CA signed, by kind: enroll (with a join token) or renew.",
            m.certificates_issued.clone(),
        );
        r.register(
            "enrollments_refused",
            "Enrollments and renewals refused, by reason.",
            m.enrollments_refused.clone(),
        );
        r.register(
            "commits",
            "Database commits (one per group of writes).",
            m.commits.clone(),
        );
        r.register(
            "commit_seconds",
            "Time to apply and commit one group of writes.",
            m.commit_seconds.clone(),
        );
        r.register(
            "writes_per_commit",
            "Writes (batches, snapshots, heartbeats) sharing one commit.",
            m.writes_per_commit.clone(),
        );
        r.register(
            "write_queue",
            "Writes waiting for the writer.",
            m.write_queue.clone(),
        );
        r.register(
            "heartbeat_reads_per_call",
            "Heartbeats' reads (hosts' streams, certificates) sharing one hop to the store.",
            m.heartbeat_reads_per_call.clone(),
        );
        r.register("watchers", "Open watch streams.", m.watchers.clone());
        r.register("queries", "Fleet queries answered.", m.queries.clone());
        r.register(
            "query_seconds",
            "Fleet query time.",
            m.query_seconds.clone(),
        );
        r.register(
            "iac_imports",
            "IaC imports stored (kind: state, manifest).",
            m.imports.clone(),
        );
        r.register(
            "state_source_imports",
            "States imported by following --state-source.",
            m.state_source_imports.clone(),
        );
        r.register(
            "state_source_errors",
            "Polls of a --state-source that failed (unreadable, malformed, stale).",
            m.state_source_errors.clone(),
        );
        r.register("up", "1 while the collector serves.", m.up.clone());
        m.registry = registry;
        m
    }
}

impl Metrics {
    /// Sets the pool gauges from the store's pool as it is now.
    pub fn pool(&self, state: crate::store::PoolState) {
        let busy = state.open.saturating_sub(state.idle);
        self.store_connections
            .get_or_create(&StateLabel { state: "busy" })
            .set(busy.into());
        self.store_connections
            .get_or_create(&StateLabel { state: "idle" })
            .set(state.idle.into());
        self.store_connections_max.set(state.max.into());
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.calls_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
