//! Writes: [`hello`] in a transaction of its own; a group's writes in one transaction, each
//! atomically ([`apply_unguarded`], else [`apply_guarded`]).
//!
//! A write reads its host's row once ([`HostState`]), keeps the cached aggregates up to date
//! item by item as it changes `items`, and saves the row once. Recounting the host's items
//! instead would read every one of them for each write: with agents sending one event per
//! batch, that halves ingest throughput.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{CachedStatement, Connection, OptionalExtension as _, params};

use super::causes::Deltas;
use super::history::{self, ChunkRow};
use super::recent::{Known, Recent};
use super::{Context as _, severity_at, to_u64};
use crate::store::chunk::Chunk;
use crate::store::{
    Applied, EventRecord, HostInfo, ItemRecord, Millis, Result, Severity, StoreError, StreamState,
    Transition, Write,
};

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// A group's statements, each taken from the connection's cache once per group and kept:
/// `Connection::prepare_cached` hashes the statement's text on every call, a few percent of
/// ingest at three statements per event. Statements are told apart by their text's address
/// (every one here is a literal).
pub(super) struct Statements<'c> {
    conn: &'c Connection,
    taken: Vec<(&'static str, CachedStatement<'c>)>,
    /// The items written recently, kept as `items` changes.
    recent: &'c mut Recent,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection, recent: &'c mut Recent) -> Statements<'c> {
        Statements {
            conn,
            taken: Vec::with_capacity(16),
            recent,
        }
    }

    fn prepare_cached(&mut self, sql: &'static str) -> rusqlite::Result<&mut CachedStatement<'c>> {
        let i = match self.taken.iter().position(|(s, _)| std::ptr::eq(*s, sql)) {
            Some(i) => i,
            None => {
                self.taken.push((sql, self.conn.prepare_cached(sql)?));
                self.taken.len() - 1
            }
        };
        Ok(&mut self.taken[i].1)
    }
}

/// Applies a group's writes without savepoints, as long as none fails part-way; `None` when
/// one does (the caller rolls the group back and uses [`apply_guarded`]).
///
/// A savepoint per write copies every page the write touches into a sub-journal: a fifth of
/// ingest's cost when agents send one event per batch. It is only needed to undo a write that
/// failed after modifying something, and writes check everything (the host, the stream, the
/// sequence numbers, the snapshot's subjects) before their first modification: a rejection
/// leaves nothing to undo. Only a database error can strike part-way, and that is rare enough
/// to pay for the group twice. The rule is checked, not assumed: a rejected write that
/// changed a row counts as failed part-way.
pub(super) fn apply_unguarded(
    conn: &Connection,
    writes: &[Write],
    deltas: &mut Deltas,
    recent: &mut Recent,
) -> Result<Option<Vec<Result<Applied>>>> {
    let mut results = Vec::with_capacity(writes.len());
    let mut st = Statements::new(conn, recent);
    for one in writes {
        let changes = conn.total_changes();
        match apply_one(&mut st, one, deltas) {
            Ok(applied) => results.push(Ok(applied)),
            // SQLite rolled the whole transaction back (an I/O error, a full disk): nothing
            // of this group can be committed.
            Err(e) if conn.is_autocommit() => return Err(e),
            Err(StoreError::Rejected(m)) if conn.total_changes() == changes => {
                results.push(Err(StoreError::Rejected(m)));
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(results))
}

/// Applies a group's writes, each under a savepoint: one that fails is undone alone (with
/// what it recorded in `deltas`) and reported in its slot, the others stand.
pub(super) fn apply_guarded(
    conn: &Connection,
    writes: &[Write],
    deltas: &mut Deltas,
    recent: &mut Recent,
) -> Result<Vec<Result<Applied>>> {
    let mut results = Vec::with_capacity(writes.len());
    let mut st = Statements::new(conn, recent);
    for one in writes {
        execute(conn, "SAVEPOINT write").context("opening a savepoint")?;
        let mark = deltas.mark();
        match apply_one(&mut st, one, deltas) {
            Ok(applied) => {
                execute(conn, "RELEASE write").context("releasing a savepoint")?;
                results.push(Ok(applied));
            }
            Err(e) if conn.is_autocommit() => return Err(e),
            Err(e) => {
                deltas.undo(mark);
                st.recent.forget();
                execute(conn, "ROLLBACK TO write")
                    .and_then(|()| execute(conn, "RELEASE write"))
                    .context("rolling back a savepoint")?;
                results.push(Err(e));
            }
        }
    }
    Ok(results)
}

fn apply_one(conn: &mut Statements<'_>, write: &Write, deltas: &mut Deltas) -> Result<Applied> {
    match write {
        Write::Batch {
            host,
            stream_id,
            events,
            received_at,
        } => apply_batch(conn, host, stream_id, events, *received_at, deltas),
        Write::Snapshot {
            host,
            stream_id,
            seq,
            items,
            received_at,
        } => apply_snapshot(conn, host, stream_id, *seq, items, *received_at, deltas),
        Write::Seen { host, at } => {
            let last_seq = conn
                .prepare_cached(
                    "UPDATE hosts SET last_seen = max(last_seen, ?2) WHERE host = ?1
                     RETURNING last_seq",
                )
                .and_then(|stmt| stmt.query_row(params![host, at], |r| r.get(0)).optional())
                .with_context(|| format!("recording that host {host} was seen"))?
                .ok_or_else(|| unknown_host(host))?;
            Ok(Applied {
                last_seq: to_u64(last_seq),
                events: 0,
            })
        }
    }
}

/// Creates or updates the host (and its baseline) a hello describes.
pub(super) fn hello(conn: &Connection, info: &HostInfo, now: Millis) -> Result<StreamState> {
    let id = &info.identity;
    // Sorted, so equal tag sets are equal text.
    let tags = serde_json::to_string(&id.tags.iter().collect::<BTreeMap<_, _>>())
        .unwrap_or_else(|_| "{}".into());
    let state = conn
        .prepare_cached(
            "INSERT INTO hosts (host, hostname, identity_source, cloud, region,
                 availability_zone, instance_id, image_id, private_ip, machine_id_hash,
                 user_data_sha1, account_id, tags, agent_version, baseline_id,
                 image_name, image_version, boot_id, first_seen, last_seen, connection)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                 ?16, ?17, ?18, ?19, ?19, 1)
             ON CONFLICT (host) DO UPDATE SET
                 hostname = excluded.hostname,
                 identity_source = excluded.identity_source,
                 cloud = excluded.cloud,
                 region = excluded.region,
                 availability_zone = excluded.availability_zone,
                 instance_id = excluded.instance_id,
                 image_id = excluded.image_id,
                 private_ip = excluded.private_ip,
                 machine_id_hash = excluded.machine_id_hash,
                 user_data_sha1 = excluded.user_data_sha1,
                 account_id = excluded.account_id,
                 tags = excluded.tags,
                 agent_version = excluded.agent_version,
                 baseline_id = excluded.baseline_id,
                 image_name = excluded.image_name,
                 image_version = excluded.image_version,
                 boot_id = excluded.boot_id,
                 last_seen = max(hosts.last_seen, excluded.last_seen),
                 connection = hosts.connection + 1
             RETURNING stream_id, last_seq, connection",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    info.host,
                    id.hostname,
                    id.source,
                    id.cloud,
                    id.region,
                    id.availability_zone,
                    id.instance_id,
                    id.image_id,
                    id.private_ip,
                    id.machine_id_hash,
                    id.user_data_sha1,
                    id.account_id,
                    tags,
                    info.agent_version,
                    info.baseline_id,
                    info.image_name,
                    info.image_version,
                    info.boot_id,
                    now,
                ],
                |r| {
                    Ok(StreamState {
                        stream_id: r.get(0)?,
                        last_seq: to_u64(r.get(1)?),
                        connection: to_u64(r.get(2)?),
                    })
                },
            )
        })
        .with_context(|| format!("recording the hello of host {}", info.host))?;
    if !info.baseline_id.is_empty() {
        conn.prepare_cached(
            "INSERT INTO baselines (baseline_id, image_name, image_version, first_seen,
                 last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (baseline_id) DO UPDATE SET
                 image_name = CASE WHEN excluded.image_name = ''
                     THEN baselines.image_name ELSE excluded.image_name END,
                 image_version = CASE WHEN excluded.image_version = ''
                     THEN baselines.image_version ELSE excluded.image_version END,
                 last_seen = max(baselines.last_seen, excluded.last_seen)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                info.baseline_id,
                info.image_name,
                info.image_version,
                now
            ])
        })
        .with_context(|| format!("recording baseline {}", info.baseline_id))?;
    }
    Ok(state)
}

fn apply_batch(
    conn: &mut Statements<'_>,
    host: &str,
    stream_id: &str,
    events: &[EventRecord],
    received_at: Millis,
    deltas: &mut Deltas,
) -> Result<Applied> {
    let mut row = HostState::read(conn, host)?;
    if !row.stream_id.is_empty() && row.stream_id != stream_id {
        return Err(StoreError::Rejected(format!(
            "stream mismatch for host {host}: the collector follows stream {:?} (up to sequence \
             {}), the batch is of stream {stream_id:?}; a snapshot is needed",
            row.stream_id, row.last_seq
        )));
    }
    // Validate before writing anything: a rejected batch costs nothing to roll back.
    let stored = row.last_seq;
    let replayed = events.iter().take_while(|e| e.seq <= stored).count();
    let new = &events[replayed..];
    for (expected, e) in (stored + 1..).zip(new) {
        if e.seq != expected {
            return Err(StoreError::Rejected(format!(
                "sequence gap for host {host}: expected sequence number {expected}, got {} \
                 (stored up to {stored}); nothing of this batch was stored",
                e.seq
            )));
        }
    }
    if new.is_empty() {
        touch(conn, host, received_at)?;
        return Ok(Applied {
            last_seq: stored,
            events: 0,
        });
    }
    let last_seq = stored + new.len() as u64;
    if i64::try_from(last_seq).is_err() {
        return Err(StoreError::Rejected(format!(
            "sequence number {last_seq} of host {host} is out of range"
        )));
    }
    let mut chunk = Chunk::default();
    for e in new {
        chunk.push_event(e);
        match e.transition {
            Transition::Drifted | Transition::Changed => {
                let old = current(conn, host, &e.item.subject)?;
                row.upsert(conn, host, &e.item, old, e.observed_at, deltas)?;
            }
            Transition::Resolved => {
                if let Some(gone) = delete_item(conn, host, &e.item.subject)? {
                    let Known {
                        severity,
                        observed_at,
                        cause,
                    } = gone.known;
                    row.removed(severity, observed_at);
                    deltas.removed(&cause, &e.item.subject, severity);
                }
            }
        }
    }
    insert_history(
        conn,
        &ChunkRow {
            host,
            stream_id,
            first_seq: Some((stored + 1) as i64),
            received_at,
            source: "stream",
        },
        &chunk,
    )?;
    row.stream_id = stream_id.to_owned();
    row.last_seq = last_seq;
    row.save(conn, host, received_at)?;
    Ok(Applied {
        last_seq,
        events: new.len() as u64,
    })
}

fn apply_snapshot(
    conn: &mut Statements<'_>,
    host: &str,
    stream_id: &str,
    seq: u64,
    items: &[ItemRecord],
    received_at: Millis,
    deltas: &mut Deltas,
) -> Result<Applied> {
    let mut row = HostState::read(conn, host)?;
    if i64::try_from(seq).is_err() {
        return Err(StoreError::Rejected(format!(
            "snapshot sequence number {seq} of host {host} is out of range"
        )));
    }
    let mut subjects = HashSet::with_capacity(items.len());
    for item in items {
        if !subjects.insert(item.subject.as_str()) {
            return Err(StoreError::Rejected(format!(
                "the snapshot of host {host} lists {} twice",
                item.subject
            )));
        }
    }
    let mut old: HashMap<String, ([u8; 32], Known)> = conn
        .prepare_cached(
            "SELECT subject, sha256, severity, observed_at, cause FROM items WHERE host = ?1",
        )
        .and_then(|stmt| {
            stmt.query_map([host], |r| Ok((r.get(0)?, (r.get(1)?, known_at(r, 2)?))))?
                .collect()
        })
        .with_context(|| format!("reading the drift set of host {host}"))?;
    let mut chunk = Chunk::default();
    for item in items {
        let (transition, before) = match old.remove(&item.subject) {
            Some((sha256, _)) if sha256 == item.sha256 => continue,
            Some((_, known)) => (Transition::Changed, Some(known)),
            None => (Transition::Drifted, None),
        };
        chunk.push(
            None,
            transition,
            received_at,
            &item.subject,
            item.severity,
            &item.encoded,
        );
        row.upsert(conn, host, item, before, received_at, deltas)?;
    }
    let mut gone: Vec<String> = old.into_keys().collect();
    gone.sort_unstable();
    for subject in &gone {
        let Some(Gone {
            known:
                Known {
                    severity,
                    observed_at,
                    cause,
                },
            item,
        }) = delete_item(conn, host, subject)?
        else {
            continue;
        };
        row.removed(severity, observed_at);
        deltas.removed(&cause, subject, severity);
        chunk.push(
            None,
            Transition::Resolved,
            received_at,
            subject,
            severity,
            &item,
        );
    }
    insert_history(
        conn,
        &ChunkRow {
            host,
            stream_id,
            first_seq: None,
            received_at,
            source: "snapshot",
        },
        &chunk,
    )?;
    row.stream_id = stream_id.to_owned();
    row.last_seq = seq;
    row.save(conn, host, received_at)?;
    Ok(Applied {
        last_seq: seq,
        events: chunk.events.len() as u64,
    })
}

fn unknown_host(host: &str) -> StoreError {
    StoreError::Rejected(format!("unknown host {host}: it must say hello first"))
}

pub(super) fn stream_state(conn: &Connection, host: &str) -> rusqlite::Result<Option<StreamState>> {
    conn.prepare_cached("SELECT stream_id, last_seq, connection FROM hosts WHERE host = ?1")?
        .query_row([host], |r| {
            Ok(StreamState {
                stream_id: r.get(0)?,
                last_seq: to_u64(r.get(1)?),
                connection: to_u64(r.get(2)?),
            })
        })
        .optional()
}

fn touch(conn: &mut Statements<'_>, host: &str, at: Millis) -> Result<()> {
    conn.prepare_cached("UPDATE hosts SET last_seen = max(last_seen, ?2) WHERE host = ?1")
        .and_then(|stmt| stmt.execute(params![host, at]))
        .with_context(|| format!("recording that host {host} was seen"))?;
    Ok(())
}

/// The current item of `subject` on `host`: remembered if written recently, else read.
fn current(conn: &mut Statements<'_>, host: &str, subject: &str) -> Result<Option<Known>> {
    if let Some(known) = conn.recent.get(host, subject) {
        return Ok(Some(known));
    }
    conn.prepare_cached(
        "SELECT severity, observed_at, cause FROM items WHERE host = ?1 AND subject = ?2",
    )
    .and_then(|stmt| {
        stmt.query_row([host, subject], |r| known_at(r, 0))
            .optional()
    })
    .with_context(|| format!("reading item {subject} of host {host}"))
}

/// An item's severity, `observed_at` and cause, from columns `first` to `first + 2`.
fn known_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Known> {
    Ok(Known {
        severity: severity_at(r, first)?,
        observed_at: r.get(first + 1)?,
        cause: r.get(first + 2)?,
    })
}

/// Moves one of `subject`'s hosts out of severity `from` in `subject_counts`, into `to`: an
/// item replaced in place that changes severity, or (`None`) one deleted, which leaves the
/// path's host count too. New items are counted by [`count_subject_in`].
fn recount_subject(
    conn: &mut Statements<'_>,
    subject: &str,
    from: Severity,
    to: Option<Severity>,
) -> Result<()> {
    let to = to.map_or(-1, |s| s.index() as i64);
    conn.prepare_cached(
        "UPDATE subject_counts SET
             hosts = hosts - (?3 < 0),
             n_security = n_security - (?2 = 0) + (?3 = 0),
             n_behavioral = n_behavioral - (?2 = 1) + (?3 = 1),
             n_cosmetic = n_cosmetic - (?2 = 2) + (?3 = 2)
         WHERE subject = ?1",
    )
    .and_then(|stmt| stmt.execute(params![subject, from.index() as i64, to]))
    .with_context(|| format!("counting the hosts of {subject}"))?;
    Ok(())
}

/// An item a write removed.
struct Gone {
    known: Known,
    item: Vec<u8>,
}

/// Removes a current item; returns it if there was one.
fn delete_item(conn: &mut Statements<'_>, host: &str, subject: &str) -> Result<Option<Gone>> {
    let gone = conn
        .prepare_cached(
            "DELETE FROM items WHERE host = ?1 AND subject = ?2
             RETURNING severity, observed_at, cause, item",
        )
        .and_then(|stmt| {
            stmt.query_row([host, subject], |r| {
                Ok(Gone {
                    known: known_at(r, 0)?,
                    item: r.get(3)?,
                })
            })
            .optional()
        })
        .with_context(|| format!("resolving {subject} on host {host}"))?;
    conn.recent.remove(host, subject);
    if let Some(gone) = &gone {
        count_subject_out(conn, subject, gone.known.severity, gone.known.observed_at)?;
    }
    Ok(gone)
}

// `subject_counts` is kept here, by the only code that inserts and deletes items (schema 12;
// triggers did it before, and their mere presence made every item statement dearer).

/// Counts a new item of `subject`.
fn count_subject_in(
    conn: &mut Statements<'_>,
    subject: &str,
    severity: Severity,
    observed_at: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO subject_counts
             VALUES (?1, 1, ?2 = 0, ?2 = 1, ?2 = 2, ?3, ?3)
             ON CONFLICT (subject) DO UPDATE SET
                 hosts = hosts + 1,
                 n_security = n_security + (?2 = 0),
                 n_behavioral = n_behavioral + (?2 = 1),
                 n_cosmetic = n_cosmetic + (?2 = 2),
                 first_observed = min(first_observed, ?3),
                 last_observed = max(last_observed, ?3)",
    )
    .and_then(|stmt| stmt.execute(params![subject, severity.index() as i64, observed_at]))
    .with_context(|| format!("counting the hosts of {subject}"))?;
    Ok(())
}

/// Uncounts an item of `subject` just deleted; the path's first and last observation are read
/// again from `items_subject` if the item held one of them.
fn count_subject_out(
    conn: &mut Statements<'_>,
    subject: &str,
    severity: Severity,
    observed_at: Millis,
) -> Result<()> {
    let what = || format!("counting the hosts of {subject}");
    recount_subject(conn, subject, severity, None)?;
    conn.prepare_cached("DELETE FROM subject_counts WHERE subject = ?1 AND hosts = 0")
        .and_then(|stmt| stmt.execute([subject]))
        .with_context(what)?;
    conn.prepare_cached(
        "UPDATE subject_counts SET
             first_observed = (SELECT min(observed_at) FROM items WHERE subject = ?1),
             last_observed = (SELECT max(observed_at) FROM items WHERE subject = ?1)
         WHERE subject = ?1 AND (first_observed = ?2 OR last_observed = ?2)",
    )
    .and_then(|stmt| stmt.execute(params![subject, observed_at]))
    .with_context(what)?;
    Ok(())
}

/// Stores a write's history row (nothing for a write without events).
fn insert_history(conn: &mut Statements<'_>, row: &ChunkRow<'_>, chunk: &Chunk) -> Result<()> {
    conn.prepare_cached(history::INSERT_CHUNK)
        .and_then(|stmt| history::insert(stmt, row, chunk))
        .with_context(|| {
            format!(
                "storing the history of host {} ({} events)",
                row.host,
                chunk.events.len()
            )
        })
}

/// A host's row while a write changes it: where its stream stands and the cached aggregates
/// of its items (per [`Severity`]: how many, and the oldest `observed_at`).
struct HostState {
    stream_id: String,
    last_seq: u64,
    counts: [i64; 3],
    since: [Option<Millis>; 3],
    /// Severities whose oldest item left: their `since` is read again on saving.
    stale: [bool; 3],
}

impl HostState {
    /// Reads the host's row; an unknown host is rejected.
    fn read(conn: &mut Statements<'_>, host: &str) -> Result<HostState> {
        conn.prepare_cached(
            "SELECT stream_id, last_seq, n_security, n_behavioral, n_cosmetic,
                 since_security, since_behavioral, since_cosmetic
             FROM hosts WHERE host = ?1",
        )
        .and_then(|stmt| {
            stmt.query_row([host], |r| {
                Ok(HostState {
                    stream_id: r.get(0)?,
                    last_seq: to_u64(r.get(1)?),
                    counts: [r.get(2)?, r.get(3)?, r.get(4)?],
                    since: [r.get(5)?, r.get(6)?, r.get(7)?],
                    stale: [false; 3],
                })
            })
            .optional()
        })
        .with_context(|| format!("reading host {host}"))?
        .ok_or_else(|| unknown_host(host))
    }

    /// Stores `item` as current (replacing `old`, the subject's current item if any) and
    /// counts it. An item already current keeps its `observed_at`: the subject has been
    /// drifted since then, whatever changed since.
    fn upsert(
        &mut self,
        conn: &mut Statements<'_>,
        host: &str,
        item: &ItemRecord,
        old: Option<Known>,
        observed_at: Millis,
        deltas: &mut Deltas,
    ) -> Result<()> {
        let observed_at = match old {
            Some(old) => {
                if old.severity != item.severity {
                    self.removed(old.severity, old.observed_at);
                    self.added(item.severity, old.observed_at);
                    recount_subject(conn, &item.subject, old.severity, Some(item.severity))?;
                }
                if old.severity != item.severity || old.cause != item.cause {
                    deltas.removed(&old.cause, &item.subject, old.severity);
                    deltas.added(&item.cause, &item.subject, item.severity);
                }
                old.observed_at
            }
            None => {
                self.added(item.severity, observed_at);
                deltas.added(&item.cause, &item.subject, item.severity);
                count_subject_in(conn, &item.subject, item.severity, observed_at)?;
                observed_at
            }
        };
        let changed = serde_json::to_string(&item.changed).unwrap_or_else(|_| "[]".into());
        conn.prepare_cached(
            "INSERT INTO items (host, subject, subject_kind, kind, severity, cause, changed,
                 observed_at, sha256, item)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (host, subject) DO UPDATE SET
                 subject_kind = excluded.subject_kind,
                 kind = excluded.kind,
                 severity = excluded.severity,
                 cause = excluded.cause,
                 changed = excluded.changed,
                 sha256 = excluded.sha256,
                 item = excluded.item",
        )
        .and_then(|stmt| {
            stmt.execute(params![
                host,
                item.subject,
                item.subject_kind.as_str(),
                item.kind,
                item.severity.index() as i64,
                item.cause,
                changed,
                observed_at,
                item.sha256,
                item.encoded,
            ])
        })
        .with_context(|| format!("storing item {} of host {host}", item.subject))?;
        conn.recent.set(
            host,
            &item.subject,
            Known {
                severity: item.severity,
                observed_at,
                cause: item.cause.clone(),
            },
        );
        Ok(())
    }

    fn added(&mut self, severity: Severity, observed_at: Millis) {
        let i = severity as usize;
        self.counts[i] += 1;
        self.since[i] = Some(self.since[i].map_or(observed_at, |s| s.min(observed_at)));
    }

    fn removed(&mut self, severity: Severity, observed_at: Millis) {
        let i = severity as usize;
        self.counts[i] -= 1;
        if self.since[i].is_none_or(|s| observed_at <= s) {
            self.stale[i] = true;
        }
    }

    /// Writes the row back, with `last_seen` at least `seen`.
    fn save(&mut self, conn: &mut Statements<'_>, host: &str, seen: Millis) -> Result<()> {
        for severity in Severity::ALL {
            let i = severity as usize;
            if self.counts[i] <= 0 {
                self.counts[i] = 0;
                self.since[i] = None;
            } else if self.stale[i] {
                self.since[i] = conn
                    .prepare_cached(
                        "SELECT min(observed_at) FROM items WHERE host = ?1 AND severity = ?2",
                    )
                    .and_then(|stmt| stmt.query_row(params![host, severity as i64], |r| r.get(0)))
                    .with_context(|| format!("reading the oldest item of host {host}"))?;
            }
        }
        conn.prepare_cached(
            "UPDATE hosts SET stream_id = ?2, last_seq = ?3, last_seen = max(last_seen, ?4),
                 n_security = ?5, n_behavioral = ?6, n_cosmetic = ?7,
                 since_security = ?8, since_behavioral = ?9, since_cosmetic = ?10
             WHERE host = ?1",
        )
        .and_then(|stmt| {
            stmt.execute(params![
                host,
                self.stream_id,
                self.last_seq as i64,
                seen,
                self.counts[0],
                self.counts[1],
                self.counts[2],
                self.since[0],
                self.since[1],
                self.since[2],
            ])
        })
        .with_context(|| format!("updating host {host}"))?;
        Ok(())
    }
}
