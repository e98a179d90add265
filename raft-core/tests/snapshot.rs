//! Log compaction and snapshots: providing, pausing, failing, aborting, ignoring stale ones,
//! and installing them.

mod common;

use common::{Network, data, msg};
use raft_core::{
    AppendResponse, ConfState, DriverError, LogStorage, MessageBody, ProgressState, SnapshotMeta,
    SnapshotStatus,
};

/// A cluster where node 3 missed entries that the leader then compacted away.
fn lagging_follower_behind_compaction() -> Network {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose_ok(1, &format!("c{i}"));
    }
    net.compact(1);
    assert_eq!(net.raw(1).storage().first_index(), 7);
    net
}

#[test]
fn follower_behind_the_first_index_is_sent_a_snapshot() {
    let mut net = lagging_follower_behind_compaction();
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.node(3).installed_snapshot, Some(6));
    assert_eq!(net.commit(3), 6);
    net.propose_ok(1, "after");
    assert_eq!(
        net.node(3).applied_data(),
        vec![data("after")],
        "entries after the snapshot follow"
    );
}

#[test]
fn replication_pauses_while_a_snapshot_is_pending() {
    let mut net = lagging_follower_behind_compaction();
    net.heal();
    net.tick(1, 1);
    // The snapshot is in the network and the transport has not reported on it yet.
    net.stabilize_filtered(|m| m.kind() != "Snapshot");
    assert_eq!(
        net.raw(1).status().progress[&3].state,
        ProgressState::Snapshot { pending: 6 }
    );
    net.raw(1).propose(data("x")).unwrap();
    net.tick(1, 1);
    net.process(1);
    assert!(
        net.appends(1, 3).is_empty(),
        "no appends while the snapshot is pending"
    );
    assert!(!net.appends(1, 2).is_empty());
}

#[test]
fn failed_snapshot_goes_back_to_probe_and_is_retried() {
    let mut net = lagging_follower_behind_compaction();
    net.heal();
    net.drop_kinds.insert("Snapshot");
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(
        net.raw(1).status().progress[&3].state,
        ProgressState::Probe,
        "failure reported by the transport"
    );
    assert_eq!(net.node(3).installed_snapshot, None);
    net.drop_kinds.clear();
    net.run_ticks(3);
    assert_eq!(
        net.node(3).installed_snapshot,
        Some(6),
        "the next probe sent a new snapshot"
    );
}

#[test]
fn snapshot_is_aborted_when_the_follower_catches_up_otherwise() {
    let mut net = lagging_follower_behind_compaction();
    net.heal();
    net.tick(1, 1);
    net.process(1);
    net.process(1);
    let pending = net.raw(1).status().progress[&3].state;
    if pending != (ProgressState::Snapshot { pending: 6 }) {
        // The heartbeat answer has not come back yet; let it.
        net.stabilize_filtered(|m| m.kind() != "Snapshot");
    }
    assert_eq!(
        net.raw(1).status().progress[&3].state,
        ProgressState::Snapshot { pending: 6 }
    );
    // An acknowledgement at or past the snapshot's index (say, node 3 got the entries from an
    // earlier leader) ends the snapshot state.
    net.raw(1)
        .step(msg(
            3,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 6 }),
        ))
        .unwrap();
    assert_eq!(net.raw(1).status().progress[&3].state, ProgressState::Replicate);
}

#[test]
fn snapshot_not_newer_than_the_commit_index_is_ignored() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.propose_ok(1, "b");
    let before = net.log_terms(2);
    let meta = SnapshotMeta {
        index: 2,
        term: 1,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    net.raw(2)
        .step_snapshot(msg(1, 2, 1, MessageBody::Snapshot(Box::new(meta))))
        .unwrap();
    let out = net.collect();
    assert_eq!(net.log_terms(2), before, "nothing replaced");
    assert_eq!(net.node(2).installed_snapshot, None);
    assert!(matches!(
        out[0].body,
        MessageBody::AppendResponse(AppendResponse::Accepted { index: 3 })
    ));
}

#[test]
fn snapshot_matching_the_follower_log_only_advances_the_commit_index() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    // Node 2 receives entry 3 but not the commit index that covers it.
    net.raw(1).propose(data("b")).unwrap();
    net.stabilize_filtered(|m| {
        !(m.to == 2 && matches!(&m.body, MessageBody::Append(a) if a.entries.is_empty()))
    });
    assert_eq!(net.commit(2), 2);
    assert_eq!(net.raw(2).last_index(), 3);
    let meta = SnapshotMeta {
        index: 3,
        term: 1,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    net.raw(2)
        .step_snapshot(msg(1, 2, 1, MessageBody::Snapshot(Box::new(meta))))
        .unwrap();
    net.collect();
    assert_eq!(
        net.node(2).installed_snapshot,
        None,
        "log kept: it holds the snapshot's last entry"
    );
    assert_eq!(net.commit(2), 3);
    assert_eq!(net.node(2).applied_data(), vec![data("a"), data("b")]);
}

#[test]
fn installing_a_snapshot_replaces_the_follower_log() {
    let mut net = Network::new(3);
    net.elect(1);
    let meta = SnapshotMeta {
        index: 10,
        term: 1,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    net.raw(2)
        .step_snapshot(msg(1, 2, 1, MessageBody::Snapshot(Box::new(meta))))
        .unwrap();
    let ready = net.raw(2).ready().unwrap();
    let persist = ready.persist.unwrap();
    assert_eq!(persist.snapshot.as_ref().unwrap().index, 10);
    assert!(
        persist.messages.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 10 })
        )),
        "acknowledged once installed"
    );
    net.raw(2).storage_mut().persist(&persist).unwrap();
    net.raw(2).on_persisted(persist.token).unwrap();
    net.raw(2).on_applied(10).unwrap();
    assert_eq!(net.raw(2).status().first_index, 11);
    assert_eq!(net.commit(2), 10);
}

#[test]
fn nothing_after_a_snapshot_is_applied_before_it_is_installed_and_restored() {
    let mut net = Network::new(3);
    net.elect(1);
    let meta = SnapshotMeta {
        index: 10,
        term: 1,
        conf_state: ConfState::with_voters([1, 2, 3]),
    };
    net.raw(2)
        .step_snapshot(msg(1, 2, 1, MessageBody::Snapshot(Box::new(meta))))
        .unwrap();
    let first = net.raw(2).ready().unwrap();
    // Before the snapshot is durable, an append after it arrives and commits.
    let append = raft_core::Append {
        prev_index: 10,
        prev_term: 1,
        entries: vec![raft_core::Entry::new(
            1,
            11,
            raft_core::EntryPayload::Normal(data("x")),
        )],
        commit: 11,
    };
    net.raw(2)
        .step(msg(1, 2, 1, MessageBody::Append(append)))
        .unwrap();
    let second = net.raw(2).ready().unwrap();
    assert!(
        second.committed_entries.is_empty(),
        "entry 11 waits for the snapshot"
    );
    let p1 = first.persist.unwrap();
    net.raw(2).storage_mut().persist(&p1).unwrap();
    net.raw(2).on_persisted(p1.token).unwrap();
    let p2 = second.persist.unwrap();
    net.raw(2).storage_mut().persist(&p2).unwrap();
    net.raw(2).on_persisted(p2.token).unwrap();
    // Durable, but the state machine has not restored the snapshot yet: entry 11 would
    // only wait in memory behind the restore.
    let third = net.raw(2).ready().unwrap();
    assert!(
        third.committed_entries.is_empty(),
        "entry 11 waits for the restore"
    );
    assert!(!net.raw(2).has_ready(), "nothing to hand out while restoring");
    net.raw(2).on_applied(10).unwrap();
    assert!(net.raw(2).has_ready());
    let fourth = net.raw(2).ready().unwrap();
    assert_eq!(fourth.committed_entries.len(), 1);
    assert_eq!(fourth.committed_entries[0].index, 11);
}

#[test]
fn snapshot_is_taken_only_at_an_applied_index() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let applied = net.node(1).applied_index();
    assert!(matches!(
        net.raw(1).snapshot_meta_at(applied + 1),
        Err(DriverError::IndexOutOfRange { .. })
    ));
    let meta = net.raw(1).snapshot_meta_at(applied).unwrap();
    assert_eq!(meta.index, applied);
    assert_eq!(meta.conf_state, ConfState::with_voters([1, 2, 3]));
}

#[test]
fn snapshot_temporarily_unavailable_is_retried() {
    // A storage that has no snapshot to give yet (it is being built).
    #[derive(Clone)]
    struct Building(raft_core::MemStorage, std::rc::Rc<std::cell::Cell<bool>>);
    impl LogStorage for Building {
        fn initial_state(&self) -> Result<raft_core::InitialState, raft_core::StorageError> {
            self.0.initial_state()
        }
        fn entries(&self, l: u64, h: u64, m: u64) -> Result<Vec<raft_core::Entry>, raft_core::StorageError> {
            self.0.entries(l, h, m)
        }
        fn term(&self, i: u64) -> Result<u64, raft_core::StorageError> {
            self.0.term(i)
        }
        fn first_index(&self) -> u64 {
            self.0.first_index()
        }
        fn last_index(&self) -> u64 {
            self.0.last_index()
        }
        fn snapshot_meta(&self) -> Result<SnapshotMeta, raft_core::StorageError> {
            if self.1.get() {
                self.0.snapshot_meta()
            } else {
                Err(raft_core::StorageError::SnapshotTemporarilyUnavailable)
            }
        }
    }
    let mut storage = raft_core::MemStorage::new_with_conf_state(ConfState::with_voters([1, 2]));
    let entries: Vec<raft_core::Entry> = (1..=5)
        .map(|i| raft_core::Entry::new(1, i, raft_core::EntryPayload::Normal(data("e"))))
        .collect();
    storage.append(&entries).unwrap();
    storage.set_hard_state(raft_core::HardState {
        term: 1,
        vote: Some(1),
        commit: 5,
    });
    storage
        .compact(SnapshotMeta {
            index: 5,
            term: 1,
            conf_state: ConfState::with_voters([1, 2]),
        })
        .unwrap();
    let ready_flag = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut cfg = common::config(1);
    cfg.heartbeat_tick = 1;
    let mut leader = raft_core::RawNode::new(cfg, Building(storage, ready_flag.clone()), 5).unwrap();
    leader.campaign().unwrap();
    let r = leader.ready().unwrap();
    let p = r.persist.unwrap();
    leader.storage_mut().0.persist(&p).unwrap();
    leader.on_persisted(p.token).unwrap();
    for m in p.messages {
        if m.kind() == "RequestVote" {
            leader
                .step(msg(
                    2,
                    1,
                    m.term,
                    MessageBody::VoteResponse(raft_core::VoteResponse {
                        pre_vote: false,
                        granted: true,
                    }),
                ))
                .unwrap();
        }
    }
    assert_eq!(leader.role(), raft_core::Role::Leader);
    // Node 2 is empty: it answers the probe with a rejection down to index 0.
    leader
        .step(msg(
            2,
            1,
            leader.term(),
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected: 5,
                hint_index: 0,
                hint_term: 0,
                round: 0,
            }),
        ))
        .unwrap();
    let out = leader.ready().unwrap();
    assert!(
        out.messages.iter().all(|m| m.kind() != "Snapshot"),
        "no snapshot to send yet"
    );
    ready_flag.set(true);
    let out = leader.ready().unwrap();
    assert!(
        out.messages.iter().any(|m| m.kind() == "Snapshot"),
        "sent once available"
    );
}

#[test]
fn compaction_keeps_the_configuration_for_restarts() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    let meta = net.compact(2);
    assert_eq!(meta.conf_state.voters.len(), 3);
    net.crash_restart(2);
    assert_eq!(net.raw(2).conf_state().voters.len(), 3);
    assert!(net.raw(2).campaign().is_ok());
}

#[test]
fn snapshot_reported_finished_waits_for_the_follower_answer() {
    let mut net = lagging_follower_behind_compaction();
    net.heal();
    net.tick(1, 1);
    net.stabilize_filtered(|m| m.kind() != "Snapshot");
    net.raw(1).report_snapshot(3, SnapshotStatus::Finished);
    let pr = net.raw(1).status().progress[&3];
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!(pr.next, 7, "resumes after the snapshot");
}
