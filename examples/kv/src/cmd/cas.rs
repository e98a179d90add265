//! `kv cas --cluster ADDRS KEY (--expected V | --expect-absent) (--new V | --delete)`

use bytes::Bytes;

use super::{ClusterArgs, client};
use crate::api::optional;
use crate::{Error, outln};

/// Arguments of `kv cas`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("before").required(true).args(["expected", "expect_absent"])))]
#[command(group(clap::ArgGroup::new("after").required(true).args(["new", "delete"])))]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The key.
    key: String,
    /// The value the key must have.
    #[arg(long)]
    expected: Option<String>,
    /// The key must be absent.
    #[arg(long)]
    expect_absent: bool,
    /// The value to set.
    #[arg(long)]
    new: Option<String>,
    /// Remove the key instead of setting it.
    #[arg(long)]
    delete: bool,
}

/// Prints `swapped` if the key had the expected value and now has the new one; otherwise
/// fails (exit status 1) with the value the key has.
pub async fn run(args: Args) -> Result<(), Error> {
    let answer = client(&args.cluster)
        .cas(
            &args.key,
            args.expected.map(Bytes::from),
            args.new.map(Bytes::from),
        )
        .await?;
    if !answer.swapped {
        let current = answer.current.map(|v| v.0);
        return Err(format!("not swapped: the value is {}", optional(current.as_ref())).into());
    }
    outln!("swapped")?;
    Ok(())
}
