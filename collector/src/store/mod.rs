//! Storage: hosts, their current drift, the full event history, and the baselines seen.
//!
//! One trait, [`Store`], with one implementation per database ([`sqlite`], the default, and
//! [`postgres`], which collectors can share); every implementation must pass the conformance
//! suite in [`conformance`]. The trait is synchronous and the server calls it from blocking
//! threads ([`blocking`]) — every call, [`Store::generation`] included: PostgreSQL's
//! synchronous client must not run on an async worker. Every method is one short
//! transaction, it speaks the store's own types only (no API message, no SQL type), and what
//! must hold across collector processes — idempotence by (host, stream, sequence), the host's
//! stream state — lives in the data, not in this process's memory. (SQLite's in-memory
//! listing mirror and its [`Store::generation`] are per process; PostgreSQL's come from the
//! database.)
//!
//! Writes come in groups ([`Store::apply`]): the server's single writer takes every batch that
//! is waiting, applies each atomically (a batch is all or nothing) inside one transaction and
//! commits once, then acknowledges every batch in the group. Group commit keeps the cost of a
//! durable commit (an fsync) shared across all connected agents.
//!
//! The trait speaks the store's own types ([`model`]); the query side turns them into the
//! API's messages and the ingest side builds them from the agents'. Drift items are kept as
//! their canonical encodings. Committed events also go to the live [`Feed`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub mod aggregates;
pub mod catalog;
pub mod chunk;
pub mod credentials;
pub mod enrollment;
pub mod item;
pub mod listed;
pub mod model;
pub mod postgres;
pub mod sqlite;

#[cfg(test)]
pub mod conformance;

pub use catalog::{HostFacts, IacData, Image, ManifestImport, Resource, StateImport, StateInfo};
pub use credentials::{NewToken, OperatorToken, Role, UnknownRole};
pub use driftwatch_proto::drift::Transition;
pub use enrollment::{
    EnrollRefusal, EnrolledHost, Enrollment, Issued, IssuedCertificate, JoinToken, NewJoinToken,
};
pub use item::{ItemError, ItemRecord, Severity, SubjectKind};
pub use listed::{Found, HostStatus, ListedHost, ReportedHost};
pub use model::{Cause, HistoryEntry, HostDetail, HostIdentity, PathSummary, Source};

/// Milliseconds since the Unix epoch: how the store keeps time.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_millis() -> Millis {
    to_millis(SystemTime::now())
}

pub fn to_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as Millis
}

/// RFC 3339 with milliseconds, UTC (how every time is shown).
pub fn rfc3339(ms: Millis) -> String {
    rfc3339_display(ms).to_string()
}

/// [`rfc3339`], to write into a buffer of one's own.
pub fn rfc3339_display(ms: Millis) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// Parses RFC 3339 into [`Millis`].
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    humantime::parse_rfc3339_weak(text).ok().map(to_millis)
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed (I/O, corruption, a constraint that should hold).
    #[error("database: {0}")]
    Database(String),
    /// The request cannot be applied as it is (a sequence gap, an unknown host).
    #[error("{0}")]
    Rejected(String),
    /// The database was written by a newer driftwatch.
    #[error("the database schema is version {found}, newer than this collector's {supported}")]
    NewerSchema { found: i64, supported: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a hello tells about a host, as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostInfo {
    pub host: String,
    pub identity: HostIdentity,
    pub agent_version: String,
    pub baseline_id: String,
    pub image_name: String,
    pub image_version: String,
    pub boot_id: String,
}

/// Where a host's stream stands in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    /// The stream whose sequence numbers `last_seq` counts ("" before any).
    pub stream_id: String,
    /// The last sequence number stored (0: none).
    pub last_seq: u64,
    /// The connection that speaks for the host: every hello takes the next number, through
    /// whichever collector sharing the database it arrives, so a stream that finds a higher
    /// number than its own hello's knows a newer connection of its host replaced it.
    pub connection: u64,
}

/// What a heartbeat reads of its host's stored stream ([`Store::streams`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRead {
    pub host: String,
    /// With the digest of the host's drift set.
    pub digest: bool,
}

/// A host's stored stream, and its drift set's digest if it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHead {
    pub state: StreamState,
    pub digest: Option<[u8; 32]>,
}

/// One event of a batch, validated (see [`ItemRecord::from_wire`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub seq: u64,
    pub transition: Transition,
    pub observed_at: Millis,
    pub item: ItemRecord,
}

/// A write for the group writer.
#[derive(Clone, Debug)]
pub enum Write {
    /// Events of one stream, in order, contiguous. Events at or below the stored sequence
    /// number are skipped (a replay); the first new one must be `last_seq + 1`.
    Batch {
        host: String,
        stream_id: String,
        events: Vec<EventRecord>,
        received_at: Millis,
    },
    /// Replaces the host's current set with `items` as of `seq` of `stream_id` (which becomes
    /// the host's stream). History gets the transitions between the old and the new set, with
    /// source `snapshot`.
    Snapshot {
        host: String,
        stream_id: String,
        seq: u64,
        items: Vec<ItemRecord>,
        received_at: Millis,
    },
    /// The host was heard from (a heartbeat).
    Seen { host: String, at: Millis },
}

impl Write {
    /// The host it writes to.
    pub fn host(&self) -> &str {
        match self {
            Write::Batch { host, .. } | Write::Snapshot { host, .. } | Write::Seen { host, .. } => {
                host
            }
        }
    }
}

/// What a successful write stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The host's last stored sequence number after the write.
    pub last_seq: u64,
    /// History rows written (0 for a pure replay).
    pub events: u64,
}

/// A path filter that is not a glob.
#[derive(Debug, thiserror::Error)]
#[error("bad path glob {glob:?}")]
pub struct BadGlob {
    pub glob: String,
    #[source]
    pub source: globset::Error,
}

/// Filters of `hosts`, `paths` and `causes`.
#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    /// Only items of at least this severity.
    pub min_severity: Option<Severity>,
    /// Only items whose subject (path) matches this glob.
    pub path: Option<globset::GlobMatcher>,
    /// The glob's literal prefix (everything before the first metacharacter), so backends can
    /// narrow by an index before matching.
    pub path_prefix: String,
}

impl ItemFilter {
    /// Builds a filter; `path` is a glob where `*` stays within a directory and `**` crosses.
    pub fn new(min_severity: Option<Severity>, path: Option<&str>) -> Result<ItemFilter, BadGlob> {
        let (matcher, prefix) = match path {
            None | Some("") => (None, String::new()),
            Some(glob) => {
                let matcher = globset::GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()
                    .map_err(|source| BadGlob {
                        glob: glob.to_owned(),
                        source,
                    })?
                    .compile_matcher();
                let prefix: String = glob
                    .chars()
                    .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
                    .collect();
                (Some(matcher), prefix)
            }
        };
        Ok(ItemFilter {
            min_severity,
            path: matcher,
            path_prefix: prefix,
        })
    }

    /// Whether an item passes.
    pub fn matches(&self, subject: &str, severity: Severity) -> bool {
        self.min_severity.is_none_or(|min| severity <= min)
            && subject.starts_with(&self.path_prefix)
            && self.path.as_ref().is_none_or(|m| m.is_match(subject))
    }

    pub fn is_empty(&self) -> bool {
        self.min_severity.is_none() && self.path.is_none()
    }
}

#[derive(Clone, Debug, Default)]
pub struct HostQuery {
    pub filter: ItemFilter,
    /// Only hosts with at least one (matching) item.
    pub diverged: bool,
    /// Hosts not heard from for this long are `silent`.
    pub silent_after: Duration,
    pub now: Millis,
}

#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// A host identity ("" for all).
    pub host: String,
    /// Events received at or after this time.
    pub since: Option<Millis>,
    pub filter: ItemFilter,
    /// At most this many, newest kept (0: no limit).
    pub limit: usize,
}

/// The storage contract. Every method is a short transaction; none holds a lock across calls.
pub trait Store: Send + Sync + 'static {
    /// Records a hello (creating the host on first contact, updating what it reports) and
    /// returns where its stream stands.
    fn hello(&self, info: &HostInfo, now: Millis) -> Result<StreamState>;

    /// Applies writes in one transaction, each atomically: one result per write, in order. A
    /// rejected write changes nothing and does not affect the others.
    fn apply(&self, writes: &[Write]) -> Result<Vec<Result<Applied>>>;

    /// The host's stored stream: its id, sequence number and newest connection.
    fn stream_state(&self, host: &str) -> Result<Option<StreamState>> {
        Ok(self.stream(host, false)?.map(|head| head.state))
    }

    /// [`Store::stream_state`] and the digest of the host's current set (`drift.proto`'s, over
    /// the items' canonical encodings: what agents send in heartbeats).
    fn digest(&self, host: &str) -> Result<Option<(StreamState, [u8; 32])>> {
        Ok(self
            .stream(host, true)?
            .and_then(|head| Some((head.state, head.digest?))))
    }

    /// What heartbeats read, for many hosts in one read: each host's [`Store::stream_state`],
    /// with [`Store::digest`]'s digest where [`StreamRead::digest`] asks for it. One answer
    /// per read, in order (`None`: no such host).
    fn streams(&self, reads: &[StreamRead]) -> Result<Vec<Option<StreamHead>>>;

    /// [`Store::streams`] of one host.
    fn stream(&self, host: &str, digest: bool) -> Result<Option<StreamHead>> {
        let read = StreamRead {
            host: host.to_owned(),
            digest,
        };
        Ok(self.streams(std::slice::from_ref(&read))?.pop().flatten())
    }

    /// Stores an operator token; refused if an unrevoked token has its name.
    fn create_token(&self, token: &NewToken) -> Result<()>;

    /// Every token, revoked ones too, oldest first.
    fn tokens(&self) -> Result<Vec<OperatorToken>>;

    /// Revokes the unrevoked token of this name: whether there was one.
    fn revoke_token(&self, name: &str, now: Millis) -> Result<bool>;

    /// The token whose secret has this SHA-256, unless revoked or expired at `now`.
    fn token(&self, sha256: &[u8; 32], now: Millis) -> Result<Option<OperatorToken>>;

    /// Stores a join token; refused if an unrevoked join token has its name.
    fn create_join_token(&self, token: &NewJoinToken) -> Result<()>;

    /// Every join token, revoked ones too, oldest first.
    fn join_tokens(&self) -> Result<Vec<JoinToken>>;

    /// Revokes the unrevoked join token of this name: whether there was one.
    fn revoke_join_token(&self, name: &str, now: Millis) -> Result<bool>;

    /// Enrolls a host, in one transaction: the token must be live (not revoked, not expired
    /// at the certificate's issue time, uses left, the host's image if it names one) and the
    /// identity free or bound to the same key; then a use is spent, the identity bound to the
    /// key and the certificate recorded. Returns the token's name.
    fn enroll(
        &self,
        enrollment: &Enrollment<'_>,
    ) -> Result<std::result::Result<String, EnrollRefusal>>;

    /// Records a renewed certificate: `presented` (the serial of the certificate the host
    /// authenticated with) must be a live certificate of the host, and the new one must
    /// certify the key the host enrolled with.
    fn renew(
        &self,
        presented: &str,
        certificate: &Issued,
    ) -> Result<std::result::Result<(), EnrollRefusal>>;

    /// Enrolled hosts, by host id, with their newest live certificate.
    fn enrolled(&self) -> Result<Vec<EnrolledHost>>;

    /// Revokes every certificate issued to the host and frees its identity: whether it was
    /// enrolled, and how many certificates this revoked.
    fn revoke_host(&self, host: &str, by: &str, now: Millis) -> Result<(bool, u32)>;

    /// The certificate issued with this serial (lowercase hex), if this collector issued it.
    fn certificate(&self, serial: &str) -> Result<Option<IssuedCertificate>>;

    /// [`Store::certificate`] of many serials in one read, in order: what the heartbeats of
    /// enrolled agents that arrived together ask (is the certificate revoked since?).
    fn certificates(&self, serials: &[String]) -> Result<Vec<Option<IssuedCertificate>>>;

    /// Worst drift first, then most items, then by identity.
    fn list_hosts(&self, query: &HostQuery) -> Result<Vec<ListedHost>>;

    /// A host by identity, else by hostname when exactly one host has it. Items in the order
    /// of `check --json`'s report: security first, then by path.
    fn get_host(&self, host: &str, query: &HostQuery) -> Result<Option<HostDetail>>;

    /// The identity of the host `name` names, found as [`get_host`](Self::get_host) finds
    /// it; None when no host (or more than one) answers to it.
    fn find_host(&self, name: &str) -> Result<Option<String>>;

    /// Paths drifted on the most hosts first.
    fn list_paths(&self, filter: &ItemFilter, limit: usize) -> Result<Vec<PathSummary>>;

    /// Identical changes grouped, most hosts first, each with at most `max_hosts` host names
    /// (0: all of them) and the count of all.
    fn list_causes(
        &self,
        filter: &ItemFilter,
        min_hosts: usize,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<Cause>>;

    /// Stored events, oldest first: by the time they were received, then in the order they
    /// were stored (a batch's events in sequence order), so the order is the same every time
    /// and a limit keeps the newest.
    fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>>;

    /// Replaces everything stored for the state `import.name`, in one transaction. Refuses
    /// (`Rejected`) a state older than one stored for the same lineage (a lower serial).
    fn import_state(&self, import: &StateImport, now: Millis) -> Result<ImportOutcome>;

    /// Adds (or updates, by region and image id) a manifest's images in one transaction.
    fn import_manifest(&self, import: &ManifestImport, now: Millis) -> Result<ImportOutcome>;

    /// Every imported state, resource and image.
    fn iac(&self) -> Result<IacData>;

    /// What every host reported about itself, for correlation.
    fn host_facts(&self) -> Result<Vec<HostFacts>>;

    /// When each host was last heard from.
    fn last_seen(&self) -> Result<Vec<(String, Millis)>>;

    /// A number that changes whenever what correlation reads may have changed (a hello, an
    /// import), so a correlation computed at one value can be reused while it holds. Read it
    /// before reading the data.
    fn generation(&self) -> u64;

    /// Whether the database answers now (`/healthz`): one trivial statement.
    fn check(&self) -> Result<()>;

    /// The connection pool as it is now, for a database reached over connections.
    fn pool(&self) -> Option<PoolState> {
        None
    }

    /// How many groups may be applied at once, each by a writer thread of its own. One for a
    /// database with a single writer (SQLite); more where concurrent transactions commit in
    /// parallel and each write locks its hosts' rows (PostgreSQL). A stream's writes stay in
    /// order whatever the number: ingest waits for each before sending the next.
    fn writers(&self) -> usize {
        1
    }

    /// Starts publishing on `feed` every event any collector sharing the database commits
    /// (until `stop`), and returns true. A database only this process writes returns false:
    /// the group writer publishes what it commits.
    fn follow_commits(&self, _feed: &Feed, _stop: CancellationToken) -> bool {
        false
    }

    /// A standing candidacy for fleet-wide work `name` that must run on one collector at a
    /// time (following a state source): [`Lease::held`] says whether this process holds it
    /// now. A database only this process writes grants it at once, for good.
    fn lease(&self, _name: &str) -> Box<dyn Lease> {
        Box::new(Sole)
    }
}

/// A connection pool's state ([`Store::pool`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, busy or idle.
    pub open: u32,
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

/// See [`Store::lease`]. Dropping it gives the lease up.
pub trait Lease: Send {
    /// Whether this process holds the lease now: true until the connection holding it is
    /// lost (then another collector may take it, and this one campaigns again).
    fn held(&self) -> bool;
}

/// The lease of a collector that is alone on its database.
struct Sole;

impl Lease for Sole {
    fn held(&self) -> bool {
        true
    }
}

/// The live feed: every transition as it is committed, for whoever follows it (`Watch`). The
/// group writer publishes after each commit; a follower that falls further behind than the
/// buffer is told it missed events.
#[derive(Clone, Debug)]
pub struct Feed(broadcast::Sender<Arc<HistoryEntry>>);

impl Feed {
    /// A feed keeping up to `buffer` events for slow followers.
    pub fn new(buffer: usize) -> Feed {
        Feed(broadcast::channel(buffer).0)
    }

    /// Whether anyone follows (publishing costs nothing when nobody does).
    pub fn is_followed(&self) -> bool {
        self.0.receiver_count() > 0
    }

    pub fn publish(&self, entry: HistoryEntry) {
        let _ = self.0.send(Arc::new(entry));
    }

    /// Committed transitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HistoryEntry>> {
        self.0.subscribe()
    }
}

/// Runs a store call on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Database(format!("store call failed: {e}"))))
}

/// What an import stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Rows written.
    pub stored: u64,
    /// Rows replaced (a previous import of the same state, or images already known).
    pub replaced: u64,
}
