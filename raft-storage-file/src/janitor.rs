//! The janitor thread: everything about files that must stay off the commit path.
//!
//! - It keeps one segment *prepared* ahead of the writer: a recycled segment file (whose
//!   header is zeroed, so its stale records can never validate under its new number) or
//!   a new zero-filled one, fsynced and renamed into place with directory fsyncs. Only
//!   files this store wrote, or found holding nothing but zeros, are recycled: their stale
//!   records are framed for older numbers than any it gives out. A file found on disk may
//!   hold records framed for any number, so it is deleted instead. Writes
//!   into a fully allocated file make `fdatasync` cheap, since no block allocation or file
//!   size change has to be journalled.
//! - After compaction it removes segments that no longer hold live entries, oldest first
//!   (so that a crash always leaves a contiguous run of segments), either into the free
//!   list for recycling or by unlinking them.
//! - It deletes snapshot files that a newer snapshot has replaced.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::WalError;
use crate::fault::open_rw;
use crate::format::{HEADER_LEN, MAX_VALUE, free_tmp_name, prep_tmp_name, segment_name, snapshot_name};
use crate::store::Shared;

/// A segment ready to be written: zero header, full size, durable name.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub seq: u64,
    pub path: PathBuf,
    pub file: File,
}

#[derive(Debug, Default)]
struct Tasks {
    prepared: Option<Prepared>,
    prep_error: Option<WalError>,
    want_prepare: bool,
    want_cleanup: bool,
    delete_snapshots: Vec<u64>,
    /// Obsolete segment files kept for reuse, renamed to `free-*.tmp`.
    free: Vec<PathBuf>,
    shutdown: bool,
}

/// The janitor's mailbox, shared by the writer, the store and the janitor thread.
#[derive(Debug, Default)]
pub(crate) struct Janitor {
    tasks: Mutex<Tasks>,
    cv: Condvar,
}

enum Task {
    Prepare(Option<PathBuf>),
    Cleanup,
    DeleteSnapshots(Vec<u64>),
}

/// How many freed segment files are kept for reuse.
const MAX_FREE: usize = 2;

/// How much of a new segment is zero-filled between two syncs.
const ZERO_FILL_SYNC: u64 = 4 << 20;

impl Janitor {
    /// A janitor that prepares the first segment at once, and cleans up at once if
    /// `cleanup` (otherwise on the first request).
    pub(crate) fn new(free: Vec<PathBuf>, cleanup: bool) -> Self {
        Janitor {
            tasks: Mutex::new(Tasks {
                free,
                want_prepare: true,
                want_cleanup: cleanup,
                ..Tasks::default()
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.tasks.lock().expect("janitor lock")
    }

    /// Takes the prepared segment, waiting for it if needed, and asks for the next one.
    pub(crate) fn take_prepared(&self) -> Result<Prepared, WalError> {
        let mut tasks = self.lock();
        loop {
            if let Some(prepared) = tasks.prepared.take() {
                tasks.want_prepare = true;
                self.cv.notify_all();
                return Ok(prepared);
            }
            if let Some(err) = &tasks.prep_error {
                return Err(err.clone());
            }
            if tasks.shutdown {
                return Err(WalError::Closed);
            }
            tasks.want_prepare = true;
            self.cv.notify_all();
            tasks = self.cv.wait(tasks).expect("janitor lock");
        }
    }

    /// Asks for obsolete segments to be removed.
    pub(crate) fn request_cleanup(&self) {
        self.lock().want_cleanup = true;
        self.cv.notify_all();
    }

    /// Asks for snapshot files to be deleted.
    pub(crate) fn delete_snapshots(&self, generations: impl IntoIterator<Item = u64>) {
        let mut tasks = self.lock();
        tasks.delete_snapshots.extend(generations);
        if !tasks.delete_snapshots.is_empty() {
            self.cv.notify_all();
        }
    }

    /// Whether the writer is (or soon will be) waiting for a prepared segment: the
    /// commit path comes before cleaning up.
    fn prepare_pending(&self) -> bool {
        let tasks = self.lock();
        tasks.want_prepare && tasks.prepared.is_none() && tasks.prep_error.is_none() && !tasks.shutdown
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_all();
    }

    fn next_task(&self) -> Option<Task> {
        let mut tasks = self.lock();
        loop {
            if tasks.shutdown {
                return None;
            }
            if tasks.want_prepare && tasks.prepared.is_none() && tasks.prep_error.is_none() {
                tasks.want_prepare = false;
                return Some(Task::Prepare(tasks.free.pop()));
            }
            if tasks.want_cleanup {
                tasks.want_cleanup = false;
                return Some(Task::Cleanup);
            }
            if !tasks.delete_snapshots.is_empty() {
                return Some(Task::DeleteSnapshots(std::mem::take(&mut tasks.delete_snapshots)));
            }
            tasks = self.cv.wait(tasks).expect("janitor lock");
        }
    }
}

/// The janitor thread's body.
pub(crate) fn run(shared: Arc<Shared>) {
    while let Some(task) = shared.janitor.next_task() {
        match task {
            Task::Prepare(free) => {
                let result = prepare(&shared, free);
                let mut tasks = shared.janitor.lock();
                match result {
                    Ok(prepared) => tasks.prepared = Some(prepared),
                    Err(err) => {
                        tracing::error!(%err, "could not prepare the next log segment");
                        tasks.prep_error = Some(err);
                    }
                }
                shared.janitor.cv.notify_all();
            }
            Task::Cleanup => {
                if let Err(err) = cleanup(&shared) {
                    tracing::warn!(%err, "could not remove an obsolete log segment; will retry after the next compaction");
                }
            }
            Task::DeleteSnapshots(generations) => {
                for generation in generations {
                    let path = shared.dir.join(snapshot_name(generation));
                    let result = shared
                        .io
                        .remove(&path)
                        .and_then(|()| shared.io.sync_dir(&shared.dir_file, &shared.dir));
                    if let Err(err) = result {
                        tracing::warn!(%err, "could not delete a replaced snapshot file");
                    }
                }
            }
        }
    }
}

/// Makes the next segment: recycles `free` if given, else zero-fills a new file.
fn prepare(shared: &Shared, free: Option<PathBuf>) -> Result<Prepared, WalError> {
    let io = &shared.io;
    let dir = &shared.dir;
    let seq = shared.next_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Recovery refuses segment numbers beyond MAX_VALUE: never create one.
    if seq > MAX_VALUE {
        return Err(WalError::Exhausted {
            what: "segment numbers",
        });
    }
    let path = dir.join(segment_name(seq));
    let recycled = free.and_then(|free| match zero_header(shared, &free) {
        Ok(()) => Some(free),
        Err(err) => {
            tracing::warn!(%err, "could not recycle a freed segment; creating a new one");
            let _ = std::fs::remove_file(&free);
            None
        }
    });
    let tmp = match recycled {
        Some(free) => free,
        None => zero_fill(shared, seq)?,
    };
    io.rename(&tmp, &path)?;
    io.sync_dir(&shared.dir_file, dir)?;
    let file = open_rw(&path)?;
    Ok(Prepared { seq, path, file })
}

/// Zeroes a freed segment's header: until it is rewritten, the file reads as never used,
/// and its old records are checksummed under their old segment number.
fn zero_header(shared: &Shared, free: &Path) -> Result<(), WalError> {
    let file = open_rw(free)?;
    shared
        .io
        .write_all_at(&file, free, &[0u8; HEADER_LEN as usize], 0)?;
    shared.io.sync_data(&file, free)
}

/// Creates a zero-filled segment under a temporary name and returns that name.
fn zero_fill(shared: &Shared, seq: u64) -> Result<PathBuf, WalError> {
    let io = &shared.io;
    let tmp = shared.dir.join(prep_tmp_name(seq));
    let file = io.create(&tmp)?;
    let fill = || {
        io.sync_dir(&shared.dir_file, &shared.dir)?;
        // Zero-fill in chunks, syncing every few MiB so that the page cache never holds
        // much of it: a large write-back would sit in front of the log's own syncs.
        let chunk = vec![0u8; 1 << 20];
        let size = shared.options.segment_size;
        let mut at = 0u64;
        while at < size {
            let n = chunk.len().min((size - at) as usize);
            io.write_all_at(&file, &tmp, &chunk[..n], at)?;
            at += n as u64;
            if at % ZERO_FILL_SYNC == 0 && at < size {
                io.sync_data(&file, &tmp)?;
            }
        }
        io.sync_all(&file, &tmp)
    };
    if let Err(err) = fill() {
        // Give the space back (a full disk is the likely cause); open removes it otherwise.
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    Ok(tmp)
}

/// Removes segments older than the oldest one the log still needs, oldest first. A
/// segment leaves the read map only once its file is gone, so that a failure leaves it
/// to be retried first next time (removing a younger one first would break the chain).
fn cleanup(shared: &Shared) -> Result<(), WalError> {
    loop {
        let victim = {
            let state = shared.state.read().expect("log state lock");
            let needed = state.oldest_needed_segment();
            match state.segments.first_key_value() {
                Some((&seq, seg)) if seq < needed => Some((seq, seg.path.clone())),
                _ => None,
            }
        };
        let Some((seq, path)) = victim else { return Ok(()) };
        let reusable = shared.options.recycle_segments
            && seq >= shared.own_from
            && std::fs::metadata(&path).is_ok_and(|m| m.len() == shared.options.segment_size);
        let keep = reusable && shared.janitor.lock().free.len() < MAX_FREE;
        if keep {
            let free = shared.dir.join(free_tmp_name(seq));
            shared.io.rename(&path, &free)?;
            shared.io.sync_dir(&shared.dir_file, &shared.dir)?;
            shared.janitor.lock().free.push(free);
        } else {
            match shared.io.remove(&path) {
                Err(err)
                    if err
                        .io_error()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
                other => other?,
            }
            shared.io.sync_dir(&shared.dir_file, &shared.dir)?;
        }
        shared
            .state
            .write()
            .expect("log state lock")
            .segments
            .remove(&seq);
        tracing::debug!(seq, recycled = keep, "removed an obsolete log segment");
        if shared.janitor.prepare_pending() {
            shared.janitor.request_cleanup();
            return Ok(());
        }
    }
}
