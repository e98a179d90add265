//! `kv scan --cluster ADDRS [--start KEY] [--end KEY] [--prefix P] [--limit N] [--consistency C]`

use super::{ClusterArgs, client};
use crate::client::Scan;
use crate::http::{Consistency, MAX_SCAN_LIMIT};
use crate::{Error, outln};

/// Arguments of `kv scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The first key (included).
    #[arg(long)]
    start: Option<String>,
    /// The key to stop before (excluded).
    #[arg(long)]
    end: Option<String>,
    /// Only keys that begin with this.
    #[arg(long)]
    prefix: Option<String>,
    /// At most this many keys (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_SCAN_LIMIT as u64))]
    limit: u64,
    /// linearizable (the default), lease, or local (the answering node's own state,
    /// possibly stale).
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
}

/// Prints one JSON object a line, `{"key": K, "value": V}`, in key order; if more keys
/// follow, a last line `{"next": K}` names the key to pass as `--start` for the rest.
pub async fn run(args: Args) -> Result<(), Error> {
    let scan = Scan {
        start: args.start,
        end: args.end,
        prefix: args.prefix,
        limit: Some(args.limit as usize),
    };
    let page = client(&args.cluster).scan(&scan, args.consistency).await?;
    for entry in &page.entries {
        outln!("{}", serde_json::to_string(entry)?)?;
    }
    if let Some(next) = page.next {
        outln!("{}", serde_json::json!({ "next": next }))?;
    }
    Ok(())
}
