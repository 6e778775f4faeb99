//! The drift model (`driftwatch.v1`, `drift.proto`): what a host reports about how it differs
//! from its baseline, as the agent evaluates it, spools it and sends it, and as the collector
//! stores it.
//!
//! These are the domain types; the generated messages ([`v1::DriftItem`] and friends) are their
//! encoding, converted here and nowhere else. Converting from the wire validates: an item that
//! converts is one an agent could have produced.
//!
//! JSON is an edge: the serde forms of these types are exactly the objects
//! `driftwatch-agent check --json` prints (and the collector's HTTP API and `--json` listings
//! show), and reading them back is only for data written before the typed model (version 1
//! spool records, ledgers and collector databases).
//!
//! The drift-set digest ([`set_digest`], `Heartbeat.digest`) is computed over each item's
//! canonical encoding ([`DriftItem::canonical_encoding`]), defined in `drift.proto`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::baseline::{Entry, FileKind, Xattr};
use crate::pb::baseline as pb;
use crate::text::{display_path, parse_path};
use crate::v1;

/// How serious a drift item is, most serious first (`Security < Cosmetic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Security,
    Behavioral,
    Cosmetic,
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

    /// Inverts [`Severity::as_str`].
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// 0 for the most serious: how stores index severities.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Inverts [`Severity::index`].
    pub fn from_index(i: i64) -> Option<Severity> {
        Severity::ALL.get(usize::try_from(i).ok()?).copied()
    }

    fn to_wire(self) -> v1::Severity {
        match self {
            Severity::Security => v1::Severity::Security,
            Severity::Behavioral => v1::Severity::Behavioral,
            Severity::Cosmetic => v1::Severity::Cosmetic,
        }
    }

    fn from_wire(value: i32) -> Result<Severity, DriftError> {
        match v1::Severity::try_from(value) {
            Ok(v1::Severity::Security) => Ok(Severity::Security),
            Ok(v1::Severity::Behavioral) => Ok(Severity::Behavioral),
            Ok(v1::Severity::Cosmetic) => Ok(Severity::Cosmetic),
            _ => Err(DriftError::Unknown("severity", value)),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Severity, UnknownName> {
        Severity::parse(text).ok_or_else(|| UnknownName {
            what: "severity",
            name: text.to_owned(),
            known: "security, behavioral, cosmetic",
        })
    }
}

/// A name that is not one of a closed set's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (known: {known})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub known: &'static str,
}

/// An attribute of a path whose change is drift (in `drift.proto`'s order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attr {
    Type,
    Mode,
    Owner,
    Group,
    Size,
    Content,
    Target,
    Xattrs,
}

impl Attr {
    pub const ALL: [Attr; 8] = [
        Attr::Type,
        Attr::Mode,
        Attr::Owner,
        Attr::Group,
        Attr::Size,
        Attr::Content,
        Attr::Target,
        Attr::Xattrs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Mode => "mode",
            Attr::Owner => "owner",
            Attr::Group => "group",
            Attr::Size => "size",
            Attr::Content => "content",
            Attr::Target => "target",
            Attr::Xattrs => "xattrs",
        }
    }

    fn to_wire(self) -> v1::Attribute {
        match self {
            Attr::Type => v1::Attribute::Type,
            Attr::Mode => v1::Attribute::Mode,
            Attr::Owner => v1::Attribute::Owner,
            Attr::Group => v1::Attribute::Group,
            Attr::Size => v1::Attribute::Size,
            Attr::Content => v1::Attribute::Content,
            Attr::Target => v1::Attribute::Target,
            Attr::Xattrs => v1::Attribute::Xattrs,
        }
    }

    fn from_wire(value: i32) -> Result<Attr, DriftError> {
        Ok(match v1::Attribute::try_from(value) {
            Ok(v1::Attribute::Type) => Attr::Type,
            Ok(v1::Attribute::Mode) => Attr::Mode,
            Ok(v1::Attribute::Owner) => Attr::Owner,
            Ok(v1::Attribute::Group) => Attr::Group,
            Ok(v1::Attribute::Size) => Attr::Size,
            Ok(v1::Attribute::Content) => Attr::Content,
            Ok(v1::Attribute::Target) => Attr::Target,
            Ok(v1::Attribute::Xattrs) => Attr::Xattrs,
            _ => return Err(DriftError::Unknown("changed attribute", value)),
        })
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    Added,
    Removed,
    Modified,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Added => "added",
            DriftKind::Removed => "removed",
            DriftKind::Modified => "modified",
        }
    }
}

/// One side (expected or actual) of a path's drift. Secret content never appears here: a
/// file's content is known only by its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(rename = "type", with = "json::file_kind")]
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky; JSON shows them as octal text
    /// (`"0644"`, `"4755"`).
    #[serde(with = "json::octal")]
    pub mode: u32,
    pub owner: u32,
    pub group: u32,
    pub size: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json::hex_digest"
    )]
    pub sha256: Option<[u8; 32]>,
    /// A symlink's target, escaped as paths are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Sorted by name. JSON shows a value as text when it is printable, else as `0x…` hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "json::xattrs")]
    pub xattrs: Vec<Xattr>,
}

impl Facts {
    pub fn of(entry: &Entry) -> Facts {
        let mut xattrs = entry.xattrs.clone();
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        Facts {
            kind: entry.kind,
            mode: entry.mode,
            owner: entry.uid,
            group: entry.gid,
            size: entry.size,
            sha256: entry.sha256,
            target: entry.target.as_deref().map(display_path),
            xattrs,
        }
    }

    fn to_wire(&self) -> v1::FileFacts {
        v1::FileFacts {
            r#type: self.kind.to_pb() as i32,
            mode: self.mode,
            owner: self.owner,
            group: self.group,
            size: self.size,
            sha256: self.sha256.map(Vec::from).unwrap_or_default(),
            target: self.target.clone().unwrap_or_default(),
            xattrs: self.xattrs.iter().map(pb::Xattr::from).collect(),
        }
    }

    fn from_wire(f: v1::FileFacts, side: &'static str) -> Result<Facts, DriftError> {
        let sha256 = match f.sha256.len() {
            0 => None,
            32 => Some(f.sha256.try_into().expect("32 bytes")),
            len => return Err(DriftError::Sha256Length { side, len }),
        };
        Ok(Facts {
            kind: FileKind::from_pb(f.r#type).ok_or(DriftError::Unknown("file type", f.r#type))?,
            mode: f.mode,
            owner: f.owner,
            group: f.group,
            size: f.size,
            sha256,
            target: (!f.target.is_empty()).then_some(f.target),
            xattrs: f.xattrs.into_iter().map(Xattr::from).collect(),
        })
    }
}

/// A path that differs from its baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDrift {
    #[serde(with = "crate::text::path_text")]
    pub path: PathBuf,
    pub kind: DriftKind,
    /// Changed attributes, in [`Attr`] order (empty for added and removed).
    pub changed: Vec<Attr>,
    pub severity: Severity,
    /// Why this severity, in plain words.
    pub reason: String,
    /// `None` when added.
    pub expected: Option<Facts>,
    /// `None` when removed.
    pub actual: Option<Facts>,
    /// Unified diff, when the baseline holds the content (never for secrets).
    pub diff: Option<String>,
}

/// How an installed package changed between the baseline and the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageChange {
    /// On the host, not in the baseline.
    Installed,
    /// In the baseline, not on the host.
    Removed,
    /// On both, with another version.
    VersionChanged,
}

impl PackageChange {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageChange::Installed => "installed",
            PackageChange::Removed => "removed",
            PackageChange::VersionChanged => "version_changed",
        }
    }
}

/// One package that differs from the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDrift {
    pub name: String,
    pub arch: String,
    pub kind: PackageChange,
    /// The baseline's version; `None` when installed.
    pub expected_version: Option<String>,
    /// The host's version; `None` when removed.
    pub actual_version: Option<String>,
    /// The database the package was found in (the host's, unless it was removed).
    pub source: String,
}

/// A drift item: a path's or a package's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DriftItem {
    File(Box<FileDrift>),
    Package(PackageDrift),
}

impl DriftItem {
    /// A package's drift counts as behavioral.
    pub fn severity(&self) -> Severity {
        match self {
            DriftItem::File(f) => f.severity,
            DriftItem::Package(_) => Severity::Behavioral,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::DriftItem {
        let item = match self {
            DriftItem::File(f) => v1::drift_item::Item::File(v1::FileDrift {
                path: display_path(&f.path),
                kind: match f.kind {
                    DriftKind::Added => v1::DriftKind::Added,
                    DriftKind::Removed => v1::DriftKind::Removed,
                    DriftKind::Modified => v1::DriftKind::Modified,
                } as i32,
                changed: f.changed.iter().map(|a| a.to_wire() as i32).collect(),
                severity: f.severity.to_wire() as i32,
                reason: f.reason.clone(),
                expected: f.expected.as_ref().map(Facts::to_wire),
                actual: f.actual.as_ref().map(Facts::to_wire),
                diff: f.diff.clone(),
            }),
            DriftItem::Package(p) => v1::drift_item::Item::Package(v1::PackageDrift {
                name: p.name.clone(),
                arch: p.arch.clone(),
                kind: match p.kind {
                    PackageChange::Installed => v1::PackageChange::Installed,
                    PackageChange::Removed => v1::PackageChange::Removed,
                    PackageChange::VersionChanged => v1::PackageChange::VersionChanged,
                } as i32,
                expected_version: p.expected_version.clone(),
                actual_version: p.actual_version.clone(),
                source: p.source.clone(),
            }),
        };
        v1::DriftItem { item: Some(item) }
    }

    /// The canonical encoding (`drift.proto`): what the drift-set digest is computed over.
    pub fn canonical_encoding(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// SHA-256 of the canonical encoding.
    pub fn digest(&self) -> [u8; 32] {
        item_digest(&self.canonical_encoding())
    }
}

/// SHA-256 of an item's canonical encoding (a received item re-encoded is one).
pub fn item_digest(canonical_encoding: &[u8]) -> [u8; 32] {
    Sha256::digest(canonical_encoding).into()
}

/// The digest of a drift set from its items' digests ([`DriftItem::digest`]), in any order.
pub fn set_digest<'a>(item_digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut sorted: Vec<&[u8; 32]> = item_digests.into_iter().collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for d in sorted {
        hasher.update(d);
    }
    hasher.finalize().into()
}

impl TryFrom<v1::DriftItem> for DriftItem {
    type Error = DriftError;

    fn try_from(item: v1::DriftItem) -> Result<DriftItem, DriftError> {
        match item.item.ok_or(DriftError::Empty)? {
            v1::drift_item::Item::File(f) => file_from_wire(f).map(|f| DriftItem::File(f.into())),
            v1::drift_item::Item::Package(p) => {
                if p.name.is_empty() {
                    return Err(DriftError::NoPackageName);
                }
                let kind = match v1::PackageChange::try_from(p.kind) {
                    Ok(v1::PackageChange::Installed) => PackageChange::Installed,
                    Ok(v1::PackageChange::Removed) => PackageChange::Removed,
                    Ok(v1::PackageChange::VersionChanged) => PackageChange::VersionChanged,
                    _ => return Err(DriftError::Unknown("package change", p.kind)),
                };
                Ok(DriftItem::Package(PackageDrift {
                    name: p.name,
                    arch: p.arch,
                    kind,
                    expected_version: p.expected_version,
                    actual_version: p.actual_version,
                    source: p.source,
                }))
            }
        }
    }
}

fn file_from_wire(f: v1::FileDrift) -> Result<FileDrift, DriftError> {
    if !f.path.starts_with('/') {
        return Err(DriftError::RelativePath(f.path));
    }
    let path = parse_path(&f.path);
    if display_path(&path) != f.path {
        return Err(DriftError::PathNotEscaped(f.path));
    }
    let kind = match v1::DriftKind::try_from(f.kind) {
        Ok(v1::DriftKind::Added) => DriftKind::Added,
        Ok(v1::DriftKind::Removed) => DriftKind::Removed,
        Ok(v1::DriftKind::Modified) => DriftKind::Modified,
        _ => return Err(DriftError::Unknown("kind", f.kind)),
    };
    let needs = |side: &'static str, present: bool, wanted: bool| match (present, wanted) {
        (false, true) => Err(DriftError::Facts {
            kind: kind.as_str(),
            side,
            present: false,
        }),
        (true, false) => Err(DriftError::Facts {
            kind: kind.as_str(),
            side,
            present: true,
        }),
        _ => Ok(()),
    };
    needs("expected", f.expected.is_some(), kind != DriftKind::Added)?;
    needs("actual", f.actual.is_some(), kind != DriftKind::Removed)?;
    Ok(FileDrift {
        path,
        kind,
        changed: f
            .changed
            .into_iter()
            .map(Attr::from_wire)
            .collect::<Result<_, _>>()?,
        severity: Severity::from_wire(f.severity)?,
        reason: f.reason,
        expected: f
            .expected
            .map(|e| Facts::from_wire(e, "expected"))
            .transpose()?,
        actual: f
            .actual
            .map(|a| Facts::from_wire(a, "actual"))
            .transpose()?,
        diff: f.diff,
    })
}

/// The kind of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Drifted,
    Changed,
    Resolved,
}

impl Transition {
    pub const ALL: [Transition; 3] = [
        Transition::Drifted,
        Transition::Changed,
        Transition::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Drifted => "drifted",
            Transition::Changed => "changed",
            Transition::Resolved => "resolved",
        }
    }

    /// Inverts [`Transition::as_str`].
    pub fn parse(text: &str) -> Option<Transition> {
        Transition::ALL.into_iter().find(|t| t.as_str() == text)
    }

    fn to_wire(self) -> v1::Transition {
        match self {
            Transition::Drifted => v1::Transition::Drifted,
            Transition::Changed => v1::Transition::Changed,
            Transition::Resolved => v1::Transition::Resolved,
        }
    }

    /// From the wire's enum value.
    pub fn from_wire(value: i32) -> Result<Transition, DriftError> {
        match v1::Transition::try_from(value) {
            Ok(v1::Transition::Drifted) => Ok(Transition::Drifted),
            Ok(v1::Transition::Changed) => Ok(Transition::Changed),
            Ok(v1::Transition::Resolved) => Ok(Transition::Resolved),
            _ => Err(DriftError::Unknown("transition", value)),
        }
    }
}

/// One transition of one item: what the agent spools and sends, and prints as a JSON line
/// when it runs without a collector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    #[serde(rename = "event")]
    pub transition: Transition,
    /// RFC 3339 with milliseconds, UTC.
    pub observed_at: String,
    /// The drift item; for `resolved`, the item that was resolved.
    pub item: DriftItem,
}

impl Event {
    /// The wire form.
    pub fn to_wire(&self) -> v1::Event {
        v1::Event {
            seq: self.seq,
            transition: self.transition.to_wire() as i32,
            observed_at: self.observed_at.clone(),
            item: Some(self.item.to_wire()),
        }
    }
}

impl TryFrom<v1::Event> for Event {
    type Error = DriftError;

    fn try_from(e: v1::Event) -> Result<Event, DriftError> {
        if e.seq == 0 {
            return Err(DriftError::SeqZero);
        }
        Ok(Event {
            seq: e.seq,
            transition: Transition::from_wire(e.transition)?,
            observed_at: e.observed_at,
            item: e.item.ok_or(DriftError::Empty)?.try_into()?,
        })
    }
}

/// Why a message is not a valid drift item or event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriftError {
    #[error("drift item holds neither a file nor a package")]
    Empty,
    #[error("unknown {0} {1}")]
    Unknown(&'static str, i32),
    #[error("drift item path {0:?} is not absolute")]
    RelativePath(String),
    #[error(
        "drift item path {0:?} is not escaped as paths are (`\\xNN` for a byte that is not \
         UTF-8, `\\\\` for a backslash)"
    )]
    PathNotEscaped(String),
    #[error("{side}.sha256 of {len} bytes (a SHA-256 has 32)")]
    Sha256Length { side: &'static str, len: usize },
    #[error("{} item {} {side} facts", kind, if *present { "with" } else { "without" })]
    Facts {
        kind: &'static str,
        side: &'static str,
        present: bool,
    },
    #[error("package drift item without a name")]
    NoPackageName,
    #[error("event with sequence number 0 (numbering starts at 1)")]
    SeqZero,
}

/// The JSON forms of the fields whose JSON differs from their type.
mod json {
    use serde::de::Error as _;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub mod file_kind {
        use super::*;
        use crate::baseline::FileKind;

        pub fn serialize<S: Serializer>(kind: &FileKind, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(kind.as_str())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FileKind, D::Error> {
            let name = String::deserialize(d)?;
            FileKind::from_name(&name)
                .ok_or_else(|| D::Error::custom(format!("unknown file type {name:?}")))
        }
    }

    pub mod octal {
        use super::*;

        pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&format!("{mode:04o}"))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
            let text = String::deserialize(d)?;
            u32::from_str_radix(&text, 8)
                .map_err(|_| D::Error::custom(format!("mode {text:?} is not octal")))
        }
    }

    pub mod hex_digest {
        use super::*;

        pub fn serialize<S: Serializer>(
            digest: &Option<[u8; 32]>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match digest {
                Some(d) => s.serialize_str(&hex::encode(d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else {
                return Ok(None);
            };
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&text, &mut digest)
                .map_err(|_| D::Error::custom(format!("{text:?} is not a hex SHA-256")))?;
            Ok(Some(digest))
        }
    }

    pub mod xattrs {
        use super::*;
        use crate::baseline::Xattr;
        use serde::ser::SerializeMap as _;
        use std::collections::BTreeMap;

        pub fn serialize<S: Serializer>(xattrs: &[Xattr], s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(xattrs.len()))?;
            for x in xattrs {
                map.serialize_entry(&x.name, &text(&x.value))?;
            }
            map.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Xattr>, D::Error> {
            let map = BTreeMap::<String, String>::deserialize(d)?;
            Ok(map
                .into_iter()
                .map(|(name, text)| Xattr {
                    value: value(&text),
                    name,
                })
                .collect())
        }

        /// A value as text when it is printable (without its trailing NUL), else `0x…` hex.
        fn text(value: &[u8]) -> String {
            let trimmed = value.strip_suffix(b"\0").unwrap_or(value);
            match std::str::from_utf8(trimmed) {
                Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
                _ => format!("0x{}", hex::encode(value)),
            }
        }

        /// Inverts [`text`], but for a printable value's trailing NUL, which the text lost.
        fn value(text: &str) -> Vec<u8> {
            text.strip_prefix("0x")
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_else(|| text.as_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests;
