//! The `switchyard` binary: everything is in the library; this only runs the command line.

/// jemalloc rather than the system allocator: measured faster per request, within the memory bound (see
/// docs/benchmarks.md, "Side by side with nginx"). Only on x86-64 (not MSVC) and macOS: see crates/router/Cargo.toml.
#[cfg(any(all(target_arch = "x86_64", not(target_env = "msvc")), target_os = "macos"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
