//! Comparing a whole root with a baseline: [`compare_with_baseline`] and its [`Comparison`].
//!
//! `scan` walks and hashes; this compares, path by path, through the same
//! [`compare()`](super::compare()) the daemon uses for single paths. The recorded side is anything
//! [`Recorded`]: the decoded [`Baseline`] (`check`) or the daemon's compact
//! [`Entries`](super::baseline::Entries).

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use driftwatch_proto::baseline::{Baseline, Entry, FileKind};

use super::{FileDrift, RedactKey};
use crate::scan::{self, ScanError, ScanOptions, ScanStats};

/// The outcome of comparing a root with a baseline.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Sorted by path bytes.
    pub items: Vec<FileDrift>,
    pub errors: Vec<ScanError>,
    pub stats: ScanStats,
}

/// The recorded side of a comparison: a baseline's entries, in canonical order (path bytes).
/// Implemented by the decoded [`Baseline`] and by the daemon's compact
/// [`Entries`](super::baseline::Entries), which rebuilds an entry when asked for it.
pub trait Recorded: Sync {
    /// Number of entries.
    fn count(&self) -> usize;
    /// The index of `path`'s entry.
    fn find(&self, path: &Path) -> Option<usize>;
    /// Entry `i`'s path.
    fn path(&self, i: usize) -> Cow<'_, Path>;
    /// Entry `i`.
    fn entry(&self, i: usize) -> Cow<'_, Entry>;
}

impl Recorded for Baseline {
    fn count(&self) -> usize {
        self.entries.len()
    }

    fn find(&self, path: &Path) -> Option<usize> {
        let key = path.as_os_str().as_bytes();
        self.entries
            .binary_search_by(|e| e.path.as_os_str().as_bytes().cmp(key))
            .ok()
    }

    fn path(&self, i: usize) -> Cow<'_, Path> {
        Cow::Borrowed(&self.entries[i].path)
    }

    fn entry(&self, i: usize) -> Cow<'_, Entry> {
        Cow::Borrowed(&self.entries[i])
    }
}

/// Compares the root with a baseline while walking it, keeping only what differs: memory is
/// the baseline's plus the drift's, not a second copy of the tree. Regular files whose metadata
/// matches the baseline (the fast path) are never opened; the others are hashed in parallel
/// at the end. Paths below a directory that could not be listed are errors, not removals.
pub fn compare_with_baseline<B: Recorded + ?Sized>(
    opts: ScanOptions<'_>,
    baseline: &B,
    key: &RedactKey,
) -> Comparison {
    let rules = opts.rules;
    let mut out = Comparison::default();
    let mut seen = vec![false; baseline.count()];
    let mut pending: Vec<(Entry, Option<usize>)> = Vec::new();
    scan::walk(opts, &mut out.errors, |mut entry| {
        let index = baseline.find(&entry.path);
        if let Some(i) = index {
            if seen[i] {
                return;
            }
            seen[i] = true;
        }
        out.stats.entries += 1;
        let expected = index.map(|i| baseline.entry(i));
        if entry.kind == FileKind::Regular
            && (opts.full_hash || !scan::reuse(&mut entry, expected.as_deref()))
        {
            pending.push((entry, index));
            return;
        }
        if entry.kind == FileKind::Regular {
            out.stats.files_reused += 1;
        }
        out.items.extend(super::compare(
            &entry.path,
            expected.as_deref(),
            Some(&entry),
            rules,
            key,
        ));
    });
    let failed = scan::hash_all(
        opts,
        pending.iter_mut().map(|(e, _)| e).collect(),
        &mut out.stats,
        &mut out.errors,
    );
    for (entry, index) in &pending {
        if failed.binary_search(&entry.path).is_ok() {
            // Vanished while being hashed: it is not there.
            if let Some(i) = index {
                seen[*i] = false;
            }
            continue;
        }
        let expected = index.map(|i| baseline.entry(i));
        out.items.extend(super::compare(
            &entry.path,
            expected.as_deref(),
            Some(entry),
            rules,
            key,
        ));
    }
    drop(pending);
    let unknown: Vec<&Path> = out.errors.iter().map(|e| e.path.as_path()).collect();
    for (i, _) in seen.iter().enumerate().filter(|(_, seen)| !**seen) {
        let path = baseline.path(i);
        if unknown.iter().any(|u| path.starts_with(u) && *path != **u) {
            continue;
        }
        let expected = baseline.entry(i);
        out.items
            .extend(super::compare(&path, Some(&expected), None, rules, key));
    }
    out.items.sort_unstable_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    out.errors.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
