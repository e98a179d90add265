//! Shared helpers for the cross-crate tests in `tests/tests/`: a cluster of nodes on the real
//! plug-ins (file WAL, QUIC with mutual TLS) on 127.0.0.1, from the test kit; processes in
//! network namespaces; the examples' node processes and the harness of the end-to-end fault
//! tests that run them; a linearizability checker for the counter, and the key-value model
//! the kv histories are checked against.

use std::time::Duration;

use raft_runtime::Config;
use raft_testkit::{Cluster, Log, OnDisk};

/// A cluster of nodes on the file WAL and QUIC with mutual TLS on 127.0.0.1, each with its
/// own data directory, [`Log`] state machines that start empty at every start.
pub type RealCluster = Cluster<Log, OnDisk>;

/// Starts `n` nodes that bootstrap a cluster together, with a 10 ms tick, snapshots spaced
/// by their entry and byte counts alone (`snapshot_log_percent` 0) and `configure`
/// applied to their configuration.
pub async fn real_cluster(n: u64, configure: fn(&mut Config)) -> RealCluster {
    let mut config = Config {
        tick_interval: Duration::from_millis(10),
        // The test state machine keeps every value, so its snapshots grow with the log:
        // the tests space them by their counts alone, unless they set this themselves.
        snapshot_log_percent: 0,
        ..Config::default()
    };
    configure(&mut config);
    Cluster::with_logs(n, config, OnDisk::new(), false).await
}

pub mod fault_cluster;
pub mod kv_model;
pub mod linearizability;
/// Network namespaces and packet filters, from the test kit.
pub use raft_testkit::netns;
pub mod process;
