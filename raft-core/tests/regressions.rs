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
        .step(Message {
            from: 3,
            to: 2,
            term: 2,
            body: MessageBody::Snapshot(meta),
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
