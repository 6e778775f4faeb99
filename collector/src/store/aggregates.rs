//! A host's listing row and its drift as a query counts it: what every backend computes the
//! same way (SQLite from its in-memory mirror, PostgreSQL from the `hosts` table).

use std::cmp::Reverse;
use std::sync::Arc;

use super::{Found, HostQuery, HostStatus, ItemFilter, ListedHost, Millis, ReportedHost, Severity};

/// Counts are stored as integers and never negative.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A `hosts` row as listings show it.
#[derive(Debug)]
pub struct HostRow {
    pub reported: Arc<ReportedHost>,
    /// Current items per severity (indexed by [`Severity`]) and the oldest `observed_at`.
    counts: [i64; 3],
    since: [Option<Millis>; 3],
}

impl HostRow {
    pub fn new(reported: ReportedHost, counts: [i64; 3], since: [Option<Millis>; 3]) -> HostRow {
        HostRow {
            reported: Arc::new(reported),
            counts,
            since,
        }
    }

    pub fn host(&self) -> &str {
        &self.reported.host
    }

    /// The host's drift as a filter without a path counts it, from the cached aggregates.
    pub fn cached_drift(&self, filter: &ItemFilter) -> Drift {
        let mut drift = Drift::default();
        for severity in Severity::ALL {
            let i = severity as usize;
            if filter.min_severity.is_none_or(|min| severity <= min) && self.counts[i] > 0 {
                drift.count += to_u64(self.counts[i]);
                drift.worst = drift.worst.or(Some(severity));
                if let Some(since) = self.since[i] {
                    drift.since = Some(drift.since.map_or(since, |s| s.min(since)));
                }
            }
        }
        drift
    }

    /// The host listed with `drift`.
    pub fn listed(&self, drift: Drift, query: &HostQuery) -> ListedHost {
        let silent_after = i64::try_from(query.silent_after.as_millis()).unwrap_or(i64::MAX);
        let online = query.now.saturating_sub(self.reported.last_seen) <= silent_after;
        ListedHost {
            reported: self.reported.clone(),
            found: Found {
                drift_count: drift.count,
                max_severity: drift.worst,
                drifted_since: drift.since,
                status: if online {
                    HostStatus::Online
                } else {
                    HostStatus::Silent
                },
            },
        }
    }
}

/// "name version", or whichever of the two is known.
pub fn join_image(mut name: String, version: &str) -> String {
    if !version.is_empty() {
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(version);
    }
    name
}

/// A host's matching items, summed up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drift {
    pub count: u64,
    pub worst: Option<Severity>,
    pub since: Option<Millis>,
}

impl Drift {
    pub fn add(&mut self, severity: Severity, observed_at: Millis) {
        self.count += 1;
        self.worst = Some(self.worst.map_or(severity, |w| w.min(severity)));
        self.since = Some(self.since.map_or(observed_at, |s| s.min(observed_at)));
    }

    /// Worst first, then most items (clean hosts last).
    fn sort_key(&self) -> (usize, Reverse<u64>) {
        (
            self.worst.map_or(Severity::ALL.len(), |s| s as usize),
            Reverse(self.count),
        )
    }
}

/// The listing of `rows` (in identity order, as [`HostsView::rows`] gives them), each with its
/// drift as the query counts it: worst first, then most items, then by identity; only
/// diverged hosts when the query asks.
pub fn listing(rows: &[Arc<HostRow>], drifts: &[Drift], query: &HostQuery) -> Vec<ListedHost> {
    // A stable sort of indices by drift alone keeps the identity order among equals, without
    // comparing 10,000 strings scattered over the heap.
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| !query.diverged || drifts[i].count > 0)
        .collect();
    order.sort_by_key(|&i| drifts[i].sort_key());
    order
        .into_iter()
        .map(|i| rows[i].listed(drifts[i], query))
        .collect()
}
