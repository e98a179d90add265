//! `token --out DIR [--force]`

use std::path::PathBuf;

use crate::Error;
use crate::admin_token::AdminToken;
use crate::outln;

/// Arguments of the `token` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The certificates directory to write admin.token into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing token. Every node must then be restarted to load the new one,
    /// and clients given it.
    #[arg(long)]
    force: bool,
}

/// Writes a new random admin token (mode 0600) as `admin.token` in the directory.
/// The `certs` command writes one already; this adds one to a directory made before admin
/// tokens existed, or replaces a token that leaked.
pub fn run(args: Args) -> Result<(), Error> {
    let path = crate::certs::admin_token_file(&args.out);
    AdminToken::generate()?.write(&path, args.force)?;
    outln!("wrote {}", path.display())?;
    Ok(())
}
