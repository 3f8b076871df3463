//! `oms-sync`: see the library's `cli` module for the commands.

fn main() -> std::process::ExitCode {
    oms_sync::cli::main()
}
