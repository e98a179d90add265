//! Three `kv node` processes, started as a user starts them: a node stopped with SIGTERM
//! and started again with the same command resumes from its database and applies only the
//! entries after the applied index the database holds, not the whole log.

mod common;

use common::procs::{data_dir, metrics, start, status};
use common::{DEADLINE, eventually, sample};
use kv::http::Consistency;

/// Keys written before the node stops: far fewer than the snapshot interval, so that the
/// whole history stays in the write-ahead log, where a node that ignored its database's
/// applied index would replay it from the start.
const KEYS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_applies_only_the_entries_after_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::write_certs(dir.path(), "1,2,3").await;
    let mut nodes = start(dir.path(), &certs, &[]);
    let http = common::http();
    let all: Vec<String> = nodes.0.iter().map(|n| n.http.to_string()).collect();
    let client = kv::client::Client::new(&all).with_deadline(DEADLINE);

    for i in 0..KEYS {
        client.put(&format!("key-{i:02}"), "v").await.expect("put");
    }
    let leader = eventually("a leader known to node 1", || async {
        status(&http, &nodes.0[0]).await?.leader
    })
    .await;
    // A follower, once it has applied every key.
    let index = (0..3).find(|&i| i as u64 + 1 != leader).unwrap();
    let before = eventually("the follower to apply every key", || async {
        let s = status(&http, &nodes.0[index]).await?;
        (s.applied >= KEYS as u64 && s.applied == s.commit).then_some(s)
    })
    .await;
    {
        let stopped = nodes.0[index].process.terminate_within(DEADLINE).await;
        assert!(
            stopped.is_some_and(|s| s.success()),
            "SIGTERM ends a node with status 0"
        );
    }
    // Its data directory holds the write-ahead log and the database apart.
    for sub in ["wal", "kv"] {
        let path = data_dir(dir.path(), index + 1).join(sub);
        assert!(
            path.read_dir().is_ok_and(|mut d| d.next().is_some()),
            "{} is empty",
            path.display()
        );
    }

    // Writes go on while it is down; then it starts again with the same command.
    for i in 0..5 {
        client.put(&format!("late-{i}"), "w").await.expect("put");
    }
    nodes.0[index].process.restart().expect("restart kv node");
    let node = &nodes.0[index];
    let after = eventually("the restarted node to catch up", || async {
        let s = status(&http, node).await?;
        (s.applied >= before.applied + 5 && s.applied == s.commit).then_some(s)
    })
    .await;

    // Everything is there, read from the node's own database.
    let local = kv::client::Client::new([node.http.to_string()]).with_deadline(DEADLINE);
    for key in ["key-00", &format!("key-{:02}", KEYS - 1), "late-4"] {
        let value = local.get(key, Consistency::Local).await.expect("local read");
        assert!(value.is_some(), "{key} is missing on the restarted node");
    }

    // Since it started, the process applied only what followed its database's index: the
    // 5 late keys (and no snapshot), not the KEYS keys before them that its log still holds.
    let text = metrics(&http, node).await;
    let applied = sample(&text, "raft_applied_entries_total");
    assert!(
        (5..KEYS as u64 / 2).contains(&applied),
        "the restarted node applied {applied} entries (its database held index {}, now {}):\n{text}",
        before.applied,
        after.applied
    );
    assert_eq!(sample(&text, "raft_snapshots_installed_total"), 0, "{text}");
    assert!(sample(&text, "raft_snapshot_index") < before.applied, "{text}");

    for node in &mut nodes.0 {
        let stopped = node.process.terminate_within(DEADLINE).await;
        assert!(
            stopped.is_some_and(|s| s.success()),
            "SIGTERM ends a node with status 0"
        );
    }
}
