//! The `switchyard` binary: everything is in the library; this only runs the command line.

/// jemalloc rather than the system allocator: measured faster per request, within the memory bound (see
/// docs/benchmarks.md, "Side by side with nginx").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
