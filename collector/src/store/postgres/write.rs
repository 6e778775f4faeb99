//! Writes: [`hello`] in a transaction of its own; a group's writes in one transaction, each
//! atomically ([`apply_unguarded`], else [`apply_guarded`]), as SQLite's `write` does them.
//!
//! A write reads its host's row once, `FOR UPDATE` ([`HostState`]): collectors sharing the
//! database serialize their writes to one host there, and a write sees the stream state the
//! previous one committed, whichever collector made it. The cached aggregates are kept up to
//! date item by item, and the row saved once.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::tx::Tx;

use super::{severity, to_u64};
use crate::store::{
    Applied, EventRecord, HostInfo, ItemRecord, Millis, Result, Severity, StoreError, StreamState,
    Transition, Write,
};

/// Locks the hosts a group writes to, in identity order, so two collectors applying groups
/// that share hosts wait for each other instead of deadlocking.
pub(super) fn lock_hosts(tx: &mut Tx<'_>, writes: &[Write]) -> Result<()> {
    let mut hosts: Vec<&str> = writes.iter().map(Write::host).collect();
    hosts.sort_unstable();
    hosts.dedup();
    tx.query(
        "SELECT 1 FROM hosts WHERE host = ANY($1) ORDER BY host FOR UPDATE",
        &[&hosts],
    )?;
    Ok(())
}

/// Applies a group's writes without savepoints, as long as none fails with a database error;
/// `None` when one does (PostgreSQL then refuses the rest of the transaction: the caller
/// rolls the group back and uses [`apply_guarded`]).
///
/// As in SQLite's `write::apply_unguarded`, a savepoint per write would only serve to undo a
/// write that failed after modifying something, and writes check everything (the host, the
/// stream, the sequence numbers, the snapshot's subjects) before their first modification: a
/// rejection leaves nothing to undo (the host row's lock aside). Savepoints cost two round
/// trips per write; a database error is rare enough to pay for the group twice.
pub(super) fn apply_unguarded(
    tx: &mut Tx<'_>,
    writes: &[Write],
) -> Result<Option<Vec<Result<Applied>>>> {
    let mut results = Vec::with_capacity(writes.len());
    for one in writes {
        match apply_one(tx, one) {
            Ok(applied) => results.push(Ok(applied)),
            Err(StoreError::Rejected(m)) => results.push(Err(StoreError::Rejected(m))),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(results))
}

/// Applies a group's writes, each under a savepoint: one that fails (rejected, or a database
/// error) is undone alone and reported in its slot, the others stand.
pub(super) fn apply_guarded(tx: &mut Tx<'_>, writes: &[Write]) -> Result<Vec<Result<Applied>>> {
    let mut results = Vec::with_capacity(writes.len());
    for one in writes {
        let mut savepoint = tx.savepoint("write")?;
        match apply_one(&mut savepoint, one) {
            Ok(applied) => {
                savepoint.commit()?;
                results.push(Ok(applied));
            }
            Err(e) => {
                savepoint.rollback()?;
                results.push(Err(e));
            }
        }
    }
    Ok(results)
}

fn apply_one(tx: &mut Tx<'_>, write: &Write) -> Result<Applied> {
    match write {
        Write::Batch {
            host,
            stream_id,
            events,
            received_at,
        } => apply_batch(tx, host, stream_id, events, *received_at),
        Write::Snapshot {
            host,
            stream_id,
            seq,
            items,
            received_at,
        } => apply_snapshot(tx, host, stream_id, *seq, items, *received_at),
        Write::Seen { host, at } => {
            let row = tx
                .query_opt(
                    "UPDATE hosts SET last_seen = GREATEST(last_seen, $2) WHERE host = $1
                     RETURNING last_seq",
                    &[host, at],
                )?
                .ok_or_else(|| unknown_host(host))?;
            Ok(Applied {
                last_seq: to_u64(row.get(0)),
                events: 0,
            })
        }
    }
}

/// Creates or updates the host (and its baseline) a hello describes.
///
/// Committed without waiting for the WAL flush (`synchronous_commit = off`), as SQLite commits
/// hellos without an fsync: nothing is acknowledged on the strength of a hello, a lost one is
/// repeated at reconnection, and the next durable commit flushes it anyway. A reconnection
/// storm of thousands of agents then costs no flush per hello.
pub(super) fn hello(tx: &mut Tx<'_>, info: &HostInfo, now: Millis) -> Result<StreamState> {
    tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    let id = &info.identity;
    // Sorted, so equal tag sets are equal text.
    let tags = serde_json::to_string(&id.tags.iter().collect::<BTreeMap<_, _>>())
        .unwrap_or_else(|_| "{}".into());
    let row = tx.query_one(
        "INSERT INTO hosts (host, hostname, identity_source, cloud, region,
             availability_zone, instance_id, image_id, private_ip, machine_id_hash,
             user_data_sha1, account_id, tags, agent_version, baseline_id,
             image_name, image_version, boot_id, first_seen, last_seen, connection)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
             $16, $17, $18, $19, $19, 1)
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
             last_seen = GREATEST(hosts.last_seen, excluded.last_seen),
             connection = hosts.connection + 1
         RETURNING stream_id, last_seq, connection",
        &[
            &info.host,
            &id.hostname,
            &id.source,
            &id.cloud,
            &id.region,
            &id.availability_zone,
            &id.instance_id,
            &id.image_id,
            &id.private_ip,
            &id.machine_id_hash,
            &id.user_data_sha1,
            &id.account_id,
            &tags,
            &info.agent_version,
            &info.baseline_id,
            &info.image_name,
            &info.image_version,
            &info.boot_id,
            &now,
        ],
    )?;
    let state = StreamState {
        stream_id: row.get(0),
        last_seq: to_u64(row.get(1)),
        connection: to_u64(row.get(2)),
    };
    if !info.baseline_id.is_empty() {
        tx.execute(
            "INSERT INTO baselines (baseline_id, image_name, image_version, first_seen,
                 last_seen)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (baseline_id) DO UPDATE SET
                 image_name = CASE WHEN excluded.image_name = ''
                     THEN baselines.image_name ELSE excluded.image_name END,
                 image_version = CASE WHEN excluded.image_version = ''
                     THEN baselines.image_version ELSE excluded.image_version END,
                 last_seen = GREATEST(baselines.last_seen, excluded.last_seen)",
            &[
                &info.baseline_id,
                &info.image_name,
                &info.image_version,
                &now,
            ],
        )?;
    }
    Ok(state)
}

fn apply_batch(
    tx: &mut Tx<'_>,
    host: &str,
    stream_id: &str,
    events: &[EventRecord],
    received_at: Millis,
) -> Result<Applied> {
    let mut row = HostState::read(tx, host)?;
    if !row.stream_id.is_empty() && row.stream_id != stream_id {
        return Err(StoreError::Rejected(format!(
            "stream mismatch for host {host}: the collector follows stream {:?} (up to sequence \
             {}), the batch is of stream {stream_id:?}; a snapshot is needed",
            row.stream_id, row.last_seq
        )));
    }
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
        touch(tx, host, received_at)?;
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
    for e in new {
        insert_event(
            tx,
            &HistoryRow {
                host,
                stream_id,
                seq: Some(e.seq as i64),
                transition: e.transition,
                observed_at: e.observed_at,
                received_at,
                subject: &e.item.subject,
                severity: e.item.severity,
                item: &e.item.encoded,
                source: "stream",
            },
        )?;
        match e.transition {
            Transition::Drifted | Transition::Changed => {
                let old = current(tx, host, &e.item.subject)?;
                row.upsert(tx, host, &e.item, old, e.observed_at)?;
            }
            Transition::Resolved => {
                if let Some((severity, observed_at, _)) = delete_item(tx, host, &e.item.subject)? {
                    row.removed(severity, observed_at);
                }
            }
        }
    }
    row.stream_id = stream_id.to_owned();
    row.last_seq = last_seq;
    row.save(tx, host, received_at)?;
    Ok(Applied {
        last_seq,
        events: new.len() as u64,
    })
}

fn apply_snapshot(
    tx: &mut Tx<'_>,
    host: &str,
    stream_id: &str,
    seq: u64,
    items: &[ItemRecord],
    received_at: Millis,
) -> Result<Applied> {
    let mut row = HostState::read(tx, host)?;
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
    let mut old: HashMap<String, Current> = HashMap::new();
    for r in tx.query(
        "SELECT subject, sha256, severity, observed_at FROM items WHERE host = $1",
        &[&host],
    )? {
        old.insert(
            r.get(0),
            Current {
                sha256: r.get(1),
                severity: severity(r.get(2))?,
                observed_at: r.get(3),
            },
        );
    }
    let mut written = 0;
    for item in items {
        let before = old.remove(&item.subject);
        let transition = match &before {
            Some(current) if current.sha256 == item.sha256 => continue,
            Some(_) => Transition::Changed,
            None => Transition::Drifted,
        };
        insert_event(
            tx,
            &HistoryRow {
                host,
                stream_id,
                seq: None,
                transition,
                observed_at: received_at,
                received_at,
                subject: &item.subject,
                severity: item.severity,
                item: &item.encoded,
                source: "snapshot",
            },
        )?;
        row.upsert(tx, host, item, before, received_at)?;
        written += 1;
    }
    let mut gone: Vec<String> = old.into_keys().collect();
    gone.sort_unstable();
    for subject in &gone {
        let Some((severity, observed_at, item)) = delete_item(tx, host, subject)? else {
            continue;
        };
        row.removed(severity, observed_at);
        insert_event(
            tx,
            &HistoryRow {
                host,
                stream_id,
                seq: None,
                transition: Transition::Resolved,
                observed_at: received_at,
                received_at,
                subject,
                severity,
                item: &item,
                source: "snapshot",
            },
        )?;
        written += 1;
    }
    row.stream_id = stream_id.to_owned();
    row.last_seq = seq;
    row.save(tx, host, received_at)?;
    Ok(Applied {
        last_seq: seq,
        events: written,
    })
}

fn unknown_host(host: &str) -> StoreError {
    StoreError::Rejected(format!("unknown host {host}: it must say hello first"))
}

pub(super) fn stream_state(tx: &mut Tx<'_>, host: &str) -> Result<Option<StreamState>> {
    Ok(tx
        .query_opt(
            "SELECT stream_id, last_seq, connection FROM hosts WHERE host = $1",
            &[&host],
        )?
        .map(|r| StreamState {
            stream_id: r.get(0),
            last_seq: to_u64(r.get(1)),
            connection: to_u64(r.get(2)),
        }))
}

fn touch(tx: &mut Tx<'_>, host: &str, at: Millis) -> Result<()> {
    tx.execute(
        "UPDATE hosts SET last_seen = GREATEST(last_seen, $2) WHERE host = $1",
        &[&host, &at],
    )?;
    Ok(())
}

/// What a write needs of a current item before replacing it.
struct Current {
    sha256: Vec<u8>,
    severity: Severity,
    observed_at: Millis,
}

fn current(tx: &mut Tx<'_>, host: &str, subject: &str) -> Result<Option<Current>> {
    tx.query_opt(
        "SELECT sha256, severity, observed_at FROM items WHERE host = $1 AND subject = $2",
        &[&host, &subject],
    )?
    .map(|r| {
        Ok(Current {
            sha256: r.get(0),
            severity: severity(r.get(1))?,
            observed_at: r.get(2),
        })
    })
    .transpose()
}

/// Removes a current item; returns its severity, `observed_at` and encoding if there was one.
fn delete_item(
    tx: &mut Tx<'_>,
    host: &str,
    subject: &str,
) -> Result<Option<(Severity, Millis, Vec<u8>)>> {
    tx.query_opt(
        "DELETE FROM items WHERE host = $1 AND subject = $2
         RETURNING severity, observed_at, item",
        &[&host, &subject],
    )?
    .map(|r| Ok((severity(r.get(0))?, r.get(1), r.get(2))))
    .transpose()
}

/// One `events` row.
struct HistoryRow<'a> {
    host: &'a str,
    stream_id: &'a str,
    seq: Option<i64>,
    transition: Transition,
    observed_at: Millis,
    received_at: Millis,
    subject: &'a str,
    severity: Severity,
    item: &'a [u8],
    source: &'static str,
}

fn insert_event(tx: &mut Tx<'_>, row: &HistoryRow<'_>) -> Result<()> {
    tx.execute(
        "INSERT INTO events (host, stream_id, seq, transition, observed_at, received_at,
             subject, severity, source, item)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &row.host,
            &row.stream_id,
            &row.seq,
            &row.transition.as_str(),
            &row.observed_at,
            &row.received_at,
            &row.subject,
            &(row.severity.index() as i64),
            &row.source,
            &row.item,
        ],
    )?;
    Ok(())
}

/// A host's row while a write changes it (see SQLite's `write::HostState`).
struct HostState {
    stream_id: String,
    last_seq: u64,
    counts: [i64; 3],
    since: [Option<Millis>; 3],
    /// Severities whose oldest item left: their `since` is read again on saving.
    stale: [bool; 3],
}

impl HostState {
    /// Reads and locks the host's row; an unknown host is rejected.
    fn read(tx: &mut Tx<'_>, host: &str) -> Result<HostState> {
        let r = tx
            .query_opt(
                "SELECT stream_id, last_seq, n_security, n_behavioral, n_cosmetic,
                     since_security, since_behavioral, since_cosmetic
                 FROM hosts WHERE host = $1 FOR UPDATE",
                &[&host],
            )?
            .ok_or_else(|| unknown_host(host))?;
        Ok(HostState {
            stream_id: r.get(0),
            last_seq: to_u64(r.get(1)),
            counts: [r.get(2), r.get(3), r.get(4)],
            since: [r.get(5), r.get(6), r.get(7)],
            stale: [false; 3],
        })
    }

    /// Stores `item` as current (replacing `old`) and counts it; an item already current
    /// keeps its `observed_at`.
    fn upsert(
        &mut self,
        tx: &mut Tx<'_>,
        host: &str,
        item: &ItemRecord,
        old: Option<Current>,
        observed_at: Millis,
    ) -> Result<()> {
        let observed_at = match old {
            Some(old) => {
                if old.severity != item.severity {
                    self.removed(old.severity, old.observed_at);
                    self.added(item.severity, old.observed_at);
                }
                old.observed_at
            }
            None => {
                self.added(item.severity, observed_at);
                observed_at
            }
        };
        let changed = serde_json::to_string(&item.changed).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO items (host, subject, subject_kind, kind, severity, cause, changed,
                 observed_at, sha256, item)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (host, subject) DO UPDATE SET
                 subject_kind = excluded.subject_kind,
                 kind = excluded.kind,
                 severity = excluded.severity,
                 cause = excluded.cause,
                 changed = excluded.changed,
                 sha256 = excluded.sha256,
                 item = excluded.item",
            &[
                &host,
                &item.subject,
                &item.subject_kind.as_str(),
                &item.kind,
                &(item.severity.index() as i64),
                &item.cause,
                &changed,
                &observed_at,
                &item.sha256.as_slice(),
                &item.encoded,
            ],
        )?;
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
    fn save(&mut self, tx: &mut Tx<'_>, host: &str, seen: Millis) -> Result<()> {
        for severity in Severity::ALL {
            let i = severity as usize;
            if self.counts[i] <= 0 {
                self.counts[i] = 0;
                self.since[i] = None;
            } else if self.stale[i] {
                self.since[i] = tx
                    .query_one(
                        "SELECT min(observed_at) FROM items WHERE host = $1 AND severity = $2",
                        &[&host, &(severity as i64)],
                    )?
                    .get(0);
            }
        }
        tx.execute(
            "UPDATE hosts SET stream_id = $2, last_seq = $3, last_seen = GREATEST(last_seen, $4),
                 n_security = $5, n_behavioral = $6, n_cosmetic = $7,
                 since_security = $8, since_behavioral = $9, since_cosmetic = $10
             WHERE host = $1",
            &[
                &host,
                &self.stream_id,
                &(self.last_seq as i64),
                &seen,
                &self.counts[0],
                &self.counts[1],
                &self.counts[2],
                &self.since[0],
                &self.since[1],
                &self.since[2],
            ],
        )?;
        Ok(())
    }
}
