//! Three `counter node` processes on QUIC and the file WAL: the leader dies by SIGKILL in
//! the middle of a stream of increments, the others carry on, it comes back from its log,
//! and no acknowledged increment is lost or counted twice.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Cluster, run_counter, stdout_of};
use counter::client::ClientError;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What the clients saw: the value each acknowledged increment answered, and how many
/// increments ended with an unknown outcome (they may or may not have been counted).
#[derive(Default)]
struct History {
    acknowledged: Vec<u64>,
    unknown: u64,
}

impl History {
    fn record(&mut self, outcome: Result<u64, ClientError>) {
        match outcome {
            Ok(value) => self.acknowledged.push(value),
            Err(e) if !e.is_definitely_not_applied() => self.unknown += 1,
            // Definitely not applied: it cannot have been counted.
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_increments_survive_a_sigkilled_leader() {
    let started = Instant::now();
    let mut cluster = Cluster::new(&[1, 2, 3]).await;
    // Snapshots every 20 entries: the restarted node restores one from its own log, and
    // the leader has compacted past it, so it also installs one from the leader.
    let mut args = cluster.bootstrap_args(&[1, 2, 3]);
    args.extend(["--snapshot-every".to_string(), "20".to_string()]);
    // No log kept behind a snapshot: a node that falls behind catches up by a snapshot.
    args.extend(["--log-kept-entries".to_string(), "0".to_string()]);
    for id in 1..=3 {
        cluster.start(id, &args);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;

    // Increments through every node in turn, each read back through another node.
    let mut history = History::default();
    for i in 0..30u64 {
        let through = i % 3 + 1;
        history.record(cluster.client(&[through]).incr(1).await);
        let read_through = (i + 1) % 3 + 1;
        let value = cluster.client(&[read_through]).get().await.expect("read");
        assert!(
            value >= history.acknowledged.len() as u64,
            "node {read_through} read {value} after {} acknowledged increments",
            history.acknowledged.len()
        );
    }
    assert_eq!(
        history.acknowledged.len(),
        30,
        "a healthy cluster acknowledges every increment"
    );

    // Kill the leader outright and keep incrementing through the other two, four clients
    // at a time, until 40 more increments have been acknowledged.
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let history = Arc::new(Mutex::new(history));
    let acknowledged_after_kill = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = cluster.client(&survivors).with_deadline(Duration::from_secs(20));
        let history = history.clone();
        let count = acknowledged_after_kill.clone();
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + common::DEADLINE;
            while count.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
                let outcome = client.incr(1).await;
                if outcome.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                history.lock().await.record(outcome);
            }
        }));
    }
    for c in clients {
        c.await.expect("client task");
    }
    assert!(
        acknowledged_after_kill.load(Ordering::Relaxed) >= 40,
        "the two survivors should keep acknowledging increments"
    );

    // Bring the killed node back with the same arguments: it resumes from its log.
    cluster.start(leader, &args);
    let value = cluster.wait_for_agreement(&[1, 2, 3]).await;

    let history = history.lock().await;
    let acknowledged = history.acknowledged.len() as u64;
    assert!(
        acknowledged <= value && value <= acknowledged + history.unknown,
        "value {value}: {acknowledged} increments acknowledged, {} with unknown outcome",
        history.unknown
    );
    // Each increment adds 1, so every acknowledged answer is a different value, none
    // above the final count.
    let mut answers = history.acknowledged.clone();
    answers.sort_unstable();
    answers.dedup();
    assert_eq!(
        answers.len() as u64,
        acknowledged,
        "two increments answered the same value"
    );
    assert!(answers.last().is_some_and(|&max| max <= value));

    // The restarted node's log ended before the leader's first entry after compaction:
    // it caught up from the leader's snapshot (restored into its counter).
    let metrics = common::http()
        .get(format!("http://{}/metrics", cluster.http(leader)))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let installed = common::metric(&metrics, "raft_snapshots_installed_total");
    assert!(
        installed >= 1,
        "node {leader} should have installed a snapshot:\n{metrics}"
    );

    // The client commands see the same.
    let all = cluster.cluster_arg(&[1, 2, 3]);
    let got = stdout_of(&run_counter(&["get", "--cluster", &all]).await);
    assert_eq!(got.trim(), value.to_string());
    let incremented = stdout_of(&run_counter(&["incr", "--cluster", &all, "--by", "5"]).await);
    assert_eq!(incremented.trim(), (value + 5).to_string());
    let status = stdout_of(&run_counter(&["status", "--cluster", &all]).await);
    let roles: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("node "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        roles.iter().filter(|&&r| r == "leader").count(),
        1,
        "one leader:\n{status}"
    );
    assert_eq!(roles.iter().filter(|&&r| r == "follower").count(), 2, "{status}");

    // A graceful stop exits 0.
    for id in 1..=3 {
        let status = cluster.terminate(id).await;
        assert!(status.success(), "node {id} exited with {status} after SIGTERM");
    }
    eprintln!(
        "{acknowledged} acknowledged, {} unknown, final value {value}; {:.1} s",
        history.unknown,
        started.elapsed().as_secs_f64()
    );
}
