//! `counter incr --cluster ADDRS [--by N]`

use super::ClusterArgs;
use crate::Error;
use crate::client::Client;
use crate::outln;

/// Arguments of `counter incr`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How much to add.
    #[arg(long, default_value_t = 1)]
    by: u64,
}

/// Prints the value right after the increment. Retries on other nodes only while the
/// increment definitely was not applied, so it is never counted twice.
pub async fn run(args: Args) -> Result<(), Error> {
    let value = Client::from(args.cluster.client()).incr(args.by).await?;
    outln!("{value}")?;
    Ok(())
}
