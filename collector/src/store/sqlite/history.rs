//! The history's rows: one per write, its events encoded together (a [`Chunk`], see
//! `store::chunk`, shared with PostgreSQL). A row per event cost four b-tree insertions per
//! event (the row, the unique key, a host's and everyone's order): half of everything ingest
//! asked of SQLite.

use prost::Message as _;
use rusqlite::{Connection, types::Type};

use crate::store::chunk::{Chunk, OldEvent, Regroup, Written};
use crate::store::{Millis, Transition};

/// Stores one write's history row.
pub(super) const INSERT_CHUNK: &str = "INSERT INTO history (host, stream_id, first_seq,
     received_at, source, events, chunk)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Decodes column `idx` of a row.
pub(super) fn read(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Chunk> {
    let blob = row.get_ref(idx)?.as_blob()?;
    Chunk::decode(blob)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Blob, Box::new(e)))
}

/// Stores a write's history row (nothing for a write without events).
pub(super) fn insert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    row: &ChunkRow<'_>,
    chunk: &Chunk,
) -> rusqlite::Result<()> {
    if chunk.events.is_empty() {
        return Ok(());
    }
    stmt.execute(rusqlite::params![
        row.host,
        row.stream_id,
        row.first_seq,
        row.received_at,
        row.source,
        chunk.events.len() as i64,
        chunk.encode_to_vec(),
    ])?;
    Ok(())
}

/// What a write's events share.
pub(super) struct ChunkRow<'a> {
    pub host: &'a str,
    pub stream_id: &'a str,
    /// The first event's sequence number; `None` for a snapshot's.
    pub first_seq: Option<i64>,
    pub received_at: Millis,
    pub source: &'static str,
}

/// Moves rows of version 12's `events` (one per event) into `history`, one row per write
/// (`Regroup`).
pub(super) fn convert_events(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(
        "SELECT host, stream_id, seq, transition, observed_at, received_at, subject, severity,
             source, item
         FROM events ORDER BY id",
    )?;
    let mut stmt = conn.prepare_cached(INSERT_CHUNK)?;
    let mut rows = read.query([])?;
    let mut regroup = Regroup::default();
    while let Some(row) = rows.next()? {
        let transition = Transition::parse(row.get_ref(3)?.as_str()?).ok_or(
            rusqlite::Error::InvalidColumnType(3, "transition".into(), Type::Text),
        )?;
        let event = OldEvent {
            host: row.get_ref(0)?.as_str()?,
            stream_id: row.get_ref(1)?.as_str()?,
            seq: row.get(2)?,
            transition,
            observed_at: row.get(4)?,
            received_at: row.get(5)?,
            subject: row.get_ref(6)?.as_str()?,
            severity: super::severity_at(row, 7)?,
            source: match row.get_ref(8)?.as_str()? {
                "snapshot" => "snapshot",
                _ => "stream",
            },
            item: row.get_ref(9)?.as_blob()?,
        };
        if let Some(done) = regroup.push(&event) {
            store(&mut stmt, &done)?;
        }
    }
    match regroup.finish() {
        Some(last) => store(&mut stmt, &last),
        None => Ok(()),
    }
}

fn store(stmt: &mut rusqlite::CachedStatement<'_>, w: &Written) -> rusqlite::Result<()> {
    let row = ChunkRow {
        host: &w.host,
        stream_id: &w.stream_id,
        first_seq: w.first_seq,
        received_at: w.received_at,
        source: w.source,
    };
    insert(stmt, &row, &w.chunk)
}
