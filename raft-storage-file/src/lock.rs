//! The directory lock: an exclusive `flock` on `LOCK`, holding the owner's pid.
//!
//! `flock` locks belong to an open file description, so a second open of the same
//! directory fails whether it comes from another process or from this one, and the lock
//! goes away by itself when its holder exits, even after `SIGKILL`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::WalError;
use crate::fault::Io;
use crate::format::LOCK_NAME;

/// How long opening waits for a lock that names this process as its holder (see
/// [`DirLock::acquire`]).
const OWN_LOCK_GRACE: Duration = Duration::from_secs(2);

/// The pid written in the lock file, if it can be read.
fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse::<u32>().ok()
}

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
        let started = Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(WalError::io("flock", &path, err));
            }
            let holder = read_holder(&mut file);
            // A lock this process took and released can still be held for a moment by a
            // child process being started: between fork and exec the child holds a copy
            // of every descriptor, close-on-exec or not, and `flock` follows the copy.
            // Such a copy goes away at the child's exec, so wait a little for it; a store
            // of this process that really holds the directory is refused once the wait is
            // over.
            if holder == Some(std::process::id()) && started.elapsed() < OWN_LOCK_GRACE {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            return Err(WalError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
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
