//! Log replication: log matching, follower repair (Figure 7), the commit rule (Figure 8),
//! fast conflict back-off, asynchronous persistence, batching and the uncommitted limit.

mod common;

use common::{Network, config, data, msg, storage_with_terms};
use raft_core::{Append, AppendResponse, Entry, EntryPayload, HardState, MessageBody, Role};

fn with_term(mut s: raft_core::MemStorage, term: u64) -> raft_core::MemStorage {
    s.set_hard_state(HardState {
        term,
        vote: None,
        commit: 0,
    });
    s
}

#[test]
fn leader_replicates_entries_to_every_follower() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.propose_ok(1, "b");
    for id in 1..=3 {
        assert_eq!(
            net.node(id).applied_data(),
            vec![data("a"), data("b")],
            "node {id}"
        );
        assert_eq!(net.commit(id), 3);
    }
}

#[test]
fn new_leader_appends_an_empty_entry_of_its_term() {
    let mut net = Network::new(3);
    net.elect(1);
    let e = net.raw(1).entries(1, 2).unwrap();
    assert_eq!(e, vec![Entry::new(1, 1, EntryPayload::Empty)]);
    assert_eq!(net.commit(2), 1);
}

#[test]
fn commit_needs_a_quorum() {
    let mut net = Network::new(5);
    net.elect(1);
    net.isolate(4);
    net.isolate(5);
    let i = net.propose_ok(1, "with three");
    assert_eq!(net.commit(1), i, "three of five is a quorum");
    net.isolate(3);
    let j = net.propose_ok(1, "with two");
    assert_eq!(net.commit(1), i, "two of five is not: {j} stays uncommitted");
    net.heal();
    net.run_ticks(2);
    assert_eq!(net.commit(1), j);
}

#[test]
fn heartbeat_carries_commit_index() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(1).propose(data("x")).unwrap();
    // Followers get the entry, but the append announcing the new commit index is lost.
    net.stabilize_filtered(|m| {
        !(m.kind() == "Append" && matches!(&m.body, MessageBody::Append(a) if a.entries.is_empty()))
    });
    assert_eq!(net.commit(1), 2);
    assert_eq!(net.commit(2), 1);
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.commit(2), 2, "the heartbeat told follower 2");
}

#[test]
fn heartbeat_commit_never_exceeds_what_follower_matches() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.propose_ok(1, "x");
    net.heal();
    net.tick(1, 1);
    net.process(1);
    let beat = net
        .msgs
        .iter()
        .find_map(|m| match &m.body {
            MessageBody::Heartbeat(h) if m.to == 3 => Some(h.commit),
            _ => None,
        })
        .unwrap();
    assert_eq!(beat, 1, "node 3 only matches index 1");
}

#[test]
fn follower_rejects_append_whose_previous_entry_differs() {
    let mut net = Network::empty();
    net.add_node(2, storage_with_terms(&[1, 2, 3], &[1, 1]), config(2));
    let append = Append {
        prev_index: 2,
        prev_term: 2,
        entries: vec![],
        commit: 0,
    };
    net.raw(2)
        .step(msg(1, 2, 3, MessageBody::Append(append)))
        .unwrap();
    let out = net.collect();
    assert!(matches!(
        out[0].body,
        MessageBody::AppendResponse(AppendResponse::Rejected { rejected: 2, .. })
    ));
}

#[test]
fn follower_truncates_a_conflicting_suffix() {
    let mut net = Network::empty();
    net.add_node(2, storage_with_terms(&[1, 2, 3], &[1, 1, 1, 1]), config(2));
    let append = Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![Entry::new(2, 2, EntryPayload::Normal(data("new")))],
        commit: 0,
    };
    net.raw(2)
        .step(msg(1, 2, 2, MessageBody::Append(append)))
        .unwrap();
    net.collect();
    assert_eq!(net.log_terms(2), vec![1, 2]);
}

#[test]
fn duplicate_append_does_not_truncate_later_entries() {
    let mut net = Network::empty();
    net.add_node(2, storage_with_terms(&[1, 2, 3], &[1, 1, 1, 1]), config(2));
    let stale = Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![Entry::new(1, 2, EntryPayload::Normal(data("1-2")))],
        commit: 0,
    };
    net.raw(2).step(msg(1, 2, 1, MessageBody::Append(stale))).unwrap();
    let out = net.collect();
    assert_eq!(net.log_terms(2), vec![1, 1, 1, 1], "entries 3 and 4 stay");
    assert!(matches!(
        out[0].body,
        MessageBody::AppendResponse(AppendResponse::Accepted { index: 2 })
    ));
}

/// The follower logs of Figure 7 of the Raft paper, each repaired by a leader of term 8.
#[test]
fn figure_7_follower_logs_are_repaired() {
    let leader_log = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: Vec<(&str, Vec<u64>)> = vec![
        ("a", vec![1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", vec![1, 1, 1, 4]),
        ("c", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", vec![1, 1, 1, 4, 4, 4, 4]),
        ("f", vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, log) in followers {
        let mut net = Network::empty();
        net.add_node(
            1,
            with_term(storage_with_terms(&[1, 2, 3], &leader_log), 7),
            config(1),
        );
        net.add_node(2, with_term(storage_with_terms(&[1, 2, 3], &log), 7), config(2));
        net.add_node(
            3,
            with_term(storage_with_terms(&[1, 2, 3], &leader_log), 7),
            config(3),
        );
        net.elect(1);
        assert_eq!(net.term(1), 8);
        let mut expected = leader_log.clone();
        expected.push(8);
        assert_eq!(net.log_terms(2), expected, "follower ({name})");
        assert_eq!(net.commit(2), 11, "follower ({name})");
    }
}

#[test]
fn fast_backoff_skips_a_whole_conflicting_term() {
    let mut leader_log = vec![1];
    leader_log.extend(std::iter::repeat_n(3, 50));
    let mut follower_log = vec![1];
    follower_log.extend(std::iter::repeat_n(2, 50));
    let mut net = Network::empty();
    net.add_node(
        1,
        with_term(storage_with_terms(&[1, 2, 3], &leader_log), 3),
        config(1),
    );
    net.add_node(
        2,
        with_term(storage_with_terms(&[1, 2, 3], &follower_log), 3),
        config(2),
    );
    net.add_node(
        3,
        with_term(storage_with_terms(&[1, 2, 3], &leader_log), 3),
        config(3),
    );
    net.elect(1);
    let mut expected = leader_log.clone();
    expected.push(4);
    assert_eq!(net.log_terms(2), expected);
    // Count the rejections node 2 sent on the way.
    let mut net2 = Network::empty();
    net2.add_node(
        1,
        with_term(storage_with_terms(&[1, 2, 3], &leader_log), 3),
        config(1),
    );
    net2.add_node(
        2,
        with_term(storage_with_terms(&[1, 2, 3], &follower_log), 3),
        config(2),
    );
    net2.add_node(
        3,
        with_term(storage_with_terms(&[1, 2, 3], &leader_log), 3),
        config(3),
    );
    net2.raw(1).campaign().unwrap();
    let mut rejections = 0;
    for _ in 0..1000 {
        let out = net2.collect();
        if out.is_empty() {
            break;
        }
        rejections += out
            .iter()
            .filter(|m| {
                matches!(
                    m.body,
                    MessageBody::AppendResponse(AppendResponse::Rejected { .. })
                )
            })
            .count();
        for m in out {
            net2.deliver(m);
        }
    }
    assert_eq!(
        rejections, 1,
        "one round trip finds the divergence across 50 entries"
    );
}

fn append_from(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> raft_core::Message {
    msg(
        from,
        to,
        term,
        MessageBody::Append(Append {
            prev_index: prev.0,
            prev_term: prev.1,
            entries,
            commit,
        }),
    )
}

/// Hands a follower the leader's entries up to `upto` directly and returns its answer to
/// the leader, so a test controls exactly which entries reach whom.
fn replicate_prefix(net: &mut Network, leader: u64, to: u64, upto: u64) {
    let term = net.term(leader);
    let entries = net.raw(leader).entries(2, upto + 1).unwrap();
    let prev_term = net.raw(leader).term_at(1).unwrap();
    net.raw(to)
        .step(append_from(leader, to, term, (1, prev_term), entries, 1))
        .unwrap();
    net.process(to);
    let answers: Vec<_> = net.msgs.drain(..).filter(|m| m.to == leader).collect();
    for m in answers {
        net.raw(leader).step(m).unwrap();
    }
}

#[test]
fn leader_commits_only_entries_of_its_term_by_counting() {
    // Figure 8 (c): an entry of an older term on a majority is not committed by counting.
    let mut net = Network::empty();
    for id in 1..=3 {
        // Nodes 1 and 2 hold an entry of term 2 that node 3 lacks.
        let log: &[u64] = if id == 3 { &[1] } else { &[1, 2] };
        net.add_node(id, with_term(storage_with_terms(&[1, 2, 3], log), 3), config(id));
    }
    net.raw(1).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert_eq!(net.role(1), Role::Leader);
    // The leader (term 4) holds [1@1, 2@2, 3@4]; entry 2 reaches nodes 2 and 3, entry 3 no one.
    net.msgs.clear();
    replicate_prefix(&mut net, 1, 2, 2);
    replicate_prefix(&mut net, 1, 3, 2);
    assert_eq!(
        net.log_terms(3),
        vec![1, 2],
        "the term-2 entry is on all three nodes"
    );
    assert_eq!(net.commit(1), 0, "but it is not committed by counting replicas");
    net.stabilize();
    assert_eq!(
        net.commit(1),
        3,
        "it commits with the first entry of the leader's term"
    );
    net.assert_consistent_logs();
}

/// The full Figure 8 sequence with five servers: an entry of an old term replicated on a
/// majority is overwritten by a later leader, which is safe only because it never committed.
#[test]
fn figure_8_uncommitted_old_term_entry_may_be_overwritten() {
    let mut net = Network::new(5);
    // (a) S1 leads term 1 and replicates its entry 2 to S2 only.
    net.elect(1);
    net.partition(&[1, 2], &[3, 4, 5]);
    net.propose_ok(1, "s1-term1");
    assert_eq!(net.log_terms(2), vec![1, 1]);
    // (b) S1 crashes; S5 wins term 2 with S3 and S4; its entry 2 (term 2) goes nowhere.
    net.heal();
    net.isolate(1);
    net.isolate(2);
    net.raw(5).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert_eq!(net.role(5), Role::Leader);
    assert_eq!(net.log_terms(5), vec![1, 2]);
    // (c) S5 crashes; S1 restarts and wins term 3 with S2, S3 and S4 (it needs two rounds:
    // S3 and S4 already voted in term 2). It replicates its old entry 2 to S3 only.
    net.crash_restart(1);
    net.heal();
    net.isolate(5);
    net.raw(1).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    net.raw(1).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert_eq!(net.role(1), Role::Leader);
    assert_eq!(net.term(1), 3);
    net.msgs.clear();
    replicate_prefix(&mut net, 1, 2, 2);
    replicate_prefix(&mut net, 1, 3, 2);
    assert_eq!(
        net.log_terms(3),
        vec![1, 1],
        "S1, S2 and S3 hold entry 2 of term 1"
    );
    assert_eq!(net.commit(1), 1, "on a majority but not committed");
    // (d) S1 crashes; S5 comes back and wins term 4 (its last term 2 beats their term 1) and
    // overwrites entry 2 everywhere.
    net.heal();
    net.isolate(1);
    net.tick(5, 1);
    net.stabilize();
    assert_eq!(
        net.role(5),
        Role::Follower,
        "S5 learned of term 3 from the answers to its heartbeat"
    );
    net.campaign(5);
    assert_eq!(net.role(5), Role::Leader);
    for id in 2..=5 {
        assert_eq!(net.log_terms(id)[1], 2, "node {id} holds S5's entry 2");
    }
    net.heal();
    net.run_ticks(3);
    net.assert_consistent_logs();
    assert!(
        net.node(1).applied_data().is_empty(),
        "S1's old entry was never applied anywhere"
    );
}

#[test]
fn follower_acknowledges_only_after_persisting() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(1).propose(data("x")).unwrap();
    net.process(1);
    let append = net
        .msgs
        .drain(..)
        .find(|m| m.to == 2 && m.kind() == "Append")
        .unwrap();
    net.raw(2).step(append).unwrap();
    let ready = net.raw(2).ready().unwrap();
    assert!(ready.messages.is_empty(), "no acknowledgement before the write");
    let persist = ready.persist.unwrap();
    assert_eq!(persist.entries.len(), 1);
    assert!(matches!(
        persist.messages[0].body,
        MessageBody::AppendResponse(AppendResponse::Accepted { index: 2 })
    ));
}

#[test]
fn leader_sends_before_its_own_write_and_counts_itself_only_after() {
    let mut net = Network::new(3);
    net.elect(1);
    net.node_mut(1).manual_persist = true;
    net.raw(1).propose(data("x")).unwrap();
    net.process(1);
    assert_eq!(net.node(1).pending.len(), 1, "the leader's write is pending");
    assert_eq!(net.appends(1, 2).len(), 1, "but its appends already left");
    // Only node 2 answers: with the leader's own write pending there is no quorum.
    net.cut.insert((1, 3));
    net.stabilize();
    assert_eq!(net.commit(1), 1);
    net.persist_one(1);
    net.stabilize();
    assert_eq!(
        net.commit(1),
        2,
        "leader plus node 2 once the leader's write is durable"
    );
}

#[test]
fn committed_entries_wait_for_local_durability() {
    let mut net = Network::new(3);
    net.elect(1);
    net.node_mut(1).manual_persist = true;
    net.raw(1).propose(data("x")).unwrap();
    net.stabilize();
    assert_eq!(net.commit(1), 2, "both followers acknowledged: committed");
    assert!(
        net.node(1).applied_data().is_empty(),
        "not applied before it is durable here"
    );
    net.persist_one(1);
    net.stabilize();
    assert_eq!(net.node(1).applied_data(), vec![data("x")]);
}

#[test]
fn follower_refuses_proposals_with_a_leader_hint() {
    let mut net = Network::new(3);
    net.elect(2);
    match net.propose(1, "x") {
        Err(raft_core::ProposeError::NotLeader { leader }) => assert_eq!(leader, Some(2)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn proposals_before_one_ready_travel_in_one_append() {
    let mut net = Network::new(3);
    net.elect(1);
    for i in 0..10 {
        net.raw(1).propose(data(&format!("c{i}"))).unwrap();
    }
    net.process(1);
    let appends = net.appends(1, 2);
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].entries.len(), 10);
}

#[test]
fn append_messages_respect_the_byte_cap() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_append_bytes = 100;
        c
    });
    net.elect(1);
    for _ in 0..10 {
        // 16 bytes of overhead plus 40 of data: two entries per message.
        net.raw(1).propose(bytes::Bytes::from(vec![7u8; 40])).unwrap();
    }
    net.process(1);
    let sizes: Vec<usize> = net.appends(1, 2).iter().map(|a| a.entries.len()).collect();
    assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 10);
    net.stabilize();
    assert_eq!(net.node(3).applied_data().len(), 10);
}

#[test]
fn empty_proposal_is_an_empty_command() {
    let mut net = Network::new(3);
    net.elect(1);
    let i = net.propose_ok(1, "");
    assert_eq!(
        net.raw(1).entries(i, i + 1).unwrap()[0].payload,
        EntryPayload::Normal(bytes::Bytes::new()),
        "a command that serializes to nothing is still a command"
    );
    assert_eq!(net.node(2).applied_data(), vec![bytes::Bytes::new()]);
}

#[test]
fn stale_acknowledgement_does_not_regress_progress() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.propose_ok(1, "b");
    let before = net.raw(1).status().progress[&2].matched;
    net.raw(1)
        .step(msg(
            2,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 1 }),
        ))
        .unwrap();
    assert_eq!(net.raw(1).status().progress[&2].matched, before);
}

/// Proposes with `propose` until it is refused: how many were accepted, and why the next
/// was not.
fn propose_until_refused(
    mut propose: impl FnMut() -> Result<u64, raft_core::ProposeError>,
) -> (usize, raft_core::ProposeError) {
    let mut accepted = 0;
    loop {
        match propose() {
            Ok(_) => accepted += 1,
            Err(e) => return (accepted, e),
        }
    }
}

#[test]
fn proposals_beyond_the_uncommitted_limit_are_refused() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_uncommitted_bytes = 200;
        c
    });
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let (accepted, err) = propose_until_refused(|| net.raw(1).propose(bytes::Bytes::from(vec![0u8; 34])));
    assert_eq!(accepted, 4, "4 x 50 bytes fit in 200");
    assert!(
        matches!(err, raft_core::ProposeError::UncommittedLimit { limit: 200, .. }),
        "{err}"
    );
    assert!(
        net.raw(1).propose(bytes::Bytes::new()).is_ok(),
        "empty commands always pass"
    );
    // Once followers catch up, the budget is released.
    net.heal();
    net.stabilize();
    net.run_ticks(2);
    assert!(net.raw(1).propose(bytes::Bytes::from(vec![0u8; 34])).is_ok());
}

#[test]
fn a_large_proposal_is_accepted_when_nothing_is_uncommitted() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_uncommitted_bytes = 10;
        c
    });
    net.elect(1);
    assert!(net.raw(1).propose(bytes::Bytes::from(vec![0u8; 1000])).is_ok());
    assert!(net.raw(1).propose(bytes::Bytes::from(vec![0u8; 1])).is_err());
}

#[test]
fn apply_batches_respect_the_byte_limit() {
    let mut net = Network::with(&[1], &[], |id| {
        let mut c = config(id);
        c.max_apply_bytes = 120;
        c
    });
    net.elect(1);
    for _ in 0..6 {
        net.raw(1).propose(bytes::Bytes::from(vec![1u8; 44])).unwrap();
    }
    let mut batches = Vec::new();
    for _ in 0..20 {
        let mut ready = net.raw(1).ready().unwrap();
        if let Some(p) = ready.persist.take() {
            net.raw(1).storage_mut().persist(&p).unwrap();
            net.raw(1).on_persisted(p.token).unwrap();
        }
        if !ready.committed_entries.is_empty() {
            let last = ready.committed_entries.last().unwrap().index;
            batches.push(ready.committed_entries.len());
            net.raw(1).on_applied(last).unwrap();
        }
        if !net.raw(1).has_ready() {
            break;
        }
    }
    assert!(
        batches.iter().all(|&n| n <= 2),
        "batches of at most two 60-byte entries: {batches:?}"
    );
    assert_eq!(batches.iter().sum::<usize>(), 6, "six commands");
}

/// A driver's own records are replicated, committed and handed out in log order among the
/// commands, on every node and after a restart; they count against the uncommitted limit
/// as commands do, and only a leader takes them.
#[test]
fn internal_records_are_replicated_and_handed_out_in_order_like_commands() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_uncommitted_bytes = 200;
        c
    });
    net.elect(1);
    assert!(matches!(
        net.raw(2).propose_internal(data("x")),
        Err(raft_core::ProposeError::NotLeader { leader: Some(1) })
    ));
    let a = net.propose_ok(1, "a");
    let r = net.raw(1).propose_internal(data("session")).unwrap();
    net.stabilize();
    let b = net.propose_ok(1, "b");
    assert_eq!((a + 1, r + 1), (r, b));
    net.crash_restart(3);
    net.stabilize();
    let expected = vec![
        EntryPayload::Normal(data("a")),
        EntryPayload::Internal(data("session")),
        EntryPayload::Normal(data("b")),
    ];
    for id in 1..=3 {
        let handed: Vec<_> = net
            .node(id)
            .applied
            .iter()
            .filter(|e| !matches!(e.payload, EntryPayload::Empty))
            .map(|e| e.payload.clone())
            .collect();
        assert_eq!(handed, expected, "node {id}");
        assert_eq!(
            net.raw(id).entries(r, r + 1).unwrap()[0].payload,
            expected[1],
            "node {id}"
        );
    }
    // The uncommitted budget: 4 records of 50 bytes fit in 200, as 4 commands do.
    net.isolate(2);
    net.isolate(3);
    let (accepted, err) =
        propose_until_refused(|| net.raw(1).propose_internal(bytes::Bytes::from(vec![0u8; 34])));
    assert_eq!(accepted, 4);
    assert!(
        matches!(err, raft_core::ProposeError::UncommittedLimit { limit: 200, .. }),
        "{err}"
    );
}
