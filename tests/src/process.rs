//! The examples' node processes (`counter node`, `kv node`) for end-to-end tests, run with
//! the test kit's [`NodeProcess`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub use raft_testkit::process::{NodeProcess, Ports};

/// The binary of the example package `package` (whose binary has the package's name):
/// `$env_var` if set, else the one next to the test binary's directory
/// (`target/<profile>/<package>`), brought up to date with `cargo build -p <package>`
/// first, into the test binary's own target directory (once per package and process;
/// after `cargo test --workspace` this may rebuild it once, since features unify
/// differently). A test run with `-p raft-tests` alone does not rebuild the examples, and a
/// stale binary would test old code.
pub fn example_binary(package: &str, env_var: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    // Held while building, so that two tests of one process never build at once.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(package) {
        return p.clone();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<package>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let release = profile_dir.ends_with("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let path = profile_dir.join(package);
    built.insert(package.to_string(), path.clone());
    path
}

/// The `counter` binary: `$COUNTER_BIN`, else built as [`example_binary`] says.
pub fn counter_binary() -> PathBuf {
    example_binary("counter", "COUNTER_BIN")
}

/// The `kv` binary: `$KV_BIN`, else built as [`example_binary`] says.
pub fn kv_binary() -> PathBuf {
    example_binary("kv", "KV_BIN")
}

/// Starts `binary` with `args`, appending its output to `log`.
pub fn start_node(binary: &Path, args: Vec<String>, log: PathBuf) -> NodeProcess {
    NodeProcess::start(binary, args, log, "info")
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

/// Starts `counter` with `args`, appending its output to `log`.
pub fn start_counter(args: Vec<String>, log: PathBuf) -> NodeProcess {
    start_node(&counter_binary(), args, log)
}
