//! The `driftwatch-agent` command line. Exit codes follow `terraform plan -detailed-exitcode`:
//! 0 no drift, 2 drift found, 1 error.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use driftwatch_proto::baseline::{self, LoadedBaseline};
use driftwatch_proto::keys;
use driftwatch_proto::text::{count, display_path};

use crate::bake::{self, ImageLabel};
use crate::check;
use crate::config::{AgentConfig, Overrides};
use crate::evaluate::RedactKey;
use crate::evaluate::baseline::{ImageInfo, baseline_rules, rfc3339};
use crate::fsutil;
use crate::report::Report;
use crate::rules::{DEFAULT_RULES_TOML, Rules};

use driftwatch_shell::{self as shell, print, print_json, print_str};

/// Exit code: no drift.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: an error stopped the command.
pub const EXIT_ERROR: u8 = shell::EXIT_ERROR;
/// Exit code: drift found.
pub const EXIT_DRIFT: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "driftwatch-agent",
    version,
    about = "driftwatch host agent: bake a baseline, check a host against it"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build, inspect, sign-check and compare baseline files.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Compare a root with a baseline once. Exit 0: no drift, 2: drift, 1: error.
    Check(CheckArgs),
    /// Print or validate rules files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Run the daemon: watch the root, report every transition (JSON lines on stdout when
    /// standalone).
    Run(Overrides),
    /// Validate the daemon's configuration (and the baseline it names); every error at once.
    Validate(Overrides),
    /// Show what the running agent sees now (asked on its status socket: run as root or as
    /// the agent's user).
    Status {
        /// The running agent's state directory (where its status socket, agent.sock, is).
        #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The agent's status socket, when it is not STATE_DIR/agent.sock (`status_socket`
        /// in agent.toml).
        #[arg(long, value_name = "PATH")]
        status_socket: Option<PathBuf>,
        /// Print the JSON status.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BaselineCommand {
    /// Scan a root and write a baseline file (run in the image pipeline).
    Build(BuildArgs),
    /// Print a baseline's header and counts.
    Show {
        /// The baseline file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also list every entry (one line each; with --json, an "entries_list" array).
        #[arg(long)]
        entries: bool,
    },
    /// Check that a baseline is intact and signed by the given key. Exit 0 when it is, 1 otherwise.
    Verify {
        /// The baseline file.
        file: PathBuf,
        /// The trusted public key (PEM, or 64 hex digits).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// What changed between two baselines (e.g. two image builds). Exit 0: same, 2: differ.
    Diff {
        /// The older baseline (e.g. the image build in production).
        old: PathBuf,
        /// The newer baseline (e.g. the image build about to roll out).
        new: PathBuf,
        /// Print JSON (the same shape as `check --json`).
        #[arg(long)]
        json: bool,
    },
    /// Generate an ed25519 signing key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "driftwatch-signing")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// The directory that stands for `/` (a mounted image, a test tree).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Rules file; the built-in defaults (= packaging/rules.toml) when absent.
    #[arg(long, value_name = "RULES.toml")]
    config: Option<PathBuf>,
    /// Where to write the baseline.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The image's name, recorded in the baseline (e.g. `web`).
    #[arg(long, default_value = "")]
    image_name: String,
    /// The image's version, recorded in the baseline (e.g. `2026.11.3`).
    #[arg(long, default_value = "")]
    image_version: String,
    /// Sign with this ed25519 private key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The baseline file.
    #[arg(long, value_name = "FILE")]
    baseline: PathBuf,
    /// The directory that stands for `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    json: bool,
    /// Re-hash every file instead of trusting unchanged metadata.
    #[arg(long)]
    full_hash: bool,
    /// Refuse the baseline unless it is signed by this key (PEM, or 64 hex digits).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// The agent's state directory, whose `redact.key` tags redacted secrets as the daemon's
    /// diffs do (created when missing). Without it, tags are comparable within one output only.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Print the built-in default rules (identical to packaging/rules.toml).
    Default,
    /// Validate a rules file; every error is reported with its key.
    Validate {
        /// The rules file (TOML).
        file: PathBuf,
    },
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli: Cli = shell::parse();
    shell::init_logging("warn");
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Baseline(BaselineCommand::Build(args)) => build(args),
        Command::Baseline(BaselineCommand::Show {
            file,
            json,
            entries,
        }) => show(&file, json, entries),
        Command::Baseline(BaselineCommand::Verify { file, public_key }) => {
            let loaded = fsutil::load_baseline(&file, Some(&public_key))?;
            // Verified: the signer is the trusted key.
            let signer = loaded.signer.as_ref().map(keys::fingerprint);
            print(|out| {
                writeln!(
                    out,
                    "{}: OK, baseline {} signed by {}",
                    file.display(),
                    loaded.id,
                    signer.unwrap_or_default()
                )
            })?;
            Ok(EXIT_CLEAN)
        }
        Command::Baseline(BaselineCommand::Diff { old, new, json }) => {
            let (old, new) = (
                fsutil::load_baseline(&old, None)?,
                fsutil::load_baseline(&new, None)?,
            );
            // Baselines made before redaction hold clear values: tag them for this output only.
            let key = RedactKey::ephemeral()?;
            let report = check::diff_baselines(&old, &new, &key)?;
            print_report(&report, json, "Baseline diff")
        }
        Command::Baseline(BaselineCommand::Keygen { out }) => keygen(&out),
        Command::Check(args) => {
            let loaded = fsutil::load_baseline(&args.baseline, args.public_key.as_deref())?;
            let progress = !args.json && std::io::stderr().is_terminal();
            let key = match &args.state_dir {
                Some(dir) => RedactKey::load_or_create(dir)?,
                None => RedactKey::ephemeral()?,
            };
            let report = check::check(&loaded, &args.root, args.full_hash, progress, &key)?;
            print_report(&report, args.json, "Check")
        }
        Command::Run(overrides) => {
            // One worker is plenty: the daemon's own task does the work (hashing and disk I/O
            // in `block_in_place`, which hands the worker to the listener and uplink tasks
            // meanwhile), and each thread costs memory (stack, malloc arena).
            crate::scan::throttle::single_malloc_arena();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .thread_name("dw-agent")
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            // Spawned rather than run by `block_on` on the main thread: the worker that reads
            // inotify readiness then runs the daemon itself, without waking a second thread.
            runtime.block_on(async {
                tokio::spawn(crate::daemon::run(overrides))
                    .await
                    .context("the daemon task failed")?
            })?;
            Ok(EXIT_CLEAN)
        }
        Command::Validate(overrides) => {
            let config = AgentConfig::load(&overrides)?;
            // The same checks as start-up and SIGHUP: what passes here runs.
            let (loaded, _) = crate::daemon::preflight(&config)?;
            print(|out| {
                writeln!(
                    out,
                    "OK: baseline {} ({}), root {}, state {}",
                    loaded.id,
                    count(loaded.baseline.entries.len() as u64, "entry", "entries"),
                    config.root.display(),
                    config.state_dir.display()
                )?;
                match &config.collector {
                    None => writeln!(out, "standalone: events as JSON lines on stdout"),
                    Some(c) => writeln!(
                        out,
                        "collector {} ({}, heartbeat {}, identity from {})",
                        c.urls.join(", "),
                        match (c.is_tls(), c.cert.is_some()) {
                            (false, _) => "no TLS",
                            (true, false) => "TLS",
                            (true, true) => "mTLS",
                        },
                        humantime::format_duration(c.heartbeat),
                        match (&c.identity_file, c.metadata_service) {
                            (Some(f), _) => f.display().to_string(),
                            (None, true) => "cloud-init or the instance metadata service".into(),
                            (None, false) => "cloud-init or /etc/machine-id".into(),
                        }
                    ),
                }
            })?;
            Ok(EXIT_CLEAN)
        }
        Command::Status {
            state_dir,
            status_socket,
            json,
        } => status(&state_dir, status_socket, json),
        Command::Rules(RulesCommand::Default) => {
            print_str(DEFAULT_RULES_TOML)?;
            Ok(EXIT_CLEAN)
        }
        Command::Rules(RulesCommand::Validate { file }) => {
            let rules = Rules::load(&file)?;
            let trees = count(rules.paths().len() as u64, "tree", "trees");
            print(|out| writeln!(out, "{}: OK, {trees}", file.display()))?;
            Ok(EXIT_CLEAN)
        }
    }
}

fn print_report(report: &Report, json: bool, title: &str) -> Result<u8> {
    if json {
        print_json(report)?;
    } else {
        print_str(&report.render_human(title))?;
    }
    Ok(if report.has_drift() {
        EXIT_DRIFT
    } else {
        EXIT_CLEAN
    })
}

fn build(args: BuildArgs) -> Result<u8> {
    let rules = match &args.config {
        Some(path) => Rules::load(path)?,
        None => Rules::builtin(),
    };
    let key = match &args.signing_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read signing key {}", path.display()))?;
            Some(
                keys::signing_key_from_pem(&pem)
                    .with_context(|| format!("signing key {}", path.display()))?,
            )
        }
        None => None,
    };
    let root_meta = std::fs::metadata(&args.root)
        .with_context(|| format!("cannot read root {}", args.root.display()))?;
    if !root_meta.is_dir() {
        bail!("root {} is not a directory", args.root.display());
    }
    let progress = std::io::stderr().is_terminal();
    let image = ImageLabel {
        name: args.image_name,
        version: args.image_version,
    };
    let built = bake::build(&args.root, &rules, &image, key.as_ref(), progress);
    fsutil::write_atomically(&args.out, &built.bytes, 0o644)
        .with_context(|| format!("cannot write baseline {}", args.out.display()))?;
    const SHOWN_ERRORS: usize = 20;
    for e in built.errors.iter().take(SHOWN_ERRORS) {
        eprintln!("warning: {e}");
    }
    if built.errors.len() > SHOWN_ERRORS {
        eprintln!(
            "warning: … and {} more paths could not be fully recorded",
            built.errors.len() - SHOWN_ERRORS
        );
    }
    let s = &built.stats;
    if args.json {
        let summary = serde_json::json!({
            "baseline_id": built.id.to_hex(),
            "file": display_path(&args.out),
            "file_size": built.bytes.len(),
            "entries": s.entries,
            "files_hashed": s.files_hashed,
            "bytes_hashed": s.bytes_hashed,
            "packages": built.packages,
            "package_sources": built.package_sources,
            "errors": built.errors,
            "duration_seconds": built.elapsed.as_secs_f64(),
            "signed": key.is_some(),
        });
        print_json(&summary)?;
    } else {
        eprintln!(
            "Baseline {} written to {} ({}{})\n  {}, {} hashed ({}), {}{}, {}, {:.1}s",
            built.id,
            args.out.display(),
            human_bytes(built.bytes.len() as u64),
            if key.is_some() {
                ", signed"
            } else {
                ", unsigned"
            },
            count(s.entries, "entry", "entries"),
            count(s.files_hashed, "file", "files"),
            human_bytes(s.bytes_hashed),
            count(built.packages as u64, "package", "packages"),
            if built.package_sources.is_empty() {
                String::new()
            } else {
                format!(" ({})", built.package_sources.join(", "))
            },
            count(built.errors.len() as u64, "error", "errors"),
            built.elapsed.as_secs_f64(),
        );
    }
    Ok(EXIT_CLEAN)
}

fn show(file: &Path, json: bool, list: bool) -> Result<u8> {
    let loaded = fsutil::load_baseline(file, None)?;
    let b = &loaded.baseline;
    let h = &b.header;
    let rules = baseline_rules(&loaded).ok();
    let trees: Vec<String> = rules.as_ref().map_or_else(Vec::new, |r| {
        r.paths().iter().map(|p| display_path(p)).collect()
    });
    if json {
        let mut value = serde_json::json!({
            "baseline_id": loaded.id.to_hex(),
            "format_version": baseline::FORMAT_VERSION,
            "file_size": loaded.file_size,
            "image": ImageInfo::of(&loaded),
            "agent_version": h.agent_version,
            "entries": b.entries.len(),
            "packages": b.packages.len(),
            "package_sources": h.package_sources,
            "trees": trees,
            "rules": h.rules_toml,
        });
        if list {
            value["entries_list"] = b
                .entries
                .iter()
                .map(|e| {
                    serde_json::to_value(crate::evaluate::Facts::of(e)).map(|mut v| {
                        v["path"] = display_path(&e.path).into();
                        v
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .into();
        }
        print_json(&value)?;
        return Ok(EXIT_CLEAN);
    }
    print(|out| show_human(out, &loaded, &trees, list))?;
    Ok(EXIT_CLEAN)
}

/// `baseline show` for people.
fn show_human(
    out: &mut dyn Write,
    loaded: &LoadedBaseline,
    trees: &[String],
    list: bool,
) -> std::io::Result<()> {
    let b = &loaded.baseline;
    let h = &b.header;
    writeln!(out, "baseline   {}", loaded.id)?;
    writeln!(
        out,
        "format     version {} ({}, {})",
        baseline::FORMAT_VERSION,
        human_bytes(loaded.file_size),
        match &loaded.signer {
            Some(k) => format!("signed by {}", keys::fingerprint(k)),
            None => "unsigned".into(),
        }
    )?;
    writeln!(out, "image      {} {}", h.image_name, h.image_version)?;
    writeln!(
        out,
        "built      {} on {} by driftwatch-agent {}",
        rfc3339(h.created_unix),
        h.builder_host,
        h.agent_version
    )?;
    writeln!(out, "entries    {}", b.entries.len())?;
    writeln!(
        out,
        "packages   {} ({})",
        b.packages.len(),
        if h.package_sources.is_empty() {
            "none found".into()
        } else {
            h.package_sources.join(", ")
        }
    )?;
    writeln!(out, "trees      {}", trees.join(" "))?;
    if list {
        for e in &b.entries {
            writeln!(
                out,
                "{:>4o} {:>6}:{:<6} {:>10} {:<9} {}",
                e.mode,
                e.uid,
                e.gid,
                e.size,
                e.kind.as_str(),
                display_path(&e.path)
            )?;
        }
    }
    Ok(())
}

fn status(state_dir: &Path, socket: Option<PathBuf>, json: bool) -> Result<u8> {
    let socket = socket.unwrap_or_else(|| AgentConfig::default_status_socket(state_dir));
    let body = crate::telemetry::socket_get(&socket, "/status").map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is the agent running with this --state-dir? Give --status-socket if its \
                 agent.toml sets status_socket)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (the status socket is private to the agent's user and root, since the drift it \
                 shows may quote root-only files: run `sudo driftwatch-agent status`)"
            }
            _ => "",
        };
        // The connect error names the socket ("cannot connect to PATH: …").
        anyhow::anyhow!("{}{hint}", crate::errors::error_chain(&e))
    })?;
    if json {
        print(|out| writeln!(out, "{}", body.trim_end()))?;
        return Ok(EXIT_CLEAN);
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).context("the agent's status is not JSON")?;
    print(|out| status_human(out, &v))?;
    Ok(EXIT_CLEAN)
}

/// `status` for people.
fn status_human(out: &mut dyn Write, v: &serde_json::Value) -> std::io::Result<()> {
    writeln!(
        out,
        "state      {} (pid {}, since {})",
        v["state"].as_str().unwrap_or("?"),
        v["pid"],
        v["started_at"].as_str().unwrap_or("?")
    )?;
    writeln!(
        out,
        "baseline   {} ({} {})",
        v["baseline_id"].as_str().unwrap_or("?"),
        v["image"]["name"].as_str().unwrap_or(""),
        v["image"]["version"].as_str().unwrap_or("")
    )?;
    writeln!(out, "root       {}", v["root"].as_str().unwrap_or("?"))?;
    let c = &v["coverage"];
    writeln!(
        out,
        "coverage   {} watched, {} ({:.1}%){}",
        c["watched_dirs"],
        count(
            c["unwatched_dirs"].as_u64().unwrap_or(0),
            "unwatched directory",
            "unwatched directories"
        ),
        c["ratio"].as_f64().unwrap_or(0.0) * 100.0,
        match c["pending_dirs"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(
                ", {} not there yet",
                count(n, "recorded tree", "recorded trees")
            ),
        }
    )?;
    if let Some(r) = v["last_rescan"].as_object() {
        writeln!(
            out,
            "rescan     {} at {} ({} ms)",
            r["kind"].as_str().unwrap_or("?"),
            r["finished_at"].as_str().unwrap_or("?"),
            r["duration_ms"]
        )?;
    }
    writeln!(
        out,
        "events     seq {}, spool {} unacked ({})",
        v["seq"],
        v["spool"]["unacked"],
        count(v["spool"]["bytes"].as_u64().unwrap_or(0), "byte", "bytes")
    )?;
    if let Some(state) = v["spool"]["state"].as_str().filter(|s| *s != "durable") {
        writeln!(
            out,
            "spool      {state} ({} held in memory, still sent)",
            count(v["spool"]["held"].as_u64().unwrap_or(0), "event", "events")
        )?;
    }
    for fault in v["faults"].as_array().into_iter().flatten() {
        writeln!(out, "fault      {}", fault.as_str().unwrap_or("?"))?;
    }
    if let Some(c) = v["collector"].as_object() {
        writeln!(
            out,
            "collector  {} {} (host {}, acked seq {})",
            c["state"].as_str().unwrap_or("?"),
            c["url"].as_str().unwrap_or("?"),
            c["host"].as_str().filter(|h| !h.is_empty()).unwrap_or("?"),
            c["last_ack_seq"]
        )?;
        if let Some(error) = c["last_error"].as_str() {
            writeln!(out, "           last error: {error}")?;
        }
    }
    let items = count(v["drift_count"].as_u64().unwrap_or(0), "item", "items");
    writeln!(out, "drift      {items}")?;
    for item in v["drift"].as_array().into_iter().flatten() {
        if let Some(path) = item["path"].as_str() {
            writeln!(
                out,
                "  {:<10} {:<8} {}",
                item["severity"].as_str().unwrap_or("?"),
                item["kind"].as_str().unwrap_or("?"),
                driftwatch_proto::text::terminal(path)
            )?;
        } else {
            writeln!(
                out,
                "  package    {:<8} {} {}",
                item["kind"].as_str().unwrap_or("?"),
                driftwatch_proto::text::terminal(item["name"].as_str().unwrap_or("?")),
                driftwatch_proto::text::terminal(item["actual_version"].as_str().unwrap_or(""))
            )?;
        }
    }
    Ok(())
}

fn keygen(prefix: &Path) -> Result<u8> {
    let private = PathBuf::from(format!("{}.key", prefix.display()));
    let public = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&private, &public] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    let key = keys::generate()?;
    fsutil::write_atomically(&private, keys::signing_key_to_pem(&key).as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", private.display()))?;
    fsutil::write_atomically(
        &public,
        keys::verifying_key_to_pem(&key.verifying_key()).as_bytes(),
        0o644,
    )
    .with_context(|| format!("cannot write {}", public.display()))?;
    print(|out| {
        writeln!(
            out,
            "Wrote {} (private, keep it in the pipeline's secret store) and {} (public, ship it to hosts)\nkey {}",
            private.display(),
            public.display(),
            keys::fingerprint(&key.verifying_key())
        )
    })?;
    Ok(EXIT_CLEAN)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_has_help() {
        driftwatch_shell::assert_every_argument_has_help::<super::Cli>();
    }
}
