//! The SQLite backend (embedded, the default): one database file in WAL mode.
//!
//! # Connections
//!
//! One writer connection behind a mutex (SQLite has one writer at a time anyway, and the
//! server's group writer is its main user) and [`READERS`] read-only connections, so fleet
//! queries run in parallel with a group commit: WAL readers never wait for the writer. Each
//! query runs in one read transaction, so what it combines (a host row and that host's items)
//! comes from the same commit.
//!
//! # Durability
//!
//! `apply` commits with `synchronous=FULL`: the server acknowledges batches as soon as it
//! returns, so the commit must be on disk; group commit shares that one fsync among every batch
//! waiting. `hello` commits with `NORMAL` (no fsync of its own): nothing is acknowledged on the
//! strength of it, a lost hello is repeated on reconnection, and the next `apply`'s fsync of the
//! append-only WAL makes it durable anyway. That keeps a reconnection storm of thousands of
//! agents from costing thousands of fsyncs. Checkpoints (copying the WAL back into the
//! database file, and its fsync) run on a thread of their own, off the commit path
//! (`checkpoint`).
//!
//! # File modes
//!
//! The database holds every host's drift with its diffs, which quote files only root can read
//! on the hosts (`/etc/shadow`, keys): its files are the collector's user's alone. A new
//! database file is created 0600 before SQLite opens it, whatever the umask, and SQLite gives
//! the `-wal` and `-shm` files the database file's mode. An existing database, `-wal` or
//! `-shm` that others may read (collectors before 0.2 created them 0644) is made private when
//! opened, with one warning. The server creates the database's directory 0700 when it is
//! missing ([`create_private_dir`]); an existing directory is left as it is.
//!
//! # Schema (version 13; [`schema::MIGRATIONS`], counted by `PRAGMA user_version`)
//!
//! - `hosts`: one row per host identity: what its hello said, where its stream stands
//!   (`stream_id`, `last_seq`), first and last seen, and its current items' aggregates cached
//!   per severity (`n_*` counts, `since_*` oldest `observed_at`), so listing 10,000 hosts with a
//!   severity filter reads 10,000 rows, not every item.
//! - `items`: the current drift set, one row per (host, subject). `item` is the item's
//!   canonical encoding (`drift.proto`), `sha256` its digest (heartbeat digests are computed
//!   over them). `observed_at` is when the subject
//!   started to drift: a later change keeps it, so "drifted since" does not move forward while
//!   a file keeps being edited. `items_subject` covers every query that aggregates over paths
//!   (hosts, paths and causes filtered by a glob), so they read the index, never an item.
//! - `history` (version 13; `events` before, one row per event): the full history, one row per
//!   write (a batch's new events, or what a snapshot changed), its events encoded together in
//!   `chunk` (`history::Chunk`), each with its item encoded as in `items`. A batch's row
//!   carries its first sequence number; a snapshot's has none (NULL, so the unique key leaves
//!   it alone).
//! - `baselines`: every baseline id seen in a hello, with its image.
//! - `iac_states`, `iac_resources` (version 2): imported Terraform/OpenTofu states (since
//!   version 10 also Pulumi stack exports and CloudFormation stacks: `kind` `pulumi`,
//!   `cloudformation`), one row per state name and per machine-describing resource instance
//!   (allow-listed attributes only); `images`: the Packer image catalog, one row per (region,
//!   image id).
//! - Version 3 replaced the items' JSON text (`json`) with their encoding (`item`), converting
//!   every row of `items` and `events`.
//! - `tokens` (version 4): operators' bearer tokens, by the SHA-256 of their secret; version 5
//!   records who imported each state.
//! - `join_tokens`, `enrollments`, `certificates` (version 6): enrollment — join tokens by
//!   hash with their uses, each enrolled host bound to its key, every certificate the fleet CA
//!   issued by serial, with its revocation.
//! - Version 7 adds `hosts.connection`; version 8 writes `events`' checks as comparisons;
//!   version 10 widens `iac_states.kind` (both edit the table's definition in place).
//! - `subject_counts` (version 9): per path, its hosts per severity and its first and last
//!   observation, kept by triggers on `items`, so `paths` reads one row per path. Version 9
//!   counted changes in `cause_counts` the same way; version 11 dropped it for counts in the
//!   writer's memory (`causes`), which cost ingest far less. Version 12 keys `items` by
//!   (host, subject) itself (`WITHOUT ROWID`) and keeps `subject_counts` in the writer, which
//!   alone inserts, replaces and deletes items (the triggers' presence made every item
//!   statement dearer). Version 13 stores the history one row per write (`history`), converting
//!   `events`: a row per event was half of ingest's cost.
//!
//! Invariants every write keeps:
//! - a host's cached aggregates are those of its `items` rows;
//! - `history` holds at most one row per (host, stream_id, first_seq), and a write stores only
//!   the events past `hosts.last_seq`: a replay cannot duplicate;
//! - `hosts.last_seq` is the last sequence number of `hosts.stream_id` reflected in `items`.
//!
//! The logical model uses plain types (TEXT, INTEGER, BLOB) so PostgreSQL can share it.
//!
//! Modules: `schema` (tables, migrations), `write` (hellos and groups of writes), `history`
//! (the history's rows and their encoding), `query`
//! (fleet queries), `hosts` (the hosts' listing columns mirrored in memory, refreshed after
//! every commit), `causes` (the changes' host counts, kept in memory by the writer),
//! `checkpoint` (the WAL checkpointing thread).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, Transaction, TransactionBehavior};

use super::{
    Applied, Cause, EnrollRefusal, EnrolledHost, Enrollment, HistoryEntry, HistoryQuery,
    HostDetail, HostFacts, HostInfo, HostQuery, IacData, ImportOutcome, Issued, IssuedCertificate,
    ItemFilter, JoinToken, ListedHost, ManifestImport, Millis, NewJoinToken, NewToken,
    OperatorToken, PathSummary, Result, Severity, StateImport, Store, StoreError, StreamHead,
    StreamRead, StreamState, Write,
};
use driftwatch_proto::drift::set_digest;

mod causes;
mod checkpoint;
mod credentials;
mod enrollment;
mod history;
mod hosts;
mod iac;
mod query;
mod recent;
mod schema;
#[cfg(test)]
mod tests;
mod write;

/// Read-only connections: the fleet API's concurrent queries on a small machine.
const READERS: usize = 4;
/// How long a statement waits for a lock another process holds (a backup, an operator's
/// `sqlite3` shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection: every statement shape issued here fits.
const STATEMENT_CACHE: usize = 64;
/// Page cache of the writer, in KiB: enough to keep the indexes' hot pages of a large fleet
/// between group commits.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 16 * 1024;

/// The [`Store`] on one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    checkpointer: checkpoint::Checkpointer,
    /// See [`Store::generation`]: bumped after every committed hello and import.
    generation: AtomicU64,
    /// The hosts' listing columns, refreshed after every commit.
    hosts: hosts::HostsView,
    /// The changes' host counts, kept by the writer after every commit.
    causes: Mutex<causes::Causes>,
}

struct Writer {
    conn: Connection,
    /// Whether the connection's `synchronous` is FULL (else NORMAL), to switch only on change.
    full_sync: bool,
    /// Whether SQLite enforces the foreign keys: on for every write but the groups of ingest
    /// writes ([`Store::apply`]).
    foreign_keys: bool,
    /// The items the writer wrote recently (`recent`).
    recent: recent::Recent,
}

impl Writer {
    fn set_foreign_keys(&mut self, on: bool) -> Result<()> {
        if self.foreign_keys != on {
            self.conn
                .pragma_update(None, "foreign_keys", on)
                .context("setting foreign_keys")?;
            self.foreign_keys = on;
        }
        Ok(())
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing (not its directory),
    /// and brings its schema up to date. A database written by a newer collector is refused.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        make_private(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context("opening the database")?;
        configure(&conn, true)?;
        schema::migrate(&mut conn)?;
        let hosts = hosts::HostsView::default();
        hosts.load(&conn).context("reading the hosts")?;
        let causes = causes::Causes::load(&conn).context("counting the changes")?;
        // Readers open after the migration: they only ever see a current schema.
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .context("opening a read-only connection")?;
                configure(&reader, false)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(Writer {
                conn,
                full_sync: true,
                foreign_keys: true,
                recent: recent::Recent::default(),
            }),
            readers,
            next_reader: AtomicUsize::new(0),
            checkpointer: checkpoint::Checkpointer::start(path)?,
            generation: AtomicU64::new(0),
            hosts,
            causes: Mutex::new(causes),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction on a free reader (or waits for one).
    fn read<T>(&self, what: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.reader();
        reset(&conn).context(what)?;
        let tx = conn.transaction().context(what)?;
        // Dropping the transaction rolls it back: a read has nothing to commit.
        f(&tx).context(what)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(conn) => return conn,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.readers[start % n])
    }

    /// The writer, with no transaction open and `synchronous` as asked.
    fn writer(&self, full_sync: bool) -> Result<MutexGuard<'_, Writer>> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| {
            // A panic mid-group: what the writer remembers may not have been committed.
            self.writer.clear_poison();
            let mut writer = poisoned.into_inner();
            writer.recent.forget();
            writer
        });
        reset(&writer.conn).context("rolling back a transaction left open")?;
        if writer.full_sync != full_sync {
            let mode = if full_sync { "FULL" } else { "NORMAL" };
            writer
                .conn
                .pragma_update(None, "synchronous", mode)
                .context("setting synchronous")?;
            writer.full_sync = full_sync;
        }
        Ok(writer)
    }

    /// Runs `f` in a write transaction and commits, durably (`full_sync`) or not; then
    /// refreshes the listing of the `hosts` it changed.
    fn write<T>(
        &self,
        full_sync: bool,
        what: &str,
        hosts: &[&str],
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let mut writer = self.writer(full_sync)?;
        writer.set_foreign_keys(true)?;
        let tx = begin(&mut writer.conn, what)?;
        let out = f(&tx)?;
        self.commit(tx, what)?;
        self.hosts.refresh(&writer.conn, hosts.iter().copied());
        Ok(out)
    }

    /// Every host's listing row: the mirror, rebuilt first if a refresh failed.
    fn host_rows(&self) -> Result<Vec<Arc<hosts::HostRow>>> {
        if self.hosts.is_stale() {
            let writer = self.writer(false)?;
            self.hosts
                .load(&writer.conn)
                .context("re-reading the hosts")?;
        }
        Ok(self.hosts.rows())
    }

    /// Applies and commits a group of ingest writes (see [`Store::apply`]).
    fn apply_group(
        &self,
        conn: &mut Connection,
        writes: &[Write],
        deltas: &mut causes::Deltas,
        recent: &mut recent::Recent,
    ) -> Result<Vec<Result<Applied>>> {
        const WHAT: &str = "applying writes";
        let tx = begin(conn, WHAT)?;
        let results = match write::apply_unguarded(&tx, writes, deltas, recent)? {
            Some(results) => results,
            None => {
                // A write failed part-way: undo the group, and apply it again with each write
                // under a savepoint, so that only the failed one is undone.
                tx.rollback().context("rolling back a group")?;
                deltas.clear();
                recent.forget();
                let tx = begin(conn, WHAT)?;
                let results = write::apply_guarded(&tx, writes, deltas, recent)?;
                self.commit(tx, WHAT)?;
                return Ok(results);
            }
        };
        self.commit(tx, WHAT)?;
        Ok(results)
    }

    fn commit(&self, tx: Transaction<'_>, what: &str) -> Result<()> {
        tx.commit().with_context(|| format!("{what}: committing"))?;
        self.checkpointer.committed();
        Ok(())
    }
}

fn begin<'c>(conn: &'c mut Connection, what: &str) -> Result<Transaction<'c>> {
    // Immediate: take the write lock now, not at the first write (where another process
    // holding it would turn into an error instead of a wait).
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .context(what)
}

/// A poisoned lock only means a thread panicked holding the connection; whatever transaction
/// it left open was rolled back as it unwound (or is by [`reset`]), so the connection is fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Rolls back a transaction left open (a panic mid-way), so the next one can begin.
fn reset(conn: &Connection) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    Ok(())
}

/// Creates `dir` (and its missing parents) mode 0700 whatever the umask, for a database; an
/// existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The database's files as SQLite names them: the database, its WAL, its shared-memory index.
fn database_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with("-wal"), with("-shm")]
}

/// Creates the database file 0600 if it is missing (SQLite makes an empty file a new
/// database), and takes group and other permissions off any of its files that has them. See
/// the module's "File modes".
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Database(format!("{what} {}: {e}", p.display()))
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed("creating", path, e)),
    }
    let mut tightened = Vec::new();
    for file in database_files(path) {
        // Through a symlink, as SQLite opens it.
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode() & 0o7777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed("reading", &file, e)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| failed("making private", &file, e))?;
            tightened.push(format!("{} ({mode:o})", file.display()));
        }
    }
    if !tightened.is_empty() {
        tracing::warn!(
            files = %tightened.join(", "),
            "The database was readable by other users; made it private (0600)."
        );
    }
    Ok(())
}

fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("setting the busy timeout")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let pragma = |name: &str, value: &dyn rusqlite::ToSql| {
        conn.pragma_update(None, name, value)
            .with_context(|| format!("setting {name}"))
    };
    if writer {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .context("switching to WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "the database cannot use WAL (journal mode stays {mode:?})"
            )));
        }
        pragma("synchronous", &"FULL")?;
        pragma("foreign_keys", &"ON")?;
        pragma("cache_size", &-WRITER_CACHE_KIB)?;
        // Checkpoints keep the WAL short; this bounds what one left behind on disk.
        pragma("journal_size_limit", &(64i64 << 20))?;
        pragma("wal_autocheckpoint", &checkpoint::SAFETY_NET_PAGES)?;
    } else {
        pragma("cache_size", &-READER_CACHE_KIB)?;
    }
    pragma("temp_store", &"MEMORY")
}

/// Adds what failed to a database error.
trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::Database(format!("{what}: {e}")))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StoreError::Database(format!("{}: {e}", what())))
    }
}

impl Store for SqliteStore {
    fn hello(&self, info: &HostInfo, now: Millis) -> Result<StreamState> {
        let host = [info.host.as_str()];
        let state = self.write(false, "recording a hello", &host, |tx| {
            write::hello(tx, info, now)
        });
        self.generation.fetch_add(1, Ordering::Release);
        state
    }

    fn apply(&self, writes: &[Write]) -> Result<Vec<Result<Applied>>> {
        let mut writer = self.writer(true)?;
        // Every write of a group reads its host's row before it stores anything of the host
        // (an unknown host is refused) and no host is ever deleted, so the keys of `items` and
        // `history` hold without SQLite checking them; checked, they cost a lookup per row and a
        // statement journal for every insert (SQLite must be able to undo a statement that
        // fails its check part-way), several percent of ingest.
        writer.set_foreign_keys(false)?;
        let writer = &mut *writer;
        let mut deltas = causes::Deltas::default();
        let results = self.apply_group(&mut writer.conn, writes, &mut deltas, &mut writer.recent);
        if results.is_err() {
            // The group was rolled back: what the writer remembers of it is wrong.
            writer.recent.forget();
        }
        let results = results?;
        // Still under the writer's lock: the counts follow the commits in their order.
        lock(&self.causes).apply(&deltas);
        let touched: HashSet<&str> = writes.iter().map(Write::host).collect();
        self.hosts.refresh(&writer.conn, touched);
        Ok(results)
    }

    fn streams(&self, reads: &[StreamRead]) -> Result<Vec<Option<StreamHead>>> {
        self.read("reading hosts' streams", |tx| {
            reads
                .iter()
                .map(|read| {
                    let Some(state) = write::stream_state(tx, &read.host)? else {
                        return Ok(None);
                    };
                    let digest = match read.digest {
                        true => Some(items_digest(tx, &read.host)?),
                        false => None,
                    };
                    Ok(Some(StreamHead { state, digest }))
                })
                .collect()
        })
    }

    fn list_hosts(&self, query: &HostQuery) -> Result<Vec<ListedHost>> {
        let rows = self.host_rows()?;
        let drifts = match query.filter.path {
            Some(_) => self.read("listing hosts", |tx| {
                query::drift_by_path(tx, &query.filter, &rows)
            })?,
            None => rows.iter().map(|r| r.cached_drift(&query.filter)).collect(),
        };
        Ok(hosts::listing(&rows, &drifts, query))
    }

    fn get_host(&self, host: &str, query: &HostQuery) -> Result<Option<HostDetail>> {
        self.read("reading a host", |tx| query::get_host(tx, host, query))
    }

    fn create_token(&self, token: &NewToken) -> Result<()> {
        self.write(true, "storing a token", &[], |tx| {
            credentials::create(tx, token)
        })
    }

    fn tokens(&self) -> Result<Vec<OperatorToken>> {
        self.read("listing tokens", credentials::list)
    }

    fn revoke_token(&self, name: &str, now: Millis) -> Result<bool> {
        self.write(true, "revoking a token", &[], |tx| {
            credentials::revoke(tx, name, now)
        })
    }

    fn token(&self, sha256: &[u8; 32], now: Millis) -> Result<Option<OperatorToken>> {
        self.read("looking up a token", |tx| {
            credentials::find(tx, sha256, now)
        })
    }

    fn create_join_token(&self, token: &NewJoinToken) -> Result<()> {
        self.write(true, "storing a join token", &[], |tx| {
            enrollment::create_token(tx, token)
        })
    }

    fn join_tokens(&self) -> Result<Vec<JoinToken>> {
        self.read("listing join tokens", enrollment::tokens)
    }

    fn revoke_join_token(&self, name: &str, now: Millis) -> Result<bool> {
        self.write(true, "revoking a join token", &[], |tx| {
            enrollment::revoke_token(tx, name, now)
        })
    }

    fn enroll(&self, e: &Enrollment<'_>) -> Result<std::result::Result<String, EnrollRefusal>> {
        self.write(true, "enrolling a host", &[], |tx| {
            enrollment::enroll(tx, e)
        })
    }

    fn renew(
        &self,
        presented: &str,
        certificate: &Issued,
    ) -> Result<std::result::Result<(), EnrollRefusal>> {
        self.write(true, "renewing a certificate", &[], |tx| {
            enrollment::renew(tx, presented, certificate)
        })
    }

    fn enrolled(&self) -> Result<Vec<EnrolledHost>> {
        self.read("listing enrolled hosts", enrollment::enrolled)
    }

    fn revoke_host(&self, host: &str, by: &str, now: Millis) -> Result<(bool, u32)> {
        self.write(true, "revoking a host", &[], |tx| {
            enrollment::revoke_host(tx, host, by, now)
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<IssuedCertificate>> {
        self.read("looking up a certificate", |tx| {
            enrollment::certificate(tx, serial)
        })
    }

    fn certificates(&self, serials: &[String]) -> Result<Vec<Option<IssuedCertificate>>> {
        self.read("looking up certificates", |tx| {
            serials
                .iter()
                .map(|serial| enrollment::certificate(tx, serial))
                .collect()
        })
    }

    fn find_host(&self, name: &str) -> Result<Option<String>> {
        self.read("finding a host", |tx| {
            query::find(tx, name, "host", |row| row.get(0))
        })
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
        // The counts are of every severity: a severity filter counts the items themselves.
        let counted = match filter.min_severity {
            None => Some(query::counted_causes(
                &lock(&self.causes),
                filter,
                min_hosts,
                limit,
            )),
            Some(_) => None,
        };
        self.read("listing causes", |tx| match counted {
            Some(groups) => query::causes_of(tx, groups, max_hosts),
            None => query::list_causes(tx, filter, min_hosts, limit, max_hosts),
        })
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>> {
        self.read("reading history", |tx| query::history(tx, query))
    }

    fn import_state(&self, import: &StateImport, now: Millis) -> Result<ImportOutcome> {
        let outcome = self.write(true, "importing a state", &[], |tx| {
            iac::import_state(tx, import, now)
        });
        self.generation.fetch_add(1, Ordering::Release);
        outcome
    }

    fn import_manifest(&self, import: &ManifestImport, now: Millis) -> Result<ImportOutcome> {
        let outcome = self.write(true, "importing a manifest", &[], |tx| {
            iac::import_manifest(tx, import, now)
        });
        self.generation.fetch_add(1, Ordering::Release);
        outcome
    }

    fn iac(&self) -> Result<IacData> {
        self.read("reading imported IaC", iac::iac)
    }

    fn host_facts(&self) -> Result<Vec<HostFacts>> {
        self.read("reading host identities", iac::host_facts)
    }

    fn last_seen(&self) -> Result<Vec<(String, Millis)>> {
        Ok(self
            .host_rows()?
            .iter()
            .map(|row| (row.host().to_owned(), row.reported.last_seen))
            .collect())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<()> {
        self.read("checking the database", |tx| {
            tx.query_row("PRAGMA user_version", [], |_| Ok(()))
        })
    }
}

/// The digest of `host`'s drift set, over its stored items.
fn items_digest(tx: &Connection, host: &str) -> rusqlite::Result<[u8; 32]> {
    let digests = tx
        .prepare_cached("SELECT sha256 FROM items WHERE host = ?1")?
        .query_map([host], |r| r.get::<_, [u8; 32]>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(set_digest(&digests))
}

fn severity_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Severity> {
    let i: i64 = row.get(idx)?;
    Severity::from_index(i).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, i))
}

/// Counts and sequence numbers are stored as INTEGER (i64) and never negative.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
