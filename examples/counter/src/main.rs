//! `counter`: see `counter --help`, and the crate's README.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use counter::cmd::Cli;
use counter::output;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_filter()));
    // Logs go to stderr, so that stdout carries only the command's own output.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            report(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`counter status | head -3`): a normal end, with
        // the status a shell shows for a tool that SIGPIPE stopped (see `output`).
        Err(e) if output::is_stdout_closed(&*e) => ExitCode::from(output::EXIT_STDOUT_CLOSED),
        Err(e) => {
            report(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Prints an error on stderr; if stderr is gone too, there is no one left to tell.
fn report(error: &str) {
    let _ = writeln!(std::io::stderr(), "counter: {error}");
}
