//! `driftwatch-agent run`: the daemon.
//!
//! ```text
//!  inotify ─► coalesce ─► evaluate (in place) ─► ledger ─► spool (fsync) ─► emit ─► ack
//!  timers  ─► rescan (throttled, low priority) ─┘        ▲                      │
//!  pkg db  ─► inventory diff ───────────────────────────┘    stdout (standalone) or uplink
//! ```
//!
//! One task owns the ledger, the spool and the watcher, so every transition is decided in one
//! place and in order. The baseline's entries are held compact ([`Entries`]) for the
//! session's life. With a collector, the uplink task ([`crate::uplink`]) reads the spool
//! (shared behind a lock), asks this task for snapshots of the ledger, and reports the
//! collector's acknowledgements, which this task turns into checkpoints. Start-up compares the whole root with the *baked baseline* (the fast
//! path of `check`), so changes made while the agent was stopped are found; the persisted
//! ledger only says what consumers were already told.
//!
//! Durability: events are appended to the spool and fsynced before they are printed or sent;
//! the ledger is saved before the spool records are acknowledged, so on restart the ledger
//! plus the unacknowledged records always reproduce what was emitted. Standalone, a record is
//! released once printed; with a collector, once the collector acknowledged it (never
//! earlier). A collector that stays away until the spool is full gets a snapshot instead of
//! the records: the spool is compacted to nothing (the ledger, saved first, holds the state).
//!
//! The spool's sequence numbers form a stream, named by a random id kept in
//! `STATE/stream-id` and in the ledger: a new id whenever the spool or the ledger starts afresh
//! (first start, lost or reset state), since numbers are only comparable within one stream.
//!
//! A session ends on SIGTERM/SIGINT (drain and exit) or on SIGHUP with a valid new
//! configuration (a new session starts with it: new baseline, rules and watches).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use driftwatch_proto::baseline::LoadedBaseline;
use driftwatch_proto::text::display_path;
use futures_util::FutureExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Overrides};
use crate::errors::error_chain;
use crate::evaluate::baseline::{Entries, ImageInfo, baseline_rules};
use crate::evaluate::{self, FileDrift};
use crate::fsutil::{host_path, root_path};
use crate::ledger::{DriftItem, Event, Ledger, Subject, now_rfc3339};
use crate::packages;
use crate::rules::{Rules, Severity};
use crate::scan;
use crate::scan::throttle::{self, Throttle};
use crate::ship::{self, Head, Link};
use crate::spool::shared::{self, SharedSpool};
use crate::spool::{Spool, SpoolConfig, record};
use crate::telemetry::{self, Coverage, SeverityLabel, Shared, SpoolInfo, Status, TransitionLabel};
use crate::watch::{Change, Step, Watcher};

mod collector;
mod rescan;
use collector::{next_link_event, stream_id};
use rescan::{Rescan, wait_rescan};

/// Most paths gathered into one evaluation batch.
const MAX_BATCH_PATHS: usize = 4096;
/// Longest a burst is gathered before it is evaluated, however busy the tree.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(200);
/// Quiet time after a package database change before the inventory is read (dpkg rewrites its
/// status file many times during one `apt upgrade`).
const PACKAGE_SETTLE: Duration = Duration::from_millis(500);
/// How long after an event the ledger is saved and printed records are released: off the
/// event path, so a burst costs one checkpoint, not one per batch.
const CHECKPOINT_DELAY: Duration = Duration::from_secs(1);
/// How long SIGTERM waits for the current batch to drain.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(overrides: Overrides) -> Result<()> {
    let mut config = AgentConfig::load(&overrides)?;
    let shared = Shared {
        metrics: Arc::default(),
        status: Arc::default(),
    };
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let started_at = now_rfc3339();
    loop {
        let cancel = CancellationToken::new();
        let mut session =
            Session::start(config.clone(), shared.clone(), &started_at, cancel.clone()).await?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let end = session.run(&mut hup, &mut term, &overrides).await;
        cancel.cancel();
        match end {
            SessionEnd::Shutdown => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, session.finish()).await;
                match drained {
                    Ok(Ok(())) => tracing::info!("Stopped."),
                    Ok(Err(e)) => {
                        tracing::error!(error = %format!("{e:#}"), "Stopped with an error while draining.")
                    }
                    Err(_) => tracing::error!(
                        "Drain deadline passed; stopping anyway (the spool is intact)."
                    ),
                }
                return Ok(());
            }
            SessionEnd::Reload(new) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                session.finish().await?;
                tracing::info!("Configuration reloaded; restarting the session.");
                config = *new;
            }
            SessionEnd::Failed(e) => return Err(e),
        }
    }
}

enum SessionEnd {
    Shutdown,
    Reload(Box<AgentConfig>),
    Failed(anyhow::Error),
}

/// Everything one configuration runs with.
struct Session {
    config: AgentConfig,
    /// The baseline without its entries (header, packages, id): they are in `entries`.
    baseline: Arc<LoadedBaseline>,
    entries: Arc<Entries>,
    rules: Arc<Rules>,
    ledger: Ledger,
    /// The ledger's sequence number when it was last saved.
    saved_seq: u64,
    /// Shared with the uplink, which only reads it.
    spool: SharedSpool,
    /// The uplink, in collector mode.
    link: Option<Link>,
    watcher: Watcher,
    shared: Shared,
    pool: Arc<rayon::ThreadPool>,
    throttle: Arc<Throttle>,
    periodic_rescans: u64,
    /// Highest sequence number printed (standalone mode).
    printed_seq: u64,
    /// When the last batch of changes was done with (see [`Session::handle_changes`]).
    last_batch_end: Option<tokio::time::Instant>,
    /// When the next checkpoint (ledger save, spool release) is due.
    checkpoint_due: Option<tokio::time::Instant>,
    /// The whole-root comparison running in the background, if any.
    rescan: Option<Rescan>,
    /// Package database directories (host paths) and the file names that matter in them.
    package_dbs: Vec<(PathBuf, Option<&'static str>)>,
    packages_due: Option<tokio::time::Instant>,
    errors: u64,
}

impl Session {
    async fn start(
        config: AgentConfig,
        shared: Shared,
        started_at: &str,
        cancel: CancellationToken,
    ) -> Result<Session> {
        let (mut baseline, rules) = preflight(&config)?;
        let entries = Entries::new(std::mem::take(&mut baseline.baseline.entries));
        let (baseline, entries, rules) = (Arc::new(baseline), Arc::new(entries), Arc::new(rules));
        create_private_dir(&config.state_dir)?;
        let spool_is_new = !config.spool_dir().exists();
        let (spool, recovery) = Spool::open(SpoolConfig {
            dir: config.spool_dir(),
            max_bytes: config.spool_max_bytes,
            segment_bytes: (config.spool_max_bytes / 16).clamp(64 << 10, 4 << 20),
        })
        .with_context(|| format!("opening the spool in {}", config.spool_dir().display()))?;
        if recovery.torn_bytes_dropped > 0 {
            tracing::warn!(
                bytes = recovery.torn_bytes_dropped,
                "Dropped a torn record at the spool's tail (crash or power loss)."
            );
        }
        let mut ledger =
            Ledger::load_or_upgrade(&config.ledger_path(), &config.legacy_ledger_path())?;
        // Events appended but not yet reflected in the saved ledger (a crash in between).
        for (seq, payload) in spool.read_after(ledger.seq(), usize::MAX)? {
            match record::decode(&payload) {
                Ok(event) => ledger.replay(&event),
                Err(error) => {
                    tracing::error!(seq, %error, "Unreadable event in the spool; skipping it.")
                }
            }
        }
        ledger.advance_seq_to(spool.last_seq().unwrap_or(0));
        let mut saved_seq = ledger.seq();
        let stream_id = stream_id(&config.state_dir, spool_is_new, &mut ledger)?;
        if stream_id.1 {
            ledger
                .save(&config.ledger_path())
                .context("saving the ledger")?;
            saved_seq = ledger.seq();
        }
        let stream_id = stream_id.0;

        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "dw-rescan".into())
                .start_handler(|_| throttle::lower_thread_priority())
                .build()
                .context("starting the rescan thread")?,
        );
        let mut watcher =
            Watcher::new(&config.root, config.max_watches).context("initialising inotify")?;
        let mut package_dbs = Vec::new();
        for (db, file) in [
            ("/var/lib/dpkg", Some("status")),
            ("/lib/apk/db", Some("installed")),
            ("/var/lib/rpm", None),
            ("/usr/lib/sysimage/rpm", None),
        ] {
            let host = host_path(&config.root, Path::new(db));
            if host.is_dir() && watcher.add_extra(&host).is_ok() {
                package_dbs.push((host, file));
            }
        }

        {
            let mut status = shared.status.lock().unwrap_or_else(|e| e.into_inner());
            *status = Status {
                state: "starting".into(),
                pid: std::process::id(),
                started_at: started_at.to_owned(),
                baseline_id: baseline.id.to_hex(),
                image: Some(ImageInfo::of(&baseline)),
                root: display_path(&config.root),
                ..Status::default()
            };
        }
        if let Some(addr) = config.listen {
            let bound = telemetry::serve(addr, shared.clone(), cancel.clone())
                .await
                .with_context(|| format!("listening on {addr}"))?;
            crate::fsutil::write_atomically(
                &AgentConfig::status_addr_path(&config.state_dir),
                bound.to_string().as_bytes(),
                0o644,
            )
            .context("writing status.addr")?;
            tracing::info!(%bound, "Status and metrics listener up.");
        }

        let mut session = Session {
            throttle: Arc::new(Throttle::new(config.hash_rate)),
            config,
            baseline,
            entries,
            rules,
            ledger,
            saved_seq,
            spool: Arc::new(Mutex::new(spool)),
            link: None,
            watcher,
            shared,
            pool,
            periodic_rescans: 0,
            printed_seq: 0,
            last_batch_end: None,
            checkpoint_due: None,
            rescan: None,
            package_dbs,
            packages_due: None,
            errors: 0,
        };
        // Standalone: anything the previous run appended but did not print. (With a collector,
        // the uplink sends whatever the collector does not have.)
        if session.config.collector.is_none() {
            session.flush_unacked()?;
        }
        // Watch first, then compare: a change during the comparison is seen by both, never by
        // neither.
        let trees: Vec<PathBuf> = session.rules.paths().to_vec();
        for tree in &trees {
            if !session.rules.is_excluded(tree) && host_path(&session.config.root, tree).is_dir() {
                session.watcher.add_tree(&session.rules, tree);
            }
        }
        session.rescan("startup", false).await?;
        session.check_packages().await?;
        if session.config.collector.is_some() {
            session.start_link(stream_id, cancel.child_token())?;
        }
        throttle::release_free_memory();
        tracing::info!(
            baseline = %session.baseline.id,
            baseline_bytes = session.entries.heap_bytes(),
            drift = session.ledger.len(),
            watched = session.watcher.watched(),
            unwatched = session.watcher.unwatched().len(),
            "Watching."
        );
        Ok(session)
    }

    async fn run(
        &mut self,
        hup: &mut tokio::signal::unix::Signal,
        term: &mut tokio::signal::unix::Signal,
        overrides: &Overrides,
    ) -> SessionEnd {
        let mut rescan_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.rescan_interval,
            self.config.rescan_interval,
        );
        let mut degraded_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.degraded_interval,
            self.config.degraded_interval,
        );
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut watchdog_timer =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            let result = tokio::select! {
                biased;
                _ = term.recv() => return SessionEnd::Shutdown,
                _ = tokio::signal::ctrl_c() => return SessionEnd::Shutdown,
                _ = hup.recv() => match AgentConfig::load(overrides).map_err(anyhow::Error::new).and_then(|c| preflight(&c).map(|_| c)) {
                    Ok(new) => return SessionEnd::Reload(Box::new(new)),
                    Err(e) => {
                        let error = format!("{e:#}").replace('\n', "; ");
                        tracing::error!(%error, "SIGHUP: the new configuration cannot be used; keeping the running one.");
                        Ok(())
                    }
                },
                _ = watchdog_timer.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    Ok(())
                }
                changes = self.watcher.next() => match changes {
                    Ok(changes) => self.handle_changes(changes).await,
                    Err(e) => Err(anyhow::Error::new(e).context("reading inotify events")),
                },
                _ = sleep_until(self.checkpoint_due), if self.checkpoint_due.is_some() => self.checkpoint(),
                _ = sleep_until(self.packages_due), if self.packages_due.is_some() => {
                    self.packages_due = None;
                    self.check_packages().await
                }
                done = wait_rescan(&mut self.rescan) => self.finish_rescan(done).await,
                event = next_link_event(&mut self.link) => self.handle_link(event),
                _ = rescan_timer.tick() => {
                    if self.rescan.is_none() {
                        self.periodic_rescans += 1;
                        let full_hash = self.periodic_rescans.is_multiple_of(u64::from(self.config.full_hash_every));
                        self.start_rescan(if full_hash { "full_hash" } else { "periodic" }, full_hash);
                    }
                    Ok(())
                }
                _ = degraded_timer.tick(), if !self.watcher.unwatched().is_empty() => self.rescan_unwatched().await,
            };
            if let Err(e) = result {
                return SessionEnd::Failed(e);
            }
        }
    }

    /// Gathers a burst of changes, then evaluates each path once. A change after a quiet spell
    /// (isolated edits, the common case) ends its batch as soon as every path in it has
    /// settled and the kernel has nothing more queued: waiting out the `coalesce` window
    /// after a file was closed, moved or deleted only adds latency. Otherwise the batch ends
    /// when `coalesce` passes quietly: while a path may still change ([`Step`]: being
    /// written, or created in this batch, perhaps as a temporary file an editor is about to
    /// rename), and during a storm (the change came within `coalesce` of the previous batch),
    /// where larger batches mean fewer spool syncs. Either way, at most [`MAX_BATCH_WAIT`]
    /// and [`MAX_BATCH_PATHS`].
    async fn handle_changes(&mut self, first: Vec<Change>) -> Result<()> {
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

    /// Feeds evaluated paths to the ledger and emits the transitions. A path that could not be
    /// evaluated keeps its previous state (and is counted and logged).
    async fn apply_evaluations(
        &mut self,
        results: Vec<(PathBuf, Result<Option<FileDrift>, String>)>,
    ) -> Result<()> {
        let observed_at = now_rfc3339();
        let mut events = Vec::new();
        for (path, result) in results {
            match result {
                Ok(item) => events.extend(self.ledger.update(
                    Subject::Path(path),
                    item.map(|d| DriftItem::File(Box::new(d))),
                    &observed_at,
                )),
                Err(e) => {
                    self.errors += 1;
                    self.shared.metrics.evaluation_errors.inc();
                    tracing::warn!(path = %display_path(&path), error = %e, "Cannot evaluate path.");
                }
            }
        }
        self.emit(events).await
    }

    /// Every path that a change to the directory `dir` may concern: what is there now, what
    /// the baseline has there, and what the ledger holds there.
    fn paths_under(&self, dir: &Path) -> BTreeSet<PathBuf> {
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
    /// busy host.
    fn evaluate_paths(
        &self,
        paths: Vec<PathBuf>,
    ) -> Vec<(PathBuf, Result<Option<FileDrift>, String>)> {
        let (entries, rules, root) = (&self.entries, &self.rules, &self.config.root);
        tokio::task::block_in_place(|| {
            paths
                .into_iter()
                .map(|path| {
                    self.shared.metrics.evaluations.inc();
                    let result = evaluate_path(root, rules, entries, &path);
                    (path, result)
                })
                .collect()
        })
    }

    /// Diffs the package inventory against the baseline's.
    async fn check_packages(&mut self) -> Result<()> {
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

    /// Makes events durable (spool append, fsync), publishes the status, then prints them
    /// (standalone). The ledger save and the spool release follow in a deferred checkpoint.
    async fn emit(&mut self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            self.publish_status();
            return Ok(());
        }
        let encoded: Vec<(u64, Vec<u8>)> =
            events.iter().map(|e| (e.seq, record::encode(e))).collect();
        let records: Vec<(u64, &[u8])> = encoded.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        tokio::task::block_in_place(|| self.spool().append(&records))
            .context("appending to the spool")?;
        for e in &events {
            self.shared
                .metrics
                .events
                .get_or_create(&TransitionLabel {
                    transition: e.transition.as_str(),
                })
                .inc();
        }
        // Status first: whoever reads an event can then already see it in the status. This
        // also tells the uplink there are new records.
        self.publish_status();
        let standalone = self.config.collector.is_none();
        if standalone {
            self.print(&events)?;
        } else {
            tracing::debug!(
                events = events.len(),
                seq = self.ledger.seq(),
                "Events spooled for the collector."
            );
        }
        if self.spool().is_full() {
            self.checkpoint()?;
            if !standalone && self.spool().is_full() {
                self.compact_spool()?;
            }
        } else if standalone && self.checkpoint_due.is_none() {
            // With a collector, its acknowledgements schedule the checkpoints.
            self.checkpoint_due = Some(tokio::time::Instant::now() + CHECKPOINT_DELAY);
        }
        Ok(())
    }

    /// Standalone mode: prints every unacknowledged record (after a restart: what the last run
    /// appended but may not have printed), then checkpoints.
    fn flush_unacked(&mut self) -> Result<()> {
        let pending = {
            let spool = self.spool();
            spool.read_after(spool.acked_seq(), usize::MAX)?
        };
        if pending.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(pending.len());
        for (seq, payload) in pending {
            match record::decode(&payload) {
                Ok(event) => events.push(event),
                Err(error) => {
                    tracing::error!(seq, %error, "Unreadable event in the spool; skipping it.");
                    self.printed_seq = self.printed_seq.max(seq);
                }
            }
        }
        self.print(&events)?;
        self.checkpoint()
    }

    /// Prints events as JSON lines on stdout (standalone mode).
    fn print(&mut self, events: &[Event]) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        for event in events {
            serde_json::to_writer(&mut stdout, event)?;
            stdout.write_all(b"\n")?;
            self.printed_seq = self.printed_seq.max(event.seq);
        }
        stdout.flush().context("writing events to stdout")
    }

    /// Saves the ledger, then releases from the spool the records that were printed
    /// (standalone) or that the collector acknowledged. Deferred off the event path (see
    /// [`CHECKPOINT_DELAY`]): until it runs, a restart replays the spool onto the older ledger
    /// and prints (or sends) the unreleased records again, with their sequence numbers.
    fn checkpoint(&mut self) -> Result<()> {
        self.checkpoint_due = None;
        let done = match (&self.config.collector, &self.link) {
            (None, _) => self.printed_seq,
            (Some(_), Some(link)) => link.acked(),
            // Collector mode before the uplink starts (the startup comparison): nothing is
            // acknowledged yet.
            (Some(_), None) => 0,
        };
        let releasable = {
            let spool = self.spool();
            done.min(spool.last_seq().unwrap_or(0)) > spool.acked_seq()
        };
        if !releasable && self.ledger.seq() == self.saved_seq {
            return Ok(());
        }
        tokio::task::block_in_place(|| -> Result<()> {
            self.ledger
                .save(&self.config.ledger_path())
                .context("saving the ledger")?;
            self.saved_seq = self.ledger.seq();
            shared::release(&mut self.spool(), done).context("acknowledging spool records")?;
            Ok(())
        })?;
        self.publish_status();
        Ok(())
    }

    fn publish_status(&self) {
        let m = &self.shared.metrics;
        let unwatched = self.watcher.unwatched();
        let watched = self.watcher.watched();
        let ratio = if watched + unwatched.len() == 0 {
            1.0
        } else {
            watched as f64 / (watched + unwatched.len()) as f64
        };
        m.watched_dirs.set(watched as i64);
        m.unwatched_dirs.set(unwatched.len() as i64);
        m.coverage.set(ratio);
        let (spool_info, head) = {
            let spool = self.spool();
            let info = SpoolInfo {
                bytes: spool.size_bytes(),
                unacked: spool.unacked_count(),
                last_seq: spool.last_seq().unwrap_or(0),
                acked_seq: spool.acked_seq(),
            };
            (
                info,
                self.link.as_ref().map(|_| Head::of(&self.ledger, &spool)),
            )
        };
        if let (Some(link), Some(head)) = (&self.link, head) {
            link.publish(head);
        }
        m.spool_bytes.set(spool_info.bytes as i64);
        m.spool_unacked.set(spool_info.unacked as i64);
        let mut by_severity = [0i64; 3];
        for item in self.ledger.items() {
            if let DriftItem::File(d) = item {
                by_severity[d.severity.index()] += 1;
            }
        }
        for s in Severity::ALL {
            m.drift_items
                .get_or_create(&SeverityLabel {
                    severity: s.as_str(),
                })
                .set(by_severity[s as usize]);
        }
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        status.state = if unwatched.is_empty() {
            "watching"
        } else {
            "degraded"
        }
        .into();
        status.seq = self.ledger.seq();
        status.drift_count = self.ledger.len();
        status.drift = self.ledger.items().cloned().collect();
        status.coverage = Coverage {
            watched_dirs: watched,
            unwatched_dirs: unwatched.len(),
            ratio,
            unwatched_sample: unwatched.iter().take(20).map(|p| display_path(p)).collect(),
        };
        status.spool = spool_info;
        status.evaluation_errors = self.errors;
    }

    /// Drains: the uplink waits briefly for the collector's last acknowledgements, everything
    /// printed or acknowledged is released, the ledger is saved.
    async fn finish(&mut self) -> Result<()> {
        if let Some(rescan) = self.rescan.take() {
            rescan.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(link) = self.link.as_mut() {
            link.stop().await;
        }
        // Everything printed or acknowledged is released; the ledger is saved whatever
        // happened.
        self.checkpoint()?;
        tokio::task::block_in_place(|| self.ledger.save(&self.config.ledger_path()))
            .context("saving the ledger")
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Evaluates one path against the baseline.
fn evaluate_path(
    root: &Path,
    rules: &Rules,
    entries: &Entries,
    path: &Path,
) -> Result<Option<FileDrift>, String> {
    if !rules.in_scope(path) {
        return Ok(None);
    }
    let expected = entries.get(path);
    let actual =
        scan::scan_one(root, rules, path, expected.as_ref(), false).map_err(|e| e.error)?;
    Ok(evaluate::compare(
        path,
        expected.as_ref(),
        actual.as_ref(),
        rules,
    ))
}

/// Everything that must hold before a configuration can run: the baseline reads, verifies
/// against the configured key, and carries valid rules; the collector's TLS material parses
/// (the rest of the collector settings, the identity file included, is checked by
/// [`AgentConfig::load`]). `validate`, start-up and SIGHUP all go through here, so what passes
/// `validate` runs.
pub fn preflight(config: &AgentConfig) -> Result<(LoadedBaseline, Rules)> {
    if let Some(collector) = &config.collector {
        ship::endpoint(collector)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .context("collector")?;
    }
    let baseline = crate::fsutil::load_baseline(&config.baseline, config.public_key.as_deref())?;
    let rules = baseline_rules(&baseline)?;
    Ok((baseline, rules))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))
}
