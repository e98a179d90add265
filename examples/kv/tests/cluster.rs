//! Key-value nodes on the file write-ahead log and QUIC: a restarted node applies only what
//! follows the applied index its database holds, and a node that fell behind a compaction
//! catches up by a snapshot streamed from the leader's database into its own.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kv::{Command, KvStore, Response};
use raft_runtime::{Config, NodeId};
use raft_testkit::{Cluster, OnDisk};

const WAIT: Duration = Duration::from_secs(60);

fn config() -> Config {
    Config {
        tick_interval: Duration::from_millis(20),
        snapshot_every: 50,
        // Compact the log right up to each snapshot: a node that missed compacted entries
        // then needs the snapshot.
        log_kept_entries: 0,
        ..Config::default()
    }
}

async fn cluster() -> (Cluster<KvStore, OnDisk>, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let root: PathBuf = data.path().to_path_buf();
    let c = Cluster::start(
        3,
        config(),
        OnDisk::new(),
        move |id: NodeId, previous: Option<&KvStore>| {
            previous
                .cloned()
                .unwrap_or_else(|| KvStore::open(root.join(format!("kv-{id}"))).unwrap())
        },
    )
    .await;
    (c, data)
}

async fn put(c: &Cluster<KvStore, OnDisk>, key: &str, value: &str) {
    let command = Command::Put {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
    };
    for _ in 0..100 {
        let leader = c.leader().await;
        match c.node(leader).propose(command.clone()).await {
            Ok(Response::Previous(_)) => return,
            Ok(other) => panic!("put {key}: {other:?}"),
            Err(e) if e.is_definitely_not_applied() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("put {key}: outcome unknown: {e}"),
        }
    }
    panic!("could not put {key}");
}

/// Waits until node `id`'s database holds `key` with `value`.
async fn holds(c: &Cluster<KvStore, OnDisk>, id: NodeId, key: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let want = Some(Bytes::copy_from_slice(value.as_bytes()));
    while c.state_machines[&id].get(key).unwrap() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} never held {key}={value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_applies_only_what_follows_its_database() {
    let (mut c, _data) = cluster().await;
    for i in 0..30 {
        put(&c, &format!("k{i}"), "v").await;
    }
    let leader = c.leader().await;
    let id = if leader == 1 { 2 } else { 1 };
    holds(&c, id, "k29", "v").await;
    let before = c.state_machines[&id].applied().unwrap();
    c.restart(id).await;
    put(&c, "after", "restart").await;
    holds(&c, id, "after", "restart").await;
    let m = c.node(id).current_metrics().await.unwrap();
    // Handed to the state machine since the restart: the new leader's entry (if any) and
    // the put, never the 30 puts its database already held.
    assert!(
        m.applied_entries <= 3,
        "the restarted node applied {} entries again (its database was at {before})",
        m.applied_entries
    );
    assert_eq!(c.state_machines[&id].len().unwrap(), 31);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compaction_catches_up_by_a_streamed_snapshot() {
    let (mut c, _data) = cluster().await;
    let leader = c.leader().await;
    let down = if leader == 3 { 2 } else { 3 };
    c.stop(down).await;
    // More than the leader keeps queued for a peer that is down (which the peer would get
    // on its return), so that it must catch up from a snapshot.
    let value = "x".repeat(1000);
    for i in 0..400 {
        put(&c, &format!("key-{i:04}"), &value).await;
    }
    c.node(leader)
        .wait_for(WAIT, |m| m.snapshot_index >= 300)
        .await
        .expect("the leader compacted its log");
    c.restart(down).await;
    holds(&c, down, "key-0399", &value).await;
    c.node(down)
        .wait_for(WAIT, |m| m.snapshots_installed >= 1)
        .await
        .expect("caught up through a snapshot");
    let kv = &c.state_machines[&down];
    assert_eq!(kv.len().unwrap(), 400);
    assert_eq!(kv.range("key-0100", 5).unwrap().len(), 5);
    c.shutdown().await;
}
