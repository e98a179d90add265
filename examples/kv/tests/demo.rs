//! The README's first command, `kv demo`, run as a user runs it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_survives_its_leader_and_ends_with_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let started = Instant::now();
    let demo = tokio::process::Command::new(common::KV)
        .arg("demo")
        .arg("--dir")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kv demo");
    // Far more than the demo takes even on a loaded machine; it is killed past this.
    let limit = Duration::from_secs(180);
    let output = tokio::time::timeout(limit, demo.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the demo did not finish within {limit:?}"))
        .expect("the demo ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "{stdout}{}(demo took {:.1} s)",
        String::from_utf8_lossy(&output.stderr),
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "the demo failed: {}", output.status);

    // 30 keys, one deleted, then 120 more while the leader is down.
    assert!(stdout.contains("demo ok: keys=149 leader_changes=1"), "{stdout}");
    for step in [
        "1. certificates",
        "3. election",
        "4. writes",
        "5. stop leader",
        "7. restart",
        "8. agreement",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}");
    }
    assert!(stdout.contains("caught up"), "{stdout}");
    // With --dir, each node's log and database stay for inspection.
    for sub in ["certs", "node-1/wal", "node-1/kv", "node-2/kv", "node-3/kv"] {
        let path = data.join(sub);
        assert!(
            path.read_dir().is_ok_and(|mut d| d.next().is_some()),
            "{sub} is missing or empty"
        );
    }
}
