//! driftwatch's collector: receives every agent's drift stream, stores current drift and
//! history, and answers fleet queries — gRPC, and a JSON API with the same shapes. Also the
//! operator CLI (`driftwatch`), whose `up` runs a collector and an agent in one process.
//!
//! ```text
//!  agents ──Ingest/Stream──► ingest ──► writer (group commit) ──► store (SQLite)
//!                                            │ committed events          ▲
//!  driftwatch CLI ──Fleet──► fleet ◄─────────┴──── Watch      queries ───┘
//! ```

pub mod cli;
pub mod fleet;
pub mod iac;
pub mod ingest;
pub mod metrics;
pub mod render;
pub mod server;
pub mod store;
pub mod up;
pub mod writer;

/// Logs to stderr through `tracing`, filtered by `DRIFTWATCH_LOG` as the agent is, else
/// `RUST_LOG` (default: info); colored only on a terminal (not in journald or a file).
pub fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
