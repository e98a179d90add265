//! A member that sends what no correct peer sends (a bug, another version, a compromised
//! host) cannot stop a node, wedge the cluster or make up answers. Each test impersonates
//! a member on the in-memory network and checks the cluster goes on committing.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Cluster;
use raft_runtime::raft_core::{
    Append, ConfState, Heartbeat, Message, MessageBody, NodeId, RequestVote, SnapshotMeta,
};
use raft_runtime::{
    ForwardError, GroupId, ReadError, SnapshotStream, Transport, TransportError, WireMessage,
};

/// Sends `body` to `to` as member `from` would, at `term`.
fn send_as(c: &Cluster, from: NodeId, to: NodeId, term: u64, body: MessageBody) {
    send_in_group(c, 0, from, to, term, body)
}

/// Sends `body` to `to` as member `from` would, at `term`, tagged with `group`.
fn send_in_group(c: &Cluster, group: GroupId, from: NodeId, to: NodeId, term: u64, body: MessageBody) {
    let message = Message { from, to, term, body };
    c.plugins
        .net
        .transport(from)
        .send(to, group, vec![WireMessage::Raft(message)])
        .unwrap();
}

/// Every node is alive, the terms stayed small, and a proposal commits everywhere.
async fn assert_healthy(c: &Cluster, max_term: u64) {
    let value = c.propose(4242).await;
    assert!(value > 0);
    let values = c.converged().await;
    assert!(values.contains(&4242), "{values:?}");
    for id in 1..=3 {
        let m = c.metrics(id);
        assert!(m.fatal.is_none(), "node {id} stopped: {:?}", m.fatal);
        assert!(m.term <= max_term, "node {id} is at term {}", m.term);
    }
}

/// The leader's term, a follower to send to, and the other follower, who impersonates a
/// hostile member.
async fn cast(c: &Cluster) -> (u64, NodeId, NodeId) {
    let leader = c.leader().await;
    let term = c.metrics(leader).term;
    let victim = if leader == 1 { 2 } else { 1 };
    (term, victim, 6 - leader - victim)
}

async fn refused(c: &Cluster, id: NodeId) -> u64 {
    c.node(id)
        .wait_for(Duration::from_secs(10), |m| m.refused_messages > 0)
        .await
        .expect("the refusal is counted")
        .refused_messages
}

#[tokio::test]
async fn a_snapshot_on_the_message_stream_does_not_stop_the_node() {
    let c = common::cluster(3).await;
    let (term, victim, impostor) = cast(&c).await;
    let meta = SnapshotMeta {
        index: 1000,
        term: term + 1,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    for t in [term, term + 1] {
        send_as(
            &c,
            impostor,
            victim,
            t,
            MessageBody::Snapshot(Box::new(meta.clone())),
        );
    }
    assert!(refused(&c, victim).await >= 1);
    assert_healthy(&c, term + 2).await;
    c.shutdown().await;
}

/// Traffic tagged with a group the node does not run is refused whole, whatever it says: a
/// member of another cluster that reaches this one by mistake cannot vote in it, lead it or
/// install a snapshot in it.
#[tokio::test]
async fn traffic_of_another_group_is_refused() {
    let c = common::cluster(3).await;
    let (term, victim, impostor) = cast(&c).await;
    // In the node's own group, each of these would raise its term to `hostile`.
    let hostile = term + 5;
    let vote = MessageBody::RequestVote(RequestVote {
        pre_vote: false,
        last_index: u64::MAX,
        last_term: u64::MAX,
        leader_transfer: true,
    });
    send_in_group(&c, 9, impostor, victim, hostile, vote);
    let heartbeat = MessageBody::Heartbeat(Heartbeat {
        commit: 0,
        round: 0,
        quiesce: false,
    });
    send_in_group(&c, 9, impostor, victim, hostile, heartbeat);
    let meta = SnapshotMeta {
        index: 1000,
        term: hostile,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    let snapshot = Message {
        from: impostor,
        to: victim,
        term: hostile,
        body: MessageBody::Snapshot(Box::new(meta)),
    };
    let refusal = c
        .plugins
        .net
        .transport(impostor)
        .send_snapshot(victim, 9, snapshot, SnapshotStream::from_bytes(vec![1, 2, 3]))
        .await;
    match refusal {
        Err(TransportError::Refused { reason, .. }) => assert!(reason.contains("group 9"), "{reason}"),
        other => panic!("the snapshot of another group was taken: {other:?}"),
    }
    let m = c
        .node(victim)
        .wait_for(Duration::from_secs(10), |m| m.refused_messages >= 3)
        .await
        .expect("the vote, the heartbeat and the snapshot are refused");
    assert!(m.term < hostile, "node {victim} went to term {}", m.term);
    assert_healthy(&c, hostile - 1).await;
    c.shutdown().await;
}

#[tokio::test]
async fn extreme_terms_and_indexes_neither_stop_nor_wedge_the_cluster() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    let term = c.metrics(leader).term;
    let hostile = if leader == 3 { 2 } else { 3 };
    for to in (1..=3).filter(|&n| n != hostile) {
        for t in [u64::MAX, u64::MAX - 1, 1 << 63] {
            let vote = |pre_vote| {
                MessageBody::RequestVote(RequestVote {
                    pre_vote,
                    last_index: u64::MAX,
                    last_term: 0,
                    leader_transfer: true,
                })
            };
            send_as(&c, hostile, to, t, vote(true));
            send_as(&c, hostile, to, t, vote(false));
            send_as(
                &c,
                hostile,
                to,
                t,
                MessageBody::Heartbeat(Heartbeat {
                    commit: u64::MAX,
                    round: 0,
                    quiesce: true,
                }),
            );
        }
        let append = MessageBody::Append(Append {
            prev_index: u64::MAX,
            prev_term: 1,
            entries: Vec::new(),
            commit: u64::MAX,
        });
        send_as(&c, hostile, to, term, append.clone());
        send_as(&c, hostile, to, 1, append);
    }
    for to in (1..=3).filter(|&n| n != hostile) {
        refused(&c, to).await;
    }
    assert_healthy(&c, term + 2).await;
    c.shutdown().await;
}

#[tokio::test]
async fn only_the_node_a_proposal_was_forwarded_to_can_answer_it() {
    let c = common::cluster_with(3, |cfg| cfg.forward_proposals = true, false).await;
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let other = 6 - leader - follower;
    // The leader's traffic is held for a moment, so its answer cannot come first.
    c.plugins.net.pause(leader);
    let handle = c.node(follower).clone();
    let proposal = tokio::spawn(async move { handle.propose(7).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Another member answers forward 1 (the follower's first) with a made-up outcome.
    for result in [Err(ForwardError::Busy), Ok(Bytes::from_static(&[99]))] {
        c.plugins
            .net
            .transport(other)
            .send(follower, 0, vec![WireMessage::ForwardReply { id: 1, result }])
            .unwrap();
    }
    refused(&c, follower).await;
    if proposal.is_finished() {
        panic!("a made-up answer was taken: {:?}", proposal.await.unwrap());
    }
    c.plugins.net.resume(leader);
    // The leader's own answer: the command's position in the log.
    let value = proposal.await.unwrap().expect("the leader answers");
    assert_ne!(value, 99);
    assert!(c.converged().await.contains(&7));
    c.shutdown().await;
}

#[tokio::test]
async fn reads_a_node_holds_are_bounded_and_expire() {
    let c = common::cluster_with(
        3,
        |cfg| {
            cfg.max_pending_reads = 2;
            cfg.read_timeout = Duration::from_secs(1);
        },
        false,
    )
    .await;
    let leader = c.leader().await;
    // A leader cut off from its followers cannot confirm reads: they wait.
    let others: Vec<NodeId> = (1..=3).filter(|&n| n != leader).collect();
    c.plugins.net.isolate(leader, &others);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let h = c.node(leader).clone();
            tokio::spawn(async move { h.read(|log| log.values().len()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = c.node(leader).read(|log| log.values().len()).await;
    assert!(matches!(third, Err(ReadError::Busy(_))), "{third:?}");
    for w in waiting {
        let r = w.await.unwrap();
        assert!(
            matches!(
                r,
                Err(ReadError::Timeout | ReadError::LeadershipLost | ReadError::NotLeader { .. })
            ),
            "{r:?}"
        );
    }
    c.plugins.net.heal();
    let leader = c.leader().await;
    // The places were given back.
    let mut ok = 0;
    for _ in 0..50 {
        if c.node(leader).read(|log| log.values().len()).await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 50);
    c.shutdown().await;
}
