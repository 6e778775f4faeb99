//! What the writer knows of the items it wrote recently, so that a change to one of them does
//! not read it back first.
//!
//! Replacing an item needs the current one's severity, cause and `observed_at` (the host's
//! and the path's counts move, the item keeps drifting since its first observation). Read
//! from `items`, that is a statement and a b-tree search per event.
//! The writer alone changes `items`, so what it stored is what a read would return, as long
//! as the memory follows the transaction: every replacement and deletion is recorded here,
//! and whenever a transaction or a savepoint is rolled back the memory is forgotten
//! ([`Recent::forget`]); a miss reads the database.
//!
//! Bounded: two generations of at most [`GENERATION`] items each. Once the newer is full it
//! becomes the older and the older is dropped; a hit in the older moves the item to the newer.

use std::collections::HashMap;

use crate::store::{Millis, Severity};

/// Items per generation, far more than a fleet changes between two commits: at most about 170
/// bytes each (a path, a 64-digit cause, the table's slot), 8 MiB per generation.
const GENERATION: usize = 50_000;

/// What a write needs of a current item before replacing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Known {
    pub severity: Severity,
    pub observed_at: Millis,
    pub cause: String,
}

/// Items by host, then by subject.
type Generation = HashMap<String, HashMap<String, Known>>;

#[derive(Default)]
pub(super) struct Recent {
    newer: Generation,
    older: Generation,
    /// Items in `newer`.
    len: usize,
}

impl Recent {
    /// The current item of `subject` on `host`, if remembered.
    pub(super) fn get(&mut self, host: &str, subject: &str) -> Option<Known> {
        if let Some(known) = self.newer.get(host).and_then(|items| items.get(subject)) {
            return Some(known.clone());
        }
        let known = self.older.get_mut(host)?.remove(subject)?;
        self.set(host, subject, known.clone());
        Some(known)
    }

    /// `subject` on `host` is now `known`.
    pub(super) fn set(&mut self, host: &str, subject: &str, known: Known) {
        if self.len >= GENERATION {
            self.older = std::mem::take(&mut self.newer);
            self.len = 0;
        }
        let items = match self.newer.get_mut(host) {
            Some(items) => items,
            None => self.newer.entry(host.to_owned()).or_default(),
        };
        // A copy left in the older generation is never read: the newer one is looked up
        // first, and both leave together (the older is dropped when the newer takes its place).
        match items.get_mut(subject) {
            Some(slot) => *slot = known,
            None => {
                items.insert(subject.to_owned(), known);
                self.len += 1;
            }
        }
    }

    /// `subject` on `host` is no longer drifted.
    pub(super) fn remove(&mut self, host: &str, subject: &str) {
        for generation in [&mut self.newer, &mut self.older] {
            if let Some(items) = generation.get_mut(host) {
                items.remove(subject);
            }
        }
    }

    /// Forgets everything: what was written since the last commit may be rolled back.
    pub(super) fn forget(&mut self) {
        *self = Recent::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(observed_at: Millis) -> Known {
        Known {
            severity: Severity::Behavioral,
            observed_at,
            cause: "c".into(),
        }
    }

    #[test]
    fn remembers_the_last_value_and_forgets_removed_items() {
        let mut recent = Recent::default();
        assert_eq!(recent.get("h", "/a"), None);
        recent.set("h", "/a", known(1));
        recent.set("h", "/a", known(2));
        assert_eq!(recent.get("h", "/a"), Some(known(2)));
        assert_eq!(recent.get("other", "/a"), None);
        recent.remove("h", "/a");
        assert_eq!(recent.get("h", "/a"), None);
        recent.set("h", "/b", known(3));
        recent.forget();
        assert_eq!(recent.get("h", "/b"), None);
    }

    #[test]
    fn holds_at_most_two_generations_and_keeps_what_is_used() {
        let mut recent = Recent::default();
        recent.set("h", "/kept", known(1));
        for i in 0..GENERATION {
            recent.set("h", &format!("/{i}"), known(0));
        }
        // `/kept` is in the older generation now; a hit brings it back to the newer.
        assert_eq!(recent.get("h", "/kept"), Some(known(1)));
        for i in 0..GENERATION {
            recent.set("h", &format!("/again-{i}"), known(0));
        }
        assert_eq!(recent.get("h", "/kept"), Some(known(1)));
        assert_eq!(recent.get("h", "/0"), None, "two generations ago");
        let held: usize = [&recent.newer, &recent.older]
            .iter()
            .flat_map(|g| g.values())
            .map(HashMap::len)
            .sum();
        assert!(held <= 2 * GENERATION, "{held}");
    }
}
