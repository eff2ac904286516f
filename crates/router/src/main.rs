//! The `switchyard` binary: everything is in the library; this only runs the command line.

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
