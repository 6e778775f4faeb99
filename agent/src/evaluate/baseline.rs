//! The baseline as the agent evaluates against it: its entries, held compact for the daemon's
//! whole life ([`Entries`]); the rules it was built with ([`baseline_rules`]); the image it
//! describes ([`ImageInfo`]). (Reading and verifying the file is `fsutil::load_baseline`.)
//!
//! A decoded [`Entry`] is 184 bytes plus a heap `PathBuf` (and heap fields for the rare
//! symlink target, xattrs and captured content); with the default rules on a host's `/`
//! (52,000 entries) that was about 13 MB, most of the agent's memory. Here an entry is one
//! fixed-size `Record` (56 bytes) plus its file name and, for a hashed file, its digest; each
//! directory prefix (`/etc/ssh/`) is stored once; the rare fields live in side tables indexed
//! by entry. An [`Entry`] is rebuilt
//! on demand for the path being evaluated.
//!
//! Invariant: entries keep the baseline's canonical order (path bytes), so lookups are binary
//! searches and a directory's subtree is one contiguous range (interleaved with siblings such
//! as `dir-old`, which share its prefix bytes).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use driftwatch_proto::baseline::{Entry, FileKind, LoadedBaseline, Xattr};
use serde::Serialize;

use super::compare::Recorded;
use crate::rules::{Rules, RulesError};

/// A baseline's entries, compact and read-only.
#[derive(Debug, Default)]
pub struct Entries {
    /// Directory prefixes, each once, with their trailing `/` (`/etc/ssh/`).
    prefixes: Vec<u8>,
    prefix_ends: Vec<u32>,
    /// File names (the bytes after the prefix's last `/`), concatenated in entry order.
    names: Vec<u8>,
    records: Vec<Record>,
    /// Content digests, for the entries that have one (most regular files).
    digests: Vec<[u8; 32]>,
    targets: Sparse,
    contents: Sparse,
    xattrs: Vec<(u32, Vec<Xattr>)>,
    rdevs: Vec<(u32, u64)>,
}

/// The fixed-size part of an entry.
#[derive(Clone, Copy, Debug)]
struct Record {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    uid: u32,
    gid: u32,
    /// Index into `prefix_ends`.
    prefix: u32,
    /// End of the name in `names` (it starts where the previous entry's ends).
    name_end: u32,
    /// Index into `digests`, or [`NO_DIGEST`].
    digest: u32,
    /// Permission bits (`mode & 0o7777`, see [`Entry::mode`]).
    mode: u16,
    kind: FileKind,
}

const NO_DIGEST: u32 = u32::MAX;

/// Byte strings for a few entries: `rows` holds (entry index, end offset in `bytes`), sorted
/// by entry index.
#[derive(Debug, Default)]
struct Sparse {
    rows: Vec<(u32, usize)>,
    bytes: Vec<u8>,
}

impl Sparse {
    fn push(&mut self, index: u32, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.rows.push((index, self.bytes.len()));
    }

    fn get(&self, index: u32) -> Option<&[u8]> {
        let row = self.rows.binary_search_by_key(&index, |r| r.0).ok()?;
        let start = if row == 0 { 0 } else { self.rows[row - 1].1 };
        Some(&self.bytes[start..self.rows[row].1])
    }

    fn heap_bytes(&self) -> usize {
        self.rows.capacity() * size_of::<(u32, usize)>() + self.bytes.capacity()
    }

    fn shrink_to_fit(&mut self) {
        self.rows.shrink_to_fit();
        self.bytes.shrink_to_fit();
    }
}

fn small(n: usize) -> u32 {
    // Everything here is bounded by the baseline's payload (at most 4 GiB, see
    // `driftwatch_proto::baseline::MAX_PAYLOAD_BYTES`), which also holds per-entry framing.
    u32::try_from(n).expect("a baseline's entries and names fit in u32")
}

/// Splits an absolute path after its last `/`: `/etc/ssh/sshd_config` → (`/etc/ssh/`,
/// `sshd_config`); `/` → (`/`, ``).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.split_at(i + 1),
        None => (&[], path),
    }
}

impl Entries {
    /// Compacts entries given in the baseline's canonical order (see
    /// `Baseline::normalize`).
    pub fn new(entries: Vec<Entry>) -> Entries {
        let mut out = Entries {
            records: Vec::with_capacity(entries.len()),
            ..Entries::default()
        };
        let mut prefix_ids: HashMap<Vec<u8>, u32> = HashMap::new();
        for (i, e) in entries.into_iter().enumerate() {
            let i = small(i);
            let (prefix, name) = split(e.path.as_os_str().as_bytes());
            let prefix = match prefix_ids.get(prefix) {
                Some(&id) => id,
                None => {
                    let id = small(out.prefix_ends.len());
                    out.prefixes.extend_from_slice(prefix);
                    out.prefix_ends.push(small(out.prefixes.len()));
                    prefix_ids.insert(prefix.to_vec(), id);
                    id
                }
            };
            out.names.extend_from_slice(name);
            let digest = match e.sha256 {
                Some(d) => {
                    out.digests.push(d);
                    small(out.digests.len() - 1)
                }
                None => NO_DIGEST,
            };
            out.records.push(Record {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                inode: e.inode,
                uid: e.uid,
                gid: e.gid,
                prefix,
                name_end: small(out.names.len()),
                digest,
                mode: (e.mode & 0o7777) as u16,
                kind: e.kind,
            });
            if let Some(target) = &e.target {
                out.targets.push(i, target.as_os_str().as_bytes());
            }
            if let Some(content) = &e.content {
                out.contents.push(i, content);
            }
            if !e.xattrs.is_empty() {
                out.xattrs.push((i, e.xattrs));
            }
            if e.rdev != 0 {
                out.rdevs.push((i, e.rdev));
            }
        }
        out.prefixes.shrink_to_fit();
        out.prefix_ends.shrink_to_fit();
        out.names.shrink_to_fit();
        out.records.shrink_to_fit();
        out.digests.shrink_to_fit();
        out.targets.shrink_to_fit();
        out.contents.shrink_to_fit();
        out.xattrs.shrink_to_fit();
        out.rdevs.shrink_to_fit();
        out
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Heap bytes held (what the entries cost the daemon).
    pub fn heap_bytes(&self) -> usize {
        self.prefixes.capacity()
            + self.prefix_ends.capacity() * size_of::<u32>()
            + self.names.capacity()
            + self.records.capacity() * size_of::<Record>()
            + self.digests.capacity() * size_of::<[u8; 32]>()
            + self.targets.heap_bytes()
            + self.contents.heap_bytes()
            + self.xattrs.capacity() * size_of::<(u32, Vec<Xattr>)>()
            + (self.xattrs.iter())
                .flat_map(|x| &x.1)
                .map(|x| x.name.capacity() + x.value.capacity())
                .sum::<usize>()
            + self.rdevs.capacity() * size_of::<(u32, u64)>()
    }

    /// Entry `i`'s path as its prefix and name bytes.
    fn parts(&self, i: usize) -> (&[u8], &[u8]) {
        let r = &self.records[i];
        let p = r.prefix as usize;
        let p_start = if p == 0 {
            0
        } else {
            self.prefix_ends[p - 1] as usize
        };
        let n_start = if i == 0 {
            0
        } else {
            self.records[i - 1].name_end as usize
        };
        (
            &self.prefixes[p_start..self.prefix_ends[p] as usize],
            &self.names[n_start..r.name_end as usize],
        )
    }

    /// Entry `i`'s path.
    pub fn path(&self, i: usize) -> PathBuf {
        let (prefix, name) = self.parts(i);
        let mut bytes = Vec::with_capacity(prefix.len() + name.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(name);
        PathBuf::from(OsStr::from_bytes(&bytes))
    }

    /// Compares entry `i`'s path bytes with `key`, without building the path.
    fn cmp_path(&self, i: usize, key: &[u8]) -> Ordering {
        let (prefix, name) = self.parts(i);
        let n = prefix.len().min(key.len());
        match prefix[..n].cmp(&key[..n]) {
            Ordering::Equal if prefix.len() > key.len() => Ordering::Greater,
            Ordering::Equal => name.cmp(&key[prefix.len()..]),
            other => other,
        }
    }

    /// The index of `path`'s entry.
    pub fn find(&self, path: &Path) -> Option<usize> {
        let key = path.as_os_str().as_bytes();
        let i = self.partition_point(key);
        (i < self.len() && self.cmp_path(i, key) == Ordering::Equal).then_some(i)
    }

    /// The first entry whose path is not below `key` in byte order.
    fn partition_point(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cmp_path(mid, key) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Paths of the entries at or below `dir`.
    pub fn paths_under<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = PathBuf> + 'a {
        let key = dir.as_os_str().as_bytes();
        let start = self.partition_point(key);
        (start..self.len())
            .map(|i| self.path(i))
            .take_while(move |p| p.as_os_str().as_bytes().starts_with(key))
            .filter(move |p| p.starts_with(dir))
    }

    /// Entry `i`, rebuilt.
    pub fn entry(&self, i: usize) -> Entry {
        let r = &self.records[i];
        let index = small(i);
        Entry {
            path: self.path(i),
            kind: r.kind,
            mode: u32::from(r.mode),
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            sha256: (r.digest != NO_DIGEST).then(|| self.digests[r.digest as usize]),
            target: self
                .targets
                .get(index)
                .map(|t| PathBuf::from(OsStr::from_bytes(t))),
            xattrs: self
                .xattrs
                .binary_search_by_key(&index, |x| x.0)
                .map(|row| self.xattrs[row].1.clone())
                .unwrap_or_default(),
            content: self.contents.get(index).map(<[u8]>::to_vec),
            mtime_ns: r.mtime_ns,
            ctime_ns: r.ctime_ns,
            inode: r.inode,
            rdev: self
                .rdevs
                .binary_search_by_key(&index, |x| x.0)
                .map(|row| self.rdevs[row].1)
                .unwrap_or(0),
        }
    }

    /// The entry for `path`, rebuilt.
    pub fn get(&self, path: &Path) -> Option<Entry> {
        self.find(path).map(|i| self.entry(i))
    }
}

impl Recorded for Entries {
    fn count(&self) -> usize {
        self.len()
    }

    fn find(&self, path: &Path) -> Option<usize> {
        Entries::find(self, path)
    }

    fn path(&self, i: usize) -> Cow<'_, Path> {
        Cow::Owned(Entries::path(self, i))
    }

    fn entry(&self, i: usize) -> Cow<'_, Entry> {
        Cow::Owned(Entries::entry(self, i))
    }
}

/// The rules inside a baseline are invalid.
#[derive(Debug, thiserror::Error)]
#[error("the rules inside baseline {id} are invalid: {source}")]
pub struct BaselineRulesError {
    pub id: String,
    pub source: RulesError,
}

/// The rules a baseline was built with.
pub fn baseline_rules(loaded: &LoadedBaseline) -> Result<Rules, BaselineRulesError> {
    let id = loaded.id.to_hex();
    Rules::parse(
        &loaded.baseline.header.rules_toml,
        &format!("<rules in baseline {}>", &id[..12]),
    )
    .map_err(|source| BaselineRulesError { id, source })
}

/// Which image a baseline describes.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub version: String,
    /// RFC 3339.
    pub built_at: String,
    pub builder_host: String,
    pub signed_by: Option<String>,
}

impl ImageInfo {
    pub fn of(loaded: &LoadedBaseline) -> ImageInfo {
        let h = &loaded.baseline.header;
        ImageInfo {
            name: h.image_name.clone(),
            version: h.image_version.clone(),
            built_at: rfc3339(h.created_unix),
            builder_host: h.builder_host.clone(),
            signed_by: loaded
                .signer
                .as_ref()
                .map(driftwatch_proto::keys::fingerprint),
        }
    }
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            target: None,
            xattrs: vec![],
            content: None,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            rdev: 0,
        }
    }

    fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
        crate::scan::sort_entries(&mut entries);
        entries.dedup_by(|a, b| a.path == b.path);
        entries
    }

    #[test]
    fn every_field_survives() {
        let mut a = entry("/etc/ssh/sshd_config");
        a.sha256 = Some([7; 32]);
        a.content = Some(b"Port 22\n".to_vec());
        a.xattrs = vec![Xattr {
            name: "user.x".into(),
            value: b"1".to_vec(),
        }];
        (a.mode, a.uid, a.gid, a.size) = (0o4755, 1, 2, 8);
        (a.mtime_ns, a.ctime_ns, a.inode) = (-5, 6, 7);
        let mut l = entry("/etc/ssh/link");
        (l.kind, l.target) = (FileKind::Symlink, Some("/etc/other".into()));
        let mut d = entry("/dev/null");
        (d.kind, d.rdev) = (FileKind::CharDevice, 0x103);
        let mut empty = entry("/etc/empty");
        (empty.content, empty.sha256) = (Some(vec![]), Some([0; 32]));
        let all = sorted(vec![entry("/"), a, l, d, empty, entry("/etc")]);
        let compact = Entries::new(all.clone());
        assert_eq!(compact.len(), all.len());
        for (i, e) in all.iter().enumerate() {
            assert_eq!(compact.entry(i), *e);
            assert_eq!(compact.get(&e.path).as_ref(), Some(e));
        }
        assert_eq!(compact.get(Path::new("/etc/ssh")), None);
        assert_eq!(compact.get(Path::new("/etc/ssh/sshd_config2")), None);
        assert_eq!(compact.get(Path::new("/zzz")), None);
    }

    #[test]
    fn subtree_in_byte_order() {
        // Byte order: "/etc/a" < "/etc/a-b" < "/etc/a/x" < "/etc/ab".
        let all = sorted(
            [
                "/etc/a", "/etc/a-b", "/etc/a/x", "/etc/a/y", "/etc/ab", "/etc/b",
            ]
            .into_iter()
            .map(entry)
            .collect(),
        );
        let compact = Entries::new(all);
        let got: Vec<_> = compact
            .paths_under(Path::new("/etc/a"))
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(got, ["/etc/a", "/etc/a/x", "/etc/a/y"]);
        assert_eq!(compact.paths_under(Path::new("/etc/c")).count(), 0);
        assert_eq!(compact.paths_under(Path::new("/")).count(), 6);
    }

    proptest! {
        #[test]
        fn lookups_match_the_plain_baseline(
            paths in proptest::collection::vec("/|/[a-c]{1,2}(/[a-c-]{1,3}){0,3}", 0..40),
            probes in proptest::collection::vec("/|/[a-c]{1,2}(/[a-c-]{1,3}){0,3}", 0..20),
        ) {
            let all = sorted(paths.iter().map(|p| entry(p)).collect());
            let compact = Entries::new(all.clone());
            for (i, e) in all.iter().enumerate() {
                prop_assert_eq!(compact.path(i), e.path.clone());
                prop_assert_eq!(compact.find(&e.path), Some(i));
            }
            for p in probes.iter().chain(&paths) {
                let p = Path::new(p);
                let plain = all.iter().position(|e| e.path.as_os_str() == p.as_os_str());
                prop_assert_eq!(compact.find(p), plain);
                let under: Vec<PathBuf> = compact.paths_under(p).collect();
                let expected: Vec<PathBuf> =
                    all.iter().filter(|e| e.path.starts_with(p)).map(|e| e.path.clone()).collect();
                prop_assert_eq!(under, expected);
            }
        }
    }
}
