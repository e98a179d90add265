//! The wire format. Every byte this crate puts on a QUIC stream is encoded here, and
//! every byte it reads is decoded here; nothing in this module does I/O.
//!
//! # Message streams
//!
//! Each side of a message connection writes on its half of one bidirectional stream:
//!
//! ```text
//! greeting: b"RQM6" | incarnation: u64 LE              (12 bytes, once)
//! frame:    length: u32 LE | payload: `length` bytes   (repeated)
//! payload:  group: varint | bincode(WireMessage) bincode(WireMessage) ...
//!                                   (one batch of one group's messages, at least one message)
//! ```
//!
//! Messages are encoded with bincode 2's standard configuration (little endian, variable
//! length integers) through serde; the group id that opens a payload is a `u64` in the
//! same encoding. One connection carries every group the two nodes share, and a group's
//! messages keep their order on it. A frame's length is checked against the maximum frame
//! size before any room for its body is allocated; a frame that is too long, empty, or does
//! not decode exactly into whole messages is malformed, and the connection is closed.
//!
//! Decoding is bounded too: bincode is given a byte limit proportional to the frame's
//! length, so a short frame that claims a huge string or byte array is refused instead of
//! allocating what it claims.
//!
//! # Snapshot streams
//!
//! A snapshot transfer has a connection of its own, on which the sender opens one
//! bidirectional stream:
//!
//! ```text
//! sender -> receiver:
//!   b"RQS6"                                            greeting, once
//!   frame(bincode(SnapshotHeader))                     the announcement (a control frame)
//!   -- once the receiver accepted --
//!   length: u32 LE | `length` bytes of snapshot data   a data frame, 1 <= length <= 64 MiB, repeated
//!   0: u32 LE | total_len: u64 LE | crc32c: u32 LE     the end frame (16 bytes), then the stream ends
//! receiver -> sender:
//!   frame(bincode(SnapshotReply))                      Accept or Refused, then Done or Refused
//! ```
//!
//! The announcement carries the group and the protocol message: a snapshot is read from its source
//! as it is sent, so its length is known only at its end. The end frame then gives the
//! number of data bytes sent and their CRC-32C (Castagnoli), computed as they were
//! written; the receiver counts and checksums the data as it passes it on, and checks both.
//!
//! A control frame (the announcement or a reply) is a frame as on message streams, of at
//! most 1 MiB. A data frame's length is checked before any of its bytes are read: a length
//! of zero marks the end frame, one above 64 MiB is malformed, and one that would take the
//! snapshot past the receiver's `max_snapshot_size` is refused. The data of a frame is
//! passed on as it arrives, never gathered whole, so frame lengths bound nothing the
//! receiver holds. An end frame whose length or CRC-32C is not that of the data that
//! arrived, any byte after the end frame, and a stream that ends without an end frame are
//! errors: the receiver's node is told the snapshot is incomplete and keeps nothing of it.
//!
//! The receiver answers the announcement with `Accept` (or `Refused`: its node is not
//! ready, the message is not a snapshot message from the authenticated peer), and, once its
//! node has read the whole stream and taken the snapshot, `Done`, or `Refused` with the
//! node's reason. Both sides may also end the stream early with a QUIC stream error code:
//! the sender resets it with 1 when reading its snapshot failed, 2 when it gave up (a write
//! made no progress in time); the receiver stops it with 3 when the data failed a check or
//! the reception was cancelled (its node's verdict follows as `Refused`).

use bincode::config;
use bincode::error::{DecodeError, EncodeError};
use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{EntryPayload, Message, MessageBody};
use raft_runtime::{GroupId, WireMessage};
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
///
/// Version 6 added the group id to each message frame and to the snapshot announcement.
pub(crate) const STREAM_VERSION: u8 = 6;

/// The [`raft_runtime::WIRE_VERSION`] that [`STREAM_VERSION`] carries.
const CARRIED_WIRE_VERSION: u32 = 4;

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

/// Greeting that opens each direction of a message stream (`RQM6` for version 6).
pub(crate) const MESSAGE_MAGIC: [u8; 4] = greeting_magic(b'M');
/// Length of the greeting.
pub(crate) const GREETING_LEN: usize = 12;
/// Greeting that opens a snapshot stream (`RQS6` for version 6).
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
                    if let EntryPayload::Normal(data) | EntryPayload::Internal(data) = &entry.payload {
                        add(data);
                    }
                }
            }
        }
        WireMessage::Forward { command, .. } => add(command),
        WireMessage::ForwardRecord { record, .. } => add(record),
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

/// Packs messages into frames. Consecutive messages of one group share a frame until it
/// reaches the target size; no frame exceeds the maximum, and a message of another group
/// starts a new frame. Small fields are copied into one growing
/// buffer; large payloads (log entries, forwarded commands) are referenced, not copied,
/// and the output is a list of chunks for a vectored write.
#[derive(Debug)]
pub(crate) struct FrameEncoder {
    buf: BytesMut,
    /// Zero-copy payloads, each with the buffer offset it belongs at, in order.
    splices: Vec<(usize, Bytes)>,
    /// Offset of the open frame's length prefix.
    open: Option<usize>,
    /// The open frame's group, and the offset its first message starts at (past the group).
    open_group: GroupId,
    open_body: usize,
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
            open_group: 0,
            open_body: 0,
            open_spliced: 0,
            max_frame,
            target: target.min(max_frame),
            messages: 0,
            len: 0,
            candidates: Vec::new(),
        }
    }

    /// Appends `msg`, one of `group`'s messages, to the open frame, or to a new one if it
    /// does not fit or the open frame is another group's.
    pub(crate) fn push(&mut self, group: GroupId, msg: &WireMessage) -> Result<(), EncodeFailure> {
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            // One allocation per many frames, not one per growth step.
            self.buf.reserve(MIN_SPARE * 4);
        }
        if self.open.is_some() && self.open_group != group {
            self.close_frame();
        }
        let start = match self.open {
            Some(start) => start,
            None => {
                let start = self.buf.len();
                self.buf.put_u32_le(0);
                if let Err(e) =
                    bincode::encode_into_writer(group, BytesWriter(&mut self.buf), bincode_config())
                {
                    self.buf.truncate(start);
                    return Err(EncodeFailure::Unencodable(e.to_string()));
                }
                self.open = Some(start);
                self.open_group = group;
                self.open_body = self.buf.len();
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
            if before == self.open_body {
                self.drop_empty_frame(start);
                return Err(EncodeFailure::TooLarge {
                    size,
                    max: self.max_frame,
                });
            }
            // It fits on its own: close this frame and start the next one with it.
            self.close_frame();
            return self.push(group, msg);
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
        if self.buf.len() == self.open_body && self.open_spliced == 0 {
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

/// Decodes a message frame's payload into its group and batch.
pub(crate) fn decode_batch(frame: &Frame) -> Result<(GroupId, Vec<WireMessage>), FrameError> {
    let mut reader = frame.reader();
    let group: GroupId = bincode::decode_from_reader(&mut reader, bincode_config())
        .map_err(|e| FrameError::Malformed(format!("group id: {e}")))?;
    let mut batch = Vec::new();
    while reader.remaining > 0 {
        let msg =
            decode_limited::<WireMessage>(&mut reader).map_err(|e| FrameError::Malformed(e.to_string()))?;
        batch.push(msg);
    }
    if batch.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok((group, batch))
}

/// The announcement that opens a snapshot stream, after its greeting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    /// The group the snapshot belongs to.
    pub(crate) group: GroupId,
    /// The protocol message announcing the snapshot.
    pub(crate) message: Message,
}

/// What a snapshot receiver tells the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SnapshotReply {
    /// Send the data.
    Accept,
    /// The receiver's node read the whole snapshot and took it.
    Done,
    /// The receiver or its node refused the snapshot (before its data, or after reading
    /// some or all of it).
    Refused {
        /// Why.
        reason: String,
    },
}

/// The largest data frame of a snapshot stream: 64 MiB, the largest
/// [`Limits::snapshot_chunk_size`](crate::Limits::snapshot_chunk_size). A receiver passes a
/// frame's bytes on as they arrive, so this bounds nothing it holds.
pub(crate) const MAX_DATA_FRAME: usize = 64 << 20;
/// Length of a data frame's length prefix.
pub(crate) const DATA_PREFIX_LEN: usize = 4;
/// Length of the end frame: the zero length that marks it, the total length, the CRC-32C.
pub(crate) const END_FRAME_LEN: usize = 16;

/// The length prefix of a data frame of `len` bytes (1 to [`MAX_DATA_FRAME`]; a sender
/// never writes another).
pub(crate) fn encode_data_prefix(len: u32) -> [u8; DATA_PREFIX_LEN] {
    debug_assert!(
        len > 0 && len as usize <= MAX_DATA_FRAME,
        "data frame of {len} bytes"
    );
    len.to_le_bytes()
}

/// The end frame of a snapshot stream whose data was `total_len` bytes with CRC-32C
/// `crc32c`.
pub(crate) fn encode_end_frame(total_len: u64, crc32c: u32) -> [u8; END_FRAME_LEN] {
    let mut out = [0; END_FRAME_LEN];
    out[DATA_PREFIX_LEN..12].copy_from_slice(&total_len.to_le_bytes());
    out[12..].copy_from_slice(&crc32c.to_le_bytes());
    out
}

/// Why the data section of a snapshot stream is not a complete, intact snapshot. Each
/// ends the transfer; the messages name what was wrong, for the receiver's node and log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SnapshotDataError {
    /// A data frame's length prefix exceeds [`MAX_DATA_FRAME`].
    #[error("a snapshot data frame of {len} bytes exceeds the limit of {max} bytes per frame")]
    FrameTooLong {
        /// The claimed length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A data frame would take the snapshot past the receiver's size limit.
    #[error(
        "the snapshot exceeds the limit of {limit} bytes (max_snapshot_size): a frame of {len} more \
         bytes after {received}"
    )]
    TooLarge {
        /// The receiver's limit.
        limit: u64,
        /// Data bytes received before the frame.
        received: u64,
        /// The frame's length.
        len: u64,
    },
    /// The end frame's length is not the number of data bytes that arrived.
    #[error("the end frame claims {claimed} bytes of data, but {received} arrived")]
    LengthMismatch {
        /// The length the end frame gives.
        claimed: u64,
        /// The data bytes that arrived.
        received: u64,
    },
    /// The end frame's CRC-32C is not that of the data that arrived.
    #[error(
        "CRC-32C mismatch: the end frame gives {claimed:08x}, the {received} bytes of data that \
         arrived have {computed:08x}"
    )]
    CrcMismatch {
        /// The checksum the end frame gives.
        claimed: u32,
        /// The checksum of the data that arrived.
        computed: u32,
        /// The data bytes that arrived.
        received: u64,
    },
    /// Bytes followed the end frame.
    #[error("{len} bytes after the end frame")]
    AfterEnd {
        /// How many (in the piece that held them; there may be more).
        len: usize,
    },
    /// The stream ended before the end frame.
    #[error(
        "the stream ended without an end frame, after {received} bytes of data{}",
        if *.inside_frame { " (inside a frame)" } else { "" }
    )]
    Truncated {
        /// The data bytes that arrived.
        received: u64,
        /// Whether it ended inside a frame.
        inside_frame: bool,
    },
}

/// Where a [`SnapshotDataDecoder`] is in the data section.
#[derive(Debug, Clone, Copy)]
enum DataState {
    /// Reading a frame's length prefix; `filled` bytes of it so far.
    Prefix {
        buf: [u8; DATA_PREFIX_LEN],
        filled: usize,
    },
    /// Inside a data frame, `remaining` bytes of it still to come.
    Data { remaining: usize },
    /// Reading the end frame after its zero length; `filled` bytes of the rest so far.
    End {
        buf: [u8; END_FRAME_LEN - DATA_PREFIX_LEN],
        filled: usize,
    },
    /// The end frame arrived and matched the data.
    Ended,
}

const NEW_PREFIX: DataState = DataState::Prefix {
    buf: [0; DATA_PREFIX_LEN],
    filled: 0,
};

/// Decodes the data section of a snapshot stream (everything after the announcement), fed
/// in pieces as they are read: checks each frame's length before its bytes, passes the
/// data on as it comes (split off the input, not copied), counts it against a size limit,
/// checksums it, and checks the end frame against it. It holds nothing but a few header
/// bytes. After an error it must not be fed again.
#[derive(Debug)]
pub(crate) struct SnapshotDataDecoder {
    state: DataState,
    received: u64,
    crc: u32,
    limit: u64,
}

impl SnapshotDataDecoder {
    /// A decoder that refuses more than `limit` bytes of data.
    pub(crate) fn new(limit: u64) -> SnapshotDataDecoder {
        SnapshotDataDecoder {
            state: NEW_PREFIX,
            received: 0,
            crc: 0,
            limit,
        }
    }

    /// Data bytes passed on so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Whether the end frame arrived (and matched the data).
    #[cfg(test)]
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.state, DataState::Ended)
    }

    /// Takes frame headers off the front of `input`, checking them, up to the next data:
    /// returns at most `max` bytes of it, split off `input`. `Ok(None)` when `input` is used
    /// up first, or when the next bytes are data and `max` is zero.
    pub(crate) fn decode(
        &mut self,
        input: &mut Bytes,
        max: usize,
    ) -> Result<Option<Bytes>, SnapshotDataError> {
        while !input.is_empty() {
            match &mut self.state {
                DataState::Prefix { buf, filled } => {
                    let n = (DATA_PREFIX_LEN - *filled).min(input.len());
                    buf[*filled..*filled + n].copy_from_slice(&input[..n]);
                    input.advance(n);
                    *filled += n;
                    if *filled == DATA_PREFIX_LEN {
                        let len = u32::from_le_bytes(*buf);
                        self.state = self.frame(len)?;
                    }
                }
                DataState::Data { remaining } => {
                    if max == 0 {
                        return Ok(None);
                    }
                    let n = (*remaining).min(input.len()).min(max);
                    *remaining -= n;
                    if *remaining == 0 {
                        self.state = NEW_PREFIX;
                    }
                    let data = input.split_to(n);
                    // Within the limit, checked when the frame began.
                    self.received = self.received.saturating_add(n as u64);
                    self.crc = crc32c::crc32c_append(self.crc, &data);
                    return Ok(Some(data));
                }
                DataState::End { buf, filled } => {
                    let n = (buf.len() - *filled).min(input.len());
                    buf[*filled..*filled + n].copy_from_slice(&input[..n]);
                    input.advance(n);
                    *filled += n;
                    if *filled == buf.len() {
                        let mut total = [0; 8];
                        total.copy_from_slice(&buf[..8]);
                        let mut crc = [0; 4];
                        crc.copy_from_slice(&buf[8..]);
                        self.check_end(u64::from_le_bytes(total), u32::from_le_bytes(crc))?;
                        self.state = DataState::Ended;
                    }
                }
                DataState::Ended => return Err(SnapshotDataError::AfterEnd { len: input.len() }),
            }
        }
        Ok(None)
    }

    /// The state after a frame's length prefix.
    fn frame(&self, len: u32) -> Result<DataState, SnapshotDataError> {
        if len == 0 {
            return Ok(DataState::End {
                buf: [0; END_FRAME_LEN - DATA_PREFIX_LEN],
                filled: 0,
            });
        }
        let remaining = usize::try_from(len).ok().filter(|&l| l <= MAX_DATA_FRAME).ok_or(
            SnapshotDataError::FrameTooLong {
                len: u64::from(len),
                max: MAX_DATA_FRAME,
            },
        )?;
        match self.received.checked_add(u64::from(len)) {
            Some(total) if total <= self.limit => Ok(DataState::Data { remaining }),
            _ => Err(SnapshotDataError::TooLarge {
                limit: self.limit,
                received: self.received,
                len: u64::from(len),
            }),
        }
    }

    fn check_end(&self, claimed: u64, crc: u32) -> Result<(), SnapshotDataError> {
        if claimed != self.received {
            return Err(SnapshotDataError::LengthMismatch {
                claimed,
                received: self.received,
            });
        }
        if crc != self.crc {
            return Err(SnapshotDataError::CrcMismatch {
                claimed: crc,
                computed: self.crc,
                received: self.received,
            });
        }
        Ok(())
    }

    /// The stream ended: an error unless the end frame arrived.
    pub(crate) fn finish(&self) -> Result<(), SnapshotDataError> {
        match self.state {
            DataState::Ended => Ok(()),
            DataState::Prefix { filled: 0, .. } => Err(SnapshotDataError::Truncated {
                received: self.received,
                inside_frame: false,
            }),
            _ => Err(SnapshotDataError::Truncated {
                received: self.received,
                inside_frame: true,
            }),
        }
    }
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
            body: MessageBody::Heartbeat(Heartbeat {
                commit: 4,
                round,
                quiesce: false,
            }),
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

    /// The batches of group 0 the chunks hold, one per frame.
    fn decode_all(chunks: Vec<Bytes>, max: usize) -> Vec<Vec<WireMessage>> {
        decode_groups(chunks, max)
            .into_iter()
            .map(|(group, batch)| {
                assert_eq!(group, 0);
                batch
            })
            .collect()
    }

    /// The (group, batch) of each frame the chunks hold.
    fn decode_groups(chunks: Vec<Bytes>, max: usize) -> Vec<(GroupId, Vec<WireMessage>)> {
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
            enc.push(0, m).unwrap();
        }
        assert_eq!(enc.messages(), 100);
        let frames = decode_all(enc.take(), 1 << 20);
        assert_eq!(frames.len(), 1, "small messages share one frame");
        assert_eq!(frames.concat(), sent);
    }

    #[test]
    fn each_group_gets_frames_of_its_own_and_keeps_its_order() {
        let mut enc = FrameEncoder::new(1 << 20, 1 << 16);
        enc.push(1, &heartbeat(1)).unwrap();
        enc.push(1, &heartbeat(2)).unwrap();
        enc.push(u64::MAX, &heartbeat(3)).unwrap();
        enc.push(1, &heartbeat(4)).unwrap();
        assert_eq!(
            decode_groups(enc.take(), 1 << 20),
            vec![
                (1, vec![heartbeat(1), heartbeat(2)]),
                (u64::MAX, vec![heartbeat(3)]),
                (1, vec![heartbeat(4)]),
            ]
        );
    }

    #[test]
    fn a_frame_with_a_group_and_no_message_or_a_cut_group_is_refused() {
        // Group 5 alone.
        assert_eq!(decode_batch(&Frame::from(&[5u8][..])), Err(FrameError::Empty));
        // A group id whose varint marker promises eight bytes, then two.
        assert!(matches!(
            decode_batch(&Frame::from(&[253u8, 1, 2][..])),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn frames_split_at_target_and_never_exceed_max() {
        let max = 10_000;
        let mut enc = FrameEncoder::new(max, 4_000);
        let sent: Vec<_> = (0..10).map(|_| append(3_000)).collect();
        for m in &sent {
            enc.push(0, m).unwrap();
        }
        let frames = decode_all(enc.take(), max);
        assert!(frames.len() >= 5, "{} frames", frames.len());
        assert_eq!(frames.concat(), sent);
    }

    #[test]
    fn a_message_larger_than_a_frame_is_refused_and_the_rest_survive() {
        let mut enc = FrameEncoder::new(2_000, 2_000);
        enc.push(0, &heartbeat(1)).unwrap();
        let err = enc.push(0, &append(5_000)).unwrap_err();
        assert!(matches!(err, EncodeFailure::TooLarge { max: 2_000, .. }), "{err}");
        enc.push(0, &heartbeat(2)).unwrap();
        assert_eq!(
            decode_all(enc.take(), 2_000).concat(),
            vec![heartbeat(1), heartbeat(2)]
        );
        // A lone oversize message leaves no empty frame behind.
        let mut enc = FrameEncoder::new(2_000, 2_000);
        assert!(enc.push(0, &append(5_000)).is_err());
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
        enc.push(0, &small).unwrap();
        enc.push(0, &big).unwrap();
        enc.push(0, &small).unwrap();
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
        enc.push(0, &append(10)).unwrap();
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
            let mut data = SnapshotDataDecoder::new(len as u64 / 2);
            let mut input = Bytes::from(bytes.clone());
            let mut out = 0u64;
            while let Ok(Some(piece)) = data.decode(&mut input, 100) {
                out += piece.len() as u64;
            }
            assert!(out <= len as u64 / 2 && out == data.received());
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
        assert_eq!(MESSAGE_MAGIC, *b"RQM6", "version 6 greets with its number");
        assert_eq!(SNAPSHOT_MAGIC, *b"RQS6");
        let newer = encode_greeting(*b"RQM7", 1);
        let err = decode_greeting(&newer).unwrap_err();
        assert_eq!(
            err,
            FrameError::UnsupportedVersion {
                found: 7,
                expected: STREAM_VERSION
            }
        );
        assert!(
            err.to_string().contains("version 7, this node version 6"),
            "{err}"
        );
        assert_eq!(decode_snapshot_greeting(&SNAPSHOT_MAGIC), Ok(()));
        // A version 1 peer (acknowledged, resumable snapshots of announced length), a
        // version 2 one (entries without internal records), and a version 3 one (no
        // forwarded session records), a version 4 one (no quiescence), and a version 5
        // one (no group ids).
        for (greeting, found) in [
            (b"RQS1", 1),
            (b"RQS2", 2),
            (b"RQS3", 3),
            (b"RQS4", 4),
            (b"RQS5", 5),
        ] {
            assert_eq!(
                decode_snapshot_greeting(greeting),
                Err(FrameError::UnsupportedVersion {
                    found,
                    expected: STREAM_VERSION
                })
            );
        }
        assert_eq!(
            decode_snapshot_greeting(b"RQS8"),
            Err(FrameError::UnsupportedVersion {
                found: 8,
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

    /// The data section of a snapshot of `data` sent in frames of at most `frame` bytes.
    fn data_section(data: &[u8], frame: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in data.chunks(frame) {
            out.extend(encode_data_prefix(piece.len() as u32));
            out.extend(piece);
        }
        out.extend(encode_end_frame(data.len() as u64, crc32c::crc32c(data)));
        out
    }

    /// Feeds `section` to a decoder in pieces of `step` bytes, taking at most `max` bytes
    /// of data at a time; returns the data and how decoding ended.
    fn decode_data(
        section: &[u8],
        limit: u64,
        step: usize,
        max: usize,
    ) -> (Vec<u8>, Result<(), SnapshotDataError>) {
        let mut decoder = SnapshotDataDecoder::new(limit);
        let mut out = Vec::new();
        for piece in section.chunks(step) {
            let mut input = Bytes::copy_from_slice(piece);
            while !input.is_empty() {
                match decoder.decode(&mut input, max) {
                    Ok(Some(data)) => {
                        assert!(!data.is_empty() && data.len() <= max);
                        out.extend_from_slice(&data);
                    }
                    Ok(None) => assert!(input.is_empty()),
                    Err(e) => return (out, Err(e)),
                }
            }
        }
        assert_eq!(decoder.received(), out.len() as u64);
        let end = decoder.finish();
        assert_eq!(end.is_ok(), decoder.is_ended());
        (out, end)
    }

    #[test]
    fn snapshot_data_passes_through_in_any_cut() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for frame in [1, 100, 4096, 10_000] {
            let section = data_section(&data, frame);
            for step in [1, 3, 16, 1000, section.len()] {
                for max in [1, 777, usize::MAX] {
                    let (out, end) = decode_data(&section, 10_000, step, max);
                    assert_eq!(end, Ok(()), "frame {frame} step {step} max {max}");
                    assert_eq!(out, data);
                }
            }
        }
        // The empty snapshot: the end frame alone.
        assert_eq!(decode_data(&data_section(&[], 1), 0, 1, 1), (vec![], Ok(())));
        // Data is split off the input, not copied.
        let section = Bytes::from(data_section(b"abcdef", 6));
        let mut input = section.clone();
        let mut decoder = SnapshotDataDecoder::new(6);
        let piece = decoder.decode(&mut input, 100).unwrap().unwrap();
        assert_eq!(piece.as_ptr(), section[4..].as_ptr());
    }

    #[test]
    fn hostile_snapshot_data_is_named() {
        let data = b"snapshot bytes".to_vec();
        let good = data_section(&data, 5);
        let end_at = good.len() - END_FRAME_LEN;

        let mut wrong_crc = good.clone();
        wrong_crc[good.len() - 1] ^= 1;
        let (out, end) = decode_data(&wrong_crc, 100, 7, 100);
        assert_eq!(out, data, "the data was passed on before its end was checked");
        let err = end.unwrap_err();
        assert!(
            matches!(err, SnapshotDataError::CrcMismatch { received: 14, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("CRC-32C mismatch"), "{err}");

        let mut wrong_len = good[..end_at].to_vec();
        wrong_len.extend(encode_end_frame(15, crc32c::crc32c(&data)));
        let err = decode_data(&wrong_len, 100, 100, 100).1.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the end frame claims 15 bytes of data, but 14 arrived"
        );

        // A corrupted byte of data fails the checksum.
        let mut flipped = good.clone();
        flipped[5] ^= 0x80;
        assert!(matches!(
            decode_data(&flipped, 100, 100, 100).1,
            Err(SnapshotDataError::CrcMismatch { .. })
        ));

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode_data(&trailing, 100, 100, 100).1,
            Err(SnapshotDataError::AfterEnd { len: 1 })
        );

        for cut in [0, 2, 4, 6, end_at, end_at + 4, good.len() - 1] {
            let err = decode_data(&good[..cut], 100, 100, 100).1.unwrap_err();
            assert!(matches!(err, SnapshotDataError::Truncated { .. }), "{cut}: {err}");
        }
        assert_eq!(
            decode_data(&good[..end_at], 100, 100, 100)
                .1
                .unwrap_err()
                .to_string(),
            "the stream ended without an end frame, after 14 bytes of data"
        );

        let mut long = (MAX_DATA_FRAME as u32 + 1).to_le_bytes().to_vec();
        long.extend([0; 16]);
        let (out, end) = decode_data(&long, u64::MAX, 100, 100);
        assert!(out.is_empty());
        assert!(
            matches!(end, Err(SnapshotDataError::FrameTooLong { .. })),
            "{end:?}"
        );
    }

    #[test]
    fn snapshot_data_past_the_limit_is_refused_before_it_is_read() {
        let data = vec![9u8; 100];
        let section = data_section(&data, 40);
        // The third frame (20 bytes after 80) would pass 90: refused from its prefix.
        let (out, end) = decode_data(&section, 90, 1, 100);
        assert_eq!(out.len(), 80);
        let err = end.unwrap_err();
        assert_eq!(
            err,
            SnapshotDataError::TooLarge {
                limit: 90,
                received: 80,
                len: 20
            }
        );
        assert!(err.to_string().contains("exceeds the limit of 90 bytes"), "{err}");
        assert_eq!(decode_data(&section, 100, 1, 100).1, Ok(()));
        // A huge length claim near the top of u64 neither overflows nor passes.
        let mut decoder = SnapshotDataDecoder::new(u64::MAX);
        decoder.received = u64::MAX - 1;
        let mut input = Bytes::copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            decoder.decode(&mut input, 10),
            Err(SnapshotDataError::TooLarge { .. })
        ));
    }
}
