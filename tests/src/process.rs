//! `counter node` processes for end-to-end tests, run with the test kit's [`NodeProcess`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use raft_testkit::process::NodeProcess;

/// The `counter` binary: `$COUNTER_BIN`, else the one next to the test binary's directory
/// (`target/<profile>/counter`), brought up to date with `cargo build -p counter` first
/// (once per process; after `cargo test --workspace` this may rebuild it once, since
/// features unify differently). A test run with `-p raft-tests` alone does not rebuild the
/// example, and a stale binary would test old code.
pub fn counter_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = std::env::var_os("COUNTER_BIN") {
        return PathBuf::from(p);
    }
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/<test> -> target/<profile>/counter
            let profile_dir = exe.parent().and_then(Path::parent).expect("target directory");
            let target_dir = profile_dir.parent().expect("target directory");
            let release = profile_dir.ends_with("release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "counter", "--target-dir"])
                .arg(target_dir);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p counter");
            assert!(status.success(), "cargo build -p counter failed");
            profile_dir.join("counter")
        })
        .clone()
}

/// Starts `counter` with `args`, appending its output to `log`.
pub fn start_counter(args: Vec<String>, log: PathBuf) -> NodeProcess {
    NodeProcess::start(counter_binary(), args, log, "info").expect("starting counter node")
}
