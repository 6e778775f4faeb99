//! Writes: [`hello`] in a transaction of its own; a group's writes in one transaction, set-based
//! ([`apply`]), each write atomic on its own, as SQLite's `write` applies them.
//!
//! The server is a round trip away, so a group is not applied statement by statement:
//! [`apply`] reads what the group needs in three queries (the hosts' rows, locked; the current
//! items the group's events name, but for those the collector remembers at the host's
//! `items_version`, `known`; every current item of the hosts it snapshots), applies every
//! write in memory, in order (sequence checks, transitions, the cached aggregates), and writes
//! the outcome in six: the items removed, the items it read updated in place, the new items
//! inserted, the history (a row per write, `history`), the `since` of severities whose oldest
//! item left, and the hosts' rows. A group costs the same handful of round trips whether it
//! holds one event or twenty thousand.
//!
//! A write is rejected (stream mismatch, sequence gap, unknown host, a snapshot listing a path
//! twice) before it changes anything, in memory as in the database; its slot says why and the
//! other writes stand. A database error fails the whole call: the caller rolls back and applies
//! each write alone under a savepoint, so only the one that fails is lost.
//!
//! Reading the hosts' rows `FOR UPDATE`, in identity order, serializes collectors that share the
//! database on the hosts they both write to, without deadlock, and each write starts from the
//! stream state the previous one committed, whichever collector made it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::history;
use super::known::{Known, KnownItems, Subjects};
use super::tx::Tx;

use super::{severity, to_u64};
use crate::store::chunk::Chunk;
use crate::store::{
    Applied, EventRecord, HostInfo, ItemRecord, Millis, Result, Severity, StoreError, StreamState,
    Transition, Write,
};

/// Locks the hosts a group writes to, in identity order, so two collectors applying groups
/// that share hosts wait for each other instead of deadlocking.
pub(super) fn lock_hosts(tx: &mut Tx<'_>, writes: &[Write]) -> Result<()> {
    tx.query(
        "SELECT 1 FROM hosts WHERE host = ANY($1) ORDER BY host FOR UPDATE",
        &[&hosts_of(writes)],
    )?;
    Ok(())
}

/// Applies a group's writes (see the module's docs): each write's outcome in its slot, or a
/// database error for the whole group (nothing of it is then to be committed).
///
/// With `known`, what the collector remembers of the hosts' items stands in for reading them,
/// where it is current; what the group leaves is returned, to [`Learned::remember`] once the
/// group is committed.
pub(super) fn apply(
    tx: &mut Tx<'_>,
    writes: &[Write],
    known: Option<&KnownItems>,
) -> Result<(Vec<Result<Applied>>, Learned)> {
    let mut group = Group::load(tx, writes, known)?;
    let results = writes.iter().map(|w| group.apply(w)).collect();
    let learned = group.store(tx)?;
    Ok((results, learned))
}

/// The items of a group's hosts once it is committed, each host's at its new `items_version`.
#[must_use = "remembered only once the group is committed"]
pub(super) struct Learned(Vec<(String, i64, Subjects)>);

impl Learned {
    /// Remembers the hosts' items: the group that left them is committed. A host of which
    /// nothing is known (heartbeats' `Seen` alone) takes no room.
    pub(super) fn remember(self, known: &KnownItems) {
        for (host, version, subjects) in self.0 {
            if !subjects.is_empty() {
                known.put(host, version, subjects);
            }
        }
    }
}

/// The distinct hosts of `writes`, sorted.
fn hosts_of(writes: &[Write]) -> Vec<&str> {
    let mut hosts: Vec<&str> = writes.iter().map(Write::host).collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// What a group reads, changes in memory, and then writes back.
struct Group<'w> {
    /// The group's hosts that exist, by identity.
    hosts: HashMap<&'w str, HostState<'w>>,
    /// History rows (one per write that stored events), in the order they are to be numbered.
    history: Vec<history::Row<'w>>,
}

/// A host's row while the group changes it (see SQLite's `write::HostState`).
struct HostState<'w> {
    stream_id: Cow<'w, str>,
    /// `items_version`, as read: advanced by one when the group changes the host's items.
    items_version: i64,
    /// The group changed the host's items (known once they are stored).
    items_changed: bool,
    last_seq: u64,
    last_seen: Option<Millis>,
    aggregates: Aggregates,
    /// The host's current items the group may touch, by subject: every one of them when the
    /// group snapshots the host, else those its events name (absent: not current).
    items: HashMap<Cow<'w, str>, Slot<'w>>,
    /// A write to the host was applied: its row is written back.
    written: bool,
}

/// A host's counts per severity and oldest `observed_at` per severity.
struct Aggregates {
    counts: [i64; 3],
    since: [Option<Millis>; 3],
    /// Severities whose oldest item left: their `since` is read again once the items are stored.
    stale: [bool; 3],
}

/// One subject of a host: what is current now, and whether the group changed it.
#[derive(Default)]
struct Slot<'w> {
    current: Option<Current<'w>>,
    changed: bool,
    /// A row of `items` held the subject when the group read it: what is current at the end
    /// is an update of that row (or its deletion), not an insertion.
    in_table: bool,
}

/// A current item, as far as a write needs it.
struct Current<'w> {
    sha256: [u8; 32],
    severity: Severity,
    observed_at: Millis,
    /// Its encoding: read only for hosts the group snapshots (a snapshot's `resolved` rows
    /// carry the item that left).
    encoded: Option<Cow<'w, [u8]>>,
    /// The record a write of the group stored (what is written back).
    record: Option<&'w ItemRecord>,
}

impl<'w> Group<'w> {
    /// Locks and reads the group's hosts and the current items its writes touch.
    fn load(tx: &mut Tx<'_>, writes: &'w [Write], known: Option<&KnownItems>) -> Result<Group<'w>> {
        let names = hosts_of(writes);
        let mut hosts = HashMap::with_capacity(names.len());
        for r in tx.query(
            "SELECT host, stream_id, last_seq, n_security, n_behavioral, n_cosmetic,
                 since_security, since_behavioral, since_cosmetic, items_version
             FROM hosts WHERE host = ANY($1) ORDER BY host FOR UPDATE",
            &[&names],
        )? {
            let name: &str = r.get(0);
            let Ok(at) = names.binary_search(&name) else {
                continue;
            };
            hosts.insert(
                names[at],
                HostState {
                    stream_id: Cow::Owned(r.get(1)),
                    items_version: r.get(9),
                    items_changed: false,
                    last_seq: to_u64(r.get(2)),
                    last_seen: None,
                    aggregates: Aggregates {
                        counts: [r.get(3), r.get(4), r.get(5)],
                        since: [r.get(6), r.get(7), r.get(8)],
                        stale: [false; 3],
                    },
                    items: HashMap::new(),
                    written: false,
                },
            );
        }

        // Every current item of the hosts snapshot, with its encoding.
        let mut whole: Vec<&str> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Snapshot { host, .. } if hosts.contains_key(host.as_str()) => {
                    Some(host.as_str())
                }
                _ => None,
            })
            .collect();
        whole.sort_unstable();
        whole.dedup();
        if !whole.is_empty() {
            for r in tx.query(
                "SELECT host, subject, sha256, severity, observed_at, item
                 FROM items WHERE host = ANY($1)",
                &[&whole],
            )? {
                let host: &str = r.get(0);
                let mut current = current(&r)?;
                current.encoded = Some(Cow::Owned(r.get(5)));
                if let Some(state) = hosts.get_mut(host) {
                    state.items.insert(
                        Cow::Owned(r.get(1)),
                        Slot {
                            current: Some(current),
                            changed: false,
                            in_table: true,
                        },
                    );
                }
            }
        }

        // What the collector remembers of the other hosts, where still current.
        if let Some(known) = known {
            for (host, state) in &mut hosts {
                if whole.binary_search(host).is_ok() {
                    continue;
                }
                let Some(subjects) = known.take(host, state.items_version) else {
                    continue;
                };
                state.items = subjects
                    .into_iter()
                    .map(|(subject, known)| (Cow::Owned(subject), Slot::known(known)))
                    .collect();
            }
        }

        // The current items the other hosts' events name, but those remembered. Every subject
        // named gets a slot, so that a subject without one is known not to be current.
        let mut keys: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for w in writes {
            let Write::Batch { host, events, .. } = w else {
                continue;
            };
            if whole.binary_search(&host.as_str()).is_ok() {
                continue;
            }
            let Some(state) = hosts.get_mut(host.as_str()) else {
                continue;
            };
            for e in events {
                let subject = e.item.subject.as_str();
                if !state.items.contains_key(subject) {
                    state.items.insert(Cow::Borrowed(subject), Slot::default());
                    keys.0.push(host);
                    keys.1.push(subject);
                }
            }
        }
        if !keys.0.is_empty() {
            for r in tx.query(
                "SELECT i.host, i.subject, i.sha256, i.severity, i.observed_at
                 FROM items i
                 JOIN unnest($1::text[], $2::text[]) AS k (host, subject)
                     ON i.host = k.host AND i.subject = k.subject",
                &[&keys.0, &keys.1],
            )? {
                let (host, subject): (&str, &str) = (r.get(0), r.get(1));
                if let Some(slot) = hosts.get_mut(host).and_then(|h| h.items.get_mut(subject)) {
                    slot.current = Some(current(&r)?);
                    slot.in_table = true;
                }
            }
        }
        Ok(Group {
            hosts,
            history: Vec::new(),
        })
    }

    /// Applies one write in memory.
    fn apply(&mut self, write: &'w Write) -> Result<Applied> {
        let Some(state) = self.hosts.get_mut(write.host()) else {
            return Err(StoreError::Rejected(format!(
                "unknown host {}: it must say hello first",
                write.host()
            )));
        };
        let applied = match write {
            Write::Batch {
                host,
                stream_id,
                events,
                received_at,
            } => state.batch(host, stream_id, events, *received_at, &mut self.history)?,
            Write::Snapshot {
                host,
                stream_id,
                seq,
                items,
                received_at,
            } => state.snapshot(
                host,
                stream_id,
                *seq,
                items,
                *received_at,
                &mut self.history,
            )?,
            Write::Seen { at, .. } => {
                state.seen(*at);
                Applied {
                    last_seq: state.last_seq,
                    events: 0,
                }
            }
        };
        state.written = true;
        Ok(applied)
    }

    /// Writes what the applied writes changed; returns the hosts' items, to remember.
    fn store(mut self, tx: &mut Tx<'_>) -> Result<Learned> {
        let mut gone: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        let (mut inserted, mut updated) = (Stored::default(), Stored::default());
        for (host, state) in &self.hosts {
            for (subject, slot) in state.items.iter().filter(|(_, s)| s.changed) {
                match (&slot.current, slot.in_table) {
                    (None, true) => {
                        gone.0.push(host);
                        gone.1.push(subject);
                    }
                    (None, false) => {}
                    (Some(current), true) => updated.push(host, subject, current)?,
                    (Some(current), false) => inserted.push(host, subject, current)?,
                }
            }
        }
        if !gone.0.is_empty() {
            tx.execute(
                "DELETE FROM items i
                 USING unnest($1::text[], $2::text[]) AS k (host, subject)
                 WHERE i.host = k.host AND i.subject = k.subject",
                &[&gone.0, &gone.1],
            )?;
        }
        // Rows known to exist are updated in place, which spares the server the speculative
        // insertion an upsert makes first (a tenth of its time at full ingest).
        if !updated.host.is_empty() {
            updated.write(tx, UPDATE_ITEMS)?;
        }
        if !inserted.host.is_empty() {
            inserted.write(tx, INSERT_ITEMS)?;
        }
        history::insert(tx, &self.history)?;
        let learned = self
            .hosts
            .iter_mut()
            .map(|(host, state)| {
                let items = std::mem::take(&mut state.items);
                state.items_changed = items.values().any(|slot| slot.changed);
                let subjects = items
                    .into_iter()
                    .map(|(subject, slot)| (subject.into_owned(), slot.current.map(Known::from)))
                    .collect();
                let version = state.items_version + i64::from(state.items_changed);
                (host.to_string(), version, subjects)
            })
            .collect();
        save_hosts(tx, self.hosts)?;
        Ok(Learned(learned))
    }
}

impl Slot<'_> {
    /// A subject as the collector remembers it.
    fn known(known: Option<Known>) -> Self {
        Slot {
            in_table: known.is_some(),
            current: known.map(|k| Current {
                sha256: k.sha256,
                severity: k.severity,
                observed_at: k.observed_at,
                encoded: None,
                record: None,
            }),
            changed: false,
        }
    }
}

impl From<Current<'_>> for Known {
    fn from(c: Current<'_>) -> Known {
        Known {
            sha256: c.sha256,
            severity: c.severity,
            observed_at: c.observed_at,
        }
    }
}

fn current<'w>(r: &postgres::Row) -> Result<Current<'w>> {
    Ok(Current {
        sha256: item_digest(r.get(0), r.get(2))?,
        severity: severity(r.get(3))?,
        observed_at: r.get(4),
        encoded: None,
        record: None,
    })
}

impl<'w> HostState<'w> {
    fn seen(&mut self, at: Millis) {
        self.last_seen = Some(self.last_seen.map_or(at, |s| s.max(at)));
    }

    fn batch(
        &mut self,
        host: &'w str,
        stream_id: &'w str,
        events: &'w [EventRecord],
        received_at: Millis,
        history: &mut Vec<history::Row<'w>>,
    ) -> Result<Applied> {
        if !self.stream_id.is_empty() && self.stream_id != stream_id {
            return Err(StoreError::Rejected(format!(
                "stream mismatch for host {host}: the collector follows stream {:?} (up to \
                 sequence {}), the batch is of stream {stream_id:?}; a snapshot is needed",
                self.stream_id, self.last_seq
            )));
        }
        let stored = self.last_seq;
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
        let last_seq = stored + new.len() as u64;
        if i64::try_from(last_seq).is_err() {
            return Err(StoreError::Rejected(format!(
                "sequence number {last_seq} of host {host} is out of range"
            )));
        }
        self.seen(received_at);
        if new.is_empty() {
            return Ok(Applied {
                last_seq: stored,
                events: 0,
            });
        }
        let mut chunk = Chunk::default();
        for e in new {
            chunk.push_event(e);
            let slot = self
                .items
                .entry(Cow::Borrowed(e.item.subject.as_str()))
                .or_default();
            match e.transition {
                Transition::Drifted | Transition::Changed => {
                    self.aggregates.store(slot, &e.item, e.observed_at);
                }
                Transition::Resolved => {
                    if let Some(old) = slot.current.take() {
                        self.aggregates.removed(old.severity, old.observed_at);
                        slot.changed = true;
                    }
                }
            }
        }
        history.push(history::Row {
            host: Cow::Borrowed(host),
            stream_id: Cow::Borrowed(stream_id),
            first_seq: Some(new[0].seq as i64),
            received_at,
            source: "stream",
            chunk,
        });
        self.stream_id = Cow::Borrowed(stream_id);
        self.last_seq = last_seq;
        Ok(Applied {
            last_seq,
            events: new.len() as u64,
        })
    }

    fn snapshot(
        &mut self,
        host: &'w str,
        stream_id: &'w str,
        seq: u64,
        items: &'w [ItemRecord],
        received_at: Millis,
        history: &mut Vec<history::Row<'w>>,
    ) -> Result<Applied> {
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
        let mut chunk = Chunk::default();
        for item in items {
            let slot = self
                .items
                .entry(Cow::Borrowed(item.subject.as_str()))
                .or_default();
            let transition = match &slot.current {
                Some(current) if current.sha256 == item.sha256 => continue,
                Some(_) => Transition::Changed,
                None => Transition::Drifted,
            };
            chunk.push(
                None,
                transition,
                received_at,
                &item.subject,
                item.severity,
                &item.encoded,
            );
            self.aggregates.store(slot, item, received_at);
        }
        let mut gone: Vec<(&Cow<'w, str>, &mut Slot<'w>)> = self
            .items
            .iter_mut()
            .filter(|(subject, slot)| {
                slot.current.is_some() && !subjects.contains(subject.as_ref())
            })
            .collect();
        gone.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (subject, slot) in gone {
            let Some(old) = slot.current.take() else {
                continue;
            };
            slot.changed = true;
            self.aggregates.removed(old.severity, old.observed_at);
            let encoded = old.encoded.ok_or_else(|| {
                StoreError::Database(format!("{subject} was read without its item"))
            })?;
            chunk.push(
                None,
                Transition::Resolved,
                received_at,
                subject,
                old.severity,
                &encoded,
            );
        }
        let written = chunk.events.len() as u64;
        history.push(history::Row {
            host: Cow::Borrowed(host),
            stream_id: Cow::Borrowed(stream_id),
            first_seq: None,
            received_at,
            source: "snapshot",
            chunk,
        });
        self.stream_id = Cow::Borrowed(stream_id);
        self.last_seq = seq;
        self.seen(received_at);
        Ok(Applied {
            last_seq: seq,
            events: written,
        })
    }
}

impl Aggregates {
    /// Makes `item` current in `slot` and counts it; an item already current keeps its
    /// `observed_at`.
    fn store<'w>(&mut self, slot: &mut Slot<'w>, item: &'w ItemRecord, observed_at: Millis) {
        let observed_at = match &slot.current {
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
        slot.current = Some(Current {
            sha256: item.sha256,
            severity: item.severity,
            observed_at,
            encoded: Some(Cow::Borrowed(&item.encoded)),
            record: Some(item),
        });
        slot.changed = true;
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
}

/// Stores new items. (`ON CONFLICT` only as a guard: the group read the rows its hosts have,
/// under their hosts' lock, and found none for these.)
const INSERT_ITEMS: &str = "INSERT INTO items (host, subject, subject_kind, kind, severity,
         cause, changed, observed_at, sha256, item)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
         $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bytea[], $10::bytea[])
     ON CONFLICT (host, subject) DO UPDATE SET
         subject_kind = excluded.subject_kind,
         kind = excluded.kind,
         severity = excluded.severity,
         cause = excluded.cause,
         changed = excluded.changed,
         observed_at = excluded.observed_at,
         sha256 = excluded.sha256,
         item = excluded.item";

/// Updates items the group read.
const UPDATE_ITEMS: &str = "UPDATE items i SET
         subject_kind = u.subject_kind,
         kind = u.kind,
         severity = u.severity,
         cause = u.cause,
         changed = u.changed,
         observed_at = u.observed_at,
         sha256 = u.sha256,
         item = u.item
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
         $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bytea[], $10::bytea[])
         AS u (host, subject, subject_kind, kind, severity, cause, changed, observed_at,
             sha256, item)
     WHERE i.host = u.host AND i.subject = u.subject";

/// The items a group stores, column by column (for one statement over `unnest`).
#[derive(Default)]
struct Stored<'a> {
    host: Vec<&'a str>,
    subject: Vec<&'a str>,
    subject_kind: Vec<&'static str>,
    kind: Vec<&'static str>,
    severity: Vec<i64>,
    cause: Vec<&'a str>,
    changed: Vec<String>,
    observed_at: Vec<Millis>,
    sha256: Vec<&'a [u8]>,
    item: Vec<&'a [u8]>,
}

impl<'a> Stored<'a> {
    fn push(&mut self, host: &'a str, subject: &'a str, current: &'a Current<'_>) -> Result<()> {
        let record = current.record.ok_or_else(|| {
            StoreError::Database(format!("{subject} of host {host} changed without a record"))
        })?;
        self.host.push(host);
        self.subject.push(subject);
        self.subject_kind.push(record.subject_kind.as_str());
        self.kind.push(record.kind);
        self.severity.push(record.severity.index() as i64);
        self.cause.push(&record.cause);
        self.changed
            .push(serde_json::to_string(&record.changed).unwrap_or_else(|_| "[]".into()));
        self.observed_at.push(current.observed_at);
        self.sha256.push(&record.sha256);
        self.item.push(&record.encoded);
        Ok(())
    }

    fn write(&self, tx: &mut Tx<'_>, sql: &str) -> Result<()> {
        tx.execute(
            sql,
            &[
                &self.host,
                &self.subject,
                &self.subject_kind,
                &self.kind,
                &self.severity,
                &self.cause,
                &self.changed,
                &self.observed_at,
                &self.sha256,
                &self.item,
            ],
        )?;
        Ok(())
    }
}

/// Writes back the rows of the hosts a write was applied to, their stale `since` read again
/// from the stored items.
fn save_hosts(tx: &mut Tx<'_>, hosts: HashMap<&str, HostState<'_>>) -> Result<()> {
    let mut hosts: Vec<(&str, HostState<'_>)> =
        hosts.into_iter().filter(|(_, s)| s.written).collect();
    if hosts.is_empty() {
        return Ok(());
    }
    hosts.sort_unstable_by_key(|(host, _)| *host);
    let mut stale: (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
    for (host, state) in &mut hosts {
        let a = &mut state.aggregates;
        for severity in Severity::ALL {
            let i = severity as usize;
            if a.counts[i] <= 0 {
                a.counts[i] = 0;
                a.since[i] = None;
            } else if a.stale[i] {
                stale.0.push(host);
                stale.1.push(severity as i64);
            }
        }
    }
    if !stale.0.is_empty() {
        let mut since = HashMap::new();
        for r in tx.query(
            "SELECT i.host, i.severity, min(i.observed_at)
             FROM items i
             JOIN unnest($1::text[], $2::bigint[]) AS k (host, severity)
                 ON i.host = k.host AND i.severity = k.severity
             GROUP BY i.host, i.severity",
            &[&stale.0, &stale.1],
        )? {
            since.insert(
                (r.get::<_, String>(0), r.get::<_, i64>(1)),
                r.get::<_, Millis>(2),
            );
        }
        for (host, state) in &mut hosts {
            let a = &mut state.aggregates;
            for severity in Severity::ALL {
                let i = severity as usize;
                if a.stale[i] && a.counts[i] > 0 {
                    a.since[i] = since.get(&(host.to_string(), severity as i64)).copied();
                }
            }
        }
    }
    let name: Vec<&str> = hosts.iter().map(|(h, _)| *h).collect();
    let stream_id: Vec<&str> = hosts.iter().map(|(_, s)| s.stream_id.as_ref()).collect();
    let last_seq: Vec<i64> = hosts.iter().map(|(_, s)| s.last_seq as i64).collect();
    let seen: Vec<Option<Millis>> = hosts.iter().map(|(_, s)| s.last_seen).collect();
    let count =
        |i: usize| -> Vec<i64> { hosts.iter().map(|(_, s)| s.aggregates.counts[i]).collect() };
    let since = |i: usize| -> Vec<Option<Millis>> {
        hosts.iter().map(|(_, s)| s.aggregates.since[i]).collect()
    };
    let bump: Vec<i64> = hosts
        .iter()
        .map(|(_, s)| i64::from(s.items_changed))
        .collect();
    tx.execute(
        "UPDATE hosts h SET stream_id = u.stream_id, last_seq = u.last_seq,
             last_seen = GREATEST(h.last_seen, u.seen),
             items_version = h.items_version + u.bump,
             n_security = u.n0, n_behavioral = u.n1, n_cosmetic = u.n2,
             since_security = u.s0, since_behavioral = u.s1, since_cosmetic = u.s2
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
             $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
             $11::bigint[])
             AS u (host, stream_id, last_seq, seen, n0, n1, n2, s0, s1, s2, bump)
         WHERE h.host = u.host",
        &[
            &name,
            &stream_id,
            &last_seq,
            &seen,
            &count(0),
            &count(1),
            &count(2),
            &since(0),
            &since(1),
            &since(2),
            &bump,
        ],
    )?;
    Ok(())
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

/// An item's stored `sha256`, which must be a digest.
pub(super) fn item_digest(host: &str, stored: &[u8]) -> Result<[u8; 32]> {
    stored
        .try_into()
        .map_err(|_| StoreError::Database(format!("an item of host {host} has a bad digest")))
}
