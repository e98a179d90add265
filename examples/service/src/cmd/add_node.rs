//! `add-node --cluster ADDRS --id ID --raft-addr HOST:PORT [--http-addr HOST:PORT]`

use raft_runtime::raft_core::NodeId;

use super::status::print_members;
use super::{ClusterArgs, TokenArgs};
use crate::api::AddRequest;
use crate::outln;
use crate::{Error, Service};

/// Arguments of the `add-node` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    token: TokenArgs,
    /// The new node's id (never one that was removed before).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    id: NodeId,
    /// The new node's Raft address, as the other nodes reach it.
    #[arg(long)]
    raft_addr: String,
    /// The new node's HTTP address, registered so that other nodes can pass admin requests
    /// on to it when it leads.
    #[arg(long)]
    http_addr: Option<String>,
}

/// Adds the node (started beforehand with `node --join`) and prints the membership.
pub async fn run<S: Service>(args: Args) -> Result<(), Error> {
    let request = AddRequest {
        id: args.id,
        raft_addr: args.raft_addr,
        http_addr: args.http_addr,
    };
    let status = args
        .cluster
        .client()
        .with_admin_token(args.token.load(S::NAME)?)
        .add_node(&request)
        .await?;
    outln!("node {} is a voter", args.id)?;
    print_members(&status)?;
    Ok(())
}
