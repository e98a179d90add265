//! A state machine that records every value it applies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use raft_runtime::{Applied, Bytes, Index, SnapshotStream, StateMachine, StateMachineError, async_trait};
use tokio::sync::watch;

/// Values per chunk of a snapshot: small, so that every snapshot a test takes is streamed in
/// many chunks.
const CHUNK_VALUES: usize = 64;

/// The state: every value applied, in order, and the index of the last.
#[derive(Clone, Debug, Default)]
pub struct LogState {
    /// The values applied, in order.
    pub values: Vec<u64>,
    /// The index of the last entry applied.
    pub applied: Index,
}

/// An append-only log of values (it panics if an index is applied twice); the response to each command is the number of values
/// applied so far. Clones share the state, so a test keeps a clone to look at it.
///
/// With `durable`, the state outlives the node (like a state machine that persists itself)
/// and reports its applied index at start; otherwise a restarted node starts empty and
/// replays.
///
/// A snapshot is a copy of the values taken when the runtime asks, serialized
/// 64 values to a chunk as the runtime reads it; restore stages the values it
/// reads and swaps them in at the end. [`Log::pause_snapshots`] holds back the first chunk
/// of every snapshot, to show what goes on while one is being read.
#[derive(Clone, Debug)]
pub struct Log {
    state: Arc<Mutex<LogState>>,
    durable: bool,
    /// Open (`true`) unless snapshots are paused.
    gate: Arc<watch::Sender<bool>>,
    /// When set, the data of every snapshot taken ends in an error.
    failing: Arc<AtomicBool>,
    /// Snapshots taken (views handed to the runtime), read to the end or not.
    views: Arc<AtomicU64>,
    /// How long every restore takes after reading its data, in milliseconds.
    restore_delay_ms: Arc<AtomicU64>,
    /// Open (`true`) unless applying is paused.
    apply_gate: Arc<watch::Sender<bool>>,
    /// The most commands handed to one `apply` call so far.
    largest_batch: Arc<AtomicU64>,
}

impl Log {
    /// An empty log.
    pub fn new(durable: bool) -> Log {
        Log {
            state: Arc::new(Mutex::new(LogState::default())),
            durable,
            gate: Arc::new(watch::Sender::new(true)),
            failing: Arc::new(AtomicBool::new(false)),
            views: Arc::new(AtomicU64::new(0)),
            restore_delay_ms: Arc::new(AtomicU64::new(0)),
            apply_gate: Arc::new(watch::Sender::new(true)),
            largest_batch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Holds every `apply` call from now on before it changes the state (`true`), or lets
    /// them go (`false`): committed entries then queue up in the runtime, as behind a slow
    /// state machine.
    pub fn pause_applying(&self, paused: bool) {
        self.apply_gate.send_replace(!paused);
    }

    /// The most commands the runtime has handed to one `apply` call, over every start that
    /// shared this state machine.
    pub fn largest_batch(&self) -> u64 {
        self.largest_batch.load(Ordering::SeqCst)
    }

    /// Makes every restore from now on take `delay` longer, after it has read its data and
    /// before it swaps the state in, as restoring a large state does.
    pub fn slow_restores(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.restore_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many snapshots the runtime has taken of this state machine (read to the end or
    /// not), over every start that shared it.
    pub fn views_taken(&self) -> u64 {
        self.views.load(Ordering::SeqCst)
    }

    /// Makes the data of every snapshot taken from now on end in an error (after its first
    /// chunk), as a state machine whose disk fails while it is read would.
    pub fn fail_snapshots(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Holds back (`true`) or lets go (`false`) the data of every snapshot taken, before and
    /// after this call, until it is let go: the views stay as of when they were taken.
    pub fn pause_snapshots(&self, paused: bool) {
        self.gate.send_replace(!paused);
    }

    /// Whether the state outlives the node.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The values applied so far.
    pub fn values(&self) -> Vec<u64> {
        self.state().values.clone()
    }
}

#[async_trait]
impl StateMachine for Log {
    type Command = u64;
    type Response = u64;

    async fn apply(
        &mut self,
        batch: Vec<Applied<u64>>,
        applied: Index,
    ) -> Result<Vec<u64>, StateMachineError> {
        let mut gate = self.apply_gate.subscribe();
        // A closed gate (every handle dropped) counts as open.
        let _ = gate.wait_for(|open| *open).await;
        self.largest_batch.fetch_max(batch.len() as u64, Ordering::SeqCst);
        let mut s = self.state();
        // Harness checks, not refusals: each is a runtime bug.
        assert!(
            applied > s.applied,
            "entries up to {applied} applied again (applied {})",
            s.applied
        );
        assert!(
            batch.last().is_none_or(|c| c.index <= applied),
            "a command after the applied index {applied}"
        );
        let mut out = Vec::with_capacity(batch.len());
        for c in batch {
            assert!(
                c.index > s.applied,
                "index {} applied twice (applied {})",
                c.index,
                s.applied
            );
            s.values.push(c.command);
            s.applied = c.index;
            out.push(s.values.len() as u64);
        }
        // The values and the index change together, as a durable state machine commits
        // them in one transaction.
        s.applied = applied;
        Ok(out)
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(if self.durable { self.state().applied } else { 0 })
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        self.views.fetch_add(1, Ordering::SeqCst);
        // A point-in-time copy, serialized a chunk at a time as the runtime reads it.
        let values = self.state().values.clone();
        let failing = self.failing.load(Ordering::SeqCst);
        let chunks = values.len().div_ceil(CHUNK_VALUES);
        let chunks = if failing { chunks.min(1) } else { chunks };
        let data = futures::stream::iter(0..chunks).map(move |i| {
            let part = &values[i * CHUNK_VALUES..((i + 1) * CHUNK_VALUES).min(values.len())];
            Ok(Bytes::from(
                part.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
            ))
        });
        let failure = failing.then(|| Err(std::io::Error::other("injected: reading the snapshot failed")));
        let mut gate = self.gate.subscribe();
        let opened = futures::stream::once(async move {
            // A closed gate (every handle dropped) counts as open.
            let _ = gate.wait_for(|open| *open).await;
        })
        .filter_map(|()| std::future::ready(None));
        Ok(SnapshotStream::new(
            opened.chain(data).chain(futures::stream::iter(failure)),
        ))
    }

    async fn restore(&mut self, index: Index, mut data: SnapshotStream) -> Result<(), StateMachineError> {
        // Staged, then swapped in: a failure part way leaves the state as it was. Chunks
        // may split a value anywhere.
        let mut values = Vec::new();
        let mut pending = Vec::new();
        while let Some(chunk) = data.next_chunk().await.map_err(StateMachineError::new)? {
            pending.extend_from_slice(&chunk);
            let whole = pending.len() - pending.len() % 8;
            values.extend(
                pending[..whole]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("eight bytes"))),
            );
            pending.drain(..whole);
        }
        if !pending.is_empty() {
            return Err(StateMachineError::msg("snapshot length is not a multiple of 8"));
        }
        let delay = self.restore_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut s = self.state();
        s.values = values;
        s.applied = index;
        Ok(())
    }
}
