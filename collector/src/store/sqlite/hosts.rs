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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::{Connection, OptionalExtension as _, Row};

use super::to_u64;
use crate::store::ReportedHost;
use crate::store::aggregates::join_image;
pub(super) use crate::store::aggregates::{Drift, HostRow, listing};

pub(super) const HOST_COLUMNS: &str = "host, hostname, identity_source, image_id, baseline_id, \
     agent_version, image_name, image_version, last_seq, first_seen, last_seen, n_security, \
     n_behavioral, n_cosmetic, since_security, since_behavioral, since_cosmetic";

/// Reads a row selected as [`HOST_COLUMNS`].
pub(super) fn read_row(r: &Row<'_>) -> rusqlite::Result<HostRow> {
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
    Ok(HostRow::new(
        reported,
        [r.get(11)?, r.get(12)?, r.get(13)?],
        [r.get(14)?, r.get(15)?, r.get(16)?],
    ))
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
            .query_map([], read_row)?
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
            match stmt.query_row([host], read_row).optional() {
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
