//! The state machine plug-in: the user's replicated state.

use async_trait::async_trait;
use raft_core::Index;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateMachineError;
use crate::snapshot_stream::SnapshotStream;

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
/// every committed batch, `snapshot` when it is time to compact the log, `restore` when
/// the node installs a snapshot from the leader.
///
/// Every node applies the same commands in the same order, so `apply` must be deterministic:
/// its effect and response may depend only on the state and the command (not on clocks,
/// randomness or the local node).
///
/// # The applied index
///
/// The state covers the log up to an index, its *applied index*: [`StateMachine::apply`]
/// receives it with every batch, [`StateMachine::restore`] with every snapshot, and
/// [`StateMachine::applied_index`] reports it when the node starts. A state machine kept in
/// memory starts empty and answers 0: the runtime restores the stored snapshot and replays
/// the log after it. A state machine that keeps its state on disk commits the applied index
/// in the same transaction as the batch's effects; after a crash it reports the index its
/// state holds, and the runtime delivers only the committed entries after it, so no entry is
/// applied twice or skipped.
#[async_trait]
pub trait StateMachine: Send + 'static {
    /// What clients propose.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What applying a command answers, returned to the client that proposed it.
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// Applies the committed entries after the current applied index up to and including
    /// `applied`, and returns one response per command, in order. `batch` holds their
    /// commands in log order; entries that carry no command (a new leader's empty entry, a
    /// membership change) advance the applied index all the same, so `batch` may be empty.
    /// Once it returns, the state covers the log up to `applied`: a state machine that
    /// persists its state commits `applied` with the batch's effects, atomically.
    ///
    /// An error stops the node (its state can no longer be trusted).
    async fn apply(
        &mut self,
        batch: Vec<Applied<Self::Command>>,
        applied: Index,
    ) -> Result<Vec<Self::Response>, StateMachineError>;

    /// The applied index of the state as of now: the runtime asks once at start and
    /// delivers only committed entries after it. A state machine kept in memory answers 0
    /// (the runtime then restores it from the stored snapshot); one that persists its state
    /// answers the index it committed last with [`StateMachine::apply`] or
    /// [`StateMachine::restore`].
    async fn applied_index(&self) -> Result<Index, StateMachineError>;

    /// Takes a point-in-time view of the state as of the applied index, for the runtime to
    /// read as a stream of chunks while `apply` goes on: the view must yield that state,
    /// whatever is applied after this call returns. It should return quickly: an on-disk
    /// engine opens a read transaction or writes a checkpoint, an in-memory state takes a
    /// cheap clone (or a persistent structure's handle) and serializes it in the stream. A
    /// small state may serialize itself here into one buffer
    /// ([`SnapshotStream::from_bytes`]).
    ///
    /// An error, or an error the stream yields, stops the node.
    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError>;

    /// Replaces the whole state by a snapshot taken at `index` (by this node or the leader),
    /// read from `data` a chunk at a time; `index` becomes the applied index, committed with
    /// the new state. A state machine on disk stages what it reads and swaps it in at once,
    /// so that a failure or a crash part way leaves the old state whole. A small state may
    /// read it into one buffer ([`SnapshotStream::into_bytes`]).
    async fn restore(&mut self, index: Index, data: SnapshotStream) -> Result<(), StateMachineError>;
}
