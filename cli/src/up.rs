//! `driftwatch up`: try driftwatch on one machine. A collector (SQLite under `./driftwatch-data`)
//! and an agent for this machine, in one process; drift is printed as it arrives.
//!
//! Without `--baseline`, the baseline is built from the machine as it is now, on first run, so
//! drift is relative to *now* — not to an image — and `up` says so.
//!
//! SIGTERM or SIGINT (Ctrl-C) stops both within `--shutdown-timeout`: the agent drains its
//! stream into the collector, then the collector stops as `driftwatch-collector` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use driftwatch_agent::config::Overrides;
use driftwatch_agent::rules::Rules;
use driftwatch_proto::v1;
use driftwatch_shell::{Printed, print};
use sha2::{Digest as _, Sha256};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use driftwatch_collector::server::{self, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The directory that stands for `/` (point it at a test directory to try things safely).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Watch only these trees (absolute paths as seen inside the root, comma-separated)
    /// instead of the default rules' system paths.
    #[arg(long, value_delimiter = ',')]
    pub paths: Vec<PathBuf>,
    /// Compare with this baseline (e.g. the one baked into the image) instead of building one
    /// from the current state.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Where the collector's database, the baseline and the agent's state live.
    #[arg(long, default_value = "driftwatch-data")]
    pub data_dir: PathBuf,
    /// The collector's address (gRPC and HTTP).
    #[arg(long, default_value = server::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// On SIGTERM or Ctrl-C: how long the agent and the collector get to drain (agents and
    /// `watch` clients are told to go, queued writes committed) before `up` exits regardless.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

pub async fn run(args: UpArgs) -> Result<i32> {
    // The database and the agent's state quote the drift found: the directory is private.
    driftwatch_collector::store::sqlite::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let root = std::fs::canonicalize(&args.root)
        .with_context(|| format!("--root {}", args.root.display()))?;
    let baseline = match &args.baseline {
        Some(b) => b.clone(),
        None => first_run_baseline(&root, &args.paths, &data_dir).await?,
    };

    let options = ServeOptions {
        listen: args.listen,
        database: format!("sqlite://{}", data_dir.join("collector.db").display()),
        ..ServeOptions::default()
    };
    let store = server::open_database(&options.database, None)?;
    let listener = server::bind(&options)
        .await
        .context("is another collector running? (choose another address with --listen)")?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut signals = server::StopSignals::new()?;
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(server::serve(options, store, listener, shutdown.clone()));

    // The agent's status socket goes in its state directory, unless that path is too long
    // for a unix socket (a deep working directory): then `up` runs without one.
    let state_dir = data_dir.join("agent");
    let socket = driftwatch_agent::config::AgentConfig::default_status_socket(&state_dir);
    let status_socket = if socket.as_os_str().len() > driftwatch_agent::config::MAX_SOCKET_PATH {
        tracing::info!(socket = %socket.display(), "Path too long for a unix socket; the agent runs without a status socket.");
        Some(PathBuf::new())
    } else {
        None
    };
    let overrides = Overrides {
        baseline: Some(baseline),
        root: Some(root.clone()),
        state_dir: Some(state_dir),
        status_socket,
        collector: Some(url.clone()),
        listen: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    };
    // The agent stops on SIGTERM and SIGINT by itself (it catches them too).
    let mut agent = tokio::spawn(driftwatch_agent::daemon::run(overrides));

    print(|out| {
        writeln!(out)?;
        writeln!(
            out,
            "driftwatch is up: a collector at {url} and an agent watching {}.",
            root.display()
        )?;
        writeln!(out, "In another terminal, ask the fleet (of one):")?;
        writeln!(out, "    driftwatch --collector {url} hosts")?;
        writeln!(
            out,
            "    driftwatch --collector {url} host <HOST>      # drift items, with diffs"
        )?;
        writeln!(out, "    driftwatch --collector {url} paths")?;
        writeln!(out, "    driftwatch --collector {url} history --since 1h")?;
        writeln!(out, "JSON API: {url}/api/v1/hosts   Metrics: {url}/metrics")?;
        writeln!(out, "Drift appears below as it happens. Ctrl-C stops both.")?;
        writeln!(out)
    })?;
    let feed = tokio::spawn(print_feed(url));

    // 1. Run until a signal (or until the agent fails).
    let failed = tokio::select! {
        ended = &mut agent => Some(ended),
        () = signals.recv() => None,
    };
    feed.abort();
    // 2. The agent drains its stream into the collector; 3. the collector is cancelled and
    // drains; both within the deadline.
    let stop = async {
        let ended = match failed {
            Some(ended) => ended,
            None => agent.await,
        };
        shutdown.cancel();
        if let Ok(Err(e)) = collector.await {
            tracing::error!(error = %format!("{e:#}"), "The collector stopped with an error.");
        }
        ended
    };
    let ended = tokio::select! {
        ended = tokio::time::timeout(args.shutdown_timeout, stop) => ended,
        () = signals.recv() => {
            tracing::warn!("Second signal; exiting without draining further.");
            return Ok(0);
        }
    };
    // 4. Exit.
    match ended {
        Ok(Ok(Ok(()))) => Ok(0),
        Ok(Ok(Err(e))) => Err(e.context("the agent stopped")),
        Ok(Err(e)) => bail!("the agent task failed: {e}"),
        Err(_) => {
            tracing::warn!("Still draining after the shutdown timeout; exiting anyway.");
            Ok(0)
        }
    }
}

/// The baseline `up` builds from the current state (once per root and set of paths).
async fn first_run_baseline(root: &Path, paths: &[PathBuf], data_dir: &Path) -> Result<PathBuf> {
    let rules = rules_for(paths)?;
    let key = Sha256::digest(format!("{}\0{}", root.display(), rules.source()));
    let file = data_dir.join(format!("baseline-{}.dwb", hex::encode(&key[..6])));
    if file.exists() {
        print(|out| {
            writeln!(
                out,
                "Using the baseline built from this machine on the first run ({}); delete it to start over.",
                file.display()
            )
        })?;
        return Ok(file);
    }
    print(|out| {
        writeln!(
            out,
            "No --baseline given: building one from the CURRENT state of {}.",
            root.display()
        )?;
        writeln!(
            out,
            "Drift will be relative to NOW, not to an image. In production the image pipeline"
        )?;
        writeln!(
            out,
            "bakes the baseline (driftwatch-agent baseline build) and the agent compares with that."
        )
    })?;
    let root = root.to_owned();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let built = tokio::task::spawn_blocking(move || {
        driftwatch_agent::bake::build(
            &root,
            &rules,
            &driftwatch_agent::bake::ImageLabel {
                name: "driftwatch-up".into(),
                version: String::new(),
            },
            None,
            progress,
        )
    })
    .await?;
    driftwatch_agent::fsutil::write_atomically(&file, &built.bytes, 0o600)
        .with_context(|| format!("writing {}", file.display()))?;
    print(|out| {
        writeln!(
            out,
            "Baseline {} built: {} in {:.1} s ({} unreadable).",
            file.display(),
            driftwatch_proto::text::count(built.stats.entries, "entry", "entries"),
            built.elapsed.as_secs_f64(),
            built.errors.len()
        )
    })?;
    Ok(file)
}

/// The default rules, or the default rules watching only `paths`.
fn rules_for(paths: &[PathBuf]) -> Result<Rules> {
    let builtin = Rules::builtin();
    if paths.is_empty() {
        return Ok(builtin);
    }
    for p in paths {
        if !p.is_absolute() {
            bail!(
                "--paths {}: give absolute paths as seen inside the root",
                p.display()
            );
        }
    }
    let mut doc: toml::Table = builtin.source().parse().context("the built-in rules")?;
    let scan = doc
        .entry("scan")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(scan) = scan.as_table_mut() else {
        bail!("the built-in rules have no [scan] table");
    };
    scan.insert(
        "paths".into(),
        toml::Value::Array(
            paths
                .iter()
                .map(|p| toml::Value::String(p.display().to_string()))
                .collect(),
        ),
    );
    let text = toml::to_string(&doc)?;
    Rules::parse(&text, "--paths").map_err(|e| anyhow::anyhow!("{e}"))
}

/// Prints every stored event, live, through the collector's own Watch.
async fn print_feed(url: String) {
    let conn = crate::Connection {
        collector: url,
        ca: None,
        cert: None,
        key: None,
        // Its own collector: never the user's token file.
        token: Some(String::new()),
    };
    // The collector is starting alongside: retry briefly.
    let mut client = None;
    for _ in 0..50 {
        if let Ok(c) = crate::connect(&conn).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(mut client) = client else { return };
    let Ok(stream) = client.watch(v1::WatchRequest::default()).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Some(Ok(event)) = stream.next().await {
        let line = crate::render::event_line(&event);
        // Nobody reads any more (`up | head`), or stdout failed: `up` keeps running.
        if !matches!(print(|out| writeln!(out, "{line}")), Ok(Printed::All)) {
            return;
        }
    }
}
