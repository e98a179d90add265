//! Quiet groups (`Config::quiesce_after_ticks`): an idle group stops sending and ticking,
//! any request wakes it, and a leader that died while its group was quiet is replaced once
//! the group is used again.

mod common;

use std::time::Duration;

use common::Cluster;
use raft_runtime::NodeId;

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until every running node of `c` among `ids` is quiet.
async fn all_quiet(c: &Cluster, ids: &[NodeId]) {
    for &id in ids {
        c.node(id)
            .wait_for(DEADLINE, |m| m.quiescent)
            .await
            .unwrap_or_else(|m| panic!("node {id} did not go quiet: {m:?}"));
    }
}

/// Messages the nodes among `ids` sent so far.
fn sent(c: &Cluster, ids: &[NodeId]) -> u64 {
    ids.iter()
        .map(|&id| c.plugins.net.metrics(id).messages_sent)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_goes_quiet_and_a_proposal_wakes_it() {
    let c = common::cluster_with(3, |cfg| cfg.quiesce_after_ticks = 10, false).await;
    c.propose(1).await;
    all_quiet(&c, &[1, 2, 3]).await;
    // Awake, a leader sends a heartbeat round every 3 ticks of 10 ms.
    let before = sent(&c, &[1, 2, 3]);
    let leader = c.leader().await;
    let term = c.metrics(leader).term;
    // Longer than an election timeout (150 to 300 ms).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sent(&c, &[1, 2, 3]), before, "a quiet group sent messages");
    assert!(
        (1..=3).all(|id| c.metrics(id).quiescent),
        "a node woke with nothing to do"
    );

    c.propose(2).await;
    assert_eq!(c.converged().await, vec![1, 2]);
    // The time the group was quiet counts for nothing: no clock caught up on it at once
    // (which would have timed out the leader's quorum check or a follower's election).
    for id in 1..=3 {
        let m = c.metrics(id);
        assert_eq!((m.term, m.leader), (term, Some(leader)), "node {id}");
    }
    // Idle again: quiet again.
    all_quiet(&c, &[1, 2, 3]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_follower_wakes_the_group() {
    let c = common::cluster_with(3, |cfg| cfg.quiesce_after_ticks = 10, false).await;
    c.propose(7).await;
    all_quiet(&c, &[1, 2, 3]).await;
    let leader = c.leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let values = c
        .node(follower)
        .read(|log: &raft_testkit::Log| log.values())
        .await
        .expect("a read on a quiet follower");
    assert_eq!(values, vec![7]);
    all_quiet(&c, &[1, 2, 3]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_died_while_its_group_was_quiet_is_replaced_when_the_group_is_used() {
    let mut c = common::cluster_with(
        3,
        |cfg| {
            cfg.quiesce_after_ticks = 10;
            cfg.forward_proposals = true;
        },
        false,
    )
    .await;
    c.propose(1).await;
    all_quiet(&c, &[1, 2, 3]).await;
    let old = c.leader().await;
    c.stop(old).await;
    let rest: Vec<NodeId> = (1..=3).filter(|&n| n != old).collect();
    // The followers are quiet and hear nothing: a request to one wakes it (it cannot be
    // forwarded to the dead leader).
    let refused = c.node(rest[0]).propose(2).await;
    assert!(refused.is_err(), "{refused:?}");
    let new = c.leader_among(&rest, DEADLINE).await;
    assert_ne!(new, old);
    c.propose(3).await;
    assert_eq!(c.converged().await, vec![1, 3]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_a_group_never_goes_quiet() {
    let c = common::cluster(3).await;
    c.propose(1).await;
    let before = sent(&c, &[1, 2, 3]);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sent(&c, &[1, 2, 3]) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader stopped heartbeating"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!((1..=3).all(|id| !c.metrics(id).quiescent));
    c.shutdown().await;
}
