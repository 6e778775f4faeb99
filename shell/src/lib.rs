//! What every driftwatch program does alike at the shell (`driftwatch-agent`, `driftwatch`,
//! `driftwatch-collector`), in a crate of its own so that each binary links only its own
//! program:
//!
//! - a usage error (unknown flag, bad value, missing argument) exits 1, like any other error:
//!   clap's own code for it is 2, which means "drift found" to every script;
//! - output into a pipe whose reader went away (`| head`) ends quietly, with the command's own
//!   exit code, instead of `println!`'s panic ("failed printing to stdout", exit 101);
//! - logs go to stderr through `tracing`, filtered by `DRIFTWATCH_LOG` (else `RUST_LOG`), colored
//!   only on a terminal (not in journald or a file);
//! - a hidden `generate-docs --out DIR` writes the program's man pages and shell completions,
//!   made from its command line, for the packages (packaging/build-packages.sh).

use std::io::{self, IsTerminal as _, Write};
use std::path::{Path, PathBuf};

/// The exit code of every failure, usage errors included (2 means "drift found").
pub const EXIT_ERROR: u8 = 1;

/// Parses the command line, or exits: 0 after `--help` or `--version` (on stdout), 1 after a
/// usage error (on stderr, as clap words it). `generate-docs --out DIR` (hidden, on every
/// program) writes the man pages and completions of `C`'s command line there, then exits.
pub fn parse<C: clap::Parser>() -> C {
    let command = C::command().subcommand(
        clap::Command::new(DOCS_COMMAND)
            .hide(true)
            .about("Write this program's man pages (DIR/man/) and shell completions (DIR/completions/), for packaging.")
            .arg(
                clap::Arg::new("out")
                    .long("out")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Directory to write into (created if missing)."),
            ),
    );
    let mut matches = command.try_get_matches().unwrap_or_else(|e| exit_usage(&e));
    if let Some((DOCS_COMMAND, docs)) = matches.subcommand() {
        let out = docs.get_one::<PathBuf>("out").expect("required");
        match write_docs(C::command(), out) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!(
                    "error: writing man pages and completions to {}: {e}",
                    out.display()
                );
                std::process::exit(i32::from(EXIT_ERROR));
            }
        }
    }
    C::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| exit_usage(&e))
}

/// The hidden command of [`parse`] that writes man pages and completions.
const DOCS_COMMAND: &str = "generate-docs";

fn exit_usage(e: &clap::Error) -> ! {
    // Nothing more to say when stdout or stderr is closed.
    let _ = e.print();
    std::process::exit(if e.use_stderr() {
        i32::from(EXIT_ERROR)
    } else {
        0
    })
}

/// Writes `command`'s man pages to `out/man/` (section 1: `NAME.1`, and `NAME-SUB.1` for each
/// subcommand) and its completions for bash, zsh and fish to `out/completions/` (`NAME.bash`,
/// `_NAME`, `NAME.fish`).
pub fn write_docs(command: clap::Command, out: &Path) -> io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(command.clone(), &man)?;
    let mut command = command;
    let name = command.get_name().to_owned();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command, &name, &completions)?;
    }
    Ok(())
}

/// Logs to stderr through `tracing`, at `default` (an `EnvFilter` directive, e.g. `info`)
/// unless `DRIFTWATCH_LOG` or `RUST_LOG` says otherwise.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// What became of some output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Printed {
    /// All of it was written.
    All,
    /// The reader went away (EPIPE): nothing more is worth printing.
    ReaderGone,
}

/// Writes to stdout through one lock and one buffer. A reader that went away ends the output
/// quietly; any other failure (a full disk behind a redirection) is an error.
pub fn print(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<Printed> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(Printed::All),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(e),
    }
}

/// [`print`] of text.
pub fn print_str(text: &str) -> io::Result<Printed> {
    print(|out| out.write_all(text.as_bytes()))
}

/// [`print`] of a value as pretty JSON, and a newline.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<Printed> {
    print(|out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        writeln!(out)
    })
}

/// Panics naming every argument of `C`'s command line, subcommands included, that has no
/// help text (each binary's tests call it).
pub fn assert_every_argument_has_help<C: clap::CommandFactory>() {
    let missing = arguments_without_help(&C::command());
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

/// The arguments of `command` and of every subcommand below it that have no help text, as
/// `command sub --flag`.
fn arguments_without_help(command: &clap::Command) -> Vec<String> {
    let mut missing = Vec::new();
    let mut command = command.clone();
    command.build();
    collect_missing_help(&command, command.get_name(), &mut missing);
    missing
}

fn collect_missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        if arg.get_help().is_none() && arg.get_long_help().is_none() && !arg.is_hide_set() {
            let name = arg
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            missing.push(format!("{path} {name}"));
        }
    }
    for sub in command.get_subcommands() {
        collect_missing_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    #[test]
    fn docs_are_a_man_page_per_command_and_three_completions() {
        let command = Command::new("tool")
            .about("A tool.")
            .subcommand(Command::new("sub").about("A subcommand."))
            .subcommand(Command::new("secret").hide(true));
        let dir =
            std::env::temp_dir().join(format!("driftwatch-shell-docs-{}", std::process::id()));
        super::write_docs(command, &dir).unwrap();
        let mut files: Vec<String> = ["man", "completions"]
            .iter()
            .flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            files,
            ["_tool", "tool-sub.1", "tool.1", "tool.bash", "tool.fish"]
        );
    }

    #[test]
    fn an_argument_without_help_is_named_with_its_command() {
        let command = Command::new("tool")
            .arg(Arg::new("quiet").long("quiet").help("Say less."))
            .subcommand(
                Command::new("sub")
                    .arg(Arg::new("file"))
                    .arg(Arg::new("all").long("all")),
            );
        assert_eq!(
            super::arguments_without_help(&command),
            ["tool sub FILE", "tool sub --all"]
        );
    }
}
