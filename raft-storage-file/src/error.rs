//! The typed errors of the store.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_core::Index;

/// Everything that can go wrong when opening, writing, reading or repairing a log directory.
///
/// Errors are cloneable (the I/O error inside is shared) because one failed `fdatasync`
/// fails every write it covered and every later one.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// Another process (or another store in this process) holds the directory's lock file.
    #[error("log directory {} is locked by {}", dir.display(), describe_holder(*holder))]
    Locked {
        /// The locked directory.
        dir: PathBuf,
        /// The process id written in the lock file by its holder, if it could be read.
        holder: Option<u32>,
    },
    /// A record, segment header or log invariant is broken at a known place. Recovery never
    /// skips such a place; see the crate docs for [`repair`](crate::repair).
    #[error("{}: corrupt log at offset {offset}: {kind}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record (0 for the segment header).
        offset: u64,
        /// What is wrong there.
        kind: CorruptKind,
    },
    /// A segment or snapshot file was written by a newer (or unknown) format version.
    #[error("{}: unsupported format version {found} (this build reads versions up to {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The newest version this build reads (the one it writes); it reads every older
        /// one back to version 1.
        supported: u32,
    },
    /// A system call failed. On the write path this is fatal for the store.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, for example `"fdatasync"` or `"write"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A snapshot file does not match what the log says about it, or fails its checksum.
    #[error("{}: bad snapshot file: {reason}", path.display())]
    SnapshotCorrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A [`LogWrite`](raft_runtime::LogWrite) broke the store's contract. This is fatal:
    /// later writes may depend on the refused one.
    #[error("invalid write: {0}")]
    InvalidWrite(InvalidWrite),
    /// `compact` was asked to discard entries the stored snapshot does not cover.
    #[error("cannot compact to {index}: the stored snapshot covers only up to {snapshot}")]
    CompactBeyondSnapshot {
        /// The requested index.
        index: Index,
        /// The stored snapshot's index (0 without a snapshot).
        snapshot: Index,
    },
    /// `save_snapshot` was given a snapshot past the end of the log.
    #[error("cannot save a local snapshot at {index}: the log ends at {last}")]
    SnapshotBeyondLog {
        /// The snapshot's index.
        index: Index,
        /// The last index of the log.
        last: Index,
    },
    /// A number the log format keeps below 2^63 (segment numbers, batch numbers, snapshot
    /// generations) would pass it: the log cannot take more writes. Fatal, like an I/O
    /// error on the write path; no log written by this store gets anywhere near it.
    #[error("the log has run out of {what}")]
    Exhausted {
        /// Which numbers ran out.
        what: &'static str,
    },
    /// An option is out of range: which one, its value and the rule it breaks.
    #[error(transparent)]
    Config(#[from] raft_core::ConfigError),
    /// The data handed to `save_snapshot` ended in an error; nothing was stored.
    #[error("reading the snapshot's data failed: {0}")]
    SnapshotSource(Arc<io::Error>),
    /// The store has been closed.
    #[error("the log store is closed")]
    Closed,
    /// [`FileWal::group`](crate::FileWal::group) or
    /// [`FileWal::remove_group`](crate::FileWal::remove_group) named a Raft group whose
    /// log is open already: a group's log has one user at a time.
    #[error("the log of Raft group {group} is open already")]
    GroupInUse {
        /// The group.
        group: u64,
    },
    /// [`FileLogStore::open`](crate::FileLogStore::open) found the log of Raft groups other
    /// than group 0 in the directory: it is a log shared by several groups, for
    /// [`FileWal`](crate::FileWal).
    #[error("log directory {} holds the logs of Raft groups {groups:?}: open it with FileWal", dir.display())]
    SharedLog {
        /// The directory.
        dir: PathBuf,
        /// The groups other than 0 found (at most ten).
        groups: Vec<u64>,
    },
}

/// What exactly is corrupt in a [`WalError::Corrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The segment header does not start with the format's magic bytes.
    #[error("bad segment magic")]
    BadMagic,
    /// The segment header fails its checksum.
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    /// The header names another segment number than the file name.
    #[error("segment header names segment {found}, file name says {expected}")]
    SequenceMismatch {
        /// From the file name.
        expected: u64,
        /// From the header.
        found: u64,
    },
    /// The segment does not follow the segment before it: a segment is missing.
    #[error("segment follows segment {prev_seq}, which is not the segment before it")]
    BrokenChain {
        /// The predecessor named in the header.
        prev_seq: u64,
    },
    /// The file is shorter than the data its successor says it holds.
    #[error("segment is shorter than its committed length {expected}")]
    Truncated {
        /// The length the next segment's header records.
        expected: u64,
    },
    /// A record fails its CRC-32C.
    #[error("record checksum mismatch")]
    Checksum,
    /// A record's length is zero or runs past the end of the segment.
    #[error("bad record length {0}")]
    BadLength(u32),
    /// The padding after a record is not zero.
    #[error("non-zero record padding")]
    Padding,
    /// Unknown record type.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// A record passes its checksum but its contents cannot be decoded.
    #[error("undecodable record body")]
    Decode,
    /// A closed segment ends with records that no commit record covers.
    #[error("closed segment ends with an uncommitted batch")]
    UncommittedTail,
    /// A segment's first record is not a checkpoint.
    #[error("segment does not start with a checkpoint")]
    MissingCheckpoint,
    /// A checkpoint disagrees with the state rebuilt from the records before it.
    #[error("checkpoint disagrees with the log before it")]
    CheckpointMismatch,
    /// Commit records are not numbered consecutively.
    #[error("batch number {found} where {expected} was expected")]
    BatchSequence {
        /// The next number in sequence.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// An entry leaves a gap after the entries before it.
    #[error("entry {index} leaves a gap after entry {last}")]
    LogGap {
        /// The entry's index.
        index: Index,
        /// The last index before it.
        last: Index,
    },
    /// A number in a record is beyond what any log holds (terms, indexes, batch numbers and
    /// snapshot generations stay below 2^63).
    #[error("{field} {value} is out of range")]
    OutOfRange {
        /// Which number.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// An entry's term is lower than the term of the entry (or snapshot) before it.
    #[error("entry {index} has term {term}, lower than the term {prev} before it")]
    TermRegression {
        /// The entry's index.
        index: Index,
        /// Its term.
        term: u64,
        /// The term before it.
        prev: u64,
    },
    /// The snapshot file a record refers to is missing or has the wrong size.
    #[error("snapshot file {generation:016x} referred to here is missing or damaged")]
    SnapshotFile {
        /// The snapshot file's generation number.
        generation: u64,
    },
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidWrite {
    /// The entries of one write do not have consecutive indexes.
    #[error("entry {found} follows entry {prev}")]
    NotContiguous {
        /// The index before.
        prev: Index,
        /// The index found after it.
        found: Index,
    },
    /// The first entry would leave a gap after the last stored entry.
    #[error("entry {index} would leave a gap after the last index {last}")]
    Gap {
        /// The first new index.
        index: Index,
        /// The last stored index.
        last: Index,
    },
    /// The first entry is covered by the stored snapshot.
    #[error("entry {index} is covered by the snapshot at {snapshot}")]
    Compacted {
        /// The first new index.
        index: Index,
        /// The snapshot's index.
        snapshot: Index,
    },
    /// A term or index is 2^63 or more, beyond what the log format accepts (recovery would
    /// refuse the log).
    #[error("{field} {value} is out of range")]
    OutOfRange {
        /// Which number.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A single entry is larger than the format allows (4 GiB minus framing).
    #[error("entry {index} is too large to store")]
    TooLarge {
        /// The entry's index.
        index: Index,
    },
    /// The write installs a staged snapshot this store does not hold (never staged,
    /// discarded, installed already, or staged with other metadata).
    #[error("no snapshot at index {index} is staged as {id}")]
    NotStaged {
        /// The staged snapshot's id.
        id: u64,
        /// Its index.
        index: Index,
    },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(path: impl AsRef<Path>, offset: u64, kind: CorruptKind) -> Self {
        WalError::Corrupt {
            path: path.as_ref().to_path_buf(),
            offset,
            kind,
        }
    }

    /// The operating system error behind a [`WalError::Io`], if that is what this is.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether this is an I/O error reporting a full disk (`ENOSPC` or `EDQUOT`).
    pub fn is_storage_full(&self) -> bool {
        self.io_error()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
    }
}

fn describe_holder(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("process {pid}"),
        None => "another process (its pid could not be read)".to_string(),
    }
}
