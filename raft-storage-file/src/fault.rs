//! An injectable I/O fault hook, and the thin I/O layer that consults it.
//!
//! Every system call the store makes on its files (writes, syncs, creates, renames,
//! unlinks, truncations, reads) goes through one place, which first asks the
//! [`FaultHook`] configured in [`Options::fault_hook`](crate::Options::fault_hook) whether
//! to go ahead. Tests use it to simulate a full disk ([`DiskFull`]) or a failing `fsync`
//! without mounting anything; production code leaves it unset.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::WalError;

/// One I/O operation the store is about to perform.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum IoOp<'a> {
    /// A positional write of `len` bytes at `offset`.
    Write {
        /// The file.
        path: &'a Path,
        /// Where the write starts.
        offset: u64,
        /// How many bytes.
        len: usize,
    },
    /// `fdatasync` of a file.
    SyncData {
        /// The file.
        path: &'a Path,
    },
    /// `fsync` of a file.
    SyncAll {
        /// The file.
        path: &'a Path,
    },
    /// `fsync` of a directory.
    SyncDir {
        /// The directory.
        path: &'a Path,
    },
    /// Creation of a new file.
    Create {
        /// The new file.
        path: &'a Path,
    },
    /// A rename.
    Rename {
        /// The old name.
        from: &'a Path,
        /// The new name.
        to: &'a Path,
    },
    /// An unlink.
    Remove {
        /// The file.
        path: &'a Path,
    },
    /// Setting a file's length.
    Truncate {
        /// The file.
        path: &'a Path,
        /// The new length.
        len: u64,
    },
    /// A positional read.
    Read {
        /// The file.
        path: &'a Path,
        /// Where the read starts.
        offset: u64,
        /// How many bytes.
        len: usize,
    },
}

/// What a [`FaultHook`] wants done with an operation.
#[derive(Debug)]
pub enum Fault {
    /// Perform the operation normally.
    Proceed,
    /// Do not perform it; fail with this error.
    Fail(io::Error),
    /// Only for writes: write the first `written` bytes, then fail with `error` (what a
    /// disk that fills up mid-write does).
    ShortWrite {
        /// Bytes actually written before the error.
        written: usize,
        /// The error to report.
        error: io::Error,
    },
}

/// Decides, for each I/O operation, whether it succeeds. For tests and fault drills.
pub trait FaultHook: Send + Sync + 'static {
    /// Called before `op` is performed.
    fn check(&self, op: &IoOp<'_>) -> Fault;
}

/// A [`FaultHook`] that behaves like a disk with `budget` free bytes: writes succeed until
/// the budget is spent, the write that crosses it is cut short, and every write after it
/// fails with `ENOSPC`.
#[derive(Debug)]
pub struct DiskFull {
    remaining: AtomicU64,
}

impl DiskFull {
    /// A disk with `budget` bytes left.
    pub fn new(budget: u64) -> Self {
        DiskFull {
            remaining: AtomicU64::new(budget),
        }
    }

    /// Bytes still writable.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::SeqCst)
    }
}

impl FaultHook for DiskFull {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        let IoOp::Write { len, .. } = *op else {
            return Fault::Proceed;
        };
        let len = len as u64;
        let mut current = self.remaining.load(Ordering::SeqCst);
        loop {
            let take = current.min(len);
            match self
                .remaining
                .compare_exchange(current, current - take, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) if take == len => return Fault::Proceed,
                Ok(_) => {
                    return Fault::ShortWrite {
                        written: take as usize,
                        error: io::Error::from_raw_os_error(libc::ENOSPC),
                    };
                }
                Err(now) => current = now,
            }
        }
    }
}

/// The store's I/O layer: std file calls, each preceded by the fault hook and each
/// returning a [`WalError`] that names the operation and the path.
#[derive(Clone, Default)]
pub(crate) struct Io {
    hook: Option<Arc<dyn FaultHook>>,
}

impl Io {
    pub(crate) fn new(hook: Option<Arc<dyn FaultHook>>) -> Self {
        Io { hook }
    }

    fn check(&self, op: IoOp<'_>) -> Fault {
        match &self.hook {
            Some(hook) => hook.check(&op),
            None => Fault::Proceed,
        }
    }

    fn gate(&self, op: IoOp<'_>, name: &'static str, path: &Path) -> Result<(), WalError> {
        match self.check(op) {
            Fault::Proceed => Ok(()),
            Fault::Fail(err) | Fault::ShortWrite { error: err, .. } => Err(WalError::io(name, path, err)),
        }
    }

    pub(crate) fn write_all_at(
        &self,
        file: &File,
        path: &Path,
        buf: &[u8],
        offset: u64,
    ) -> Result<(), WalError> {
        let op = IoOp::Write {
            path,
            offset,
            len: buf.len(),
        };
        match self.check(op) {
            Fault::Proceed => file
                .write_all_at(buf, offset)
                .map_err(|e| WalError::io("write", path, e)),
            Fault::Fail(err) => Err(WalError::io("write", path, err)),
            Fault::ShortWrite { written, error } => {
                let written = written.min(buf.len());
                file.write_all_at(&buf[..written], offset)
                    .map_err(|e| WalError::io("write", path, e))?;
                Err(WalError::io("write", path, error))
            }
        }
    }

    pub(crate) fn read_exact_at(
        &self,
        file: &File,
        path: &Path,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(), WalError> {
        self.gate(
            IoOp::Read {
                path,
                offset,
                len: buf.len(),
            },
            "read",
            path,
        )?;
        file.read_exact_at(buf, offset)
            .map_err(|e| WalError::io("read", path, e))
    }

    pub(crate) fn sync_data(&self, file: &File, path: &Path) -> Result<(), WalError> {
        self.gate(IoOp::SyncData { path }, "fdatasync", path)?;
        file.sync_data().map_err(|e| WalError::io("fdatasync", path, e))
    }

    pub(crate) fn sync_all(&self, file: &File, path: &Path) -> Result<(), WalError> {
        self.gate(IoOp::SyncAll { path }, "fsync", path)?;
        file.sync_all().map_err(|e| WalError::io("fsync", path, e))
    }

    pub(crate) fn sync_dir(&self, dir: &File, path: &Path) -> Result<(), WalError> {
        self.gate(IoOp::SyncDir { path }, "fsync directory", path)?;
        dir.sync_all()
            .map_err(|e| WalError::io("fsync directory", path, e))
    }

    /// Creates a new file (failing if it exists), open for reading and writing.
    pub(crate) fn create(&self, path: &Path) -> Result<File, WalError> {
        self.gate(IoOp::Create { path }, "create", path)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| WalError::io("create", path, e))
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<(), WalError> {
        self.gate(IoOp::Rename { from, to }, "rename", from)?;
        std::fs::rename(from, to).map_err(|e| WalError::io("rename", from, e))
    }

    pub(crate) fn remove(&self, path: &Path) -> Result<(), WalError> {
        self.gate(IoOp::Remove { path }, "unlink", path)?;
        std::fs::remove_file(path).map_err(|e| WalError::io("unlink", path, e))
    }

    pub(crate) fn set_len(&self, file: &File, path: &Path, len: u64) -> Result<(), WalError> {
        self.gate(IoOp::Truncate { path, len }, "truncate", path)?;
        file.set_len(len).map_err(|e| WalError::io("truncate", path, e))
    }
}

/// Opens an existing file for reading and writing.
pub(crate) fn open_rw(path: &Path) -> Result<File, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open", path, e))
}

/// Opens an existing file for reading.
pub(crate) fn open_ro(path: &Path) -> Result<File, WalError> {
    File::open(path).map_err(|e| WalError::io("open", path, e))
}
