//! The wire format. Every byte this crate puts on a QUIC stream is encoded here, and
//! every byte it reads is decoded here; nothing in this module does I/O.
//!
//! # Message streams
//!
//! Each side of a message connection writes on its half of one bidirectional stream:
//!
//! ```text
//! greeting: b"RQM1" | incarnation: u64 LE              (12 bytes, once)
//! frame:    length: u32 LE | payload: `length` bytes   (repeated)
//! payload:  bincode(WireMessage) bincode(WireMessage) ...   (one batch, at least one message)
//! ```
//!
//! Messages are encoded with bincode 2's standard configuration (little endian, variable
//! length integers) through serde. A frame's length is checked against the maximum frame
//! size before any room for its body is allocated; a frame that is too long, empty, or does
//! not decode exactly into whole messages is malformed, and the connection is closed.
//!
//! Decoding is bounded too: bincode is given a byte limit proportional to the frame's
//! length, so a short frame that claims a huge string or byte array is refused instead of
//! allocating what it claims.
//!
//! # Snapshot streams
//!
//! ```text
//! sender -> receiver: b"RQS1" | frame(bincode(SnapshotHeader)) | snapshot bytes from the resume offset
//! receiver -> sender: frame(bincode(SnapshotReply)) ...
//! ```
//!
//! The receiver answers the header with `Accept { resume_from }` (or `Refused`), sends
//! `Ack { received }` at every chunk boundary, and `Done` or `Refused` once its node has
//! taken (or rejected) the complete snapshot.

use bincode::config;
use bincode::error::{DecodeError, EncodeError};
use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{EntryPayload, Message, MessageBody};
use raft_runtime::WireMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of the stream formats: the greetings, the framing, the snapshot control
/// values, and the encoding of the [`WireMessage`]s the frames carry
/// ([`raft_runtime::WIRE_VERSION`]). It is the last byte of each greeting, as an ASCII
/// digit, and a peer whose greeting names another version is refused with
/// [`FrameError::UnsupportedVersion`].
///
/// Bump it with any change to these formats' bytes, including every bump of
/// `raft_runtime::WIRE_VERSION`: the golden test `golden_tests` fails until it is bumped and
/// its golden file regenerated
/// (`UPDATE_GOLDEN=1 cargo test -p raft-transport-quic --lib golden`).
pub(crate) const STREAM_VERSION: u8 = 1;

/// The [`raft_runtime::WIRE_VERSION`] that [`STREAM_VERSION`] carries.
const CARRIED_WIRE_VERSION: u32 = 1;

const _: () = assert!(
    CARRIED_WIRE_VERSION == raft_runtime::WIRE_VERSION,
    "raft_runtime::WIRE_VERSION changed: bump STREAM_VERSION in raft-transport-quic/src/codec.rs, \
     set CARRIED_WIRE_VERSION to the new wire version, and regenerate the golden bytes with \
     `UPDATE_GOLDEN=1 cargo test -p raft-transport-quic --lib golden`"
);
const _: () = assert!(
    STREAM_VERSION >= 1 && STREAM_VERSION <= 9,
    "a greeting carries the stream version as one ASCII digit"
);

/// The greeting of a stream of kind `kind` (`M` messages, `S` snapshots).
const fn greeting_magic(kind: u8) -> [u8; 4] {
    [b'R', b'Q', kind, b'0' + STREAM_VERSION]
}

/// Greeting that opens each direction of a message stream (`RQM1` for version 1).
pub(crate) const MESSAGE_MAGIC: [u8; 4] = greeting_magic(b'M');
/// Length of the greeting.
pub(crate) const GREETING_LEN: usize = 12;
/// Greeting that opens a snapshot stream (`RQS1` for version 1).
pub(crate) const SNAPSHOT_MAGIC: [u8; 4] = greeting_magic(b'S');
/// The hard ceiling on a configured maximum frame size (256 MiB).
pub(crate) const MAX_FRAME_LIMIT: usize = 256 << 20;
/// The largest snapshot control frame (header or reply).
pub(crate) const MAX_CONTROL_FRAME: usize = 1 << 20;
/// Length of a frame's length prefix.
const PREFIX_LEN: usize = 4;
/// The encoder's buffer grows when less than this is left.
const MIN_SPARE: usize = 16 << 10;

/// bincode's standard configuration: little endian, variable-length integers.
type Standard = config::Configuration<config::LittleEndian, config::Varint, config::NoLimit>;

fn bincode_config() -> Standard {
    config::standard()
}

/// Why bytes from a peer could not be decoded. Each one closes the stream it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the maximum frame size.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The claimed length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame with no payload.
    #[error("empty frame")]
    Empty,
    /// The greeting is not this protocol's.
    #[error("bad greeting {0:02x?}")]
    BadGreeting(Vec<u8>),
    /// The greeting is this protocol's, of another version of the stream formats.
    #[error("the peer speaks stream format version {found}, this node version {expected}")]
    UnsupportedVersion {
        /// The version the peer's greeting names.
        found: u8,
        /// This node's version (`STREAM_VERSION` in `src/codec.rs`).
        expected: u8,
    },
    /// The payload does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes the greeting for a message stream.
pub(crate) fn encode_greeting(magic: [u8; 4], incarnation: u64) -> [u8; GREETING_LEN] {
    let mut out = [0; GREETING_LEN];
    out[..4].copy_from_slice(&magic);
    out[4..].copy_from_slice(&incarnation.to_le_bytes());
    out
}

/// Checks a greeting's magic against `expected`: the same kind of stream of another
/// version is [`FrameError::UnsupportedVersion`], anything else [`FrameError::BadGreeting`].
fn check_magic(magic: &[u8; 4], expected: [u8; 4]) -> Result<(), FrameError> {
    if *magic == expected {
        return Ok(());
    }
    if magic[..3] == expected[..3] && magic[3].is_ascii_digit() {
        return Err(FrameError::UnsupportedVersion {
            found: magic[3] - b'0',
            expected: STREAM_VERSION,
        });
    }
    Err(FrameError::BadGreeting(magic.to_vec()))
}

/// Decodes a message stream greeting into the sender's incarnation.
pub(crate) fn decode_greeting(bytes: &[u8; GREETING_LEN]) -> Result<u64, FrameError> {
    let magic: &[u8; 4] = bytes[..4].try_into().expect("a greeting starts with four bytes");
    check_magic(magic, MESSAGE_MAGIC)?;
    let mut incarnation = [0; 8];
    incarnation.copy_from_slice(&bytes[4..]);
    Ok(u64::from_le_bytes(incarnation))
}

/// Checks the greeting that opens a snapshot stream.
pub(crate) fn decode_snapshot_greeting(magic: &[u8; 4]) -> Result<(), FrameError> {
    check_magic(magic, SNAPSHOT_MAGIC)
}

/// Payloads at least this large are spliced into the output by reference instead of
/// being copied into the frame buffer.
const SPLICE_MIN: usize = 4 << 10;

/// A bincode writer that appends to a `BytesMut`, except that a slice which is exactly one
/// of the message's large `Bytes` payloads is recorded as a zero-copy splice.
struct SpliceWriter<'a> {
    buf: &'a mut BytesMut,
    candidates: &'a [Bytes],
    splices: &'a mut Vec<(usize, Bytes)>,
    spliced: usize,
}

impl bincode::enc::write::Writer for SpliceWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        if bytes.len() >= SPLICE_MIN {
            // Same address and length: the very bytes of that payload (serde hands bincode
            // a `Bytes` payload as one slice), so referencing it is exact.
            if let Some(payload) = self
                .candidates
                .iter()
                .find(|c| c.as_ptr() == bytes.as_ptr() && c.len() == bytes.len())
            {
                self.splices.push((self.buf.len(), payload.clone()));
                self.spliced += bytes.len();
                return Ok(());
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// A bincode writer that appends to a `BytesMut`.
struct BytesWriter<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for BytesWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The large byte payloads of a message, which the encoder splices instead of copying.
fn large_payloads(message: &WireMessage, out: &mut Vec<Bytes>) {
    out.clear();
    let mut add = |b: &Bytes| {
        if b.len() >= SPLICE_MIN {
            out.push(b.clone());
        }
    };
    match message {
        WireMessage::Raft(m) => {
            if let MessageBody::Append(append) = &m.body {
                for entry in &append.entries {
                    if let EntryPayload::Normal(data) = &entry.payload {
                        add(data);
                    }
                }
            }
        }
        WireMessage::Forward { command, .. } => add(command),
        WireMessage::ForwardReply { result: Ok(data), .. } => add(data),
        WireMessage::ForwardReply { .. } => {}
    }
}

/// Why a message could not be put in a frame. The message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeFailure {
    /// The message alone is larger than a frame may be.
    #[error("message of {size} bytes exceeds the frame limit of {max}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// serde could not encode it.
    #[error("cannot encode message: {0}")]
    Unencodable(String),
}

/// Packs messages into frames. Consecutive messages share a frame until it reaches the
/// target size; no frame exceeds the maximum. Small fields are copied into one growing
/// buffer; large payloads (log entries, forwarded commands) are referenced, not copied,
/// and the output is a list of chunks for a vectored write.
#[derive(Debug)]
pub(crate) struct FrameEncoder {
    buf: BytesMut,
    /// Zero-copy payloads, each with the buffer offset it belongs at, in order.
    splices: Vec<(usize, Bytes)>,
    /// Offset of the open frame's length prefix.
    open: Option<usize>,
    /// Spliced bytes in the open frame.
    open_spliced: usize,
    max_frame: usize,
    target: usize,
    messages: usize,
    len: usize,
    candidates: Vec<Bytes>,
}

impl FrameEncoder {
    pub(crate) fn new(max_frame: usize, target: usize) -> FrameEncoder {
        FrameEncoder {
            buf: BytesMut::new(),
            splices: Vec::new(),
            open: None,
            open_spliced: 0,
            max_frame,
            target: target.min(max_frame),
            messages: 0,
            len: 0,
            candidates: Vec::new(),
        }
    }

    /// Appends `msg` to the open frame, or to a new one if it does not fit.
    pub(crate) fn push(&mut self, msg: &WireMessage) -> Result<(), EncodeFailure> {
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            // One allocation per many frames, not one per growth step.
            self.buf.reserve(MIN_SPARE * 4);
        }
        let start = match self.open {
            Some(start) => start,
            None => {
                let start = self.buf.len();
                self.buf.put_u32_le(0);
                self.open = Some(start);
                self.open_spliced = 0;
                start
            }
        };
        let before = self.buf.len();
        let splices_before = self.splices.len();
        let mut candidates = std::mem::take(&mut self.candidates);
        large_payloads(msg, &mut candidates);
        let mut writer = SpliceWriter {
            buf: &mut self.buf,
            candidates: &candidates,
            splices: &mut self.splices,
            spliced: 0,
        };
        let encoded = bincode::serde::encode_into_writer(msg, &mut writer, bincode_config());
        let spliced = writer.spliced;
        candidates.clear();
        self.candidates = candidates;
        if let Err(e) = encoded {
            self.rollback(before, splices_before);
            self.drop_empty_frame(start);
            return Err(EncodeFailure::Unencodable(e.to_string()));
        }
        let frame_len = self.buf.len() - start - PREFIX_LEN + self.open_spliced + spliced;
        if frame_len > self.max_frame {
            let size = self.buf.len() - before + spliced;
            self.rollback(before, splices_before);
            if before == start + PREFIX_LEN {
                self.drop_empty_frame(start);
                return Err(EncodeFailure::TooLarge {
                    size,
                    max: self.max_frame,
                });
            }
            // It fits on its own: close this frame and start the next one with it.
            self.close_frame();
            return self.push(msg);
        }
        self.open_spliced += spliced;
        self.messages += 1;
        if frame_len >= self.target {
            self.close_frame();
        }
        Ok(())
    }

    fn rollback(&mut self, len: usize, splices: usize) {
        self.buf.truncate(len);
        self.splices.truncate(splices);
    }

    fn drop_empty_frame(&mut self, start: usize) {
        if self.buf.len() == start + PREFIX_LEN && self.open_spliced == 0 {
            self.buf.truncate(start);
            self.open = None;
        }
    }

    fn close_frame(&mut self) {
        if let Some(start) = self.open.take() {
            let len = self.buf.len() - start - PREFIX_LEN + self.open_spliced;
            self.len += PREFIX_LEN + len;
            self.open_spliced = 0;
            let len = u32::try_from(len).expect("frame length bounded by MAX_FRAME_LIMIT");
            self.buf[start..start + PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
        }
    }

    /// Bytes encoded and not yet taken (closed frames, plus the open one roughly).
    pub(crate) fn len(&self) -> usize {
        self.len
            + self
                .open
                .map_or(0, |start| self.buf.len() - start + self.open_spliced)
    }

    /// Messages encoded and not yet taken.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }

    /// Closes the open frame and takes every frame encoded so far, as chunks to write in
    /// order (empty if nothing was encoded).
    pub(crate) fn take(&mut self) -> Vec<Bytes> {
        self.close_frame();
        self.messages = 0;
        self.len = 0;
        let inline = self.buf.split().freeze();
        let mut chunks = Vec::with_capacity(2 * self.splices.len() + 1);
        let mut at = 0;
        for (offset, payload) in self.splices.drain(..) {
            if offset > at {
                chunks.push(inline.slice(at..offset));
            }
            chunks.push(payload);
            at = offset;
        }
        if at < inline.len() {
            chunks.push(inline.slice(at..));
        }
        chunks
    }
}

/// One frame's payload: the chunks it arrived in, referenced, not copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Frame {
    /// The payload length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A contiguous copy (tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn reader(&self) -> ChunkReader<'_> {
        ChunkReader {
            chunks: &self.chunks,
            index: 0,
            offset: 0,
            remaining: self.len,
        }
    }
}

impl From<&[u8]> for Frame {
    fn from(bytes: &[u8]) -> Frame {
        Frame {
            chunks: vec![Bytes::copy_from_slice(bytes)],
            len: bytes.len(),
        }
    }
}

/// Reads a frame's payload across its chunks.
struct ChunkReader<'a> {
    chunks: &'a [Bytes],
    index: usize,
    offset: usize,
    remaining: usize,
}

impl bincode::de::read::Reader for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        if out.len() > self.remaining {
            return Err(DecodeError::UnexpectedEnd {
                additional: out.len() - self.remaining,
            });
        }
        let mut filled = 0;
        while filled < out.len() {
            let chunk = &self.chunks[self.index][self.offset..];
            let n = chunk.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            self.offset += n;
            if self.offset == self.chunks[self.index].len() {
                self.index += 1;
                self.offset = 0;
            }
        }
        self.remaining -= out.len();
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        let chunk = self.chunks.get(self.index)?;
        chunk.get(self.offset..self.offset + n)
    }

    fn consume(&mut self, n: usize) {
        self.offset += n;
        self.remaining -= n;
        if self.offset == self.chunks[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }
}

/// Splits a byte stream into frames, checking each length before making room for its
/// body. Chunks read from the stream are kept as they are, so a frame is not copied to
/// become contiguous.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    max_frame: usize,
}

impl FrameDecoder {
    pub(crate) fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            chunks: VecDeque::new(),
            buffered: 0,
            max_frame,
        }
    }

    /// Appends a chunk read from the stream.
    pub(crate) fn extend(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes buffered and not yet taken as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether a partial frame is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// The bytes buffered after the last complete frame (a stream that switches from
    /// frames to raw data, like a snapshot stream after its header).
    pub(crate) fn into_rest(self) -> Vec<Bytes> {
        self.chunks.into()
    }

    /// Checks the buffered frame header, if any, and returns the next complete frame's
    /// payload. `Ok(None)` means more bytes are needed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buffered < PREFIX_LEN {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(PREFIX_LEN - filled);
            prefix[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == PREFIX_LEN {
                break;
            }
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > self.max_frame {
            return Err(FrameError::Oversize {
                len,
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if self.buffered < PREFIX_LEN + len {
            return Ok(None);
        }
        self.take(PREFIX_LEN);
        let chunks = self.take(len);
        Ok(Some(Frame { chunks, len }))
    }

    /// Removes the first `n` buffered bytes (all buffered) as chunks.
    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        self.buffered -= n;
        let mut taken = Vec::new();
        while n > 0 {
            let front = self.chunks.front_mut().expect("n bytes are buffered");
            if front.len() <= n {
                n -= front.len();
                taken.push(self.chunks.pop_front().expect("non-empty"));
            } else {
                taken.push(front.split_to(n));
                n = 0;
            }
        }
        taken
    }
}

/// Decodes one value from `reader` with a bincode byte limit of at least eight times the
/// bytes left (standard bincode claims up to eight bytes per one-byte integer), rounded up
/// to a power of four, so that no length claim inside the input can make the decoder
/// reserve more than a small multiple of the input's own size.
fn decode_limited<T: DeserializeOwned>(reader: &mut ChunkReader<'_>) -> Result<T, DecodeError> {
    macro_rules! tiers {
        ($($bits:literal)*) => {{
            let need = reader.remaining.saturating_mul(8);
            $(
                if need <= 1usize << $bits {
                    return bincode::serde::decode_from_reader(
                        reader,
                        bincode_config().with_limit::<{ 1usize << $bits }>(),
                    );
                }
            )*
            Err(DecodeError::LimitExceeded)
        }};
    }
    tiers!(12 14 16 18 20 22 24 26 28 30 31)
}

/// Decodes a message frame's payload into its batch.
pub(crate) fn decode_batch(frame: &Frame) -> Result<Vec<WireMessage>, FrameError> {
    let mut reader = frame.reader();
    let mut batch = Vec::new();
    while reader.remaining > 0 {
        let msg =
            decode_limited::<WireMessage>(&mut reader).map_err(|e| FrameError::Malformed(e.to_string()))?;
        batch.push(msg);
    }
    if batch.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(batch)
}

/// The first frame of a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    /// Identifies the transfer across reconnections, so that a retry can resume.
    pub(crate) transfer_id: u64,
    /// Total snapshot size in bytes.
    pub(crate) total_len: u64,
    /// CRC-32C of the whole snapshot, checked by the receiver before delivery.
    pub(crate) crc32c: u32,
    /// The receiver acknowledges every `chunk_size` bytes.
    pub(crate) chunk_size: u32,
    /// The protocol message announcing the snapshot.
    pub(crate) message: Message,
}

/// What a snapshot receiver tells the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SnapshotReply {
    /// Send the snapshot from this byte offset (non-zero when resuming).
    Accept {
        /// Bytes the receiver already holds.
        resume_from: u64,
    },
    /// The receiver holds the first `received` bytes.
    Ack {
        /// Bytes received so far.
        received: u64,
    },
    /// The receiver's node took the snapshot.
    Done,
    /// The receiver or its node refused the snapshot; do not retry this transfer.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Encodes a snapshot control value as one frame.
pub(crate) fn encode_control<T: Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32_le(0);
    bincode::serde::encode_into_writer(value, BytesWriter(&mut buf), bincode_config())
        .expect("snapshot control values always encode");
    let len = u32::try_from(buf.len() - PREFIX_LEN).expect("control frames are small");
    buf[..PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
    buf.freeze()
}

/// Decodes a snapshot control frame's payload; trailing bytes are an error.
pub(crate) fn decode_control<T: DeserializeOwned>(frame: &Frame) -> Result<T, FrameError> {
    let mut reader = frame.reader();
    let value = decode_limited::<T>(&mut reader).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if reader.remaining != 0 {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after control frame",
            reader.remaining
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, EntryPayload, Heartbeat, MessageBody};

    fn heartbeat(round: u64) -> WireMessage {
        WireMessage::Raft(Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Heartbeat(Heartbeat { commit: 4, round }),
        })
    }

    fn append(payload: usize) -> WireMessage {
        WireMessage::Raft(Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Append(raft_core::Append {
                prev_index: 1,
                prev_term: 1,
                entries: vec![Entry::new(
                    3,
                    2,
                    EntryPayload::Normal(Bytes::from(vec![7; payload])),
                )],
                commit: 1,
            }),
        })
    }

    fn decode_all(chunks: Vec<Bytes>, max: usize) -> Vec<Vec<WireMessage>> {
        let mut bytes = Bytes::from(chunks.concat());
        let mut decoder = FrameDecoder::new(max);
        // Feed in small pieces to exercise partial frames and reads across chunks.
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let piece = bytes.split_to(bytes.len().min(7));
            decoder.extend(piece);
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(decode_batch(&frame).unwrap());
            }
        }
        assert!(decoder.is_empty());
        frames
    }

    #[test]
    fn batches_round_trip_in_order() {
        let mut enc = FrameEncoder::new(1 << 20, 1 << 16);
        let sent: Vec<_> = (0..100).map(heartbeat).collect();
        for m in &sent {
            enc.push(m).unwrap();
        }
        assert_eq!(enc.messages(), 100);
        let frames = decode_all(enc.take(), 1 << 20);
        assert_eq!(frames.len(), 1, "small messages share one frame");
        assert_eq!(frames.concat(), sent);
    }

    #[test]
    fn frames_split_at_target_and_never_exceed_max() {
        let max = 10_000;
        let mut enc = FrameEncoder::new(max, 4_000);
        let sent: Vec<_> = (0..10).map(|_| append(3_000)).collect();
        for m in &sent {
            enc.push(m).unwrap();
        }
        let frames = decode_all(enc.take(), max);
        assert!(frames.len() >= 5, "{} frames", frames.len());
        assert_eq!(frames.concat(), sent);
    }

    #[test]
    fn a_message_larger_than_a_frame_is_refused_and_the_rest_survive() {
        let mut enc = FrameEncoder::new(2_000, 2_000);
        enc.push(&heartbeat(1)).unwrap();
        let err = enc.push(&append(5_000)).unwrap_err();
        assert!(matches!(err, EncodeFailure::TooLarge { max: 2_000, .. }), "{err}");
        enc.push(&heartbeat(2)).unwrap();
        assert_eq!(
            decode_all(enc.take(), 2_000).concat(),
            vec![heartbeat(1), heartbeat(2)]
        );
        // A lone oversize message leaves no empty frame behind.
        let mut enc = FrameEncoder::new(2_000, 2_000);
        assert!(enc.push(&append(5_000)).is_err());
        assert_eq!(enc.len(), 0);
    }

    #[test]
    fn large_payloads_are_referenced_not_copied() {
        let mut enc = FrameEncoder::new(1 << 20, 1 << 20);
        let small = heartbeat(1);
        let big = append(64 << 10);
        let WireMessage::Raft(Message {
            body: MessageBody::Append(a),
            ..
        }) = &big
        else {
            unreachable!()
        };
        let EntryPayload::Normal(payload) = &a.entries[0].payload else {
            unreachable!()
        };
        enc.push(&small).unwrap();
        enc.push(&big).unwrap();
        enc.push(&small).unwrap();
        let total = enc.len();
        let chunks = enc.take();
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), total);
        assert!(
            chunks
                .iter()
                .any(|c| c.as_ptr() == payload.as_ptr() && c.len() == payload.len()),
            "the 64 KiB payload is one of the chunks"
        );
        assert!(total < (64 << 10) + 200);
        assert_eq!(
            decode_all(chunks, 1 << 20).concat(),
            vec![small.clone(), big, small]
        );
    }

    #[test]
    fn oversize_length_is_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(1_000);
        decoder.extend(Bytes::copy_from_slice(&1_001u32.to_le_bytes()));
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::Oversize {
                len: 1_001,
                max: 1_000
            })
        );
        let mut decoder = FrameDecoder::new(1_000);
        decoder.extend(Bytes::copy_from_slice(&0u32.to_le_bytes()));
        assert_eq!(decoder.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn huge_length_claims_inside_a_frame_do_not_allocate() {
        // An Append whose payload claims u64::MAX / 2 bytes: varint tag 253 + u64.
        let mut enc = FrameEncoder::new(1 << 20, 1 << 20);
        enc.push(&append(10)).unwrap();
        let bytes = enc.take().concat();
        let mut payload = bytes[4..].to_vec();
        // The payload length is the varint right before the 10 payload bytes.
        let at = payload.len() - 1 - 10 - 1; // [.. len=10][payload: 10 bytes][commit=1]
        assert_eq!(payload[at], 10);
        let mut forged = payload[..at].to_vec();
        forged.push(253);
        forged.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        forged.extend_from_slice(&payload[at + 1..]);
        payload = forged;
        assert!(matches!(
            decode_batch(&Frame::from(&payload[..])),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift sequence: deterministic garbage of many lengths.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2_000usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_batch(&Frame::from(&bytes[..]));
            let _ = decode_control::<SnapshotHeader>(&Frame::from(&bytes[..]));
            let mut decoder = FrameDecoder::new(4096);
            decoder.extend(Bytes::from(bytes));
            while let Ok(Some(frame)) = decoder.next_frame() {
                let _ = decode_batch(&frame);
            }
        }
    }

    #[test]
    fn greetings_and_control_frames_round_trip() {
        let g = encode_greeting(MESSAGE_MAGIC, 0xDEAD_BEEF);
        assert_eq!(decode_greeting(&g), Ok(0xDEAD_BEEF));
        let bad = encode_greeting(*b"HTTP", 1);
        assert!(matches!(decode_greeting(&bad), Err(FrameError::BadGreeting(_))));
        assert_eq!(MESSAGE_MAGIC, *b"RQM1", "version 1 greets as it always did");
        assert_eq!(SNAPSHOT_MAGIC, *b"RQS1");
        let newer = encode_greeting(*b"RQM2", 1);
        let err = decode_greeting(&newer).unwrap_err();
        assert_eq!(
            err,
            FrameError::UnsupportedVersion {
                found: 2,
                expected: STREAM_VERSION
            }
        );
        assert!(
            err.to_string().contains("version 2, this node version 1"),
            "{err}"
        );
        assert_eq!(decode_snapshot_greeting(&SNAPSHOT_MAGIC), Ok(()));
        assert_eq!(
            decode_snapshot_greeting(b"RQS7"),
            Err(FrameError::UnsupportedVersion {
                found: 7,
                expected: STREAM_VERSION
            })
        );
        assert!(matches!(
            decode_snapshot_greeting(b"RQM1"),
            Err(FrameError::BadGreeting(_))
        ));
        assert!(matches!(
            decode_greeting(&encode_greeting(*b"RQMx", 1)),
            Err(FrameError::BadGreeting(_))
        ));

        let reply = SnapshotReply::Refused { reason: "no".into() };
        let frame = encode_control(&reply);
        let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
        decoder.extend(frame);
        let payload = decoder.next_frame().unwrap().unwrap();
        assert_eq!(decode_control::<SnapshotReply>(&payload), Ok(reply));
        let mut trailing = payload.to_vec();
        trailing.push(0);
        assert!(decode_control::<SnapshotReply>(&Frame::from(&trailing[..])).is_err());
    }
}
