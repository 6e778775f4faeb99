//! Status publishing: after every change, the metrics (coverage, spool, drift by severity),
//! the local status (`driftwatch-agent status`, `/status`) and the head the shipper watches.

use std::path::Path;

use driftwatch_proto::baseline::LoadedBaseline;
use driftwatch_proto::text::display_path;

use super::Session;
use crate::evaluate::baseline::ImageInfo;
use crate::ledger::DriftItem;
use crate::rules::Severity;
use crate::ship::Head;
use crate::telemetry::{Coverage, SeverityLabel, Shared, SpoolInfo, Status};

impl Session {
    pub(super) fn publish_status(&self) {
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
        m.pending_dirs.set(self.watcher.pending_count() as i64);
        m.coverage.set(ratio);
        let hashes_pending = self.hasher.backlog();
        m.background_hashes.set(hashes_pending as i64);
        let (spool_info, head) = {
            let spool = self.spool();
            let info = SpoolInfo {
                state: match spool.unavailable() {
                    Some(why) => format!("unavailable: {why}"),
                    None => "durable".into(),
                },
                bytes: spool.size_bytes(),
                unacked: spool.unacked_count(),
                last_seq: spool.last_seq().unwrap_or(0),
                acked_seq: spool.acked_seq(),
                held: spool.held().0,
                quarantined: spool.quarantined(),
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
        m.spool_available
            .set(i64::from(spool_info.state == "durable"));
        m.spool_held.set(spool_info.held as i64);
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
        status.state = if !self.watcher.degraded() {
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
            pending_dirs: self.watcher.pending_count(),
            pending_sample: self.watcher.pending().take(20).map(display_path).collect(),
        };
        status.spool = spool_info;
        status.evaluation_errors = self.errors;
        status.hashes_pending = hashes_pending;
        status.faults.clone_from(&self.faults);
    }

    /// What the uplink needs to know: the ledger's seq, digest and size, the spool's end.
    pub(super) fn head(&self) -> Head {
        Head::of(&self.ledger, &self.spool())
    }
}

/// The status of a session that is starting: who it is, nothing known yet.
pub(super) fn publish_starting(
    shared: &Shared,
    started_at: &str,
    baseline: &LoadedBaseline,
    root: &Path,
) {
    let mut status = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    *status = Status {
        state: "starting".into(),
        pid: std::process::id(),
        started_at: started_at.to_owned(),
        baseline_id: baseline.id.to_hex(),
        image: Some(ImageInfo::of(baseline)),
        root: display_path(root),
        ..Status::default()
    };
}
