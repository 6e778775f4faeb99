//! The history's rows: one per write, its events encoded together (a [`Chunk`], see
//! `store::chunk`, shared with SQLite). A row per event cost the server a row and five index
//! entries per event; a row per write costs them once per batch, whatever its size.

use std::borrow::Cow;

use postgres::Transaction;
use postgres::types::ToSql;
use prost::Message as _;

use super::Context as _;
use super::tx::Tx;
use crate::store::chunk::{Chunk, OldEvent, Regroup, Written};
use crate::store::{HistoryEntry, Millis, Result, Severity, Source, StoreError, Transition};

/// The columns [`entries`] reads, in its order.
pub(super) const COLUMNS: &str = "host, received_at, source, chunk";

/// Stores rows in the order given (their `id`s follow it).
const INSERT: &str = "INSERT INTO history (host, stream_id, first_seq, received_at, source,
         events, chunk)
     SELECT host, stream_id, first_seq, received_at, source, events, chunk
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
         $6::bigint[], $7::bytea[])
         WITH ORDINALITY AS r (host, stream_id, first_seq, received_at, source, events, chunk, n)
     ORDER BY n";

/// One write's history row.
pub(super) struct Row<'a> {
    pub host: Cow<'a, str>,
    pub stream_id: Cow<'a, str>,
    /// The first event's sequence number; `None` for a snapshot's.
    pub first_seq: Option<i64>,
    pub received_at: Millis,
    pub source: &'static str,
    pub chunk: Chunk,
}

impl From<Written> for Row<'static> {
    fn from(w: Written) -> Row<'static> {
        Row {
            host: Cow::Owned(w.host),
            stream_id: Cow::Owned(w.stream_id),
            first_seq: w.first_seq,
            received_at: w.received_at,
            source: w.source,
            chunk: w.chunk,
        }
    }
}

/// [`INSERT`]'s parameters, column by column.
struct Columns<'a> {
    host: Vec<&'a str>,
    stream_id: Vec<&'a str>,
    first_seq: Vec<Option<i64>>,
    received_at: Vec<Millis>,
    source: Vec<&'static str>,
    events: Vec<i64>,
    chunk: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    /// The rows that hold events (a write that changed nothing has no row).
    fn of(rows: &'a [Row<'a>]) -> Columns<'a> {
        let rows: Vec<&Row<'_>> = rows.iter().filter(|r| !r.chunk.events.is_empty()).collect();
        Columns {
            host: rows.iter().map(|r| r.host.as_ref()).collect(),
            stream_id: rows.iter().map(|r| r.stream_id.as_ref()).collect(),
            first_seq: rows.iter().map(|r| r.first_seq).collect(),
            received_at: rows.iter().map(|r| r.received_at).collect(),
            source: rows.iter().map(|r| r.source).collect(),
            events: rows.iter().map(|r| r.chunk.events.len() as i64).collect(),
            chunk: rows.iter().map(|r| r.chunk.encode_to_vec()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.host,
            &self.stream_id,
            &self.first_seq,
            &self.received_at,
            &self.source,
            &self.events,
            &self.chunk,
        ]
    }
}

/// Stores a group's history rows, in order.
pub(super) fn insert(tx: &mut Tx<'_>, rows: &[Row<'_>]) -> Result<()> {
    let columns = Columns::of(rows);
    if !columns.host.is_empty() {
        tx.execute(INSERT, &columns.params())?;
    }
    Ok(())
}

/// The history entries of a row whose first columns are [`COLUMNS`], oldest first, that `keep`
/// keeps (see `Chunk::entries`).
pub(super) fn entries(
    row: &postgres::Row,
    keep: impl FnMut(&str, Severity) -> bool,
) -> Result<impl DoubleEndedIterator<Item = Result<HistoryEntry>>> {
    let source: &str = row.get(2);
    let source = Source::parse(source).ok_or_else(|| unknown("source", source))?;
    let chunk = Chunk::decode(row.get::<_, &[u8]>(3))
        .map_err(|e| StoreError::Database(format!("a history row's events do not decode: {e}")))?;
    let entries = chunk.entries(row.get(0), row.get(1), source, keep);
    Ok(entries.map(|e| {
        e.map_err(|column| {
            StoreError::Database(format!("a history row's events hold an unknown {column}"))
        })
    }))
}

fn unknown(column: &str, value: &str) -> StoreError {
    StoreError::Database(format!("an unknown {column} {value:?} in the history"))
}

/// Rows of version 3's `events` read at once by [`convert_events`].
const PAGE: i32 = 10_000;

/// Moves rows of version 3's `events` (one per event) into `history`, one row per write
/// (`Regroup`).
pub(super) fn convert_events(tx: &mut Transaction<'_>) -> Result<()> {
    let portal = tx
        .bind(
            "SELECT host, stream_id, seq, transition, observed_at, received_at, subject,
                 severity, source, item
             FROM events ORDER BY id",
            &[],
        )
        .context("reading the events")?;
    let mut regroup = Regroup::default();
    let mut done: Vec<Row<'static>> = Vec::new();
    loop {
        let page = tx
            .query_portal(&portal, PAGE)
            .context("reading the events")?;
        for r in &page {
            let transition: &str = r.get(3);
            let event = OldEvent {
                host: r.get(0),
                stream_id: r.get(1),
                seq: r.get(2),
                transition: Transition::parse(transition)
                    .ok_or_else(|| unknown("transition", transition))?,
                observed_at: r.get(4),
                received_at: r.get(5),
                subject: r.get(6),
                severity: super::severity(r.get(7))?,
                source: match r.get::<_, &str>(8) {
                    "snapshot" => "snapshot",
                    _ => "stream",
                },
                item: r.get(9),
            };
            done.extend(regroup.push(&event).map(Row::from));
        }
        let last = page.len() < PAGE as usize;
        if last {
            done.extend(regroup.finish().map(Row::from));
        }
        if !done.is_empty() {
            tx.execute(INSERT, &Columns::of(&done).params())
                .context("storing the converted history")?;
            done.clear();
        }
        if last {
            return Ok(());
        }
    }
}
