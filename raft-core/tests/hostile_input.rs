//! Messages no correct peer sends: extreme terms and indexes, leader-only messages from a
//! node that is not the leader, a snapshot without its data. Each is refused with an error
//! value, changes nothing, and the cluster goes on electing leaders and committing.

mod common;

use common::{Network, data, msg};
use raft_core::{
    Append, AppendResponse, ConfState, Entry, EntryPayload, HardState, Heartbeat, HeartbeatResponse,
    MAX_INDEX, MAX_TERM, MAX_TERM_GAP, MemStorage, Message, MessageBody, RawNode, RequestVote, Role,
    SnapshotMeta, StepError,
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

fn assert_malformed(result: Result<(), StepError>, what: &str) {
    assert!(
        matches!(result, Err(StepError::Malformed { .. })),
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
                    MessageBody::Heartbeat(Heartbeat {
                        commit: 0,
                        round: 0,
                        quiesce: false,
                    }),
                )),
                "heartbeat",
            );
            assert_eq!(net.term(to), term, "node {to}");
        }
    }
    assert_cluster_recovers(&mut net, term);
}

#[test]
fn a_term_far_ahead_is_refused_and_the_receiver_climbs_toward_it() {
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.term(2);
    let far = term + MAX_TERM_GAP + 1;
    // The node spent a little of this timeout's allowance following the election.
    let raised = match net.raw(2).step(msg(3, 2, far, vote(false, 0, 0))) {
        Err(StepError::TermTooFarAhead {
            term: t,
            raised_to,
            from: 3,
            ..
        }) => {
            assert_eq!(t, far);
            assert!(raised_to > term + MAX_TERM_GAP - 10, "raised to {raised_to} only");
            raised_to
        }
        other => panic!("expected TermTooFarAhead, got {other:?}"),
    };
    // The node moved by the whole allowance, as a follower that knows no leader, and did
    // not vote.
    assert_eq!(net.term(2), raised);
    assert_eq!(net.role(2), Role::Follower);
    assert_eq!(net.raw(2).leader(), None);
    assert_eq!(net.raw(2).status().hard_state.vote, None);
    // The allowance is spent for this election timeout: even a rise of one is refused, and
    // the term stays put.
    assert!(matches!(
        net.raw(2).step(msg(3, 2, raised + 1, vote(false, 0, 0))),
        Err(StepError::TermTooFarAhead { raised_to, .. }) if raised_to == raised
    ));
    assert_eq!(net.term(2), raised);
    // One election timeout later the allowance is back, and a rise within it is ordinary
    // Raft: the node follows the term.
    net.tick(2, common::config(2).election_tick);
    net.raw(2).step(msg(3, 2, far, vote(true, 0, 0))).unwrap();
    assert_eq!(net.term(2), raised, "a pre-vote names a term nobody holds");
    net.raw(2)
        .step(msg(
            3,
            2,
            far,
            MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
        ))
        .unwrap();
    assert_eq!(net.term(2), far);
}

#[test]
fn a_liar_raises_terms_by_at_most_one_allowance_per_election_timeout() {
    let mut net = Network::new(3);
    net.elect(1);
    let start = net.term(2);
    let timeout = common::config(2).election_tick;
    let windows = 5u64;
    for _ in 0..windows {
        // A burst of messages, each as far ahead as the receiver's term allows at once.
        for _ in 0..50 {
            let now = net.term(2);
            let _ = net.raw(2).step(msg(
                3,
                2,
                (now + MAX_TERM_GAP).min(MAX_TERM),
                MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
            ));
            let _ = net.raw(2).step(msg(
                3,
                2,
                MAX_TERM,
                MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
            ));
        }
        net.tick(2, timeout);
    }
    let risen = net.term(2) - start;
    assert!(
        risen <= windows * MAX_TERM_GAP,
        "the term rose by {risen} in {windows} election timeouts"
    );
    assert!(
        risen >= MAX_TERM_GAP,
        "the allowance was not used at all: {risen}"
    );
    assert!(net.raw(2).fatal().is_none());
}

/// A liar pushes one honest node's term far ahead of the others, again and again, while
/// that node hears nothing from them: once the lies stop and the network heals, the nodes
/// behind climb toward it one allowance per election timeout, and the cluster elects a
/// leader and commits again.
#[test]
fn honest_nodes_pushed_far_apart_converge_and_elect_a_leader() {
    for pre_vote in [false, true] {
        let mut net = Network::with(&[1, 2, 3], &[], |id| {
            let mut c = common::config(id);
            c.pre_vote = pre_vote;
            c.check_quorum = pre_vote;
            c
        });
        net.term_refusals = Some(0);
        net.elect(1);
        net.propose_ok(1, "before");
        let timeout = common::config(3).election_tick;
        net.isolate(3);
        // The liar forges node 1's id: node 3 cannot tell the lie from the truth.
        for _ in 0..6 {
            let now = net.term(3);
            let pushed = net.raw(3).step(msg(
                1,
                3,
                now + MAX_TERM_GAP,
                MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
            ));
            assert!(
                matches!(pushed, Ok(()) | Err(StepError::TermTooFarAhead { .. })),
                "{pushed:?}"
            );
            net.tick(3, timeout);
            net.stabilize();
        }
        assert!(net.term(3) > net.term(1) + 5 * MAX_TERM_GAP);
        net.heal();
        let mut elected = None;
        for _ in 0..2_000 {
            net.run_ticks(1);
            if let Some(leader) = net.leader()
                && (1..=3).all(|id| net.term(id) == net.term(leader))
            {
                elected = Some(leader);
                break;
            }
        }
        let leader = elected.unwrap_or_else(|| {
            panic!(
                "pre_vote {pre_vote}: no common leader; terms {:?}",
                (1..=3).map(|id| net.term(id)).collect::<Vec<_>>()
            )
        });
        assert!(
            net.term_refusals.unwrap() > 0,
            "the scenario never put nodes out of reach"
        );
        let index = net.propose_ok(leader, "after");
        for id in 1..=3 {
            assert!(
                net.commit(id) >= index,
                "pre_vote {pre_vote}: node {id} committed {}",
                net.commit(id)
            );
            assert!(net.raw(id).fatal().is_none());
        }
        net.assert_consistent_logs();
    }
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
                        quiesce: false,
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
        assert!(matches!(err, StepError::SnapshotWithoutData { from: 1 }), "{err}");
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
                quiesce: false,
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

#[test]
fn log_positions_above_zero_with_term_zero_are_refused() {
    // Every entry above index 0 was created by a leader of some term >= 1: a peer naming one
    // with term 0 is not a correct peer.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let term = net.term(2);
    let before = net.raw(2).status();
    let zero_entry = Entry::new(0, 3, EntryPayload::Normal(data("zero")));
    assert_malformed(
        net.raw(2).step(msg(1, 2, term, append(2, 0, vec![], 2))),
        "prev_term 0 above index 0",
    );
    assert_malformed(
        net.raw(2)
            .step(msg(1, 2, term, append(2, term, vec![zero_entry], 2))),
        "entry with term 0",
    );
    assert_malformed(
        net.raw(2).step(msg(3, 2, term + 1, vote(false, 5, 0))),
        "vote last_term 0 above index 0",
    );
    let meta = SnapshotMeta {
        index: 2,
        term: 0,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    assert_malformed(
        net.raw(2)
            .step_snapshot(msg(1, 2, term, MessageBody::Snapshot(Box::new(meta)))),
        "snapshot term 0",
    );
    assert_eq!(net.raw(2).status(), before, "a refused message changed the node");
    let rejection = AppendResponse::Rejected {
        rejected: 2,
        hint_index: 1,
        hint_term: 0,
        round: 0,
    };
    assert_malformed(
        net.raw(1)
            .step(msg(2, 1, term, MessageBody::AppendResponse(rejection))),
        "hint_term 0 above index 0",
    );
    assert_cluster_recovers(&mut net, term);
}

/// A configuration no correct leader writes, in an append or a snapshot, is refused as
/// malformed and changes nothing.
#[test]
fn configurations_no_leader_writes_are_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let term = net.term(1);
    let last = net.raw(2).last_index();
    let commit = net.commit(2);
    let valid = ConfState::with_voters([1, 2, 3]);
    let joint = {
        let mut cs = ConfState::with_voters([1, 2, 4]);
        cs.voters_outgoing = [1, 2, 3].into();
        cs
    };
    let mut bad = Vec::new();
    let mut push = |what: &'static str, f: &dyn Fn(&mut ConfState)| {
        for base in [&valid, &joint] {
            let mut cs = base.clone();
            f(&mut cs);
            bad.push((what, cs));
        }
    };
    push("node id 0", &|cs| {
        cs.learners.insert(0);
    });
    push("no voters", &|cs| {
        cs.voters.clear();
    });
    push("voter and learner", &|cs| {
        cs.learners.insert(1);
    });
    push("metadata of a non-member", &|cs| {
        cs.node_meta.insert(9, bytes::Bytes::from_static(b"x"));
    });
    push("a removed voter", &|cs| {
        cs.removed.insert(2);
    });
    push("auto leave outside joint", &|cs| {
        if cs.voters_outgoing.is_empty() {
            cs.auto_leave = true;
        } else {
            cs.learners_next.insert(4);
        }
    });
    push("next learner that is not an outgoing voter", &|cs| {
        cs.learners_next.insert(5);
    });
    let mut learner_outgoing = joint.clone();
    learner_outgoing.learners.insert(3);
    bad.push(("learner that is an outgoing voter", learner_outgoing));

    for (what, cs) in bad {
        let before = net.raw(2).status();
        let entry = Entry::new(term, last + 1, EntryPayload::Membership(Box::new(cs.clone())));
        assert_malformed(
            net.raw(2)
                .step(msg(1, 2, term, append(last, term, vec![entry], commit))),
            what,
        );
        let meta = SnapshotMeta {
            index: last + 5,
            term,
            conf_state: cs,
        };
        assert_malformed(
            net.raw(2)
                .step_snapshot(msg(1, 2, term, MessageBody::Snapshot(Box::new(meta)))),
            what,
        );
        assert_eq!(net.raw(2).status(), before, "{what}");
    }
    assert_cluster_recovers(&mut net, term);
}
