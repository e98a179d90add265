//! Restarting from persisted state: what survives, what is lost, what is handed out again.

mod common;

use common::{Network, config, data, vote_request};
use raft_core::{
    ConfState, DriverError, HardState, Inconsistency, MemStorage, MessageBody, PersistToken, RawNode,
    RecoverError, Role,
};

#[test]
fn restart_recovers_term_vote_and_log() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let (term, last) = (net.term(2), net.raw(2).last_index());
    net.crash_restart(2);
    assert_eq!(net.term(2), term);
    assert_eq!(net.raw(2).last_index(), last);
    assert_eq!(net.raw(2).status().hard_state.vote, Some(1));
    assert_eq!(net.role(2), Role::Follower);
}

#[test]
fn restart_hands_out_only_unapplied_committed_entries() {
    let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
    let entries: Vec<raft_core::Entry> = (1..=5)
        .map(|i| raft_core::Entry::new(1, i, raft_core::EntryPayload::Normal(data(&format!("e{i}")))))
        .collect();
    storage.append(&entries).unwrap();
    storage.set_hard_state(HardState {
        term: 1,
        vote: Some(1),
        commit: 5,
    });
    let mut node = RawNode::new(config(1), storage, 3).unwrap();
    let ready = node.ready().unwrap();
    let indexes: Vec<u64> = ready.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(
        indexes,
        vec![4, 5],
        "entries 1 to 3 were applied before the restart"
    );
}

#[test]
fn crash_loses_what_was_not_reported_durable() {
    let mut net = Network::new(3);
    net.elect(1);
    net.node_mut(2).manual_persist = true;
    net.raw(1).propose(data("x")).unwrap();
    net.stabilize();
    assert_eq!(net.raw(2).last_index(), 2, "in memory");
    net.crash_restart(2);
    assert_eq!(net.raw(2).last_index(), 1, "the write never completed");
    net.node_mut(2).manual_persist = false;
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(
        net.node(2).applied_data(),
        vec![data("x")],
        "re-sent by the leader"
    );
}

#[test]
fn restart_with_applied_beyond_the_log_is_refused() {
    let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
    let err = RawNode::new(config(1), storage, 4).err().unwrap();
    assert!(
        matches!(
            err,
            RecoverError::Inconsistent(Inconsistency::AppliedBeyondLog { applied: 4, last: 0 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("applied index 4"));
}

#[test]
fn restart_with_applied_below_the_snapshot_is_refused() {
    let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
    let entries: Vec<raft_core::Entry> = (1..=5)
        .map(|i| raft_core::Entry::new(1, i, raft_core::EntryPayload::Empty))
        .collect();
    storage.append(&entries).unwrap();
    storage
        .compact(raft_core::SnapshotMeta {
            index: 4,
            term: 1,
            conf_state: ConfState::with_voters([1]),
        })
        .unwrap();
    let err = RawNode::new(config(1), storage, 2).err().unwrap();
    assert!(
        err.to_string()
            .contains("restore the state machine from the snapshot"),
        "{err}"
    );
}

#[test]
fn restart_with_commit_beyond_the_log_is_refused() {
    let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
    storage.set_hard_state(HardState {
        term: 1,
        vote: None,
        commit: 9,
    });
    assert!(matches!(
        RawNode::new(config(1), storage, 0),
        Err(RecoverError::Inconsistent(Inconsistency::CommitBeyondLog {
            commit: 9,
            last: 0
        }))
    ));
}

#[test]
fn restarted_voter_does_not_vote_twice_in_a_term() {
    let mut net = Network::new(3);
    net.raw(3).step(vote_request(1, 3, 1, 0, 0)).unwrap();
    net.collect();
    net.crash_restart(3);
    net.raw(3).step(vote_request(2, 3, 1, 0, 0)).unwrap();
    let out = net.collect();
    assert!(
        matches!(&out[0].body, MessageBody::VoteResponse(v) if !v.granted),
        "the vote for node 1 survived the restart: {out:?}"
    );
}

#[test]
fn persist_tokens_must_be_reported_in_order() {
    let mut net = Network::new(3);
    net.raw(1).campaign().unwrap();
    let ready = net.raw(1).ready().unwrap();
    let token = ready.persist.unwrap().token;
    assert!(matches!(
        net.raw(1).on_persisted(PersistToken(token.0 + 5)),
        Err(DriverError::UnknownPersistToken { .. })
    ));
    net.raw(1).on_persisted(token).unwrap();
    assert!(net.raw(1).on_persisted(token).is_err(), "reported twice");
}

#[test]
fn restarted_leader_becomes_follower_and_cluster_recovers() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.crash_restart(1);
    assert_eq!(net.role(1), Role::Follower);
    net.campaign(2);
    net.propose_ok(2, "b");
    for id in 1..=3 {
        assert_eq!(
            net.node(id).applied_data(),
            vec![data("a"), data("b")],
            "node {id}"
        );
    }
}

#[test]
fn state_machine_lost_in_a_crash_replays_from_the_log() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.propose_ok(1, "b");
    // The next tick stores the commit index of "b".
    net.tick_all(1);
    net.stabilize();
    // A state machine kept only in memory restarts from scratch: applied index 0.
    let storage = net.raw(3).storage().clone();
    let mut node = RawNode::new(config(3), storage, 0).unwrap();
    let ready = node.ready().unwrap();
    assert_eq!(ready.committed_entries.len(), 3, "everything is handed out again");
}

#[test]
fn a_commit_index_change_alone_waits_for_the_next_entries_or_tick() {
    let mut net = Network::new(3);
    net.elect(1);
    net.tick_all(1);
    net.stabilize();
    let a = net.propose_ok(1, "a");
    assert_eq!(net.commit(1), a);
    assert!(
        net.raw(1).storage().hard_state().commit < a,
        "the leader wrote a batch only to move its commit index"
    );
    assert!(
        !net.raw(1).has_ready(),
        "a node must not spin on an unwritten commit"
    );

    // The commit index is stored with the next entries.
    let b = net.propose_ok(1, "b");
    assert!(net.raw(1).storage().hard_state().commit >= a);

    // Or at the next tick, when no entries come.
    assert!(net.raw(1).storage().hard_state().commit < b);
    net.tick(1, 1);
    net.process(1);
    assert_eq!(net.raw(1).storage().hard_state().commit, b);
    assert!(!net.raw(1).has_ready());

    // A node that crashes before storing its commit index relearns it and loses nothing.
    let c = net.propose_ok(1, "c");
    net.tick(1, config(1).heartbeat_tick);
    net.stabilize();
    assert_eq!(net.commit(2), c);
    assert!(net.raw(2).storage().hard_state().commit < c);
    net.crash_restart(2);
    assert!(
        net.commit(2) >= net.node(2).applied_index(),
        "never below applied"
    );
    net.tick(1, config(1).heartbeat_tick);
    net.stabilize();
    assert_eq!(net.commit(2), c);
    assert_eq!(net.node(2).applied_data(), vec![data("a"), data("b"), data("c")]);
}
