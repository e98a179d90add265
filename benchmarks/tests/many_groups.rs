//! `raft-bench many-groups` at a small size: every group elects, commits and goes quiet,
//! sends nothing while idle, and commits a command that wakes it. Figures of speed are
//! printed, not asserted.

use std::process::{Command, Stdio};

const RAFT_BENCH: &str = env!("CARGO_BIN_EXE_raft-bench");

fn many_groups(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(RAFT_BENCH)
        .arg("many-groups")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("raft-bench runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn quiet_groups_send_nothing_and_wake_for_a_command() {
    for transport in [&[][..], &["--quic"][..]] {
        let mut args = vec!["--groups", "30", "--batch", "10", "--idle-secs", "1"];
        args.extend_from_slice(transport);
        let (ok, stdout, stderr) = many_groups(&args);
        assert!(ok, "{stdout}\n{stderr}");
        for line in [
            "30 groups of 3 nodes in one process",
            "quiescence after 10 ticks",
            "messages per second, 0.00 per pair of nodes per 20 ms tick",
            "a command to 1 idle groups, one at a time",
        ] {
            assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
        }
    }
}

#[test]
fn zero_groups_is_refused_with_a_reason() {
    let (ok, _, stderr) = many_groups(&["--groups", "0"]);
    assert!(!ok);
    assert!(
        stderr.contains("--groups and --batch must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn groups_on_shared_logs_take_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = many_groups(&[
        "--groups",
        "12",
        "--batch",
        "6",
        "--idle-secs",
        "1",
        "--wal",
        "--dir",
        dir.path().to_str().unwrap(),
        "--load-secs",
        "2",
        "--clients",
        "8",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "one in-memory transport and one write-ahead log per node",
        "messages per second, 0.00 per pair of nodes per 20 ms tick",
        "load, 8 clients over 12 groups",
        "fdatasyncs/s on the three logs",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The logs were in the directory given, and went with the run.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
