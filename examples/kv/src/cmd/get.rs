//! `kv get --cluster ADDRS KEY [--consistency linearizable|lease|local]`

use std::io::Write;

use super::{ClusterArgs, client};
use crate::Error;
use crate::http::Consistency;
use crate::output::{OutputError, line_to};

/// Arguments of `kv get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The key.
    key: String,
    /// linearizable (the default), lease, or local (the answering node's own state,
    /// possibly stale).
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
}

/// Prints the value as it is, then a newline; fails (exit status 1) if the key is absent.
pub async fn run(args: Args) -> Result<(), Error> {
    let value = client(&args.cluster)
        .get(&args.key, args.consistency)
        .await?
        .ok_or_else(|| format!("no value at key `{}`", args.key))?;
    let mut out = std::io::stdout().lock();
    let written = out.write_all(&value).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => OutputError::Closed,
        _ => OutputError::Io(e),
    });
    written?;
    line_to(&mut out, format_args!(""))?;
    Ok(())
}
