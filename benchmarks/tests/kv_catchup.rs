//! `raft-bench kv-catchup` at a tiny size: it loads the cluster, brings a fourth node up
//! by a snapshot, restarts a follower, prints every figure, and leaves no process and no
//! directory behind. No speed is asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const RAFT_BENCH: &str = env!("CARGO_BIN_EXE_raft-bench");

/// The `kv` binary: `$KV_BIN`, else built with cargo into this test's target directory
/// and profile (a test run of `-p raft-bench` alone does not build the example).
fn kv_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KV_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/kv
    let profile_dir = exe.parent().and_then(Path::parent).expect("target directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "kv", "--target-dir"])
        .arg(target_dir);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("cargo build -p kv").success(),
        "cargo build -p kv failed"
    );
    profile_dir.join("kv")
}

#[test]
fn a_tiny_kv_catchup_installs_a_snapshot_and_cleans_up() {
    let kv = kv_binary();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(RAFT_BENCH)
        .args([
            "kv-catchup",
            "--keys",
            "2000",
            "--value-size",
            "100",
            "--secs",
            "1",
            "--snapshot-every",
            "500",
            "--load-clients",
            "32",
            "--clients",
            "8",
            "--timeout",
            "120s",
            "--kv-bin",
        ])
        .arg(&kv)
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raft-bench");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kv-catchup did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kv-catchup failed: {}", output.status);

    let installs: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("receiver installs    snapshots installed on node 4: "))
        .expect("a line of snapshot installs")
        .split(';')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of installs:\n{stdout}"));
    assert!(installs >= 1, "{stdout}");
    for figure in [
        "load ",
        "baseline ",
        "catch-up ",
        "during catch-up ",
        "sender memory ",
        "receiver memory ",
        "cores busy ",
        "restart ",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(figure)),
            "no `{figure}` line:\n{stdout}"
        );
    }
    // The nodes' data went with the run, and no node outlived it.
    let left: Vec<_> = std::fs::read_dir(data.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let dir = data.path().to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap() {
        let path = entry.unwrap().path();
        if let Ok(cmdline) = std::fs::read(path.join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(dir),
                "a node is still running: {}",
                path.display()
            );
        }
    }
}
