//! What a collector knows of the items it wrote recently, so that a change to one of them does
//! not read it back first (SQLite's `recent`, for a database that other collectors write too).
//!
//! Replacing an item needs the current one's digest, severity and `observed_at` (the host's
//! counts move, the item keeps drifting since its first observation). Read from `items`, that
//! is a join over every subject a group's events name: at full ingest, a quarter of the
//! server's time (docs/BENCHMARKS.md).
//!
//! Another collector, or another writer of this one, may change the same host's items in the
//! meantime. So a host's items are remembered with the host's `items_version`, which every
//! group that writes the host advances in the row it locks, and are used only while the
//! version read (locked) at a group's start is still that one. A group takes what it uses out
//! of the memory ([`KnownItems::take`]) and puts back what it leaves ([`KnownItems::put`])
//! only once it has committed: a group rolled back leaves nothing behind, and a host whose
//! memory is missing or stale is read from the database.
//!
//! Bounded: two generations of at most [`GENERATION`] subjects each. Once the newer is full it
//! becomes the older and the older is dropped; a host taken from the older comes back into the
//! newer.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Millis, Severity};

/// Subjects per generation, far more than a fleet changes between two commits: at most about
/// 150 bytes each (a path, a digest, the table's slot), 7 MiB per generation.
const GENERATION: usize = 50_000;

/// What a write needs of a current item before replacing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Known {
    pub sha256: [u8; 32],
    pub severity: Severity,
    pub observed_at: Millis,
}

/// A host's subjects, each current (`Some`) or known not to be (`None`). A subject absent
/// from the map is unknown.
pub(super) type Subjects = HashMap<String, Option<Known>>;

/// A host's subjects at one `items_version`.
struct Remembered {
    version: i64,
    subjects: Subjects,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<String, Remembered>,
    older: HashMap<String, Remembered>,
    /// Subjects in `newer`.
    len: usize,
}

/// The items this collector wrote or read recently, by host (shared by its writers).
#[derive(Default)]
pub(super) struct KnownItems(Mutex<Generations>);

impl KnownItems {
    /// What is known of `host`'s items, if it was known at `version` (the host's
    /// `items_version` now): taken out, to be put back once the group that uses it commits.
    pub(super) fn take(&self, host: &str, version: i64) -> Option<Subjects> {
        let mut g = self.lock();
        let remembered = match g.newer.remove(host) {
            Some(r) => {
                g.len -= r.subjects.len();
                r
            }
            None => g.older.remove(host)?,
        };
        (remembered.version == version).then_some(remembered.subjects)
    }

    /// `host`'s items are `subjects` at `version`, committed.
    pub(super) fn put(&self, host: String, version: i64, subjects: Subjects) {
        let mut g = self.lock();
        if let Some(r) = g.newer.get(&host) {
            // Another writer put back a later version first (this one's group committed
            // before its own, and it locked the host after).
            if r.version > version {
                return;
            }
        }
        if g.len + subjects.len() > GENERATION {
            g.older = std::mem::take(&mut g.newer);
            g.len = 0;
        }
        g.len += subjects.len();
        if let Some(old) = g.newer.insert(host, Remembered { version, subjects }) {
            g.len -= old.subjects.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Every change leaves the maps consistent: a panicking holder loses nothing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Most hosts whose digest is remembered; past it, all are forgotten (about 100 bytes each).
const DIGESTS: usize = 100_000;

/// The digest of each host's drift set at an `items_version` (`streams`), so that a
/// heartbeat reads a host's items again only once they changed.
#[derive(Default)]
pub(super) struct Digests(Mutex<HashMap<String, (i64, [u8; 32])>>);

impl Digests {
    /// The version of `host`'s items last seen, and their digest then.
    pub(super) fn get(&self, host: &str) -> Option<(i64, [u8; 32])> {
        self.lock().get(host).copied()
    }

    pub(super) fn put(&self, host: &str, version: i64, digest: [u8; 32]) {
        let mut digests = self.lock();
        if let Some(slot) = digests.get_mut(host) {
            *slot = (version, digest);
            return;
        }
        if digests.len() >= DIGESTS {
            digests.clear();
        }
        digests.insert(host.to_owned(), (version, digest));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, [u8; 32])>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(observed_at: Millis) -> Subjects {
        let known = Known {
            sha256: [1; 32],
            severity: Severity::Behavioral,
            observed_at,
        };
        HashMap::from([("/etc/a".into(), Some(known)), ("/etc/b".into(), None)])
    }

    #[test]
    fn a_host_is_known_only_at_the_version_it_was_put_with_and_only_once() {
        let known = KnownItems::default();
        known.put("i-1".into(), 3, subjects(10));
        assert_eq!(
            known.take("i-1", 4),
            None,
            "a later version is another's write"
        );
        // A stale memory is dropped when looked at.
        known.put("i-1".into(), 3, subjects(10));
        assert_eq!(known.take("i-1", 3), Some(subjects(10)));
        assert_eq!(known.take("i-1", 3), None, "taken: in use by one group");
        assert_eq!(known.take("i-2", 0), None);
    }

    #[test]
    fn an_earlier_version_put_back_late_does_not_replace_a_later_one() {
        let known = KnownItems::default();
        known.put("i-1".into(), 5, subjects(50));
        known.put("i-1".into(), 4, subjects(40));
        assert_eq!(known.take("i-1", 5), Some(subjects(50)));
    }

    #[test]
    fn hosts_past_two_generations_are_forgotten_and_a_taken_one_comes_back_newer() {
        let known = KnownItems::default();
        let hosts = GENERATION / 2;
        for i in 0..hosts {
            known.put(format!("h{i}"), 1, subjects(1));
        }
        // The first generation is full: the next host starts a second.
        known.put("late".into(), 1, subjects(1));
        assert_eq!(known.take("h0", 1), Some(subjects(1)), "older, still known");
        known.put("h0".into(), 2, subjects(2));
        for i in 0..hosts {
            known.put(format!("g{i}"), 1, subjects(1));
        }
        assert_eq!(known.take("h1", 1), None, "two generations on: forgotten");
        assert_eq!(
            known.take("h0", 2),
            Some(subjects(2)),
            "put back: a generation more"
        );
    }
}
