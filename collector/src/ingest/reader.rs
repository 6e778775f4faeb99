//! The reader: what heartbeats read of the store, gathered.
//!
//! Every agent's heartbeat reads its host's stored stream (a newer connection of the host ends
//! this one) and mostly the digest of its drift set (anti-entropy). With 10,000 agents that is
//! 2,000 reads a second. Made one by one, each was a hop to the blocking pool and, on
//! PostgreSQL, a round trip to the server: at full ingest, a blocking thread per read in
//! flight and more of the collector's time than its writers took (docs/BENCHMARKS.md).
//!
//! The reader takes whatever reads are waiting, up to [`MAX_GROUP`], makes them in one
//! [`Store::streams`] call and answers each; reads arriving meanwhile wait for the next call.
//! A quiet collector answers a heartbeat in one call as before; a busy one makes one call per
//! group, as the writer commits once per group.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{Result, Store, StoreError, StreamHead, StreamRead, blocking};

/// Most reads in one call.
const MAX_GROUP: usize = 1024;
/// Reads waiting before heartbeats wait to ask.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Option<StreamHead>>>;

/// A handle on the reader task; cheap to clone. The task ends once every handle is gone.
#[derive(Clone)]
pub struct Reader {
    queue: mpsc::Sender<(StreamRead, Reply)>,
}

impl Reader {
    /// Starts the reader task (on the current runtime).
    pub fn start<S: Store>(store: Arc<S>, metrics: Arc<Metrics>) -> Reader {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx, metrics));
        Reader { queue }
    }

    /// `host`'s stored stream, with its drift set's digest if `digest`; `None` if the host is
    /// not stored.
    pub async fn read(&self, host: &str, digest: bool) -> Result<Option<StreamHead>> {
        let (tx, rx) = oneshot::channel();
        let read = StreamRead {
            host: host.to_owned(),
            digest,
        };
        let stopped = || StoreError::Database("the stream reader has stopped".into());
        self.queue.send((read, tx)).await.map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run<S: Store>(
    store: Arc<S>,
    mut queue: mpsc::Receiver<(StreamRead, Reply)>,
    metrics: Arc<Metrics>,
) {
    let mut replies = Vec::with_capacity(MAX_GROUP);
    while let Some((read, reply)) = queue.recv().await {
        let mut reads = vec![read];
        replies.push(reply);
        while reads.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok((read, reply)) => {
                    reads.push(read);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        metrics.stream_reads_per_call.observe(reads.len() as f64);
        let store = store.clone();
        let asked = reads.len();
        match blocking(move || store.streams(&reads)).await {
            Ok(heads) if heads.len() == asked => {
                for (reply, head) in replies.drain(..).zip(heads) {
                    let _ = reply.send(Ok(head));
                }
            }
            Ok(heads) => {
                let e = StoreError::Database(format!(
                    "{} answers to {asked} stream reads",
                    heads.len()
                ));
                answer_all(&mut replies, &e);
            }
            Err(e) => answer_all(&mut replies, &e),
        }
    }
}

fn answer_all(replies: &mut Vec<Reply>, error: &StoreError) {
    for reply in replies.drain(..) {
        let _ = reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{HostInfo, StreamState};

    #[tokio::test(flavor = "current_thread")]
    async fn reads_waiting_together_are_made_in_one_call_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("c.db")).unwrap());
        for i in 0..50 {
            let info = HostInfo {
                host: format!("i-{i}"),
                ..HostInfo::default()
            };
            store.hello(&info, 1).unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let reader = Reader::start(store.clone(), metrics.clone());
        // On one thread, every read is queued before the reader task first runs.
        let reads = (0..100).map(|i| {
            let reader = reader.clone();
            async move { reader.read(&format!("i-{i}"), i % 2 == 0).await.unwrap() }
        });
        let heads = futures_util::future::join_all(reads).await;
        for (i, head) in heads.into_iter().enumerate() {
            match i < 50 {
                true => {
                    let head = head.unwrap();
                    assert_eq!(
                        head.state,
                        StreamState {
                            connection: 1,
                            ..StreamState::default()
                        }
                    );
                    assert_eq!(head.digest.is_some(), i % 2 == 0, "read {i}");
                }
                false => assert_eq!(head, None, "read {i}: no such host"),
            }
        }
        let metrics = metrics.encode();
        assert!(
            metrics.contains("stream_reads_per_call_count 1\n"),
            "one call for the 100 reads:\n{metrics}"
        );
    }
}
