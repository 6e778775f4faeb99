//! Gathering inotify changes into an evaluation batch: a burst of changes becomes one set of
//! paths, each evaluated once against the baseline, and handed to the writer
//! ([`Session::apply_evaluations`]). A package database change schedules an inventory diff; a
//! queue overflow, a whole-root rescan.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use driftwatch_proto::baseline::FileKind;
use futures_util::FutureExt as _;

use super::Session;
use super::hasher::HashDone;
use crate::evaluate::RedactKey;
use crate::evaluate::baseline::Entries;
use crate::evaluate::{self, FileDrift};
use crate::fsutil::{host_path, root_path};
use crate::rules::Rules;
use crate::scan::{self, ScanError};
use crate::watch::{Change, Step};

/// Most paths gathered into one evaluation batch.
const MAX_BATCH_PATHS: usize = 4096;
/// Longest a burst is gathered before it is evaluated, however busy the tree.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(200);
/// Quiet time after a package database change before the inventory is read (dpkg rewrites its
/// status file many times during one `apt upgrade`).
const PACKAGE_SETTLE: Duration = Duration::from_millis(500);

/// One path's evaluation: its drift (`None`: clean), or why it could not be evaluated.
pub(super) type Evaluation = (PathBuf, Result<Option<FileDrift>, ScanError>);

impl Session {
    /// Gathers a burst of changes, then evaluates each path once. A change after a quiet spell
    /// (isolated edits, the common case) ends its batch as soon as every path in it has
    /// settled and the kernel has nothing more queued: waiting out the `coalesce` window
    /// after a file was closed, moved or deleted only adds latency. Otherwise the batch ends
    /// when `coalesce` passes quietly: while a path may still change ([`Step`]: being
    /// written, or created in this batch, perhaps as a temporary file an editor is about to
    /// rename), and during a storm (the change came within `coalesce` of the previous batch),
    /// where larger batches mean fewer spool syncs. Either way, at most [`MAX_BATCH_WAIT`]
    /// and [`MAX_BATCH_PATHS`].
    pub(super) async fn handle_changes(&mut self, first: Vec<Change>) -> Result<()> {
        // Events that concern nothing (another name in a pending tree's ancestor, a watch the
        // kernel dropped): no batch, no status refresh.
        if first.is_empty() {
            return Ok(());
        }
        let result = self.handle_batch(first).await;
        self.last_batch_end = Some(tokio::time::Instant::now());
        result
    }

    async fn handle_batch(&mut self, first: Vec<Change>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + MAX_BATCH_WAIT;
        let storm = self
            .last_batch_end
            .is_some_and(|end| end.elapsed() < self.config.coalesce);
        let mut unsettled: BTreeSet<PathBuf> = BTreeSet::new();
        let mut created: BTreeSet<PathBuf> = BTreeSet::new();
        let mut changes = Vec::new();
        let mut next = first;
        loop {
            for change in &next {
                let Change::Path {
                    path, gone, step, ..
                } = change
                else {
                    continue;
                };
                match step {
                    Step::Writing => {
                        unsettled.insert(path.clone());
                    }
                    Step::Created => {
                        created.insert(path.clone());
                        unsettled.insert(path.clone());
                    }
                    Step::Done if *gone || !created.contains(path) => {
                        unsettled.remove(path);
                    }
                    Step::Done => {}
                }
            }
            changes.append(&mut next);
            if changes.len() >= MAX_BATCH_PATHS || tokio::time::Instant::now() >= deadline {
                break;
            }
            let more = if unsettled.is_empty() && !storm {
                // Waiting would only add latency: take what the kernel already queued.
                match self.watcher.next().now_or_never() {
                    Some(more) => more,
                    None => break,
                }
            } else {
                let wait = self
                    .config
                    .coalesce
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, self.watcher.next()).await {
                    Ok(more) => more,
                    Err(_) => break,
                }
            };
            next = more.context("reading inotify events")?;
        }
        self.shared.metrics.queue_depth.set(changes.len() as i64);
        let mut singles: BTreeSet<PathBuf> = BTreeSet::new();
        let mut subtrees: BTreeSet<PathBuf> = BTreeSet::new();
        let mut overflow = false;
        for change in changes {
            match change {
                Change::Overflow => overflow = true,
                Change::Extra { dir, name } => {
                    let relevant = self.package_dbs.iter().any(|(d, file)| {
                        *d == dir && file.is_none_or(|f| name.as_bytes() == f.as_bytes())
                    });
                    if relevant {
                        self.packages_due = Some(tokio::time::Instant::now() + PACKAGE_SETTLE);
                    }
                }
                Change::Path {
                    path, dir, gone, ..
                } => {
                    if !self.rules.in_scope(&path) {
                        continue;
                    }
                    if dir {
                        if gone {
                            self.watcher.remove_tree(&path);
                        } else {
                            self.watcher.add_tree(&self.rules, &path);
                        }
                        subtrees.insert(path);
                    } else {
                        singles.insert(path);
                    }
                }
            }
        }
        if overflow {
            self.shared.metrics.overflows.inc();
            tracing::warn!("inotify queue overflowed; rescanning the whole root.");
            self.shared.metrics.queue_depth.set(0);
            self.start_rescan("overflow", false);
            return Ok(());
        }
        // A path inside a subtree being evaluated is covered by it.
        singles.retain(|p| !subtrees.iter().any(|s| p.starts_with(s)));
        if let Some(rescan) = self.rescan.as_mut() {
            rescan.touched.extend(singles.iter().cloned());
            rescan.touched.extend(subtrees.iter().cloned());
        }
        let mut paths: BTreeSet<PathBuf> = singles;
        for tree in &subtrees {
            paths.extend(self.paths_under(tree));
        }
        let results = self.evaluate_paths(paths.into_iter().collect());
        self.shared.metrics.queue_depth.set(0);
        self.apply_evaluations(results).await
    }

    /// Every path that a change to the directory `dir` may concern: what is there now, what
    /// the baseline has there, and what the ledger holds there.
    pub(super) fn paths_under(&self, dir: &Path) -> BTreeSet<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = self.ledger.paths_under(dir).into_iter().collect();
        paths.extend(self.entries.paths_under(dir));
        paths.insert(dir.to_path_buf());
        let root = &self.config.root;
        let walk = walkdir::WalkDir::new(host_path(root, dir))
            .follow_links(false)
            .follow_root_links(false)
            .into_iter()
            .filter_entry(|e| !self.rules.is_excluded(&root_path(root, e.path())));
        paths.extend(
            walk.filter_map(Result::ok)
                .map(|e| root_path(root, e.path())),
        );
        paths
    }

    /// Evaluates paths. Hashing never runs on an async worker: `block_in_place` first hands
    /// this worker's other tasks to another thread. Unlike a round trip through the blocking
    /// pool, this costs the event no thread wake-ups, each of which can take milliseconds on a
    /// busy host. Files above `hashing.background_above` are not hashed here: their drift says
    /// the hash is pending, and they go to the background hasher.
    pub(super) fn evaluate_paths(&self, paths: Vec<PathBuf>) -> Vec<Evaluation> {
        let (entries, rules, root) = (&self.entries, &self.rules, &self.config.root);
        let (key, max_inline) = (&self.redact_key, self.config.hash_background_above);
        tokio::task::block_in_place(|| {
            paths
                .into_iter()
                .map(|path| {
                    self.shared.metrics.evaluations.inc();
                    let (result, unhashed) =
                        evaluate_path(root, rules, key, entries, &path, max_inline);
                    if !unhashed {
                        self.hasher.forget(&path);
                    } else if !self.hasher.submit(&path) {
                        self.shared.metrics.background_hashes_dropped.inc();
                        tracing::debug!(path = %path.display(), "Background hash queue full; the hash waits for the next rescan.");
                    }
                    (path, result)
                })
                .collect()
        })
    }

    /// A background hash is done: the path is evaluated again with it, unless it changed
    /// since (then a newer hash is on its way, or its metadata says what it is now).
    pub(super) async fn apply_hash(&mut self, done: HashDone) -> Result<()> {
        let HashDone { path, result } = done;
        if self.hasher.is_waiting(&path) || !self.rules.in_scope(&path) {
            return Ok(());
        }
        let result = match result {
            // The fast path against the hashed entry: its hash if the file is still the one
            // hashed; never hashes (`max_inline` 0).
            Ok(hashed) => {
                match scan::scan_one(&self.config.root, &self.rules, &path, Some(&hashed), 0) {
                    Ok(Some(now)) if now.sha256.is_some() => {
                        let expected = self.entries.get(&path);
                        Ok(evaluate::compare(
                            &path,
                            expected.as_ref(),
                            Some(&now),
                            &self.rules,
                            &self.redact_key,
                        ))
                    }
                    // Changed again or gone: its own events tell.
                    Ok(_) => return Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Some(rescan) = self.rescan.as_mut() {
            rescan.touched.insert(path.clone());
        }
        self.apply_evaluations(vec![(path, result)]).await
    }
}

/// Evaluates one path against the baseline; true beside it when its hash is left to the
/// background hasher (a regular file above `max_inline` bytes that changed).
fn evaluate_path(
    root: &Path,
    rules: &Rules,
    key: &RedactKey,
    entries: &Entries,
    path: &Path,
    max_inline: u64,
) -> (Result<Option<FileDrift>, ScanError>, bool) {
    if !rules.in_scope(path) {
        return (Ok(None), false);
    }
    let expected = entries.get(path);
    let actual = match scan::scan_one(root, rules, path, expected.as_ref(), max_inline) {
        Ok(actual) => actual,
        Err(e) => return (Err(e), false),
    };
    match &actual {
        Some(a) if a.kind == FileKind::Regular && a.sha256.is_none() => (
            Ok(evaluate::compare_unhashed(
                path,
                expected.as_ref(),
                a,
                rules,
                key,
            )),
            true,
        ),
        _ => (
            Ok(evaluate::compare(
                path,
                expected.as_ref(),
                actual.as_ref(),
                rules,
                key,
            )),
            false,
        ),
    }
}
