//! The `event-hub` command.

fn main() -> std::process::ExitCode {
    event_hub::cli::main()
}
