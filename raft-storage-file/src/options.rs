//! Options for [`FileLogStore::open`](crate::FileLogStore::open).

use std::fmt;
use std::sync::Arc;

use raft_core::ConfigError;

use crate::error::WalError;
use crate::fault::FaultHook;

/// How a log directory is opened and run. `Options::default()` suits production.
#[derive(Clone)]
pub struct Options {
    /// Size of a segment file. Segments are pre-allocated (zero-filled) or recycled at this
    /// size off the commit path; a write that does not fit in the current segment goes to
    /// the next. Default 64 MiB; at least 4 KiB.
    ///
    /// Opening a log reads its data plus about one segment's worth of pre-allocated space
    /// (two after a crash), which recovery must check for durable records: with 64 MiB,
    /// about 7 ms from the page cache on the machine the README's figures come from, or the
    /// time to read 64 MiB from a cold disk. See "What an open costs" in the README.
    pub segment_size: u64,
    /// Budget of the in-memory cache of recent entries, by [`Entry::size`](raft_core::Entry::size).
    /// Older entries are read from the segments. Default 64 MiB; 0 disables the cache. On a
    /// [`FileWal`](crate::FileWal) it is the budget of every group's entries together: the
    /// entries cached first leave first, whichever group they belong to.
    pub cache_bytes: u64,
    /// Largest amount of encoded data one group commit writes before it syncs; a single
    /// larger write still goes out whole. Default 8 MiB.
    pub max_group_bytes: usize,
    /// Create the directory if it does not exist. Default `true`.
    pub create_if_missing: bool,
    /// Reuse the files of segments freed by compaction instead of deleting them and
    /// zero-filling new ones. Default `true`.
    pub recycle_segments: bool,
    /// A hook consulted before every I/O operation, for fault-injection tests (see
    /// [`DiskFull`](crate::DiskFull)). Default `None`.
    pub fault_hook: Option<Arc<dyn FaultHook>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: 64 << 20,
            cache_bytes: 64 << 20,
            max_group_bytes: 8 << 20,
            create_if_missing: true,
            recycle_segments: true,
            fault_hook: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("segment_size", &self.segment_size)
            .field("cache_bytes", &self.cache_bytes)
            .field("max_group_bytes", &self.max_group_bytes)
            .field("create_if_missing", &self.create_if_missing)
            .field("recycle_segments", &self.recycle_segments)
            .field("fault_hook", &self.fault_hook.as_ref().map(|_| "set"))
            .finish()
    }
}

impl Options {
    /// Checks every option, naming the first invalid one ([`WalError::Config`]).
    pub(crate) fn validate(&self) -> Result<(), WalError> {
        if !(4096..=1 << 40).contains(&self.segment_size) {
            return Err(ConfigError::new(
                "segment_size",
                self.segment_size,
                "must be between 4 KiB and 1 TiB",
            )
            .into());
        }
        if self.max_group_bytes < 4096 {
            return Err(
                ConfigError::new("max_group_bytes", self.max_group_bytes, "must be at least 4 KiB").into(),
            );
        }
        Ok(())
    }
}
