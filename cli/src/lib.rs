//! `driftwatch`: the operator CLI. Asks a collector (gRPC) and prints what it says, for people
//! or, with `--json`, as the collector's JSON API shapes.
//!
//! Exit codes as everywhere in driftwatch: 0 = no drift, 2 = drift (for the commands that
//! answer "is there drift?", i.e. `hosts --diverged`), 1 = error, a usage error included.
//! Output into a closed pipe (`| head`) ends quietly, with the command's own code.
//!
//! Modules: [`render`] (human output), `iac` (`iac import/status`, `report`; states are read
//! here, on the operator's machine, with `driftwatch_iac`), `reconcile` (drift made a commit
//! in the configuration repository, with the git command line), `up` (feature `up`, on by
//! default: a collector and an agent in this process; the only part that links the server and
//! the agent).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use driftwatch_proto::v1::{self, fleet_client::FleetClient};
use driftwatch_shell::{self as shell, Printed, print, print_json};
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

mod enroll;
mod iac;
mod reconcile;
pub mod render;
#[cfg(feature = "up")]
mod up;

pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:7470";

#[derive(Debug, Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Ask the fleet: which hosts drifted from their image, where, since when, how badly"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the collector.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The collector's URL (http:// or https://).
    #[arg(long, global = true, env = "DRIFTWATCH_COLLECTOR", default_value = DEFAULT_COLLECTOR)]
    pub collector: String,
    /// CA certificate (PEM) to verify an https collector.
    #[arg(long, global = true, env = "DRIFTWATCH_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a collector that requires mTLS.
    #[arg(long, global = true, env = "DRIFTWATCH_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, global = true, env = "DRIFTWATCH_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Operator token (from `driftwatch-collector token create`); default: the file
    /// `driftwatch/token` under the user's config directory ($XDG_CONFIG_HOME or ~/.config).
    /// An empty value sends none.
    #[arg(long, global = true, env = "DRIFTWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Connection {
    /// The token to present: `--token`/`DRIFTWATCH_TOKEN`, else the user's token file.
    fn token(&self) -> Result<Option<String>> {
        if let Some(token) = &self.token {
            let token = token.trim();
            return Ok((!token.is_empty()).then(|| token.to_owned()));
        }
        let Some(path) = token_file() else {
            return Ok(None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the token file {}", path.display())),
        }
    }
}

/// `$XDG_CONFIG_HOME/driftwatch/token`, else `~/.config/driftwatch/token`.
fn token_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("driftwatch").join("token"))
}

/// Puts the operator's token on every call.
#[derive(Clone, Debug)]
pub struct Credentials(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the collector that presents the operator's credentials.
pub type Transport = tonic::service::interceptor::InterceptedService<Channel, Credentials>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every host: drift count, worst severity, last seen, image, baseline.
    Hosts(HostsArgs),
    /// One host's drift items, with diffs.
    Host {
        /// The host's identity (instance id), or its hostname when no other host has it.
        host: String,
        /// Print JSON (the host as `hosts --json` shows it, with its drift items).
        #[arg(long)]
        json: bool,
    },
    /// The most drifted paths across the fleet, with host counts.
    Paths(FilterArgs),
    /// Identical changes grouped: same path changed the same way on N hosts.
    Causes {
        #[command(flatten)]
        filter: FilterArgs,
        /// Only changes shared by at least this many hosts.
        #[arg(long, default_value_t = 1)]
        min_hosts: u32,
        /// At most this many host names per change (the count still counts every host).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        hosts: u32,
    },
    /// Stored drift events, oldest first: in the order the collector received them.
    History(HistoryArgs),
    /// A live feed of drift events as the collector stores them.
    Watch {
        /// Only this host's events (its identity).
        #[arg(long)]
        host: Option<String>,
        /// Only events of at least this severity.
        #[arg(long)]
        severity: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Infrastructure as code: import Terraform state and Packer manifests, see what matches.
    Iac {
        #[command(subcommand)]
        command: iac::IacCommand,
    },
    /// The reconciliation report: drift grouped by IaC resource and image, flags, ghosts.
    Report(iac::ReportArgs),
    /// Turn drift of text config files into a commit on a new branch of the config repository
    /// (never pushed). Exits 0 committed, 2 some files refused, 3 nothing to reconcile, 1 error.
    Reconcile(reconcile::ReconcileArgs),
    /// Enrollment (role admin): join tokens for agents, enrolled hosts, revocation.
    Enroll {
        #[command(subcommand)]
        command: enroll::EnrollCommand,
    },
    /// Try it: a collector and an agent for this machine, in one process.
    #[cfg(feature = "up")]
    Up(crate::up::UpArgs),
}

/// The filters of [`FilterArgs`] select hosts here, as their help says.
#[derive(Debug, Args)]
#[command(
    mut_arg("severity", |a| a.help(
        "Only hosts with drift of at least this severity (security, behavioral, cosmetic); \
         their DRIFT, WORST and SINCE count only those items"
    )),
    mut_arg("path", |a| a.help(
        "Only hosts with drift whose path matches this glob (`*` within a directory, `**` \
         across); their DRIFT, WORST and SINCE count only those items"
    )),
)]
pub struct HostsArgs {
    /// Only hosts with drift (with --severity or --path: with matching drift); exits 2 when
    /// any host has it, 0 when none.
    #[arg(long)]
    pub diverged: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only items of at least this severity (security, behavioral, cosmetic).
    #[arg(long)]
    pub severity: Option<String>,
    /// Only items whose path matches this glob (`*` within a directory, `**` across).
    #[arg(long)]
    pub path: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub limit: u32,
    /// Print JSON (an array).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this host's events: its identity, or its hostname when no other host has it (an
    /// unknown host is an error).
    #[arg(long)]
    pub host: Option<String>,
    /// Only events received since then: a duration back from now (24h, 30m) or an RFC 3339
    /// time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events whose path matches this glob (`*` within a directory, `**` across).
    #[arg(long)]
    pub path: Option<String>,
    /// At most this many events, the newest (0: up to 100,000).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print JSON (an array of events, oldest first).
    #[arg(long)]
    pub json: bool,
}

/// Runs the CLI; returns the exit code.
pub fn main() -> i32 {
    let cli: Cli = shell::parse();
    driftwatch_shell::init_logging("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(run(cli));
    // What `up` left running past its deadline is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    #[cfg(feature = "up")]
    if let Command::Up(args) = cli.command {
        return crate::up::run(args).await;
    }
    let channel = channel(&cli.conn).await?;
    let rpc = |e: tonic::Status| anyhow!("{}", describe_status(&cli.conn, &e));
    let mut client = FleetClient::new(channel.clone()).max_decoding_message_size(256 << 20);
    match cli.command {
        Command::Iac {
            command: iac::IacCommand::Import(args),
        } => iac::import(channel, args, rpc).await,
        Command::Iac {
            command: iac::IacCommand::Status { ghost_after, json },
        } => iac::status(channel, ghost_after, json, rpc).await,
        Command::Report(args) => iac::report(channel, args, rpc).await,
        Command::Enroll { command } => enroll::run(channel, command, rpc).await,
        Command::Reconcile(args) => reconcile::run(channel, &cli.conn.collector, args, rpc).await,
        Command::Hosts(args) => {
            // A filter lists the hosts it finds drift on, not every host with nothing found.
            let FilterArgs {
                severity,
                path,
                limit,
                json,
            } = args.filter;
            let filtered = severity.is_some() || path.is_some();
            let v1::ListHostsResponse { hosts, total } = client
                .list_hosts(v1::ListHostsRequest {
                    diverged: args.diverged || filtered,
                    severity: severity.unwrap_or_default(),
                    path: path.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(&hosts)?;
            } else {
                print(|out| render::hosts(out, &hosts, total))?;
            }
            // With --diverged every host listed (or left out by --limit) has drift.
            Ok(if args.diverged && total > 0 { 2 } else { 0 })
        }
        Command::Host { host, json } => {
            let detail = client
                .get_host(v1::GetHostRequest { host })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(&detail)?;
            } else {
                print(|out| render::host(out, &detail))?;
            }
            Ok(0)
        }
        Command::Paths(f) => {
            let paths = client
                .list_paths(v1::ListPathsRequest {
                    path: f.path.unwrap_or_default(),
                    severity: f.severity.unwrap_or_default(),
                    limit: f.limit,
                })
                .await
                .map_err(rpc)?
                .into_inner()
                .paths;
            if f.json {
                print_json(&paths)?;
            } else {
                print(|out| render::paths(out, &paths))?;
            }
            Ok(0)
        }
        Command::Causes {
            filter,
            min_hosts,
            hosts,
        } => {
            let causes = client
                .list_causes(v1::ListCausesRequest {
                    path: filter.path.unwrap_or_default(),
                    severity: filter.severity.unwrap_or_default(),
                    min_hosts,
                    limit: filter.limit,
                    max_hosts: hosts,
                })
                .await
                .map_err(rpc)?
                .into_inner()
                .causes;
            if filter.json {
                print_json(&causes)?;
            } else {
                print(|out| render::causes(out, &causes))?;
            }
            Ok(0)
        }
        Command::History(h) => {
            let events = client
                .history(v1::HistoryRequest {
                    host: h.host.unwrap_or_default(),
                    since: h.since.unwrap_or_default(),
                    path: h.path.unwrap_or_default(),
                    limit: h.limit,
                })
                .await
                .map_err(rpc)?
                .into_inner()
                .events;
            if h.json {
                print_json(&events)?;
            } else {
                print(|out| render::history(out, &events))?;
            }
            Ok(0)
        }
        Command::Watch {
            host,
            severity,
            json,
        } => {
            let mut stream = client
                .watch(v1::WatchRequest {
                    host: host.unwrap_or_default(),
                    severity: severity.unwrap_or_default(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if !json {
                eprintln!(
                    "Watching {} for drift events (Ctrl-C to stop).",
                    cli.conn.collector
                );
            }
            while let Some(event) = stream.next().await {
                let event = event.map_err(rpc)?;
                let printed = print(|out| {
                    if json {
                        serde_json::to_writer(&mut *out, &event)?;
                        writeln!(out)
                    } else {
                        writeln!(out, "{}", render::event_line(&event))
                    }
                })?;
                if printed == Printed::ReaderGone {
                    break;
                }
            }
            Ok(0)
        }
        #[cfg(feature = "up")]
        Command::Up(_) => unreachable!("handled above"),
    }
}

/// Connects to the collector, with TLS when the URL is https.
pub async fn connect(conn: &Connection) -> Result<FleetClient<Transport>> {
    let channel = channel(conn).await?;
    Ok(FleetClient::new(channel).max_decoding_message_size(256 << 20))
}

/// The HTTP/2 receive window of the CLI's connection and of each answer, in bytes.
const RECEIVE_WINDOW: u32 = 16 << 20;

pub async fn channel(conn: &Connection) -> Result<Transport> {
    let credentials = match conn.token()? {
        None => Credentials(None),
        Some(token) => {
            Credentials(Some(format!("Bearer {token}").parse().map_err(|_| {
                anyhow!("the token holds characters a token never has")
            })?))
        }
    };
    let url = &conn.collector;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(anyhow!(
            "collector URL {url:?} must start with http:// or https://"
        ));
    }
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad collector URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        // A listing of 10,000 hosts is a few MiB: let it arrive without waiting for window
        // updates (the default stream window is 2 MiB).
        .initial_stream_window_size(Some(RECEIVE_WINDOW))
        .initial_connection_window_size(Some(RECEIVE_WINDOW));
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &conn.ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&conn.cert, &conn.key) {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
    }
    let channel = endpoint.connect().await.map_err(|e| match explain(conn, &e) {
        Some(why) => anyhow!("cannot reach the collector at {url}: {why}"),
        None => anyhow!(
            "cannot reach the collector at {url}: {} (start one with `driftwatch-collector serve`, \
             or point --collector / DRIFTWATCH_COLLECTOR at it)",
            source_chain(&e)
        ),
    })?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        credentials,
    ))
}

/// What a failed connection or call means, for the operator (see
/// [`driftwatch_proto::transport`]): which side refused, why, and which flag to change. A
/// guess (a connection closed after the handshake) carries the error it was made from.
fn explain(conn: &Connection, error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use driftwatch_proto::transport::{Diagnosis, Settings, diagnose};
    tracing::debug!(error = ?error, "Connection failure.");
    let ca = conn.ca.as_ref().map(|p| p.display().to_string());
    let settings = Settings {
        url: &conn.collector,
        ca: ca.as_deref(),
        client_cert: conn.cert.is_some(),
        ca_setting: "--ca",
        cert_setting: "--cert and --key",
    };
    let diagnosis = diagnose(error, &settings)?;
    // "Closed" over http is only a guess that the port speaks TLS: ask the port itself.
    if diagnosis == Diagnosis::TlsServer && !speaks_tls(&conn.collector) {
        return None;
    }
    let why = diagnosis.explain(&settings);
    Some(match diagnosis {
        Diagnosis::ClientCertProbablyRequired
        | Diagnosis::ClientCertProbablyRefused
        | Diagnosis::TlsServer => format!("{why} (the error: {})", source_chain(error)),
        _ => why,
    })
}

/// Whether the server at an http:// URL answers an HTTP/2 preface with a TLS record (an
/// alert): a TLS port. Blocking, with short time limits: it runs only on the way out with an
/// error.
fn speaks_tls(url: &str) -> bool {
    use std::io::{Read as _, Write as _};
    use std::net::ToSocketAddrs as _;
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return false;
    };
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let limit = Duration::from_secs(2);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    let mut first = [0u8; 2];
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").is_ok()
        && stream.read_exact(&mut first).is_ok()
        // A TLS record: alert (21) or handshake (22), protocol version 3.x.
        && matches!(first, [21 | 22, 3])
}

/// An error and its sources on one line, a source whose text its error already ends with
/// left out (tonic repeats the rustls reason).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn describe_status(conn: &Connection, status: &tonic::Status) -> String {
    // A status with a source is the transport's (the connection failed under the call), not
    // the collector's answer.
    if let Some(transport) = std::error::Error::source(status)
        && let Some(why) = explain(conn, transport)
    {
        return format!(
            "the call to the collector at {} failed: {why}",
            conn.collector
        );
    }
    match status.code() {
        tonic::Code::Unavailable => format!(
            "the collector at {} is unavailable: {}",
            conn.collector,
            status.message()
        ),
        tonic::Code::Unauthenticated => format!(
            "the collector at {} refused: {}",
            conn.collector,
            status.message()
        ),
        tonic::Code::PermissionDenied => format!(
            "the collector at {} refused this call: {}",
            conn.collector,
            status.message()
        ),
        _ => status.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_has_help() {
        driftwatch_shell::assert_every_argument_has_help::<super::Cli>();
    }
}
