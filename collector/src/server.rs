//! `driftwatch-collector serve`: one port for everything — gRPC (agents' streams, fleet
//! queries, health, reflection) over HTTP/2, and HTTP/1.1 for `/metrics`, `/healthz` and the
//! JSON API — optionally behind TLS (and mTLS).
//!
//! Stopping ([`serve`]'s `shutdown`): the listener closes, every agent's stream and every
//! `watch` ends with `UNAVAILABLE` ([`SHUTTING_DOWN`]) — an agent's once the batch in hand is
//! committed and acknowledged —, every connection and every stream's task ends, and the writer
//! commits what is queued. The binaries bound that drain with `--shutdown-timeout`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::access::{self, Access};
use crate::ingest::writer::Writer;
use crate::ingest::{IngestService, Limits};
use crate::metrics::Metrics;
use crate::query::{FleetService, IacService, Queries};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Feed, Store};

/// Where the collector keeps its data unless told otherwise.
pub const DEFAULT_DATABASE: &str = "sqlite://driftwatch-data/collector.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7470";
/// How long a stopping collector drains (`--shutdown-timeout`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Threads for blocking work (store calls, state sources), at most. The store has one writer
/// and a few readers, so more threads would only wait on their locks, and a reconnection
/// storm of thousands of hellos would otherwise start tokio's default of 512, each with its
/// stack and its allocator heap (peak RSS 861 MiB instead of 445 MiB with 5,000 agents
/// connecting, docs/BENCHMARKS.md).
pub const BLOCKING_THREADS: usize = 16;
/// Committed events kept for slow `watch` followers before they are told they missed some.
const FEED_BUFFER: usize = 8192;

/// The runtime of both binaries: the collector, and the `driftwatch` CLI (whose `up` serves
/// agents too; its other commands use a thread or two of blocking work at most).
///
/// Transparent huge pages are turned off for the process first. mimalloc asks for them on its
/// arenas (`madvise`), and the kernel then backs a 2 MiB page wherever a connection's few
/// kilobytes land: 10,000 idle agents held 690 MiB instead of 420 MiB (docs/BENCHMARKS.md).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!("Could not turn transparent huge pages off: {e}.");
    }
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
}

/// Everything `serve` needs (the CLI's flags).
#[derive(Clone, Debug, clap::Args)]
pub struct ServeOptions {
    /// Address for gRPC and HTTP (both on one port).
    #[arg(long, default_value = DEFAULT_LISTEN, env = "DRIFTWATCH_LISTEN")]
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative to the working directory, or `sqlite:///abs/path`), or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=disable|require|verify-full]`
    /// (several collectors may share one PostgreSQL database).
    #[arg(long, default_value = DEFAULT_DATABASE, env = "DRIFTWATCH_DATABASE")]
    pub database: String,
    /// A file holding the PostgreSQL password (one line); else the URL's, else PGPASSWORD.
    #[arg(long, env = "DRIFTWATCH_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// Server certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: requires mTLS from every client.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// The fleet CA's certificate (PEM): hosts enroll with a join token and get a client
    /// certificate signed by it (`driftwatch enroll token create`). Needs --tls-cert.
    #[arg(long, requires_all = ["enroll_ca_key", "tls_cert"])]
    pub enroll_ca_cert: Option<PathBuf>,
    /// The fleet CA's private key (PEM; keep it 0600).
    #[arg(long, requires = "enroll_ca_cert")]
    pub enroll_ca_key: Option<PathBuf>,
    /// How long a certificate issued by enrollment is valid; agents renew it when two
    /// thirds of it have passed.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub enroll_cert_validity: Duration,
    /// Allow plaintext on a non-loopback address (agents' drift and diffs travel in clear).
    #[arg(long)]
    pub insecure: bool,
    /// Require an operator credential (token or operator certificate) on loopback too. Off
    /// loopback, and with --client-ca, one is always required.
    #[arg(long)]
    pub require_auth: bool,
    /// A host whose agent has not been heard from for this long is shown as silent.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub silent_after: Duration,
    /// Heartbeat interval asked of agents.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Most simultaneous connections; more are closed at once (and counted).
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Largest message accepted from an agent, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_message_bytes: usize,
    /// Most events in one batch.
    #[arg(long, default_value_t = 10_000)]
    pub max_batch_events: usize,
    /// Most concurrent streams (RPCs) on one connection.
    #[arg(long, default_value_t = 64)]
    pub max_streams_per_connection: u32,
    /// Largest IaC import accepted (`driftwatch iac import`), in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_import_bytes: usize,
    /// A Terraform state to follow, as NAME=PATH (re-read when it changes) or NAME=URL (a
    /// Terraform HTTP backend's state address, polled; Basic auth from TF_HTTP_USERNAME and
    /// TF_HTTP_PASSWORD). Repeatable.
    #[arg(long = "state-source", value_name = "NAME=PATH|URL")]
    pub state_sources: Vec<crate::iac::sources::StateSource>,
    /// How often state sources are checked.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub state_poll: Duration,
    /// An IaC instance whose host has not reported for this long is flagged `ghost`.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub ghost_after: Duration,
    /// On SIGTERM or SIGINT: how long connected agents and `watch` clients get to be told to
    /// go and queued writes to be committed before the collector exits regardless.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            database: DEFAULT_DATABASE.into(),
            database_password_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            enroll_ca_cert: None,
            enroll_ca_key: None,
            enroll_cert_validity: crate::enroll::authority::DEFAULT_VALIDITY,
            require_auth: false,
            insecure: false,
            silent_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            max_connections: 20_000,
            max_message_bytes: 4 << 20,
            max_batch_events: 10_000,
            max_streams_per_connection: 64,
            max_import_bytes: 256 << 20,
            ghost_after: crate::iac::correlate::DEFAULT_GHOST_AFTER,
            state_sources: Vec::new(),
            state_poll: Duration::from_secs(30),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// SIGTERM and SIGINT, caught from creation on (before serving starts, so none is missed).
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// An open database: SQLite (the default, embedded) or PostgreSQL (shared by collectors).
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl std::ops::Deref for Database {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Database::Sqlite(store) => store.as_ref(),
            Database::Postgres(store) => store.as_ref(),
        }
    }
}

/// What a database URL names.
pub(crate) enum Url {
    Sqlite(PathBuf),
    Postgres,
}

pub(crate) fn parse_database_url(url: &str) -> Result<Url> {
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        PathBuf::from(rest)
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        PathBuf::from(rest)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Url::Postgres);
    } else if url.contains("://") {
        bail!("unknown database URL {url:?}: expected sqlite://PATH or postgres://USER@HOST/DB");
    } else {
        PathBuf::from(url)
    };
    if path.as_os_str().is_empty() {
        bail!("database URL {url:?} names no file");
    }
    Ok(Url::Sqlite(path))
}

/// The password `--database-password-file` holds (its first line).
pub(crate) fn read_password(file: Option<&Path>) -> Result<Option<String>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the database password file {}", file.display()))?;
    if text.len() > 4096 {
        bail!(
            "the database password file {} is longer than a password (4 KiB)",
            file.display()
        );
    }
    Ok(Some(text.lines().next().unwrap_or("").to_owned()))
}

/// Opens the database a URL names, bringing its schema up to date. PostgreSQL's password
/// comes from `password_file` if given, else from the URL, else from `PGPASSWORD`.
pub fn open_database(url: &str, password_file: Option<&Path>) -> Result<Database> {
    match parse_database_url(url)? {
        Url::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::store::sqlite::create_private_dir(dir).with_context(|| {
                    format!("creating the database directory {}", dir.display())
                })?;
            }
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the database {}", path.display()))?;
            Ok(Database::Sqlite(Arc::new(store)))
        }
        Url::Postgres => {
            let password = read_password(password_file)?;
            let store = PgStore::open(url, password.as_deref())?;
            Ok(Database::Postgres(Arc::new(store)))
        }
    }
}

/// Brings the database's schema up to date and nothing else (`driftwatch-collector
/// migrate`): how many schema versions this applied, when the backend counts them.
pub fn migrate_database(url: &str, password_file: Option<&Path>) -> Result<Option<usize>> {
    match parse_database_url(url)? {
        Url::Sqlite(_) => open_database(url, password_file).map(|_| None),
        Url::Postgres => {
            let password = read_password(password_file)?;
            Ok(Some(PgStore::migrate(url, password.as_deref())?))
        }
    }
}

impl ServeOptions {
    /// Whether operators must present a credential.
    pub fn requires_auth(&self) -> bool {
        self.require_auth || self.mtls() || !self.listen.ip().is_loopback()
    }

    /// Whether agents present client certificates: from `--client-ca`, or issued by the
    /// enrollment CA.
    pub fn mtls(&self) -> bool {
        self.client_ca.is_some() || self.enroll_ca_cert.is_some()
    }

    /// The fleet CA, when the collector enrolls hosts.
    pub fn authority(&self) -> Result<Option<crate::enroll::Authority>> {
        match (&self.enroll_ca_cert, &self.enroll_ca_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::enroll::Authority::load(
                cert,
                key,
                self.enroll_cert_validity,
            )?)),
            _ => Ok(None),
        }
    }
}

/// Binds the listen address, refusing plaintext off loopback unless `--insecure`.
pub async fn bind(options: &ServeOptions) -> Result<TcpListener> {
    let tls = options.tls_cert.is_some();
    if !tls && !options.listen.ip().is_loopback() {
        if !options.insecure {
            bail!(
                "refusing to listen on {} without TLS: agents' drift (and diffs) would cross \
                 the network in clear. Give --tls-cert/--tls-key (and --client-ca for mTLS), \
                 or --insecure to accept that",
                options.listen
            );
        }
        tracing::warn!(listen = %options.listen, "Serving plaintext off loopback (--insecure): drift and diffs travel unencrypted, agents are not authenticated.");
    }
    listen(options.listen).with_context(|| format!("listening on {}", options.listen))
}

/// How many connections may wait to be accepted (the kernel caps it at `net.core.somaxconn`).
/// A fleet reconnects at once after a collector restart: with the usual 1,024 the accept queue
/// overflows, the kernel answers with SYN cookies and then drops the handshake's last ACK, and
/// the agent's first bytes meet a reset.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do for a listener: a restarted collector rebinds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What agents and `watch` clients are told when the collector stops (with `UNAVAILABLE`).
pub use crate::status::SHUTTING_DOWN;

/// Serves until `shutdown` is cancelled, then drains (see the module documentation) and
/// returns. The caller bounds the drain with a deadline: what it cuts off was not
/// acknowledged, and agents send it again.
pub async fn serve(
    options: ServeOptions,
    store: Database,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    match store {
        Database::Sqlite(store) => serve_with(options, store, listener, shutdown).await,
        Database::Postgres(store) => serve_with(options, store, listener, shutdown).await,
    }
}

async fn serve_with<S: Store>(
    options: ServeOptions,
    store: Arc<S>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let authority = options.authority()?.map(Arc::new);
    let metrics = Arc::new(Metrics::default());
    // Committed events, for `Watch`; slow followers are told after this many.
    let feed = Feed::new(FEED_BUFFER);
    let (writer, writer_thread) = Writer::start(
        store.clone(),
        feed.clone(),
        shutdown.clone(),
        metrics.clone(),
    );
    // The task of every agent stream, waited for once the connections are closed.
    let streams = TaskTracker::new();
    let limits = Limits {
        max_message_bytes: options.max_message_bytes,
        max_batch_events: options.max_batch_events,
        heartbeat: options.heartbeat,
        snapshot_interval: options.heartbeat * 12,
        ..Limits::default()
    };
    let mut queries = Queries::new(
        store.clone(),
        feed,
        metrics.clone(),
        options.silent_after,
        shutdown.clone(),
    );
    queries.ghost_after = options.ghost_after;
    crate::iac::sources::follow(
        options.state_sources.clone(),
        options.state_poll,
        crate::iac::tfstate::DEFAULT_MAX_STATE_BYTES,
        store.clone(),
        metrics.clone(),
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<driftwatch_proto::v1::ingest_server::IngestServer<IngestService<S>>>()
        .await;
    health_reporter
        .set_serving::<crate::query::grpc::fleet_server::FleetServer<FleetService<S>>>()
        .await;
    health_reporter
        .set_serving::<driftwatch_proto::v1::iac_server::IacServer<IacService<S>>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(driftwatch_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    // v1alpha too: many clients (grpcurl's fallback, Python's grpcio-reflection) speak it.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(driftwatch_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service")?;

    let http = crate::query::json_api(queries.clone()).merge(
        axum::Router::new()
            .route("/metrics", axum::routing::get(metrics_page::<S>))
            .route("/healthz", axum::routing::get(healthz::<S>))
            .with_state((metrics.clone(), store.clone())),
    );
    let mut routes = tonic::service::Routes::from(http);
    routes = routes
        .add_service(
            IngestService::new(store.clone(), writer, metrics.clone(), limits)
                .stopping(shutdown.clone(), streams.clone())
                .into_server(),
        )
        .add_service(
            crate::query::grpc::fleet_server::FleetServer::new(FleetService(queries.clone()))
                .max_decoding_message_size(options.max_message_bytes),
        )
        .add_service(
            driftwatch_proto::v1::iac_server::IacServer::new(IacService(queries))
                .max_decoding_message_size(options.max_import_bytes),
        )
        .add_service(
            crate::enroll::EnrollmentService::new(
                store.clone(),
                authority.clone(),
                metrics.clone(),
            )
            .into_server(),
        )
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    // Every call, gRPC or HTTP, passes the access check first.
    let access = Arc::new(Access {
        mtls: options.mtls(),
        require_auth: options.requires_auth(),
        store: store.clone(),
        metrics: metrics.clone(),
    });
    let routes = tonic::service::Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(access, access::guard)),
    );

    let mut server = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(options.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true);
    let scheme = if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        server = server
            .tls_config(tls_config(
                cert,
                key,
                options.client_ca.as_deref(),
                authority.as_deref(),
            )?)
            .context("configuring TLS")?;
        match (&authority, options.client_ca.is_some()) {
            (Some(_), _) => "https (mTLS, enrollment)",
            (None, true) => "https (mTLS)",
            (None, false) => "https",
        }
    } else {
        "http"
    };
    let local = listener.local_addr()?;
    let database = crate::store::postgres::connect::hide_password(&options.database);
    tracing::info!(listen = %local, scheme, %database, "Collector serving.");
    metrics.up.set(1.0);
    // Under systemd (Type=notify): started. Without $NOTIFY_SOCKET this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let incoming = LimitedIncoming::new(listener, options.max_connections, metrics.clone());
    // Returns once cancelled and every connection is closed: agents' streams and watches
    // end on the same cancellation.
    server
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("serving")?;
    streams.close();
    streams.wait().await;
    // Every handle on the writer is gone with the streams and the services: it commits
    // what they queued, answers, and stops.
    writer_thread.stopped().await;
    metrics.up.set(0.0);
    tracing::info!("Collector stopped.");
    Ok(())
}

/// `/healthz`: 200 "ok" while the database answers, 503 saying it does not otherwise (the
/// details in the log).
async fn healthz<S: Store>(
    axum::extract::State((_, store)): axum::extract::State<(Arc<Metrics>, Arc<S>)>,
) -> impl IntoResponse {
    match crate::store::blocking(move || store.check()).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(error) => {
            tracing::warn!(%error, "Health check: the database does not answer.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the collector's database does not answer; its log has the details\n".to_owned(),
            )
        }
    }
}

async fn metrics_page<S: Store>(
    axum::extract::State((metrics, store)): axum::extract::State<(Arc<Metrics>, Arc<S>)>,
) -> impl IntoResponse {
    if let Some(pool) = store.pool() {
        metrics.pool(pool);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// The server's TLS: its identity, and the CAs client certificates chain to — `--client-ca`
/// and the enrollment CA. With enrollment a client may connect without a certificate (to
/// enroll): the access check then asks for one wherever it is needed.
pub(crate) fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    authority: Option<&crate::enroll::Authority>,
) -> Result<tonic::transport::ServerTlsConfig> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(read(cert)?, read(key)?),
    );
    let mut roots = match client_ca {
        Some(ca) => read(ca)?,
        None => Vec::new(),
    };
    if let Some(authority) = authority {
        if !roots.is_empty() && !roots.ends_with(b"\n") {
            roots.push(b'\n');
        }
        roots.extend_from_slice(authority.ca_pem().as_bytes());
        config = config.client_auth_optional(true);
    }
    if !roots.is_empty() {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(roots));
    }
    Ok(config)
}

/// How long accepting pauses after an error that is not about one connection (out of file
/// descriptors or memory). The connection that hit it is still waiting in the backlog: trying
/// again at once fails again at once, a busy loop that would also log without end.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepted connections, at most `max` at a time: beyond it a connection is closed at once
/// (the client sees the connection refused and retries with backoff), counted, and logged at
/// most once a minute — a flood must not become a log flood. Accept errors are logged at most
/// once a minute too, and pause accepting for [`ACCEPT_BACKOFF`].
struct LimitedIncoming {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    last_warning: AtomicU64,
    last_accept_warning: AtomicU64,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl LimitedIncoming {
    fn new(listener: TcpListener, max: usize, metrics: Arc<Metrics>) -> Self {
        LimitedIncoming {
            listener,
            permits: Arc::new(Semaphore::new(max.max(1))),
            metrics,
            last_warning: AtomicU64::new(0),
            last_accept_warning: AtomicU64::new(0),
            backoff: None,
        }
    }
}

/// Whether a minute has passed since `last` (then updated): for warnings that would repeat.
fn warning_due(last: &AtomicU64) -> bool {
    let now = crate::store::now_millis() as u64;
    let due = now.saturating_sub(last.load(Ordering::Relaxed)) > 60_000;
    if due {
        last.store(now, Ordering::Relaxed);
    }
    due
}

/// An accept error about the one connection being accepted (it went away): the next one may
/// be fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

impl Stream for LimitedIncoming {
    type Item = io::Result<LimitedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(backoff) = this.backoff.as_mut() {
                if backoff.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.backoff = None;
            }
            let (stream, peer) = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(accepted)) => accepted,
                Poll::Ready(Err(e)) if is_connection_error(&e) => continue,
                Poll::Ready(Err(e)) => {
                    // Out of file descriptors and the like: say so, keep serving the
                    // connections there are, try again shortly.
                    if warning_due(&this.last_accept_warning) {
                        tracing::warn!(error = %e, "Accepting connections failed; retrying every {ACCEPT_BACKOFF:?} (logged at most once a minute).");
                    }
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    continue;
                }
            };
            match this.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    // Small request/response exchanges: never wait for Nagle (40 ms stalls).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY refused.");
                    }
                    return Poll::Ready(Some(Ok(LimitedStream {
                        inner: stream,
                        _permit: permit,
                    })));
                }
                Err(_) => {
                    this.metrics.connections_refused.inc();
                    if warning_due(&this.last_warning) {
                        tracing::warn!(%peer, "Connection limit reached; closing new connections (see driftwatch_collector_connections_refused_total).");
                    }
                    drop(stream);
                }
            }
        }
    }
}

/// A connection holding its slot until it closes.
struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_name_a_backend() {
        assert!(matches!(
            parse_database_url("sqlite://data/c.db"),
            Ok(Url::Sqlite(p)) if p == Path::new("data/c.db")
        ));
        assert!(matches!(parse_database_url("c.db"), Ok(Url::Sqlite(_))));
        assert!(matches!(
            parse_database_url("postgresql://dw@db/fleet"),
            Ok(Url::Postgres)
        ));
        assert!(parse_database_url("mysql://db/fleet").is_err());
        assert!(parse_database_url("sqlite://").is_err());
    }

    #[test]
    fn the_password_file_s_first_line_is_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret with spaces\nignored\n").unwrap();
        assert_eq!(
            read_password(Some(&file)).unwrap().as_deref(),
            Some("s3cret with spaces")
        );
        assert_eq!(read_password(None).unwrap(), None);
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert!(read_password(Some(&file)).is_err());
        assert!(read_password(Some(&dir.path().join("missing"))).is_err());
    }
}
