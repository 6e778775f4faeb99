//! Leases on fleet-wide work ([`Store::lease`](crate::store::Store::lease)): a session-level
//! advisory lock, held by a connection of its own.
//!
//! A candidacy is a thread with its connection: it tries the lock every [`RETRY`] until it
//! gets it, then checks the connection every [`RETRY`] while it holds it. The server releases
//! a session's advisory locks when the session ends, so a collector that dies (its
//! connections closed by its kernel) frees its leases at once, and another collector takes
//! them at its next try. A collector that loses its connection stops claiming the lease at
//! once ([`Lease::held`] turns false) and campaigns again. (Cut off by the network instead,
//! its session may outlive it on the server until TCP gives up on it: the lease then moves
//! late, never to two collectors at once.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::tx::Manager;
use crate::store::Lease;

/// How often a candidate tries for the lease, and a holder checks its connection.
const RETRY: Duration = Duration::from_secs(1);

/// A lease a thread campaigns for.
pub(super) struct Candidacy {
    held: Arc<AtomicBool>,
    /// Cancelled when the lease is dropped: the thread releases it and ends.
    give_up: CancellationToken,
}

impl Lease for Candidacy {
    fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Candidacy {
    fn drop(&mut self) {
        self.give_up.cancel();
    }
}

/// The advisory lock key of a lease: "driftwatch lease NAME", hashed to 64 bits.
pub(super) fn key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("driftwatch lease {name}"));
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Starts campaigning for the lease `name`.
pub(super) fn campaign(manager: Manager, name: &str) -> Candidacy {
    let held = Arc::new(AtomicBool::new(false));
    let give_up = CancellationToken::new();
    let lease = Candidacy {
        held: held.clone(),
        give_up: give_up.clone(),
    };
    let name = name.to_owned();
    let key = key(&name);
    let thread = format!("lease-{name}");
    let spawned = std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            // What the log last said: held or standing by.
            let mut was_held = None;
            while !give_up.is_cancelled() {
                let holds = manager.client().and_then(|mut client| {
                    let mut holds = false;
                    while !give_up.is_cancelled() {
                        holds = if holds {
                            client.simple_query("").map(|_| true)?
                        } else {
                            client
                                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
                                .get(0)
                        };
                        held.store(holds, Ordering::SeqCst);
                        if was_held != Some(holds) {
                            if holds {
                                tracing::info!(lease = %name, "This collector took the lease.");
                            } else {
                                tracing::info!(lease = %name, "Another collector holds the lease; this one stands by.");
                            }
                            was_held = Some(holds);
                        }
                        std::thread::sleep(RETRY);
                    }
                    // Closing the session releases the lock.
                    drop(client);
                    Ok(())
                });
                held.store(false, Ordering::SeqCst);
                if let Err(error) = holds {
                    let error = super::connect::describe(&error);
                    if was_held == Some(true) {
                        tracing::warn!(lease = %name, %error, "Lost the lease's database connection; no longer holding it.");
                    } else {
                        tracing::debug!(lease = %name, %error, "Cannot campaign for the lease.");
                    }
                    was_held = None;
                    std::thread::sleep(RETRY);
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "Cannot start a lease thread: this collector never takes the lease.");
    }
    lease
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_differ_per_name_and_stay_put() {
        assert_ne!(key("state-sources"), key("alerts"));
        assert_eq!(key("state-sources"), key("state-sources"));
    }
}
