//! `transfer-leader --cluster ADDRS --to ID`

use raft_runtime::raft_core::NodeId;

use super::{ClusterArgs, TokenArgs};
use crate::outln;
use crate::{Error, Service};

/// Arguments of the `transfer-leader` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    token: TokenArgs,
    /// The voter that should lead.
    #[arg(long)]
    to: NodeId,
}

/// Hands leadership over and waits until the new leader has taken over.
pub async fn run<S: Service>(args: Args) -> Result<(), Error> {
    let status = args
        .cluster
        .client()
        .with_admin_token(args.token.load(S::NAME)?)
        .transfer_leader(args.to)
        .await?;
    outln!("node {} leads (term {})", args.to, status.term)?;
    Ok(())
}
