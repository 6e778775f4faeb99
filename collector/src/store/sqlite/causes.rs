//! The changes (causes) counted in memory, kept by the writer: how many hosts have each, per
//! severity, so `causes` reads one entry per change instead of every item.
//!
//! Counted in SQL (schema 9's `cause_counts`, kept by triggers) they cost ingest a fifth of its
//! rate: every content change is a new cause, so every event moved one host from one row to
//! another. Here a write records what it did to the items ([`Deltas`]) and the store applies
//! that after the transaction commits; what a rolled-back write recorded is dropped with it.
//! The counts are read from `items` at open.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;

use super::severity_at;
use crate::store::Severity;

/// One change's count of hosts per severity (security first).
#[derive(Clone, Debug)]
pub(super) struct Count {
    pub subject: Arc<str>,
    pub hosts: [i64; 3],
}

impl Count {
    pub fn total(&self) -> usize {
        self.hosts.iter().sum::<i64>().max(0) as usize
    }

    /// The worst severity counted (None: counts nothing).
    pub fn worst(&self) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|s| self.hosts[*s as usize] > 0)
    }
}

/// Every current change, by cause.
#[derive(Debug, Default)]
pub(super) struct Causes {
    counts: HashMap<Box<str>, Count>,
    /// One `Arc` per subject, shared by its causes.
    subjects: HashMap<Arc<str>, usize>,
}

impl Causes {
    /// Counts the items stored.
    pub fn load(conn: &Connection) -> rusqlite::Result<Causes> {
        let mut causes = Causes::default();
        let mut stmt = conn.prepare(
            "SELECT subject, cause, severity, count(*) FROM items
             GROUP BY subject, cause, severity",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n: i64 = row.get(3)?;
            causes.add(
                row.get_ref(1)?.as_str()?,
                row.get_ref(0)?.as_str()?,
                severity_at(row, 2)?,
                n,
            );
        }
        Ok(causes)
    }

    /// Applies what committed writes did.
    pub fn apply(&mut self, deltas: &Deltas) {
        for d in &deltas.0 {
            self.add(&d.cause, &d.subject, d.severity, d.by);
        }
    }

    fn add(&mut self, cause: &str, subject: &str, severity: Severity, by: i64) {
        if let Some(count) = self.counts.get_mut(cause) {
            count.hosts[severity as usize] += by;
            if count.total() == 0 {
                let subject = count.subject.clone();
                self.counts.remove(cause);
                self.release(&subject);
            }
            return;
        }
        if by <= 0 {
            // Nothing counted to take from (cannot happen while the deltas are the items').
            return;
        }
        let subject = self.intern(subject);
        let mut hosts = [0; 3];
        hosts[severity as usize] = by;
        self.counts.insert(cause.into(), Count { subject, hosts });
    }

    fn intern(&mut self, subject: &str) -> Arc<str> {
        if let Some((shared, n)) = self.subjects.get_key_value(subject) {
            let shared = shared.clone();
            let n = *n;
            self.subjects.insert(shared.clone(), n + 1);
            return shared;
        }
        let shared: Arc<str> = subject.into();
        self.subjects.insert(shared.clone(), 1);
        shared
    }

    fn release(&mut self, subject: &Arc<str>) {
        match self.subjects.get_mut(subject) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.subjects.remove(subject);
            }
        }
    }

    /// The changes `keep` keeps, by (cause, count).
    pub fn select(&self, mut keep: impl FnMut(&str, &Count) -> bool) -> Vec<(String, Count)> {
        self.counts
            .iter()
            .filter(|(cause, count)| keep(cause, count))
            .map(|(cause, count)| (cause.to_string(), count.clone()))
            .collect()
    }
}

/// A change to the count of one cause: `by` hosts more (or fewer) with it at `severity`.
#[derive(Debug)]
struct Delta {
    cause: String,
    subject: String,
    severity: Severity,
    by: i64,
}

/// What a group's writes did to the causes, in order.
#[derive(Debug, Default)]
pub(super) struct Deltas(Vec<Delta>);

impl Deltas {
    pub fn added(&mut self, cause: &str, subject: &str, severity: Severity) {
        self.push(cause, subject, severity, 1);
    }

    pub fn removed(&mut self, cause: &str, subject: &str, severity: Severity) {
        self.push(cause, subject, severity, -1);
    }

    fn push(&mut self, cause: &str, subject: &str, severity: Severity, by: i64) {
        self.0.push(Delta {
            cause: cause.to_owned(),
            subject: subject.to_owned(),
            severity,
            by,
        });
    }

    /// A mark to [`undo`](Self::undo) back to.
    pub fn mark(&self) -> usize {
        self.0.len()
    }

    /// Drops what was recorded since `mark` (a write rolled back).
    pub fn undo(&mut self, mark: usize) {
        self.0.truncate(mark);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}
