//! Faults degrade, never stop. A damaged state file is moved aside into `STATE/quarantine/`
//! (timestamped) and rebuilt: spool files by the spool itself ([`Spool::open`]), the ledger and
//! the stream id here; either way the agent starts a new stream, so the collector gets a
//! snapshot of the drift set the startup comparison rebuilt. A full disk makes the spool
//! unavailable (events held in memory and still sent, the ledger kept in memory), retried
//! every [`RETRY_INTERVAL`] until space returns. Every such fault is logged with the file, what
//! is wrong and what was done, counted in the metrics and listed in the status.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use driftwatch_proto::text::display_path;

use super::Session;
use crate::config::AgentConfig;
use crate::fsutil::{caused_by_full_disk, quarantine};
use crate::ledger::{Ledger, LedgerError};
use crate::spool::{Recovery, Spool, SpoolConfig};
use crate::telemetry::Metrics;

/// How often an unavailable spool (a full disk) tries to write again.
pub(super) const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Opens the spool, quarantining corrupt files (see [`Spool::open`]); each is counted and
/// added to `faults`.
pub(super) fn open_spool(
    config: &AgentConfig,
    metrics: &Metrics,
    faults: &mut Vec<String>,
) -> Result<(Spool, Recovery)> {
    let (spool, recovery) = Spool::open(SpoolConfig {
        dir: config.spool_dir(),
        max_bytes: config.spool_max_bytes,
        segment_bytes: (config.spool_max_bytes / 16).clamp(64 << 10, 4 << 20),
        quarantine: Some(config.quarantine_dir()),
    })
    .with_context(|| format!("opening the spool in {}", config.spool_dir().display()))?;
    for q in &recovery.quarantined {
        let message = q.message(resync(config));
        tracing::error!("{message}");
        metrics.spool_quarantined.inc();
        faults.push(message);
    }
    Ok((spool, recovery))
}

/// Loads the ledger; a damaged one (`ledger.pb`, or an old `ledger.json`) is moved to
/// quarantine and the agent starts from an empty one, which the startup comparison fills.
/// Returns whether one was quarantined (the stream must then start afresh).
pub(super) fn load_ledger(
    config: &AgentConfig,
    metrics: &Metrics,
    faults: &mut Vec<String>,
) -> Result<(Ledger, bool)> {
    let mut rebuilt = false;
    // At most the two files can be damaged.
    for _ in 0..3 {
        match Ledger::load_or_upgrade(&config.ledger_path(), &config.legacy_ledger_path()) {
            Ok(ledger) => return Ok((ledger, rebuilt)),
            Err(LedgerError::Corrupt { path, what }) => {
                let moved_to = quarantine(&path, &config.quarantine_dir()).with_context(|| {
                    format!("moving the damaged ledger {} aside", path.display())
                })?;
                let message = format!(
                    "Ledger {} is damaged ({what}); moved it to {}; the drift set is rebuilt \
                     from a full comparison with the baseline, and {} (new stream).",
                    display_path(&path),
                    display_path(&moved_to),
                    resync(config)
                );
                tracing::error!("{message}");
                metrics.state_quarantined.inc();
                faults.push(message);
                rebuilt = true;
            }
            Err(e) => return Err(e).context("loading the ledger"),
        }
    }
    anyhow::bail!(
        "the ledger in {} stays damaged after quarantining it",
        config.state_dir.display()
    )
}

/// How consumers catch up after state was lost: what the messages above end with.
fn resync(config: &AgentConfig) -> &'static str {
    if config.collector.is_some() {
        "the collector gets a snapshot instead"
    } else {
        "the start-up comparison emits the current drift again"
    }
}

/// Moves a malformed `stream-id` aside; the caller starts a new stream.
pub(super) fn quarantine_stream_id(path: &Path, what: &str, config: &AgentConfig) -> String {
    let action = match quarantine(path, &config.quarantine_dir()) {
        Ok(to) => format!("moved it to {}", display_path(&to)),
        Err(error) => format!("could not move it aside ({error})"),
    };
    let message = format!(
        "Stream id file {} is damaged ({what}); {action}; starting a new stream ({}).",
        display_path(path),
        resync(config)
    );
    tracing::error!("{message}");
    message
}

impl Session {
    /// Saves the ledger; on a full disk, keeps it in memory and makes the spool unavailable
    /// (nothing is acknowledged on disk until the ledger is saved), and returns `Ok(false)`.
    pub(super) fn save_ledger(&mut self) -> Result<bool> {
        let path = self.config.ledger_path();
        let saved = tokio::task::block_in_place(|| self.ledger.save(&path));
        match saved {
            Ok(()) => {
                self.saved_seq = self.ledger.seq();
                Ok(true)
            }
            Err(error) if caused_by_full_disk(&error) => {
                let mut spool = self.spool();
                if spool.unavailable().is_none() {
                    tracing::warn!(path = %display_path(&path),
                        "Cannot save the ledger: the disk is full. It is kept in memory, the \
                         spool is unavailable, and both are written once space returns.");
                }
                spool.set_unavailable("disk full");
                Ok(false)
            }
            Err(error) => Err(error).context("saving the ledger"),
        }
    }

    /// While the spool is unavailable: tries again to save the ledger, then to write the held
    /// records and acknowledgements; once both work, a checkpoint releases what was
    /// acknowledged meanwhile.
    pub(super) fn retry_storage(&mut self) -> Result<()> {
        if self.save_ledger()? {
            let resumed = tokio::task::block_in_place(|| self.spool().resume())
                .context("writing the held events to the spool")?;
            if resumed {
                self.checkpoint()?;
            }
        }
        self.publish_status();
        Ok(())
    }

    /// Whether the spool is unavailable (a full disk).
    pub(super) fn storage_unavailable(&self) -> bool {
        self.spool().unavailable().is_some()
    }
}
