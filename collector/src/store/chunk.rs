//! A write's history events encoded together: the `chunk` of a history row, in every backend.
//!
//! A row per event cost every backend one row and several index entries per event (the row,
//! the unique key, a host's and everyone's order): half of what ingest asked of SQLite, and
//! more of PostgreSQL. A write's events share their host, stream, receipt time and source, and
//! are read back together (a host's history newest first, everyone's since a time), so both
//! backends store one row per write, its events prost-encoded here. Queries decode a row's
//! events and filter them by path and severity as they read, newest first.

use crate::store::{EventRecord, HistoryEntry, Millis, Severity, Source, Transition};

/// A write's events, oldest first, as stored in a history row's `chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<ChunkEvent>,
}

/// One event of a [`Chunk`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkEvent {
    /// The stream's sequence number; 0 for transitions derived from a snapshot.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// 0 drifted, 1 changed, 2 resolved.
    #[prost(uint32, tag = "2")]
    pub transition: u32,
    #[prost(int64, tag = "3")]
    pub observed_at: Millis,
    #[prost(string, tag = "4")]
    pub subject: String,
    /// [`Severity::index`].
    #[prost(uint32, tag = "5")]
    pub severity: u32,
    /// The item's canonical encoding; for `resolved`, the item that was resolved.
    #[prost(bytes = "vec", tag = "6")]
    pub item: Vec<u8>,
}

impl Chunk {
    /// Adds an agent's event.
    pub fn push_event(&mut self, e: &EventRecord) {
        self.push(
            Some(e.seq),
            e.transition,
            e.observed_at,
            &e.item.subject,
            e.item.severity,
            &e.item.encoded,
        );
    }

    pub fn push(
        &mut self,
        seq: Option<u64>,
        transition: Transition,
        observed_at: Millis,
        subject: &str,
        severity: Severity,
        item: &[u8],
    ) {
        self.events.push(ChunkEvent {
            seq: seq.unwrap_or(0),
            transition: Transition::ALL
                .iter()
                .position(|t| *t == transition)
                .unwrap_or(0) as u32,
            observed_at,
            subject: subject.to_owned(),
            severity: severity.index() as u32,
            item: item.to_vec(),
        });
    }

    /// The history entries of a row of `host`, oldest first (`rev()` for newest first), that
    /// `keep` keeps: it sees each event's subject and severity before anything is copied.
    /// `Err` names a column holding a value no version of the store writes.
    pub fn entries(
        self,
        host: &str,
        received_at: Millis,
        source: Source,
        mut keep: impl FnMut(&str, Severity) -> bool,
    ) -> impl DoubleEndedIterator<Item = Result<HistoryEntry, &'static str>> {
        self.events.into_iter().filter_map(move |e| {
            let Some(severity) = e.severity() else {
                return Some(Err("severity"));
            };
            if !keep(&e.subject, severity) {
                return None;
            }
            let Some(transition) = e.transition() else {
                return Some(Err("transition"));
            };
            Some(Ok(HistoryEntry {
                host: host.to_owned(),
                seq: e.seq,
                transition,
                observed_at: e.observed_at,
                received_at,
                subject: e.subject,
                severity,
                item: e.item,
                source,
            }))
        })
    }
}

impl ChunkEvent {
    pub fn transition(&self) -> Option<Transition> {
        Transition::ALL.get(self.transition as usize).copied()
    }

    pub fn severity(&self) -> Option<Severity> {
        Severity::from_index(i64::from(self.severity))
    }
}

/// One row of the history as older schemas stored it, one per event (SQLite's `events` up to
/// version 12, PostgreSQL's up to version 3), as the migrations read it.
pub struct OldEvent<'a> {
    pub host: &'a str,
    pub stream_id: &'a str,
    pub seq: Option<i64>,
    pub transition: Transition,
    pub observed_at: Millis,
    pub received_at: Millis,
    pub subject: &'a str,
    pub severity: Severity,
    pub source: &'static str,
    pub item: &'a [u8],
}

/// One write's history row, as a migration stores it.
pub struct Written {
    pub host: String,
    pub stream_id: String,
    /// The first event's sequence number; `None` for a snapshot's.
    pub first_seq: Option<i64>,
    pub received_at: Millis,
    pub source: &'static str,
    pub chunk: Chunk,
}

/// Regroups [`OldEvent`]s, read in the order they were stored, into one row per write:
/// consecutive events of one write share their host, stream, receipt time and source, and
/// their sequence numbers follow each other.
#[derive(Default)]
pub struct Regroup {
    open: Option<Written>,
    /// The sequence number the next event of the open write has.
    next_seq: Option<i64>,
}

impl Regroup {
    /// Adds an event; returns the write it closed, if it starts another.
    pub fn push(&mut self, e: &OldEvent<'_>) -> Option<Written> {
        let follows = self.open.as_ref().is_some_and(|o| {
            o.host == e.host
                && o.stream_id == e.stream_id
                && o.received_at == e.received_at
                && o.source == e.source
                && self.next_seq == e.seq
        });
        let closed = if follows { None } else { self.open.take() };
        let open = self.open.get_or_insert_with(|| Written {
            host: e.host.to_owned(),
            stream_id: e.stream_id.to_owned(),
            first_seq: e.seq,
            received_at: e.received_at,
            source: e.source,
            chunk: Chunk::default(),
        });
        self.next_seq = e.seq.map(|s| s + 1);
        open.chunk.push(
            e.seq.map(|s| u64::try_from(s).unwrap_or(0)),
            e.transition,
            e.observed_at,
            e.subject,
            e.severity,
            e.item,
        );
        closed
    }

    /// The last write, once every event was pushed.
    pub fn finish(&mut self) -> Option<Written> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn a_chunk_reads_back_in_order_and_filtered() {
        let mut chunk = Chunk::default();
        chunk.push(
            Some(7),
            Transition::Drifted,
            10,
            "/etc/a",
            Severity::Security,
            b"a",
        );
        chunk.push(
            Some(8),
            Transition::Changed,
            11,
            "/etc/b",
            Severity::Cosmetic,
            b"b",
        );
        chunk.push(
            Some(9),
            Transition::Resolved,
            12,
            "/etc/c",
            Severity::Security,
            b"c",
        );
        let chunk = Chunk::decode(chunk.encode_to_vec().as_slice()).unwrap();
        let entries: Vec<HistoryEntry> = chunk
            .entries("h", 99, Source::Stream, |_, s| s == Severity::Security)
            .rev()
            .collect::<Result<_, _>>()
            .unwrap();
        let got: Vec<(u64, Transition, &str, &[u8])> = entries
            .iter()
            .map(|e| (e.seq, e.transition, e.subject.as_str(), e.item.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (9, Transition::Resolved, "/etc/c", b"c".as_slice()),
                (7, Transition::Drifted, "/etc/a", b"a".as_slice()),
            ]
        );
        assert!(entries.iter().all(|e| e.host == "h" && e.received_at == 99));
    }

    #[test]
    fn a_value_no_version_writes_is_an_error() {
        let chunk = Chunk {
            events: vec![ChunkEvent {
                seq: 1,
                transition: 9,
                observed_at: 0,
                subject: "/x".into(),
                severity: 0,
                item: Vec::new(),
            }],
        };
        let mut entries = chunk.entries("h", 0, Source::Stream, |_, _| true);
        assert_eq!(entries.next().map(|e| e.err()), Some(Some("transition")));
    }
}
