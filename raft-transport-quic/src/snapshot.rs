//! Snapshot transfer: one QUIC connection per transfer, separate from the message
//! connection (a bulk transfer sharing the message connection delays heartbeats by about a
//! millisecond on this machine), opened from a client-only endpoint with its own socket.
//!
//! The sender announces the transfer (id, size, CRC-32C, chunk size, the protocol
//! message); the receiver refuses it (too large, wrong sender, node not ready) or accepts
//! it from an offset, acknowledges every chunk, checks the checksum, hands the complete
//! snapshot to its node and reports the node's verdict. The sender keeps a bounded window
//! of unacknowledged chunks in flight.
//!
//! If the connection breaks, the receiver keeps what it has for a while, and the sender
//! retries (with backoff, a bounded number of times) with the same transfer id; the
//! receiver then accepts from the offset it holds, so the transfer resumes instead of
//! starting over. When every attempt fails, `send_snapshot` returns an error, so Raft
//! knows the snapshot did not arrive.
//!
//! Memory: a reception is charged its announced size against the node-wide snapshot
//! memory budget before it is accepted, and refused if that does not fit; its buffer
//! grows only with the bytes that arrive (see [`crate::budget`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream};
use raft_core::{Message, MessageBody, NodeId};
use raft_runtime::TransportError;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Jitter};
use crate::budget::SnapshotBuffer;
use crate::codec::{
    FrameDecoder, MAX_CONTROL_FRAME, SNAPSHOT_MAGIC, SnapshotHeader, SnapshotReply, decode_control,
    decode_snapshot_greeting, encode_control,
};
use crate::endpoint::close;
use crate::identity::node_name;
use crate::link::resolve;
use crate::stream::read_frame;
use crate::transport::{Counters, Shared};

/// Part of a snapshot kept for the sender to resume: at most one per peer (a member), for
/// at most `snapshot_resume_window`, charged to the node's snapshot memory budget for the
/// memory it holds, and given up first when a new transfer needs that memory.
#[derive(Debug)]
pub(crate) struct PartialSnapshot {
    transfer_id: u64,
    total_len: u64,
    crc32c: u32,
    data: SnapshotBuffer,
    saved: Instant,
}

enum Failure {
    /// The receiver (or its node) said no: retrying the same snapshot is pointless.
    Refused(String),
    /// The transfer broke; it may be retried.
    Broken(String),
}

fn broken(e: impl std::fmt::Display) -> Failure {
    Failure::Broken(e.to_string())
}

/// CRC-32C off the async worker threads: snapshots can be large.
async fn checksum(data: Bytes) -> u32 {
    if data.len() < (1 << 20) {
        return crc32c::crc32c(&data);
    }
    tokio::task::spawn_blocking(move || crc32c::crc32c(&data))
        .await
        .expect("checksum task does not panic")
}

/// Sends a snapshot to `to` and returns once its node took it.
pub(crate) async fn send(
    shared: &Arc<Shared>,
    to: NodeId,
    message: Message,
    data: Bytes,
) -> Result<(), TransportError> {
    if shared.shutdown.is_cancelled() {
        return Err(TransportError::Closed);
    }
    let peer = shared.peer(to).ok_or(TransportError::UnknownPeer(to))?;
    let address = peer.address().ok_or(TransportError::UnknownPeer(to))?;
    let limits = &shared.limits;
    let header = SnapshotHeader {
        transfer_id: Jitter::new(to).next_u64(),
        total_len: data.len() as u64,
        crc32c: checksum(data.clone()).await,
        chunk_size: u32::try_from(limits.snapshot_chunk_size).expect("validated: at most 64 MiB"),
        message,
    };
    let mut backoff = Backoff::new(shared.tuning.reconnect_initial, shared.tuning.reconnect_max, to);
    let mut last = String::new();
    for attempt in 1..=limits.snapshot_attempts {
        let outcome = tokio::select! {
            _ = shared.shutdown.cancelled() => return Err(TransportError::Closed),
            outcome = attempt_once(shared, to, &address, &header, &data) => outcome,
        };
        match outcome {
            Ok(()) => {
                Counters::add(&shared.counters.snapshots_sent, 1);
                return Ok(());
            }
            Err(Failure::Refused(reason)) => return Err(TransportError::Refused { peer: to, reason }),
            Err(Failure::Broken(reason)) => {
                tracing::warn!(
                    node = shared.node_id,
                    peer = to,
                    attempt,
                    "snapshot transfer failed: {reason}"
                );
                last = reason;
                if attempt < limits.snapshot_attempts {
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return Err(TransportError::Closed),
                        _ = tokio::time::sleep(backoff.fail()) => {}
                    }
                }
            }
        }
    }
    Err(TransportError::Unreachable {
        peer: to,
        reason: format!(
            "snapshot transfer failed after {} attempts: {last}",
            limits.snapshot_attempts
        ),
    })
}

async fn attempt_once(
    shared: &Shared,
    to: NodeId,
    address: &str,
    header: &SnapshotHeader,
    data: &Bytes,
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
    #[cfg(test)]
    {
        let stalled = shared.stalled.lock().unwrap_or_else(|e| e.into_inner());
        if stalled.iter().any(|c| c.stable_id() == conn.stable_id()) {
            return result;
        }
    }
    conn.close(close::SNAPSHOT_DONE, b"done");
    result
}

async fn read_reply(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> Result<SnapshotReply, Failure> {
    match read_frame(recv, decoder).await {
        Ok(Some(payload)) => decode_control(&payload).map_err(broken),
        Ok(None) => Err(Failure::Broken("the receiver closed the stream".into())),
        Err(e) => Err(broken(e)),
    }
}

/// How long a sender waits between two acknowledgements before giving up on an attempt.
fn progress_timeout(shared: &Shared) -> Duration {
    shared.tuning.idle_timeout.saturating_mul(2)
}

async fn transfer(
    shared: &Shared,
    conn: &Connection,
    header: &SnapshotHeader,
    data: &Bytes,
) -> Result<(), Failure> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(broken)?;
    send.write_all(&SNAPSHOT_MAGIC).await.map_err(broken)?;
    send.write_chunk(encode_control(header)).await.map_err(broken)?;
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    let total = header.total_len;
    let first = timeout(
        shared.tuning.handshake_timeout,
        read_reply(&mut recv, &mut decoder),
    )
    .await
    .map_err(|_| Failure::Broken("no answer to the snapshot header".into()))??;
    let start = match first {
        SnapshotReply::Accept { resume_from } if resume_from <= total => resume_from,
        SnapshotReply::Refused { reason } => return Err(Failure::Refused(reason)),
        other => return Err(Failure::Broken(format!("unexpected reply {other:?}"))),
    };
    if start > 0 {
        tracing::info!(
            node = shared.node_id,
            "resuming snapshot transfer at byte {start} of {total}"
        );
    }
    let chunk = u64::from(header.chunk_size);
    let window = chunk * shared.limits.snapshot_window_chunks as u64;
    let (acked_tx, mut acked_rx) = watch::channel(start);

    let writer = async {
        let mut sent = start;
        while sent < total {
            while sent - *acked_rx.borrow_and_update() >= window {
                if acked_rx.changed().await.is_err() {
                    return Err(Failure::Broken("reply stream ended".into()));
                }
            }
            #[cfg(test)]
            {
                use std::sync::atomic::Ordering;
                let stall = shared.snapshot_stall.load(Ordering::Relaxed);
                if stall > 0 && sent >= stall {
                    shared.snapshot_stall.store(0, Ordering::Relaxed);
                    shared
                        .stalled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(conn.clone());
                    return Err(Failure::Broken("injected stall".into()));
                }
            }
            let end = (sent + chunk).min(total);
            send.write_chunk(data.slice(sent as usize..end as usize))
                .await
                .map_err(broken)?;
            sent = end;
        }
        send.finish().map_err(broken)?;
        Ok::<(), Failure>(())
    };
    let progress = progress_timeout(shared);
    let accept = shared.limits.snapshot_accept_timeout;
    let reader = async {
        let mut acked = start;
        loop {
            let wait = if acked < total { progress } else { accept };
            let reply = timeout(wait, read_reply(&mut recv, &mut decoder))
                .await
                .map_err(|_| {
                    Failure::Broken(if acked < total {
                        "no acknowledgement in time".into()
                    } else {
                        "the receiver's node did not take the snapshot in time".into()
                    })
                })??;
            match reply {
                SnapshotReply::Ack { received } if received >= acked && received <= total => {
                    acked = received;
                    let _ = acked_tx.send(received);
                }
                SnapshotReply::Done if acked == total => return Ok(()),
                SnapshotReply::Refused { reason } => return Err(Failure::Refused(reason)),
                other => return Err(Failure::Broken(format!("unexpected reply {other:?}"))),
            }
        }
    };
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            written = &mut writer, if writing => {
                written?;
                writing = false;
            }
            outcome = &mut reader => return outcome,
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

/// Serialises the snapshot receptions from one peer. A new transfer from a peer
/// supersedes the one in progress (the sender gave up on it): the old reception stops,
/// keeps what it received for resumption, and releases the slot.
#[derive(Debug, Default)]
pub(crate) struct ReceiveSlot {
    busy: tokio::sync::Mutex<()>,
    current: std::sync::Mutex<CancellationToken>,
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
    let superseded = CancellationToken::new();
    {
        let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
        current.cancel();
        *current = superseded.clone();
    }
    // The previous reception saves its partial copy and returns promptly, unless it is
    // waiting for its node to take a complete snapshot.
    let Ok(_busy) = timeout(shared.tuning.handshake_timeout * 2, slot.busy.lock()).await else {
        tracing::warn!(
            node = shared.node_id,
            peer = from,
            "another snapshot from this peer is being installed"
        );
        conn.close(close::SNAPSHOT_DONE, b"busy");
        return;
    };
    match receive_inner(&shared, &conn, from, &superseded).await {
        Ok(received) => {
            if let Received::Refused(reason) = received {
                tracing::warn!(node = shared.node_id, peer = from, "snapshot refused: {reason}");
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

async fn reply(send: &mut SendStream, reply: &SnapshotReply) -> Result<(), String> {
    send.write_chunk(encode_control(reply))
        .await
        .map_err(|e| e.to_string())
}

async fn refuse(send: &mut SendStream, reason: String) -> Result<Received, String> {
    reply(
        send,
        &SnapshotReply::Refused {
            reason: reason.clone(),
        },
    )
    .await?;
    let _ = send.finish();
    Ok(Received::Refused(reason))
}

async fn receive_inner(
    shared: &Arc<Shared>,
    conn: &Connection,
    from: NodeId,
    superseded: &CancellationToken,
) -> Result<Received, String> {
    let handshake = shared.tuning.handshake_timeout;
    let limits = &shared.limits;
    let (mut send, mut recv) = timeout(handshake, conn.accept_bi())
        .await
        .map_err(|_| "no snapshot stream opened in time".to_string())?
        .map_err(|e| e.to_string())?;
    let mut magic = [0u8; 4];
    timeout(handshake, recv.read_exact(&mut magic))
        .await
        .map_err(|_| "no snapshot greeting in time".to_string())?
        .map_err(|e| e.to_string())?;
    if let Err(e) = decode_snapshot_greeting(&magic) {
        let reason = format!("snapshot stream: {e}");
        conn.close(close::PROTOCOL, reason.as_bytes());
        return Err(reason);
    }
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    let payload = match timeout(handshake, read_frame(&mut recv, &mut decoder)).await {
        Err(_) => return Err("no snapshot header in time".into()),
        Ok(Ok(Some(payload))) => payload,
        Ok(Ok(None)) => return Err("stream ended before the snapshot header".into()),
        Ok(Err(e)) => return Err(e.to_string()),
    };
    let header: SnapshotHeader = decode_control(&payload).map_err(|e| e.to_string())?;
    let refusal = if shared.inbox.get().is_none() {
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
    } else if header.total_len > limits.max_snapshot_size || usize::try_from(header.total_len).is_err() {
        Some(format!(
            "snapshot of {} bytes exceeds the limit of {} bytes",
            header.total_len, limits.max_snapshot_size
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        return refuse(&mut send, reason).await;
    }
    let total = header.total_len as usize;
    let mut data = match admit(shared, from, &header) {
        Ok(data) => data,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    if data.len() > 0 {
        Counters::add(&shared.counters.snapshot_resumes, 1);
        tracing::info!(
            node = shared.node_id,
            peer = from,
            "resuming snapshot at byte {} of {total}",
            data.len()
        );
    }
    reply(
        &mut send,
        &SnapshotReply::Accept {
            resume_from: data.len() as u64,
        },
    )
    .await?;
    for piece in decoder.into_rest() {
        data.extend(&piece).map_err(|e| e.to_string())?;
    }

    let chunk = (header.chunk_size as usize).clamp(4 << 10, 64 << 20);
    let mut next_ack = (data.len() / chunk + 1) * chunk;
    let progress = progress_timeout(shared);
    while data.len() < total {
        let want = (total - data.len()).min(1 << 20);
        let read = tokio::select! {
            _ = superseded.cancelled() => None,
            read = timeout(progress, recv.read_chunk(want, true)) => Some(read),
        };
        let failure = match read {
            None => Some("superseded by a new transfer from the same node".to_string()),
            Some(Err(_)) => Some("the sender stalled".to_string()),
            Some(Ok(Err(e))) => Some(e.to_string()),
            Some(Ok(Ok(None))) => Some(format!("the stream ended at byte {} of {total}", data.len())),
            Some(Ok(Ok(Some(piece)))) => match data.extend(&piece.bytes) {
                Ok(()) => None,
                Err(e) => {
                    conn.close(close::PROTOCOL, b"snapshot overrun");
                    return Err(e.to_string());
                }
            },
        };
        #[cfg(test)]
        let failure = failure.or_else(|| {
            use std::sync::atomic::Ordering;
            let fault = shared.snapshot_fault.load(Ordering::Relaxed);
            (fault > 0 && data.len() as u64 >= fault).then(|| {
                shared.snapshot_fault.store(0, Ordering::Relaxed);
                conn.close(close::SNAPSHOT_DONE, b"injected fault");
                "injected fault".to_string()
            })
        });
        if let Some(reason) = failure {
            let received = data.len();
            save_partial(shared, from, &header, data);
            return Err(format!(
                "{reason} (kept {received} of {total} bytes for resumption)"
            ));
        }
        if data.len() >= next_ack.min(total) {
            let ack = SnapshotReply::Ack {
                received: data.len() as u64,
            };
            if let Err(e) = reply(&mut send, &ack).await {
                let received = data.len();
                save_partial(shared, from, &header, data);
                return Err(format!("{e} (kept {received} of {total} bytes for resumption)"));
            }
            next_ack = (data.len() / chunk + 1) * chunk;
        }
    }
    // The reservation is held until the node took (or refused) the snapshot.
    let (data, _reservation) = data.into_bytes();
    if checksum(data.clone()).await != header.crc32c {
        return refuse(&mut send, "snapshot checksum mismatch".into()).await;
    }
    let inbox = shared.inbox.get().expect("checked above").clone();
    match inbox
        .deliver_snapshot(
            from,
            header.message,
            raft_runtime::SnapshotStream::from_bytes(data),
        )
        .await
    {
        Ok(()) => {
            Counters::add(&shared.counters.snapshots_received, 1);
            reply(&mut send, &SnapshotReply::Done).await?;
            let _ = send.finish();
            Ok(Received::Delivered)
        }
        // The wire carries the node's reason as text.
        Err(reason) => refuse(&mut send, reason.to_string()).await,
    }
}

/// The buffer for an announced transfer: the partial copy kept from an earlier attempt of
/// the same transfer, or a new one. Either is charged to the node's snapshot memory budget
/// for the whole announced size, giving up other peers' partial copies (oldest first) if
/// that is what it takes; if it still does not fit, the reason to refuse the transfer.
fn admit(shared: &Shared, from: NodeId, header: &SnapshotHeader) -> Result<SnapshotBuffer, String> {
    let total = header.total_len as usize;
    let mut partials = shared.partial_snapshots.lock().unwrap_or_else(|e| e.into_inner());
    let window = shared.limits.snapshot_resume_window;
    partials.retain(|_, p| p.saved.elapsed() < window);
    // A partial copy of another transfer from this peer is of no more use.
    let mut resumed = partials.remove(&from).and_then(|p| {
        let same = p.transfer_id == header.transfer_id
            && p.total_len == header.total_len
            && p.crc32c == header.crc32c;
        same.then_some(p.data)
    });
    loop {
        let admitted = match &mut resumed {
            Some(data) => data.unpark().map(|()| None),
            None => SnapshotBuffer::new(&shared.snapshot_budget, total).map(Some),
        };
        match admitted {
            Ok(Some(data)) => return Ok(data),
            Ok(None) => return Ok(resumed.take().expect("resumed")),
            Err(exceeded) => {
                let oldest = partials.iter().min_by_key(|(_, p)| p.saved).map(|(&id, _)| id);
                match oldest {
                    Some(id) => {
                        tracing::debug!(
                            node = shared.node_id,
                            peer = id,
                            "dropping a partial snapshot to make room for one from node {from}"
                        );
                        partials.remove(&id);
                    }
                    None => {
                        return Err(format!(
                            "snapshot of {total} bytes does not fit in the receiver's snapshot memory budget \
                             ({} of {} bytes in use by other transfers)",
                            exceeded.used, exceeded.limit
                        ));
                    }
                }
            }
        }
    }
}

fn save_partial(shared: &Arc<Shared>, from: NodeId, header: &SnapshotHeader, mut data: SnapshotBuffer) {
    if data.len() == 0 || shared.shutdown.is_cancelled() || shared.members.admits(from).is_err() {
        return;
    }
    data.park();
    let saved = Instant::now();
    let transfer_id = header.transfer_id;
    shared
        .partial_snapshots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            from,
            PartialSnapshot {
                transfer_id,
                total_len: header.total_len,
                crc32c: header.crc32c,
                data,
                saved,
            },
        );
    // Forget it once the resume window has passed.
    let task_shared = shared.clone();
    let window = shared.limits.snapshot_resume_window;
    shared.spawn(async move {
        tokio::select! {
            _ = task_shared.shutdown.cancelled() => {}
            _ = tokio::time::sleep(window) => {
                let mut partials = task_shared.partial_snapshots.lock().unwrap_or_else(|e| e.into_inner());
                if partials.get(&from).is_some_and(|p| p.transfer_id == transfer_id && p.saved == saved) {
                    partials.remove(&from);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use raft_core::{ConfState, Message, MessageBody, SnapshotMeta};
    use raft_runtime::{Inbox, Incoming, Transport};

    use crate::{DevCa, QuicConfig, QuicTransport};

    /// Sends an 8 MiB snapshot from node 1 to node 2 after `inject` set up a fault, and
    /// checks it arrives intact through a resumed transfer.
    async fn transfer_with_fault(inject: impl FnOnce(&QuicTransport, &QuicTransport)) {
        let ca = DevCa::generate().unwrap();
        let mut nodes = Vec::new();
        for id in [1, 2] {
            let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), ca.node_tls(id).unwrap());
            config.limits.snapshot_chunk_size = 64 << 10;
            config.tuning.reconnect_initial = std::time::Duration::from_millis(10);
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
        nodes[1].register(nodes[1].node_id(), inbox).unwrap();
        let receiver = tokio::spawn(async move {
            loop {
                match rx.recv().await.expect("inbox open") {
                    Incoming::Snapshot { data, ack, .. } => {
                        ack.send(Ok(())).unwrap();
                        return data;
                    }
                    Incoming::Messages { .. } => {}
                }
            }
        });
        inject(&nodes[0], &nodes[1]);
        let data: Bytes = (0..8u32 << 20)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let message = Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Snapshot(Box::new(SnapshotMeta {
                index: 10,
                term: 1,
                conf_state: ConfState::with_voters([1, 2]),
            })),
        };
        nodes[0].send_snapshot(2, message, data.clone()).await.unwrap();
        let received = tokio::time::timeout(std::time::Duration::from_secs(60), receiver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, data);
        assert_eq!(nodes[1].stats().snapshot_resumes, 1, "the second attempt resumed");
        assert_eq!(nodes[1].stats().snapshots_received, 1);
        assert_eq!(nodes[0].stats().snapshots_sent, 1);
        // The partial copy and the reception gave their memory back.
        let start = std::time::Instant::now();
        while nodes[1].stats().snapshot_memory_in_use != 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "memory not given back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        for n in &nodes {
            n.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_transfer_resumes_where_it_stopped() {
        // The receiver breaks the first connection after 3 MiB of 8 MiB.
        transfer_with_fault(|_, receiver| receiver.inject_snapshot_fault(3 << 20)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_supersedes_a_stalled_transfer_and_resumes_it() {
        // The sender stalls after 2 MiB without closing the connection, and retries: the
        // receiver gives up the stalled reception and resumes from what it holds.
        transfer_with_fault(|sender, _| sender.inject_snapshot_stall(2 << 20)).await;
    }
}
