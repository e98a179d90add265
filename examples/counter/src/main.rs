//! `counter`: see `counter --help`, and the crate's README.

use std::process::ExitCode;

use clap::Parser;
use counter::cmd::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.command.default_log_filter();
    raft_service::cmd::main("counter", filter, cli.command.run())
}
