//! Nodes of several Raft groups sharing one transport per process ([`GroupMux`]): one
//! connection per pair of processes carries every group, each group elects and commits on
//! its own, snapshots reach the node of their group, and traffic of a group no node runs
//! is dropped and counted. Nodes on a [`GroupHost`] (one task and one timer per process)
//! commit, elect again after a crash, restart, tick only while their group is not quiet,
//! and leave the host when they stop.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_runtime::raft_core::{ConfState, Message, MessageBody, SnapshotMeta};
use raft_runtime::{
    Config, GroupHost, GroupId, GroupMux, MemLogStore, MemNetwork, NodeId, Raft, RegisterError,
    SnapshotStream, StartError, Transport, TransportError, WireMessage,
};
use raft_testkit::Log;

const NODES: [NodeId; 3] = [1, 2, 3];
const DEADLINE: Duration = Duration::from_secs(30);

/// Three processes (one shared transport each) running the nodes of `groups`.
struct Groups {
    net: MemNetwork,
    muxes: BTreeMap<NodeId, GroupMux>,
    stores: BTreeMap<(GroupId, NodeId), Arc<MemLogStore>>,
    nodes: BTreeMap<(GroupId, NodeId), Raft<Log>>,
    /// Each node's state machine, shared with the node.
    logs: BTreeMap<(GroupId, NodeId), Log>,
    config: Config,
    /// With [`Groups::start_hosted`]: each process's host, driving its nodes.
    hosts: BTreeMap<NodeId, GroupHost>,
}

impl Groups {
    async fn start(groups: &[GroupId], config: Config) -> Groups {
        Groups::start_on(groups, config, false).await
    }

    /// Like [`Groups::start`], each process's nodes driven by one [`GroupHost`].
    async fn start_hosted(groups: &[GroupId], config: Config) -> Groups {
        Groups::start_on(groups, config, true).await
    }

    async fn start_on(groups: &[GroupId], config: Config, hosted: bool) -> Groups {
        let hosts = if hosted {
            NODES
                .iter()
                .map(|&id| (id, GroupHost::new(config.tick_interval)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let net = MemNetwork::new();
        let muxes = NODES
            .iter()
            .map(|&id| (id, GroupMux::new(net.transport(id), 1024, 64)))
            .collect();
        let mut g = Groups {
            net,
            muxes,
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
            logs: BTreeMap::new(),
            config,
            hosts,
        };
        for &group in groups {
            for id in NODES {
                g.stores.insert((group, id), Arc::new(MemLogStore::new()));
                g.start_node(group, id).await;
            }
        }
        g
    }

    async fn start_node(&mut self, group: GroupId, id: NodeId) {
        let log = Log::new(false);
        self.logs.insert((group, id), log.clone());
        let mut builder = Raft::builder(id)
            .group(group)
            .config(self.config.clone())
            .state_machine(log)
            .log_store(self.stores[&(group, id)].clone())
            .transport(self.muxes[&id].transport())
            .bootstrap(common::members(&NODES));
        if let Some(host) = self.hosts.get(&id) {
            builder = builder.host(host);
        }
        let node = builder.start().await.expect("the node starts");
        self.nodes.insert((group, id), node);
    }

    async fn leader(&self, group: GroupId) -> NodeId {
        let (_, node) = self
            .nodes
            .range((group, 0)..=(group, NodeId::MAX))
            .next()
            .expect("a running node of the group");
        let m = node
            .wait_for(DEADLINE, |m| m.leader.is_some())
            .await
            .unwrap_or_else(|e| panic!("group {group} elected no leader: {e:?}"));
        m.leader.unwrap()
    }

    /// Proposes `value` to `group` through its leader, retrying while leadership moves.
    async fn propose(&self, group: GroupId, value: u64) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let leader = self.leader(group).await;
            // A stopped leader may still be the one its followers know of, for a while.
            let Some(node) = self.nodes.get(&(group, leader)) else {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "group {group} elected no running leader"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match node.propose(value).await {
                Ok(_) => return,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "group {group} did not commit {value}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Waits until `group`'s node `id` applied exactly `expected`.
    async fn applied(&self, group: GroupId, id: NodeId, expected: &[u64]) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let values = self.logs[&(group, id)].values();
            if values == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group}, node {id}: {values:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
        for (id, host) in &self.hosts {
            assert_eq!(host.nodes(), 0, "every node of process {id} left its host");
        }
        for mux in self.muxes.values() {
            mux.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_shared_transports_commit_each_its_own_log() {
    let groups = [1, 2, 7];
    let g = Groups::start(&groups, common::fast_config()).await;
    for &group in &groups {
        for k in 1..=5 {
            g.propose(group, group * 100 + k).await;
        }
    }
    for &group in &groups {
        let expected: Vec<u64> = (1..=5).map(|k| group * 100 + k).collect();
        for id in NODES {
            g.applied(group, id, &expected).await;
        }
    }
    for (id, mux) in &g.muxes {
        let mut running = mux.groups();
        running.sort();
        assert_eq!(running, groups, "node {id}");
        assert_eq!(mux.unrouted(), 0, "node {id} dropped traffic of its own groups");
    }
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_reaches_the_node_of_its_group_and_not_another() {
    let mut config = common::fast_config();
    config.snapshot_every = 10;
    config.log_kept_entries = 0;
    let mut g = Groups::start(&[1, 2], config).await;
    g.propose(2, 1).await;
    // Group 2's node 3 stops; group 1's node 3 goes on, on the same transport.
    let leader = g.leader(2).await;
    let lagging = NODES.iter().copied().find(|&n| n != leader).unwrap();
    g.nodes.remove(&(2, lagging)).unwrap().shutdown().await;
    let mut expected = vec![1];
    for v in 2..=40 {
        g.propose(2, v).await;
        expected.push(v);
    }
    g.propose(1, 1000).await;
    // The log it lacks is compacted away: it catches up through a snapshot.
    g.start_node(2, lagging).await;
    g.applied(2, lagging, &expected).await;
    g.nodes[&(2, lagging)]
        .wait_for(DEADLINE, |m| m.snapshots_installed > 0)
        .await
        .expect("it caught up through a snapshot");
    g.applied(1, lagging, &[1000]).await;

    // A snapshot of a group the process does not run is refused, naming the group.
    let meta = SnapshotMeta {
        index: 1000,
        term: 99,
        conf_state: ConfState::with_voters(NODES),
    };
    let stray = Message {
        from: 2,
        to: 1,
        term: 99,
        body: MessageBody::Snapshot(Box::new(meta)),
    };
    let refusal = g
        .net
        .transport(2)
        .send_snapshot(1, 5, stray.clone(), SnapshotStream::from_bytes(vec![1]))
        .await;
    match refusal {
        Err(TransportError::Refused { reason, .. }) => assert!(reason.contains("group 5"), "{reason}"),
        other => panic!("a snapshot of group 5 was taken: {other:?}"),
    }
    // Messages of such a group are dropped and counted.
    g.net
        .transport(2)
        .send(1, 5, vec![WireMessage::Raft(stray)])
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while g.muxes[&1].unrouted() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch was not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    g.shutdown().await;
}

#[tokio::test]
async fn a_shared_transport_serves_one_node_id_and_one_node_per_group() {
    let net = MemNetwork::new();
    let transport = Arc::new(net.transport(1));
    let held = Arc::downgrade(&transport);
    let mux = GroupMux::new(transport, 64, 8);
    let start = |id: NodeId, group: GroupId, transport| async move {
        Raft::builder(id)
            .group(group)
            .config(common::fast_config())
            .state_machine(Log::new(false))
            .log_store(MemLogStore::new())
            .transport(transport)
            .bootstrap(common::members(&[id]))
            .start()
            .await
    };
    let first = start(1, 1, mux.transport()).await.unwrap();
    match start(1, 1, mux.transport()).await {
        Err(StartError::Register(RegisterError::GroupTaken(1))) => {}
        other => panic!("a second node of group 1 started: {:?}", other.map(|_| ())),
    }
    match start(2, 2, mux.transport()).await {
        Err(StartError::Register(RegisterError::WrongNode {
            transport: 1,
            node: 2,
        })) => {}
        other => panic!("node 2 started on node 1's transport: {:?}", other.map(|_| ())),
    }
    // One transport, one node.
    let shared = mux.transport();
    let second = start(1, 2, shared.clone()).await.unwrap();
    match start(1, 3, shared.clone()).await {
        Err(StartError::Register(RegisterError::AlreadyRegistered(2))) => {}
        other => panic!("two nodes on one transport: {:?}", other.map(|_| ())),
    }
    // A stopped node's group is free again, and its transport can serve a restart.
    second.shutdown().await;
    let again = start(1, 2, shared).await.unwrap();
    again.shutdown().await;
    first.shutdown().await;
    mux.shutdown().await;
    // Once the mux and its nodes are gone, so is the transport (and with a real one, its
    // sockets): nothing of the mux's keeps it alive.
    drop((first, again, mux));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while held.upgrade().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transport outlived its mux"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `condition` holds, polling.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_groups_commit_elect_again_after_a_crash_and_restart() {
    let groups: Vec<GroupId> = (1..=6).collect();
    let mut g = Groups::start_hosted(&groups, common::fast_config()).await;
    for host in g.hosts.values() {
        assert_eq!(host.nodes(), groups.len());
    }
    for &group in &groups {
        for k in 1..=3 {
            g.propose(group, group * 100 + k).await;
        }
    }
    // Each group's leader stops; the host goes on driving that process's other nodes, and
    // each group's two others elect a leader on their hosts' clocks and commit again.
    let mut stopped = Vec::new();
    for &group in &groups {
        let leader = g.leader(group).await;
        let node = g.nodes.remove(&(group, leader)).unwrap();
        node.shutdown().await.expect("the node leaves what it had");
        stopped.push((group, leader));
    }
    for (id, host) in &g.hosts {
        let left = stopped.iter().filter(|&&(_, n)| n == *id).count();
        until("the stopped nodes left their host", || {
            host.nodes() == groups.len() - left
        })
        .await;
    }
    for &group in &groups {
        for k in 4..=6 {
            g.propose(group, group * 100 + k).await;
        }
    }
    // The stopped nodes come back on their hosts and catch up.
    for &(group, id) in &stopped {
        g.start_node(group, id).await;
    }
    for &group in &groups {
        let expected: Vec<u64> = (1..=6).map(|k| group * 100 + k).collect();
        for id in NODES {
            g.applied(group, id, &expected).await;
        }
    }
    for host in g.hosts.values() {
        assert_eq!(host.nodes(), groups.len());
    }
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_ticks_only_the_nodes_of_groups_that_are_not_quiet() {
    let config = Config {
        quiesce_after_ticks: 5,
        ..common::fast_config()
    };
    let groups: Vec<GroupId> = (1..=4).collect();
    let g = Groups::start_hosted(&groups, config).await;
    for &group in &groups {
        g.propose(group, group).await;
    }
    for node in g.nodes.values() {
        node.wait_for(DEADLINE, |m| m.quiescent)
            .await
            .expect("every group goes quiet");
    }
    for (id, host) in &g.hosts {
        until(&format!("host {id} ticks nothing"), || host.ticking() == 0).await;
    }
    // A command wakes its group: its nodes tick again until it is quiet once more.
    let mut seen_ticking = false;
    {
        let propose = g.propose(3, 33);
        tokio::pin!(propose);
        loop {
            tokio::select! {
                () = &mut propose => break,
                () = tokio::time::sleep(Duration::from_millis(1)) => {
                    seen_ticking |= g.hosts.values().any(|h| h.ticking() > 0);
                }
            }
        }
    }
    g.applied(3, 1, &[3, 33]).await;
    seen_ticking |= g.hosts.values().any(|h| h.ticking() > 0);
    assert!(seen_ticking, "the woken group's nodes ticked");
    for (id, host) in &g.hosts {
        until(&format!("host {id} ticks nothing again"), || host.ticking() == 0).await;
    }
    g.applied(1, 2, &[1]).await;
    g.shutdown().await;
}

/// Starts a one-node cluster of node 1 on `host`.
async fn start_on_host(net: &MemNetwork, config: Config, host: &GroupHost) -> Result<Raft<Log>, StartError> {
    Raft::builder(1)
        .config(config)
        .state_machine(Log::new(false))
        .log_store(MemLogStore::new())
        .transport(net.transport(1))
        .bootstrap(common::members(&[1]))
        .host(host)
        .start()
        .await
}

#[tokio::test]
async fn a_node_whose_tick_differs_from_its_hosts_is_refused_and_dropped_handles_stop_hosted_nodes() {
    let net = MemNetwork::new();
    let config = common::fast_config();
    let host = GroupHost::new(config.tick_interval * 2);
    let err = start_on_host(&net, config.clone(), &host)
        .await
        .expect_err("the tick intervals differ");
    assert!(
        matches!(err, StartError::HostTick { host: h, node: n } if h == config.tick_interval * 2 && n == config.tick_interval),
        "{err:?}"
    );
    assert_eq!(host.nodes(), 0);

    // A node on a host stops when its last handle is dropped, and leaves the host.
    let host = GroupHost::new(config.tick_interval);
    let node = start_on_host(&net, config, &host).await.expect("the node starts");
    node.wait_for(DEADLINE, |m| m.leader == Some(1)).await.unwrap();
    node.propose(7).await.expect("the node commits");
    assert_eq!(host.nodes(), 1);
    drop(node);
    until("the dropped node left its host", || host.nodes() == 0).await;
}
