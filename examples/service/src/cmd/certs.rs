//! `certs --out DIR --nodes 1,2,3` (`counter certs`, `kv certs`)

use std::path::PathBuf;

use raft_runtime::raft_core::NodeId;

use crate::Error;
use crate::outln;

/// Arguments of the `certs` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// The node ids to issue certificates for, including nodes that will join later: the
    /// CA's key is not kept, so no certificate can be added afterwards.
    #[arg(long, value_delimiter = ',', required = true, value_parser = clap::value_parser!(u64).range(1..))]
    nodes: Vec<NodeId>,
    /// Replace an existing CA in the directory.
    #[arg(long)]
    force: bool,
}

/// Writes `ca.pem`, `node-<id>.pem` / `node-<id>.key` for each node, and `admin.token`.
pub fn run(args: Args) -> Result<(), Error> {
    let written = crate::certs::write(&args.out, &args.nodes, args.force)?;
    if let Some(first) = written.first() {
        outln!("wrote {}", first.ca.display())?;
    }
    for files in &written {
        outln!("wrote {} and {}", files.cert.display(), files.key.display())?;
    }
    outln!(
        "wrote {} (admin requests need it; keep it as secret as the keys)",
        crate::certs::admin_token_file(&args.out).display()
    )?;
    Ok(())
}
