//! Writes: hellos aside (see the parent), every write goes through [`apply_one`] inside the
//! group's transaction, under a savepoint of its own.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Context as _, severity_at, to_u64};
use crate::store::{
    Applied, EventRecord, ItemRecord, Millis, Result, Severity, StoreError, StreamState,
    Transition, Write,
};

pub(super) fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

pub(super) fn apply_one(conn: &Connection, write: &Write) -> Result<Applied> {
    match write {
        Write::Batch {
            host,
            stream_id,
            events,
            received_at,
        } => apply_batch(conn, host, stream_id, events, *received_at),
        Write::Snapshot {
            host,
            stream_id,
            seq,
            items,
            received_at,
        } => apply_snapshot(conn, host, stream_id, *seq, items, *received_at),
        Write::Seen { host, at } => {
            let last_seq = conn
                .prepare_cached(
                    "UPDATE hosts SET last_seen = max(last_seen, ?2) WHERE host = ?1
                     RETURNING last_seq",
                )
                .and_then(|mut stmt| stmt.query_row(params![host, at], |r| r.get(0)).optional())
                .with_context(|| format!("recording that host {host} was seen"))?
                .ok_or_else(|| unknown_host(host))?;
            Ok(Applied {
                last_seq: to_u64(last_seq),
                events: 0,
            })
        }
    }
}

fn apply_batch(
    conn: &Connection,
    host: &str,
    stream_id: &str,
    events: &[EventRecord],
    received_at: Millis,
) -> Result<Applied> {
    let state = stream_state(conn, host)
        .with_context(|| format!("reading host {host}"))?
        .ok_or_else(|| unknown_host(host))?;
    if !state.stream_id.is_empty() && state.stream_id != stream_id {
        return Err(StoreError::Rejected(format!(
            "stream mismatch for host {host}: the collector follows stream {:?} (up to sequence \
             {}), the batch is of stream {stream_id:?}; a snapshot is needed",
            state.stream_id, state.last_seq
        )));
    }
    // Validate before writing anything: a rejected batch costs no work to roll back.
    let replayed = events
        .iter()
        .take_while(|e| e.seq <= state.last_seq)
        .count();
    let new = &events[replayed..];
    for (expected, e) in (state.last_seq + 1..).zip(new) {
        if e.seq != expected {
            return Err(StoreError::Rejected(format!(
                "sequence gap for host {host}: expected sequence number {expected}, got {} \
                 (stored up to {}); nothing of this batch was stored",
                e.seq, state.last_seq
            )));
        }
    }
    if new.is_empty() {
        touch(conn, host, received_at)?;
        return Ok(Applied {
            last_seq: state.last_seq,
            events: 0,
        });
    }
    let last_seq = state.last_seq + new.len() as u64;
    if i64::try_from(last_seq).is_err() {
        return Err(StoreError::Rejected(format!(
            "sequence number {last_seq} of host {host} is out of range"
        )));
    }
    for e in new {
        insert_event(
            conn,
            &HistoryRow {
                host,
                stream_id,
                seq: Some(e.seq as i64),
                transition: e.transition,
                observed_at: e.observed_at,
                received_at,
                subject: &e.item.subject,
                severity: e.item.severity,
                json: &e.item.json,
                source: "stream",
            },
        )?;
        match e.transition {
            Transition::Drifted | Transition::Changed => {
                upsert_item(conn, host, &e.item, e.observed_at)?
            }
            Transition::Resolved => {
                conn.prepare_cached("DELETE FROM items WHERE host = ?1 AND subject = ?2")
                    .and_then(|mut stmt| stmt.execute([host, &e.item.subject]))
                    .with_context(|| format!("resolving {} on host {host}", e.item.subject))?;
            }
        }
    }
    update_host(conn, host, stream_id, last_seq, received_at)?;
    Ok(Applied {
        last_seq,
        events: new.len() as u64,
    })
}

fn apply_snapshot(
    conn: &Connection,
    host: &str,
    stream_id: &str,
    seq: u64,
    items: &[ItemRecord],
    received_at: Millis,
) -> Result<Applied> {
    stream_state(conn, host)
        .with_context(|| format!("reading host {host}"))?
        .ok_or_else(|| unknown_host(host))?;
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
    let mut old: HashMap<String, [u8; 32]> = conn
        .prepare_cached("SELECT subject, sha256 FROM items WHERE host = ?1")
        .and_then(|mut stmt| {
            stmt.query_map([host], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .with_context(|| format!("reading the drift set of host {host}"))?;
    let mut written = 0;
    for item in items {
        let transition = match old.remove(&item.subject) {
            Some(sha256) if sha256 == item.sha256 => continue,
            Some(_) => Transition::Changed,
            None => Transition::Drifted,
        };
        insert_event(
            conn,
            &HistoryRow {
                host,
                stream_id,
                seq: None,
                transition,
                observed_at: received_at,
                received_at,
                subject: &item.subject,
                severity: item.severity,
                json: &item.json,
                source: "snapshot",
            },
        )?;
        upsert_item(conn, host, item, received_at)?;
        written += 1;
    }
    let mut gone: Vec<String> = old.into_keys().collect();
    gone.sort_unstable();
    for subject in &gone {
        let (severity, json): (i64, String) = conn
            .prepare_cached(
                "DELETE FROM items WHERE host = ?1 AND subject = ?2 RETURNING severity, json",
            )
            .and_then(|mut stmt| stmt.query_row([host, subject], |r| Ok((r.get(0)?, r.get(1)?))))
            .with_context(|| format!("resolving {subject} on host {host}"))?;
        let severity = Severity::from_index(severity).ok_or_else(|| {
            StoreError::Database(format!(
                "item {subject} of host {host} has an invalid severity {severity}"
            ))
        })?;
        insert_event(
            conn,
            &HistoryRow {
                host,
                stream_id,
                seq: None,
                transition: Transition::Resolved,
                observed_at: received_at,
                received_at,
                subject,
                severity,
                json: &json,
                source: "snapshot",
            },
        )?;
        written += 1;
    }
    update_host(conn, host, stream_id, seq, received_at)?;
    Ok(Applied {
        last_seq: seq,
        events: written,
    })
}

fn unknown_host(host: &str) -> StoreError {
    StoreError::Rejected(format!("unknown host {host}: it must say hello first"))
}

pub(super) fn stream_state(conn: &Connection, host: &str) -> rusqlite::Result<Option<StreamState>> {
    conn.prepare_cached("SELECT stream_id, last_seq FROM hosts WHERE host = ?1")?
        .query_row([host], |r| {
            Ok(StreamState {
                stream_id: r.get(0)?,
                last_seq: to_u64(r.get(1)?),
            })
        })
        .optional()
}

fn touch(conn: &Connection, host: &str, at: Millis) -> Result<()> {
    conn.prepare_cached("UPDATE hosts SET last_seen = max(last_seen, ?2) WHERE host = ?1")
        .and_then(|mut stmt| stmt.execute(params![host, at]))
        .with_context(|| format!("recording that host {host} was seen"))?;
    Ok(())
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
    json: &'a str,
    source: &'static str,
}

fn insert_event(conn: &Connection, row: &HistoryRow<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (host, stream_id, seq, transition, observed_at, received_at,
             subject, severity, source, json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            row.host,
            row.stream_id,
            row.seq,
            row.transition.as_str(),
            row.observed_at,
            row.received_at,
            row.subject,
            row.severity as i64,
            row.source,
            row.json,
        ])
    })
    .with_context(|| {
        format!(
            "storing event {} of host {} ({})",
            row.seq.unwrap_or(0),
            row.host,
            row.subject
        )
    })?;
    Ok(())
}

/// Stores an item as current. An item already current keeps its `observed_at`: it has been
/// drifted since then, whatever changed since.
fn upsert_item(
    conn: &Connection,
    host: &str,
    item: &ItemRecord,
    observed_at: Millis,
) -> Result<()> {
    let changed = serde_json::to_string(&item.changed).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO items (host, subject, subject_kind, kind, severity, cause, changed,
             observed_at, sha256, json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (host, subject) DO UPDATE SET
             subject_kind = excluded.subject_kind,
             kind = excluded.kind,
             severity = excluded.severity,
             cause = excluded.cause,
             changed = excluded.changed,
             sha256 = excluded.sha256,
             json = excluded.json",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            host,
            item.subject,
            item.subject_kind.as_str(),
            item.kind,
            item.severity as i64,
            item.cause,
            changed,
            observed_at,
            item.sha256,
            item.json,
        ])
    })
    .with_context(|| format!("storing item {} of host {host}", item.subject))?;
    Ok(())
}

/// Sets where the host's stream stands and recomputes its cached aggregates from its items:
/// once per write, however many events it held.
fn update_host(
    conn: &Connection,
    host: &str,
    stream_id: &str,
    last_seq: u64,
    seen: Millis,
) -> Result<()> {
    let mut counts = [0i64; 3];
    let mut since: [Option<Millis>; 3] = [None; 3];
    conn.prepare_cached(
        "SELECT severity, count(*), min(observed_at) FROM items WHERE host = ?1
         GROUP BY severity",
    )
    .and_then(|mut stmt| {
        let mut rows = stmt.query([host])?;
        while let Some(row) = rows.next()? {
            let severity = severity_at(row, 0)? as usize;
            counts[severity] = row.get(1)?;
            since[severity] = row.get(2)?;
        }
        Ok(())
    })
    .with_context(|| format!("counting the items of host {host}"))?;
    conn.prepare_cached(
        "UPDATE hosts SET stream_id = ?2, last_seq = ?3, last_seen = max(last_seen, ?4),
             n_security = ?5, n_behavioral = ?6, n_cosmetic = ?7,
             since_security = ?8, since_behavioral = ?9, since_cosmetic = ?10
         WHERE host = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            host,
            stream_id,
            last_seq as i64,
            seen,
            counts[0],
            counts[1],
            counts[2],
            since[0],
            since[1],
            since[2],
        ])
    })
    .with_context(|| format!("updating host {host}"))?;
    Ok(())
}
