//! Fuzzing harnesses and their allocation meter. **Not a stable API**: hidden from the
//! documentation, it may change or go away in any release.
//!
//! A harness takes arbitrary bytes and asserts what must hold for every input; a panic is a
//! finding. The cargo-fuzz target in `raft-transport-quic/fuzz/` calls [`frame_codec`], and
//! so does the replay test `tests/fuzz_seeds.rs`, which runs every file of
//! `fuzz/seeds/frame_codec/` on the stable toolchain.
//!
//! Allocation is measured by [`CountingAlloc`]: a binary that installs it as its global
//! allocator lets [`measure`] report how far the current thread's live allocations rose
//! while a closure ran. Without it, allocation bounds are not checked.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use raft_core::{
    Append, ConfState, Entry, EntryPayload, Heartbeat, HeartbeatResponse, Message, MessageBody, SnapshotMeta,
};
use raft_runtime::{ForwardError, WireMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{
    DATA_PREFIX_LEN, END_FRAME_LEN, Frame, FrameDecoder, FrameEncoder, FrameError, GREETING_LEN,
    MAX_CONTROL_FRAME, MAX_DATA_FRAME, MAX_FRAME_LIMIT, MESSAGE_MAGIC, SnapshotDataDecoder, SnapshotHeader,
    SnapshotReply, decode_batch, decode_control, decode_greeting, encode_control, encode_data_prefix,
    encode_end_frame, encode_greeting,
};

/// A global allocator over [`System`] that keeps, per thread, the bytes allocated and not
/// yet freed, and their peak. Install it with `#[global_allocator]` in a fuzz target or a
/// test binary; [`measure`] reads it.
///
/// Memory freed on another thread than the one that allocated it skews both threads'
/// counts: measure only closures that keep their allocations on their own thread.
#[derive(Debug, Default)]
pub struct CountingAlloc;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // The cells are const-initialised and have no destructor, so reading them never
    // allocates; `try_with` skips the frees of a thread being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping only touches thread-local cells and never
// allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        record(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

/// Runs `f` and returns its result with the peak, in bytes, of the current thread's live
/// allocations above their level when `f` started; `None` unless [`CountingAlloc`] is the
/// global allocator.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get).saturating_sub(start);
    let installed = INSTALLED.load(Ordering::Relaxed);
    (result, installed.then(|| usize::try_from(peak).unwrap_or(0)))
}

/// What decoding `len` bytes may allocate: 64 bytes per input byte (the decoders give
/// bincode a byte limit of at most 32 times the bytes left, and a round trip holds the
/// input, the decoded values and their encoding at once), plus 4 MiB for serde's up-front
/// room for sequences (at most 1 MiB per sequence being decoded) and fixed costs. Nothing
/// in it depends on a length the input claims.
pub fn decode_allowance(len: usize) -> usize {
    len.saturating_mul(64).saturating_add(4 << 20)
}

/// The frame limits the stream mode of [`frame_codec`] picks from.
const MAX_FRAMES: [usize; 4] = [64, 1 << 10, 64 << 10, 16 << 20];

/// The target `frame_codec`: what a node does with bytes a peer sends on a message or
/// snapshot stream, before anything reaches the runtime.
///
/// The first byte picks the decoder, the rest is its input:
///
/// - `0`: a message stream. The next byte picks the maximum frame size (64 B to 16 MiB)
///   and how the stream is cut into chunks (deterministically, from 1 byte to 4 KiB at a
///   time); the rest is the stream, fed chunk by chunk to a `FrameDecoder`, every frame
///   decoded with `decode_batch`, until an error (which closes a real connection).
/// - `1`: one message frame's payload, decoded with `decode_batch`.
/// - `2`: a snapshot announcement frame payload, decoded with `decode_control`.
/// - `3`: a snapshot reply frame payload, decoded with `decode_control`.
/// - `4`: a message stream greeting, decoded with `decode_greeting`.
/// - `5`: the data section of a snapshot stream (data frames and the end frame). The next
///   byte picks the receiver's snapshot size limit (0 B to unlimited), how the stream is cut
///   into chunks and how much data the receiver takes at a time; the rest is the stream,
///   fed to a `SnapshotDataDecoder` until an error or its end.
///
/// Properties: no panic; errors are values; a frame longer than the limit is refused from
/// its length prefix (the decoder never holds more than one frame's worth of bytes beyond
/// the chunk just read); allocation stays within [`decode_allowance`] of the input; every
/// value decoded, encoded again, decodes to the same value. For snapshot data: no more
/// data is passed on than the size limit, nor more at once than asked; a stream accepted
/// as complete ends with an end frame giving the length and CRC-32C of exactly the data
/// passed on, and that data, encoded again, is accepted again.
pub fn frame_codec(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let ((), peak) = measure(|| match selector % MODES {
        0 => message_stream(input),
        1 => batch_payload(input),
        2 => control_payload::<SnapshotHeader>(input),
        3 => control_payload::<SnapshotReply>(input),
        4 => greeting(input),
        _ => snapshot_data(input),
    });
    if let Some(peak) = peak {
        let allowance = decode_allowance(input.len());
        assert!(
            peak <= allowance,
            "decoding {} bytes (mode {}) allocated {peak} bytes, more than the allowance of {allowance}",
            input.len(),
            selector % MODES
        );
    }
}

/// The number of modes of [`frame_codec`].
const MODES: u8 = 6;

/// The snapshot size limits the snapshot data mode of [`frame_codec`] picks from.
const SNAPSHOT_LIMITS: [u64; 4] = [0, 100, 64 << 10, u64::MAX];

fn snapshot_data(input: &[u8]) {
    let Some((&params, mut stream)) = input.split_first() else {
        return;
    };
    let limit = SNAPSHOT_LIMITS[usize::from(params & 3)];
    let scale = 1usize << ((params >> 2) % 13);
    let mut decoder = SnapshotDataDecoder::new(limit);
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut step = 0usize;
    while !stream.is_empty() {
        step += 1;
        let len = (1 + (step * 7919) % scale).min(stream.len());
        let (chunk, rest) = stream.split_at(len);
        stream = rest;
        let mut piece = Bytes::copy_from_slice(chunk);
        loop {
            let max = 1 + (step * 104_729 + out.len()) % scale;
            let before = piece.len();
            let Ok(decoded) = decoder.decode(&mut piece, max) else {
                return;
            };
            consumed += before - piece.len();
            let Some(data) = decoded else {
                assert!(piece.is_empty(), "stopped with input left");
                break;
            };
            assert!(
                !data.is_empty() && data.len() <= max,
                "{} bytes of data, asked {max}",
                data.len()
            );
            out.extend_from_slice(&data);
            assert!(out.len() as u64 <= limit, "more data than the limit");
        }
    }
    assert_eq!(decoder.received(), out.len() as u64);
    if decoder.finish().is_err() {
        return;
    }
    // Accepted: the last bytes were the end frame, and it describes the data exactly.
    let whole = &input[1..];
    assert_eq!(consumed, whole.len());
    let end = &whole[whole.len() - END_FRAME_LEN..];
    assert_eq!(end[..DATA_PREFIX_LEN], [0; DATA_PREFIX_LEN]);
    assert_eq!(end[DATA_PREFIX_LEN..12], (out.len() as u64).to_le_bytes());
    assert_eq!(end[12..], crc32c::crc32c(&out).to_le_bytes());
    let again = snapshot_data_section(&out, MAX_DATA_FRAME);
    let mut decoder = SnapshotDataDecoder::new(limit);
    let mut input = Bytes::from(again);
    let mut total = 0;
    while let Some(data) = decoder.decode(&mut input, usize::MAX).expect("own data decodes") {
        total += data.len();
    }
    assert!(
        decoder.finish().is_ok() && total == out.len(),
        "own data is accepted"
    );
}

/// The data section of a snapshot stream carrying `data` in frames of at most `frame`
/// bytes.
fn snapshot_data_section(data: &[u8], frame: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / frame.max(1) * DATA_PREFIX_LEN + 32);
    for piece in data.chunks(frame.max(1)) {
        let len = u32::try_from(piece.len()).expect("frames fit a u32");
        out.extend(encode_data_prefix(len));
        out.extend(piece);
    }
    out.extend(encode_end_frame(data.len() as u64, crc32c::crc32c(data)));
    out
}

fn message_stream(input: &[u8]) {
    let Some((&params, mut stream)) = input.split_first() else {
        return;
    };
    let max_frame = MAX_FRAMES[usize::from(params & 3)];
    // Chunk lengths cycle through a fixed pattern scaled by the parameter byte.
    let scale = 1usize << ((params >> 2) % 13);
    let mut decoder = FrameDecoder::new(max_frame);
    let mut step = 0usize;
    while !stream.is_empty() {
        step += 1;
        let len = (1 + (step * 7919) % scale).min(stream.len());
        let (chunk, rest) = stream.split_at(len);
        stream = rest;
        decoder.extend(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max_frame, "a frame over the limit");
                    if check_batch(&frame).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(FrameError::Oversize { len, max }) => {
                    assert!(len > max && max == max_frame);
                    return;
                }
                Err(_) => return,
            }
        }
        // Whole frames were taken: what is left is less than one frame.
        assert!(
            decoder.buffered() < 4 + max_frame,
            "the decoder holds {} bytes with a frame limit of {max_frame}",
            decoder.buffered()
        );
    }
}

fn batch_payload(input: &[u8]) {
    let _ = check_batch(&Frame::from(input));
}

/// Decodes a batch; if it decodes, checks that it survives an encode and decode.
fn check_batch(frame: &Frame) -> Result<(), FrameError> {
    let (group, batch) = decode_batch(frame)?;
    assert!(!batch.is_empty(), "an empty batch decoded");
    let mut encoder = FrameEncoder::new(MAX_FRAME_LIMIT, MAX_FRAME_LIMIT);
    for message in &batch {
        encoder
            .push(group, message)
            .unwrap_or_else(|e| panic!("a decoded message does not encode: {e}"));
    }
    let mut decoder = FrameDecoder::new(MAX_FRAME_LIMIT);
    for chunk in encoder.take() {
        decoder.extend(chunk);
    }
    let mut again = Vec::new();
    while let Some(frame) = decoder.next_frame().expect("own frames are well formed") {
        let (same, messages) = decode_batch(&frame).expect("own frames decode");
        assert_eq!(same, group, "a group id changed in a round trip");
        again.extend(messages);
    }
    assert!(decoder.is_empty(), "a partial frame left after own frames");
    assert_eq!(again, batch, "a batch changed in a round trip");
    Ok(())
}

fn control_payload<T>(input: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = decode_control::<T>(&Frame::from(input)) else {
        return;
    };
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    decoder.extend(encode_control(&value));
    let frame = decoder
        .next_frame()
        .expect("own control frames are well formed")
        .expect("a whole frame");
    assert!(decoder.is_empty());
    assert_eq!(
        decode_control::<T>(&frame).expect("own control frames decode"),
        value,
        "a control value changed in a round trip"
    );
}

fn greeting(input: &[u8]) {
    let Some(bytes) = input.get(..GREETING_LEN) else {
        return;
    };
    let bytes: &[u8; GREETING_LEN] = bytes.try_into().expect("a greeting's length");
    match decode_greeting(bytes) {
        Ok(incarnation) => assert_eq!(&encode_greeting(MESSAGE_MAGIC, incarnation), bytes),
        Err(FrameError::BadGreeting(magic)) => {
            assert_eq!(magic, bytes[..4]);
            assert!(magic[..3] != MESSAGE_MAGIC[..3] || !magic[3].is_ascii_digit());
        }
        Err(FrameError::UnsupportedVersion { found, expected }) => {
            assert_eq!(bytes[..3], MESSAGE_MAGIC[..3]);
            assert_eq!(bytes[3], b'0' + found);
            assert_ne!(found, expected);
        }
        Err(e) => panic!("unexpected greeting error {e}"),
    }
}

/// Valid inputs for every mode of [`frame_codec`], named, for the seed corpus.
pub fn sample_inputs() -> Vec<(String, Vec<u8>)> {
    let messages = sample_messages();
    let mut out = Vec::new();
    let frames = |group: u64, batch: &[WireMessage], max_frame: usize| {
        let mut encoder = FrameEncoder::new(max_frame, max_frame);
        for message in batch {
            encoder.push(group, message).expect("samples fit");
        }
        encoder.take().concat()
    };
    // Group ids of each length their encoding takes.
    let groups = [0, 250, 251, 1 << 16, 1 << 32, u64::MAX];
    // Whole streams: a greeting is read separately, so a stream is frames only.
    for (params, name) in [
        (0x01, "stream-1k-bytewise"),
        (0x2e, "stream-64k-chunks"),
        (0x33, "stream-16m"),
    ] {
        let max_frame = MAX_FRAMES[usize::from(params & 3)];
        let mut input = vec![0, params];
        for (batch, &group) in messages.chunks(3).zip(groups.iter().cycle()) {
            input.extend(frames(group, batch, max_frame));
        }
        out.push((name.to_string(), input));
    }
    let mut oversize = vec![0, 0x00];
    oversize.extend(65u32.to_le_bytes());
    oversize.extend([0; 65]);
    out.push(("stream-oversize".to_string(), oversize));
    for (i, message) in messages.iter().enumerate() {
        let mut input = vec![1];
        let group = groups[i % groups.len()];
        input.extend(&frames(group, std::slice::from_ref(message), MAX_FRAME_LIMIT)[4..]);
        out.push((format!("batch-{i}"), input));
    }
    let header = SnapshotHeader {
        group: 7,
        message: snapshot_message(),
    };
    let mut input = vec![2];
    input.extend(&encode_control(&header)[4..]);
    out.push(("snapshot-header".to_string(), input));
    let replies = [
        SnapshotReply::Accept,
        SnapshotReply::Done,
        SnapshotReply::Refused {
            reason: "the snapshot's data was not stored: CRC-32C mismatch".into(),
        },
    ];
    for (i, reply) in replies.iter().enumerate() {
        let mut input = vec![3];
        input.extend(&encode_control(reply)[4..]);
        out.push((format!("snapshot-reply-{i}"), input));
    }
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 256) as u8).collect();
    // Unlimited, cut in chunks of up to 64 bytes; then limited to 64 KiB, byte by byte.
    for (params, name, section) in [
        (0x1b, "snapshot-data", snapshot_data_section(&data, 1000)),
        (
            0x02,
            "snapshot-data-bytewise",
            snapshot_data_section(&data[..200], 64),
        ),
        (0x1b, "snapshot-data-empty", snapshot_data_section(&[], 1)),
    ] {
        let mut input = vec![5, params];
        input.extend(section);
        out.push((name.to_string(), input));
    }
    let mut bad_crc = vec![5, 0x1b];
    bad_crc.extend(snapshot_data_section(&data, 1000));
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    out.push(("snapshot-data-bad-crc".to_string(), bad_crc));
    let mut input = vec![4];
    input.extend(encode_greeting(MESSAGE_MAGIC, 0x0123_4567_89ab_cdef));
    out.push(("greeting".to_string(), input));
    out
}

fn snapshot_message() -> Message {
    Message {
        from: 1,
        to: 2,
        term: 5,
        body: MessageBody::Snapshot(Box::new(SnapshotMeta {
            index: 100,
            term: 4,
            conf_state: ConfState::with_voters([1, 2, 3]),
        })),
    }
}

fn sample_messages() -> Vec<WireMessage> {
    let raft = |body| {
        WireMessage::Raft(Message {
            from: 1,
            to: 2,
            term: 3,
            body,
        })
    };
    vec![
        raft(MessageBody::Heartbeat(Heartbeat {
            commit: 7,
            round: 9,
            quiesce: false,
        })),
        raft(MessageBody::HeartbeatResponse(HeartbeatResponse { round: 9 })),
        raft(MessageBody::Append(Append {
            prev_index: 10,
            prev_term: 2,
            entries: vec![
                Entry::new(3, 11, EntryPayload::Normal(Bytes::from_static(b"set x 1"))),
                Entry::new(3, 12, EntryPayload::Normal(Bytes::from(vec![0xab; 300]))),
            ],
            commit: 10,
        })),
        raft(MessageBody::TimeoutNow),
        WireMessage::Raft(snapshot_message()),
        WireMessage::Forward {
            id: 42,
            command: Bytes::from_static(b"incr"),
        },
        WireMessage::ForwardReply {
            id: 42,
            result: Ok(Bytes::from_static(b"43")),
        },
        WireMessage::ForwardReply {
            id: 43,
            result: Err(ForwardError::NotLeader { leader: Some(3) }),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_inputs_decode() {
        for (name, input) in sample_inputs() {
            let payload = Frame::from(&input[1..]);
            match input[0] {
                5 => {
                    let mut decoder = SnapshotDataDecoder::new(u64::MAX);
                    let mut data = Bytes::copy_from_slice(&input[2..]);
                    let mut result = Ok(());
                    while !data.is_empty() {
                        if let Err(e) = decoder.decode(&mut data, usize::MAX) {
                            result = Err(e);
                            break;
                        }
                    }
                    let accepted = result.is_ok() && decoder.finish().is_ok();
                    assert_eq!(accepted, !name.ends_with("bad-crc"), "{name}");
                }
                0 if name.ends_with("oversize") => {}
                0 => {
                    let mut decoder = FrameDecoder::new(MAX_FRAMES[usize::from(input[1] & 3)]);
                    decoder.extend(Bytes::copy_from_slice(&input[2..]));
                    let mut frames = 0;
                    while let Some(frame) = decoder.next_frame().unwrap() {
                        decode_batch(&frame).unwrap();
                        frames += 1;
                    }
                    assert!(frames >= 3 && decoder.is_empty(), "{name}");
                }
                1 => assert!(decode_batch(&payload).is_ok(), "{name}"),
                2 => assert!(decode_control::<SnapshotHeader>(&payload).is_ok(), "{name}"),
                3 => assert!(decode_control::<SnapshotReply>(&payload).is_ok(), "{name}"),
                4 => assert!(decode_greeting(input[1..].try_into().unwrap()).is_ok(), "{name}"),
                other => panic!("{name}: mode {other}"),
            }
        }
    }
}
