//! Messages no correct peer sends: extreme terms and indexes, leader-only messages from a
//! node that is not the leader, a snapshot without its data. Each is refused with an error
//! value, changes nothing, and the cluster goes on electing leaders and committing.

mod common;

use common::{Network, data, msg};
use raft_core::{
    Append, AppendResponse, ConfState, Entry, EntryPayload, Error, HardState, Heartbeat, MAX_INDEX, MAX_TERM,
    MAX_TERM_GAP, MemStorage, Message, MessageBody, RawNode, RequestVote, Role, SnapshotMeta,
};

fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::Append(Append {
        prev_index,
        prev_term,
        entries,
        commit,
    })
}

fn vote(pre_vote: bool, last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote(RequestVote {
        pre_vote,
        last_index,
        last_term,
        leader_transfer: false,
    })
}

fn assert_malformed(result: Result<(), Error>, what: &str) {
    assert!(
        matches!(result, Err(Error::MalformedMessage { .. })),
        "{what}: {result:?}"
    );
}

/// After the hostile input, the cluster still works: a new election, then a commit.
fn assert_cluster_recovers(net: &mut Network, before_term: u64) {
    for id in 1..=3 {
        assert!(
            net.term(id) <= before_term + 1,
            "node {id} term {} jumped",
            net.term(id)
        );
        assert!(net.raw(id).fatal().is_none());
    }
    net.elect(2);
    assert_eq!(net.role(2), Role::Leader);
    let index = net.propose_ok(2, "after");
    for id in 1..=3 {
        assert!(net.commit(id) >= index, "node {id} committed {}", net.commit(id));
    }
}

#[test]
fn term_at_the_top_of_u64_is_refused_and_the_cluster_keeps_electing() {
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.term(1);
    for bad in [u64::MAX, u64::MAX - 1, MAX_TERM + 1, 1 << 63] {
        for to in 1..=3u64 {
            let from = if to == 3 { 1 } else { 3 };
            assert_malformed(net.raw(to).step(msg(from, to, bad, vote(true, 0, 0))), "pre-vote");
            assert_malformed(net.raw(to).step(msg(from, to, bad, vote(false, 0, 0))), "vote");
            assert_malformed(
                net.raw(to).step(msg(from, to, bad, append(0, 0, vec![], 0))),
                "append",
            );
            assert_malformed(
                net.raw(to).step(msg(
                    from,
                    to,
                    bad,
                    MessageBody::Heartbeat(Heartbeat { commit: 0, round: 0 }),
                )),
                "heartbeat",
            );
            assert_eq!(net.term(to), term, "node {to}");
        }
    }
    assert_cluster_recovers(&mut net, term);
}

#[test]
fn a_term_far_ahead_of_the_receiver_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.term(2);
    let jump = term + MAX_TERM_GAP + 1;
    assert_malformed(net.raw(2).step(msg(3, 2, jump, vote(false, 0, 0))), "vote");
    assert_eq!(net.term(2), term);
    // Within the gap, a higher term is ordinary Raft: the node follows it.
    net.raw(2)
        .step(msg(3, 2, term + MAX_TERM_GAP, vote(true, 0, 0)))
        .unwrap();
    assert_cluster_recovers(&mut net, term);
}

#[test]
fn a_node_at_the_last_term_does_not_wrap_around() {
    // A node whose stored term is MAX_TERM (say, from an older version without the bound)
    // neither overflows nor goes back to a small term: it just cannot campaign.
    let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([1, 2, 3]));
    storage.set_hard_state(HardState {
        term: MAX_TERM,
        vote: None,
        commit: 0,
    });
    let mut node = RawNode::new(common::config(1), storage, 0).unwrap();
    for _ in 0..100 {
        node.tick();
        if node.has_ready() {
            node.ready().unwrap();
        }
    }
    assert_eq!(node.term(), MAX_TERM);
    assert_eq!(node.role(), Role::Follower);
    node.campaign().unwrap();
    assert_eq!(node.term(), MAX_TERM);
    assert!(node.fatal().is_none());
}

#[test]
fn indexes_at_the_top_of_u64_are_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let term = net.term(2);
    let commit = net.commit(2);
    for bad in [u64::MAX, u64::MAX - 1, MAX_INDEX + 1] {
        // At the current term and at a stale one: bounds come before the term check.
        for t in [term, term - 1] {
            assert_malformed(
                net.raw(2).step(msg(1, 2, t, append(bad, t, vec![], 0))),
                "prev_index",
            );
            assert_malformed(net.raw(2).step(msg(1, 2, t, append(0, 0, vec![], bad))), "commit");
            assert_malformed(
                net.raw(2).step(msg(
                    1,
                    2,
                    t,
                    MessageBody::Heartbeat(Heartbeat {
                        commit: bad,
                        round: 0,
                    }),
                )),
                "heartbeat commit",
            );
        }
        let meta = SnapshotMeta {
            index: bad,
            term,
            conf_state: ConfState::with_voters([1, 2, 3]),
        };
        assert_malformed(
            net.raw(2)
                .step_snapshot(msg(1, 2, term, MessageBody::Snapshot(Box::new(meta)))),
            "snapshot index",
        );
        assert_malformed(
            net.raw(2).step(msg(3, 2, term + 1, vote(true, bad, 0))),
            "vote last_index",
        );
        let rejection = AppendResponse::Rejected {
            rejected: 1,
            hint_index: bad,
            hint_term: 0,
            round: 0,
        };
        assert_malformed(
            net.raw(1)
                .step(msg(2, 1, term, MessageBody::AppendResponse(rejection))),
            "hint_index",
        );
        let rejection = AppendResponse::Rejected {
            rejected: bad,
            hint_index: 0,
            hint_term: 0,
            round: 0,
        };
        assert_malformed(
            net.raw(1)
                .step(msg(2, 1, term, MessageBody::AppendResponse(rejection))),
            "rejected",
        );
        assert_malformed(
            net.raw(1).step(msg(
                2,
                1,
                term,
                MessageBody::AppendResponse(AppendResponse::Accepted { index: bad }),
            )),
            "accepted",
        );
    }
    // Entries that would run past the bound.
    let entries = vec![
        Entry::new(term, MAX_INDEX, EntryPayload::Empty),
        Entry::new(term, MAX_INDEX + 1, EntryPayload::Empty),
    ];
    assert_malformed(
        net.raw(2)
            .step(msg(1, 2, term, append(MAX_INDEX - 1, term, entries, 0))),
        "entries",
    );
    assert_eq!(net.commit(2), commit);
    assert_eq!(net.raw(1).status().progress[&2].matched, net.raw(1).last_index());
    assert_cluster_recovers(&mut net, term);
}

#[test]
fn a_snapshot_on_the_message_path_is_refused_without_effect() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let before = net.raw(2).status();
    let meta = SnapshotMeta {
        index: 1000,
        term: net.term(1),
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    for term in [before.hard_state.term, before.hard_state.term + 1] {
        let err = net
            .raw(2)
            .step(msg(1, 2, term, MessageBody::Snapshot(Box::new(meta.clone()))))
            .unwrap_err();
        assert!(matches!(err, Error::SnapshotWithoutData { from: 1 }), "{err}");
    }
    assert_eq!(net.raw(2).status(), before);
    assert!(!net.raw(2).has_ready() || net.raw(2).ready().unwrap().persist.is_none());
}

#[test]
fn a_second_leader_in_the_same_term_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let term = net.term(2);
    let last = net.raw(2).last_index();
    // Node 3 claims node 2's term with an entry that would replace node 1's.
    let forged = vec![Entry::new(term, last, EntryPayload::Normal(data("forged")))];
    assert_malformed(
        net.raw(2)
            .step(msg(3, 2, term, append(last - 1, term, forged, last))),
        "append",
    );
    assert_malformed(
        net.raw(2).step(msg(
            3,
            2,
            term,
            MessageBody::Heartbeat(Heartbeat {
                commit: last,
                round: 1,
            }),
        )),
        "heartbeat",
    );
    assert_eq!(net.raw(2).leader(), Some(1));
    // Nor may it order an election or confirm a read.
    assert_malformed(
        net.raw(2).step(msg(3, 2, term, MessageBody::TimeoutNow)),
        "timeout now",
    );
    assert_eq!(net.role(2), Role::Follower);
    net.stabilize();
    assert_eq!(net.leader(), Some(1));
}

#[test]
fn a_refused_message_leaves_no_output() {
    let mut net = Network::new(3);
    net.elect(1);
    net.stabilize();
    let term = net.term(2);
    let _ = net.raw(2).step(Message {
        from: 3,
        to: 2,
        term: u64::MAX,
        body: append(u64::MAX, u64::MAX, vec![], u64::MAX),
    });
    assert!(!net.raw(2).has_ready(), "nothing to send or persist");
    assert_eq!(net.term(2), term);
}
