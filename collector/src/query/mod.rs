//! Fleet queries: the `driftwatch.v1.Fleet` gRPC service, the `driftwatch.v1.Iac` queries
//! (`iac`), and the JSON API that mirrors them (`http`: `/api/v1/...`, same messages,
//! serialized with serde). All of them call [`Queries`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_proto::v1;
use tokio_stream::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::metrics::Metrics;
use crate::store::{
    self, Feed, HistoryQuery, HostQuery, ItemFilter, ListedHost, Severity, Store, StoreError,
};

pub mod convert;
mod http;
mod iac;

pub use http::json_api;
pub use iac::IacService;

/// Longest listing answered at once.
const MAX_LIMIT: usize = 100_000;

/// A query that cannot be answered, and why.
#[derive(Debug)]
pub enum QueryError {
    BadRequest(String),
    NotFound(String),
    Store(StoreError),
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        QueryError::Store(e)
    }
}

/// The queries, over a store.
pub struct Queries<S> {
    store: Arc<S>,
    feed: Feed,
    metrics: Arc<Metrics>,
    /// Hosts not heard from for this long are `silent`.
    pub silent_after: Duration,
    /// IaC instances whose host has not reported for this long are ghosts.
    pub ghost_after: Duration,
    iac_cache: Arc<iac::Cache>,
    /// Ends every `watch` when cancelled (the collector is stopping).
    shutdown: CancellationToken,
}

impl<S> Clone for Queries<S> {
    fn clone(&self) -> Self {
        Queries {
            store: self.store.clone(),
            feed: self.feed.clone(),
            metrics: self.metrics.clone(),
            silent_after: self.silent_after,
            ghost_after: self.ghost_after,
            iac_cache: self.iac_cache.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

fn severity(text: &str) -> Result<Option<Severity>, QueryError> {
    if text.is_empty() {
        return Ok(None);
    }
    Severity::parse(text).map(Some).ok_or_else(|| {
        QueryError::BadRequest(format!(
            "unknown severity {text:?} (expected security, behavioral or cosmetic)"
        ))
    })
}

fn filter(sev: &str, path: &str) -> Result<ItemFilter, QueryError> {
    ItemFilter::new(severity(sev)?, Some(path)).map_err(QueryError::BadRequest)
}

/// A host name that names no host.
fn unknown_host(name: &str) -> QueryError {
    QueryError::NotFound(format!(
        "no host {name:?} has reported (give a host's identity, or a hostname no other host has)"
    ))
}

fn limit(n: u32) -> usize {
    match n {
        0 => MAX_LIMIT,
        n => (n as usize).min(MAX_LIMIT),
    }
}

/// `24h`, `30m` back from now, or an RFC 3339 time.
pub fn parse_since(text: &str, now: store::Millis) -> Result<Option<store::Millis>, QueryError> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(Some(now - d.as_millis() as store::Millis));
    }
    store::parse_rfc3339(text).map(Some).ok_or_else(|| {
        QueryError::BadRequest(format!(
            "since {text:?} is neither a duration (24h, 30m) nor an RFC 3339 time"
        ))
    })
}

impl<S: Store> Queries<S> {
    pub fn new(
        store: Arc<S>,
        feed: Feed,
        metrics: Arc<Metrics>,
        silent_after: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Queries {
            store,
            feed,
            metrics,
            silent_after,
            ghost_after: crate::iac::correlate::DEFAULT_GHOST_AFTER,
            iac_cache: Arc::default(),
            shutdown,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> store::Result<T> + Send + 'static,
    ) -> Result<T, QueryError> {
        let started = Instant::now();
        let store = self.store.clone();
        let result = store::blocking(move || f(&store)).await;
        self.metrics.queries.inc();
        self.metrics
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    fn host_query(&self, filter: ItemFilter, diverged: bool) -> HostQuery {
        HostQuery {
            filter,
            diverged,
            silent_after: self.silent_after,
            now: store::now_millis(),
        }
    }

    /// The hosts a listing asks for, with their IaC columns, handed to `render` on the
    /// thread that listed them (so the listing is made and freed on one thread), and how many
    /// matched before the limit.
    async fn listing<T: Send + 'static>(
        &self,
        r: v1::ListHostsRequest,
        render: impl FnOnce(Vec<ListedHost>, u64) -> T + Send + 'static,
    ) -> Result<T, QueryError> {
        let query = self.host_query(filter(&r.severity, &r.path)?, r.diverged);
        let iac = self.iac_columns().await?;
        self.run(move |s| {
            let mut hosts = s.list_hosts(&query)?;
            let total = hosts.len() as u64;
            if r.limit > 0 {
                hosts.truncate(r.limit as usize);
            }
            iac.fill(&mut hosts, query.now);
            Ok(render(hosts, total))
        })
        .await
    }

    pub async fn list_hosts(
        &self,
        r: v1::ListHostsRequest,
    ) -> Result<v1::ListHostsResponse, QueryError> {
        self.listing(r, |hosts, total| v1::ListHostsResponse {
            hosts: hosts.iter().map(ListedHost::to_host).collect(),
            total,
        })
        .await
    }

    /// [`list_hosts`](Self::list_hosts) as the gRPC server sends it.
    pub async fn list_hosts_encoded(
        &self,
        r: v1::ListHostsRequest,
    ) -> Result<v1::EncodedListHosts, QueryError> {
        self.listing(r, |hosts, total| {
            let size = hosts.iter().map(|h| h.reported.encoded().len() + 64).sum();
            let mut out = v1::EncodedListHosts::with_capacity(size);
            for host in &hosts {
                host.encode_into(&mut out);
            }
            out.total = total;
            out
        })
        .await
    }

    pub async fn get_host(&self, r: v1::GetHostRequest) -> Result<v1::HostDetail, QueryError> {
        if r.host.is_empty() {
            return Err(QueryError::BadRequest(
                "which host? (an identity or a hostname)".into(),
            ));
        }
        let query = self.host_query(ItemFilter::default(), false);
        let name = r.host.clone();
        let mut detail = self
            .run(move |s| {
                s.get_host(&name, &query)?
                    .map(convert::host_detail)
                    .transpose()
            })
            .await?
            .ok_or_else(|| unknown_host(&r.host))?;
        if let Some(host) = &mut detail.host {
            self.iac_columns()
                .await?
                .fill_one(host, store::now_millis());
        }
        Ok(detail)
    }

    pub async fn list_paths(
        &self,
        r: v1::ListPathsRequest,
    ) -> Result<v1::ListPathsResponse, QueryError> {
        let filter = filter(&r.severity, &r.path)?;
        let limit = limit(r.limit);
        let paths = self.run(move |s| s.list_paths(&filter, limit)).await?;
        Ok(v1::ListPathsResponse {
            paths: paths.iter().map(convert::path_summary).collect(),
        })
    }

    pub async fn list_causes(
        &self,
        r: v1::ListCausesRequest,
    ) -> Result<v1::ListCausesResponse, QueryError> {
        let filter = filter(&r.severity, &r.path)?;
        let (min_hosts, limit) = (r.min_hosts.max(1) as usize, limit(r.limit));
        let causes = self
            .run(move |s| {
                s.list_causes(&filter, min_hosts, limit)?
                    .into_iter()
                    .map(convert::cause)
                    .collect()
            })
            .await?;
        Ok(v1::ListCausesResponse { causes })
    }

    /// The history of every host, or of the host `r.host` names (as `get_host` finds it; an
    /// unknown host is `NotFound`).
    pub async fn history(&self, r: v1::HistoryRequest) -> Result<v1::HistoryResponse, QueryError> {
        let mut query = HistoryQuery {
            host: r.host.clone(),
            since: parse_since(&r.since, store::now_millis())?,
            filter: filter("", &r.path)?,
            limit: limit(r.limit),
        };
        let events = self
            .run(move |s| {
                if !query.host.is_empty() {
                    match s.find_host(&query.host)? {
                        Some(identity) => query.host = identity,
                        None => return Ok(None),
                    }
                }
                let events = s.history(&query)?;
                events
                    .iter()
                    .map(convert::history_event)
                    .collect::<Result<_, _>>()
                    .map(Some)
            })
            .await?
            .ok_or_else(|| unknown_host(&r.host))?;
        Ok(v1::HistoryResponse { events })
    }

    /// Committed events from now on, filtered, until the collector stops: then an
    /// `UNAVAILABLE` status ends the stream.
    pub fn watch(
        &self,
        r: v1::WatchRequest,
    ) -> Result<impl Stream<Item = Result<v1::HistoryEvent, Status>> + Send + 'static, QueryError>
    {
        let min = severity(&r.severity)?;
        let host = r.host;
        let metrics = self.metrics.clone();
        metrics.watchers.inc();
        let guard = WatcherGauge(metrics);
        let events = tokio_stream::wrappers::BroadcastStream::new(self.feed.subscribe());
        let shutdown = self.shutdown.clone();
        let stopping = futures_util::stream::once(async move {
            shutdown.cancelled().await;
            Err(crate::status::shutting_down())
        });
        // The first error ends a gRPC answer: nothing follows the status.
        let events = events.filter_map(move |e| {
            let _ = &guard;
            match e {
                Ok(e) => {
                    let wanted = (host.is_empty() || e.host == host)
                        && min.is_none_or(|min| e.severity <= min);
                    wanted.then(|| convert::history_event(&e).map_err(crate::status::store))
                }
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Err(Status::data_loss(format!(
                        "this watcher fell {n} events behind and was dropped; \
                         `driftwatch history` has them"
                    ))))
                }
            }
        });
        Ok(events.merge(stopping))
    }
}

/// Counts open watch streams.
struct WatcherGauge(Arc<Metrics>);

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        self.0.watchers.dec();
    }
}

/// The gRPC face.
pub struct FleetService<S>(pub Queries<S>);

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::HistoryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Store> v1::fleet_server::Fleet for FleetService<S> {
    type WatchStream = WatchStream;

    async fn list_hosts(
        &self,
        r: Request<v1::ListHostsRequest>,
    ) -> Result<tonic::Response<v1::EncodedListHosts>, Status> {
        Ok(tonic::Response::new(
            self.0.list_hosts_encoded(r.into_inner()).await?,
        ))
    }

    async fn get_host(
        &self,
        r: Request<v1::GetHostRequest>,
    ) -> Result<tonic::Response<v1::HostDetail>, Status> {
        Ok(tonic::Response::new(self.0.get_host(r.into_inner()).await?))
    }

    async fn list_paths(
        &self,
        r: Request<v1::ListPathsRequest>,
    ) -> Result<tonic::Response<v1::ListPathsResponse>, Status> {
        Ok(tonic::Response::new(
            self.0.list_paths(r.into_inner()).await?,
        ))
    }

    async fn list_causes(
        &self,
        r: Request<v1::ListCausesRequest>,
    ) -> Result<tonic::Response<v1::ListCausesResponse>, Status> {
        Ok(tonic::Response::new(
            self.0.list_causes(r.into_inner()).await?,
        ))
    }

    async fn history(
        &self,
        r: Request<v1::HistoryRequest>,
    ) -> Result<tonic::Response<v1::HistoryResponse>, Status> {
        Ok(tonic::Response::new(self.0.history(r.into_inner()).await?))
    }

    async fn watch(
        &self,
        r: Request<v1::WatchRequest>,
    ) -> Result<tonic::Response<WatchStream>, Status> {
        let stream = self.0.watch(r.into_inner())?;
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}
