//! The drift ledger: the current drift set, and the transitions that become events.
//!
//! The ledger holds, per subject (a path or a package), the last drift item *emitted*. Feeding
//! it the newly evaluated state of a subject yields at most one event: `drifted` (clean →
//! drifted), `changed` (drifted → drifted differently) or `resolved` (drifted → clean). Every
//! event gets the next sequence number.
//!
//! The ledger is what consumers have been told, never the truth about the host: on start the
//! agent recomputes the truth from the baked baseline and the filesystem and feeds it in, so
//! only real differences with what was already emitted become events. It is persisted
//! (`ledger.json`, written crash-safely) together with the sequence number it reflects; events
//! in the spool after that number are replayed onto it on start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::evaluate::DriftItem;
use crate::packages::PackageDrift;

/// What a drift item is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Path(PathBuf),
    Package { name: String, arch: String },
}

/// A drift item: a file's or a package's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    File(Box<DriftItem>),
    Package(PackageDrift),
}

impl Item {
    pub fn subject(&self) -> Subject {
        match self {
            Item::File(d) => Subject::Path(d.path.clone()),
            Item::Package(p) => Subject::Package {
                name: p.name.clone(),
                arch: p.arch.clone(),
            },
        }
    }
}

/// The kind of transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Drifted,
    Changed,
    Resolved,
}

/// One transition, as written to the spool and printed in standalone mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub event: Transition,
    /// RFC 3339 with milliseconds, UTC.
    pub observed_at: String,
    /// The drift item; for `resolved`, the item that was resolved.
    pub item: Item,
}

/// The current drift set.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// The sequence number of the last event reflected here.
    seq: u64,
    #[serde(with = "items_as_list")]
    items: BTreeMap<Subject, Item>,
}

mod items_as_list {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        items: &BTreeMap<Subject, Item>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(items.values())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Subject, Item>, D::Error> {
        let list = Vec::<Item>::deserialize(d)?;
        Ok(list.into_iter().map(|i| (i.subject(), i)).collect())
    }
}

impl Ledger {
    /// The sequence number of the last event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Continues numbering after `seq` (e.g. the spool's last sequence number).
    pub fn advance_seq_to(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// Feeds the current state of one subject; returns the event, if it is a transition.
    pub fn update(
        &mut self,
        subject: Subject,
        now: Option<Item>,
        observed_at: &str,
    ) -> Option<Event> {
        let event = match (self.items.get(&subject), now) {
            (None, None) => return None,
            (Some(old), Some(new)) if *old == new => return None,
            (None, Some(new)) => {
                self.items.insert(subject, new.clone());
                (Transition::Drifted, new)
            }
            (Some(_), Some(new)) => {
                self.items.insert(subject, new.clone());
                (Transition::Changed, new)
            }
            (Some(_), None) => (
                Transition::Resolved,
                self.items.remove(&subject).expect("present"),
            ),
        };
        self.seq += 1;
        Some(Event {
            seq: self.seq,
            event: event.0,
            observed_at: observed_at.to_owned(),
            item: event.1,
        })
    }

    /// Re-applies an event read back from the spool (after a restart).
    pub fn replay(&mut self, event: &Event) {
        if event.seq <= self.seq {
            return;
        }
        let subject = event.item.subject();
        match event.event {
            Transition::Resolved => {
                self.items.remove(&subject);
            }
            Transition::Drifted | Transition::Changed => {
                self.items.insert(subject, event.item.clone());
            }
        }
        self.seq = event.seq;
    }

    /// File subjects at or below `prefix`. `PathBuf` orders by components, so a subtree is one
    /// contiguous range.
    pub fn paths_under(&self, prefix: &Path) -> Vec<PathBuf> {
        self.items
            .range(Subject::Path(prefix.to_path_buf())..)
            .map_while(|(s, _)| match s {
                Subject::Path(p) if p.starts_with(prefix) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every file subject.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.items
            .keys()
            .filter_map(|s| match s {
                Subject::Path(p) => Some(p.clone()),
                Subject::Package { .. } => None,
            })
            .collect()
    }

    /// Every package subject.
    pub fn packages(&self) -> Vec<Subject> {
        self.items
            .keys()
            .filter(|s| matches!(s, Subject::Package { .. }))
            .cloned()
            .collect()
    }

    /// The current drift items, ordered by subject.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// SHA-256 over the canonical JSON of the items, in subject order: equal sets, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for item in self.items.values() {
            hasher.update(serde_json::to_vec(item).expect("items serialize"));
            hasher.update(b"\n");
        }
        hasher.finalize().into()
    }

    /// Loads a saved ledger; a missing file is an empty ledger.
    pub fn load(path: &Path) -> std::io::Result<Ledger> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves crash-safely (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::bake::write_atomically(path, &bytes, 0o600)
    }
}

/// Now, as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{DriftKind, Facts};
    use crate::rules::Severity;

    fn item(path: &str, mode: &str) -> Item {
        let facts = Facts {
            kind: "file".into(),
            mode: mode.into(),
            owner: 0,
            group: 0,
            size: 1,
            sha256: None,
            target: None,
            xattrs: Default::default(),
        };
        Item::File(Box::new(DriftItem {
            path: path.into(),
            kind: DriftKind::Modified,
            changed: vec![crate::rules::Attr::Mode],
            severity: Severity::Behavioral,
            reason: "r".into(),
            expected: Some(Facts {
                mode: "0644".into(),
                ..facts.clone()
            }),
            actual: Some(facts),
            diff: None,
        }))
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        // (state fed, expected transition)
        let cases: &[(Option<&str>, Option<Transition>)] = &[
            (None, None),
            (Some("0600"), Some(Transition::Drifted)),
            (Some("0600"), None),
            (Some("0666"), Some(Transition::Changed)),
            (None, Some(Transition::Resolved)),
            (None, None),
        ];
        let mut ledger = Ledger::default();
        let p = Subject::Path("/etc/x".into());
        for (i, (state, want)) in cases.iter().enumerate() {
            let got = ledger
                .update(p.clone(), state.map(|m| item("/etc/x", m)), "t")
                .map(|e| e.event);
            assert_eq!(got, *want, "step {i}");
        }
        assert_eq!(ledger.seq(), 3);
    }

    #[test]
    fn replay_and_persistence_rebuild_the_same_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Ledger::default();
        let mut events = Vec::new();
        for (p, m) in [
            ("/a", Some("0600")),
            ("/b", Some("0600")),
            ("/a", None),
            ("/c", Some("0777")),
        ] {
            events.extend(live.update(Subject::Path(p.into()), m.map(|m| item(p, m)), "t"));
        }
        let mut rebuilt = Ledger::default();
        for e in &events[..2] {
            rebuilt.replay(e);
        }
        rebuilt.save(&dir.path().join("l.json")).unwrap();
        let mut loaded = Ledger::load(&dir.path().join("l.json")).unwrap();
        for e in &events {
            loaded.replay(e);
        }
        assert_eq!(loaded.digest(), live.digest());
        assert_eq!(loaded.seq(), live.seq());
        assert_eq!(loaded.paths(), [PathBuf::from("/b"), PathBuf::from("/c")]);
    }

    #[test]
    fn paths_under_a_prefix() {
        let mut l = Ledger::default();
        for p in ["/etc/a", "/etc/a-b", "/etc/a/x", "/etc/a/y/z", "/etc/b"] {
            l.update(Subject::Path(p.into()), Some(item(p, "0600")), "t");
        }
        let got = l.paths_under(Path::new("/etc/a"));
        assert_eq!(
            got,
            [
                PathBuf::from("/etc/a"),
                PathBuf::from("/etc/a/x"),
                PathBuf::from("/etc/a/y/z")
            ]
        );
    }
}
