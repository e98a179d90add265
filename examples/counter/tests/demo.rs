//! The README's main command, `counter demo`, run as a user runs it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ChildGuard, non_empty_dir};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_survives_its_leader_and_ends_with_the_right_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let started = Instant::now();
    let child = Command::new(common::COUNTER)
        .arg("demo")
        .arg("--dir")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn counter demo");
    let mut guard = ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(180);
    while guard.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not finish within 180 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = guard.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "{stdout}{stderr}(demo took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "the demo failed: {}", output.status);

    // 30 increments before the leader stops, 150 while it is down.
    assert!(stdout.contains("demo ok: value=180 leader_changes=1"), "{stdout}");
    for step in [
        "1. certificates",
        "3. election",
        "5. stop leader",
        "7. restart",
        "8. agreement",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}");
    }
    assert!(stdout.contains("caught up"), "{stdout}");
    // With --dir, the logs and certificates stay for inspection.
    for sub in ["certs", "node-1", "node-2", "node-3"] {
        assert!(non_empty_dir(&data.join(sub)), "{sub} is missing or empty");
    }
}
