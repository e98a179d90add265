//! `kv`: see `kv --help`, and the crate's README.

use std::process::ExitCode;

use kv::cmd::Cli;

fn main() -> ExitCode {
    raft_service::cmd::main("kv", |cli: Cli| cli.command.run())
}
