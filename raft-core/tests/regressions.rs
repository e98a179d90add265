//! Bugs the simulator found, each pinned by the smallest scenario that shows it.

mod common;

use common::{Network, config, data};
use raft_core::{
    Append, AppendResponse, ConfState, Entry, EntryPayload, MemStorage, Message, MessageBody, RawNode,
};

fn entry(term: u64, index: u64) -> Entry {
    Entry::new(
        term,
        index,
        EntryPayload::Normal(data(&format!("{term}-{index}"))),
    )
}

fn append(from: u64, term: u64, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    Message {
        from,
        to: 2,
        term,
        body: MessageBody::Append(Append {
            prev_index: prev.0,
            prev_term: prev.1,
            entries,
            commit,
        }),
    }
}

/// A follower accepted entries from one leader and queued the acknowledgement; before its
/// driver took the batch, a newer leader's append replaced those entries. The queued
/// acknowledgement must not leave: it would vouch for entries that were never durable.
#[test]
fn ack_of_entries_replaced_before_persisting_is_retracted() {
    let cs = ConfState::with_voters([1, 2, 3]);
    let mut node = RawNode::new(config(2), MemStorage::new_with_conf_state(cs), 0).unwrap();
    // Leader 1 of term 1 sends entries 1..=3.
    node.step(append(
        1,
        1,
        (0, 0),
        vec![entry(1, 1), entry(1, 2), entry(1, 3)],
        0,
    ))
    .unwrap();
    // Before the driver runs, leader 3 of term 2 replaces entries 2 and 3.
    node.step(append(3, 2, (1, 1), vec![entry(2, 2)], 0)).unwrap();
    let ready = node.ready().unwrap();
    let persist = ready.persist.expect("entries to persist");
    let acks: Vec<(u64, u64, u64)> = persist
        .messages
        .iter()
        .chain(&ready.messages)
        .filter_map(|m| match m.body {
            MessageBody::AppendResponse(AppendResponse::Accepted { index }) => Some((m.to, m.term, index)),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![(3, 2, 2)],
        "only the new leader's acknowledgement survives"
    );
    assert_eq!(
        persist
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2)]
    );
}

/// The same hazard through a snapshot that replaces a log with unpersisted entries.
#[test]
fn ack_of_entries_replaced_by_a_snapshot_is_retracted() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    // Node 2 accepts new entries but its driver has not run yet.
    net.node_mut(2).manual_persist = true;
    net.raw(2)
        .step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Append(Append {
                prev_index: 2,
                prev_term: 1,
                entries: vec![entry(1, 3), entry(1, 4)],
                commit: 2,
            }),
        })
        .unwrap();
    // A leader of term 2 sends a snapshot at index 3 whose term differs from node 2's entry.
    let meta = raft_core::SnapshotMeta {
        index: 3,
        term: 2,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    net.raw(2)
        .step_snapshot(Message {
            from: 3,
            to: 2,
            term: 2,
            body: MessageBody::Snapshot(Box::new(meta)),
        })
        .unwrap();
    let ready = net.raw(2).ready().unwrap();
    let persist = ready.persist.unwrap();
    for m in persist.messages.iter().chain(&ready.messages) {
        if let MessageBody::AppendResponse(AppendResponse::Accepted { index }) = m.body {
            assert!(
                m.to == 3 && index == 3,
                "unexpected acknowledgement {index} to node {} in term {}",
                m.to,
                m.term
            );
        }
    }
}

/// A follower that lost acknowledged entries (a failed disk) used to make its leader probe
/// the same index forever. The leader now reports the loss and repairs the follower, but
/// only once the rejection is known to have been written after the acknowledgement: one
/// written before any later heartbeat could be an old answer delivered late.
#[test]
fn follower_that_lost_its_log_is_reported_and_repaired() {
    let mut net = Network::new(3);
    net.elect(1);
    for i in 0..3 {
        net.propose_ok(1, &format!("c{i}"));
    }
    // Node 3's disk is replaced: it restarts empty but with the configuration.
    let node = net.node_mut(3);
    node.raw = RawNode::new(
        config(3),
        MemStorage::new_with_conf_state(ConfState::with_voters([1, 2, 3])),
        0,
    )
    .unwrap();
    node.applied.clear();
    // Runs the network, keeping the leader's first refusal of a message from node 3.
    fn pump(net: &mut Network, lost: &mut Option<raft_core::StepError>) {
        for _ in 0..100 {
            for id in 1..=3 {
                net.process(id);
            }
            let msgs: Vec<Message> = net.msgs.drain(..).collect();
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if m.to == 1 && m.from == 3 {
                    if let Err(e) = net.raw(1).step(m) {
                        lost.get_or_insert(e);
                    }
                } else {
                    net.deliver(m);
                }
            }
        }
    }
    let mut lost = None;
    net.raw(1).propose(data("next")).unwrap();
    pump(&mut net, &mut lost);
    assert!(
        lost.is_none(),
        "no heartbeat yet, so the rejection proves nothing: {lost:?}"
    );
    assert_eq!(net.raw(1).status().progress[&3].matched, 4, "matched stays");
    for _ in 0..3 {
        net.raw(1).tick();
    }
    pump(&mut net, &mut lost);
    assert!(
        matches!(
            lost,
            Some(raft_core::StepError::PeerLostLog {
                peer: 3,
                acknowledged: 4,
                holds: 0
            })
        ),
        "{lost:?}"
    );
    net.stabilize();
    net.run_ticks(3);
    assert_eq!(net.node(3).applied_data().len(), 4, "repaired from the start");
}

/// A rejection delivered after a later acknowledgement (the follower answered two appends
/// in the opposite order) used to lower the leader's match index for the follower and be
/// reported as a lost log. It is stale: the match index stays.
#[test]
fn reordered_rejection_keeps_the_match_index() {
    let mut net = Network::new(2);
    net.elect(1);
    net.propose_ok(1, "a");
    let matched = net.raw(1).status().progress[&2].matched;
    // Two appends leave the leader: A1 (entry matched+1), then A2 (entry matched+2).
    net.raw(1).propose(data("b")).unwrap();
    net.process(1);
    net.raw(1).propose(data("c")).unwrap();
    net.process(1);
    let appends: Vec<Message> = net.msgs.drain(..).filter(|m| m.to == 2).collect();
    assert_eq!(appends.len(), 2, "{appends:?}");
    // Node 2 gets A2 first and rejects it, then A1, which it accepts.
    net.raw(2).step(appends[1].clone()).unwrap();
    net.raw(2).step(appends[0].clone()).unwrap();
    net.process(2);
    let answers: Vec<Message> = net.msgs.drain(..).filter(|m| m.to == 1).collect();
    let (rejection, acceptance): (Vec<Message>, Vec<Message>) = answers.into_iter().partition(|m| {
        matches!(
            m.body,
            MessageBody::AppendResponse(AppendResponse::Rejected { .. })
        )
    });
    assert_eq!((rejection.len(), acceptance.len()), (1, 1));
    // The leader takes the acceptance, then the late rejection.
    net.raw(1).step(acceptance[0].clone()).unwrap();
    assert_eq!(net.raw(1).status().progress[&2].matched, matched + 1);
    net.raw(1).step(rejection[0].clone()).unwrap();
    assert_eq!(
        net.raw(1).status().progress[&2].matched,
        matched + 1,
        "a stale rejection never lowers the match index"
    );
    net.stabilize();
    assert_eq!(net.raw(1).status().progress[&2].matched, matched + 2);
}

/// A removed id cannot come back: a clean node under that id would replay old
/// configurations in which it votes.
#[test]
fn removed_id_cannot_be_added_back() {
    use raft_core::{ConfChange, ConfChangeError, MemberChange};
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::remove(3)]))
        .unwrap();
    net.stabilize();
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(3)]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            raft_core::MembershipError::Invalid(ConfChangeError::Retired(3))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("new id"));
}

/// A node outside its latest configuration campaigns with a pre-vote round even when
/// pre-vote is off, so that, when its removal has in fact committed, it disturbs no term.
#[test]
fn node_outside_its_configuration_campaigns_with_a_pre_vote() {
    use raft_core::{ConfChange, MemberChange, Role};
    let mut net = Network::new(3);
    net.elect(1);
    // Node 3 gets its removal but never learns that it committed.
    net.raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::remove(3)]))
        .unwrap();
    net.stabilize_filtered(|m| !(m.to == 3 && m.kind() == "Heartbeat"));
    let before = net.term(1);
    for _ in 0..60 {
        net.tick(3, 1);
        net.stabilize();
    }
    assert_ne!(net.role(3), Role::Leader);
    assert_eq!(net.term(1), before, "the leader's term was never disturbed");
    assert_eq!(net.role(1), Role::Leader);
}

/// A lone voter won a term on a tick and crashed before its term and vote were durable; the
/// simulator then saw another node win the same term. That is safe only because the first
/// leadership was never visible: nothing it produced left before the crash, and after the
/// restart the node may vote in that term as if it had never led it.
#[test]
fn leadership_lost_before_its_term_was_durable_was_never_seen() {
    use raft_core::{MessageBody, RequestVote, Role};
    let mut net = Network::with(&[1], &[2], config);
    net.node_mut(1).manual_persist = true;
    net.raw(1).campaign().unwrap();
    assert_eq!(net.role(1), Role::Leader, "a lone voter wins at once");
    let term = net.term(1);
    let ready = net.raw(1).ready().unwrap();
    assert!(
        ready.messages.is_empty(),
        "nothing leaves before the term is durable: {:?}",
        ready.messages
    );
    let persist = ready.persist.expect("the new term must be written");
    assert_eq!(
        persist.hard_state.map(|hs| (hs.term, hs.vote)),
        Some((term, Some(1)))
    );
    assert!(
        persist.messages.iter().all(|m| m.to == 2),
        "the appends to the learner wait for the write"
    );

    // The write never completes.
    net.crash_restart(1);
    assert_eq!(net.term(1), term - 1, "the term was not durable");
    assert_eq!(net.role(1), Role::Follower);

    // Another node asks for the same term with a log as good: the vote is granted, since this
    // node holds no record of having led or voted in that term.
    let last_index = net.raw(1).last_index();
    let last_term = net.raw(1).term_at(last_index).unwrap();
    net.node_mut(1).manual_persist = false;
    net.raw(1)
        .step(Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::RequestVote(RequestVote {
                last_index,
                last_term,
                pre_vote: false,
                leader_transfer: false,
            }),
        })
        .unwrap();
    let granted = net
        .collect()
        .into_iter()
        .any(|m| matches!(m.body, MessageBody::VoteResponse(r) if r.granted));
    assert!(granted);
}

/// Found by the fuzzer: a follower holds entries 1 and 2 of term 1, durable, and a repeated
/// append queues a fresh acknowledgement of 2. Before it leaves, a leader of term 2 sends a
/// snapshot at index 1 whose term differs, which replaces the whole log. The acknowledgement
/// must not leave with the snapshot's batch: once only the snapshot is durable, the node no
/// longer holds entry 2.
#[test]
fn a_snapshot_that_replaces_the_log_retracts_queued_acks_above_it() {
    let cs = ConfState::with_voters([1, 2, 3]);
    let mut node = RawNode::new(config(2), MemStorage::new_with_conf_state(cs.clone()), 0).unwrap();
    let first = append(1, 1, (0, 0), vec![entry(1, 1), entry(1, 2)], 0);
    node.step(first.clone()).unwrap();
    let mut ready = node.ready().unwrap();
    let batch = ready.persist.take().expect("entries to persist");
    node.storage_mut().persist(&batch).unwrap();
    node.on_persisted(batch.token).unwrap();
    assert_eq!(node.status().persisted, 2);

    node.step(first).unwrap();
    node.step_snapshot(Message {
        from: 3,
        to: 2,
        term: 2,
        body: MessageBody::Snapshot(Box::new(raft_core::SnapshotMeta {
            index: 1,
            term: 2,
            conf_state: cs,
        })),
    })
    .unwrap();

    let ready = node.ready().unwrap();
    let leaving: Vec<&Message> = ready
        .messages
        .iter()
        .chain(ready.persist.iter().flat_map(|p| p.messages.iter()))
        .collect();
    for m in &leaving {
        if let MessageBody::AppendResponse(AppendResponse::Accepted { index }) = m.body {
            assert!(
                index <= 1,
                "an acknowledgement of {index} leaves after the log was replaced by a snapshot at 1: {leaving:?}"
            );
        }
    }
    assert!(
        leaving.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 1 })
        )),
        "the snapshot is acknowledged: {leaving:?}"
    );
}
