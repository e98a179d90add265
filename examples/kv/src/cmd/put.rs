//! `kv put --cluster ADDRS KEY VALUE`

use super::{ClusterArgs, client};
use crate::api::optional;
use crate::{Error, outln};

/// Arguments of `kv put`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The key.
    key: String,
    /// The value (its UTF-8 bytes).
    value: String,
}

/// Sets the key and prints `previous: V`, the value before as JSON (`null` if the key was
/// absent). Not retried once its outcome is unknown.
pub async fn run(args: Args) -> Result<(), Error> {
    let previous = client(&args.cluster).put(&args.key, args.value).await?;
    outln!("previous: {}", optional(previous.as_ref()))?;
    Ok(())
}
