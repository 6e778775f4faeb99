//! The daemon's side of shipping (collector mode): starting the uplink, acting on its
//! acknowledgements and snapshot requests, and the stream id. (The full-spool policy is the
//! writer's: `compact_spool` in `writer.rs`.)

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;

use super::Session;
use super::faults::quarantine_stream_id;
use super::writer::CHECKPOINT_DELAY;
use crate::config::AgentConfig;
use crate::ledger::Ledger;
use crate::ship::{self, Link, LinkEvent};
use crate::telemetry::Metrics;

impl Session {
    /// Starts the uplink (after the startup comparison: the collector hears from an agent that
    /// knows the host's drift).
    pub(super) fn start_link(
        &mut self,
        stream_id: String,
        cancel: CancellationToken,
    ) -> Result<()> {
        let Some(collector) = self.config.collector.clone() else {
            return Ok(());
        };
        let header = &self.baseline.baseline.header;
        let settings = ship::Settings {
            identity: crate::ship::identity::Sources {
                root: self.config.root.clone(),
                identity_file: collector.identity_file.clone(),
                metadata_service: collector
                    .metadata_service
                    .then_some(crate::ship::identity::IMDS_ADDR),
            },
            collector,
            stream_id,
            baseline_id: self.baseline.id.to_hex(),
            image_name: header.image_name.clone(),
            image_version: header.image_version.clone(),
        };
        let head = self.head();
        let link = Link::start(
            settings,
            self.spool.clone(),
            head,
            self.shared.clone(),
            cancel,
        )
        .context("collector")?;
        self.link = Some(link);
        self.publish_status();
        Ok(())
    }

    /// Acts on the uplink: an acknowledgement schedules a checkpoint (coalesced, like
    /// standalone printing); a snapshot request is answered from the ledger, here, so the
    /// snapshot is one consistent state.
    pub(super) fn handle_link(&mut self, event: LinkEvent) -> Result<()> {
        let save_soon = match event {
            LinkEvent::Acked(_) => true,
            // A jump in numbering must reach the saved ledger, or a restart would reuse the
            // numbers the collector now holds.
            LinkEvent::Snapshot(request) => ship::answer(request, &mut self.ledger),
        };
        if save_soon && self.checkpoint_due.is_none() {
            self.checkpoint_due = Some(tokio::time::Instant::now() + CHECKPOINT_DELAY);
        }
        self.publish_status();
        Ok(())
    }
}

/// The uplink's next event (forever pending when standalone).
pub(super) async fn next_link_event(link: &mut Option<Link>) -> LinkEvent {
    match link {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

/// Reads the stream id, or starts a new stream: when there is none yet (or it is damaged: it is
/// then quarantined), when `fresh` says why the spool or ledger starts afresh (first start,
/// lost, quarantined or rebuilt state), or when the ledger does not carry the same id (lost,
/// reset, or written before streams existed). Returns the id and whether it is new (the ledger,
/// which now carries it, must then be saved). On a full disk the new id is not written: the
/// next start begins yet another stream, which costs the collector one more snapshot.
pub(super) fn stream_id(
    config: &AgentConfig,
    fresh: Option<&'static str>,
    ledger: &mut Ledger,
    metrics: &Metrics,
    faults: &mut Vec<String>,
) -> Result<(String, bool)> {
    let path = config.state_dir.join("stream-id");
    // Ok(None): no file; Err: what is wrong with it.
    let stored = match crate::fsutil::read_bounded(&path, 4096) {
        Ok(bytes) => match std::str::from_utf8(&bytes).map(str::trim) {
            Ok(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(id.to_owned()))
            }
            _ => Err("not 32 hex digits".to_owned()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e.to_string()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let stored = stored.unwrap_or_else(|what| {
        faults.push(quarantine_stream_id(&path, &what, config));
        metrics.state_quarantined.inc();
        None
    });
    let reason = match (stored, fresh) {
        (None, _) => "no stream yet",
        (Some(_), Some(fresh)) => fresh,
        (Some(id), None) if ledger.stream_id() != id => "the ledger does not continue the stream",
        (Some(id), None) => return Ok((id, false)),
    };
    let id = ship::new_stream_id().context("generating a stream id")?;
    match crate::fsutil::write_atomically(&path, format!("{id}\n").as_bytes(), 0o600) {
        Ok(()) => {}
        Err(error) if crate::fsutil::is_storage_full(&error) => {
            tracing::warn!(path = %path.display(), "Cannot save the new stream id: the disk is full.");
        }
        Err(error) => return Err(error).with_context(|| format!("writing {}", path.display())),
    }
    ledger.set_stream_id(id.clone());
    tracing::info!(stream_id = %id, reason, seq = ledger.seq(), "Starting a new event stream.");
    Ok((id, true))
}
