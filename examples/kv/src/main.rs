//! `kv`: see `kv --help`, and the crate's README.

use std::process::ExitCode;

use clap::Parser;
use kv::cmd::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.command.default_log_filter();
    raft_service::cmd::main("kv", filter, cli.command.run())
}
