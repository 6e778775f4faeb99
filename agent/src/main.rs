//! `driftwatch-agent`: see the library's `cli` module.

fn main() -> std::process::ExitCode {
    driftwatch_agent::cli::main()
}
