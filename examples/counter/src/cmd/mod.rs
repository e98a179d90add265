//! The command line: the counter's own subcommands, one file each (an argument struct
//! and a `run`), and those every service shares (re-exported from [`raft_service::cmd`]).

pub mod demo;
pub mod get;
pub mod incr;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::node::CounterService;

pub use raft_service::cmd::{
    ClusterArgs, TokenArgs, add_node, certs, node, parse_duration, remove_node, status, token,
    transfer_leader,
};

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
    /// Runs the command.
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Demo(args) => demo::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Token(args) => token::run(args),
            Command::Node(args) => node::run::<CounterService>(args).await,
            Command::Incr(args) => incr::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::AddNode(args) => add_node::run::<CounterService>(args).await,
            Command::RemoveNode(args) => remove_node::run::<CounterService>(args).await,
            Command::TransferLeader(args) => transfer_leader::run::<CounterService>(args).await,
        }
    }
}
