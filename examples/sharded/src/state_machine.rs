//! The replicated state of one group: the counters whose names hash to it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use raft_runtime::raft_core::Index;
use raft_runtime::{Applied, SnapshotStream, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// What a group replicates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds `by` to the counter `key` (created at 0), saturating.
    Increment {
        /// The counter's name.
        key: String,
        /// How much to add.
        by: u64,
    },
}

/// The longest counter name: names are replicated and kept by every node of the group.
pub const MAX_KEY: usize = 256;

/// The largest snapshot a node restores (a group's counters, as JSON).
pub const MAX_SNAPSHOT: u64 = 64 << 20;

/// A group's counters.
#[derive(Debug, Default)]
pub struct Counters {
    values: BTreeMap<String, u64>,
}

impl Counters {
    /// The value of the counter `key` (0 if it was never incremented).
    pub fn get(&self, key: &str) -> u64 {
        self.values.get(key).copied().unwrap_or(0)
    }

    /// How many counters the group holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the group holds no counter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn apply_one(&mut self, command: Command) -> u64 {
        match command {
            Command::Increment { key, by } => {
                let value = self.values.entry(key).or_insert(0);
                *value = value.saturating_add(by);
                *value
            }
        }
    }
}

#[async_trait]
impl StateMachine for Counters {
    type Command = Command;
    /// The counter's value right after the increment.
    type Response = u64;

    async fn apply(
        &mut self,
        batch: Vec<Applied<Command>>,
        _applied: Index,
    ) -> Result<Vec<u64>, StateMachineError> {
        Ok(batch.into_iter().map(|a| self.apply_one(a.command)).collect())
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        // Kept in memory only: a restarting node restores the snapshot, then replays.
        Ok(0)
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        let data = serde_json::to_vec(&self.values).map_err(StateMachineError::new)?;
        Ok(SnapshotStream::from_bytes(data))
    }

    async fn restore(&mut self, _index: Index, data: SnapshotStream) -> Result<(), StateMachineError> {
        let data = data
            .into_bytes(MAX_SNAPSHOT)
            .await
            .map_err(StateMachineError::new)?;
        self.values = serde_json::from_slice(&data).map_err(StateMachineError::new)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(key: &str, by: u64, index: u64) -> Applied<Command> {
        Applied {
            index,
            command: Command::Increment { key: key.into(), by },
        }
    }

    #[tokio::test]
    async fn counters_count_apart_and_survive_a_snapshot() {
        let mut counters = Counters::default();
        let out = counters
            .apply(vec![incr("a", 2, 1), incr("b", 5, 2), incr("a", 3, 3)], 3)
            .await
            .unwrap();
        assert_eq!(out, vec![2, 5, 5]);
        let snapshot = counters.snapshot().await.unwrap();
        let mut restored = Counters::default();
        restored.restore(3, snapshot).await.unwrap();
        assert_eq!(
            (restored.get("a"), restored.get("b"), restored.get("c")),
            (5, 5, 0)
        );
        assert_eq!(restored.len(), 2);
    }

    #[tokio::test]
    async fn a_bad_snapshot_is_refused() {
        let mut counters = Counters::default();
        let bad = SnapshotStream::from_bytes(b"not json".to_vec());
        assert!(counters.restore(1, bad).await.is_err());
    }
}
