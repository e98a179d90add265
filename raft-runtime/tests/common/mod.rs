//! The runtime's test clusters: the test kit's in-memory cluster of `Log` state machines.

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::time::Duration;

use raft_runtime::{Config, MemberInfo, NodeId};
pub use raft_testkit::{InMemory, Log, StartMode as Mode};

/// Nodes on in-memory stores and one in-memory network.
pub type Cluster = raft_testkit::Cluster<Log, InMemory>;

/// Short ticks and timeouts, so that tests with paused time advance quickly.
pub fn fast_config() -> Config {
    Config {
        tick_interval: Duration::from_millis(10),
        propose_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(3),
        admin_timeout: Duration::from_secs(20),
        // The test state machine keeps every value, so its snapshots grow with the log:
        // the tests space them by their counts alone, unless they set this themselves.
        snapshot_log_percent: 0,
        ..Config::default()
    }
}

/// The members map of an in-memory cluster with these ids.
pub fn members(ids: &[NodeId]) -> BTreeMap<NodeId, MemberInfo> {
    ids.iter().map(|&id| (id, format!("mem-{id}").into())).collect()
}

/// `n` nodes with the fast configuration.
pub async fn cluster(n: u64) -> Cluster {
    cluster_with(n, |_| {}, false).await
}

/// `n` nodes with the fast configuration adjusted by `configure`; with `durable_sm`, each
/// node's state machine outlives its restarts.
pub async fn cluster_with(n: u64, configure: fn(&mut Config), durable_sm: bool) -> Cluster {
    let mut config = fast_config();
    configure(&mut config);
    Cluster::with_logs(n, config, InMemory::new(), durable_sm).await
}

/// One round of faults for tests with clients running: after 300 ms, isolates node
/// `1 + round % 3` of nodes 1 to 3 for 300 ms, heals, and sets a 5 % message loss seeded
/// with `round`. Returns the node that was isolated.
pub async fn partition_round(c: &Cluster, round: u64) -> NodeId {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = 1 + round % 3;
    c.plugins.net.isolate(victim, &[1, 2, 3]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.plugins.net.heal();
    c.plugins.net.set_drop_rate(0.05, round);
    victim
}
