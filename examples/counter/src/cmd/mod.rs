//! The command line: one file per subcommand, each an argument struct and a `run`.

pub mod add_node;
pub mod bench;
pub mod certs;
pub mod demo;
pub mod get;
pub mod incr;
pub mod node;
pub mod remove_node;
pub mod status;
pub mod transfer_leader;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
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
    /// Write a development CA and node certificates as PEM files.
    Certs(certs::Args),
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
    /// Measure throughput, latency, fsyncs, bytes, CPU and memory of 3-node clusters.
    Bench(bench::Args),
}

impl Command {
    /// The log level when `RUST_LOG` is not set: a node logs what it does; the demo and
    /// the clients print their own output and log only what went wrong. The demo and the
    /// benchmark stop nodes on purpose, so the warnings that causes are not shown.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Node(_) => "info",
            Command::Demo(_) | Command::Bench(_) => "error",
            _ => "warn",
        }
    }

    /// Runs the command.
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Demo(args) => demo::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Node(args) => node::run(args).await,
            Command::Incr(args) => incr::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::AddNode(args) => add_node::run(args).await,
            Command::RemoveNode(args) => remove_node::run(args).await,
            Command::TransferLeader(args) => transfer_leader::run(args).await,
            Command::Bench(args) => bench::run(args).await,
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
