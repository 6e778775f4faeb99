//! Hashing large files off the event path.
//!
//! A regular file above `hashing.background_above` (64 MiB by default) that changed is not
//! hashed where its event is evaluated: its drift is emitted at once with the hash pending
//! ([`crate::evaluate::compare_unhashed`]), and the path is queued here. One thread, at low CPU
//! and IO priority, hashes the queue in 256 KiB chunks through the rescans' rate limit
//! (`hashing.rate`, one bucket for both), and hands each result back to the session, which
//! evaluates the path again with its hash (a follow-up `changed`, or `resolved`).
//!
//! - A path is hashed once it has been quiet for [`SETTLE`]: every change to it (the session
//!   submits it again on each event) pushes its start back, and stops a hash in progress, so a
//!   file still being written is hashed once, when it settles. A path evaluated again without
//!   needing a background hash (deleted, small again) leaves the queue, and its hash stops.
//! - The queue is bounded ([`MAX_QUEUED`] paths); a path that does not fit is dropped and
//!   counted (`driftwatch_agent_background_hashes_dropped_total`): its drift keeps the hash
//!   pending until the next rescan hashes it.
//! - Idle, the thread sleeps on a condition variable: no timer, no polling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use driftwatch_proto::baseline::Entry;

use crate::rules::Rules;
use crate::scan::throttle::{self, Throttle};
use crate::scan::{self, ScanError};

/// How long a path must go without a change before it is hashed.
pub(super) const SETTLE: Duration = Duration::from_millis(500);
/// Most paths waiting to be hashed.
pub(super) const MAX_QUEUED: usize = 1024;
/// Results waiting for the session.
const RESULTS: usize = 16;

/// A finished background hash: the path's entry with its hash, or why it could not be read.
#[derive(Debug)]
pub(super) struct HashDone {
    pub path: PathBuf,
    pub result: Result<Entry, ScanError>,
}

/// The queue and its hashing thread. Dropping it stops the thread (between two chunks).
pub(super) struct Hasher {
    queue: Arc<Queue>,
    results: tokio::sync::mpsc::Receiver<HashDone>,
}

struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Paths to hash, each with when it may start.
    waiting: BTreeMap<PathBuf, Instant>,
    /// The path being hashed, and the flag that stops it.
    running: Option<(PathBuf, Arc<AtomicBool>)>,
    stop: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Hasher {
    /// Starts the hashing thread for paths inside `root`.
    pub(super) fn start(
        root: PathBuf,
        rules: Arc<Rules>,
        throttle: Arc<Throttle>,
    ) -> std::io::Result<Hasher> {
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let (tx, results) = tokio::sync::mpsc::channel(RESULTS);
        let worker = queue.clone();
        std::thread::Builder::new()
            .name("dw-hash".into())
            .spawn(move || {
                throttle::lower_thread_priority();
                work(&worker, &root, &rules, &throttle, &tx);
            })?;
        Ok(Hasher { queue, results })
    }

    /// Queues `path` to be hashed once it settles; a hash of it already waiting starts later,
    /// one in progress is stopped and starts over. False when the queue is full (the path is
    /// not queued).
    pub(super) fn submit(&self, path: &Path) -> bool {
        let mut state = self.queue.lock();
        if let Some((running, cancel)) = &state.running
            && running == path
        {
            cancel.store(true, Ordering::Relaxed);
        }
        if state.waiting.len() >= MAX_QUEUED && !state.waiting.contains_key(path) {
            return false;
        }
        state
            .waiting
            .insert(path.to_path_buf(), Instant::now() + SETTLE);
        self.queue.wake.notify_one();
        true
    }

    /// Drops `path` from the queue and stops a hash of it in progress: it is gone, or no
    /// longer needs a background hash (deleted files would otherwise be read to the end
    /// through the open descriptor).
    pub(super) fn forget(&self, path: &Path) {
        let mut state = self.queue.lock();
        state.waiting.remove(path);
        if let Some((running, cancel)) = &state.running
            && running == path
        {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a hash of `path` is waiting: a result for it that arrives meanwhile is stale.
    pub(super) fn is_waiting(&self, path: &Path) -> bool {
        self.queue.lock().waiting.contains_key(path)
    }

    /// Paths waiting or being hashed.
    pub(super) fn backlog(&self) -> usize {
        let state = self.queue.lock();
        state.waiting.len() + usize::from(state.running.is_some())
    }

    /// The next finished hash (never, once the thread is gone).
    pub(super) async fn next(&mut self) -> HashDone {
        match self.results.recv().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.stop = true;
        if let Some((_, cancel)) = &state.running {
            cancel.store(true, Ordering::Relaxed);
        }
        self.queue.wake.notify_one();
    }
}

/// The thread: takes the path that has been quiet longest, hashes it, hands the result over.
fn work(
    queue: &Queue,
    root: &Path,
    rules: &Rules,
    throttle: &Throttle,
    tx: &tokio::sync::mpsc::Sender<HashDone>,
) {
    loop {
        let (path, cancel) = {
            let mut state = queue.lock();
            loop {
                if state.stop {
                    return;
                }
                let now = Instant::now();
                let first = state
                    .waiting
                    .iter()
                    .min_by_key(|(_, due)| **due)
                    .map(|(p, due)| (p.clone(), *due));
                match first {
                    None => state = queue.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                    Some((_, due)) if due > now => {
                        state = queue
                            .wake
                            .wait_timeout(state, due - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    Some((path, _)) => {
                        state.waiting.remove(&path);
                        let cancel = Arc::new(AtomicBool::new(false));
                        state.running = Some((path.clone(), cancel.clone()));
                        break (path, cancel);
                    }
                }
            }
        };
        let result = scan::hash_one(root, rules, &path, Some(throttle), &cancel);
        queue.lock().running = None;
        // Stopped or superseded (a newer change queued it again): nothing to report.
        if cancel.load(Ordering::Relaxed) {
            continue;
        }
        let result = match result {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        if tx.blocking_send(HashDone { path, result }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Arc<Rules> {
        Arc::new(Rules::parse("version = 1\n[scan]\npaths = [\"/data\"]\n", "test").unwrap())
    }

    async fn next(h: &mut Hasher) -> HashDone {
        tokio::time::timeout(Duration::from_secs(20), h.next())
            .await
            .expect("a hash within 20 s")
    }

    #[tokio::test]
    async fn hashes_a_settled_file_once_and_a_rewritten_one_again() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let file = dir.path().join("data/big");
        std::fs::write(&file, b"one").unwrap();
        let mut h = Hasher::start(dir.path().into(), rules(), Arc::new(Throttle::new(0))).unwrap();
        let path = Path::new("/data/big");
        // Submitted twice before it settles: hashed once.
        assert!(h.submit(path));
        assert!(h.submit(path));
        let done = next(&mut h).await;
        assert_eq!(done.path, path);
        let entry = done.result.unwrap();
        assert_eq!(entry.sha256, Some(sha2::Sha256::digest(b"one").into()));
        assert_eq!(entry.size, 3);
        std::fs::write(&file, b"two!").unwrap();
        assert!(h.submit(path));
        assert!(h.is_waiting(path));
        let entry = next(&mut h).await.result.unwrap();
        assert_eq!(entry.sha256, Some(sha2::Sha256::digest(b"two!").into()));
        assert_eq!(h.backlog(), 0);
        // A path that vanished is not reported.
        std::fs::remove_file(&file).unwrap();
        assert!(h.submit(path));
        let quiet = tokio::time::timeout(SETTLE * 3, h.next()).await;
        assert!(quiet.is_err(), "{quiet:?}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_change_stops_the_running_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        // 64 MiB at 4 MiB/s: running for many seconds unless stopped.
        let big = std::fs::File::create(dir.path().join("data/big")).unwrap();
        big.set_len(64 << 20).unwrap();
        let h =
            Hasher::start(dir.path().into(), rules(), Arc::new(Throttle::new(4 << 20))).unwrap();
        let path = Path::new("/data/big");
        assert!(h.submit(path));
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.queue.lock().running.is_none() {
            assert!(Instant::now() < deadline, "the hash never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let cancel = h.queue.lock().running.clone().unwrap().1;
        assert!(h.submit(path));
        assert!(
            cancel.load(Ordering::Relaxed),
            "a new change stops the old hash"
        );
        for i in 0..MAX_QUEUED - 1 {
            assert!(h.submit(&PathBuf::from(format!("/data/{i}"))));
        }
        assert!(!h.submit(Path::new("/data/one-too-many")));
        // Already queued: still accepted (its start moves).
        assert!(h.submit(path));
        // Forgotten (deleted, say): out of the queue, and the hash in progress stops. The big
        // file's, which runs for seconds: the other paths do not exist, and their hashes end
        // at once (forgetting one of them could come after it ended).
        let deadline = Instant::now() + Duration::from_secs(30);
        let running = loop {
            if let Some((p, cancel)) = h.queue.lock().running.clone()
                && p == path
            {
                break (p, cancel);
            }
            assert!(
                Instant::now() < deadline,
                "the big file's hash did not start again"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        h.forget(&running.0);
        assert!(running.1.load(Ordering::Relaxed));
        assert!(!h.is_waiting(&running.0));
    }
}
