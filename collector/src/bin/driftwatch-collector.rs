//! `driftwatch-collector serve`.

use clap::{Parser, Subcommand};
use driftwatch_collector::server::{self, ServeOptions};

/// The fleet API answers with thousands of small strings per listing, and its threads come and
/// go (tokio's blocking pool): mimalloc's thread-local free lists serve that without glibc's
/// per-arena trimming, which returned a listing's pages to the kernel after every answer only
/// to fault them back in for the next (a fifth of a 10,000-host listing's time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "driftwatch-collector",
    version,
    about = "Receives every agent's drift stream and answers fleet queries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve agents (gRPC) and operators (gRPC and the JSON API) on one port.
    Serve(ServeOptions),
}

fn main() {
    let cli = Cli::parse();
    driftwatch_collector::init_logging();
    let Command::Serve(options) = cli.command;
    let runtime = match server::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(options)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(server::open_database(&options.database)?);
    let listener = server::bind(&options).await?;
    server::serve(options, store, listener, shutdown_signal()).await
}

/// SIGTERM or SIGINT: stop accepting, let streams end, exit.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("Stopping.");
}
