/// Decoding a listing of thousands of hosts is thousands of small allocations (see
/// `driftwatch-collector`'s allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(driftwatch_cli::main());
}
