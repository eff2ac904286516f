//! The `switchyard` binary: everything is in the library; this only runs the command line.
//!
//! mimalloc is the allocator: measured side by side with nginx (`docs/benchmarks.md`, section 3), it took the
//! router's CPU per buffered request down by about a fifth against glibc's malloc, whose arena locks the two
//! runtime threads contend on.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
