//! `driftwatch-collector serve`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use driftwatch_collector::server::{self, ServeOptions};
use driftwatch_shell as shell;
use tokio_util::sync::CancellationToken;

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

fn main() -> ExitCode {
    let cli: Cli = shell::parse();
    shell::init_logging("info");
    let Command::Serve(options) = cli.command;
    let runtime = match server::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(options));
    // Past the deadline, nothing left running is waited for (a store call stuck on a disk).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or SIGINT, then stops within `--shutdown-timeout`.
async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let store = Arc::new(server::open_database(&options.database)?);
    let listener = server::bind(&options).await?;
    let deadline = options.shutdown_timeout;
    let mut signals = server::StopSignals::new()?;
    let shutdown = CancellationToken::new();
    let mut serving = tokio::spawn(server::serve(options, store, listener, shutdown.clone()));

    // 1. Serve until a signal (or a failure).
    tokio::select! {
        served = &mut serving => return served?,
        () = signals.recv() => {}
    }
    // 2. Cancel: stop accepting; agents and watchers are told to go (UNAVAILABLE).
    tracing::info!(
        deadline = %humantime::format_duration(deadline),
        "Stopping: closing agent streams and watches, committing queued writes."
    );
    shutdown.cancel();
    // 3. Drain, within the deadline (a second signal cuts it short).
    tokio::select! {
        drained = tokio::time::timeout(deadline, &mut serving) => match drained {
            Ok(served) => served??,
            Err(_) => tracing::warn!(
                "Still draining after the shutdown timeout; exiting anyway (what was not acknowledged, agents send again)."
            ),
        },
        () = signals.recv() => tracing::warn!("Second signal; exiting without draining further."),
    }
    // 4. Exit.
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_has_help() {
        super::shell::assert_every_argument_has_help::<super::Cli>();
    }
}
