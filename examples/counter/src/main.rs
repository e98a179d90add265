//! `counter`: see `counter --help`, and the crate's README.

use std::process::ExitCode;

use counter::cmd::Cli;

fn main() -> ExitCode {
    raft_service::cmd::main("counter", |cli: Cli| cli.command.run())
}
