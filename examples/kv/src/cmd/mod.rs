//! The command line: the key-value store's own subcommands, one file each (an argument
//! struct and a `run`), and those every service shares (re-exported from
//! [`raft_service::cmd`]).

pub mod cas;
pub mod delete;
pub mod demo;
pub mod get;
pub mod put;
pub mod scan;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::client::Client;
use crate::node::KvService;

pub use raft_service::cmd::{
    ClusterArgs, TokenArgs, add_node, certs, node, parse_duration, remove_node, status, token,
    transfer_leader,
};

/// A durable key-value store on Raft: a demo, a node, and clients of its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "kv", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a 3-node cluster in this process, write keys, stop its leader, restart it, and
    /// check the values.
    Demo(demo::Args),
    /// Write a development CA and node certificates as PEM files, and an admin token.
    Certs(certs::Args),
    /// Write a new admin token (to add one to an existing directory, or to replace one).
    Token(token::Args),
    /// Run one node until SIGINT or SIGTERM.
    Node(node::Args),
    /// Set a key to a value and print the value it had before.
    Put(put::Args),
    /// Print a key's value (a linearizable read unless --consistency says otherwise).
    Get(get::Args),
    /// Remove a key and print the value it had.
    Delete(delete::Args),
    /// Set a key to a new value only if it has the expected one.
    Cas(cas::Args),
    /// Print keys and their values in key order, one JSON object a line.
    Scan(scan::Args),
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
            Command::Node(args) => node::run::<KvService>(args).await,
            Command::Put(args) => put::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Delete(args) => delete::run(args).await,
            Command::Cas(args) => cas::run(args).await,
            Command::Scan(args) => scan::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::AddNode(args) => add_node::run::<KvService>(args).await,
            Command::RemoveNode(args) => remove_node::run::<KvService>(args).await,
            Command::TransferLeader(args) => transfer_leader::run::<KvService>(args).await,
        }
    }
}

/// A client of the nodes `cluster` lists.
fn client(cluster: &ClusterArgs) -> Client {
    Client::from(cluster.client())
}
