//! `raft-bench groups` at a small size: every group elects, goes quiet on all three nodes,
//! sends nothing while quiescent, and commits a command that wakes it. Figures of speed
//! are printed, not asserted.

use std::process::{Command, Stdio};

const RAFT_BENCH: &str = env!("CARGO_BIN_EXE_raft-bench");

fn groups(args: &[&str]) -> std::process::Output {
    Command::new(RAFT_BENCH)
        .arg("groups")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("raft-bench runs")
}

#[test]
fn small_groups_go_quiet_send_nothing_and_wake_on_a_command() {
    let output = groups(&["--groups", "200", "--ticks", "20"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for line in [
        "200 groups of 3 nodes (200 led by their first node)",
        "quiescence: 200 leaders agreed, 200 groups quiescent on all three nodes",
        "a command to 2 quiescent groups: 2 committed on all three nodes",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let messages = |phase: &str| -> f64 {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {phase} |")))
            .unwrap_or_else(|| panic!("no row {phase:?} in:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        cells[4].parse().unwrap_or_else(|e| panic!("{row}: {e}"))
    };
    assert!(messages("awake") > 0.0, "{stdout}");
    assert_eq!(messages("quiescent, every node ticked"), 0.0, "{stdout}");
    assert_eq!(
        messages("quiescent, quiescent groups not ticked"),
        0.0,
        "{stdout}"
    );
}

#[test]
fn zero_groups_is_refused_with_a_reason() {
    let output = groups(&["--groups", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--groups and --ticks must be at least 1"),
        "{stderr}"
    );
}
