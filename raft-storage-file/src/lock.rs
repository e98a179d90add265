//! The directory lock: an exclusive `flock` on `LOCK`, holding the owner's pid.
//!
//! `flock` locks belong to an open file description, so a second open of the same
//! directory fails whether it comes from another process or from this one, and the lock
//! goes away by itself when its holder exits, even after `SIGKILL`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::fault::Io;
use crate::format::LOCK_NAME;

/// A held directory lock; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` or fails with [`WalError::Locked`] naming the holder.
    pub(crate) fn acquire(io: &Io, dir: &Path, dir_file: &File) -> Result<DirLock, WalError> {
        let path: PathBuf = dir.join(LOCK_NAME);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| WalError::io("open", &path, e))?;
        if !existed {
            io.sync_dir(dir_file, dir)?;
        }
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(WalError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            return Err(WalError::io("flock", &path, err));
        }
        // The pid is only informational (for the error above); the lock itself is the
        // flock, so failing to record it (for example on a full disk) is not an error.
        let pid = format!("{}\n", std::process::id());
        if let Err(err) = file
            .set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
        {
            tracing::warn!(path = %path.display(), %err, "could not record the pid in the lock file");
        }
        Ok(DirLock { _file: file })
    }
}
