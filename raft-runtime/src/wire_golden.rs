//! Golden bytes of the wire encoding ([`WIRE_VERSION`](crate::WIRE_VERSION)): every
//! [`WireMessage`] shape, and the [`MemberInfo`](crate::MemberInfo) metadata that
//! configurations carry, encoded and compared with `tests/golden/wire-v<N>.hex`.
//!
//! Regenerate (only for a new version): `UPDATE_GOLDEN=1 cargo test -p raft-runtime --lib golden`.

use std::collections::BTreeSet;
use std::path::Path;

use raft_core::{AppendResponse, EntryPayload, MessageBody};

use crate::error::SessionError;
use crate::golden::{Golden, Section, samples};
use crate::member::MemberInfo;
use crate::transport::{ForwardError, WIRE_VERSION, WireMessage};

fn golden() -> Golden {
    Golden {
        format: "WireMessage (bincode standard over serde)",
        constant: "WIRE_VERSION in raft-runtime/src/transport.rs",
        version: WIRE_VERSION,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        stem: "wire",
        regenerate: "UPDATE_GOLDEN=1 cargo test -p raft-runtime --lib golden",
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

const MEMBER_IDS: [u64; 2] = [1, 300];

fn encoded() -> Vec<Section> {
    let mut sections: Vec<Section> = samples::wire_messages()
        .into_iter()
        .map(|(name, msg)| {
            let bytes = bincode::serde::encode_to_vec(&msg, config()).expect("encodes");
            (format!("wire message: {name}"), bytes)
        })
        .collect();
    for id in MEMBER_IDS {
        sections.push((
            format!("member info of node {id}"),
            samples::member_info(id).encode().to_vec(),
        ));
    }
    sections
}

#[test]
fn wire_golden_bytes() {
    let golden = golden().check(&encoded());
    let messages = samples::wire_messages();
    assert_eq!(golden.len(), messages.len() + MEMBER_IDS.len());
    for ((name, bytes), (_, msg)) in golden.iter().zip(&messages) {
        let (decoded, used): (WireMessage, usize) =
            bincode::serde::decode_from_slice(bytes, config()).unwrap_or_else(|e| panic!("[{name}]: {e}"));
        assert_eq!(used, bytes.len(), "[{name}] leaves bytes behind");
        assert_eq!(&decoded, msg, "[{name}] decodes to another value");
    }
    for ((name, bytes), id) in golden[messages.len()..].iter().zip(MEMBER_IDS) {
        let decoded: MemberInfo = crate::codec::decode(bytes).unwrap_or_else(|e| panic!("[{name}]: {e}"));
        assert_eq!(
            decoded,
            samples::member_info(id),
            "[{name}] decodes to another value"
        );
        assert_eq!(MemberInfo::decode(bytes), decoded);
    }
}

/// Each sample's variants, by name. The matches list every variant: a variant added to one
/// of these enums stops this from compiling until it is named here, and the test below
/// then fails until the samples (and so the golden bytes) cover it.
fn variants(msg: &WireMessage) -> Vec<&'static str> {
    let forward_error = |e: &ForwardError| match e {
        ForwardError::NotLeader { .. } => "ForwardError::NotLeader",
        ForwardError::Busy => "ForwardError::Busy",
        ForwardError::ShuttingDown => "ForwardError::ShuttingDown",
        ForwardError::Malformed(_) => "ForwardError::Malformed",
        ForwardError::Unknown(_) => "ForwardError::Unknown",
        ForwardError::Session(e) => match e {
            SessionError::NotEnabled => "SessionError::NotEnabled",
            SessionError::Expired { .. } => "SessionError::Expired",
            SessionError::Acknowledged { .. } => "SessionError::Acknowledged",
            SessionError::TooManyPending { .. } => "SessionError::TooManyPending",
            SessionError::TooManySessions => "SessionError::TooManySessions",
            SessionError::Malformed(_) => "SessionError::Malformed",
        },
    };
    match msg {
        WireMessage::Raft(m) => match &m.body {
            MessageBody::RequestVote(_) => vec!["RequestVote"],
            MessageBody::VoteResponse(_) => vec!["VoteResponse"],
            MessageBody::Append(a) => {
                let mut v = vec!["Append"];
                v.extend(a.entries.iter().map(|e| match &e.payload {
                    EntryPayload::Empty => "EntryPayload::Empty",
                    EntryPayload::Normal(_) => "EntryPayload::Normal",
                    EntryPayload::Membership(_) => "EntryPayload::Membership",
                    EntryPayload::Internal(_) => "EntryPayload::Internal",
                }));
                v
            }
            MessageBody::AppendResponse(AppendResponse::Accepted { .. }) => vec!["AppendResponse::Accepted"],
            MessageBody::AppendResponse(AppendResponse::Rejected { .. }) => vec!["AppendResponse::Rejected"],
            MessageBody::Heartbeat(_) => vec!["Heartbeat"],
            MessageBody::HeartbeatResponse(_) => vec!["HeartbeatResponse"],
            MessageBody::Snapshot(_) => vec!["Snapshot"],
            MessageBody::TimeoutNow => vec!["TimeoutNow"],
            MessageBody::ReadIndex(_) => vec!["ReadIndex"],
            MessageBody::ReadIndexResponse(_) => vec!["ReadIndexResponse"],
            MessageBody::Wake => vec!["Wake"],
        },
        WireMessage::Forward { .. } => vec!["Forward"],
        WireMessage::ForwardRecord { .. } => vec!["ForwardRecord"],
        WireMessage::ForwardReply { result: Ok(_), .. } => vec!["ForwardReply::Ok"],
        WireMessage::ForwardReply { result: Err(e), .. } => vec!["ForwardReply::Err", forward_error(e)],
    }
}

#[test]
fn the_samples_cover_every_variant() {
    let covered: BTreeSet<&str> = samples::wire_messages()
        .iter()
        .flat_map(|(_, m)| variants(m))
        .collect();
    let all = [
        "RequestVote",
        "VoteResponse",
        "Append",
        "EntryPayload::Empty",
        "EntryPayload::Normal",
        "EntryPayload::Membership",
        "EntryPayload::Internal",
        "AppendResponse::Accepted",
        "AppendResponse::Rejected",
        "Heartbeat",
        "HeartbeatResponse",
        "Snapshot",
        "TimeoutNow",
        "ReadIndex",
        "ReadIndexResponse",
        "Wake",
        "Forward",
        "ForwardReply::Ok",
        "ForwardReply::Err",
        "ForwardError::NotLeader",
        "ForwardError::Busy",
        "ForwardError::ShuttingDown",
        "ForwardError::Malformed",
        "ForwardError::Unknown",
        "ForwardRecord",
        "SessionError::NotEnabled",
        "SessionError::Expired",
        "SessionError::Acknowledged",
        "SessionError::TooManyPending",
        "SessionError::TooManySessions",
        "SessionError::Malformed",
    ];
    let missing: Vec<_> = all.iter().filter(|v| !covered.contains(*v)).collect();
    assert!(missing.is_empty(), "no sample of {missing:?}");
    let joint = samples::joint_conf_state();
    assert!(joint.is_joint() && !joint.learners.is_empty() && !joint.learners_next.is_empty());
    assert!(!joint.node_meta.is_empty() && !joint.removed.is_empty() && joint.auto_leave);
}
