//! `driftwatch-agent run`: the daemon.
//!
//! ```text
//!  inotify ─► coalesce ─► evaluate (in place) ─► ledger ─► spool (fsync) ─► emit ─► ack
//!  timers  ─► rescan (throttled, low priority) ─┘        ▲                      │
//!  pkg db  ─► inventory diff ───────────────────────────┘    stdout (standalone) or ship
//! ```
//!
//! One task owns the ledger, the spool and the watcher, so every transition is decided in one
//! place and in order. Its parts, each an `impl Session` joined by the select loop here:
//!
//! - this module: `run` (signals, sessions, reload), [`preflight`], and `Session`: its start,
//!   its select loop and its drain;
//! - `batch.rs`: gathering inotify changes into an evaluation batch, and evaluating it;
//! - `writer.rs`: the single writer to ledger and spool (transitions, spool appends, printing
//!   when standalone, checkpoints, compaction);
//! - `status.rs`: status publishing (metrics, `/status`, the head the shipper watches);
//! - `hasher.rs`: large files hashed off the event path (a bounded queue, one low-priority
//!   thread), their results evaluated again here;
//! - `rescan.rs`: whole comparisons (the root, unwatched directories, the package inventory);
//! - `link.rs`: the daemon's side of shipping (starting the uplink, acknowledgements,
//!   snapshots, the stream id);
//! - `faults.rs`: faults degrade, never stop: damaged state files quarantined and rebuilt, a
//!   full disk waited out with the spool unavailable.
//!
//! The baseline's entries are held compact ([`Entries`]) for the session's life. With a
//! collector, the uplink task ([`crate::ship`]) reads the spool (shared behind a lock), asks
//! this task for snapshots of the ledger, and reports the collector's acknowledgements, which
//! this task turns into checkpoints. Start-up compares the whole root with the *baked
//! baseline* (the fast path of `check`), so changes made while the agent was stopped are
//! found; the persisted ledger only says what consumers were already told.
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

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use driftwatch_proto::baseline::LoadedBaseline;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Overrides};
use crate::errors::error_chain;
use crate::evaluate::RedactKey;
use crate::evaluate::baseline::{Entries, baseline_rules};
use crate::fsutil::host_path;
use crate::ledger::{Ledger, now_rfc3339};
use crate::rules::Rules;
use crate::scan::throttle::{self, Throttle};
use crate::ship::{self, Link};
use crate::spool::record;
use crate::spool::shared::SharedSpool;
use crate::telemetry::{self, Shared};
use crate::watch::Watcher;

mod batch;
mod faults;
mod hasher;
mod link;
mod rescan;
mod status;
mod writer;
use hasher::Hasher;
use link::{next_link_event, stream_id};
use rescan::{Rescan, wait_rescan};

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
    /// Tags the secret values redacted in diffs (`redact.key` in the state directory).
    redact_key: Arc<RedactKey>,
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
    /// Large files' hashes, off the event path.
    hasher: Hasher,
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
    /// What start-up found damaged and what it did about it (shown in the status).
    faults: Vec<String>,
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
        tighten_state_files(&config);
        let redact_key = match RedactKey::load_or_create(&config.state_dir) {
            Ok(key) => key,
            Err(error) if crate::fsutil::caused_by_full_disk(&error) => {
                tracing::warn!(error = %error_chain(&error),
                    "Cannot save a redaction key: the disk is full. Using one for this run only \
                     (redaction tags in diffs change at the next start).");
                RedactKey::ephemeral()?
            }
            Err(error) => return Err(error.into()),
        };
        let redact_key = Arc::new(redact_key);
        let mut faults = Vec::new();
        let spool_is_new = !config.spool_dir().exists();
        let (spool, recovery) = faults::open_spool(&config, &shared.metrics, &mut faults)?;
        if recovery.torn_bytes_dropped > 0 {
            tracing::warn!(
                bytes = recovery.torn_bytes_dropped,
                "Dropped a torn record at the spool's tail (crash or power loss)."
            );
        }
        let (mut ledger, ledger_rebuilt) =
            faults::load_ledger(&config, &shared.metrics, &mut faults)?;
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
        let saved_seq = ledger.seq();
        let fresh = if spool_is_new {
            Some("the spool is new")
        } else if !recovery.quarantined.is_empty() {
            Some("spool files were quarantined")
        } else if ledger_rebuilt {
            Some("the ledger was rebuilt")
        } else {
            None
        };
        let (stream_id, new_stream) =
            stream_id(&config, fresh, &mut ledger, &shared.metrics, &mut faults)?;

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

        status::publish_starting(&shared, started_at, &baseline, &config.root);
        if let Some(addr) = config.listen {
            let bound = telemetry::serve_metrics(addr, shared.clone(), cancel.clone())
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let addr_path = AgentConfig::status_addr_path(&config.state_dir);
            if let Err(error) =
                crate::fsutil::write_atomically(&addr_path, bound.to_string().as_bytes(), 0o600)
            {
                // Only a convenience for local tools: the listener is up all the same.
                tracing::warn!(path = %addr_path.display(), %error,
                    "Cannot write the metrics listener's address; the listener is up.");
            }
            tracing::info!(%bound, "Metrics listener up.");
        }
        if let Some(path) = &config.status_socket {
            match telemetry::serve_status(path, shared.clone(), cancel.clone()) {
                Ok(()) => tracing::info!(socket = %path.display(), "Status socket up (mode 0600)."),
                // A full disk may have no room for the socket's inode: watching matters more.
                Err(error) if crate::fsutil::is_storage_full(&error) => {
                    tracing::warn!(socket = %path.display(), %error,
                        "Cannot create the status socket: the disk is full. Running without it \
                         until the next start (metrics are still served).");
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("creating the status socket {}", path.display()));
                }
            }
        }

        let throttle = Arc::new(Throttle::new(config.hash_rate));
        let hasher = Hasher::start(config.root.clone(), rules.clone(), throttle.clone())
            .context("starting the hashing thread")?;
        let mut session = Session {
            throttle,
            hasher,
            config,
            baseline,
            entries,
            rules,
            redact_key,
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
            faults,
        };
        if new_stream {
            // The new stream id must reach the saved ledger (else the next start would begin
            // yet another stream); on a full disk it waits in memory like everything else.
            session.save_ledger()?;
        }
        // Standalone: anything the previous run appended but did not print. (With a collector,
        // the uplink sends whatever the collector does not have.)
        if session.config.collector.is_none() {
            session.flush_unacked()?;
        }
        // Watch first, then compare: a change during the comparison is seen by both, never by
        // neither.
        session.watcher.watch_recorded(&session.rules);
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
            pending = session.watcher.pending_count(),
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
        let mut storage_timer = tokio::time::interval(faults::RETRY_INTERVAL);
        // Ticks missed while the disk had room are not made up in a burst once it fills.
        storage_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                done = self.hasher.next() => self.apply_hash(done).await,
                event = next_link_event(&mut self.link) => self.handle_link(event),
                _ = rescan_timer.tick() => {
                    if self.rescan.is_none() {
                        self.periodic_rescans += 1;
                        let full_hash = self.periodic_rescans.is_multiple_of(u64::from(self.config.full_hash_every));
                        self.start_rescan(if full_hash { "full_hash" } else { "periodic" }, full_hash);
                    }
                    Ok(())
                }
                _ = degraded_timer.tick(), if self.watcher.degraded() => self.rescan_unwatched().await,
                _ = storage_timer.tick(), if self.storage_unavailable() => self.retry_storage(),
            };
            if let Err(e) = result {
                return SessionEnd::Failed(e);
            }
        }
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
        if !self.save_ledger()? {
            tracing::error!(path = %self.config.ledger_path().display(),
                "Stopping with the ledger unsaved (disk full): the next start rebuilds the drift \
                 set from the spool and a full comparison with the baseline.");
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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

/// Creates the state directory 0700 (whatever the umask). One that exists already is left as
/// it is, with a warning when others may enter it: it may be shared (`--state-dir /tmp/x`) and
/// is the operator's to change; what the agent keeps in it is private anyway (see
/// [`tighten_state_files`]).
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o7777),
            "The state directory is open to other users (the agent's files in it are 0600)."
        );
    }
    Ok(())
}

/// The files the agent writes in its state directory (beside the spool directory's, all of
/// them): never readable by others. Each is created 0600; one left more open by an older
/// version or by hand is tightened here, at start, with one warning. Symlinks are not
/// followed. The baseline, which the image pipeline puts there too, is not the agent's.
const STATE_FILES: &[&str] = &[
    "ledger.pb",
    "ledger.json",
    "stream-id",
    "status.addr",
    "quarantine",
];

fn tighten_state_files(config: &AgentConfig) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut paths: Vec<PathBuf> = STATE_FILES
        .iter()
        .map(|f| config.state_dir.join(f))
        .collect();
    paths.push(config.spool_dir());
    if let Ok(entries) = std::fs::read_dir(config.spool_dir()) {
        paths.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    let mut tightened = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if !(meta.is_file() || meta.is_dir()) || mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => tightened.push(path.display().to_string()),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "Failed to make a state file private.")
            }
        }
    }
    if !tightened.is_empty() {
        tracing::warn!(
            files = %tightened.join(", "),
            "State files were readable by other users; made them private (0600, directories 0700)."
        );
    }
}

#[cfg(test)]
mod tests;
