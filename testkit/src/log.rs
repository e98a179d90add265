//! A state machine that records every value it applies.

use std::sync::{Arc, Mutex, MutexGuard};

use raft_runtime::{Applied, Bytes, Index, StateMachine, StateMachineError, async_trait};

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
#[derive(Clone, Debug)]
pub struct Log {
    state: Arc<Mutex<LogState>>,
    durable: bool,
}

impl Log {
    /// An empty log.
    pub fn new(durable: bool) -> Log {
        Log {
            state: Arc::new(Mutex::new(LogState::default())),
            durable,
        }
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

    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        let s = self.state();
        Ok(Bytes::from(
            s.values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        ))
    }

    async fn restore(&mut self, index: Index, data: Bytes) -> Result<(), StateMachineError> {
        if data.len() % 8 != 0 {
            return Err(StateMachineError::msg("snapshot length is not a multiple of 8"));
        }
        let mut s = self.state();
        s.values = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        s.applied = index;
        Ok(())
    }
}
