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
//! (`STATE/ledger.pb`, written crash-safely) together with the sequence number it reflects and
//! the stream id its numbers belong to; events in the spool after that number are replayed onto
//! it on start.
//!
//! # The ledger file
//!
//! ```text
//! "DWLG" | u32 LE crc32(state) | state = driftwatch.v1.LedgerState (protobuf, version 2)
//! ```
//!
//! Agents before 0.2 wrote `STATE/ledger.json` (the same state as JSON); it is read once and
//! replaced by `ledger.pb` ([`Ledger::load_or_upgrade`]).
//!
//! The ledger's digest is the wire protocol's (`Heartbeat.digest`, over the items' canonical
//! encodings: `drift.proto`). Each item's digest is kept beside it, so a heartbeat costs a sort
//! of 32-byte values, not an encoding of every item.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use driftwatch_proto::drift::set_digest;
pub use driftwatch_proto::drift::{DriftItem, Event, Transition};
use driftwatch_proto::v1;
use prost::Message as _;

/// The first bytes of a ledger file.
const MAGIC: &[u8; 4] = b"DWLG";
/// `LedgerState.version` this build writes and reads.
const VERSION: u32 = 2;
/// The largest ledger file read: a drift set of 100,000 items with diffs stays far below it.
/// A larger file (or one that is not a regular file) is damage, never an allocation.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// What a drift item is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Path(PathBuf),
    Package { name: String, arch: String },
}

impl Subject {
    pub fn of(item: &DriftItem) -> Subject {
        match item {
            DriftItem::File(d) => Subject::Path(d.path.clone()),
            DriftItem::Package(p) => Subject::Package {
                name: p.name.clone(),
                arch: p.arch.clone(),
            },
        }
    }
}

/// The current drift set.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The sequence number of the last event reflected here.
    seq: u64,
    /// The stream (see the uplink) whose numbering `seq` counts; "" in ledgers written before
    /// streams existed, which therefore start a new stream.
    stream_id: String,
    items: BTreeMap<Subject, DriftItem>,
    /// Each item's digest ([`DriftItem::digest`]); derived, rebuilt on load.
    item_digests: BTreeMap<Subject, [u8; 32]>,
}

/// Why a ledger file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot save {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is damaged: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
}

/// The ledger as agents before 0.2 saved it (`ledger.json`).
#[derive(serde::Deserialize)]
struct LegacyLedger {
    seq: u64,
    #[serde(default)]
    stream_id: String,
    items: Vec<DriftItem>,
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

    fn insert(&mut self, subject: Subject, item: DriftItem) {
        self.item_digests.insert(subject.clone(), item.digest());
        self.items.insert(subject, item);
    }

    fn remove(&mut self, subject: &Subject) -> Option<DriftItem> {
        self.item_digests.remove(subject);
        self.items.remove(subject)
    }

    /// Feeds the current state of one subject; returns the event, if it is a transition.
    pub fn update(
        &mut self,
        subject: Subject,
        now: Option<DriftItem>,
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
            transition: event.0,
            observed_at: observed_at.to_owned(),
            item: event.1,
        })
    }

    /// Re-applies an event read back from the spool (after a restart).
    pub fn replay(&mut self, event: &Event) {
        if event.seq <= self.seq {
            return;
        }
        let subject = Subject::of(&event.item);
        match event.transition {
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
    pub fn items(&self) -> impl Iterator<Item = &DriftItem> {
        self.items.values()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The drift set's digest as the protocol defines it (`Heartbeat.digest`). Equal sets,
    /// equal digests, whatever the order; the collector computes the same from what it stored.
    pub fn digest(&self) -> [u8; 32] {
        set_digest(self.item_digests.values())
    }

    /// Loads the ledger from `path`; when there is none but a ledger of an agent before 0.2 at
    /// `legacy` (JSON), reads that, saves it at `path` and removes it. Neither: an empty ledger.
    pub fn load_or_upgrade(path: &Path, legacy: &Path) -> Result<Ledger, LedgerError> {
        match Ledger::load(path)? {
            Some(ledger) => Ok(ledger),
            None => {
                let Some(ledger) = Ledger::load(legacy)? else {
                    return Ok(Ledger::default());
                };
                if let Err(error) = ledger.save(path) {
                    if !crate::fsutil::caused_by_full_disk(&error) {
                        return Err(error);
                    }
                    // The old file stays, and is converted at a start with room to spare.
                    tracing::warn!(from = %legacy.display(), to = %path.display(),
                        "Cannot convert the ledger to this version's format: the disk is full; \
                         using the old file as it is.");
                    return Ok(ledger);
                }
                if let Err(error) = std::fs::remove_file(legacy) {
                    tracing::warn!(path = %legacy.display(), %error, "Cannot remove the old ledger file.");
                }
                tracing::info!(from = %legacy.display(), to = %path.display(), "Converted the ledger to this version's format.");
                Ok(ledger)
            }
        }
    }

    /// Loads a saved ledger (either format); `None` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Ledger>, LedgerError> {
        let bytes = match crate::fsutil::read_bounded(path, MAX_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(LedgerError::Corrupt {
                    path: path.to_path_buf(),
                    what: e.to_string(),
                });
            }
            Err(source) => {
                return Err(LedgerError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let corrupt = |what: String| LedgerError::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let (seq, stream_id, items) = if bytes.first() == Some(&b'{') {
            let legacy: LegacyLedger =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            (legacy.seq, legacy.stream_id, legacy.items)
        } else {
            let state = bytes
                .strip_prefix(MAGIC)
                .ok_or_else(|| corrupt("not a ledger file (bad magic bytes)".into()))?;
            let (crc, state) = state
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("truncated".into()))?;
            if u32::from_le_bytes(*crc) != crc32fast::hash(state) {
                return Err(corrupt("checksum mismatch".into()));
            }
            let state = v1::LedgerState::decode(state).map_err(|e| corrupt(e.to_string()))?;
            if state.version != VERSION {
                return Err(corrupt(format!(
                    "version {} (this agent reads {VERSION})",
                    state.version
                )));
            }
            let items = state
                .items
                .into_iter()
                .map(DriftItem::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| corrupt(e.to_string()))?;
            (state.seq, state.stream_id, items)
        };
        let mut ledger = Ledger {
            seq,
            stream_id,
            ..Ledger::default()
        };
        for item in items {
            ledger.insert(Subject::of(&item), item);
        }
        Ok(Some(ledger))
    }

    /// Saves crash-safely (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), LedgerError> {
        let state = v1::LedgerState {
            version: VERSION,
            seq: self.seq,
            stream_id: self.stream_id.clone(),
            items: self.items.values().map(DriftItem::to_wire).collect(),
        }
        .encode_to_vec();
        let mut bytes = Vec::with_capacity(state.len() + 8);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&state).to_le_bytes());
        bytes.extend_from_slice(&state);
        crate::fsutil::write_atomically(path, &bytes, 0o600).map_err(|source| LedgerError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Now, as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::evaluate::{DriftKind, Facts, FileDrift};
    use crate::packages::{PackageChange, PackageDrift};
    use crate::rules::Severity;
    use driftwatch_proto::baseline::FileKind;
    use sha2::{Digest as _, Sha256};

    /// A file item whose mode drifted from 0644 to `mode` (for other modules' tests too).
    pub(crate) fn item(path: &str, mode: u32) -> DriftItem {
        let facts = Facts {
            kind: FileKind::Regular,
            mode,
            owner: 0,
            group: 0,
            size: 1,
            sha256: None,
            target: None,
            xattrs: Default::default(),
        };
        DriftItem::File(Box::new(FileDrift {
            path: path.into(),
            kind: DriftKind::Modified,
            changed: vec![crate::rules::Attr::Mode],
            severity: Severity::Behavioral,
            reason: "r".into(),
            expected: Some(Facts {
                mode: 0o644,
                ..facts.clone()
            }),
            actual: Some(facts),
            diff: None,
        }))
    }

    fn package(name: &str) -> DriftItem {
        DriftItem::Package(PackageDrift {
            name: name.into(),
            arch: "amd64".into(),
            kind: PackageChange::VersionChanged,
            expected_version: Some("1.0".into()),
            actual_version: Some("1.1".into()),
            source: "dpkg".into(),
        })
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        // (state fed, expected transition)
        let cases: &[(Option<u32>, Option<Transition>)] = &[
            (None, None),
            (Some(0o600), Some(Transition::Drifted)),
            (Some(0o600), None),
            (Some(0o666), Some(Transition::Changed)),
            (None, Some(Transition::Resolved)),
            (None, None),
        ];
        let mut ledger = Ledger::default();
        let p = Subject::Path("/etc/x".into());
        for (i, (state, want)) in cases.iter().enumerate() {
            let got = ledger
                .update(p.clone(), state.map(|m| item("/etc/x", m)), "t")
                .map(|e| e.transition);
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
            ("/a", Some(0o600)),
            ("/b", Some(0o600)),
            ("/a", None),
            ("/c", Some(0o777)),
        ] {
            events.extend(live.update(Subject::Path(p.into()), m.map(|m| item(p, m)), "t"));
        }
        let mut rebuilt = Ledger::default();
        for e in &events[..2] {
            rebuilt.replay(e);
        }
        let path = dir.path().join("ledger.pb");
        rebuilt.save(&path).unwrap();
        let mut loaded = Ledger::load(&path).unwrap().unwrap();
        for e in &events {
            loaded.replay(e);
        }
        assert_eq!(loaded.digest(), live.digest());
        assert_eq!(loaded.seq(), live.seq());
        assert_eq!(loaded.paths(), [PathBuf::from("/b"), PathBuf::from("/c")]);
    }

    /// The protocol's digest, computed as `drift.proto` defines it, from the encodings.
    fn digest_of_encodings(encodings: &[Vec<u8>]) -> [u8; 32] {
        let mut digests: Vec<[u8; 32]> =
            encodings.iter().map(|t| Sha256::digest(t).into()).collect();
        digests.sort_unstable();
        let mut hasher = Sha256::new();
        for d in &digests {
            hasher.update(d);
        }
        hasher.finalize().into()
    }

    #[test]
    fn digest_is_the_protocols_over_the_canonical_encodings() {
        let mut l = Ledger::default();
        assert_eq!(l.digest(), digest_of_encodings(&[]), "empty set");
        for p in ["/etc/b", "/etc/a", "/etc/c"] {
            l.update(Subject::Path(p.into()), Some(item(p, 0o600)), "t");
        }
        l.update(
            Subject::Path("/etc/c".into()),
            Some(item("/etc/c", 0o666)),
            "t",
        );
        l.update(Subject::Path("/etc/a".into()), None, "t");
        let pkg = package("openssl");
        l.update(Subject::of(&pkg), Some(pkg), "t");
        let encodings: Vec<Vec<u8>> = l.items().map(|i| i.to_wire().encode_to_vec()).collect();
        assert_eq!(encodings.len(), 3);
        assert_eq!(l.digest(), digest_of_encodings(&encodings));
        // Order does not matter; content does.
        let mut reversed = encodings.clone();
        reversed.reverse();
        assert_eq!(l.digest(), digest_of_encodings(&reversed));
        assert_ne!(l.digest(), digest_of_encodings(&encodings[..2]));
    }

    #[test]
    fn a_saved_ledger_keeps_its_digest_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::default();
        l.set_stream_id("s1".into());
        let mut file = item("/etc/\u{e9}t\u{e9}", 0o600);
        if let DriftItem::File(d) = &mut file {
            d.diff = Some("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y \"quoted\" \\ tab\t\n".into());
            d.actual.as_mut().unwrap().sha256 = Some([0xab; 32]);
        }
        l.update(Subject::of(&file), Some(file), "t");
        let pkg = package("zlib");
        l.update(Subject::of(&pkg), Some(pkg), "t");
        let path = dir.path().join("ledger.pb");
        l.save(&path).unwrap();
        let loaded = Ledger::load(&path).unwrap().unwrap();
        assert_eq!(loaded.digest(), l.digest());
        assert_eq!((loaded.seq(), loaded.stream_id()), (2, "s1"));
        assert!(Ledger::load(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn a_damaged_ledger_is_refused_with_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.pb");
        let mut l = Ledger::default();
        l.update(
            Subject::Path("/etc/x".into()),
            Some(item("/etc/x", 0o600)),
            "t",
        );
        l.save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = Ledger::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("ledger.pb is damaged: checksum mismatch"),
            "{err}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        let err = Ledger::load(&path).unwrap_err().to_string();
        assert!(err.contains("bad magic bytes"), "{err}");
    }

    /// A ledger written by an agent before 0.2, byte for byte as it wrote it.
    const LEGACY_LEDGER: &str = r#"{"seq":5,"stream_id":"0123456789abcdef0123456789abcdef","items":[{"path":"/etc/x","kind":"modified","changed":["mode"],"severity":"behavioral","reason":"r","expected":{"type":"file","mode":"0644","owner":0,"group":0,"size":1},"actual":{"type":"file","mode":"0600","owner":0,"group":0,"size":1},"diff":null},{"name":"zlib","arch":"amd64","kind":"version_changed","expected_version":"1.0","actual_version":"1.1","source":"dpkg"}]}"#;

    #[test]
    fn a_ledger_of_the_previous_release_is_converted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, legacy) = (dir.path().join("ledger.pb"), dir.path().join("ledger.json"));
        std::fs::write(&legacy, LEGACY_LEDGER).unwrap();
        let upgraded = Ledger::load_or_upgrade(&path, &legacy).unwrap();
        assert_eq!(upgraded.seq(), 5);
        assert_eq!(upgraded.stream_id(), "0123456789abcdef0123456789abcdef");
        let mut same = Ledger::default();
        same.update(
            Subject::Path("/etc/x".into()),
            Some(item("/etc/x", 0o600)),
            "t",
        );
        let pkg = package("zlib");
        same.update(Subject::of(&pkg), Some(pkg), "t");
        assert_eq!(upgraded.digest(), same.digest());
        assert!(!legacy.exists(), "the old file is gone");
        let reloaded = Ledger::load_or_upgrade(&path, &legacy).unwrap();
        assert_eq!(reloaded.digest(), same.digest());
        // A ledger written before stream ids existed loads with none.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&legacy, r#"{"seq":3,"items":[]}"#).unwrap();
        let old = Ledger::load_or_upgrade(&path, &legacy).unwrap();
        assert_eq!((old.seq(), old.stream_id()), (3, ""));
    }

    #[test]
    fn paths_under_a_prefix() {
        let mut l = Ledger::default();
        for p in ["/etc/a", "/etc/a-b", "/etc/a/x", "/etc/a/y/z", "/etc/b"] {
            l.update(Subject::Path(p.into()), Some(item(p, 0o600)), "t");
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
