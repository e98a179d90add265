//! The replicated state: one `u64`.
//!
//! This is the only part of the service that Raft replicates. Every node applies the same
//! commands in the same order, so everything here must be deterministic: the result of a
//! command may depend only on the state and the command.

use async_trait::async_trait;
use raft_runtime::raft_core::Index;
use raft_runtime::{Applied, SnapshotStream, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// What clients ask the cluster to do. An enum, not a bare number, so that a service grown
/// from this example can add commands without changing the log format of existing ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add `by` to the counter. The response is the value right after this increment.
    Increment {
        /// How much to add.
        by: u64,
    },
}

/// The counter. It lives in memory only: on start the runtime restores it from the
/// snapshot in the write-ahead log and replays the log after it (see
/// [`StateMachine::applied_index`]).
#[derive(Debug, Default)]
pub struct Counter {
    value: u64,
}

/// A snapshot is the value as 8 little-endian bytes.
const SNAPSHOT_LEN: usize = 8;

impl Counter {
    /// The current value.
    pub fn value(&self) -> u64 {
        self.value
    }

    fn apply_one(&mut self, command: Command) -> u64 {
        match command {
            // Saturating rather than wrapping: a counter that jumps back to 0 would break
            // every client that reasons about its values increasing. Reaching u64::MAX
            // needs adversarial increments; the value then stays there.
            Command::Increment { by } => self.value = self.value.saturating_add(by),
        }
        self.value
    }
}

#[async_trait]
impl StateMachine for Counter {
    type Command = Command;
    type Response = u64;

    async fn apply(
        &mut self,
        batch: Vec<Applied<Command>>,
        _applied: Index,
    ) -> Result<Vec<u64>, StateMachineError> {
        Ok(batch
            .into_iter()
            .map(|applied| self.apply_one(applied.command))
            .collect())
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        // Nothing is persisted here, so nothing has been applied as far as a restarting
        // runtime is concerned: it restores the latest snapshot, then replays the log.
        Ok(0)
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        // Eight bytes: taken and read back in one buffer.
        Ok(SnapshotStream::from_bytes(self.value.to_le_bytes().to_vec()))
    }

    async fn restore(&mut self, _index: Index, data: SnapshotStream) -> Result<(), StateMachineError> {
        // Anything longer than a counter's snapshot is refused before it is read whole.
        let data = data
            .into_bytes(SNAPSHOT_LEN as u64)
            .await
            .map_err(StateMachineError::new)?;
        let bytes: [u8; SNAPSHOT_LEN] = data.as_ref().try_into().map_err(|_| {
            StateMachineError::msg(format!(
                "a counter snapshot is {SNAPSHOT_LEN} bytes, this one is {}",
                data.len()
            ))
        })?;
        self.value = u64::from_le_bytes(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn increments(values: &[u64]) -> Vec<Applied<Command>> {
        values
            .iter()
            .enumerate()
            .map(|(i, &by)| Applied {
                index: i as u64 + 1,
                command: Command::Increment { by },
            })
            .collect()
    }

    #[tokio::test]
    async fn each_response_is_the_value_right_after_its_increment() {
        let mut counter = Counter::default();
        let responses = counter.apply(increments(&[1, 2, 3]), 3).await.unwrap();
        assert_eq!(responses, vec![1, 3, 6]);
        assert_eq!(counter.value(), 6);
    }

    #[tokio::test]
    async fn increments_saturate_instead_of_wrapping() {
        let mut counter = Counter::default();
        let responses = counter.apply(increments(&[u64::MAX - 1, 5]), 2).await.unwrap();
        assert_eq!(responses, vec![u64::MAX - 1, u64::MAX]);
    }

    #[tokio::test]
    async fn snapshot_restores_the_value() {
        let mut counter = Counter::default();
        counter.apply(increments(&[41, 1]), 2).await.unwrap();
        let snapshot = counter.snapshot().await.unwrap().into_bytes(64).await.unwrap();
        assert_eq!(snapshot.as_ref(), &42u64.to_le_bytes());

        let mut restored = Counter::default();
        restored
            .restore(2, SnapshotStream::from_bytes(snapshot))
            .await
            .unwrap();
        assert_eq!(restored.value(), 42);
    }

    #[tokio::test]
    async fn restore_refuses_a_snapshot_of_the_wrong_size() {
        let mut counter = Counter::default();
        let err = counter
            .restore(1, SnapshotStream::from_bytes(Bytes::from_static(b"short")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("8 bytes"), "{err}");
        let err = counter
            .restore(1, SnapshotStream::from_bytes(vec![0u8; 9]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than 8 bytes"), "{err}");
    }
}
