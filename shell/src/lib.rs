//! What every driftwatch program does alike at the shell (`driftwatch-agent`, `driftwatch`,
//! `driftwatch-collector`), in a crate of its own so that each binary links only its own
//! program:
//!
//! - a usage error (unknown flag, bad value, missing argument) exits 1, like any other error:
//!   clap's own code for it is 2, which means "drift found" to every script;
//! - output into a pipe whose reader went away (`| head`) ends quietly, with the command's own
//!   exit code, instead of `println!`'s panic ("failed printing to stdout", exit 101);
//! - logs go to stderr through `tracing`, filtered by `DRIFTWATCH_LOG` (else `RUST_LOG`), colored
//!   only on a terminal (not in journald or a file).

use std::io::{self, IsTerminal as _, Write};

/// The exit code of every failure, usage errors included (2 means "drift found").
pub const EXIT_ERROR: u8 = 1;

/// Parses the command line, or exits: 0 after `--help` or `--version` (on stdout), 1 after a
/// usage error (on stderr, as clap words it).
pub fn parse<C: clap::Parser>() -> C {
    C::try_parse().unwrap_or_else(|e| {
        // Nothing more to say when stdout or stderr is closed.
        let _ = e.print();
        std::process::exit(if e.use_stderr() {
            i32::from(EXIT_ERROR)
        } else {
            0
        })
    })
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
