//! The command line: one file per subcommand, each an argument struct and a `run`.

pub mod add_node;
pub mod certs;
pub mod demo;
pub mod get;
pub mod incr;
pub mod node;
pub mod remove_node;
pub mod status;
pub mod token;
pub mod transfer_leader;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::admin_token::AdminToken;
use crate::client::Client;

/// A replicated counter on Raft: a demo, a node, and clients of its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "counter", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a 3-node cluster in this process, stop its leader, restart it, and check the count.
    Demo(demo::Args),
    /// Write a development CA and node certificates as PEM files, and an admin token.
    Certs(certs::Args),
    /// Write a new admin token (to add one to an existing directory, or to replace one).
    Token(token::Args),
    /// Run one node until SIGINT or SIGTERM.
    Node(node::Args),
    /// Add to the counter (default 1) and print the value right after.
    Incr(incr::Args),
    /// Print the counter's value (a linearizable read).
    Get(get::Args),
    /// Print each node's role, term, indexes, and the membership.
    Status(status::Args),
    /// Add a node to the cluster (as a learner, then as a voter once caught up).
    AddNode(add_node::Args),
    /// Remove a node from the cluster (its id can never be used again).
    RemoveNode(remove_node::Args),
    /// Hand leadership to another voter.
    TransferLeader(transfer_leader::Args),
}

impl Command {
    /// The log level when `RUST_LOG` is not set: a node logs what it does; the demo and
    /// the clients print their own output and log only what went wrong. The demo stops
    /// nodes on purpose, so the warnings that causes are not shown.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Node(_) => "info",
            Command::Demo(_) => "error",
            _ => "warn",
        }
    }

    /// Runs the command.
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Demo(args) => demo::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Token(args) => token::run(args),
            Command::Node(args) => node::run(args).await,
            Command::Incr(args) => incr::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::AddNode(args) => add_node::run(args).await,
            Command::RemoveNode(args) => remove_node::run(args).await,
            Command::TransferLeader(args) => transfer_leader::run(args).await,
        }
    }
}

/// The options every client command shares.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// HTTP addresses of the cluster's nodes, tried in turn (HOST:PORT,HOST:PORT,...).
    #[arg(long, value_delimiter = ',', required = true)]
    pub cluster: Vec<String>,
    /// Give up after trying for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl ClusterArgs {
    /// A client of these nodes.
    pub fn client(&self) -> Client {
        Client::new(&self.cluster).with_deadline(Duration::from_secs(self.timeout))
    }
}

/// Where the admin commands find the admin token: the certificates directory (as
/// `counter certs` wrote it) or a file of its own.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TokenArgs {
    /// The directory `counter certs` wrote; the token is its admin.token.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// The file holding the admin token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// Loads the token from where the arguments say.
    pub fn load(&self) -> Result<AdminToken, Error> {
        let path = match (&self.token_file, &self.certs) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => crate::certs::admin_token_file(dir),
            (None, None) => return Err("pass --certs DIR or --token-file FILE".into()),
        };
        Ok(AdminToken::load(&path)?)
    }
}

/// `500ms`, `3s`, `5m`, `1h`, or plain seconds (`3`, `0.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (500ms, 3s, 5m)"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }
}
