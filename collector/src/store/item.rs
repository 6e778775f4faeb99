//! A drift item as the collector keeps it: its canonical encoding (`drift.proto`; heartbeat
//! digests are computed over it), plus the few facts the store indexes, read from it once.

use driftwatch_proto::drift::{self, DriftError, DriftItem};
use driftwatch_proto::v1;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

pub use driftwatch_proto::drift::Severity;

/// Largest item accepted (an item carries at most one diff; agents cap captured content).
pub const MAX_ITEM_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    Path,
    Package,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Path => "path",
            SubjectKind::Package => "package",
        }
    }
}

/// Why an item was refused.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("drift item of {0} bytes (limit {MAX_ITEM_BYTES})")]
    TooLarge(usize),
    #[error(transparent)]
    Invalid(#[from] DriftError),
}

/// An item, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRecord {
    /// The path (as `check --json` shows it) or `package:NAME:ARCH`.
    pub subject: String,
    pub subject_kind: SubjectKind,
    /// added / removed / modified for paths; installed / removed / version_changed for
    /// packages.
    pub kind: &'static str,
    pub severity: Severity,
    pub changed: Vec<&'static str>,
    /// Identifies the change itself, whatever the host: hex SHA-256 over the subject, the
    /// kind and the expected and actual states. Equal on hosts that made the identical change.
    pub cause: String,
    /// SHA-256 of `encoded`: the item's part of the drift-set digest.
    pub sha256: [u8; 32],
    /// The item's canonical encoding.
    pub encoded: Vec<u8>,
}

impl ItemRecord {
    /// Validates an item as an agent sent it.
    pub fn from_wire(item: v1::DriftItem) -> Result<ItemRecord, ItemError> {
        let encoded = item.encode_to_vec();
        if encoded.len() > MAX_ITEM_BYTES {
            return Err(ItemError::TooLarge(encoded.len()));
        }
        // The facts of a file item (what identifies the change), encoded as they arrived.
        let facts = match &item.item {
            Some(v1::drift_item::Item::File(f)) => [&f.expected, &f.actual]
                .map(|side| side.as_ref().map(|x| x.encode_to_vec()).unwrap_or_default()),
            _ => Default::default(),
        };
        let item = DriftItem::try_from(item)?;
        let mut cause = Sha256::new();
        let mut part = |bytes: &[u8]| {
            cause.update((bytes.len() as u64).to_le_bytes());
            cause.update(bytes);
        };
        let (subject, subject_kind, kind, changed) = match &item {
            DriftItem::File(f) => {
                let subject = driftwatch_proto::text::display_path(&f.path);
                part(subject.as_bytes());
                part(f.kind.as_str().as_bytes());
                part(&facts[0]);
                part(&facts[1]);
                let changed = f.changed.iter().map(|a| a.as_str()).collect();
                (subject, SubjectKind::Path, f.kind.as_str(), changed)
            }
            DriftItem::Package(p) => {
                let subject = format!("package:{}:{}", p.name, p.arch);
                part(subject.as_bytes());
                part(p.kind.as_str().as_bytes());
                part(p.expected_version.as_deref().unwrap_or("").as_bytes());
                part(p.actual_version.as_deref().unwrap_or("").as_bytes());
                (
                    subject,
                    SubjectKind::Package,
                    p.kind.as_str(),
                    vec!["version"],
                )
            }
        };
        Ok(ItemRecord {
            subject,
            subject_kind,
            kind,
            severity: item.severity(),
            changed,
            cause: hex::encode(&cause.finalize()[..16]),
            sha256: drift::item_digest(&encoded),
            encoded,
        })
    }

    /// From the domain form (the JSON forms of the previous release, tests).
    pub fn new(item: &DriftItem) -> ItemRecord {
        ItemRecord::from_wire(item.to_wire()).expect("a domain item converts")
    }
}

/// Decodes a stored item (the store wrote it from a validated one).
pub fn decode(encoded: &[u8]) -> Result<v1::DriftItem, prost::DecodeError> {
    v1::DriftItem::decode(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_proto::baseline::FileKind;
    use driftwatch_proto::drift::{Attr, DriftKind, Facts, FileDrift, PackageChange, PackageDrift};

    fn file(actual_sha: u8, diff: Option<&str>) -> DriftItem {
        let facts = |sha: u8| Facts {
            kind: FileKind::Regular,
            mode: 0o644,
            owner: 0,
            group: 0,
            size: 3,
            sha256: Some([sha; 32]),
            target: None,
            xattrs: vec![],
        };
        DriftItem::File(Box::new(FileDrift {
            path: "/etc/x".into(),
            kind: DriftKind::Modified,
            changed: vec![Attr::Content],
            severity: drift::Severity::Behavioral,
            reason: "r".into(),
            expected: Some(facts(0xaa)),
            actual: Some(facts(actual_sha)),
            diff: diff.map(str::to_owned),
        }))
    }

    #[test]
    fn identical_changes_share_a_cause_whatever_the_diff_text() {
        let (a, b, c) = (
            ItemRecord::new(&file(0xbb, Some("x"))),
            ItemRecord::new(&file(0xbb, None)),
            ItemRecord::new(&file(0xcc, Some("x"))),
        );
        assert_eq!(a.cause, b.cause);
        assert_ne!(a.cause, c.cause);
        assert_ne!(a.sha256, b.sha256, "but they are different items");
        assert_eq!(a.severity, Severity::Behavioral);
        assert_eq!(
            (a.kind, a.changed.as_slice()),
            ("modified", &["content"][..])
        );
    }

    #[test]
    fn packages_are_subjects_too() {
        let p = ItemRecord::new(&DriftItem::Package(PackageDrift {
            name: "curl".into(),
            arch: "amd64".into(),
            kind: PackageChange::Installed,
            expected_version: None,
            actual_version: Some("8.1".into()),
            source: "dpkg".into(),
        }));
        assert_eq!(p.subject, "package:curl:amd64");
        assert_eq!(p.subject_kind, SubjectKind::Package);
        assert_eq!(p.kind, "installed");
        assert_eq!(decode(&p.encoded).unwrap().encode_to_vec(), p.encoded);
    }

    #[test]
    fn malformed_items_are_refused_with_a_reason() {
        let mut relative = file(0xbb, None).to_wire();
        if let Some(v1::drift_item::Item::File(f)) = &mut relative.item {
            f.path = "etc/x".into();
        }
        let mut huge = file(0xbb, None).to_wire();
        if let Some(v1::drift_item::Item::File(f)) = &mut huge.item {
            f.diff = Some("x".repeat(MAX_ITEM_BYTES));
        }
        for (item, why) in [
            (v1::DriftItem { item: None }, "neither a file nor a package"),
            (relative, "not absolute"),
            (huge, "limit"),
        ] {
            let err = ItemRecord::from_wire(item).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
