//! The history's rows: one per write, its events encoded together (a [`Chunk`], see
//! `store::chunk`, shared with PostgreSQL). A row per event cost four b-tree insertions per
//! event (the row, the unique key, a host's and everyone's order): half of everything ingest
//! asked of SQLite.

use prost::Message as _;
use rusqlite::{Connection, types::Type};

use crate::store::chunk::Chunk;
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

/// Moves rows of version 12's `events` (one per event) into `history`, consecutive events of
/// one write together (same host, stream, receipt time and source, sequence numbers following).
pub(super) fn convert_events(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(
        "SELECT host, stream_id, seq, transition, observed_at, received_at, subject, severity,
             source, item
         FROM events ORDER BY id",
    )?;
    let mut stmt = conn.prepare_cached(INSERT_CHUNK)?;
    let mut rows = read.query([])?;
    let mut open: Option<Converting> = None;
    while let Some(row) = rows.next()? {
        let host = row.get_ref(0)?.as_str()?;
        let stream_id = row.get_ref(1)?.as_str()?;
        let seq: Option<i64> = row.get(2)?;
        let received_at: Millis = row.get(5)?;
        let source = match row.get_ref(8)?.as_str()? {
            "snapshot" => "snapshot",
            _ => "stream",
        };
        let follows = open.as_ref().is_some_and(|o| {
            o.host == host
                && o.stream_id == stream_id
                && o.received_at == received_at
                && o.source == source
                && o.next_seq == seq
        });
        if !follows && let Some(done) = open.take() {
            done.store(&mut stmt)?;
        }
        let o = open.get_or_insert_with(|| Converting {
            host: host.to_owned(),
            stream_id: stream_id.to_owned(),
            first_seq: seq,
            received_at,
            source,
            next_seq: None,
            chunk: Chunk::default(),
        });
        o.next_seq = seq.map(|s| s + 1);
        let transition = Transition::parse(row.get_ref(3)?.as_str()?).ok_or(
            rusqlite::Error::InvalidColumnType(3, "transition".into(), Type::Text),
        )?;
        o.chunk.push(
            seq.map(super::to_u64),
            transition,
            row.get(4)?,
            row.get_ref(6)?.as_str()?,
            super::severity_at(row, 7)?,
            row.get_ref(9)?.as_blob()?,
        );
    }
    match open {
        Some(last) => last.store(&mut stmt),
        None => Ok(()),
    }
}

/// The chunk [`convert_events`] is filling.
struct Converting {
    host: String,
    stream_id: String,
    first_seq: Option<i64>,
    received_at: Millis,
    source: &'static str,
    /// The sequence number the next event of the same write has.
    next_seq: Option<i64>,
    chunk: Chunk,
}

impl Converting {
    fn store(self, stmt: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<()> {
        let row = ChunkRow {
            host: &self.host,
            stream_id: &self.stream_id,
            first_seq: self.first_seq,
            received_at: self.received_at,
            source: self.source,
        };
        insert(stmt, &row, &self.chunk)
    }
}
