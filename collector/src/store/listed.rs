//! Hosts as a listing shows them: what each reported about itself, and what a query found.

use std::sync::{Arc, OnceLock};

use super::{Millis, Severity};

/// What a host reported about itself, as listings show it. The store makes a new one whenever
/// the host's row changes, and hands out the same one (shared) until then.
#[derive(Debug, Default)]
pub struct ReportedHost {
    /// The host's identity.
    pub host: String,
    pub hostname: String,
    pub identity_source: String,
    /// "name version" of the baked image, and the cloud image id.
    pub image: String,
    pub image_id: String,
    pub baseline_id: String,
    pub agent_version: String,
    pub last_seq: u64,
    pub first_seen: Millis,
    pub last_seen: Millis,
    /// The query side's encoding of these fields for listings (`query::listing`), made the
    /// first time the host is listed after a change. The store never reads it.
    pub listing: OnceLock<Box<[u8]>>,
}

/// Whether a host is heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStatus {
    /// Heartbeating.
    Online,
    /// Not heard from within the silence threshold.
    Silent,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Online => "online",
            HostStatus::Silent => "silent",
        }
    }
}

/// What a query found of a host's drift (the items that match its filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub drift_count: u64,
    /// The worst severity among them; `None` when clean.
    pub max_severity: Option<Severity>,
    /// When the oldest of them was observed.
    pub drifted_since: Option<Millis>,
    pub status: HostStatus,
}

/// A host in a listing.
#[derive(Clone, Debug)]
pub struct ListedHost {
    pub reported: Arc<ReportedHost>,
    pub found: Found,
}
