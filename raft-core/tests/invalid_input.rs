//! Invalid input is a typed error (or an ignored stale message), never a panic, and has no
//! effect.

mod common;

use common::{Network, config, data, msg};
use raft_core::{
    Append, AppendResponse, ConfState, Config, DriverError, Entry, EntryPayload, HeartbeatResponse,
    MemStorage, MessageBody, RawNode, ReadError, RecoverError, SnapshotMeta, StepError,
};

fn append(prev: (u64, u64), entries: Vec<Entry>) -> MessageBody {
    MessageBody::Append(Append {
        prev_index: prev.0,
        prev_term: prev.1,
        entries,
        commit: 0,
    })
}

#[test]
fn message_for_another_node_is_refused() {
    let mut net = Network::new(3);
    let err = net
        .raw(1)
        .step(msg(2, 3, 1, MessageBody::TimeoutNow))
        .unwrap_err();
    assert!(matches!(err, StepError::WrongRecipient { to: 3, me: 1 }), "{err}");
}

#[test]
fn message_from_self_or_node_zero_is_refused() {
    let mut net = Network::new(3);
    assert!(matches!(
        net.raw(1).step(msg(1, 1, 1, MessageBody::TimeoutNow)),
        Err(StepError::Malformed { .. })
    ));
    assert!(matches!(
        net.raw(1).step(msg(0, 1, 1, MessageBody::TimeoutNow)),
        Err(StepError::Malformed { .. })
    ));
    assert_eq!(net.term(1), 0, "nothing was acted upon");
}

#[test]
fn message_with_term_zero_is_refused() {
    let mut net = Network::new(3);
    assert!(net.raw(1).step(msg(2, 1, 0, append((0, 0), vec![]))).is_err());
}

#[test]
fn append_with_a_gap_is_refused() {
    let mut net = Network::new(3);
    let entries = vec![
        Entry::new(1, 1, EntryPayload::Empty),
        Entry::new(1, 3, EntryPayload::Empty),
    ];
    let err = net
        .raw(2)
        .step(msg(1, 2, 1, append((0, 0), entries)))
        .unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
    assert_eq!(net.raw(2).last_index(), 0);
    assert_eq!(
        net.term(2),
        0,
        "the malformed message did not even change the term"
    );
}

#[test]
fn append_with_an_entry_term_above_the_message_term_is_refused() {
    let mut net = Network::new(3);
    let entries = vec![Entry::new(5, 1, EntryPayload::Empty)];
    assert!(matches!(
        net.raw(2).step(msg(1, 2, 1, append((0, 0), entries))),
        Err(StepError::Malformed { .. })
    ));
}

#[test]
fn append_with_decreasing_terms_is_refused() {
    let mut net = Network::new(3);
    let entries = vec![
        Entry::new(2, 1, EntryPayload::Empty),
        Entry::new(1, 2, EntryPayload::Empty),
    ];
    assert!(net.raw(2).step(msg(1, 2, 2, append((0, 0), entries))).is_err());
}

#[test]
fn append_trying_to_rewrite_committed_entries_changes_nothing() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    assert_eq!(net.commit(2), 2);
    // A message (from a buggy or forged leader of a later term) that would replace
    // committed entry 2 is answered with the commit index and otherwise ignored.
    let rewrite = MessageBody::Append(Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![Entry::new(3, 2, EntryPayload::Normal(data("forged")))],
        commit: 0,
    });
    net.raw(2).step(msg(3, 2, 3, rewrite)).unwrap();
    let out = net.collect();
    assert!(matches!(
        out.iter().find(|m| m.to == 3).unwrap().body,
        MessageBody::AppendResponse(AppendResponse::Accepted { index: 2 })
    ));
    assert_eq!(net.raw(2).term_at(2).unwrap(), 1);
    assert_eq!(net.node(2).applied_data(), vec![data("a")]);
}

#[test]
fn response_from_an_unknown_peer_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    let err = net
        .raw(1)
        .step(msg(
            9,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 1 }),
        ))
        .unwrap_err();
    assert!(matches!(err, StepError::UnknownPeer { id: 9 }));
}

#[test]
fn acknowledgement_beyond_the_leader_log_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(matches!(
        net.raw(1).step(msg(
            2,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Accepted { index: 99 })
        )),
        Err(StepError::Malformed { .. })
    ));
    assert_eq!(net.commit(1), 1);
}

#[test]
fn heartbeat_response_for_a_round_never_sent_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(
        net.raw(1)
            .step(msg(
                2,
                1,
                1,
                MessageBody::HeartbeatResponse(HeartbeatResponse { round: 1_000 })
            ))
            .is_err()
    );
}

#[test]
fn snapshot_at_index_zero_is_refused() {
    let mut net = Network::new(3);
    let meta = SnapshotMeta {
        index: 0,
        term: 1,
        conf_state: ConfState::default(),
    };
    assert!(
        net.raw(2)
            .step_snapshot(msg(1, 2, 1, MessageBody::Snapshot(Box::new(meta))))
            .is_err()
    );
}

#[test]
fn applied_beyond_what_was_handed_out_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(matches!(
        net.raw(1).on_applied(50),
        Err(DriverError::IndexOutOfRange { .. })
    ));
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let mut cfg: Config = config(1);
    cfg.heartbeat_tick = 20;
    let err = RawNode::new(cfg, MemStorage::new(), 0).err().unwrap();
    assert!(
        matches!(&err, RecoverError::Config(e) if e.field == "election_tick"),
        "{err}"
    );
}

#[test]
fn duplicate_read_context_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(1).read_index(7).unwrap();
    assert!(matches!(
        net.raw(1).read_index(7),
        Err(ReadError::DuplicateCtx { ctx: 7 })
    ));
}
