//! The runtime on its real plug-ins: the file WAL and QUIC with mutual TLS, on 127.0.0.1.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_and_survives_a_leader_restart() {
    let mut c = raft_tests::real_cluster(3, |_| {}).await;
    for v in 0..100 {
        c.propose(v).await;
    }
    let old = c.leader().await;
    c.stop(old).await;
    for v in 100..150 {
        c.propose(v).await;
    }
    c.restart(old).await;
    assert_eq!(c.converged().await, (0..150).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_by_snapshot_over_quic() {
    let mut c = raft_tests::real_cluster(3, |cfg| {
        cfg.snapshot_every = 50;
        // No log kept behind a snapshot: the node that was down needs one.
        cfg.log_kept_entries = 0;
    })
    .await;
    let leader = c.leader().await;
    let down = if leader == 3 { 2 } else { 3 };
    c.stop(down).await;
    for v in 0..300 {
        c.propose(v).await;
    }
    c.nodes[&leader]
        .wait_for(Duration::from_secs(60), |m| m.snapshot_index >= 200)
        .await
        .expect("the leader compacted its log");
    c.restart(down).await;
    assert_eq!(c.converged().await, (0..300).collect::<Vec<_>>());
    // Counters are published once per tick: wait for them rather than read them at once.
    c.nodes[&down]
        .wait_for(Duration::from_secs(10), |m| m.snapshots_installed >= 1)
        .await
        .expect("the snapshot came over the snapshot stream");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_restart_recovers_everything_from_disk() {
    let mut c = raft_tests::real_cluster(3, |cfg| cfg.snapshot_every = 40).await;
    for v in 0..120 {
        c.propose(v).await;
    }
    for id in 1..=3 {
        c.stop(id).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.propose(120).await;
    assert_eq!(c.converged().await, (0..=120).collect::<Vec<_>>());
    c.shutdown().await;
}

/// A leader removes itself over QUIC with mutual TLS. The followers take the new
/// configuration on append; if their transports refused the old leader from then on, it
/// would never hear them acknowledge the change, never commit it, and campaign forever
/// outside the cluster. The removed node stays reachable until the change commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_removes_itself_over_quic() {
    let mut c = raft_tests::real_cluster(3, |_| {}).await;
    for v in 0..20 {
        c.propose(v).await;
    }
    let old = c.leader().await;
    tokio::time::timeout(Duration::from_secs(60), c.nodes[&old].remove_node(old))
        .await
        .expect("the removal completes")
        .expect("the leader removed itself");
    c.nodes[&old]
        .wait_for(Duration::from_secs(30), |m| m.leader != Some(old))
        .await
        .expect("the old leader stepped down");
    c.stop(old).await;
    for v in 20..40 {
        c.propose(v).await;
    }
    assert_eq!(c.converged().await, (0..40).collect::<Vec<_>>());
    c.shutdown().await;
}
