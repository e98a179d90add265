//! `counter incr --cluster ADDRS [--by N]`

use std::time::Duration;

use tokio::time::Instant;

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

/// Prints the value right after the increment. Opens a client session and sends the
/// increment in it, as its first command, to the nodes in turn until one answers: after a
/// `503`, and also after a `504` or a broken connection, since the cluster counts an
/// increment in a session once however often it arrives. An unknown outcome is reported
/// only when `--timeout` passes first (opening the session included). The session is left
/// to expire with the cluster's session timeout.
pub async fn run(args: Args) -> Result<(), Error> {
    let started = Instant::now();
    let session = Client::from(args.cluster.client()).open_session().await?;
    let left = Duration::from_secs(args.cluster.timeout).saturating_sub(started.elapsed());
    let client = Client::from(args.cluster.client()).with_deadline(left);
    let value = client.incr_in_session(session, 1, args.by).await?;
    outln!("{value}")?;
    Ok(())
}
