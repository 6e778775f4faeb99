//! The reader: what heartbeats read of the store, gathered.
//!
//! Every agent's heartbeat reads its host's stored stream (a newer connection of the host ends
//! this one) and mostly the digest of its drift set (anti-entropy); an enrolled agent's also
//! reads its certificate (revoked since?). With 10,000 agents that is 2,000 reads a second or
//! more. Made one by one, each was a hop to the blocking pool and, on PostgreSQL, a round trip
//! to the server: at full ingest, a blocking thread per read in flight and more of the
//! collector's time than its writers took (docs/BENCHMARKS.md).
//!
//! The reader takes whatever reads are waiting, up to [`MAX_GROUP`], makes them in one hop to
//! the blocking pool ([`Store::streams`] and [`Store::certificates`], a statement each) and
//! answers each; reads arriving meanwhile wait for the next. A quiet collector answers a
//! heartbeat in one call as before; a busy one makes one call per group, as the writer
//! commits once per group.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{
    IssuedCertificate, Result, Store, StoreError, StreamHead, StreamRead, blocking,
};

/// Most reads in one call.
const MAX_GROUP: usize = 1024;
/// Reads waiting before heartbeats wait to ask.
const QUEUE: usize = 8192;

/// A read and where its answer goes.
enum Ask {
    Stream(StreamRead, oneshot::Sender<Result<Option<StreamHead>>>),
    Certificate(String, oneshot::Sender<Result<Option<IssuedCertificate>>>),
}

/// A handle on the reader task; cheap to clone. The task ends once every handle is gone.
#[derive(Clone)]
pub struct Reader {
    queue: mpsc::Sender<Ask>,
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
    pub async fn stream(&self, host: &str, digest: bool) -> Result<Option<StreamHead>> {
        let (tx, rx) = oneshot::channel();
        let read = StreamRead {
            host: host.to_owned(),
            digest,
        };
        self.ask(Ask::Stream(read, tx), rx).await
    }

    /// The certificate issued with `serial` ([`Store::certificate`]).
    pub async fn certificate(&self, serial: &str) -> Result<Option<IssuedCertificate>> {
        let (tx, rx) = oneshot::channel();
        self.ask(Ask::Certificate(serial.to_owned(), tx), rx).await
    }

    async fn ask<T>(&self, ask: Ask, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        let stopped = || StoreError::Database("the heartbeats' reader has stopped".into());
        self.queue.send(ask).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// A group's reads, by kind, and their answers' senders.
#[derive(Default)]
struct Group {
    streams: Vec<StreamRead>,
    stream_replies: Vec<oneshot::Sender<Result<Option<StreamHead>>>>,
    serials: Vec<String>,
    certificate_replies: Vec<oneshot::Sender<Result<Option<IssuedCertificate>>>>,
}

impl Group {
    fn push(&mut self, ask: Ask) {
        match ask {
            Ask::Stream(read, reply) => {
                self.streams.push(read);
                self.stream_replies.push(reply);
            }
            Ask::Certificate(serial, reply) => {
                self.serials.push(serial);
                self.certificate_replies.push(reply);
            }
        }
    }

    fn len(&self) -> usize {
        self.streams.len() + self.serials.len()
    }
}

async fn run<S: Store>(store: Arc<S>, mut queue: mpsc::Receiver<Ask>, metrics: Arc<Metrics>) {
    while let Some(ask) = queue.recv().await {
        let mut group = Group::default();
        group.push(ask);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(ask) => group.push(ask),
                Err(_) => break,
            }
        }
        metrics.heartbeat_reads_per_call.observe(group.len() as f64);
        let Group {
            streams,
            stream_replies,
            serials,
            certificate_replies,
        } = group;
        let store = store.clone();
        let answered = blocking(move || {
            let heads = match streams.is_empty() {
                true => Ok(Vec::new()),
                false => store.streams(&streams),
            };
            let certificates = match serials.is_empty() {
                true => Ok(Vec::new()),
                false => store.certificates(&serials),
            };
            Ok((heads, certificates))
        })
        .await;
        let (heads, certificates) = match answered {
            Ok(both) => both,
            Err(e) => (Err(e.clone()), Err(e)),
        };
        answer(stream_replies, heads);
        answer(certificate_replies, certificates);
    }
}

/// Sends each reply its answer, or every reply the error (one answer per read, or none).
fn answer<T>(replies: Vec<oneshot::Sender<Result<T>>>, answers: Result<Vec<T>>) {
    let answers = answers.and_then(|a| match a.len() == replies.len() {
        true => Ok(a),
        false => Err(StoreError::Database(format!(
            "{} answers to {} reads",
            a.len(),
            replies.len()
        ))),
    });
    match answers {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
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
            async move { reader.stream(&format!("i-{i}"), i % 2 == 0).await.unwrap() }
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
            metrics.contains("heartbeat_reads_per_call_count 1\n"),
            "one call for the 100 reads:\n{metrics}"
        );
    }
}
