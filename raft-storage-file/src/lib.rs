//! A durable [`LogStore`](raft_runtime::LogStore) on local files: a segmented write-ahead
//! log with group commit, crash recovery and atomic snapshot files.
//!
//! ```
//! use raft_core::{Entry, EntryPayload, HardState};
//! use raft_runtime::{LogStore, LogWrite};
//! use raft_storage_file::{FileLogStore, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let store = FileLogStore::open(dir.path(), Options::default())?;
//! let write = LogWrite {
//!     snapshot: None,
//!     entries: vec![Entry::new(1, 1, EntryPayload::Normal("hello".into()))],
//!     hard_state: Some(HardState { term: 1, vote: Some(1), commit: 0 }),
//! };
//! // Returns at once; the completion runs on the store's writer thread once durable.
//! store.append(write, Box::new(|result| result.expect("durable")));
//! store.flush_blocking()?;
//! assert_eq!(store.last_index(), 1);
//! drop(store);
//!
//! // Reopening recovers everything that was reported durable.
//! let store = FileLogStore::open(dir.path(), Options::default())?;
//! assert_eq!(store.term(1)?, 1);
//! assert_eq!(store.initial_state()?.hard_state.vote, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! - **Writes.** [`LogStore::append`](raft_runtime::LogStore::append) queues the write and
//!   returns. One writer thread takes everything queued, encodes each write as records
//!   (snapshot reference, entries, hard state) closed by a *commit record*, and makes the
//!   lot durable with one `pwrite` and one `fdatasync`. Only then does it apply the writes
//!   to the in-memory view and call their completions, in submission order.
//! - **Reads** are served from memory under a read lock that the writer holds only while
//!   applying a durable group: terms and index bounds from a per-entry index, recent
//!   entries from a bounded cache, older ones from their segment with `pread`.
//! - **Segments** are pre-allocated (zero-filled) or recycled by a janitor thread, so a
//!   write never allocates blocks or grows a file, and segments freed by compaction are
//!   removed off the commit path. Each segment starts with a checkpoint of the hard state
//!   and snapshot reference, so older segments can go once their entries are compacted.
//! - **Snapshots** are written to a temporary file, fsynced, renamed and the directory
//!   fsynced before the log refers to them, streamed a chunk at a time: a local one by
//!   `save_snapshot`, one received from a leader by `stage_snapshot` as it arrives, before
//!   the write that installs it reaches the writer thread.
//! - **Recovery** verifies every record's CRC-32C, replays committed batches only, cuts a
//!   torn final write back to the last commit record, and reports any other damage as
//!   [`WalError::Corrupt`] with the file and offset. [`repair`] is the explicit, lossy
//!   way out for operators; [`verify`] checks a directory without changing it.
//! - **Failures.** A failed write or `fdatasync` is fatal: the store fails that write and
//!   every later one with the same error and never retries the sync.
//! - **Many groups.** A [`FileWal`] is one log shared by many Raft groups: each group's
//!   node gets its own [`LogStore`](raft_runtime::LogStore) ([`GroupLog`], from
//!   [`FileWal::group`]), and one `fdatasync` covers the writes of every group queued
//!   together. Records are tagged with their group; recovery splits them again. Each group
//!   compacts and snapshots on its own; a segment goes once no group needs an entry in it,
//!   and the writer carries a quiet group's few live entries forward into new segments so
//!   that they never hold the log back. A [`FileLogStore`] is group 0 on a log of its own.
//! - **Exclusivity.** A lock file (`flock`) stops a second store, in this process or
//!   another, from opening the directory; the error names the holder's pid.
//!
//! The crate README documents the on-disk format, the recovery rules, the repair mode and
//! measured performance.
//!
//! # Notes on the `LogStore` contract
//!
//! - `compact(i)` takes effect in memory at once and removes files in the background. It
//!   is not logged: on restart the log starts after the stored snapshot, as the trait's
//!   restart rule says.
//! - After `save_snapshot` and before `compact`, `first_index()` stays where it was: the
//!   snapshot does not touch the log, and `term(first_index() - 1)` is the term of the
//!   last compacted entry (the snapshot's term once compacted up to it).
//! - A write that breaks the contract (a gap, entries covered by the snapshot, indexes
//!   that are not consecutive) fails with [`WalError::InvalidWrite`] and, like an I/O
//!   error, fails the store: later writes may depend on it.

mod error;
mod fault;
mod format;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod golden_tests;
mod janitor;
mod lock;
mod options;
mod recovery;
mod repair;
mod snapshot;
mod state;
mod store;
mod writer;

pub use error::{CorruptKind, InvalidWrite, WalError};
pub use fault::{DiskFull, Fault, FaultHook, IoOp};
pub use options::Options;
/// The configuration error of every crate of the workspace (see [`WalError::Config`]).
pub use raft_core::ConfigError;
pub use recovery::RecoveryStats;
pub use repair::{GroupReport, RepairReport, SegmentReport, VerifyReport, repair, verify};
pub use snapshot::SnapshotReader;
pub use store::{FileLogStore, FileWal, GroupLog, WalPosition};
