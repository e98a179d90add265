//! A snapshot far larger than the memory it may take travels end to end as a stream: the
//! leader's state machine hands it over a chunk at a time, the file log store writes it,
//! reads it back for the QUIC transport, which sends it to a follower that fell behind;
//! the follower's store stages it as it arrives, and its state machine restores from the
//! staged copy a chunk at a time. The whole cluster runs in this process, so its peak
//! resident memory bounds what every one of those steps held at once: it must grow by far
//! less than the snapshot's size.
//!
//! The only test in its binary: it reads the process's peak resident memory, which other
//! tests running beside it would raise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft_runtime::{
    Applied, Config, Index, NodeId, SnapshotStream, StateMachine, StateMachineError, async_trait,
};
use raft_testkit::{Cluster, OnDisk, Plugins, StartMode};

/// The snapshot's size: 160 MiB.
const SIZE: u64 = 160 << 20;
/// How much the process's peak resident memory may grow while the snapshot moves.
const MAX_GROWTH: u64 = 64 << 20;
const CHUNK: u64 = 64 << 10;

/// Byte `i` of the state.
fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 17) as u8
}

/// The state is `size` bytes, byte `i` being [`byte_at`]`(i)`, made when it is read: a
/// state machine whose state is large on the wire and takes no memory of its own.
#[derive(Clone, Default)]
struct Blob {
    inner: Arc<Mutex<BlobState>>,
}

#[derive(Default)]
struct BlobState {
    size: u64,
    applied: Index,
    restored: u64,
}

impl Blob {
    fn lock(&self) -> std::sync::MutexGuard<'_, BlobState> {
        self.inner.lock().unwrap()
    }
}

#[async_trait]
impl StateMachine for Blob {
    /// Grow the state to this many bytes.
    type Command = u64;
    type Response = u64;

    async fn apply(
        &mut self,
        batch: Vec<Applied<u64>>,
        applied: Index,
    ) -> Result<Vec<u64>, StateMachineError> {
        let mut s = self.lock();
        let out = batch
            .into_iter()
            .map(|a| {
                s.size = s.size.max(a.command);
                s.size
            })
            .collect();
        s.applied = applied;
        Ok(out)
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(0)
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        let size = self.lock().size;
        // The size first, then the bytes, a chunk at a time.
        let head = futures::stream::once(async move { Ok(Bytes::copy_from_slice(&size.to_le_bytes())) });
        let body = futures::stream::iter((0..size.div_ceil(CHUNK)).map(move |c| {
            let from = c * CHUNK;
            let to = (from + CHUNK).min(size);
            Ok(Bytes::from((from..to).map(byte_at).collect::<Vec<u8>>()))
        }));
        Ok(SnapshotStream::new(futures::StreamExt::chain(head, body)))
    }

    async fn restore(&mut self, index: Index, mut data: SnapshotStream) -> Result<(), StateMachineError> {
        let mut head = Vec::new();
        let mut at = 0u64;
        let mut size = None;
        while let Some(chunk) = data.next_chunk().await.map_err(StateMachineError::new)? {
            let mut chunk = &chunk[..];
            if size.is_none() {
                let take = (8 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if head.len() == 8 {
                    size = Some(u64::from_le_bytes(head.as_slice().try_into().unwrap()));
                }
            }
            for &b in chunk {
                if b != byte_at(at) {
                    return Err(StateMachineError::msg(format!(
                        "byte {at} of the snapshot is wrong"
                    )));
                }
                at += 1;
            }
        }
        let size = size.ok_or_else(|| StateMachineError::msg("the snapshot has no size"))?;
        if at != size {
            return Err(StateMachineError::msg(format!(
                "the snapshot has {at} bytes of {size}"
            )));
        }
        let mut s = self.lock();
        s.size = size;
        s.applied = index;
        s.restored += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_memory_allows_moves_as_a_stream() {
    let config = Config {
        tick_interval: Duration::from_millis(10),
        snapshot_every: 3,
        log_kept_entries: 0,
        ..Config::default()
    };
    let mut c: Cluster<Blob, OnDisk> =
        Cluster::start(3, config, OnDisk::new(), |_: NodeId, previous: Option<&Blob>| {
            previous.cloned().unwrap_or_default()
        })
        .await;
    for _ in 0..4 {
        let leader = c.leader().await;
        assert_eq!(c.node(leader).propose(SIZE).await.unwrap(), SIZE);
    }
    let leader = c.leader().await;
    let last = c
        .node(leader)
        .wait_for(Duration::from_secs(120), |m| m.snapshot_index >= 3)
        .await
        .expect("the leader took a snapshot of the large state")
        .last_log_index;

    // A new node joins: the log it needs is compacted, so it gets the snapshot.
    let before = raft_testkit::proc_status("VmHWM:");
    let members = c.members.clone();
    c.start_node(4, StartMode::Join(members)).await;
    let info = c.plugins.member(4);
    c.node(leader)
        .add_learner(4, info)
        .await
        .expect("the new node is added as a learner");
    c.node(4)
        .wait_for(Duration::from_secs(300), |m| {
            m.snapshots_installed >= 1 && m.applied >= last
        })
        .await
        .expect("the new node caught up through the snapshot");
    let after = raft_testkit::proc_status("VmHWM:");
    let state = c.state_machines[&4].clone();
    assert_eq!(state.lock().size, SIZE);
    assert!(state.lock().restored >= 1);
    let growth = after.saturating_sub(before);
    eprintln!(
        "a {} MiB snapshot sent and installed: peak resident memory {} MiB before, {} MiB after (+{} MiB)",
        SIZE >> 20,
        before >> 20,
        after >> 20,
        growth >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "the peak resident memory grew by {} MiB while a {} MiB snapshot moved: something held it whole",
        growth >> 20,
        SIZE >> 20
    );
    c.shutdown().await;
}
