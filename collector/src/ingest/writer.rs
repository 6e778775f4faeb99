//! The writer: group commit.
//!
//! Every connection hands its writes (event batches, snapshots, heartbeats) to the writer
//! through a bounded queue. The writer takes whatever is waiting, up to a limit, applies it in
//! one transaction ([`Store::apply`]: each write atomic on its own), commits once, and only
//! then answers each sender, who acknowledges to its agent. One fsync serves every agent that
//! wrote in the meantime, so throughput grows with the number of agents instead of being
//! capped by the disk's sync rate, and nothing is acknowledged before it is durable.
//!
//! The writer is one thread, or [`Store::writers`] of them taking groups from the same queue
//! in turn where the database commits concurrent transactions in parallel (PostgreSQL: a group
//! is read and applied while another waits for its commit).
//!
//! Committed events are published on the live [`Feed`], which the query side follows: by the
//! writer itself, unless the store follows the database's commits (PostgreSQL shared by
//! several collectors: [`Store::follow_commits`]).
//!
//! The threads stop once every [`Writer`] handle is dropped and the queue is drained: every
//! write queued by then is committed and answered ([`WriterThread::stopped`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{Applied, Feed, HistoryEntry, Source, Store, StoreError, Write};

/// Most writes applied in one commit.
const MAX_GROUP: usize = 512;
/// Writes waiting for the writer before senders wait (backpressure onto the agents' streams).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<(Write, Option<Reply>)>,
    metrics: Arc<Metrics>,
}

/// The writer's threads, to wait for once every [`Writer`] is gone.
#[derive(Debug)]
pub struct WriterThread(mpsc::Receiver<()>);

impl WriterThread {
    /// Returns once every thread has committed everything queued and stopped.
    pub async fn stopped(mut self) {
        // Each thread holds a sender, dropped when it ends; none sends.
        let _ = self.0.recv().await;
    }
}

impl Writer {
    /// Starts the writer thread. It stops once every handle is dropped and the queue drained.
    pub fn start<S: Store>(
        store: Arc<S>,
        feed: Feed,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> (Writer, WriterThread) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            queue,
            metrics: metrics.clone(),
        };
        let (done, stopped) = mpsc::channel(1);
        let threads = store.writers().max(1);
        // A database other collectors write too feeds `feed` itself, with every collector's
        // commits (this one's among them).
        let feed = (!store.follow_commits(&feed, stop)).then_some(feed);
        let queue = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let (store, queue, feed, metrics, done) = (
                store.clone(),
                queue.clone(),
                feed.clone(),
                metrics.clone(),
                done.clone(),
            );
            std::thread::Builder::new()
                .name(format!("store-writer-{i}"))
                .spawn(move || {
                    run(store.as_ref(), &queue, feed.as_ref(), &metrics);
                    drop(done);
                })
                .expect("spawn a writer thread");
        }
        (writer, WriterThread(stopped))
    }

    /// Applies one write; returns once it is committed (or refused).
    pub async fn write(&self, write: Write) -> Result<Applied, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.metrics.write_queue.inc();
        let sent = self.queue.send((write, Some(tx))).await;
        if sent.is_err() {
            self.metrics.write_queue.dec();
            return Err(StoreError::Database("the writer has stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Database("the writer has stopped".into())))
    }

    /// Queues a write nobody waits for (heartbeats); dropped when the queue is full, as the
    /// next one supersedes it.
    pub fn write_detached(&self, write: Write) {
        if self.queue.try_send((write, None)).is_ok() {
            self.metrics.write_queue.inc();
        }
    }
}

type Queue = Mutex<mpsc::Receiver<(Write, Option<Reply>)>>;

/// Takes the next group from `queue`: what is waiting, up to [`MAX_GROUP`], once something is.
/// False once the queue is closed and drained. Threads take groups in turn: the one holding the
/// queue waits for the next write while the others apply theirs.
fn next_group(queue: &Queue, writes: &mut Vec<Write>, replies: &mut Vec<Option<Reply>>) -> bool {
    let mut rx = queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some((write, reply)) = rx.blocking_recv() else {
        return false;
    };
    writes.push(write);
    replies.push(reply);
    while writes.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok((write, reply)) => {
                writes.push(write);
                replies.push(reply);
            }
            Err(_) => break,
        }
    }
    true
}

fn run<S: Store>(store: &S, queue: &Queue, feed: Option<&Feed>, metrics: &Metrics) {
    // Test hook: die between a commit and its acknowledgements, as a crash there would.
    let exit_after_commit =
        std::env::var("DRIFTWATCH_FAILPOINT").is_ok_and(|f| f == "exit-after-commit");
    let mut writes = Vec::with_capacity(MAX_GROUP);
    let mut replies = Vec::with_capacity(MAX_GROUP);
    while next_group(queue, &mut writes, &mut replies) {
        metrics.write_queue.dec_by(writes.len() as i64);
        let started = Instant::now();
        let results = store.apply(&writes);
        metrics.commits.inc();
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.writes_per_commit.observe(writes.len() as f64);
        match results {
            Ok(results) => {
                if exit_after_commit
                    && writes.iter().zip(&results).any(
                        |(w, r)| matches!((w, r), (Write::Batch { .. }, Ok(a)) if a.events > 0),
                    )
                {
                    tracing::error!(
                        "failpoint exit-after-commit: exiting after a commit, before acknowledging it."
                    );
                    std::process::exit(86);
                }
                for ((write, reply), result) in writes.drain(..).zip(replies.drain(..)).zip(results)
                {
                    if let Ok(applied) = &result {
                        publish(&write, applied, feed, metrics);
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = writes.len(), "Commit failed; nothing of this group is stored.");
                writes.clear();
                for reply in replies.drain(..).flatten() {
                    let _ = reply.send(Err(StoreError::Database(e.to_string())));
                }
            }
        }
    }
}

/// Counts a committed batch's new events (a replay's skipped ones are its first), and
/// publishes them on `feed` if the writer feeds it.
fn publish(write: &Write, applied: &Applied, feed: Option<&Feed>, metrics: &Metrics) {
    let Write::Batch {
        host,
        events: batch,
        received_at,
        ..
    } = write
    else {
        return;
    };
    let new = (applied.events as usize).min(batch.len());
    metrics.batches.inc();
    metrics.events_stored.inc_by(new as u64);
    metrics.events_replayed.inc_by((batch.len() - new) as u64);
    let Some(feed) = feed.filter(|f| f.is_followed()) else {
        return;
    };
    for e in &batch[batch.len() - new..] {
        feed.publish(HistoryEntry {
            host: host.clone(),
            seq: e.seq,
            transition: e.transition,
            observed_at: e.observed_at,
            received_at: *received_at,
            subject: e.item.subject.clone(),
            severity: e.item.severity,
            item: e.item.encoded.clone(),
            source: Source::Stream,
        });
    }
}
