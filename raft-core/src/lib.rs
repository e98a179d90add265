//! The Raft consensus protocol as a deterministic, sans-IO state machine.
//!
//! This crate contains no networking, no disk access, no clocks and no threads. A *driver*
//! (such as the `raft-runtime` crate) owns a [`RawNode`] and feeds it inputs; the node answers
//! with [`Ready`] batches saying what to send, what to persist and what to apply. Time is a
//! [`RawNode::tick`] call; randomness (election timeout jitter) comes from [`Config::seed`].
//! The same inputs always produce the same outputs, which is what makes the protocol
//! testable by deterministic simulation.
//!
//! # Driving a node
//!
//! ```text
//! loop {
//!     wait for: a tick, a peer message, a proposal/read/admin request, a persistence
//!               completion, an applied notification
//!     feed it: tick() / step(msg) / propose(data) / read_index(ctx) / on_persisted(token) ...
//!     if node.has_ready() {
//!         let ready = node.ready()?;
//!         send ready.messages                          (now)
//!         persist ready.persist, in order, then:       (asynchronously is fine)
//!             send persist.messages; node.on_persisted(persist.token)
//!         apply ready.committed_entries; node.on_applied(index)
//!         answer ready.read_states once applied >= their index
//!     }
//! }
//! ```
//!
//! # The persistence contract
//!
//! Persistence is part of the protocol, not an afterthought, so that a driver can overlap
//! disk writes with network round trips without weakening safety:
//!
//! 1. Each [`Persist`] batch is made durable in the order batches are handed out: the
//!    snapshot first (it replaces the whole log), then the entries (which replace any stored
//!    entries from the first one's index on), then the hard state.
//! 2. [`Persist::messages`] leave only once that batch *and all earlier ones* are durable.
//!    These are the messages whose truth depends on durable state: a follower's
//!    acknowledgement of entries, a vote, a candidate's vote request for a new term. Term and
//!    vote changes are therefore durable before any message that depends on them goes out.
//! 3. [`Ready::messages`] may leave at once. A leader's appends are among them: a leader sends
//!    entries before its own write finishes, and counts itself toward a quorum only once the
//!    driver reports them durable with [`RawNode::on_persisted`].
//! 4. Only locally durable entries are ever handed out in [`Ready::committed_entries`].
//! 5. After a crash, whatever was not reported durable may be lost; the node restarts from
//!    what storage holds with [`RawNode::new`], and committed entries after the `applied`
//!    index it is given are handed out again (and only those).
//!
//! # Membership, reads and leadership transfer
//!
//! Configuration entries take effect when appended (see the `membership` notes on
//! [`RawNode::propose_conf_change`]); reads are confirmed with ReadIndex or served under a
//! lease ([`RawNode::read_index`], [`RawNode::lease_read`]); [`RawNode::transfer_leader`] hands
//! leadership to a caught-up voter.
//!
//! # Quiescence
//!
//! A driver hosting many groups lets idle ones go quiet: [`RawNode::quiesce`] stops an idle
//! leader's clock and heartbeats, and its followers', until traffic or a request wakes
//! them; the driver then wakes the followers of a leader whose node it suspects is down
//! ([`RawNode::wake`]).
//!
//! # Example: three nodes commit an entry
//!
//! A synchronous driver that persists each batch on the spot, with a network that delivers
//! every message in order:
//!
//! ```
//! use bytes::Bytes;
//! use raft_core::{Config, ConfState, EntryPayload, MemStorage, Message, RawNode, Role};
//!
//! let mut nodes: Vec<RawNode<MemStorage>> = (1..=3)
//!     .map(|id| {
//!         let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1, 2, 3]));
//!         RawNode::new(Config::new(id), storage, 0).unwrap()
//!     })
//!     .collect();
//! let mut applied: Vec<Vec<Bytes>> = vec![Vec::new(); 3];
//!
//! // One pass of the driver loop over every node; returns whether anything happened.
//! fn drive(nodes: &mut [RawNode<MemStorage>], applied: &mut [Vec<Bytes>]) -> bool {
//!     let mut network: Vec<Message> = Vec::new();
//!     let mut busy = false;
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         if !node.has_ready() {
//!             continue;
//!         }
//!         busy = true;
//!         let mut ready = node.ready().unwrap();
//!         // Messages that may leave before the write (a leader's appends).
//!         network.append(&mut ready.messages);
//!         if let Some(mut persist) = ready.persist.take() {
//!             // A real driver writes and fsyncs here, possibly on another thread.
//!             node.storage_mut().persist(&persist).unwrap();
//!             node.on_persisted(persist.token).unwrap();
//!             // Acknowledgements and votes leave only now that the batch is durable.
//!             network.append(&mut persist.messages);
//!         }
//!         for entry in ready.committed_entries {
//!             if let EntryPayload::Normal(data) = entry.payload {
//!                 applied[i].push(data);
//!             }
//!             node.on_applied(entry.index).unwrap();
//!         }
//!     }
//!     for m in network {
//!         nodes[(m.to - 1) as usize].step(m).unwrap();
//!     }
//!     busy
//! }
//!
//! nodes[0].campaign().unwrap();
//! while drive(&mut nodes, &mut applied) {}
//! assert_eq!(nodes[0].role(), Role::Leader);
//!
//! let index = nodes[0].propose(Bytes::from_static(b"hello")).unwrap();
//! while drive(&mut nodes, &mut applied) {}
//! for (node, applied) in nodes.iter().zip(&applied) {
//!     assert_eq!(node.commit_index(), index);
//!     assert_eq!(applied, &[Bytes::from_static(b"hello")]);
//! }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod confchange;
mod config;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quiesce;
mod quorum;
mod raft;
mod read;
mod replication;
mod storage;
mod types;

pub use config::{Config, ConfigError};
pub use error::{
    CampaignError, ConfChangeError, DriverError, Inconsistency, Invariant, MembershipError, ProposeError,
    ReadError, RecoverError, StepError, TransferError,
};
pub use message::{
    Append, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody, ReadIndexRequest,
    ReadIndexResponse, RequestVote, VoteResponse,
};
pub use node::{PeerStatus, Persist, PersistToken, RawNode, Ready, Status};
pub use progress::ProgressState;
pub use replication::SnapshotStatus;
pub use storage::{InitialState, LogStorage, MemStorage, StorageError, limit_size, total_size};
pub use types::{
    ChangeKind, ConfChange, ConfChangeMode, ConfState, ENTRY_OVERHEAD, Entry, EntryPayload, HardState, Index,
    MAX_INDEX, MAX_TERM, MAX_TERM_GAP, MemberChange, NodeId, ReadCtx, ReadFailure, ReadState, Role,
    SnapshotMeta, SoftState, Term,
};

/// Pure membership arithmetic: the configuration a change leads to, without a node.
pub fn apply_conf_change(current: &ConfState, change: &ConfChange) -> Result<ConfState, ConfChangeError> {
    confchange::apply(current, change)
}
