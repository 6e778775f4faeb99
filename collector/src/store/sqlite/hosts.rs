//! The hosts' listing columns, mirrored in memory ([`HostsView`]).
//!
//! `driftwatch hosts` reads every host. From SQLite, 10,000 rows of the 28-column `hosts`
//! table cost about as much as the rest of the answer together (stepping through the rows and
//! copying eight strings out of each: ≈ 18 ms of the 50 ms the listing may take with 10,000
//! hosts, on this project's 2-core reference machine). The rows are small, so the store keeps
//! the columns a listing shows in memory ([`ReportedHost`], shared until the host changes, so
//! the query side encodes it once per change), with the drift aggregates beside them:
//!
//! - loaded when the store opens;
//! - refreshed right after each commit, for the hosts that commit touched, from the writer's
//!   connection while the writer lock is still held, so refreshes land in commit order and a
//!   listing never shows a host older than one it showed before;
//! - if a refresh fails (a read failing right after a commit), marked stale and rebuilt whole,
//!   under the writer lock, by the next listing.
//!
//! A listing reads the mirror and no database page. Queries that also read items (a path
//! filter, one host's detail) read the items in a read transaction; a host's detail reads its
//! row in that same transaction.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::{Connection, OptionalExtension as _, Row};

use super::to_u64;
use crate::store::{
    Found, HostQuery, HostStatus, ItemFilter, ListedHost, Millis, ReportedHost, Severity,
};

pub(super) const HOST_COLUMNS: &str = "host, hostname, identity_source, image_id, baseline_id, \
     agent_version, image_name, image_version, last_seq, first_seen, last_seen, n_security, \
     n_behavioral, n_cosmetic, since_security, since_behavioral, since_cosmetic";

/// A `hosts` row as listings show it.
#[derive(Debug)]
pub(super) struct HostRow {
    pub reported: Arc<ReportedHost>,
    /// Current items per severity (indexed by [`Severity`]) and the oldest `observed_at`.
    counts: [i64; 3],
    since: [Option<Millis>; 3],
}

impl HostRow {
    /// Reads the row selected as [`HOST_COLUMNS`].
    pub fn read(r: &Row<'_>) -> rusqlite::Result<HostRow> {
        let reported = ReportedHost {
            host: r.get(0)?,
            hostname: r.get(1)?,
            identity_source: r.get(2)?,
            image_id: r.get(3)?,
            baseline_id: r.get(4)?,
            agent_version: r.get(5)?,
            image: join_image(r.get(6)?, r.get_ref(7)?.as_str()?),
            last_seq: to_u64(r.get(8)?),
            first_seen: r.get(9)?,
            last_seen: r.get(10)?,
            listing: Default::default(),
        };
        Ok(HostRow {
            reported: Arc::new(reported),
            counts: [r.get(11)?, r.get(12)?, r.get(13)?],
            since: [r.get(14)?, r.get(15)?, r.get(16)?],
        })
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
fn join_image(mut name: String, version: &str) -> String {
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
pub(super) struct Drift {
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
pub(super) fn listing(
    rows: &[Arc<HostRow>],
    drifts: &[Drift],
    query: &HostQuery,
) -> Vec<ListedHost> {
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

/// The in-memory mirror of every host's [`HostRow`] (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct HostsView {
    rows: RwLock<BTreeMap<String, Arc<HostRow>>>,
    /// A refresh failed: the mirror may miss a commit until it is rebuilt.
    stale: AtomicBool,
}

impl HostsView {
    /// Replaces the whole mirror with the table as `conn` sees it. The caller holds the writer
    /// lock (or is opening the store), so no commit lands in between.
    pub fn load(&self, conn: &Connection) -> rusqlite::Result<()> {
        let rows = conn
            .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts"))?
            .query_map([], HostRow::read)?
            .map(|row| row.map(|row| (row.host().to_owned(), Arc::new(row))))
            .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
        *self.rows.write().unwrap_or_else(PoisonError::into_inner) = rows;
        self.stale.store(false, Ordering::Release);
        Ok(())
    }

    /// Re-reads `hosts` after a commit, from the writer's connection (the caller holds the
    /// writer lock). A failure marks the mirror stale rather than failing the committed write.
    pub fn refresh<'h>(&self, conn: &Connection, hosts: impl IntoIterator<Item = &'h str>) {
        let mut stmt = match conn
            .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE host = ?1"))
        {
            Ok(stmt) => stmt,
            Err(e) => return self.failed(&e),
        };
        let mut fresh = Vec::new();
        for host in hosts {
            match stmt.query_row([host], HostRow::read).optional() {
                Ok(row) => fresh.push((host, row)),
                Err(e) => return self.failed(&e),
            }
        }
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        for (host, row) in fresh {
            match row {
                Some(row) => rows.insert(host.to_owned(), Arc::new(row)),
                None => rows.remove(host),
            };
        }
    }

    fn failed(&self, e: &rusqlite::Error) {
        tracing::warn!(
            error = %e,
            "Could not re-read hosts after a commit; the host listing is rebuilt on next use."
        );
        self.stale.store(true, Ordering::Release);
    }

    /// Whether a refresh failed since the last [`load`](Self::load).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Every host's row, by identity.
    pub fn rows(&self) -> Vec<Arc<HostRow>> {
        let rows = self.rows.read().unwrap_or_else(PoisonError::into_inner);
        rows.values().cloned().collect()
    }
}
