//! The state machine plug-in: the user's replicated state.

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::Index;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateMachineError;

/// One committed command, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied<C> {
    /// The log index of the command. Indexes increase but are not contiguous: entries
    /// that carry no command (a new leader's empty entry, membership changes) are skipped.
    pub index: Index,
    /// The command.
    pub command: C,
}

/// The replicated state. The runtime calls it from one task, in log order: `apply` for
/// every committed command, `snapshot` when it is time to compact the log, `restore` when
/// the node installs a snapshot from the leader.
///
/// Every node applies the same commands in the same order, so `apply` must be deterministic:
/// its effect and response may depend only on the state and the command (not on clocks,
/// randomness or the local node).
#[async_trait]
pub trait StateMachine: Send + 'static {
    /// What clients propose.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What applying a command answers, returned to the client that proposed it.
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// Applies a batch of committed commands and returns one response per command, in order.
    /// An error stops the node (its state can no longer be trusted).
    async fn apply(
        &mut self,
        batch: Vec<Applied<Self::Command>>,
    ) -> Result<Vec<Self::Response>, StateMachineError>;

    /// The index of the last entry whose effect the state holds, as of now; the runtime asks
    /// once at start and re-delivers only committed entries after it. A state machine kept in
    /// memory answers 0 (the runtime then restores it from the stored snapshot); one that
    /// persists its state must persist this index with it. The runtime passes the index of
    /// every applied entry, commands or not, to [`StateMachine::set_applied_index`].
    async fn applied_index(&self) -> Result<Index, StateMachineError>;

    /// Records that every entry up to `index` has been applied, including entries that carry
    /// no command. Durable state machines may persist it; the default does nothing.
    async fn set_applied_index(&mut self, index: Index) -> Result<(), StateMachineError> {
        let _ = index;
        Ok(())
    }

    /// Serializes the whole state as of the last applied entry.
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError>;

    /// Replaces the whole state by a snapshot taken at `index` (by this node or the leader).
    async fn restore(&mut self, index: Index, data: Bytes) -> Result<(), StateMachineError>;
}
