//! Three processes' worth of nodes, each process logging the nodes of all its Raft groups
//! to one shared write-ahead log ([`FileWal`]): every group commits, snapshots and
//! compacts through the shared log; then every node stops and every log is reopened, and
//! each group comes back with its own committed commands (restored from its snapshot and
//! the entries after it) and commits again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use raft_runtime::{Config, GroupId, GroupMux, MemNetwork, MemberInfo, NodeId, Raft};
use raft_storage_file::{FileWal, Options};
use raft_testkit::Log;

const DEADLINE: Duration = Duration::from_secs(60);
const GROUPS: u64 = 6;
const NODES: [NodeId; 3] = [1, 2, 3];

type Nodes = BTreeMap<(GroupId, NodeId), (Raft<Log>, Log)>;

fn config() -> Config {
    Config {
        // Snapshots and compaction every few commands, so that both go through the log.
        snapshot_every: 4,
        log_kept_entries: 2,
        ..Config::default()
    }
}

fn open_wals(dir: &Path) -> BTreeMap<NodeId, FileWal> {
    let options = Options {
        segment_size: 64 << 10,
        ..Options::default()
    };
    NODES
        .iter()
        .map(|&id| {
            let wal = FileWal::open(dir.join(format!("node-{id}")), options.clone()).expect("the log opens");
            (id, wal)
        })
        .collect()
}

async fn start(
    muxes: &BTreeMap<NodeId, GroupMux>,
    wals: &BTreeMap<NodeId, FileWal>,
    members: &BTreeMap<NodeId, MemberInfo>,
) -> Nodes {
    let mut nodes = Nodes::new();
    for group in 1..=GROUPS {
        for id in NODES {
            let log = Log::new(false);
            let node = Raft::builder(id)
                .group(group)
                .config(config())
                .state_machine(log.clone())
                .log_store(wals[&id].group(group).expect("the group's log"))
                .transport(muxes[&id].transport())
                .bootstrap(members.clone())
                .start()
                .await
                .expect("the node starts");
            nodes.insert((group, id), (node, log));
        }
    }
    nodes
}

/// Commits `values` in `group`, one at a time, through whichever node leads.
async fn commit(nodes: &Nodes, group: GroupId, values: impl IntoIterator<Item = u64>) {
    for value in values {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (any, _) = &nodes[&(group, 1)];
            let m = any
                .wait_for(DEADLINE, |m| m.leader.is_some())
                .await
                .unwrap_or_else(|e| panic!("group {group} elected no leader: {e:?}"));
            match nodes[&(group, m.leader.unwrap())].0.propose(value).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        e.is_definitely_not_applied() && tokio::time::Instant::now() < deadline,
                        "group {group}, value {value}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn converge(nodes: &Nodes, group: GroupId, expected: &[u64]) {
    for id in NODES {
        let log = &nodes[&(group, id)].1;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while log.values() != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group}, node {id}: {:?}, expected {expected:?}",
                log.values()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn values(group: GroupId, range: std::ops::Range<u64>) -> Vec<u64> {
    range.map(|i| group * 100 + i).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_shared_logs_survive_a_restart_of_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let members: BTreeMap<NodeId, MemberInfo> =
        NODES.iter().map(|&id| (id, format!("mem-{id}").into())).collect();
    let muxes: BTreeMap<NodeId, GroupMux> = NODES
        .iter()
        .map(|&id| (id, GroupMux::new(net.transport(id), 1024, 128)))
        .collect();

    let wals = open_wals(dir.path());
    let nodes = start(&muxes, &wals, &members).await;
    for group in 1..=GROUPS {
        commit(&nodes, group, values(group, 0..10)).await;
    }
    for group in 1..=GROUPS {
        converge(&nodes, group, &values(group, 0..10)).await;
    }
    for ((group, id), (node, _)) in &nodes {
        let m = node
            .wait_for(DEADLINE, |m| m.snapshot_index > 0)
            .await
            .unwrap_or_else(|e| panic!("group {group}, node {id} took no snapshot: {e:?}"));
        assert!(m.snapshots_taken + m.snapshots_installed > 0);
    }
    for (node, _) in nodes.values() {
        node.shutdown().await;
    }
    drop(nodes);
    for (id, wal) in wals {
        assert_eq!(wal.groups(), (1..=GROUPS).collect::<Vec<_>>(), "node {id}");
        wal.close().expect("the log closes cleanly");
    }

    let wals = open_wals(dir.path());
    let nodes = start(&muxes, &wals, &members).await;
    for group in 1..=GROUPS {
        converge(&nodes, group, &values(group, 0..10)).await;
        commit(&nodes, group, values(group, 10..12)).await;
    }
    for group in 1..=GROUPS {
        converge(&nodes, group, &values(group, 0..12)).await;
    }
    for (node, _) in nodes.values() {
        node.shutdown().await;
    }
    for mux in muxes.values() {
        mux.shutdown().await;
    }
}
