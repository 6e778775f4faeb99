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
//! (`ledger.json`, written crash-safely) together with the sequence number it reflects and the
//! stream id its numbers belong to; events in the spool after that number are replayed onto it
//! on start.
//!
//! The ledger's digest is the wire protocol's (`Heartbeat.digest`): SHA-256 over the sorted
//! SHA-256 digests of each item's JSON text, that text being exactly what the uplink sends as
//! `Event.item_json` and `SnapshotChunk.items_json` ([`item_json`]). Each item's digest is kept
//! beside it, so a heartbeat costs a sort of 32-byte values, not a serialization of every item.

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
    /// The stream (see the uplink) whose numbering `seq` counts; "" in ledgers written before
    /// streams existed, which therefore start a new stream.
    #[serde(default)]
    stream_id: String,
    #[serde(with = "items_as_list")]
    items: BTreeMap<Subject, Item>,
    /// SHA-256 of each item's [`item_json`]; derived, rebuilt on load.
    #[serde(skip)]
    item_digests: BTreeMap<Subject, [u8; 32]>,
}

/// An item's JSON text: the bytes the uplink sends and the digest is computed over.
pub fn item_json(item: &Item) -> String {
    // Items are plain data (strings, numbers, maps with string keys): serializing cannot fail.
    serde_json::to_string(item).expect("drift items serialize")
}

fn item_digest(item: &Item) -> [u8; 32] {
    Sha256::digest(item_json(item).as_bytes()).into()
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

    /// The stream id the sequence numbers belong to ("" when none was recorded).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn set_stream_id(&mut self, id: String) {
        self.stream_id = id;
    }

    fn insert(&mut self, subject: Subject, item: Item) {
        self.item_digests
            .insert(subject.clone(), item_digest(&item));
        self.items.insert(subject, item);
    }

    fn remove(&mut self, subject: &Subject) -> Option<Item> {
        self.item_digests.remove(subject);
        self.items.remove(subject)
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
                self.insert(subject, new.clone());
                (Transition::Drifted, new)
            }
            (Some(_), Some(new)) => {
                self.insert(subject, new.clone());
                (Transition::Changed, new)
            }
            (Some(_), None) => (
                Transition::Resolved,
                self.remove(&subject).expect("present"),
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
                self.remove(&subject);
            }
            Transition::Drifted | Transition::Changed => {
                self.insert(subject, event.item.clone());
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

    /// The drift set's digest as the protocol defines it (`Heartbeat.digest`): SHA-256 over the
    /// sorted SHA-256 digests of every item's [`item_json`]. Equal sets, equal digests, whatever
    /// the order; the collector computes the same from the JSON texts it stored.
    pub fn digest(&self) -> [u8; 32] {
        let mut digests: Vec<&[u8; 32]> = self.item_digests.values().collect();
        digests.sort_unstable();
        let mut hasher = Sha256::new();
        for d in digests {
            hasher.update(d);
        }
        hasher.finalize().into()
    }

    /// Loads a saved ledger; a missing file is an empty ledger.
    pub fn load(path: &Path) -> std::io::Result<Ledger> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                ledger.item_digests = ledger
                    .items
                    .iter()
                    .map(|(s, i)| (s.clone(), item_digest(i)))
                    .collect();
                Ok(ledger)
            }
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

    /// The protocol's digest, computed the way the collector does: from the JSON texts.
    fn digest_of_texts(texts: &[String]) -> [u8; 32] {
        let mut digests: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect();
        digests.sort_unstable();
        let mut hasher = Sha256::new();
        for d in &digests {
            hasher.update(d);
        }
        hasher.finalize().into()
    }

    fn package(name: &str) -> Item {
        Item::Package(PackageDrift {
            name: name.into(),
            arch: "amd64".into(),
            kind: crate::packages::PackageChange::VersionChanged,
            expected_version: Some("1.0".into()),
            actual_version: Some("1.1".into()),
            source: "dpkg".into(),
        })
    }

    #[test]
    fn digest_is_the_protocols_over_the_sent_json_texts() {
        let mut l = Ledger::default();
        assert_eq!(l.digest(), digest_of_texts(&[]), "empty set");
        for p in ["/etc/b", "/etc/a", "/etc/c"] {
            l.update(Subject::Path(p.into()), Some(item(p, "0600")), "t");
        }
        l.update(
            Subject::Path("/etc/c".into()),
            Some(item("/etc/c", "0666")),
            "t",
        );
        l.update(Subject::Path("/etc/a".into()), None, "t");
        let pkg = package("openssl");
        l.update(pkg.subject(), Some(pkg), "t");
        let texts: Vec<String> = l.items().map(item_json).collect();
        assert_eq!(texts.len(), 3);
        assert_eq!(l.digest(), digest_of_texts(&texts));
        // Order does not matter; content does.
        let mut reversed = texts.clone();
        reversed.reverse();
        assert_eq!(l.digest(), digest_of_texts(&reversed));
        assert_ne!(l.digest(), digest_of_texts(&texts[..2]));
    }

    #[test]
    fn item_json_survives_the_spool_and_the_ledger_file_byte_for_byte() {
        // Replayed and reloaded items must hash exactly as the originals did, or heartbeats
        // after a restart would disagree with the collector.
        let mut file = item("/etc/\u{e9}t\u{e9}", "0600");
        if let Item::File(d) = &mut file {
            d.diff = Some("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y \"quoted\" \\ tab\t\n".into());
            d.actual
                .as_mut()
                .unwrap()
                .xattrs
                .insert("user.k".into(), "0xff00".into());
            d.actual.as_mut().unwrap().sha256 = Some("ab".repeat(32));
        }
        for original in [file, package("libc6")] {
            let event = Event {
                seq: 1,
                event: Transition::Drifted,
                observed_at: "t".into(),
                item: original.clone(),
            };
            let back: Event = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
            assert_eq!(item_json(&back.item), item_json(&original));
        }
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::default();
        l.set_stream_id("s1".into());
        l.update(
            Subject::Path("/etc/x".into()),
            Some(item("/etc/x", "0600")),
            "t",
        );
        let pkg = package("zlib");
        l.update(pkg.subject(), Some(pkg), "t");
        l.save(&dir.path().join("l.json")).unwrap();
        let loaded = Ledger::load(&dir.path().join("l.json")).unwrap();
        assert_eq!(loaded.digest(), l.digest());
        assert_eq!(loaded.stream_id(), "s1");
        // A ledger written before stream ids existed loads with none.
        std::fs::write(dir.path().join("old.json"), r#"{"seq":3,"items":[]}"#).unwrap();
        let old = Ledger::load(&dir.path().join("old.json")).unwrap();
        assert_eq!((old.seq(), old.stream_id()), (3, ""));
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
