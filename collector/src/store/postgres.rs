//! The PostgreSQL backend: one database shared by every collector that points at it.
//!
//! # Driver and pool
//!
//! The [`Store`] trait is synchronous and the server calls it from blocking threads, so this
//! backend uses the synchronous [`postgres`] client (a blocking shell over tokio-postgres,
//! each connection driven by its own small runtime while a call waits) in an [`r2d2`] pool
//! (connections keeping their prepared statements, `tx`), both from tokio-postgres's
//! maintainers. The methods read like SQLite's:
//! plain transactions, no futures, no runtime handle to carry. tokio-postgres with
//! deadpool-postgres would have every call go through `Handle::block_on` to the same effect.
//! sqlx is out: its optional SQLite driver clashes with rusqlite's `links = "sqlite3"`.
//!
//! Consequences: a [`postgres::Client`] must never be used, created or dropped on an async
//! worker (its runtime would panic there); every call comes through `store::blocking`, and
//! dropping the store hands the pool to a plain thread ([`PgStore`]'s `Drop`). LISTEN/NOTIFY
//! (issue 14 part 3) needs a dedicated connection of its own anyway (`Client::notifications`).
//!
//! TLS is rustls on ring (no aws-lc), through tokio-postgres-rustls; see [`connect`] for the
//! URL, `sslmode` and the password.
//!
//! # Schema (`schema_version` 1 = SQLite's version 6)
//!
//! The same tables, columns, keys and checks as SQLite's (see the `sqlite` module): INTEGER
//! is BIGINT, BLOB is BYTEA, row ids are identity columns, and text that is sorted or ranged
//! is `COLLATE "C"`. Migrations run when the store opens, in one transaction under an
//! advisory lock ([`schema`]).
//!
//! # What differs from SQLite, and why
//!
//! - Writes lock their host's row (`FOR UPDATE`): several collectors may write for one host
//!   (a host that flaps between replicas), and idempotence by (host, stream, sequence) holds
//!   in the database, with the `history` unique key as the last guard.
//! - The host listing reads `hosts` on every call (SQLite keeps a per-process mirror): what
//!   another collector committed is listed at once.
//! - [`Store::generation`] is a database sequence advanced after every committed hello and
//!   import, so it moves for writes made through any collector.
//! - Durability is the server's: `apply` and every other write commit with the server's
//!   `synchronous_commit` (on by default: flushed before the commit returns, which
//!   acknowledging a batch requires); hellos commit with it off, as SQLite commits them
//!   without an fsync (`write::hello`).
//!
//! Modules: `connect` (URL, password, TLS), `tx` (pooled connections, transactions with
//! prepared statements), `schema` (tables, migrations), `write` (hellos
//! and groups of writes), `known` (the items a collector remembers, so as not to read them
//! back), `streams` (what heartbeats read, many hosts in one statement), `query` (fleet
//! queries), `credentials`, `enrollment`, `iac`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use tokio_util::sync::CancellationToken;

use super::{
    Applied, Cause, EnrollRefusal, EnrolledHost, Enrollment, HistoryEntry, HistoryQuery,
    HostDetail, HostFacts, HostInfo, HostQuery, IacData, ImportOutcome, Issued, IssuedCertificate,
    ItemFilter, JoinToken, ListedHost, ManifestImport, Millis, NewJoinToken, NewToken,
    OperatorToken, PathSummary, Result, Severity, StateImport, Store, StoreError, StreamHead,
    StreamRead, StreamState, Write,
};

pub mod connect;
mod credentials;
mod enrollment;
mod feed;
mod history;
mod iac;
mod known;
mod lease;
mod query;
mod schema;
mod streams;
#[cfg(test)]
mod tests;
mod tx;
mod write;

use tx::{Manager, Tx};

pub use connect::SslMode;

/// Most connections one collector opens: as many as blocking threads may call the store at
/// once (`server::BLOCKING_THREADS`).
const POOL_SIZE: u32 = 16;
/// Groups applied at once, each on a connection of the pool: while one group waits for its
/// commit to be flushed, the others are read, applied and written. Writes to one host wait for
/// each other on the host's row, as they do across collectors.
const WRITERS: usize = 4;
/// How long a connection attempt (and a wait for a free pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The [`Store`] on a PostgreSQL database.
pub struct PgStore {
    /// Always `Some` until dropped (see `Drop`).
    pool: Option<Pool<Manager>>,
    /// For connections outside the pool (the feed's, leases').
    manager: Manager,
    /// The database URL without its password.
    shown: String,
    /// Failed reads of the generation, to answer a value no earlier read gave.
    generation_failures: AtomicU64,
    /// The items this collector's writers wrote recently (`known`).
    known: known::KnownItems,
    /// The digests of hosts' drift sets this collector computed (`streams`).
    digests: known::Digests,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Each pooled client owns a runtime, which may not be dropped on an async worker.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::Builder::new()
                .name("pg-pool-close".into())
                .spawn(move || drop(pool))
                .map(|t| t.join());
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Database(connect::describe(&e))
    }
}

impl PgStore {
    /// Connects to the database `url` names (see [`connect`]), brings its schema up to date
    /// and opens the pool. Fails at once, saying why, when the server cannot be reached.
    pub fn open(url: &str, password: Option<&str>) -> Result<PgStore> {
        let target =
            Self::first_connection(url, password, |client| schema::migrate(client).map(drop))?;
        let manager = Manager {
            config: target.config,
            tls: target.tls,
        };
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(manager.clone());
        Ok(PgStore {
            pool: Some(pool),
            manager,
            shown: target.shown,
            generation_failures: AtomicU64::new(0),
            known: known::KnownItems::default(),
            digests: known::Digests::default(),
        })
    }

    /// Only migrates the database (`driftwatch-collector migrate`): how many versions it
    /// applied.
    pub fn migrate(url: &str, password: Option<&str>) -> Result<usize> {
        let mut applied = 0;
        Self::first_connection(url, password, |client| {
            applied = schema::migrate(client)?;
            Ok(())
        })?;
        Ok(applied)
    }

    /// Connects once, runs `f`, and closes the connection (on a thread of its own: the
    /// caller may be an async worker).
    fn first_connection(
        url: &str,
        password: Option<&str>,
        f: impl FnOnce(&mut postgres::Client) -> Result<()> + Send,
    ) -> Result<connect::Target> {
        let mut target = connect::target(url, password)?;
        if target.config.get_connect_timeout().is_none() {
            target.config.connect_timeout(CONNECT_TIMEOUT);
        }
        let (config, tls, shown) = (&target.config, target.tls.clone(), &target.shown);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let mut client = config.connect(tls).map_err(|e| {
                        StoreError::Database(format!(
                            "cannot connect to the PostgreSQL database {shown}: {}",
                            connect::describe(&e)
                        ))
                    })?;
                    f(&mut client)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(StoreError::Database("the first connection panicked".into()))
                })
        })?;
        Ok(target)
    }

    /// The database URL without its password.
    pub fn database(&self) -> &str {
        &self.shown
    }

    fn conn(&self, what: &str) -> Result<PooledConnection<Manager>> {
        let pool = self
            .pool
            .as_ref()
            .expect("the pool lives as long as the store");
        pool.get().map_err(|e| {
            StoreError::Database(format!("{what}: no connection to {}: {e}", self.shown))
        })
    }

    /// Runs `f` in a read-only transaction that sees one snapshot of the database.
    fn read<T>(&self, what: &str, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn(what)?;
        let mut tx = conn.read_transaction().context(what)?;
        // Dropping the transaction rolls it back: a read has nothing to commit.
        f(&mut tx).map_err(|e| prefixed(what, e))
    }

    /// Runs `f`, a read of one statement, outside any transaction (`tx`'s `Query`): two round
    /// trips fewer than [`PgStore::read`]. For what agents' streams read on every heartbeat.
    fn read_one<T>(&self, what: &str, f: impl FnOnce(&mut tx::Conn) -> Result<T>) -> Result<T> {
        let mut conn = self.conn(what)?;
        f(&mut conn).map_err(|e| prefixed(what, e))
    }

    /// Runs `f` in a write transaction and commits.
    fn write<T>(&self, what: &str, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn(what)?;
        let mut tx = conn.transaction().context(what)?;
        let out = f(&mut tx).map_err(|e| prefixed(what, e))?;
        tx.commit().with_context(|| format!("{what}: committing"))?;
        Ok(out)
    }

    /// Advances the generation after a commit (see the module docs). A failure is logged:
    /// correlation then reuses its result until the next change moves the sequence.
    fn advance_generation(&self) {
        let advanced = self
            .conn("advancing the generation")
            .and_then(|mut conn| Ok(conn.client.execute("SELECT nextval('generation')", &[])?));
        if let Err(error) = advanced {
            tracing::warn!(%error, "Could not advance the store's generation.");
        }
    }
}

/// Wakes every collector's feed ([`feed`]) when the group stored events: delivered at
/// commit, and never for a group rolled back.
fn notify_followers(tx: &mut Tx<'_>, results: &[Result<Applied>]) -> Result<()> {
    if results.iter().flatten().any(|a| a.events > 0) {
        tx.batch_execute(&format!("NOTIFY {}", feed::CHANNEL))
            .context("applying writes: notifying the other collectors")?;
    }
    Ok(())
}

fn prefixed(what: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Database(detail) => StoreError::Database(format!("{what}: {detail}")),
        other => other,
    }
}

/// Adds what failed to a driver error.
trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, postgres::Error> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::Database(format!("{what}: {}", connect::describe(&e))))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StoreError::Database(format!("{}: {}", what(), connect::describe(&e))))
    }
}

impl Store for PgStore {
    fn hello(&self, info: &HostInfo, now: Millis) -> Result<StreamState> {
        let state = self.write("recording a hello", |tx| write::hello(tx, info, now))?;
        self.advance_generation();
        Ok(state)
    }

    fn apply(&self, writes: &[Write]) -> Result<Vec<Result<Applied>>> {
        const WHAT: &str = "applying writes";
        let mut conn = self.conn(WHAT)?;
        let mut tx = conn.transaction().context(WHAT)?;
        match write::apply(&mut tx, writes, Some(&self.known)) {
            Ok((results, learned)) => {
                notify_followers(&mut tx, &results)?;
                tx.commit().context("applying writes: committing")?;
                learned.remember(&self.known);
                return Ok(results);
            }
            // The group's writes are checked before anything is written: a database error
            // (lost connection, full disk, a value the server refuses) is the rare case.
            Err(StoreError::Database(detail)) => {
                tracing::debug!(
                    "applying a group failed ({detail}); applying its writes one by one"
                );
            }
            Err(other) => return Err(other),
        }
        // Undo the group, and apply it again one write at a time, each under a savepoint, so
        // that only the write that fails is undone. What the group's hosts' items are at the
        // end is not remembered (each write's is forgotten with its savepoint's undoing).
        tx.rollback()
            .context("applying writes: rolling back a group")?;
        let mut tx = conn.transaction().context(WHAT)?;
        write::lock_hosts(&mut tx, writes).map_err(|e| prefixed(WHAT, e))?;
        let mut results = Vec::with_capacity(writes.len());
        for one in writes {
            let mut savepoint = tx.savepoint("write").context(WHAT)?;
            match write::apply(&mut savepoint, std::slice::from_ref(one), None) {
                Ok((result, _forgotten)) => {
                    savepoint.commit().context(WHAT)?;
                    results.extend(result);
                }
                Err(e) => {
                    savepoint.rollback().context(WHAT)?;
                    results.push(Err(prefixed(WHAT, e)));
                }
            }
        }
        notify_followers(&mut tx, &results)?;
        tx.commit().context("applying writes: committing")?;
        Ok(results)
    }

    fn writers(&self) -> usize {
        WRITERS
    }

    fn streams(&self, reads: &[StreamRead]) -> Result<Vec<Option<StreamHead>>> {
        self.read_one("reading hosts' streams", |conn| {
            streams::streams(conn, reads, &self.digests)
        })
    }

    fn list_hosts(&self, query: &HostQuery) -> Result<Vec<ListedHost>> {
        self.read("listing hosts", |tx| query::list_hosts(tx, query))
    }

    fn get_host(&self, host: &str, query: &HostQuery) -> Result<Option<HostDetail>> {
        self.read("reading a host", |tx| query::get_host(tx, host, query))
    }

    fn create_token(&self, token: &NewToken) -> Result<()> {
        self.write("storing a token", |tx| credentials::create(tx, token))
    }

    fn tokens(&self) -> Result<Vec<OperatorToken>> {
        self.read("listing tokens", credentials::list)
    }

    fn revoke_token(&self, name: &str, now: Millis) -> Result<bool> {
        self.write("revoking a token", |tx| credentials::revoke(tx, name, now))
    }

    fn token(&self, sha256: &[u8; 32], now: Millis) -> Result<Option<OperatorToken>> {
        self.read("looking up a token", |tx| {
            credentials::find(tx, sha256, now)
        })
    }

    fn create_join_token(&self, token: &NewJoinToken) -> Result<()> {
        self.write("storing a join token", |tx| {
            enrollment::create_token(tx, token)
        })
    }

    fn join_tokens(&self) -> Result<Vec<JoinToken>> {
        self.read("listing join tokens", enrollment::tokens)
    }

    fn revoke_join_token(&self, name: &str, now: Millis) -> Result<bool> {
        self.write("revoking a join token", |tx| {
            enrollment::revoke_token(tx, name, now)
        })
    }

    fn enroll(&self, e: &Enrollment<'_>) -> Result<std::result::Result<String, EnrollRefusal>> {
        self.write("enrolling a host", |tx| enrollment::enroll(tx, e))
    }

    fn renew(
        &self,
        presented: &str,
        certificate: &Issued,
    ) -> Result<std::result::Result<(), EnrollRefusal>> {
        self.write("renewing a certificate", |tx| {
            enrollment::renew(tx, presented, certificate)
        })
    }

    fn enrolled(&self) -> Result<Vec<EnrolledHost>> {
        self.read("listing enrolled hosts", enrollment::enrolled)
    }

    fn revoke_host(&self, host: &str, by: &str, now: Millis) -> Result<(bool, u32)> {
        self.write("revoking a host", |tx| {
            enrollment::revoke_host(tx, host, by, now)
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<IssuedCertificate>> {
        self.read_one("looking up a certificate", |conn| {
            enrollment::certificate(conn, serial)
        })
    }

    fn certificates(&self, serials: &[String]) -> Result<Vec<Option<IssuedCertificate>>> {
        self.read_one("looking up certificates", |conn| {
            enrollment::certificates(conn, serials)
        })
    }

    fn find_host(&self, name: &str) -> Result<Option<String>> {
        self.read("finding a host", |tx| query::find(tx, name))
    }

    fn list_paths(&self, filter: &ItemFilter, limit: usize) -> Result<Vec<PathSummary>> {
        self.read("listing paths", |tx| query::list_paths(tx, filter, limit))
    }

    fn list_causes(
        &self,
        filter: &ItemFilter,
        min_hosts: usize,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<Cause>> {
        self.read("listing causes", |tx| {
            query::list_causes(tx, filter, min_hosts, limit, max_hosts)
        })
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>> {
        self.read("reading history", |tx| query::history(tx, query))
    }

    fn import_state(&self, import: &StateImport, now: Millis) -> Result<ImportOutcome> {
        let outcome = self.write("importing a state", |tx| iac::import_state(tx, import, now));
        self.advance_generation();
        outcome
    }

    fn import_manifest(&self, import: &ManifestImport, now: Millis) -> Result<ImportOutcome> {
        let outcome = self.write("importing a manifest", |tx| {
            iac::import_manifest(tx, import, now)
        });
        self.advance_generation();
        outcome
    }

    fn iac(&self) -> Result<IacData> {
        self.read("reading imported IaC", iac::iac)
    }

    fn host_facts(&self) -> Result<Vec<HostFacts>> {
        self.read("reading host identities", iac::host_facts)
    }

    fn last_seen(&self) -> Result<Vec<(String, Millis)>> {
        self.read("reading when hosts were seen", iac::last_seen)
    }

    fn generation(&self) -> u64 {
        let read = self.conn("reading the generation").and_then(|mut conn| {
            Ok(conn
                .client
                .query_one(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM generation",
                    &[],
                )?
                .get::<_, i64>(0))
        });
        match read {
            Ok(value) => to_u64(value),
            Err(error) => {
                tracing::warn!(%error, "Could not read the store's generation.");
                // A value no read gave (nor will), so nothing is reused on the strength of it.
                (1 << 63) | self.generation_failures.fetch_add(1, Ordering::Relaxed)
            }
        }
    }

    fn check(&self) -> Result<()> {
        let mut conn = self.conn("checking the database")?;
        conn.client
            .simple_query("")
            .context("checking the database")?;
        Ok(())
    }

    fn pool(&self) -> Option<super::PoolState> {
        let pool = self.pool.as_ref()?;
        let state = pool.state();
        Some(super::PoolState {
            open: state.connections,
            idle: state.idle_connections,
            max: pool.max_size(),
        })
    }

    fn follow_commits(&self, feed: &super::Feed, stop: CancellationToken) -> bool {
        let (manager, feed) = (self.manager.clone(), feed.clone());
        let spawned = std::thread::Builder::new()
            .name("pg-feed".into())
            .spawn(move || feed::follow(manager, feed, stop));
        if let Err(error) = spawned {
            // The feed then has no source: `watch` shows nothing, which the log explains.
            tracing::error!(%error, "Cannot start following the database's commits.");
        }
        true
    }

    fn lease(&self, name: &str) -> Box<dyn super::Lease> {
        Box::new(lease::campaign(self.manager.clone(), name))
    }
}

fn severity(i: i64) -> Result<Severity> {
    Severity::from_index(i)
        .ok_or_else(|| StoreError::Database(format!("an unknown severity {i} in the database")))
}

/// Counts and sequence numbers are stored as BIGINT and never negative.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
