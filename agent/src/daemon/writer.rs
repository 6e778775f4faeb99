//! The single writer to the ledger and the spool: path evaluations become ledger transitions,
//! and every transition (from here, from a rescan or from the package diff) becomes a spool
//! record through [`Session::emit`], appended and fsynced before anything else sees it, then
//! printed (standalone) or left for the shipper. Checkpoints save the ledger and release what
//! was printed or acknowledged; a spool full of unacknowledged records is compacted. All of it
//! runs on the session's task, in order.

use std::io::Write as _;
use std::sync::MutexGuard;
use std::time::Duration;

use anyhow::{Context as _, Result};
use driftwatch_proto::text::display_path;

use super::Session;
use super::batch::Evaluation;
use crate::ledger::{DriftItem, Event, Subject, now_rfc3339};
use crate::spool::shared;
use crate::spool::{Spool, record};
use crate::telemetry::TransitionLabel;

/// How long after an event the ledger is saved and printed records are released: off the
/// event path, so a burst costs one checkpoint, not one per batch.
pub(super) const CHECKPOINT_DELAY: Duration = Duration::from_secs(1);

impl Session {
    /// Feeds evaluated paths to the ledger and emits the transitions. A path that could not be
    /// evaluated keeps its previous state (and is counted and logged).
    pub(super) async fn apply_evaluations(&mut self, results: Vec<Evaluation>) -> Result<()> {
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
                    tracing::warn!(path = %display_path(&path), error = %e.error, "Cannot evaluate path.");
                }
            }
        }
        self.emit(events).await
    }

    /// Makes events durable (spool append, fsync), publishes the status, then prints them
    /// (standalone). The ledger save and the spool release follow in a deferred checkpoint.
    pub(super) async fn emit(&mut self, events: Vec<Event>) -> Result<()> {
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
    pub(super) fn flush_unacked(&mut self) -> Result<()> {
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
    pub(super) fn checkpoint(&mut self) -> Result<()> {
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
        // On a full disk the ledger stays in memory, and so do the acknowledgements (the
        // spool is then unavailable): the disk keeps a consistent older state.
        self.save_ledger()?;
        tokio::task::block_in_place(|| shared::release(&mut self.spool(), done))
            .context("acknowledging spool records")?;
        self.publish_status();
        Ok(())
    }

    /// Collector mode, spool full of records the collector has not acknowledged: drops them
    /// all (after saving the ledger, which holds their effect). The collector then cannot be
    /// brought up to date from the records and gets a snapshot of the current drift set: the
    /// current state survives, the intermediate transitions do not.
    fn compact_spool(&mut self) -> Result<()> {
        self.save_ledger()?;
        tokio::task::block_in_place(|| -> Result<()> {
            let dropped = self.spool().compact(&[]).context("compacting the spool")?;
            tracing::error!(
                dropped,
                max_size = self.config.spool_max_bytes,
                "The spool filled up with events the collector has not acknowledged; dropped \
                 them. The collector will get a snapshot of the current drift set instead, \
                 without the transitions in between."
            );
            Ok(())
        })?;
        self.publish_status();
        Ok(())
    }

    /// The spool, locked (see [`shared::lock`]).
    pub(super) fn spool(&self) -> MutexGuard<'_, Spool> {
        shared::lock(&self.spool)
    }
}
