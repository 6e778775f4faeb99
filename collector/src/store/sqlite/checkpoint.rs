//! WAL checkpoints on a thread of their own.
//!
//! A checkpoint copies committed pages from the WAL back into the database file and fsyncs
//! it. SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on
//! the writer's thread: every few group commits, ingest would stall for that copy and fsync.
//! Here a thread runs passive checkpoints (which never block the writer or readers) shortly
//! after commits; the writer's own automatic checkpoint stays as a much higher safety net
//! ([`SAFETY_NET_PAGES`]), should this thread fall behind.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, Context as _, lock};
use crate::store::Result;

/// WAL pages after which the writer checkpoints by itself (about 256 MiB).
pub(super) const SAFETY_NET_PAGES: i64 = 65_536;
/// The pause between two checkpoints: pages written again meanwhile are copied once, and
/// the checkpointer leaves most of a core to ingest and queries.
const PAUSE: Duration = Duration::from_millis(200);

/// The checkpointing thread; stopped and joined on drop.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Commits since the last checkpoint started.
    commits: u64,
    stop: bool,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context("opening the checkpoint connection")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .context("setting the busy timeout")?;
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &shared)
            })
            .map_err(|e| {
                crate::store::StoreError::Database(format!("starting the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread a commit added to the WAL.
    pub(super) fn committed(&self) {
        lock(&self.shared.state).commits += 1;
        self.shared.wake.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = lock(&shared.state);
            while state.commits == 0 && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.commits = 0;
        }
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "Checkpointed the SQLite WAL.")
            }
            // The writer's own checkpoints take over; nothing is lost, the WAL grows.
            Err(error) => tracing::warn!(%error, "Failed to checkpoint the SQLite WAL."),
        }
        let state = lock(&shared.state);
        let _ = shared
            .wake
            .wait_timeout_while(state, PAUSE, |s| !s.stop)
            .unwrap_or_else(PoisonError::into_inner);
    }
}
