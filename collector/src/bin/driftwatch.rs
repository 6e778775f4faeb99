fn main() {
    std::process::exit(driftwatch_collector::cli::main());
}
