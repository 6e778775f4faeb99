//! `driftwatch-collector serve`, the operator tokens it accepts (`token create|list|revoke`,
//! run on the collector's host against its database), `migrate` (the database's schema
//! brought up to date alone, for pipelines that migrate before they deploy) and `validate`
//! (`serve`'s flags checked without serving: the systemd unit's `ExecStartPre`).
//!
//! Under systemd (`Type=notify`, packaging/systemd/driftwatch-collector.service), `serve`
//! says READY=1 once it accepts connections, WATCHDOG=1 every half `WatchdogSec` while its
//! runtime runs, and STOPPING=1 when a signal starts the drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use driftwatch_collector::access::token;
use driftwatch_collector::server::{self, DEFAULT_DATABASE, ServeOptions};
use driftwatch_collector::store::{self, NewToken, Role};
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
    Serve(Box<ServeOptions>),
    /// Operators' bearer tokens: each has a name and a role (reader, operator, admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check `serve`'s flags (the same flags, and the same environment) without serving:
    /// every problem at once, each with its flag; exit 0 and print OK when there is none.
    Validate(Box<ServeOptions>),
    /// Bring the database's schema up to date, then exit (`serve` does it too, at start;
    /// collectors sharing a PostgreSQL database take turns under an advisory lock).
    Migrate {
        #[command(flatten)]
        db: Database,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it, once: only its hash is stored.
    Create {
        /// Who or what holds it (shown in listings and logs).
        #[arg(long)]
        name: String,
        /// reader: every query and watch; operator: also IaC imports; admin: also tokens.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// How long it is accepted (e.g. 90d, 12h); without it, until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        db: Database,
    },
    /// Every token, revoked ones too (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: Database,
    },
    /// Revoke the live token of this name: refused from the next call on.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        db: Database,
    },
}

#[derive(Args)]
struct Database {
    /// The collector's database (`sqlite://PATH` or `postgres://USER@HOST/DB`), as
    /// `serve --database`.
    #[arg(long, default_value = DEFAULT_DATABASE, env = "DRIFTWATCH_DATABASE")]
    database: String,
    /// A file holding the PostgreSQL password, as `serve --database-password-file`.
    #[arg(long, env = "DRIFTWATCH_DATABASE_PASSWORD_FILE")]
    database_password_file: Option<PathBuf>,
}

impl Database {
    fn open(&self) -> anyhow::Result<server::Database> {
        server::open_database(&self.database, self.database_password_file.as_deref())
    }
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: store::UnknownRole| e.to_string())
}

fn main() -> ExitCode {
    let cli: Cli = shell::parse();
    shell::init_logging("info");
    let options = match cli.command {
        Command::Serve(options) => *options,
        Command::Migrate { db } => {
            return match migrate(&db) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Validate(options) => {
            let problems = driftwatch_collector::validate::problems(&options);
            if problems.is_empty() {
                return match shell::print_str("OK\n") {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::FAILURE;
        }
        Command::Token(command) => {
            return match tokens(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
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
    let store =
        server::open_database(&options.database, options.database_password_file.as_deref())?;
    let listener = server::bind(&options).await?;
    let deadline = options.shutdown_timeout;
    let mut signals = server::StopSignals::new()?;
    let shutdown = CancellationToken::new();
    let mut serving = tokio::spawn(server::serve(options, store, listener, shutdown.clone()));
    // systemd's watchdog (WatchdogSec=): pinged from this runtime, so a collector whose
    // runtime stops turning is restarted.
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }

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
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
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

fn migrate(db: &Database) -> anyhow::Result<()> {
    match server::migrate_database(&db.database, db.database_password_file.as_deref())? {
        Some(0) => eprintln!("The database schema is up to date."),
        Some(n) => eprintln!("The database schema is up to date (migrations applied: {n})."),
        None => eprintln!("The database schema is up to date."),
    }
    Ok(())
}

fn tokens(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            role,
            ttl,
            db,
        } => {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                anyhow::bail!(
                    "a token name is 1 to 128 characters, none of them control characters"
                );
            }
            let store = db.open()?;
            let (secret, sha256) =
                token::generate().map_err(|e| anyhow::anyhow!("drawing a random token: {e}"))?;
            let now = store::now_millis();
            let expires_at = ttl
                .map(|ttl| now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)));
            store.create_token(&NewToken {
                name: name.clone(),
                role,
                sha256,
                created_at: now,
                expires_at,
            })?;
            eprintln!(
                "Token {name:?} ({role}) created. It is shown once, here; the collector keeps only its hash."
            );
            shell::print_str(&format!("{secret}\n"))?;
        }
        TokenCommand::List { json, db } => {
            let tokens = db.open()?.tokens()?;
            let rows: Vec<serde_json::Value> = tokens
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "role": t.role.as_str(),
                        "created_at": store::rfc3339(t.created_at),
                        "expires_at": t.expires_at.map(store::rfc3339),
                        "revoked_at": t.revoked_at.map(store::rfc3339),
                    })
                })
                .collect();
            if json {
                shell::print_json(&rows)?;
            } else if tokens.is_empty() {
                shell::print_str("No tokens.\n")?;
            } else {
                let when = |t: Option<i64>| t.map(store::rfc3339).unwrap_or_else(|| "-".into());
                let mut text = format!(
                    "{:<24} {:<9} {:<25} {:<25} REVOKED\n",
                    "NAME", "ROLE", "CREATED", "EXPIRES"
                );
                for t in &tokens {
                    text += &format!(
                        "{:<24} {:<9} {:<25} {:<25} {}\n",
                        t.name,
                        t.role,
                        store::rfc3339(t.created_at),
                        when(t.expires_at),
                        when(t.revoked_at)
                    );
                }
                shell::print_str(&text)?;
            }
        }
        TokenCommand::Revoke { name, db } => {
            let store = db.open()?;
            if !store.revoke_token(&name, store::now_millis())? {
                anyhow::bail!(
                    "no live token is named {name:?} (`driftwatch-collector token list` shows them)"
                );
            }
            eprintln!("Token {name:?} revoked.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_has_help() {
        super::shell::assert_every_argument_has_help::<super::Cli>();
    }
}
