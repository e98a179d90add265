//! `remove-node --cluster ADDRS --id ID`

use raft_runtime::raft_core::NodeId;

use super::status::print_members;
use super::{ClusterArgs, TokenArgs};
use crate::outln;
use crate::{Error, Service};

/// Arguments of the `remove-node` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    token: TokenArgs,
    /// The node to remove. Its id can never be used again: a machine that rejoins later
    /// does so under a new id.
    #[arg(long)]
    id: NodeId,
}

/// Removes the node and prints the membership.
pub async fn run<S: Service>(args: Args) -> Result<(), Error> {
    let status = args
        .cluster
        .client()
        .with_admin_token(args.token.load(S::NAME)?)
        .remove_node(args.id)
        .await?;
    outln!("node {} is removed", args.id)?;
    print_members(&status)?;
    Ok(())
}
