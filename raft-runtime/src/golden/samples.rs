//! Fixed values of every persisted or transmitted raft-core type, for the format tests.
//!
//! Every field holds a value of its own (no two fields of a type agree, and numbers that
//! bincode's variable-length integers encode in one, three, five and nine bytes all occur),
//! so that reordering fields or changing an integer's width changes the bytes.
//!
//! The golden files of every format hold these values: changing one looks exactly like a
//! format change to the tests, so leave them be. A new variant of a type they cover is a
//! format change anyway; its sample goes with the version bump.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::{
    Append, AppendResponse, ConfState, Entry, EntryPayload, HardState, Heartbeat, HeartbeatResponse, Message,
    MessageBody, ReadIndexRequest, ReadIndexResponse, RequestVote, SnapshotMeta, VoteResponse,
};

use crate::error::SessionError;
use crate::member::MemberInfo;
use crate::transport::{ForwardError, WireMessage};

/// A member's metadata as the runtime stores it in a configuration.
pub fn member_info(id: u64) -> MemberInfo {
    MemberInfo::new(format!("10.0.0.{id}:7000")).with("zone", format!("z{}", id % 3))
}

/// A joint configuration with learners, learners to be, metadata and removed ids.
pub fn joint_conf_state() -> ConfState {
    let ids = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
    ConfState {
        voters: ids(&[1, 2, 300]),
        learners: ids(&[4]),
        voters_outgoing: ids(&[1, 2, 5]),
        learners_next: ids(&[5]),
        auto_leave: true,
        node_meta: [1, 2, 300, 4, 5]
            .into_iter()
            .map(|id| (id, member_info(id).encode()))
            .collect::<BTreeMap<u64, Bytes>>(),
        removed: ids(&[70_000, 6]),
    }
}

/// A plain configuration: three voters and a learner, no joint half.
pub fn plain_conf_state() -> ConfState {
    ConfState::with_voters([1, 2, 3]).and_learners([9])
}

/// Snapshot metadata at index `index` and term `term` with the joint configuration.
pub fn snapshot_meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf_state: joint_conf_state(),
    }
}

/// A hard state with a vote.
pub fn hard_state() -> HardState {
    HardState {
        term: 300,
        vote: Some(2),
        commit: 70_000,
    }
}

/// One entry of each kind, consecutive from `first` in term `term`.
pub fn entries(first: u64, term: u64) -> Vec<Entry> {
    vec![
        Entry::new(term, first, EntryPayload::Empty),
        Entry::new(
            term,
            first + 1,
            EntryPayload::Normal(Bytes::from_static(b"set x = 1")),
        ),
        Entry::new(
            term,
            first + 2,
            EntryPayload::Membership(Box::new(joint_conf_state())),
        ),
        Entry::new(
            term,
            first + 3,
            EntryPayload::Membership(Box::new(plain_conf_state())),
        ),
        Entry::new(
            term,
            first + 4,
            EntryPayload::Internal(Bytes::from_static(b"a record of the runtime's own")),
        ),
    ]
}

fn raft(from: u64, to: u64, term: u64, body: MessageBody) -> WireMessage {
    WireMessage::Raft(Message { from, to, term, body })
}

/// Every [`WireMessage`] variant, every [`MessageBody`] variant and every
/// [`ForwardError`] variant, named.
pub fn wire_messages() -> Vec<(String, WireMessage)> {
    let messages = vec![
        (
            "request pre-vote",
            raft(
                1,
                2,
                301,
                MessageBody::RequestVote(RequestVote {
                    pre_vote: true,
                    last_index: 70_001,
                    last_term: 299,
                    leader_transfer: false,
                }),
            ),
        ),
        (
            "request vote for a leader transfer",
            raft(
                2,
                1,
                302,
                MessageBody::RequestVote(RequestVote {
                    pre_vote: false,
                    last_index: 70_002,
                    last_term: 300,
                    leader_transfer: true,
                }),
            ),
        ),
        (
            "vote response",
            raft(
                3,
                1,
                303,
                MessageBody::VoteResponse(VoteResponse {
                    pre_vote: true,
                    granted: false,
                }),
            ),
        ),
        (
            "append with one entry of each kind",
            raft(
                1,
                3,
                304,
                MessageBody::Append(Append {
                    prev_index: 69_999,
                    prev_term: 298,
                    entries: entries(70_000, 304),
                    commit: 69_990,
                }),
            ),
        ),
        (
            "append response accepted",
            raft(
                3,
                1,
                305,
                MessageBody::AppendResponse(AppendResponse::Accepted { index: 70_003 }),
            ),
        ),
        (
            "append response rejected",
            raft(
                3,
                1,
                306,
                MessageBody::AppendResponse(AppendResponse::Rejected {
                    rejected: 70_004,
                    hint_index: 65_000,
                    hint_term: 250,
                    round: 5_000_000_000,
                }),
            ),
        ),
        (
            "heartbeat",
            raft(
                1,
                2,
                307,
                MessageBody::Heartbeat(Heartbeat {
                    commit: 70_005,
                    round: 42,
                    quiesce: false,
                }),
            ),
        ),
        (
            "heartbeat response",
            raft(
                2,
                1,
                308,
                MessageBody::HeartbeatResponse(HeartbeatResponse { round: 43 }),
            ),
        ),
        (
            "snapshot",
            raft(
                1,
                4,
                309,
                MessageBody::Snapshot(Box::new(snapshot_meta(70_006, 309))),
            ),
        ),
        ("timeout now", raft(1, 2, 310, MessageBody::TimeoutNow)),
        (
            "read index",
            raft(
                2,
                1,
                311,
                MessageBody::ReadIndex(ReadIndexRequest { ctx: u64::MAX }),
            ),
        ),
        (
            "read index response with an index",
            raft(
                1,
                2,
                312,
                MessageBody::ReadIndexResponse(ReadIndexResponse {
                    ctx: 77,
                    index: Some(70_007),
                }),
            ),
        ),
        (
            "read index response refused",
            raft(
                1,
                2,
                313,
                MessageBody::ReadIndexResponse(ReadIndexResponse { ctx: 78, index: None }),
            ),
        ),
        (
            "heartbeat that quiesces",
            raft(
                1,
                3,
                314,
                MessageBody::Heartbeat(Heartbeat {
                    commit: 70_008,
                    round: 44,
                    quiesce: true,
                }),
            ),
        ),
        ("wake", raft(3, 1, 314, MessageBody::Wake)),
        (
            "forward",
            WireMessage::Forward {
                id: 1_000,
                command: Bytes::from_static(b"incr 5"),
            },
        ),
        (
            "forward reply ok",
            WireMessage::ForwardReply {
                id: 1_001,
                result: Ok(Bytes::from_static(b"6")),
            },
        ),
        (
            "forward reply not leader, hint",
            WireMessage::ForwardReply {
                id: 1_002,
                result: Err(ForwardError::NotLeader { leader: Some(3) }),
            },
        ),
        (
            "forward reply not leader, no hint",
            WireMessage::ForwardReply {
                id: 1_003,
                result: Err(ForwardError::NotLeader { leader: None }),
            },
        ),
        (
            "forward reply busy",
            WireMessage::ForwardReply {
                id: 1_004,
                result: Err(ForwardError::Busy),
            },
        ),
        (
            "forward reply shutting down",
            WireMessage::ForwardReply {
                id: 1_005,
                result: Err(ForwardError::ShuttingDown),
            },
        ),
        (
            "forward reply malformed",
            WireMessage::ForwardReply {
                id: 1_006,
                result: Err(ForwardError::Malformed("bad command".into())),
            },
        ),
        (
            "forward reply unknown",
            WireMessage::ForwardReply {
                id: 1_007,
                result: Err(ForwardError::Unknown("leadership lost".into())),
            },
        ),
        (
            "forward record",
            WireMessage::ForwardRecord {
                id: 1_008,
                record: Bytes::from_static(b"\x01\0\0\0\0\0\0\0\0\x01session command"),
            },
        ),
    ];
    let session_errors = [
        SessionError::NotEnabled,
        SessionError::Expired { session: 70_001 },
        SessionError::Acknowledged {
            session: 70_002,
            seq: 300,
            acked: 301,
        },
        SessionError::TooManyPending { session: 70_003 },
        SessionError::TooManySessions,
        SessionError::Malformed("short record".into()),
    ];
    let messages = messages.into_iter().map(|(name, m)| (name.to_string(), m)).chain(
        session_errors.into_iter().zip(1_009u64..).map(|(e, id)| {
            (
                format!("forward reply session {e:?}"),
                WireMessage::ForwardReply {
                    id,
                    result: Err(ForwardError::Session(e)),
                },
            )
        }),
    );
    messages.collect()
}
