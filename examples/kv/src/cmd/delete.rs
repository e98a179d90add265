//! `kv delete --cluster ADDRS KEY`

use super::{ClusterArgs, client};
use crate::api::optional;
use crate::{Error, outln};

/// Arguments of `kv delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The key.
    key: String,
}

/// Removes the key and prints `previous: V`, its value as JSON (`null` if it was absent).
pub async fn run(args: Args) -> Result<(), Error> {
    let previous = client(&args.cluster).delete(&args.key).await?;
    outln!("previous: {}", optional(previous.as_ref()))?;
    Ok(())
}
