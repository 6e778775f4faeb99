//! Whole comparisons in the daemon: of the root at start-up (blocking, before readiness),
//! periodic (in the background, throttled, every Nth re-hashing), after an inotify overflow,
//! and of the directories that have no watch; and of the package inventory (at start-up and
//! after its database changed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use driftwatch_proto::text::display_path;

use super::Session;
use crate::evaluate::FileDrift;
use crate::evaluate::compare::{Comparison, compare_with_baseline};
use crate::ledger::{DriftItem, Subject, now_rfc3339};
use crate::packages;
use crate::scan::{ScanOptions, throttle};
use crate::telemetry::{RescanInfo, RescanLabel};

impl Session {
    /// Compares the whole root with the baseline (throttled, low priority) and feeds every
    /// path's state to the ledger.
    pub(super) async fn rescan(&mut self, kind: &'static str, full_hash: bool) -> Result<()> {
        self.start_rescan(kind, full_hash);
        let result = wait_rescan(&mut self.rescan).await;
        self.finish_rescan(result).await
    }

    /// Starts a whole-root comparison on the low-priority pool, in the background: events keep
    /// being handled meanwhile, and the paths they touch are remembered so that the rescan's
    /// (possibly older) view of them is not applied. A running rescan is cancelled first.
    pub(super) fn start_rescan(&mut self, kind: &'static str, full_hash: bool) {
        if let Some(old) = self.rescan.take() {
            old.cancel.store(true, Ordering::Relaxed);
        }
        let (entries, rules, root, key) = (
            self.entries.clone(),
            self.rules.clone(),
            self.config.root.clone(),
            self.redact_key.clone(),
        );
        let (pool, throttle) = (self.pool.clone(), self.throttle.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        // The startup comparison runs at full speed: until it is done, the agent knows nothing.
        let throttled = kind != "startup";
        let handle = tokio::task::spawn_blocking(move || {
            pool.install(|| {
                let opts = ScanOptions {
                    root: &root,
                    rules: &rules,
                    full_hash,
                    progress: false,
                    throttle: throttled.then_some(&*throttle),
                    cancel: Some(&flag),
                };
                compare_with_baseline(opts, &*entries, &key)
            })
        });
        self.rescan = Some(Rescan {
            kind,
            started: Instant::now(),
            cancel,
            handle,
            touched: BTreeSet::new(),
        });
    }

    /// Applies a finished rescan: every path's state goes to the ledger, except paths that
    /// changed while it ran (their events were already evaluated after the change).
    pub(super) async fn finish_rescan(
        &mut self,
        done: (Rescan, Result<Comparison, tokio::task::JoinError>),
    ) -> Result<()> {
        let (rescan, result) = done;
        let scanned = result?;
        if rescan.cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let kind = rescan.kind;
        self.shared
            .metrics
            .rescans
            .get_or_create(&RescanLabel { kind })
            .inc();
        self.shared
            .metrics
            .hashed_bytes
            .inc_by(scanned.stats.bytes_hashed);
        let Comparison {
            items,
            errors: scan_errors,
            stats,
        } = scanned;
        let unknown: Vec<&Path> = scan_errors.iter().map(|e| e.path.as_path()).collect();
        let mut now: BTreeMap<PathBuf, FileDrift> =
            items.into_iter().map(|i| (i.path.clone(), i)).collect();
        let observed_at = now_rfc3339();
        let mut events = Vec::new();
        let mut subjects: BTreeSet<PathBuf> = self.ledger.paths().into_iter().collect();
        subjects.extend(now.keys().cloned());
        for path in subjects {
            let item = now.remove(&path);
            if rescan.touched.iter().any(|t| path.starts_with(t)) {
                continue;
            }
            if item.is_none() && unknown.iter().any(|u| path.starts_with(u)) {
                continue;
            }
            events.extend(self.ledger.update(
                Subject::Path(path),
                item.map(|d| DriftItem::File(Box::new(d))),
                &observed_at,
            ));
        }
        for e in &scan_errors {
            tracing::debug!(path = %display_path(&e.path), error = %e.error, "Rescan could not read path.");
        }
        let elapsed = rescan.started.elapsed();
        {
            let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
            status.last_rescan = Some(RescanInfo {
                kind: kind.into(),
                finished_at: now_rfc3339(),
                duration_ms: elapsed.as_millis() as u64,
                entries: stats.entries,
                bytes_hashed: stats.bytes_hashed,
                errors: scan_errors.len(),
            });
        }
        tracing::info!(
            kind,
            entries = stats.entries,
            events = events.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "Rescan done."
        );
        drop(scan_errors);
        throttle::release_free_memory();
        self.emit(events).await
    }

    /// Re-evaluates the directories that have no inotify watch, and tries to watch them again.
    pub(super) async fn rescan_unwatched(&mut self) -> Result<()> {
        let dirs: Vec<PathBuf> = self.watcher.unwatched().iter().cloned().collect();
        // Only the outermost unwatched directories: their subtrees cover the rest.
        let mut tops: Vec<PathBuf> = Vec::new();
        for d in dirs {
            if !tops.iter().any(|t| d.starts_with(t)) {
                tops.push(d);
            }
        }
        let mut paths = BTreeSet::new();
        for t in &tops {
            paths.extend(self.paths_under(t));
        }
        self.shared
            .metrics
            .rescans
            .get_or_create(&RescanLabel { kind: "degraded" })
            .inc();
        self.watcher.retry_unwatched();
        let results = self.evaluate_paths(paths.into_iter().collect());
        self.apply_evaluations(results).await
    }

    /// Diffs the package inventory against the baseline's.
    pub(super) async fn check_packages(&mut self) -> Result<()> {
        let root = self.config.root.clone();
        let inventory =
            tokio::task::spawn_blocking(move || packages::read_inventory(&root)).await?;
        for e in &inventory.errors {
            tracing::warn!(error = %e, "Package inventory problem.");
        }
        let drift = packages::diff(&self.baseline.baseline.packages, &inventory.packages);
        let observed_at = now_rfc3339();
        let mut now: BTreeMap<Subject, DriftItem> = drift
            .into_iter()
            .map(|p| {
                let item = DriftItem::Package(p);
                (Subject::of(&item), item)
            })
            .collect();
        let mut subjects: BTreeSet<Subject> = self.ledger.packages().into_iter().collect();
        subjects.extend(now.keys().cloned());
        let mut events = Vec::new();
        for s in subjects {
            let item = now.remove(&s);
            events.extend(self.ledger.update(s, item, &observed_at));
        }
        self.emit(events).await
    }
}

/// A background whole-root comparison.
pub(super) struct Rescan {
    kind: &'static str,
    started: Instant,
    pub(super) cancel: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Comparison>,
    /// Paths (files, or directories standing for their subtrees) evaluated from events while
    /// the rescan ran.
    pub(super) touched: BTreeSet<PathBuf>,
}

/// Waits for the running rescan (forever when there is none).
pub(super) async fn wait_rescan(
    slot: &mut Option<Rescan>,
) -> (Rescan, Result<Comparison, tokio::task::JoinError>) {
    let Some(running) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut running.handle).await;
    (slot.take().expect("checked above"), result)
}
