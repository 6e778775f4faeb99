//! A drift item as the collector keeps it: the agent's JSON text, byte for byte (heartbeat
//! digests are computed over it), plus the few facts the store indexes, read from it once.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Largest item accepted (an item carries at most one diff; agents cap captured content).
pub const MAX_ITEM_BYTES: usize = 1 << 20;

/// Worst first, so `a < b` means `a` is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Security = 0,
    Behavioral = 1,
    Cosmetic = 2,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Security, Severity::Behavioral, Severity::Cosmetic];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Security => "security",
            Severity::Behavioral => "behavioral",
            Severity::Cosmetic => "cosmetic",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "security" => Severity::Security,
            "behavioral" => Severity::Behavioral,
            "cosmetic" => Severity::Cosmetic,
            _ => return None,
        })
    }

    pub fn from_index(i: i64) -> Option<Severity> {
        Severity::ALL.get(usize::try_from(i).ok()?).copied()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// An item, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRecord {
    /// The path (as `check --json` shows it) or `package:NAME:ARCH`.
    pub subject: String,
    pub subject_kind: SubjectKind,
    /// added / removed / modified for paths; installed / removed / version_changed for
    /// packages.
    pub kind: String,
    pub severity: Severity,
    pub changed: Vec<String>,
    /// Identifies the change itself, whatever the host: hex SHA-256 over the subject, the
    /// kind and the expected and actual states. Equal on hosts that made the identical change.
    pub cause: String,
    /// SHA-256 of `json`.
    pub sha256: [u8; 32],
    pub json: String,
}

#[derive(Deserialize)]
struct FileItem {
    path: String,
    kind: String,
    #[serde(default)]
    changed: Vec<String>,
    severity: String,
    #[serde(default)]
    expected: serde_json::Value,
    #[serde(default)]
    actual: serde_json::Value,
}

#[derive(Deserialize)]
struct PackageItem {
    name: String,
    arch: String,
    kind: String,
    #[serde(default)]
    expected_version: Option<String>,
    #[serde(default)]
    actual_version: Option<String>,
}

impl ItemRecord {
    /// Validates an item's JSON text as an agent sent it.
    pub fn parse(json: String) -> Result<ItemRecord, String> {
        if json.len() > MAX_ITEM_BYTES {
            return Err(format!(
                "drift item of {} bytes (limit {MAX_ITEM_BYTES})",
                json.len()
            ));
        }
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| format!("drift item is not JSON: {e}"))?;
        let object = value.as_object().ok_or("drift item is not a JSON object")?;
        let mut cause = Sha256::new();
        let record = if object.contains_key("path") {
            let item = FileItem::deserialize(&value)
                .map_err(|e| format!("malformed file drift item: {e}"))?;
            if !item.path.starts_with('/') {
                return Err(format!("drift item path {:?} is not absolute", item.path));
            }
            let severity = Severity::parse(&item.severity)
                .ok_or_else(|| format!("unknown severity {:?}", item.severity))?;
            for part in [
                item.path.as_str(),
                &item.kind,
                &item.expected.to_string(),
                &item.actual.to_string(),
            ] {
                cause.update(part.as_bytes());
                cause.update([0]);
            }
            ItemRecord {
                subject: item.path,
                subject_kind: SubjectKind::Path,
                kind: item.kind,
                severity,
                changed: item.changed,
                cause: String::new(),
                sha256: [0; 32],
                json: String::new(),
            }
        } else if object.contains_key("name") {
            let item = PackageItem::deserialize(&value)
                .map_err(|e| format!("malformed package drift item: {e}"))?;
            let subject = format!("package:{}:{}", item.name, item.arch);
            for part in [
                subject.as_str(),
                &item.kind,
                item.expected_version.as_deref().unwrap_or(""),
                item.actual_version.as_deref().unwrap_or(""),
            ] {
                cause.update(part.as_bytes());
                cause.update([0]);
            }
            ItemRecord {
                subject,
                subject_kind: SubjectKind::Package,
                kind: item.kind,
                severity: Severity::Behavioral,
                changed: vec!["version".into()],
                cause: String::new(),
                sha256: [0; 32],
                json: String::new(),
            }
        } else {
            return Err("drift item has neither a path nor a package name".into());
        };
        Ok(ItemRecord {
            cause: hex::encode(&cause.finalize()[..16]),
            sha256: Sha256::digest(json.as_bytes()).into(),
            json,
            ..record
        })
    }
}

/// The digest of a drift set from its items' SHA-256 digests (any order).
pub fn set_digest(mut item_digests: Vec<[u8; 32]>) -> [u8; 32] {
    item_digests.sort_unstable();
    let mut hasher = Sha256::new();
    for d in &item_digests {
        hasher.update(d);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_changes_share_a_cause_whatever_the_diff_text() {
        let a = r#"{"path":"/etc/x","kind":"modified","changed":["content"],"severity":"behavioral","reason":"r","expected":{"sha256":"aa"},"actual":{"sha256":"bb"},"diff":"x"}"#;
        let b = a.replace("\"diff\":\"x\"", "\"diff\":null");
        let c = a.replace("bb", "cc");
        let (a, b, c) = (
            ItemRecord::parse(a.into()).unwrap(),
            ItemRecord::parse(b).unwrap(),
            ItemRecord::parse(c).unwrap(),
        );
        assert_eq!(a.cause, b.cause);
        assert_ne!(a.cause, c.cause);
        assert_eq!(a.severity, Severity::Behavioral);
    }

    #[test]
    fn packages_are_subjects_too() {
        let p = ItemRecord::parse(
            r#"{"name":"curl","arch":"amd64","kind":"installed","expected_version":null,"actual_version":"8.1","source":"dpkg"}"#.into(),
        )
        .unwrap();
        assert_eq!(p.subject, "package:curl:amd64");
        assert_eq!(p.subject_kind, SubjectKind::Package);
    }

    #[test]
    fn malformed_items_are_refused_with_a_reason() {
        for (json, why) in [
            ("nope", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "neither a path"),
            (
                r#"{"path":"/x","kind":"added","severity":"dire"}"#,
                "unknown severity",
            ),
            (
                r#"{"path":"x","kind":"added","severity":"security"}"#,
                "not absolute",
            ),
            (r#"{"path":"/x"}"#, "malformed file drift item"),
        ] {
            let err = ItemRecord::parse(json.into()).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn set_digest_ignores_order() {
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(set_digest(vec![a, b]), set_digest(vec![b, a]));
        assert_ne!(set_digest(vec![a]), set_digest(vec![a, b]));
    }
}
