//! `counter get --cluster ADDRS`

use super::ClusterArgs;
use crate::Error;
use crate::client::Client;
use crate::outln;

/// Arguments of `counter get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Prints the value, read linearizably (through whichever node answers first).
pub async fn run(args: Args) -> Result<(), Error> {
    let value = Client::from(args.cluster.client()).get().await?;
    outln!("{value}")?;
    Ok(())
}
