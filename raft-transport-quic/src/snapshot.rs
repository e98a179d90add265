//! Snapshot transfer: a stream from the sender's [`SnapshotStream`] to the receiving
//! node's, never held whole on either side.
//!
//! Each transfer has a QUIC connection of its own, separate from the message connection (a
//! bulk transfer sharing the message connection delays heartbeats by about a millisecond
//! on this machine), opened from a client-only endpoint with its own socket. The bytes are
//! described in [`crate::codec`].
//!
//! # Protocol
//!
//! 1. The sender announces the transfer with the protocol message alone: it reads its
//!    snapshot as it sends it, so the length is not known before the end. The receiver
//!    refuses the announcement (its node is not ready, the message is not a snapshot
//!    message, or names another sender than the authenticated peer) or accepts it.
//! 2. The sender reads its [`SnapshotStream`] a chunk at a time and writes each chunk as
//!    length-prefixed data frames of at most [`Limits::snapshot_chunk_size`], then an end
//!    frame carrying the total length and the CRC-32C of all the data, computed as it went.
//!    QUIC stream flow control is the back-pressure: the sender reads its source only as
//!    fast as the receiving node takes the data. A write that makes no progress for the
//!    progress timeout fails the transfer. If reading the source fails, the sender resets
//!    the stream (so the receiver's stream ends in an error), waits a moment (at most
//!    [`Tuning::handshake_timeout`]) for the receiver to answer, so that the reset is not
//!    overtaken by the connection's close, and returns an error.
//! 3. The receiver hands its node a [`SnapshotStream`] read from the QUIC stream as the
//!    data arrives (in chunks of at most [`Limits::snapshot_chunk_size`]) and awaits the
//!    node's verdict ([`Inbox::deliver_snapshot`]). The stream ends with an
//!    [`io::Error`] of kind [`io::ErrorKind::InvalidData`], naming what was wrong, when: a
//!    frame is malformed; the data would exceed [`Limits::max_snapshot_size`] (refused at
//!    the frame header, before holding more than the limit); the end frame's length or
//!    CRC-32C is not that of the data that arrived; the stream ends without an end frame,
//!    or has bytes after it; the sender resets the stream or the connection is lost; no
//!    byte arrives for the progress timeout; or the reception is cancelled (a newer
//!    transfer from the same peer supersedes it, the peer is removed from the membership,
//!    or the transport shuts down). The receiver then also stops reading, so the sender's
//!    writes fail at once and it waits for the verdict instead.
//! 4. The node reads the stream to its end, storing it as it goes, and answers; the
//!    receiver sends the sender `Done` if the node took the snapshot, or `Refused` with the
//!    node's reason (which names the stream's error when there was one). The sender waits
//!    up to [`Limits::snapshot_accept_timeout`] for it once it has sent everything.
//!
//! One attempt per call: a transfer that breaks makes
//! [`send_snapshot`](raft_runtime::Transport::send_snapshot) return an error, and the
//! runtime sends the snapshot again later with a fresh stream. Nothing of a broken
//! transfer is kept. The progress timeout, on both sides, is twice
//! [`Tuning::idle_timeout`] (20 s by default).
//!
//! # Memory
//!
//! A reception holds at most what QUIC buffers for its stream, which is bounded by the
//! stream receive window that the receiving node grants on the connection
//! ([`Tuning::stream_window`], 8 MiB by default; the connection window,
//! [`Tuning::connection_window`], is larger, and the connection carries only this stream),
//! plus one chunk ([`Limits::snapshot_chunk_size`], 1 MiB by default) gathered to hand to
//! the node, whatever the snapshot's size: about 9 MiB by default. (The announcement, a
//! control frame of at most 1 MiB, is read and dropped before any data.) QUIC grants the
//! sender more window only as the node reads, so a node that stores slowly slows the
//! sender instead of growing a buffer. A node receives at most one snapshot per peer at a
//! time (a newer transfer from the same peer supersedes the one in progress), so at most
//! one such reception per member at once.
//!
//! A sender holds the chunk it read from its source, plus the data QUIC keeps until the
//! receiver acknowledges it: at most the receiver's stream window (and at most
//! [`Tuning::send_window`]).
//!
//! [`Limits::snapshot_chunk_size`]: crate::Limits::snapshot_chunk_size
//! [`Limits::max_snapshot_size`]: crate::Limits::max_snapshot_size
//! [`Limits::snapshot_accept_timeout`]: crate::Limits::snapshot_accept_timeout
//! [`Tuning::idle_timeout`]: crate::Tuning::idle_timeout
//! [`Tuning::handshake_timeout`]: crate::Tuning::handshake_timeout
//! [`Tuning::stream_window`]: crate::Tuning::stream_window
//! [`Tuning::connection_window`]: crate::Tuning::connection_window
//! [`Tuning::send_window`]: crate::Tuning::send_window
//! [`Inbox::deliver_snapshot`]: raft_runtime::Inbox::deliver_snapshot

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use quinn::{Chunk, Connection, ReadError, RecvStream, SendStream, WriteError};
use raft_core::{Message, MessageBody, NodeId};
use raft_runtime::{GroupId, SnapshotStream, TransportError};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::codec::{
    Frame, FrameDecoder, FrameError, MAX_CONTROL_FRAME, SNAPSHOT_MAGIC, SnapshotDataDecoder, SnapshotHeader,
    SnapshotReply, decode_control, decode_snapshot_greeting, encode_control, encode_data_prefix,
    encode_end_frame,
};
use crate::endpoint::close;
use crate::identity::node_name;
use crate::link::resolve;
use crate::stream::{read_error, read_frame};
use crate::transport::{Counters, Shared};

/// The QUIC stream error codes of a snapshot stream.
pub(crate) mod code {
    use quinn::VarInt;

    /// Reset by the sender: reading its snapshot failed, the transfer is abandoned.
    pub(crate) const SOURCE_FAILED: VarInt = VarInt::from_u32(1);
    /// Reset by the sender: it gave up (a write made no progress in time, or the receiver
    /// answered before the end).
    pub(crate) const ABANDONED: VarInt = VarInt::from_u32(2);
    /// Stopped by the receiver: the data failed a check or the reception ended early; the
    /// verdict of its node follows on the reply stream.
    pub(crate) const STOPPED: VarInt = VarInt::from_u32(3);
}

/// Why a transfer failed, on the sending side.
enum Failure {
    /// The receiver (or its node) said no.
    Refused(String),
    /// The transfer broke.
    Broken(String),
    /// Reading the snapshot's data failed.
    Source(String),
}

fn broken(e: impl std::fmt::Display) -> Failure {
    Failure::Broken(e.to_string())
}

/// How long either side waits for the other to make progress: a write that takes no byte,
/// a read that gets none.
fn progress_timeout(shared: &Shared) -> Duration {
    shared.tuning.idle_timeout.saturating_mul(2)
}

/// Sends a snapshot to `to`, reading `data` as the peer takes it, and returns once its
/// node took it. One attempt.
pub(crate) async fn send(
    shared: &Arc<Shared>,
    to: NodeId,
    group: GroupId,
    message: Message,
    mut data: SnapshotStream,
) -> Result<(), TransportError> {
    if shared.shutdown.is_cancelled() {
        return Err(TransportError::Closed);
    }
    let peer = shared.peer(to).ok_or(TransportError::UnknownPeer(to))?;
    let address = peer.address().ok_or(TransportError::UnknownPeer(to))?;
    let outcome = tokio::select! {
        _ = shared.shutdown.cancelled() => return Err(TransportError::Closed),
        outcome = attempt(shared, to, &address, SnapshotHeader { group, message }, &mut data) => outcome,
    };
    match outcome {
        Ok(()) => {
            Counters::add(&shared.counters.snapshots_sent, 1);
            Ok(())
        }
        Err(Failure::Refused(reason)) => Err(TransportError::Refused { peer: to, reason }),
        Err(Failure::Broken(reason)) => {
            tracing::debug!(
                node = shared.node_id,
                peer = to,
                "snapshot transfer failed: {reason}"
            );
            Err(TransportError::Unreachable {
                peer: to,
                reason: format!("snapshot transfer failed: {reason}"),
            })
        }
        Err(Failure::Source(reason)) => Err(TransportError::Unreachable {
            peer: to,
            reason: format!("reading the snapshot to send failed, transfer abandoned: {reason}"),
        }),
    }
}

async fn attempt(
    shared: &Shared,
    to: NodeId,
    address: &str,
    header: SnapshotHeader,
    data: &mut SnapshotStream,
) -> Result<(), Failure> {
    let endpoint = &shared.snapshot_endpoint;
    let remote = resolve(address, endpoint.local_addr().ok())
        .await
        .map_err(Failure::Broken)?;
    let connecting = endpoint
        .connect_with(shared.client_snapshots.clone(), remote, &node_name(to))
        .map_err(broken)?;
    let conn = timeout(shared.tuning.handshake_timeout, connecting)
        .await
        .map_err(|_| Failure::Broken(format!("handshake with {remote} timed out")))?
        .map_err(broken)?;
    let result = transfer(shared, &conn, header, data).await;
    let reason: &[u8] = match &result {
        Ok(()) => b"done",
        Err(Failure::Source(_)) => b"the sender could not read its snapshot",
        Err(_) => b"transfer failed",
    };
    conn.close(close::SNAPSHOT_DONE, reason);
    result
}

async fn read_reply(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> Result<SnapshotReply, Failure> {
    match read_frame(recv, decoder).await {
        Ok(Some(payload)) => decode_control(&payload).map_err(broken),
        Ok(None) => Err(Failure::Broken("the receiver closed the stream".into())),
        Err(e) => Err(broken(e)),
    }
}

/// Why writing the data stopped.
enum WriteFailure {
    /// Reading the source failed.
    Source(String),
    /// A write made no progress in time.
    Stalled,
    /// The receiver stopped reading, or the connection broke.
    Write(String),
}

fn write_error(e: &WriteError) -> String {
    match e {
        WriteError::Stopped(code) => format!("the receiver stopped reading (code {code})"),
        WriteError::ConnectionLost(e) => format!("connection lost: {e}"),
        other => other.to_string(),
    }
}

/// Writes `bufs` in order, failing if a write takes no byte for `progress`.
async fn write_all(
    send: &mut SendStream,
    bufs: &mut [Bytes],
    progress: Duration,
) -> Result<(), WriteFailure> {
    let mut at = 0;
    while at < bufs.len() {
        if bufs[at].is_empty() {
            at += 1;
            continue;
        }
        let written = timeout(progress, send.write_chunks(&mut bufs[at..]))
            .await
            .map_err(|_| WriteFailure::Stalled)?
            .map_err(|e| WriteFailure::Write(write_error(&e)))?;
        at += written.chunks;
    }
    Ok(())
}

/// Writes the data section: `data` read a chunk at a time, in frames of at most `frame`
/// bytes, then the end frame; finishes the stream.
async fn write_data(
    send: &mut SendStream,
    data: &mut SnapshotStream,
    frame: usize,
    progress: Duration,
) -> Result<(), WriteFailure> {
    let mut total = 0u64;
    let mut crc = 0u32;
    while let Some(mut chunk) = data
        .next_chunk()
        .await
        .map_err(|e| WriteFailure::Source(e.to_string()))?
    {
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(frame));
            crc = crc32c::crc32c_append(crc, &piece);
            total = total.saturating_add(piece.len() as u64);
            let len = u32::try_from(piece.len()).expect("validated: snapshot_chunk_size is at most 64 MiB");
            let mut bufs = [Bytes::copy_from_slice(&encode_data_prefix(len)), piece];
            write_all(send, &mut bufs, progress).await?;
        }
    }
    let mut end = [Bytes::copy_from_slice(&encode_end_frame(total, crc))];
    write_all(send, &mut end, progress).await?;
    send.finish().map_err(|e| WriteFailure::Write(e.to_string()))
}

async fn transfer(
    shared: &Shared,
    conn: &Connection,
    header: SnapshotHeader,
    data: &mut SnapshotStream,
) -> Result<(), Failure> {
    let handshake = shared.tuning.handshake_timeout;
    let (mut send, mut recv) = conn.open_bi().await.map_err(broken)?;
    let mut announcement = [Bytes::from_static(&SNAPSHOT_MAGIC), encode_control(&header)];
    match write_all(&mut send, &mut announcement, handshake).await {
        Ok(()) => {}
        Err(WriteFailure::Write(e)) | Err(WriteFailure::Source(e)) => return Err(Failure::Broken(e)),
        Err(WriteFailure::Stalled) => {
            return Err(Failure::Broken("could not send the announcement in time".into()));
        }
    }
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    let first = timeout(handshake, read_reply(&mut recv, &mut decoder))
        .await
        .map_err(|_| Failure::Broken("no answer to the snapshot announcement in time".into()))??;
    match first {
        SnapshotReply::Accept => {}
        SnapshotReply::Refused { reason } => return Err(Failure::Refused(reason)),
        SnapshotReply::Done => {
            return Err(Failure::Broken(
                "the receiver answered Done before any data".into(),
            ));
        }
    }

    let progress = progress_timeout(shared);
    let accept = shared.limits.snapshot_accept_timeout;
    // The receiver answers early only to refuse (its node read an error from the stream, or
    // answered before the end): watch for that while writing. Reading a reply is
    // cancel-safe (a reply partly read stays in `decoder`), so the writing may finish
    // first; a reply that comes first ends the writing where it is.
    let written = tokio::select! {
        biased;
        written = write_data(&mut send, data, shared.limits.snapshot_chunk_size, progress) => written,
        reply = read_reply(&mut recv, &mut decoder) => {
            let _ = send.reset(code::ABANDONED);
            return match reply? {
                SnapshotReply::Refused { reason } => Err(Failure::Refused(reason)),
                other => Err(Failure::Broken(format!("unexpected reply {other:?} before the snapshot's end"))),
            };
        }
    };
    match written {
        Ok(()) => {}
        Err(WriteFailure::Source(e)) => {
            let _ = send.reset(code::SOURCE_FAILED);
            // QUIC delivers the reset reliably, but not once the connection is closed (and
            // a close can be lost): wait, a bounded time, for the receiver's node to have
            // read the error and answered, before closing.
            let _ = timeout(
                shared.tuning.handshake_timeout,
                read_reply(&mut recv, &mut decoder),
            )
            .await;
            return Err(Failure::Source(e));
        }
        Err(WriteFailure::Stalled) => {
            let _ = send.reset(code::ABANDONED);
            return Err(Failure::Broken(format!(
                "no progress writing the snapshot for {progress:?}: the receiver stopped reading"
            )));
        }
        Err(WriteFailure::Write(e)) => {
            // The receiver stopped reading, and tells why; or the connection broke.
            return match timeout(accept, read_reply(&mut recv, &mut decoder)).await {
                Ok(Ok(SnapshotReply::Refused { reason })) => Err(Failure::Refused(reason)),
                _ => Err(Failure::Broken(format!("writing the snapshot failed: {e}"))),
            };
        }
    }
    match timeout(accept, read_reply(&mut recv, &mut decoder)).await {
        Err(_) => Err(Failure::Broken(format!(
            "the receiver's node did not take the snapshot within {accept:?}"
        ))),
        Ok(Ok(SnapshotReply::Done)) => Ok(()),
        Ok(Ok(SnapshotReply::Refused { reason })) => Err(Failure::Refused(reason)),
        Ok(Ok(SnapshotReply::Accept)) => {
            Err(Failure::Broken("unexpected reply Accept after the data".into()))
        }
        Ok(Err(failure)) => Err(failure),
    }
}

/// One snapshot reception, and why it was cancelled if it was.
#[derive(Clone, Debug)]
pub(crate) struct Reception {
    /// A child of the transport's shutdown token.
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Reception {
    fn new(shutdown: &CancellationToken) -> Reception {
        Reception {
            token: shutdown.child_token(),
            reason: Arc::default(),
        }
    }

    /// Ends the reception: its stream ends with an error naming `reason`.
    fn cancel(&self, reason: String) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.token.cancel();
    }

    fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why it was cancelled.
    fn why(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "the receiving transport shut down".into())
    }
}

/// Serialises the snapshot receptions from one peer. A new transfer from a peer
/// supersedes the one in progress (the sender gave up on it): the old reception's stream
/// ends with an error, its node answers, and it releases the slot.
#[derive(Debug, Default)]
pub(crate) struct ReceiveSlot {
    busy: tokio::sync::Mutex<()>,
    current: Mutex<Option<Reception>>,
}

impl ReceiveSlot {
    /// Cancels the reception in progress, if any, with `reason`.
    pub(crate) fn cancel(&self, reason: String) {
        if let Some(current) = self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            current.cancel(reason);
        }
    }
}

/// How a snapshot reception ended.
enum Received {
    /// The node took it and the sender was told.
    Delivered,
    /// The sender was told why not.
    Refused(String),
}

/// Receives one snapshot on an accepted snapshot connection.
pub(crate) async fn receive(shared: Arc<Shared>, conn: Connection, from: NodeId) {
    let slot = shared
        .receive_slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(from)
        .or_default()
        .clone();
    let reception = Reception::new(&shared.shutdown);
    let previous = slot
        .current
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(reception.clone());
    if let Some(previous) = previous {
        previous.cancel(format!("superseded by a newer transfer from node {from}"));
    }
    let result = {
        // The previous reception's stream ends at once, and its node answers; unless that
        // node is busy taking a complete snapshot.
        let Ok(_busy) = timeout(shared.tuning.handshake_timeout * 2, slot.busy.lock()).await else {
            tracing::warn!(
                node = shared.node_id,
                peer = from,
                "another snapshot from this peer is being installed"
            );
            conn.close(close::SNAPSHOT_DONE, b"busy");
            return;
        };
        receive_inner(&shared, &conn, from, &reception).await
    };
    match result {
        Ok(received) => {
            match received {
                Received::Delivered => {
                    tracing::debug!(node = shared.node_id, peer = from, "snapshot received")
                }
                Received::Refused(reason) => {
                    tracing::warn!(node = shared.node_id, peer = from, "snapshot refused: {reason}")
                }
            }
            // Let the sender read the verdict and close the connection itself.
            let _ = timeout(Duration::from_secs(5), conn.closed()).await;
        }
        Err(e) => {
            tracing::warn!(node = shared.node_id, peer = from, "snapshot not received: {e}");
            conn.close(close::SNAPSHOT_DONE, b"transfer failed");
        }
    }
}

async fn reply(shared: &Shared, send: &mut SendStream, reply: &SnapshotReply) -> Result<(), String> {
    match timeout(
        shared.tuning.handshake_timeout,
        send.write_chunk(encode_control(reply)),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(write_error(&e)),
        Err(_) => Err("the sender does not read the replies".into()),
    }
}

async fn refuse(shared: &Shared, send: &mut SendStream, reason: String) -> Result<Received, String> {
    let refusal = SnapshotReply::Refused {
        reason: reason.clone(),
    };
    if let Err(e) = self::reply(shared, send, &refusal).await {
        return Err(format!("{reason}; the sender could not be told: {e}"));
    }
    let _ = send.finish();
    Ok(Received::Refused(reason))
}

/// Why the announcement could not be read.
enum Unannounced {
    /// The peer does not speak this protocol (or this version of it).
    Protocol(String),
    /// The stream failed.
    Stream(String),
}

/// Reads the greeting and the announcement, and nothing after them.
async fn read_announcement(recv: &mut RecvStream) -> Result<SnapshotHeader, Unannounced> {
    let stream = |e: quinn::ReadExactError| {
        Unannounced::Stream(match e {
            quinn::ReadExactError::ReadError(e) => read_error(&e),
            other => other.to_string(),
        })
    };
    let protocol = |e: FrameError| Unannounced::Protocol(format!("snapshot stream: {e}"));
    let mut magic = [0u8; 4];
    recv.read_exact(&mut magic).await.map_err(stream)?;
    decode_snapshot_greeting(&magic).map_err(protocol)?;
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.map_err(stream)?;
    let len = usize::try_from(u32::from_le_bytes(prefix)).unwrap_or(usize::MAX);
    if len > MAX_CONTROL_FRAME {
        return Err(protocol(FrameError::Oversize {
            len,
            max: MAX_CONTROL_FRAME,
        }));
    }
    if len == 0 {
        return Err(protocol(FrameError::Empty));
    }
    let mut payload = vec![0; len];
    recv.read_exact(&mut payload).await.map_err(stream)?;
    decode_control(&Frame::from(&payload[..])).map_err(protocol)
}

async fn receive_inner(
    shared: &Arc<Shared>,
    conn: &Connection,
    from: NodeId,
    reception: &Reception,
) -> Result<Received, String> {
    let handshake = shared.tuning.handshake_timeout;
    let (mut send, mut recv) = timeout(handshake, conn.accept_bi())
        .await
        .map_err(|_| "no snapshot stream opened in time".to_string())?
        .map_err(|e| e.to_string())?;
    let header = match timeout(handshake, read_announcement(&mut recv)).await {
        Err(_) => return Err("no snapshot announcement in time".into()),
        Ok(Err(Unannounced::Stream(e))) => return Err(e),
        Ok(Err(Unannounced::Protocol(reason))) => {
            conn.close(close::PROTOCOL, reason.as_bytes());
            return Err(reason);
        }
        Ok(Ok(header)) => header,
    };
    let inbox = shared.inbox.get().cloned();
    let refusal = if inbox.is_none() {
        Some("the node is not ready to receive".to_string())
    } else if header.message.from != from {
        Some(format!(
            "the snapshot message claims sender {} but the peer is node {from}",
            header.message.from
        ))
    } else if !matches!(header.message.body, MessageBody::Snapshot(_)) {
        Some(format!(
            "a {} message does not announce a snapshot",
            header.message.kind()
        ))
    } else if reception.is_cancelled() {
        Some(reception.why())
    } else {
        None
    };
    if let Some(reason) = refusal {
        return refuse(shared, &mut send, reason).await;
    }
    let inbox = inbox.expect("checked above");
    reply(shared, &mut send, &SnapshotReply::Accept).await?;
    let data = Receiving {
        recv,
        decoder: SnapshotDataDecoder::new(shared.limits.max_snapshot_size),
        pending: Bytes::new(),
        chunk: shared.limits.snapshot_chunk_size,
        progress: progress_timeout(shared),
        reception: reception.clone(),
        #[cfg(test)]
        fault: {
            use std::sync::atomic::Ordering;
            let at = shared.snapshot_fault.swap(0, Ordering::Relaxed);
            (at > 0).then(|| (at, conn.clone()))
        },
    };
    match inbox
        .deliver_snapshot(from, header.group, header.message, data.into_stream())
        .await
    {
        Ok(()) => {
            Counters::add(&shared.counters.snapshots_received, 1);
            reply(shared, &mut send, &SnapshotReply::Done).await?;
            let _ = send.finish();
            Ok(Received::Delivered)
        }
        // The wire carries the node's reason as text.
        Err(reason) => refuse(shared, &mut send, reason.to_string()).await,
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The receiving end of a transfer, read by the node as a [`SnapshotStream`].
struct Receiving {
    recv: RecvStream,
    decoder: SnapshotDataDecoder,
    /// Bytes read from `recv` and not yet decoded.
    pending: Bytes,
    /// The most data handed to the node at once.
    chunk: usize,
    progress: Duration,
    reception: Reception,
    /// Test hook: close the connection once this many bytes of data arrived.
    #[cfg(test)]
    fault: Option<(u64, Connection)>,
}

impl Receiving {
    /// The node's stream: each chunk as it arrives; an error ends it, and stops the QUIC
    /// stream so that the sender stops writing.
    fn into_stream(self) -> SnapshotStream {
        SnapshotStream::new(futures::stream::try_unfold(self, |mut receiving| async move {
            match receiving.next_chunk().await {
                Ok(Some(chunk)) => Ok(Some((chunk, receiving))),
                Ok(None) => Ok(None),
                Err(e) => {
                    let _ = receiving.recv.stop(code::STOPPED);
                    Err(e)
                }
            }
        }))
    }

    /// The next chunk of data: what arrived, up to `chunk` bytes, waiting only while
    /// nothing has; `None` after a complete, intact snapshot.
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let mut out = BytesMut::new();
        loop {
            // What was read: frame headers checked, data gathered, up to a chunk.
            while !self.pending.is_empty() && out.len() < self.chunk {
                let room = self.chunk - out.len();
                if let Some(data) = self.decoder.decode(&mut self.pending, room).map_err(invalid)? {
                    if out.is_empty() {
                        out.reserve(self.chunk);
                    }
                    out.extend_from_slice(&data);
                }
            }
            #[cfg(test)]
            self.inject_fault();
            if out.len() >= self.chunk {
                return Ok(Some(out.freeze()));
            }
            // Everything read was decoded (the decoded data never exceeds what was read,
            // so `out` and `pending` together stay within a chunk). Read more; if some data
            // is gathered, hand it on rather than wait.
            let want = self.chunk - out.len();
            let read = if out.is_empty() {
                self.read(want).await?
            } else {
                if self.reception.is_cancelled() {
                    return Err(self.cancelled());
                }
                match self.recv.read_chunk(want, true).now_or_never() {
                    Some(read) => self.map_read(read)?,
                    None => return Ok(Some(out.freeze())),
                }
            };
            match read {
                Some(bytes) => self.pending = bytes,
                None => {
                    self.decoder.finish().map_err(invalid)?;
                    return Ok((!out.is_empty()).then(|| out.freeze()));
                }
            }
        }
    }

    /// Waits for bytes: `None` when the sender finished the stream.
    async fn read(&mut self, want: usize) -> io::Result<Option<Bytes>> {
        let read = tokio::select! {
            biased;
            _ = self.reception.token.cancelled() => return Err(self.cancelled()),
            read = timeout(self.progress, self.recv.read_chunk(want, true)) => read,
        };
        match read {
            Ok(read) => self.map_read(read),
            Err(_) => Err(invalid(format!(
                "no data from the sender for {:?}, after {} bytes",
                self.progress,
                self.decoder.received()
            ))),
        }
    }

    fn map_read(&self, read: Result<Option<Chunk>, ReadError>) -> io::Result<Option<Bytes>> {
        let received = self.decoder.received();
        match read {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(ReadError::Reset(c)) => Err(invalid(match c {
                code::SOURCE_FAILED => format!(
                    "the sender could not read its snapshot and abandoned the transfer, after {received} bytes"
                ),
                code::ABANDONED => format!("the sender abandoned the transfer, after {received} bytes"),
                c => format!("the sender reset the stream (code {c}), after {received} bytes"),
            })),
            Err(e) => Err(invalid(format!(
                "the transfer broke after {received} bytes: {}",
                read_error(&e)
            ))),
        }
    }

    fn cancelled(&self) -> io::Error {
        invalid(format!("the reception was cancelled: {}", self.reception.why()))
    }

    #[cfg(test)]
    fn inject_fault(&mut self) {
        if let Some((at, conn)) = &self.fault {
            if self.decoder.received() >= *at {
                conn.close(close::SNAPSHOT_DONE, b"injected fault");
                self.fault = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;
    use std::time::Duration;

    use bytes::Bytes;
    use raft_core::{ConfState, Message, MessageBody, SnapshotMeta};
    use raft_runtime::{DeliverSnapshotError, Inbox, Incoming, SnapshotStream, Transport, TransportError};
    use tokio::sync::mpsc;

    use crate::codec::{
        FrameDecoder, MAX_CONTROL_FRAME, MAX_DATA_FRAME, SNAPSHOT_MAGIC, SnapshotHeader, SnapshotReply,
        decode_control, encode_control, encode_data_prefix, encode_end_frame,
    };
    use crate::identity::node_name;
    use crate::stream::read_frame;
    use crate::{DevCa, QuicConfig, QuicTransport};

    /// Generous: this is a loaded 2-core machine.
    const DEADLINE: Duration = Duration::from_secs(60);
    const MIB: usize = 1 << 20;

    /// What the test node saw of one snapshot: the bytes it read, and their CRC-32C or the
    /// error the stream ended with.
    #[derive(Debug)]
    struct Seen {
        len: u64,
        end: Result<u32, io::Error>,
    }

    impl Seen {
        fn error(&self) -> String {
            match &self.end {
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                    e.to_string()
                }
                Ok(crc) => panic!("the stream ended well ({} bytes, CRC {crc:08x})", self.len),
            }
        }
    }

    /// Node 1 (sender) and node 2 (receiver). Node 2's "runtime" reads each snapshot to its
    /// end as a real one does, answers as a real one does (`NotStored` when the stream ends
    /// in an error), and reports what it saw.
    async fn pair(
        adjust: impl Fn(&mut QuicConfig),
    ) -> (QuicTransport, QuicTransport, mpsc::UnboundedReceiver<Seen>) {
        let ca = DevCa::generate().unwrap();
        let mut nodes = Vec::new();
        for id in [1, 2] {
            let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), ca.node_tls(id).unwrap());
            config.tuning.handshake_timeout = Duration::from_secs(10);
            adjust(&mut config);
            nodes.push(QuicTransport::bind(config).await.unwrap());
        }
        let peers: BTreeMap<_, Bytes> = nodes
            .iter()
            .map(|n| (n.node_id(), Bytes::from(n.local_addr().to_string())))
            .collect();
        for n in &nodes {
            n.set_peers(peers.clone());
        }
        let (inbox, mut rx) = Inbox::channel(16);
        nodes[1].register(2, 0, inbox).unwrap();
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                let Incoming::Snapshot { mut data, ack, .. } = incoming else {
                    continue;
                };
                let (mut len, mut crc) = (0u64, 0u32);
                let end = loop {
                    match data.next_chunk().await {
                        Ok(Some(chunk)) => {
                            len += chunk.len() as u64;
                            crc = crc32c::crc32c_append(crc, &chunk);
                        }
                        Ok(None) => break Ok(crc),
                        Err(e) => break Err(e),
                    }
                };
                let _ = ack.send(match &end {
                    Ok(_) => Ok(()),
                    Err(e) => Err(DeliverSnapshotError::NotStored(e.to_string())),
                });
                let _ = seen_tx.send(Seen { len, end });
            }
        });
        let receiver = nodes.pop().unwrap();
        (nodes.pop().unwrap(), receiver, seen_rx)
    }

    async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("timed out waiting for the node to read a snapshot")
            .expect("the node is running")
    }

    fn message() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Snapshot(Box::new(SnapshotMeta {
                index: 10,
                term: 1,
                conf_state: ConfState::with_voters([1, 2]),
            })),
        }
    }

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8 ^ (i >> 12) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    /// `data` as a stream of chunks of `size` bytes, as a store reading a file hands it.
    fn chunked(data: &Bytes, size: usize) -> SnapshotStream {
        let chunks: Vec<io::Result<Bytes>> = (0..data.len())
            .step_by(size)
            .map(|at| Ok(data.slice(at..(at + size).min(data.len()))))
            .collect();
        SnapshotStream::new(futures::stream::iter(chunks))
    }

    async fn send(t: &QuicTransport, data: SnapshotStream) -> Result<(), TransportError> {
        tokio::time::timeout(DEADLINE, t.send_snapshot(2, 0, message(), data))
            .await
            .expect("send_snapshot returns")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transfer_broken_part_way_fails_on_both_sides_and_the_next_one_succeeds() {
        let (sender, receiver, mut rx) = pair(|_| {}).await;
        let data = pattern(8 * MIB, 1);
        // The receiver loses the connection once 3 MiB of the 8 arrived.
        receiver.inject_snapshot_fault(3 << 20);
        let err = send(&sender, chunked(&data, 256 << 10)).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::Unreachable { peer: 2, .. }),
            "{err}"
        );
        let broken = seen(&mut rx).await;
        assert!(broken.len < data.len() as u64, "{broken:?}");
        let message = broken.error();
        assert!(message.contains("the transfer broke after"), "{message}");

        // The next call sends it all again, and it arrives intact.
        send(&sender, chunked(&data, 256 << 10)).await.unwrap();
        let whole = seen(&mut rx).await;
        assert_eq!(whole.len, data.len() as u64);
        assert_eq!(whole.end.unwrap(), crc32c::crc32c(&data));
        assert_eq!(sender.stats().snapshots_sent, 1);
        assert_eq!(receiver.stats().snapshots_received, 1);
        sender.shutdown().await;
        receiver.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_that_fails_part_way_fails_the_transfer_on_both_sides() {
        let (sender, receiver, mut rx) = pair(|_| {}).await;
        let chunk = pattern(MIB, 2);
        let source = SnapshotStream::new(futures::stream::iter(vec![
            Ok(chunk.clone()),
            Ok(chunk.clone()),
            Ok(chunk),
            Err(io::Error::other("disk gone")),
        ]));
        let err = send(&sender, source).await.unwrap_err();
        match &err {
            TransportError::Unreachable { peer: 2, reason } => {
                assert!(reason.contains("disk gone"), "{reason}")
            }
            other => panic!("{other}"),
        }
        // The node read at most what was sent, then an error; it stored nothing.
        let failed = seen(&mut rx).await;
        assert!(failed.len <= 3 << 20, "{failed:?}");
        let message = failed.error();
        assert!(message.contains("could not read its snapshot"), "{message}");
        assert_eq!(receiver.stats().snapshots_received, 0);

        // A source that fails before its first byte too.
        let source = SnapshotStream::new(futures::stream::iter(vec![Err(io::Error::other("no file"))]));
        let err = send(&sender, source).await.unwrap_err();
        assert!(err.to_string().contains("no file"), "{err}");
        assert_eq!(seen(&mut rx).await.len, 0);
        sender.shutdown().await;
        receiver.shutdown().await;
    }

    /// Sends `section` as the data section of a transfer from node 1 to node 2, by hand,
    /// as a hostile member would; returns the receiver's verdict.
    async fn raw_transfer(sender: &QuicTransport, receiver: &QuicTransport, section: &[u8]) -> SnapshotReply {
        let shared = sender.shared();
        let conn = shared
            .snapshot_endpoint
            .connect_with(
                shared.client_snapshots.clone(),
                receiver.local_addr(),
                &node_name(2),
            )
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&SNAPSHOT_MAGIC).await.unwrap();
        send.write_all(&encode_control(&SnapshotHeader {
            group: 0,
            message: message(),
        }))
        .await
        .unwrap();
        let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
        let mut reply = async || {
            let frame = tokio::time::timeout(DEADLINE, read_frame(&mut recv, &mut decoder))
                .await
                .expect("a reply in time")
                .expect("a reply")
                .expect("a reply frame");
            decode_control::<SnapshotReply>(&frame).unwrap()
        };
        assert_eq!(reply().await, SnapshotReply::Accept);
        // The receiver may stop reading before the end.
        let _ = send.write_all(section).await;
        let _ = send.finish();
        let verdict = reply().await;
        conn.close(0u32.into(), b"done");
        verdict
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = encode_data_prefix(data.len() as u32).to_vec();
        out.extend(data);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_data_sections_are_named_and_refused() {
        let (sender, receiver, mut rx) = pair(|c| c.limits.max_snapshot_size = 1000).await;
        let data = b"the state of the machine".as_slice();
        let crc = crc32c::crc32c(data);
        let len = data.len() as u64;
        let frames = [frame(&data[..10]), frame(&data[10..])].concat();
        let with_end =
            |total: u64, crc: u32| [frames.clone(), encode_end_frame(total, crc).to_vec()].concat();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "wrong CRC",
                with_end(len, crc ^ 1),
                "CRC-32C mismatch: the end frame gives",
            ),
            (
                "wrong length",
                with_end(len + 1, crc),
                "the end frame claims 25 bytes of data, but 24 arrived",
            ),
            (
                "a byte after the end frame",
                [with_end(len, crc), vec![0]].concat(),
                "bytes after the end frame",
            ),
            (
                "no end frame",
                frames.clone(),
                "the stream ended without an end frame, after 24 bytes of data",
            ),
            (
                "the stream ends inside a frame",
                frames[..frames.len() - 3].to_vec(),
                "(inside a frame)",
            ),
            (
                "a frame over 64 MiB",
                ((MAX_DATA_FRAME + 1) as u32).to_le_bytes().to_vec(),
                "exceeds the limit of 67108864 bytes per frame",
            ),
            (
                "past max_snapshot_size",
                [frames.clone(), frame(&[7; 990])].concat(),
                "the snapshot exceeds the limit of 1000 bytes (max_snapshot_size): a frame of 990 more bytes after 24",
            ),
        ];
        for (case, section, expected) in cases {
            let verdict = raw_transfer(&sender, &receiver, &section).await;
            let seen = seen(&mut rx).await;
            let message = seen.error();
            assert!(message.contains(expected), "{case}: {message}");
            assert!(seen.len <= 1000, "{case}: the node read {} bytes", seen.len);
            match verdict {
                SnapshotReply::Refused { reason } => assert!(
                    reason.contains("was not stored") && reason.contains(expected),
                    "{case}: {reason}"
                ),
                other => panic!("{case}: {other:?}"),
            }
        }
        // The same stream, intact, is taken.
        assert_eq!(
            raw_transfer(&sender, &receiver, &with_end(len, crc)).await,
            SnapshotReply::Done
        );
        assert_eq!(seen(&mut rx).await.end.unwrap(), crc);
        assert_eq!(receiver.stats().snapshots_received, 1);
        sender.shutdown().await;
        receiver.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_past_max_snapshot_size_is_refused_before_it_is_held() {
        let (sender, receiver, mut rx) = pair(|c| {
            c.limits.max_snapshot_size = MIB as u64;
            c.limits.snapshot_chunk_size = 64 << 10;
        })
        .await;
        let data = pattern(3 * MIB, 3);
        let err = send(&sender, chunked(&data, 64 << 10)).await.unwrap_err();
        match &err {
            TransportError::Refused { peer: 2, reason } => {
                assert!(reason.contains("exceeds the limit of 1048576 bytes"), "{reason}")
            }
            other => panic!("{other}"),
        }
        let refused = seen(&mut rx).await;
        assert!(refused.len <= MIB as u64, "the node read {} bytes", refused.len);
        assert!(refused.error().contains("max_snapshot_size"));
        // A snapshot of exactly the limit is taken.
        let data = pattern(MIB, 4);
        send(&sender, chunked(&data, 100_000)).await.unwrap();
        assert_eq!(seen(&mut rx).await.end.unwrap(), crc32c::crc32c(&data));
        sender.shutdown().await;
        receiver.shutdown().await;
    }

    /// Short progress timeouts: twice the idle timeout.
    fn quick(c: &mut QuicConfig) {
        c.tuning.idle_timeout = Duration::from_secs(1);
        c.tuning.keep_alive_interval = Duration::from_millis(250);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_gives_up_on_a_sender_that_stalls() {
        let (sender, receiver, mut rx) = pair(quick).await;
        // One chunk, then the source never yields again (nor ends).
        let source = SnapshotStream::new(futures::StreamExt::chain(
            futures::stream::iter(vec![Ok(pattern(1000, 5))]),
            futures::stream::pending(),
        ));
        let err = send(&sender, source).await.unwrap_err();
        // The receiver's node saw the stall and refused; the sender is told why.
        match &err {
            TransportError::Refused { peer: 2, reason } => {
                assert!(
                    reason.contains("no data from the sender for 2s, after 1000 bytes"),
                    "{reason}"
                )
            }
            other => panic!("{other}"),
        }
        assert_eq!(seen(&mut rx).await.len, 1000);
        sender.shutdown().await;
        receiver.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sender_gives_up_on_a_receiver_that_stops_reading() {
        let ca = DevCa::generate().unwrap();
        let mut nodes = Vec::new();
        for id in [1, 2] {
            let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), ca.node_tls(id).unwrap());
            quick(&mut config);
            nodes.push(QuicTransport::bind(config).await.unwrap());
        }
        let peers: BTreeMap<_, Bytes> = nodes
            .iter()
            .map(|n| (n.node_id(), Bytes::from(n.local_addr().to_string())))
            .collect();
        for n in &nodes {
            n.set_peers(peers.clone());
        }
        let (inbox, mut rx) = Inbox::channel(16);
        nodes[1].register(2, 0, inbox).unwrap();
        // Node 2's runtime takes the stream and neither reads nor answers.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(incoming) = rx.recv().await {
                if let Incoming::Snapshot { data, ack, .. } = incoming {
                    held.push((data, ack));
                }
            }
        });
        // Four times the default stream window: the writes block once the window is full.
        let data = pattern(32 * MIB, 6);
        let err = tokio::time::timeout(
            DEADLINE,
            nodes[0].send_snapshot(2, 0, message(), chunked(&data, MIB)),
        )
        .await
        .unwrap()
        .unwrap_err();
        match &err {
            TransportError::Unreachable { peer: 2, reason } => {
                assert!(
                    reason.contains("no progress writing the snapshot for 2s"),
                    "{reason}"
                )
            }
            other => panic!("{other}"),
        }
        holder.abort();
        for n in &nodes {
            n.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_snapshot_and_one_handed_over_whole_arrive() {
        let (sender, receiver, mut rx) = pair(|c| c.limits.snapshot_chunk_size = 4096).await;
        send(&sender, SnapshotStream::from_bytes(Vec::new()))
            .await
            .unwrap();
        let empty = seen(&mut rx).await;
        assert_eq!((empty.len, empty.end.unwrap()), (0, 0));
        // One buffer of 1 MiB goes out in frames of the sender's chunk size.
        let data = pattern(MIB + 5, 7);
        send(&sender, SnapshotStream::from_bytes(data.clone()))
            .await
            .unwrap();
        let whole = seen(&mut rx).await;
        assert_eq!(
            (whole.len, whole.end.unwrap()),
            (data.len() as u64, crc32c::crc32c(&data))
        );
        assert_eq!(receiver.stats().snapshots_received, 2);
        sender.shutdown().await;
        receiver.shutdown().await;
    }
}
