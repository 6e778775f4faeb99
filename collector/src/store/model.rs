//! What the store keeps and answers, in its own types: the query side turns them into the API's
//! messages, the ingest side builds them from the agents'. Drift items are kept as their
//! canonical encoding (`drift.proto`), the form their digests are computed over.

use std::collections::BTreeMap;

use super::{Millis, Severity, Transition};

/// Who a host says it is (its hello), as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// Where the identity came from: identity_file, cloud_init, imds, machine_id.
    pub source: String,
    pub hostname: String,
    pub cloud: String,
    pub region: String,
    pub availability_zone: String,
    pub instance_id: String,
    pub image_id: String,
    pub private_ip: String,
    pub machine_id_hash: String,
    pub user_data_sha1: String,
    pub tags: BTreeMap<String, String>,
    pub account_id: String,
}

/// Where a history row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// An agent's event, with its sequence number.
    Stream,
    /// Derived when a snapshot replaced the host's set.
    Snapshot,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::Snapshot => "snapshot",
        }
    }

    pub fn parse(text: &str) -> Option<Source> {
        match text {
            "stream" => Some(Source::Stream),
            "snapshot" => Some(Source::Snapshot),
            _ => None,
        }
    }
}

/// One stored transition: a row of the history, and what the live feed carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub host: String,
    /// 0 for transitions derived from a snapshot.
    pub seq: u64,
    pub transition: Transition,
    pub observed_at: Millis,
    pub received_at: Millis,
    /// The path, or `package:NAME:ARCH`.
    pub subject: String,
    pub severity: Severity,
    /// The item's canonical encoding; for `resolved`, the item that was resolved.
    pub item: Vec<u8>,
    pub source: Source,
}

/// A path drifted on some hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSummary {
    pub path: String,
    pub hosts: u64,
    pub max_severity: Severity,
    /// When the earliest and the latest current item for this path were observed.
    pub first_observed: Millis,
    pub last_observed: Millis,
}

/// Identical changes: the same subject changed the same way on several hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Hex, from the subject, the kind and the expected and actual states.
    pub cause: String,
    pub subject: String,
    pub kind: String,
    pub severity: Severity,
    pub changed: Vec<String>,
    /// The hosts with the change, sorted: all of them, or the first of them when the query
    /// capped their number.
    pub hosts: Vec<String>,
    /// How many hosts have the change.
    pub host_count: u64,
    /// One item of the group, encoded: the first host's.
    pub example: Vec<u8>,
}

/// One host and its current items.
#[derive(Clone, Debug)]
pub struct HostDetail {
    pub host: super::ListedHost,
    /// Canonical encodings, security first, then by subject.
    pub items: Vec<Vec<u8>>,
}
