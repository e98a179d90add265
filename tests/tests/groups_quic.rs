//! Three processes' worth of nodes, each process running a node of every one of eight Raft
//! groups over one QUIC transport ([`GroupMux`]): every group elects and commits its own
//! log, and each pair of processes holds one message connection for all eight groups.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_runtime::{Config, GroupId, GroupMux, MemLogStore, MemberInfo, NodeId, Raft};
use raft_testkit::Log;
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};

const DEADLINE: Duration = Duration::from_secs(60);
const GROUPS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_share_one_quic_connection_per_pair_of_processes() {
    let ca = DevCa::generate().expect("a test CA");
    let mut transports = BTreeMap::new();
    for id in 1..=3 {
        let tls = ca.node_tls(id).expect("a certificate");
        let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), tls);
        // Each group may take a quarter of the queue to a peer.
        config.limits.peer_queue_group_share = 256;
        transports.insert(id, Arc::new(QuicTransport::bind(config).await.expect("bind")));
    }
    let members: BTreeMap<NodeId, MemberInfo> = transports
        .iter()
        .map(|(&id, t)| (id, t.local_addr().to_string().into()))
        .collect();
    let muxes: BTreeMap<NodeId, GroupMux> = transports
        .iter()
        .map(|(&id, t)| (id, GroupMux::new(t.clone(), 1024, 64)))
        .collect();
    let mut nodes: BTreeMap<(GroupId, NodeId), (Raft<Log>, Log)> = BTreeMap::new();
    for group in 1..=GROUPS {
        for id in 1..=3 {
            let log = Log::new(false);
            let node = Raft::builder(id)
                .group(group)
                .config(Config::default())
                .state_machine(log.clone())
                .log_store(MemLogStore::new())
                .transport(muxes[&id].transport())
                .bootstrap(members.clone())
                .start()
                .await
                .expect("the node starts");
            nodes.insert((group, id), (node, log));
        }
    }
    for group in 1..=GROUPS {
        let (any, _) = &nodes[&(group, 1)];
        let mut value = group * 10;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let m = any
                .wait_for(DEADLINE, |m| m.leader.is_some())
                .await
                .unwrap_or_else(|e| panic!("group {group} elected no leader: {e:?}"));
            match nodes[&(group, m.leader.unwrap())].0.propose(value).await {
                Ok(_) if value == group * 10 + 1 => break,
                Ok(_) => value += 1,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "group {group}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    for group in 1..=GROUPS {
        let expected = vec![group * 10, group * 10 + 1];
        for id in 1..=3 {
            let log = &nodes[&(group, id)].1;
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while log.values() != expected {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "group {group}, node {id}: {:?}",
                    log.values()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Each process dialled or accepted a connection or two per peer (two when both dial
    // at once), not one per group.
    for (id, t) in &transports {
        let established = t.stats().connections_established;
        assert!(
            (2..=4).contains(&established),
            "node {id} established {established} message connections for {GROUPS} groups"
        );
    }
    for (node, _) in nodes.values() {
        node.shutdown().await;
    }
    for mux in muxes.values() {
        mux.shutdown().await;
    }
    // Once the nodes, the muxes and the transports are dropped, every UDP port is free
    // again: nothing keeps a transport alive after its mux is gone (a node restarted on
    // its address can bind it).
    let addrs: Vec<std::net::SocketAddr> = transports.values().map(|t| t.local_addr()).collect();
    drop((nodes, muxes, transports));
    for addr in addrs {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while let Err(e) = std::net::UdpSocket::bind(addr) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{addr} is still bound: {e}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
