//! The spool as the agent shares it: one lock, and the release policy.
//!
//! The daemon's single writer appends, releases and compacts; the shipper only reads (one
//! bounded read per batch). Both go through [`lock`], and records leave the spool only through
//! [`release`]: never past what was printed (standalone) or what the collector acknowledged.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{Spool, SpoolError};

/// The spool, shared between the daemon (which writes and releases) and the shipper (which
/// reads). Critical sections are one append, one release or one bounded read.
pub type SharedSpool = Arc<Mutex<Spool>>;

/// Locks the spool; a panic elsewhere while holding it leaves a usable index (every spool
/// method validates before it changes anything), so poisoning is ignored.
pub fn lock(spool: &SharedSpool) -> MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases spool records up to `acked`: what the collector acknowledged (or, standalone, what
/// was printed). The caller has saved the ledger first (so a restart never replays released
/// records onto an older ledger). The acknowledged number can exceed the spool's last record
/// (a snapshot numbered after it). Returns whether anything was released.
pub fn release(spool: &mut Spool, acked: u64) -> Result<bool, SpoolError> {
    let upto = acked.min(spool.last_seq().unwrap_or(0));
    if upto <= spool.acked_seq() {
        return Ok(false);
    }
    spool.ack(upto)?;
    Ok(true)
}
