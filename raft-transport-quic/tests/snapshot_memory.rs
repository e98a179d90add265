//! A snapshot much larger than the transport's buffers streams from a source that
//! generates it as it is read to a node that only counts and checksums it: the process's
//! peak resident memory grows by far less than the snapshot, so neither side ever holds it
//! whole. Alone in its test binary, so that no other test shares the process's memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{ConfState, Message, MessageBody, SnapshotMeta};
use raft_runtime::{DeliverSnapshotError, Inbox, Incoming, SnapshotStream, Transport};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};

/// Generous: this is a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(300);
const SIZE: u64 = 256 << 20;
/// The bound on the growth of the peak resident memory during the transfer. What the
/// transport may hold: the receiver's stream window (8 MiB) and one chunk (1 MiB), the
/// sender's unacknowledged data (at most the receiver's window, 8 MiB), the chunk the
/// generator made; the rest is slack for the allocator and the runtime.
const BOUND: u64 = 64 << 20;

/// A field of `/proc/self/status`, in bytes.
fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    kib * 1024
}

/// A snapshot of `size` bytes generated a chunk of 1 MiB at a time as it is read, with the
/// CRC-32C of what it generated so far.
fn generated(size: u64, seed: u64) -> (SnapshotStream, Arc<AtomicU32>) {
    const CHUNK: u64 = 1 << 20;
    let crc = Arc::new(AtomicU32::new(0));
    let state = (0u64, seed | 1, crc.clone());
    let stream = futures::stream::unfold(state, move |(at, mut x, crc)| async move {
        if at >= size {
            return None;
        }
        let len = CHUNK.min(size - at) as usize;
        let mut chunk = vec![0u8; len];
        for word in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        crc.store(
            crc32c::crc32c_append(crc.load(Ordering::Relaxed), &chunk),
            Ordering::Relaxed,
        );
        Some((Ok(Bytes::from(chunk)), (at + len as u64, x, crc)))
    });
    (SnapshotStream::new(stream), crc)
}

fn snapshot_message() -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Snapshot(Box::new(SnapshotMeta {
            index: 100,
            term: 1,
            conf_state: ConfState::with_voters([1, 2]),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_snapshot_streams_in_bounded_memory() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = Vec::new();
    for id in [1, 2] {
        let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), ca.node_tls(id).unwrap());
        config.limits.max_snapshot_size = SIZE;
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
    // Node 2's runtime counts and checksums each snapshot as it arrives, and keeps none of it.
    let (read_tx, mut read_rx) = tokio::sync::mpsc::unbounded_channel();
    let runtime = tokio::spawn(async move {
        while let Some(incoming) = rx.recv().await {
            let Incoming::Snapshot { mut data, ack, .. } = incoming else {
                continue;
            };
            let (mut len, mut crc, mut chunks) = (0u64, 0u32, 0u64);
            let read = loop {
                match data.next_chunk().await {
                    Ok(Some(chunk)) => {
                        len += chunk.len() as u64;
                        crc = crc32c::crc32c_append(crc, &chunk);
                        chunks += 1;
                    }
                    Ok(None) => break Ok((len, crc, chunks)),
                    Err(e) => break Err(e),
                }
            };
            let _ = ack.send(match &read {
                Ok(_) => Ok(()),
                Err(e) => Err(DeliverSnapshotError::NotStored(e.to_string())),
            });
            let _ = read_tx.send(read);
        }
    });
    let (sender, receiver) = (&nodes[0], &nodes[1]);
    let mut transfer = async |size: u64, seed: u64| {
        let (data, crc) = generated(size, seed);
        let start = Instant::now();
        tokio::time::timeout(DEADLINE, sender.send_snapshot(2, 0, snapshot_message(), data))
            .await
            .expect("the transfer ends in time")
            .expect("the transfer succeeds");
        let elapsed = start.elapsed();
        let (len, received_crc, chunks) = tokio::time::timeout(DEADLINE, read_rx.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("the node read the snapshot whole");
        assert_eq!(len, size);
        assert_eq!(
            received_crc,
            crc.load(Ordering::Relaxed),
            "the snapshot arrived intact"
        );
        (elapsed, chunks)
    };

    // A small transfer first: connections, buffers and tasks of the first transfer exist
    // before the measurement starts.
    transfer(2 << 20, 1).await;
    // Reset the peak to the current resident size (Linux 4.0 and later); where that is
    // refused, the peak so far stays in the figure, which can only overstate the growth.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status("VmRSS:");
    let peak_before = status("VmHWM:");

    let (elapsed, chunks) = transfer(SIZE, 2).await;

    let peak = status("VmHWM:");
    let growth = peak.saturating_sub(rss_before);
    println!(
        "{} MiB snapshot in {elapsed:?} ({:.0} MB/s), {chunks} chunks handed to the node; resident \
         before {} MiB, peak before {} MiB (reset: {reset}), peak after {} MiB: growth {:.1} MiB",
        SIZE >> 20,
        SIZE as f64 / elapsed.as_secs_f64() / 1e6,
        rss_before >> 20,
        peak_before >> 20,
        peak >> 20,
        growth as f64 / (1 << 20) as f64,
    );
    assert!(
        growth < BOUND,
        "the peak resident memory grew by {growth} bytes during a transfer of {SIZE}: the \
         snapshot was held (nearly) whole somewhere"
    );
    assert_eq!(sender.stats().snapshots_sent, 2);
    assert_eq!(receiver.stats().snapshots_received, 2);
    for n in &nodes {
        n.shutdown().await;
    }
    runtime.abort();
}
