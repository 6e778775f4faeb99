//! The baseline file.
//!
//! # On-disk format (version 1)
//!
//! ```text
//! "DWBASE1\n"            8 bytes of magic: refuses non-baseline files early
//! length                 u64 little-endian: the envelope's length (detects truncation)
//! Envelope (protobuf)    format_version, payload_sha256, payload (zstd), signature?
//! ```
//!
//! The payload is the protobuf encoding of `driftwatch.baseline.v1.Baseline`, compressed with
//! zstd. The **baseline id** is the SHA-256 of the uncompressed payload: two files with the
//! same content have the same id whatever the compression level. The optional ed25519
//! signature covers `"driftwatch-baseline-v1\0" || id`, so it binds the whole content.
//!
//! # Invariants checked on every read
//! - the file is at most [`MAX_FILE_BYTES`], and its magic and announced length are checked
//!   ([`check_header`]) before a reader reads the rest;
//! - magic and format version are known;
//! - the payload decompresses (bounded, see [`MAX_PAYLOAD_BYTES`]) and hashes to
//!   `payload_sha256` (a truncated or edited file is refused, never half-read);
//! - a present signature verifies against the key it names;
//! - entries are sorted by path bytes without duplicates, digests are 32 bytes.

use std::fmt;
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::pb::baseline as pb;

/// The first bytes of every baseline file.
pub const MAGIC: &[u8; 8] = b"DWBASE1\n";
/// The baseline format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Upper bound on the decompressed payload, so a hostile file cannot exhaust memory.
pub const MAX_PAYLOAD_BYTES: u64 = 4 << 30;
/// Upper bound on a baseline file: its header is checked and its size compared with this
/// before it is read whole. 200,000 files make a 7.7 MiB baseline (`docs/BENCHMARKS.md`);
/// 1 GiB leaves room for images far larger while bounding what a wrong path (`/dev/zero`, a
/// disk image) costs.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The magic bytes and the envelope length that start every baseline file.
pub const HEADER_LEN: usize = MAGIC.len() + 8;
const SIGNATURE_CONTEXT: &[u8] = b"driftwatch-baseline-v1\0";
const ZSTD_LEVEL: i32 = 9;

/// Why a baseline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a driftwatch baseline file (bad magic bytes)")]
    NotABaseline,
    #[error(
        "baseline format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("baseline file is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error(
        "baseline content does not match its recorded id (expected {expected}, computed {computed}): the file was modified or damaged"
    )]
    IdMismatch { expected: String, computed: String },
    #[error("baseline signature does not verify: the file was modified after signing")]
    BadSignature,
    #[error("baseline is not signed, but a public key was given to verify it")]
    Unsigned,
    #[error("baseline is signed by key {found}, not by the trusted key {expected}")]
    WrongSigner { expected: String, found: String },
    #[error("baseline content is invalid: {0}")]
    Invalid(String),
}

/// The SHA-256 of a baseline's uncompressed payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BaselineId(pub [u8; 32]);

impl BaselineId {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BaselineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BaselineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaselineId({self})")
    }
}

/// A file's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Regular => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "char_device",
            FileKind::BlockDevice => "block_device",
        }
    }

    /// Inverts [`FileKind::as_str`].
    pub fn from_name(name: &str) -> Option<FileKind> {
        Some(match name {
            "file" => FileKind::Regular,
            "directory" => FileKind::Directory,
            "symlink" => FileKind::Symlink,
            "fifo" => FileKind::Fifo,
            "socket" => FileKind::Socket,
            "char_device" => FileKind::CharDevice,
            "block_device" => FileKind::BlockDevice,
            _ => return None,
        })
    }

    pub(crate) fn to_pb(self) -> pb::FileType {
        match self {
            FileKind::Regular => pb::FileType::Regular,
            FileKind::Directory => pb::FileType::Directory,
            FileKind::Symlink => pb::FileType::Symlink,
            FileKind::Fifo => pb::FileType::Fifo,
            FileKind::Socket => pb::FileType::Socket,
            FileKind::CharDevice => pb::FileType::CharDevice,
            FileKind::BlockDevice => pb::FileType::BlockDevice,
        }
    }

    pub(crate) fn from_pb(value: i32) -> Option<Self> {
        Some(match pb::FileType::try_from(value).ok()? {
            pb::FileType::Unspecified => return None,
            pb::FileType::Regular => FileKind::Regular,
            pb::FileType::Directory => FileKind::Directory,
            pb::FileType::Symlink => FileKind::Symlink,
            pb::FileType::Fifo => FileKind::Fifo,
            pb::FileType::Socket => FileKind::Socket,
            pb::FileType::CharDevice => FileKind::CharDevice,
            pb::FileType::BlockDevice => FileKind::BlockDevice,
        })
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub name: String,
    pub value: Vec<u8>,
}

impl From<&Xattr> for pb::Xattr {
    fn from(x: &Xattr) -> pb::Xattr {
        pb::Xattr {
            name: x.name.clone(),
            value: x.value.clone(),
        }
    }
}

impl From<pb::Xattr> for Xattr {
    fn from(x: pb::Xattr) -> Xattr {
        Xattr {
            name: x.name,
            value: x.value,
        }
    }
}

/// What the baseline knows about one path. The same type describes a live file, so a check
/// compares two `Entry`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path inside the scanned root.
    pub path: PathBuf,
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Regular files: the content's SHA-256; `None` when the file could not be read.
    pub sha256: Option<[u8; 32]>,
    /// Symlinks: the target, never followed.
    pub target: Option<PathBuf>,
    /// Sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Captured content of small, non-secret text files.
    pub content: Option<Vec<u8>>,
    /// Fast-path hints: when these match the live file, its recorded hash is trusted.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub rdev: u64,
}

/// An installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// The database it came from: `dpkg`, `rpm` or `apk`.
    pub source: String,
}

/// Who built the baseline, when, for which image, with which rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub created_unix: i64,
    pub builder_host: String,
    pub image_name: String,
    pub image_version: String,
    pub rules_toml: String,
    pub agent_version: String,
    pub package_sources: Vec<String>,
    pub scanned_root: PathBuf,
}

/// A whole baseline: header, entries sorted by path, packages sorted by (name, arch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    pub header: Header,
    pub entries: Vec<Entry>,
    pub packages: Vec<Package>,
}

impl Baseline {
    /// Sorts entries and packages into their canonical order.
    pub fn normalize(&mut self) {
        self.entries.sort_unstable_by(|a, b| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        });
        self.entries.dedup_by(|a, b| a.path == b.path);
        self.packages.sort();
        self.packages.dedup();
    }

    /// Finds the entry for `path` (binary search; entries are sorted).
    pub fn entry(&self, path: &Path) -> Option<&Entry> {
        let key = path.as_os_str().as_bytes();
        self.entries
            .binary_search_by(|e| e.path.as_os_str().as_bytes().cmp(key))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// A baseline read from a file, with its id and signer.
#[derive(Clone, Debug)]
pub struct LoadedBaseline {
    pub id: BaselineId,
    pub baseline: Baseline,
    /// The key that signed it (the signature was checked against it), if signed.
    pub signer: Option<VerifyingKey>,
    /// Size of the file on disk, bytes.
    pub file_size: u64,
}

impl LoadedBaseline {
    /// Checks that the baseline was signed by `trusted`.
    pub fn verify_signer(&self, trusted: &VerifyingKey) -> Result<(), FormatError> {
        match &self.signer {
            None => Err(FormatError::Unsigned),
            Some(key) if key == trusted => Ok(()),
            Some(key) => Err(FormatError::WrongSigner {
                expected: crate::keys::fingerprint(trusted),
                found: crate::keys::fingerprint(key),
            }),
        }
    }
}

/// Encodes a baseline into file bytes, signing it when a key is given. Returns the bytes and
/// the baseline id. The baseline must be normalized (see [`Baseline::normalize`]).
pub fn encode(baseline: &Baseline, signing_key: Option<&SigningKey>) -> (Vec<u8>, BaselineId) {
    let payload = encode_payload(baseline);
    let id = BaselineId(Sha256::digest(&payload).into());
    let compressed = zstd::bulk::compress(&payload, ZSTD_LEVEL)
        .expect("zstd compression of an in-memory buffer cannot fail");
    let signature = signing_key.map(|key| pb::Signature {
        public_key: key.verifying_key().to_bytes().to_vec(),
        signature: key.sign(&signed_message(&id)).to_bytes().to_vec(),
    });
    let envelope = pb::Envelope {
        format_version: FORMAT_VERSION,
        payload_sha256: id.0.to_vec(),
        payload: compressed,
        signature,
    };
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + envelope.encoded_len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(envelope.encoded_len() as u64).to_le_bytes());
    envelope.encode(&mut out).expect("Vec has capacity");
    (out, id)
}

/// Checks a baseline file's first bytes (up to [`HEADER_LEN`]) against the size of the whole
/// file, before anything else is read: the magic, and an envelope length that matches the file
/// and stays under [`MAX_FILE_BYTES`].
pub fn check_header(head: &[u8], file_len: u64) -> Result<(), FormatError> {
    let body = head.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        if head.len() < MAGIC.len() && MAGIC.starts_with(head) {
            FormatError::Corrupt("file ends inside the magic bytes".into())
        } else if head.starts_with(b"DWBASE") {
            let found = head.get(6).map_or(0, |b| u32::from(b.wrapping_sub(b'0')));
            FormatError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            }
        } else {
            FormatError::NotABaseline
        }
    })?;
    let (length, _) = body
        .split_first_chunk::<8>()
        .ok_or_else(|| FormatError::Corrupt("file ends inside the header".into()))?;
    let length = u64::from_le_bytes(*length);
    let held = file_len.saturating_sub(HEADER_LEN as u64);
    if length != held {
        return Err(FormatError::Corrupt(format!(
            "header announces {length} bytes of content, the file holds {held} (truncated or appended to)"
        )));
    }
    if file_len > MAX_FILE_BYTES {
        return Err(FormatError::Corrupt(format!(
            "the file is {file_len} bytes, over the {MAX_FILE_BYTES}-byte limit"
        )));
    }
    Ok(())
}

/// Decodes and checks a baseline file's bytes (see the module docs for what is checked).
pub fn decode(bytes: &[u8]) -> Result<LoadedBaseline, FormatError> {
    check_header(&bytes[..bytes.len().min(HEADER_LEN)], bytes.len() as u64)?;
    let body = &bytes[HEADER_LEN..];
    let envelope =
        pb::Envelope::decode(body).map_err(|e| FormatError::Corrupt(format!("envelope: {e}")))?;
    if envelope.format_version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: envelope.format_version,
            supported: FORMAT_VERSION,
        });
    }
    let expected: [u8; 32] = envelope
        .payload_sha256
        .as_slice()
        .try_into()
        .map_err(|_| FormatError::Corrupt("payload digest is not 32 bytes".into()))?;
    let mut payload = Vec::new();
    zstd::stream::read::Decoder::new(envelope.payload.as_slice())
        .map_err(|e| FormatError::Corrupt(format!("zstd: {e}")))?
        .take(MAX_PAYLOAD_BYTES + 1)
        .read_to_end(&mut payload)
        .map_err(|e| FormatError::Corrupt(format!("zstd: {e}")))?;
    if payload.len() as u64 > MAX_PAYLOAD_BYTES {
        return Err(FormatError::Corrupt(format!(
            "payload is larger than {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    let id = BaselineId(Sha256::digest(&payload).into());
    if id.0 != expected {
        return Err(FormatError::IdMismatch {
            expected: hex::encode(expected),
            computed: id.to_hex(),
        });
    }
    let signer = match envelope.signature {
        None => None,
        Some(sig) => {
            let key = <[u8; 32]>::try_from(sig.public_key.as_slice())
                .ok()
                .and_then(|k| VerifyingKey::from_bytes(&k).ok())
                .ok_or(FormatError::BadSignature)?;
            let signature = ed25519_dalek::Signature::from_slice(&sig.signature)
                .map_err(|_| FormatError::BadSignature)?;
            key.verify_strict(&signed_message(&id), &signature)
                .map_err(|_| FormatError::BadSignature)?;
            Some(key)
        }
    };
    let baseline = decode_payload(&payload)?;
    drop(payload);
    Ok(LoadedBaseline {
        id,
        baseline,
        signer,
        file_size: bytes.len() as u64,
    })
}

fn signed_message(id: &BaselineId) -> Vec<u8> {
    [SIGNATURE_CONTEXT, &id.0].concat()
}

// Protobuf keys of `Baseline`'s fields (field number << 3 | wire type 2, length-delimited).
const KEY_HEADER: u8 = 1 << 3 | 2;
const KEY_ENTRY: u8 = 2 << 3 | 2;
const KEY_PACKAGE: u8 = 3 << 3 | 2;

/// Encodes `Baseline` one entry at a time: the bytes are exactly what encoding a whole
/// `pb::Baseline` would give, without ever holding a second copy of every entry.
fn encode_payload(b: &Baseline) -> Vec<u8> {
    let h = &b.header;
    let header = pb::Header {
        format_version: FORMAT_VERSION,
        created_unix: h.created_unix,
        builder_host: h.builder_host.clone(),
        image_name: h.image_name.clone(),
        image_version: h.image_version.clone(),
        rules_toml: h.rules_toml.clone(),
        agent_version: h.agent_version.clone(),
        package_sources: h.package_sources.clone(),
        scanned_root: h.scanned_root.as_os_str().as_bytes().to_vec(),
    };
    let mut out = Vec::with_capacity(b.entries.len() * 128 + 4096);
    let mut field = |key: u8, message: &dyn Fn(&mut Vec<u8>)| {
        out.push(key);
        message(&mut out);
    };
    field(KEY_HEADER, &|out| {
        header.encode_length_delimited(out).expect("Vec grows")
    });
    for e in &b.entries {
        field(KEY_ENTRY, &|out| {
            entry_to_pb(e)
                .encode_length_delimited(out)
                .expect("Vec grows")
        });
    }
    for p in &b.packages {
        let package = pb::Package {
            name: p.name.clone(),
            version: p.version.clone(),
            arch: p.arch.clone(),
            source: p.source.clone(),
        };
        field(KEY_PACKAGE, &|out| {
            package.encode_length_delimited(out).expect("Vec grows")
        });
    }
    out
}

/// Decodes the payload one field at a time (the counterpart of [`encode_payload`]).
fn decode_payload(mut buf: &[u8]) -> Result<Baseline, FormatError> {
    let corrupt =
        |what: &str, e: prost::DecodeError| FormatError::Corrupt(format!("payload {what}: {e}"));
    let mut header = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut packages = Vec::new();
    while let Some((&key, rest)) = buf.split_first() {
        buf = rest;
        let len =
            prost::decode_length_delimiter(&mut buf).map_err(|e| corrupt("field length", e))?;
        if len > buf.len() {
            return Err(FormatError::Corrupt(
                "payload field runs past the end".into(),
            ));
        }
        let (body, rest) = buf.split_at(len);
        buf = rest;
        match key {
            KEY_HEADER => {
                header = Some(pb::Header::decode(body).map_err(|e| corrupt("header", e))?)
            }
            KEY_ENTRY => {
                let entry =
                    entry_from_pb(pb::Entry::decode(body).map_err(|e| corrupt("entry", e))?)?;
                if let Some(prev) = entries.last()
                    && prev.path.as_os_str().as_bytes() >= entry.path.as_os_str().as_bytes()
                {
                    return Err(FormatError::Invalid(format!(
                        "entries not sorted or duplicated at {}",
                        crate::text::display_path(&entry.path)
                    )));
                }
                entries.push(entry);
            }
            KEY_PACKAGE => {
                let p = pb::Package::decode(body).map_err(|e| corrupt("package", e))?;
                packages.push(Package {
                    name: p.name,
                    arch: p.arch,
                    version: p.version,
                    source: p.source,
                });
            }
            other => {
                return Err(FormatError::Corrupt(format!(
                    "unexpected payload field key {other:#04x}"
                )));
            }
        }
    }
    let h = header.ok_or_else(|| FormatError::Invalid("missing header".into()))?;
    if h.format_version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: h.format_version,
            supported: FORMAT_VERSION,
        });
    }
    let header = Header {
        created_unix: h.created_unix,
        builder_host: h.builder_host,
        image_name: h.image_name,
        image_version: h.image_version,
        rules_toml: h.rules_toml,
        agent_version: h.agent_version,
        package_sources: h.package_sources,
        scanned_root: PathBuf::from(std::ffi::OsString::from_vec(h.scanned_root)),
    };
    entries.shrink_to_fit();
    Ok(Baseline {
        header,
        entries,
        packages,
    })
}

fn entry_to_pb(e: &Entry) -> pb::Entry {
    pb::Entry {
        path: e.path.as_os_str().as_bytes().to_vec(),
        r#type: e.kind.to_pb() as i32,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        sha256: e.sha256.map(|d| d.to_vec()).unwrap_or_default(),
        symlink_target: e
            .target
            .as_ref()
            .map(|t| t.as_os_str().as_bytes().to_vec())
            .unwrap_or_default(),
        xattrs: e.xattrs.iter().map(pb::Xattr::from).collect(),
        content: e.content.clone(),
        mtime_ns: e.mtime_ns,
        ctime_ns: e.ctime_ns,
        inode: e.inode,
        rdev: e.rdev,
    }
}

fn entry_from_pb(e: pb::Entry) -> Result<Entry, FormatError> {
    let path = PathBuf::from(std::ffi::OsString::from_vec(e.path));
    let shown = || crate::text::display_path(&path);
    if !path.is_absolute() {
        return Err(FormatError::Invalid(format!(
            "entry path {} is not absolute",
            shown()
        )));
    }
    let kind = FileKind::from_pb(e.r#type).ok_or_else(|| {
        FormatError::Invalid(format!("entry {} has unknown type {}", shown(), e.r#type))
    })?;
    let sha256 = match e.sha256.len() {
        0 => None,
        32 => Some(<[u8; 32]>::try_from(e.sha256.as_slice()).expect("length checked")),
        n => {
            return Err(FormatError::Invalid(format!(
                "entry {} has a {n}-byte digest",
                shown()
            )));
        }
    };
    let target = (kind == FileKind::Symlink)
        .then(|| PathBuf::from(std::ffi::OsString::from_vec(e.symlink_target)));
    Ok(Entry {
        kind,
        mode: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        sha256,
        target,
        xattrs: e.xattrs.into_iter().map(Xattr::from).collect(),
        content: e.content,
        mtime_ns: e.mtime_ns,
        ctime_ns: e.ctime_ns,
        inode: e.inode,
        rdev: e.rdev,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Baseline {
        let mut b = Baseline {
            header: Header {
                created_unix: 1_700_000_000,
                builder_host: "builder".into(),
                image_name: "web".into(),
                image_version: "1".into(),
                rules_toml: "version = 1\n".into(),
                agent_version: "0.1.0".into(),
                package_sources: vec!["dpkg".into()],
                scanned_root: "/".into(),
            },
            entries: vec![Entry {
                path: "/etc/passwd".into(),
                kind: FileKind::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 5,
                sha256: Some([7; 32]),
                target: None,
                xattrs: vec![],
                content: Some(b"root\n".to_vec()),
                mtime_ns: 1,
                ctime_ns: 2,
                inode: 3,
                rdev: 0,
            }],
            packages: vec![Package {
                name: "bash".into(),
                arch: "amd64".into(),
                version: "5.2".into(),
                source: "dpkg".into(),
            }],
        };
        b.normalize();
        b
    }

    fn frame(envelope: &pb::Envelope) -> Vec<u8> {
        let body = envelope.encode_to_vec();
        let mut bytes = MAGIC.to_vec();
        bytes.extend((body.len() as u64).to_le_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn streamed_payload_is_plain_protobuf() {
        let b = sample();
        let streamed = encode_payload(&b);
        let decoded = pb::Baseline::decode(streamed.as_slice()).unwrap();
        assert_eq!(decoded.entries.len(), 1);
        assert_eq!(decoded.encode_to_vec(), streamed);
    }

    #[test]
    fn round_trip_signed() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let (bytes, id) = encode(&sample(), Some(&key));
        let loaded = decode(&bytes).unwrap();
        assert_eq!(loaded.id, id);
        assert_eq!(loaded.baseline, sample());
        loaded.verify_signer(&key.verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(
            loaded.verify_signer(&other),
            Err(FormatError::WrongSigner { .. })
        ));
    }

    #[test]
    fn unsigned_baseline_fails_verification() {
        let (bytes, _) = encode(&sample(), None);
        let loaded = decode(&bytes).unwrap();
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(matches!(
            loaded.verify_signer(&key),
            Err(FormatError::Unsigned)
        ));
    }

    #[test]
    fn every_truncation_is_refused() {
        let (bytes, _) = encode(&sample(), Some(&SigningKey::from_bytes(&[1; 32])));
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncated at {len} was accepted"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_refused_or_harmless() {
        // A flipped byte must never yield a *different* baseline under the same id.
        let (bytes, id) = encode(&sample(), None);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            if let Ok(loaded) = decode(&bad) {
                assert_eq!(loaded.id, id);
                assert_eq!(loaded.baseline, sample(), "flip at {i} changed the content");
            }
        }
    }

    #[test]
    fn tampered_signed_payload_is_refused() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut b = sample();
        let (signed, _) = encode(&b, Some(&key));
        // Re-encode modified content but splice in the original signature.
        b.entries[0].mode = 0o4755;
        let (unsigned, _) = encode(&b, None);
        let orig = pb::Envelope::decode(&signed[MAGIC.len() + 8..]).unwrap();
        let mut forged = pb::Envelope::decode(&unsigned[MAGIC.len() + 8..]).unwrap();
        forged.signature = orig.signature;
        let bytes = frame(&forged);
        assert!(matches!(decode(&bytes), Err(FormatError::BadSignature)));
    }

    #[test]
    fn unknown_version_is_refused() {
        let (bytes, _) = encode(&sample(), None);
        let mut env = pb::Envelope::decode(&bytes[MAGIC.len() + 8..]).unwrap();
        env.format_version = 99;
        let bad = frame(&env);
        assert!(matches!(
            decode(&bad),
            Err(FormatError::UnsupportedVersion { found: 99, .. })
        ));
        let mut future = bytes.clone();
        future[6] = b'2';
        assert!(matches!(
            decode(&future),
            Err(FormatError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(
            decode(b"hello world, not a baseline"),
            Err(FormatError::NotABaseline)
        ));
    }

    fn arb_kind() -> impl Strategy<Value = FileKind> {
        prop_oneof![
            Just(FileKind::Regular),
            Just(FileKind::Directory),
            Just(FileKind::Symlink),
            Just(FileKind::Fifo),
            Just(FileKind::Socket),
            Just(FileKind::CharDevice),
            Just(FileKind::BlockDevice),
        ]
    }

    prop_compose! {
        fn arb_entry()(
            name in proptest::collection::vec(any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'), 1..24),
            kind in arb_kind(),
            mode in 0u32..0o7777,
            uid in any::<u32>(), gid in any::<u32>(), size in any::<u64>(),
            sha in proptest::option::of(any::<[u8; 32]>()),
            target in proptest::collection::vec(1u8..=255, 0..40),
            xattrs in proptest::collection::vec(("[a-z.]{1,12}", proptest::collection::vec(any::<u8>(), 0..16)), 0..3),
            content in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            mtime in any::<i64>(), ctime in any::<i64>(), inode in any::<u64>(), rdev in any::<u64>(),
        ) -> Entry {
            let mut path = b"/".to_vec();
            path.extend(name);
            let mut xattrs: Vec<Xattr> = xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect();
            xattrs.sort();
            Entry {
                path: PathBuf::from(std::ffi::OsString::from_vec(path)),
                kind, mode, uid, gid, size,
                sha256: if kind == FileKind::Regular { sha } else { None },
                target: (kind == FileKind::Symlink).then(|| PathBuf::from(std::ffi::OsString::from_vec(target))),
                xattrs, content, mtime_ns: mtime, ctime_ns: ctime, inode, rdev,
            }
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(entries in proptest::collection::vec(arb_entry(), 0..40),
                                     name in ".{0,20}", rules in ".{0,200}") {
            let mut b = sample();
            b.entries = entries;
            b.header.image_name = name;
            b.header.rules_toml = rules;
            b.normalize();
            let (bytes, id) = encode(&b, None);
            let loaded = decode(&bytes).unwrap();
            prop_assert_eq!(loaded.id, id);
            prop_assert_eq!(loaded.baseline, b);
        }
    }
}
