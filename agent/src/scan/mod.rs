//! Walking and hashing a root: turns a filesystem into baseline [`Entry`]s.
//!
//! The walk is single-threaded (`walkdir`, one `lstat` per entry, symlinks never followed,
//! excluded subtrees pruned); hashing regular files runs in parallel on all cores (`rayon`),
//! streaming each file through a fixed buffer, so memory never depends on file sizes.
//!
//! Partial failure is data: an unreadable file, a file that vanished, or one that kept changing
//! while being hashed becomes a [`ScanError`] beside the entries; the scan goes on.
//!
//! Fast path: given a reference (the baseline), a regular file whose type, size, mtime, ctime and
//! inode all match its reference entry keeps the recorded hash, content and xattrs without being
//! opened. Any write or metadata change moves ctime, which userspace cannot set back.
//!
//! This room walks and hashes only; comparing with a baseline is `evaluate`'s
//! (`evaluate::compare`), which drives [`walk`], [`reuse`] and [`hash_all`]. Scan imports
//! neither `evaluate` nor the baseline's compact entries. [`throttle`] keeps background
//! hashing polite.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use driftwatch_proto::baseline::{Entry, FileKind, Xattr};
use driftwatch_proto::text::display_path;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::fsutil::{host_path, root_path};
use crate::rules::Rules;

pub mod throttle;
use throttle::Throttle;

const HASH_BUFFER: usize = 256 * 1024;
const HASH_ATTEMPTS: usize = 3;

/// A path that could not be recorded (fully).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScanError {
    #[serde(serialize_with = "driftwatch_proto::text::path_text::serialize")]
    pub path: PathBuf,
    pub error: String,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.error)
    }
}

/// Counters for the summary line.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScanStats {
    pub entries: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub files_reused: u64,
}

/// A scanned tree: entries sorted by path, and what could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Entry>,
    pub errors: Vec<ScanError>,
    pub stats: ScanStats,
}

/// How to scan.
#[derive(Clone, Copy)]
pub struct ScanOptions<'a> {
    /// The directory that stands for `/`.
    pub root: &'a Path,
    pub rules: &'a Rules,
    /// Comparing with a baseline (evaluate's `compare_with_baseline`): re-hash every regular
    /// file instead of trusting the fast path. ([`scan`] always hashes everything: it builds
    /// baselines.)
    pub full_hash: bool,
    /// Show a progress bar on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
    /// Rate-limits hashing (the daemon's rescans); `None` hashes at full speed.
    pub throttle: Option<&'a Throttle>,
    /// Stops the scan early when set (its result is then incomplete and must be discarded).
    pub cancel: Option<&'a AtomicBool>,
}

impl ScanOptions<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Scans every tree the rules name under the root.
pub fn scan(opts: ScanOptions<'_>) -> Scan {
    let mut out = Scan::default();
    let mut entries = Vec::new();
    walk(opts, &mut out.errors, |entry| entries.push(entry));
    sort_entries(&mut entries);
    entries.dedup_by(|a, b| a.path == b.path);
    out.entries = entries;
    let todo: Vec<&mut Entry> = out
        .entries
        .iter_mut()
        .filter(|e| e.kind == FileKind::Regular)
        .collect();
    let failed = hash_all(opts, todo, &mut out.stats, &mut out.errors);
    if !failed.is_empty() {
        out.entries
            .retain(|e| failed.binary_search(&e.path).is_err());
    }
    out.stats.entries = out.entries.len() as u64;
    out.errors.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Walks every tree the rules name, calling `f` with each entry's metadata (regular files not
/// hashed yet).
pub fn walk(opts: ScanOptions<'_>, errors: &mut Vec<ScanError>, mut f: impl FnMut(Entry)) {
    let spinner = progress_spinner(opts.progress);
    let mut count = 0u64;
    for tree in opts.rules.paths() {
        if opts.rules.is_excluded(tree) {
            continue;
        }
        let start = host_path(opts.root, tree);
        match std::fs::symlink_metadata(&start) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(ScanError {
                    path: tree.clone(),
                    error: io_message(&e),
                });
                continue;
            }
            Ok(_) => {}
        }
        let walk = walkdir::WalkDir::new(&start)
            .follow_links(false)
            .follow_root_links(false)
            .into_iter()
            .filter_entry(|e| !opts.rules.is_excluded(&root_path(opts.root, e.path())));
        for item in walk {
            if opts.cancelled() {
                return;
            }
            match item {
                Ok(dirent) => {
                    let path = root_path(opts.root, dirent.path());
                    match dirent.metadata() {
                        Ok(meta) => f(entry_from_metadata(path, dirent.path(), &meta, errors)),
                        Err(e) => errors.push(walk_error(opts.root, &e, &path)),
                    }
                    count += 1;
                    if count.is_multiple_of(1024) {
                        spinner.set_message(format!("{count} entries"));
                    }
                }
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| root_path(opts.root, p))
                        .unwrap_or_default();
                    errors.push(walk_error(opts.root, &e, &path));
                }
            }
        }
    }
    spinner.finish_and_clear();
}

/// Records one path (not its children). `Ok(None)` when it does not exist.
///
/// A regular file larger than `max_inline` bytes whose metadata does not match `reference`
/// (the fast path) is not hashed here: it comes back without a hash (`sha256: None`, which a
/// successful hash never leaves), for the caller to hash off its own path ([`hash_one`]).
/// `u64::MAX` hashes every file; 0 hashes none (only the fast path's hash is taken).
pub fn scan_one(
    root: &Path,
    rules: &Rules,
    path: &Path,
    reference: Option<&Entry>,
    max_inline: u64,
) -> Result<Option<Entry>, ScanError> {
    let Some((host, mut entry)) = lstat_entry(root, path)? else {
        return Ok(None);
    };
    if entry.kind == FileKind::Regular {
        if reuse(&mut entry, reference) || entry.size > max_inline {
            return Ok(Some(entry));
        }
        let mut buf = vec![0; HASH_BUFFER];
        let capture = rules.captures_content(path, entry.size);
        match hash_file(&host, capture, &mut buf, HashControl::INLINE) {
            Ok(hashed) => {
                apply_hash(&mut entry, hashed);
                entry.xattrs = read_xattrs(&host);
            }
            Err(HashError::Vanished) => return Ok(None),
            Err(e) => {
                return Err(ScanError {
                    path: path.to_path_buf(),
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(Some(entry))
}

/// Hashes the regular file at `path` once, in the background: rate-limited by `throttle`,
/// read in 256 KiB chunks, and stopped between two chunks when `cancel` is set. The
/// entry it returns holds the metadata the hash is of. `Ok(None)`: nothing to report, because
/// the file vanished, is no longer a regular file, changed while it was hashed, or the hash
/// was cancelled; each of these follows a change the caller hears about anyway.
pub fn hash_one(
    root: &Path,
    rules: &Rules,
    path: &Path,
    throttle: Option<&Throttle>,
    cancel: &AtomicBool,
) -> Result<Option<Entry>, ScanError> {
    let Some((host, mut entry)) = lstat_entry(root, path)? else {
        return Ok(None);
    };
    if entry.kind != FileKind::Regular {
        return Ok(None);
    }
    let mut buf = vec![0; HASH_BUFFER];
    let control = HashControl {
        throttle,
        cancel: Some(cancel),
        attempts: 1,
    };
    match hash_file(
        &host,
        rules.captures_content(path, entry.size),
        &mut buf,
        control,
    ) {
        Ok(hashed) if hashed.changing => Ok(None),
        Ok(hashed) => {
            apply_hash(&mut entry, hashed);
            entry.xattrs = read_xattrs(&host);
            Ok(Some(entry))
        }
        Err(HashError::Vanished | HashError::NotRegular | HashError::Cancelled) => Ok(None),
        Err(e) => Err(ScanError {
            path: path.to_path_buf(),
            error: e.to_string(),
        }),
    }
}

/// One path's `lstat` as an entry (a regular file not hashed yet), with its host path;
/// `Ok(None)` when it does not exist.
fn lstat_entry(root: &Path, path: &Path) -> Result<Option<(PathBuf, Entry)>, ScanError> {
    let host = host_path(root, path);
    let meta = match std::fs::symlink_metadata(&host) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ScanError {
                path: path.to_path_buf(),
                error: io_message(&e),
            });
        }
    };
    let mut errors = Vec::new();
    let entry = entry_from_metadata(path.to_path_buf(), &host, &meta, &mut errors);
    match errors.pop() {
        Some(e) => Err(e),
        None => Ok(Some((host, entry))),
    }
}

/// Sorts entries by path bytes: the baseline's canonical order.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
}

fn walk_error(root: &Path, e: &walkdir::Error, path: &Path) -> ScanError {
    let error = match e.io_error() {
        Some(io) => io_message(io),
        None => e.to_string().replace(&root.display().to_string(), ""),
    };
    ScanError {
        path: path.to_path_buf(),
        error,
    }
}

fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotFound => "vanished during the scan".into(),
        _ => e.to_string(),
    }
}

/// Builds an entry from `lstat` data; regular files are hashed later.
fn entry_from_metadata(
    path: PathBuf,
    host: &Path,
    meta: &Metadata,
    errors: &mut Vec<ScanError>,
) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_socket() {
        FileKind::Socket
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else {
        FileKind::BlockDevice
    };
    let target = if kind == FileKind::Symlink {
        match std::fs::read_link(host) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(ScanError {
                    path: path.clone(),
                    error: format!("cannot read link: {}", io_message(&e)),
                });
                Some(PathBuf::new())
            }
        }
    } else {
        None
    };
    let xattrs = if kind == FileKind::Regular {
        Vec::new()
    } else {
        read_xattrs(host)
    };
    Entry {
        path,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        // A directory's size is an allocation detail that changes as entries come and go.
        size: if kind == FileKind::Directory {
            0
        } else {
            meta.size()
        },
        sha256: None,
        target,
        xattrs,
        content: None,
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            meta.rdev()
        } else {
            0
        },
    }
}

/// Extended attributes, sorted by name. Filesystems without xattr support have none.
fn read_xattrs(host: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(host) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(host, &name).ok().flatten()?;
            Some(Xattr {
                name: name.to_string_lossy().into_owned(),
                value,
            })
        })
        .collect();
    out.sort();
    out
}

/// Takes hash and xattrs from the reference when the metadata proves the file unchanged since
/// it was recorded. The captured content is not copied: content that did not change is never
/// diffed.
pub fn reuse(entry: &mut Entry, reference: Option<&Entry>) -> bool {
    match reference {
        Some(r)
            if r.kind == FileKind::Regular
                && r.sha256.is_some()
                && r.size == entry.size
                && r.mtime_ns == entry.mtime_ns
                && r.ctime_ns == entry.ctime_ns
                && r.inode == entry.inode =>
        {
            entry.sha256 = r.sha256;
            entry.xattrs = r.xattrs.clone();
            true
        }
        _ => false,
    }
}

/// Hashes regular files in parallel (progress bar, throttle). Returns the sorted paths of the
/// files that vanished meanwhile; every problem is pushed to `errors`.
pub fn hash_all(
    opts: ScanOptions<'_>,
    mut todo: Vec<&mut Entry>,
    stats: &mut ScanStats,
    errors: &mut Vec<ScanError>,
) -> Vec<PathBuf> {
    let total: u64 = todo.iter().map(|e| e.size).sum();
    let bar = progress_bar(opts.progress && !todo.is_empty(), total);
    let hashed_files = AtomicU64::new(0);
    let hashed_bytes = AtomicU64::new(0);
    let outcomes: Vec<(PathBuf, HashError)> = todo
        .par_iter_mut()
        .with_min_len(16)
        .map_init(
            || vec![0u8; HASH_BUFFER],
            |buf, entry| {
                if opts.cancelled() {
                    return None;
                }
                let host = host_path(opts.root, &entry.path);
                let capture = opts.rules.captures_content(&entry.path, entry.size);
                let control = HashControl {
                    throttle: opts.throttle,
                    cancel: opts.cancel,
                    attempts: HASH_ATTEMPTS,
                };
                let result = hash_file(&host, capture, buf, control);
                bar.inc(entry.size);
                let result = result.map(|hashed| {
                    hashed_files.fetch_add(1, Ordering::Relaxed);
                    hashed_bytes.fetch_add(hashed.size, Ordering::Relaxed);
                    let changing = hashed.changing;
                    apply_hash(entry, hashed);
                    entry.xattrs = read_xattrs(&host);
                    changing
                });
                match result {
                    Ok(false) => None,
                    Ok(true) => Some((entry.path.clone(), HashError::KeptChanging)),
                    // The scan's result is discarded anyway.
                    Err(HashError::Cancelled) => None,
                    Err(e) => Some((entry.path.clone(), e)),
                }
            },
        )
        .flatten()
        .collect();
    bar.finish_and_clear();
    let mut vanished = Vec::new();
    for (path, e) in outcomes {
        if matches!(e, HashError::Vanished) {
            vanished.push(path.clone());
        }
        errors.push(ScanError {
            path,
            error: e.to_string(),
        });
    }
    vanished.sort();
    stats.files_hashed += hashed_files.into_inner();
    stats.bytes_hashed += hashed_bytes.into_inner();
    vanished
}

struct Hashed {
    sha256: [u8; 32],
    content: Option<Vec<u8>>,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    changing: bool,
}

#[derive(Debug, thiserror::Error)]
enum HashError {
    #[error("vanished during the scan")]
    Vanished,
    #[error("permission denied")]
    Denied,
    #[error("replaced by a non-regular file during the scan")]
    NotRegular,
    #[error("kept changing while being hashed; recorded the last hash")]
    KeptChanging,
    #[error("hashing cancelled")]
    Cancelled,
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for HashError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => HashError::Vanished,
            io::ErrorKind::PermissionDenied => HashError::Denied,
            _ if e.raw_os_error() == Some(libc::ELOOP) => HashError::NotRegular,
            _ => HashError::Io(e),
        }
    }
}

fn apply_hash(entry: &mut Entry, hashed: Hashed) {
    entry.sha256 = Some(hashed.sha256);
    entry.content = hashed.content;
    entry.size = hashed.size;
    entry.mtime_ns = hashed.mtime_ns;
    entry.ctime_ns = hashed.ctime_ns;
}

/// How one file is hashed: at what rate, until when, how many times.
#[derive(Clone, Copy)]
struct HashControl<'a> {
    throttle: Option<&'a Throttle>,
    /// Checked between two chunks.
    cancel: Option<&'a AtomicBool>,
    /// Tries while the file changes underneath (at least 1).
    attempts: usize,
}

impl HashControl<'_> {
    /// On the event path: full speed, to the end.
    const INLINE: HashControl<'static> = HashControl {
        throttle: None,
        cancel: None,
        attempts: HASH_ATTEMPTS,
    };
}

/// Hashes a regular file, streaming; retries when the file changes underneath.
fn hash_file(
    host: &Path,
    capture: bool,
    buf: &mut [u8],
    control: HashControl<'_>,
) -> Result<Hashed, HashError> {
    let mut last = None;
    for _ in 0..control.attempts.max(1) {
        let file = open_regular(host)?;
        let before = file.metadata()?;
        if !before.file_type().is_file() {
            return Err(HashError::NotRegular);
        }
        let mut hasher = Sha256::new();
        let mut content = capture.then(Vec::new);
        let mut bytes = 0u64;
        let mut reader = file;
        loop {
            let n = match reader.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.update(&buf[..n]);
            bytes += n as u64;
            if let Some(t) = control.throttle {
                t.consume(n as u64);
            }
            if control.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(HashError::Cancelled);
            }
            if let Some(c) = content.as_mut() {
                if c.len() + n > MAX_CAPTURE || buf[..n].contains(&0) {
                    content = None;
                } else {
                    c.extend_from_slice(&buf[..n]);
                }
            }
        }
        let after = reader.metadata()?;
        let stable = after.size() == before.size()
            && after.mtime_nsec() == before.mtime_nsec()
            && after.mtime() == before.mtime()
            && after.ctime() == before.ctime()
            && after.ctime_nsec() == before.ctime_nsec()
            && bytes == after.size();
        let hashed = Hashed {
            sha256: hasher.finalize().into(),
            content,
            size: bytes,
            mtime_ns: after.mtime() * 1_000_000_000 + after.mtime_nsec(),
            ctime_ns: after.ctime() * 1_000_000_000 + after.ctime_nsec(),
            changing: !stable,
        };
        if stable {
            return Ok(hashed);
        }
        last = Some(hashed);
        if control.attempts > 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(last.expect("at least one attempt"))
}

/// Upper bound for captured content, whatever the rules say (the rules' max_size is lower).
const MAX_CAPTURE: usize = 1 << 20;

/// Opens without following symlinks, without blocking on a fifo swapped in, and without
/// touching the access time where the kernel allows it.
fn open_regular(host: &Path) -> Result<File, HashError> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(host)
    };
    let base = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    match open(base | libc::O_NOATIME) {
        Ok(f) => Ok(f),
        // O_NOATIME is only allowed to the file's owner (or with CAP_FOWNER).
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(open(base)?),
        Err(e) => Err(e.into()),
    }
}

fn progress_spinner(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} walking: {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "hashing [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
