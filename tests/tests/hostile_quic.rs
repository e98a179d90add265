//! A member with a valid certificate that sends, over QUIC, what no correct peer sends: a
//! snapshot body on the message stream, terms and indexes at the top of `u64`, answers to
//! proposals it was never sent, traffic of a group the nodes do not run. The cluster's
//! nodes stay up, refuse and count each message, and go on electing leaders and
//! committing.

use std::collections::BTreeMap;
use std::time::Duration;

use raft_runtime::raft_core::{
    Append, AppendResponse, ConfState, Heartbeat, Message, MessageBody, NodeId, RequestVote, SnapshotMeta,
};
use raft_runtime::{ForwardError, GroupId, Inbox, Transport, WireMessage};
use raft_tests::RealCluster;
use raft_transport_quic::{QuicConfig, QuicTransport};

/// Node `id` of `c`, stopped and replaced by a bare transport under its identity.
async fn impersonate(c: &mut RealCluster, id: NodeId) -> QuicTransport {
    c.stop(id).await;
    let tls = c.plugins.ca.node_tls(id).expect("certificate");
    let mut transport = None;
    for _ in 0..50 {
        match QuicTransport::bind(QuicConfig::new(c.plugins.addrs[&id], tls.clone())).await {
            Ok(t) => {
                transport = Some(t);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let transport = transport.expect("bind the impersonated node's address");
    let peers: BTreeMap<NodeId, bytes::Bytes> = c
        .plugins
        .addrs
        .iter()
        .filter(|&(&n, _)| n != id)
        .map(|(&n, a)| (n, a.to_string().into()))
        .collect();
    transport.set_peers(peers);
    // What the cluster sends it is read and dropped.
    let (inbox, mut rx) = Inbox::channel(1024);
    transport.register(transport.node_id(), 0, inbox).unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    transport
}

fn raft(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Vec<WireMessage> {
    vec![WireMessage::Raft(Message { from, to, term, body })]
}

/// Sends until the node has counted a refusal (the first batches may go before the
/// connection is up).
async fn send_until_refused(c: &RealCluster, hostile: &QuicTransport, to: NodeId, batch: Vec<WireMessage>) {
    send_until_refused_in(c, hostile, to, 0, batch).await
}

/// Like `send_until_refused`, the batch tagged with `group`.
async fn send_until_refused_in(
    c: &RealCluster,
    hostile: &QuicTransport,
    to: NodeId,
    group: GroupId,
    batch: Vec<WireMessage>,
) {
    let before = c.metrics(to).refused_messages;
    for _ in 0..200 {
        let _ = hostile.send(to, group, batch.clone());
        tokio::time::sleep(Duration::from_millis(25)).await;
        if c.metrics(to).refused_messages > before {
            return;
        }
    }
    panic!("node {to} never refused {batch:?}");
}

/// The cluster still commits, and still elects: leadership moves between the real nodes.
async fn assert_healthy(c: &RealCluster, real: &[NodeId], max_term: u64) {
    c.propose(77).await;
    let leader = c.leader().await;
    let target = *real.iter().find(|&&n| n != leader).unwrap();
    c.nodes[&leader]
        .transfer_leader(target)
        .await
        .expect("leadership moves");
    c.propose(78).await;
    for &id in real {
        let m = c.metrics(id);
        assert!(m.fatal.is_none(), "node {id} stopped: {:?}", m.fatal);
        assert!(m.term <= max_term, "node {id} term {}", m.term);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !real
        .iter()
        .all(|id| c.state_machines[id].values().ends_with(&[77, 78]))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every node applied both"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_hostile_messages_over_quic_stops_no_node() {
    let mut c = raft_tests::real_cluster(4, |cfg| cfg.forward_proposals = true).await;
    c.propose(1).await;
    let hostile = impersonate(&mut c, 4).await;
    let real = [1, 2, 3];
    let leader = c.leader().await;
    let term = c.metrics(leader).term;
    let follower = *real.iter().find(|&&n| n != leader).unwrap();

    // 1. A snapshot's metadata on the message stream, at the next term.
    let meta = SnapshotMeta {
        index: 1000,
        term: term + 1,
        conf_state: ConfState::with_voters([1, 2, 3, 4]),
    };
    send_until_refused(
        &c,
        &hostile,
        follower,
        raft(4, follower, term + 1, MessageBody::Snapshot(Box::new(meta))),
    )
    .await;

    // 2. and 3. Terms and indexes at the top of u64, to every node.
    for &to in &real {
        for t in [u64::MAX, 1 << 63] {
            let vote = MessageBody::RequestVote(RequestVote {
                pre_vote: false,
                last_index: u64::MAX,
                last_term: 0,
                leader_transfer: true,
            });
            send_until_refused(&c, &hostile, to, raft(4, to, t, vote)).await;
            let heartbeat = MessageBody::Heartbeat(Heartbeat {
                commit: u64::MAX,
                round: u64::MAX,
                quiesce: true,
            });
            send_until_refused(&c, &hostile, to, raft(4, to, t, heartbeat)).await;
        }
        let append = MessageBody::Append(Append {
            prev_index: u64::MAX,
            prev_term: 1,
            entries: Vec::new(),
            commit: u64::MAX,
        });
        send_until_refused(&c, &hostile, to, raft(4, to, 1, append)).await;
        let rejection = MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected: 1,
            hint_index: u64::MAX,
            hint_term: 0,
            round: 0,
        });
        send_until_refused(&c, &hostile, to, raft(4, to, term, rejection)).await;
    }

    // 4. Answers to proposals that were never forwarded to it.
    let answers = vec![
        WireMessage::ForwardReply {
            id: 1,
            result: Err(ForwardError::Busy),
        },
        WireMessage::ForwardReply {
            id: 2,
            result: Ok(bytes::Bytes::from_static(&[9])),
        },
    ];
    send_until_refused(&c, &hostile, follower, answers).await;

    // 5. A vote that would be granted, and would raise every term to `term + 10`, were it
    // not tagged with a group the nodes do not run.
    for &to in &real {
        let vote = MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            last_index: u64::MAX,
            last_term: u64::MAX,
            leader_transfer: true,
        });
        send_until_refused_in(&c, &hostile, to, 9, raft(4, to, term + 10, vote)).await;
    }

    assert_healthy(&c, &real, term + 3).await;
    hostile.shutdown().await;
    for id in real {
        c.stop(id).await;
    }
}
