//! Golden bytes of the stream formats ([`STREAM_VERSION`]): the greetings, a frame of each
//! [`WireMessage`] shape, a frame batching several messages, and the snapshot stream's
//! announcement, data section (data frames and the end frame) and replies, encoded and
//! compared with `tests/golden/streams-v<N>.hex`, then decoded back with the transport's
//! decoders.
//!
//! Regenerate (only for a new version):
//! `UPDATE_GOLDEN=1 cargo test -p raft-transport-quic --lib golden`.

use std::path::Path;

use bytes::Bytes;
use raft_core::{Message, MessageBody};
use raft_runtime::golden::{Golden, Section, samples};
use raft_runtime::{GroupId, WireMessage};

use crate::codec::{
    FrameDecoder, FrameEncoder, MAX_CONTROL_FRAME, MESSAGE_MAGIC, SNAPSHOT_MAGIC, STREAM_VERSION,
    SnapshotDataDecoder, SnapshotHeader, SnapshotReply, decode_batch, decode_control, decode_greeting,
    decode_snapshot_greeting, encode_control, encode_data_prefix, encode_end_frame, encode_greeting,
};

fn golden() -> Golden {
    Golden {
        format: "the QUIC streams (greetings, frames, snapshot control values and data)",
        constant: "STREAM_VERSION in raft-transport-quic/src/codec.rs",
        version: u32::from(STREAM_VERSION),
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        stem: "streams",
        regenerate: "UPDATE_GOLDEN=1 cargo test -p raft-transport-quic --lib golden",
    }
}

const INCARNATION: u64 = 0x0123_4567_89ab_cdef;
const MAX_FRAME: usize = 1 << 20;

/// What one golden section holds.
#[derive(Clone, Debug, PartialEq)]
enum Unit {
    MessageGreeting(u64),
    SnapshotGreeting,
    /// One message frame of a group, length prefix included.
    Frame(GroupId, Vec<WireMessage>),
    Header(SnapshotHeader),
    /// The data section of a snapshot stream carrying these data frames, then its end
    /// frame.
    SnapshotData(Vec<Vec<u8>>),
    Reply(SnapshotReply),
}

fn units() -> Vec<(String, Unit)> {
    let mut units = vec![(
        "message stream greeting".to_string(),
        Unit::MessageGreeting(INCARNATION),
    )];
    let messages = samples::wire_messages();
    for (name, msg) in &messages {
        units.push((format!("frame: {name}"), Unit::Frame(0, vec![msg.clone()])));
    }
    let batch: Vec<WireMessage> = messages
        .iter()
        .filter(|(name, _)| ["heartbeat", "forward", "timeout now"].contains(&name.as_str()))
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(batch.len(), 3);
    units.push((
        "frame: a batch of three messages".into(),
        Unit::Frame(0, batch.clone()),
    ));
    units.push((
        "frame: the same batch of group 300".into(),
        Unit::Frame(300, batch.clone()),
    ));
    units.push((
        "frame: the same batch of group 2^64 - 1".into(),
        Unit::Frame(u64::MAX, batch),
    ));
    units.push(("snapshot stream greeting".into(), Unit::SnapshotGreeting));
    units.push((
        "snapshot announcement".into(),
        Unit::Header(SnapshotHeader {
            group: 300,
            message: Message {
                from: 1,
                to: 4,
                term: 309,
                body: MessageBody::Snapshot(Box::new(samples::snapshot_meta(70_006, 309))),
            },
        }),
    ));
    units.push((
        "snapshot data: two data frames and the end frame".into(),
        Unit::SnapshotData(vec![b"a snapshot's ".to_vec(), b"bytes".to_vec()]),
    ));
    units.push((
        "snapshot data: an empty snapshot (the end frame alone)".into(),
        Unit::SnapshotData(Vec::new()),
    ));
    for reply in [
        SnapshotReply::Accept,
        SnapshotReply::Done,
        SnapshotReply::Refused {
            reason: "too large".into(),
        },
    ] {
        // Every variant, and a new one stops this from compiling until it is named here.
        let name = match reply {
            SnapshotReply::Accept => "snapshot reply: accept",
            SnapshotReply::Done => "snapshot reply: done",
            SnapshotReply::Refused { .. } => "snapshot reply: refused",
        };
        units.push((name.into(), Unit::Reply(reply)));
    }
    units
}

fn encode(unit: &Unit) -> Vec<u8> {
    match unit {
        Unit::MessageGreeting(incarnation) => encode_greeting(MESSAGE_MAGIC, *incarnation).to_vec(),
        Unit::SnapshotGreeting => SNAPSHOT_MAGIC.to_vec(),
        Unit::Frame(group, batch) => {
            let mut encoder = FrameEncoder::new(MAX_FRAME, MAX_FRAME);
            for msg in batch {
                encoder.push(*group, msg).expect("a sample fits a frame");
            }
            encoder.take().concat()
        }
        Unit::Header(header) => encode_control(header).to_vec(),
        Unit::SnapshotData(frames) => {
            let mut out = Vec::new();
            for frame in frames {
                out.extend(encode_data_prefix(frame.len() as u32));
                out.extend(frame);
            }
            let data = frames.concat();
            out.extend(encode_end_frame(data.len() as u64, crc32c::crc32c(&data)));
            out
        }
        Unit::Reply(reply) => encode_control(reply).to_vec(),
    }
}

/// Decodes a section as what `like` is, with the transport's decoders.
fn decode(bytes: &[u8], like: &Unit) -> Unit {
    let frame = || {
        let mut decoder = FrameDecoder::new(MAX_FRAME.max(MAX_CONTROL_FRAME));
        decoder.extend(Bytes::copy_from_slice(bytes));
        let frame = decoder
            .next_frame()
            .expect("a valid frame")
            .expect("a whole frame");
        assert!(decoder.is_empty(), "the section is one frame");
        frame
    };
    match like {
        Unit::MessageGreeting(_) => {
            Unit::MessageGreeting(decode_greeting(bytes.try_into().expect("a greeting's length")).unwrap())
        }
        Unit::SnapshotGreeting => {
            decode_snapshot_greeting(bytes.try_into().expect("four bytes")).unwrap();
            Unit::SnapshotGreeting
        }
        Unit::Frame(..) => {
            let (group, batch) = decode_batch(&frame()).unwrap();
            Unit::Frame(group, batch)
        }
        Unit::Header(_) => Unit::Header(decode_control(&frame()).unwrap()),
        Unit::SnapshotData(_) => {
            // Whole, each frame's data comes out in one piece.
            let mut decoder = SnapshotDataDecoder::new(u64::MAX);
            let mut input = Bytes::copy_from_slice(bytes);
            let mut frames = Vec::new();
            while let Some(data) = decoder.decode(&mut input, usize::MAX).unwrap() {
                frames.push(data.to_vec());
            }
            decoder.finish().expect("a complete, intact snapshot");
            Unit::SnapshotData(frames)
        }
        Unit::Reply(_) => Unit::Reply(decode_control(&frame()).unwrap()),
    }
}

#[test]
fn stream_golden_bytes() {
    let units = units();
    let encoded: Vec<Section> = units
        .iter()
        .map(|(name, unit)| (name.clone(), encode(unit)))
        .collect();
    let golden = golden().check(&encoded);
    assert_eq!(golden.len(), units.len());
    for ((name, bytes), (_, unit)) in golden.iter().zip(&units) {
        assert_eq!(&decode(bytes, unit), unit, "[{name}] decodes to another value");
    }
}
