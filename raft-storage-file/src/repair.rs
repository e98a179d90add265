//! Offline tools for operators: [`verify`] a log directory, or [`repair`] a corrupt one.
//!
//! [`FileLogStore::open`](crate::FileLogStore::open) never throws data away except a torn
//! final write. When it reports [`WalError::Corrupt`], an operator can decide to run
//! [`repair`] (or `raft-wal repair DIR --yes`), which **cuts the log at the last complete
//! batch before the corruption** and moves everything after it aside. This loses every
//! entry, hard state and snapshot reference written after that point, which can include
//! acknowledged entries and the node's vote: only repair a node whose peers can bring it
//! back up to date, and never more nodes than the cluster can lose at once.

use std::fs::File;
use std::path::{Path, PathBuf};

use raft_core::{HardState, Index, SnapshotMeta};

use crate::error::WalError;
use crate::fault::{Io, open_ro, open_rw};
use crate::format::{HEADER_LEN, parse_segment_name};
use crate::lock::DirLock;
use crate::options::Options;
use crate::recovery::{Cut, Failure, RecoveryStats, recover};

/// One segment of a verified log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// Where its committed data ends.
    pub committed_len: u64,
    /// Its size on disk (larger while pre-allocated space is unused).
    pub file_len: u64,
}

/// One Raft group's log in a verified directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReport {
    /// The group's id.
    pub group: u64,
    /// First stored index.
    pub first_index: Index,
    /// Last stored index.
    pub last_index: Index,
    /// The stored hard state.
    pub hard_state: HardState,
    /// The stored snapshot's metadata.
    pub snapshot: Option<SnapshotMeta>,
}

/// What [`verify`] found in a healthy log.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The segments, oldest first; all but the last are closed.
    pub segments: Vec<SegmentReport>,
    /// First stored index of group 0 (the log of a [`FileLogStore`](crate::FileLogStore)).
    pub first_index: Index,
    /// Last stored index of group 0.
    pub last_index: Index,
    /// The stored hard state of group 0.
    pub hard_state: HardState,
    /// The stored snapshot's metadata, of group 0.
    pub snapshot: Option<SnapshotMeta>,
    /// Every group with state in the log (group 0 included), in order.
    pub groups: Vec<GroupReport>,
    /// Recovery figures (including the size of a torn tail that opening would discard).
    pub stats: RecoveryStats,
}

/// Checks a log directory without changing it: every record's checksum, the segment
/// chain, the batch sequence and the snapshot file. Takes the directory lock for the
/// duration, so it fails with [`WalError::Locked`] while a store has the log open.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport, WalError> {
    let dir = dir.as_ref();
    let io = Io::default();
    let dir_file = open_ro(dir)?;
    let _lock = DirLock::acquire(&io, dir, &dir_file)?;
    let recovery = recover(&io, dir, Options::default().segment_size).map_err(|f| f.error)?;
    let groups: Vec<GroupReport> = recovery
        .groups
        .iter()
        .map(|(&group, g)| GroupReport {
            group,
            first_index: g.first,
            last_index: g.first + g.locs.len() as u64 - 1,
            hard_state: g.hard_state,
            snapshot: g.snapshot.as_ref().map(|s| s.meta.clone()),
        })
        .collect();
    let zero = groups
        .iter()
        .find(|g| g.group == 0)
        .cloned()
        .unwrap_or(GroupReport {
            group: 0,
            first_index: 1,
            last_index: 0,
            hard_state: HardState::default(),
            snapshot: None,
        });
    Ok(VerifyReport {
        segments: recovery
            .segments
            .iter()
            .map(|s| SegmentReport {
                path: s.path.clone(),
                committed_len: s.end,
                file_len: s.file_len,
            })
            .collect(),
        first_index: zero.first_index,
        last_index: zero.last_index,
        hard_state: zero.hard_state,
        snapshot: zero.snapshot,
        groups,
        stats: recovery.stats,
    })
}

/// What [`repair`] did.
#[derive(Clone, Debug, Default)]
pub struct RepairReport {
    /// The corruptions found, in the order they were repaired. Empty if the log was fine.
    pub repaired: Vec<WalError>,
    /// Segments cut short: the file and the length it was cut to. The original contents
    /// are kept in a copy named `<segment>.corrupt`.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Files moved aside (renamed with a `.corrupt` suffix), including those copies.
    pub quarantined: Vec<PathBuf>,
}

/// Most rounds of repair (each cuts the log strictly shorter).
const MAX_ROUNDS: usize = 64;

/// Repairs a corrupt log directory by cutting it at the last complete batch before the
/// first corruption, as the module docs describe (read them first: this loses data).
/// Returns what was done; a healthy log is left untouched. Errors that cutting cannot fix
/// (an unsupported version, an I/O error, a gap at the very start of the log) are
/// returned as they are.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport, WalError> {
    let dir = dir.as_ref();
    let io = Io::default();
    let dir_file = open_ro(dir)?;
    let _lock = DirLock::acquire(&io, dir, &dir_file)?;
    let mut report = RepairReport::default();
    for _ in 0..MAX_ROUNDS {
        match recover(&io, dir, Options::default().segment_size) {
            Ok(_) => return Ok(report),
            Err(Failure { error, cut: None }) => return Err(error),
            Err(Failure {
                error,
                cut: Some(cut),
            }) => {
                tracing::warn!(%error, "repairing the log");
                cut_log(&io, dir, &dir_file, &cut, &mut report)?;
                report.repaired.push(error);
            }
        }
    }
    Err(report.repaired.pop().unwrap_or(WalError::Closed))
}

/// A free name for moving `path` aside.
fn corrupt_name(path: &Path) -> PathBuf {
    let base = format!("{}.corrupt", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

fn cut_log(
    io: &Io,
    dir: &Path,
    dir_file: &File,
    cut: &Cut,
    report: &mut RepairReport,
) -> Result<(), WalError> {
    let seq_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
    };
    let cut_seq = seq_of(&cut.path).unwrap_or(0);
    let mut later = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))? {
        let item = item.map_err(|e| WalError::io("read directory", dir, e))?;
        if let Some(seq) = seq_of(&item.path())
            && seq > cut_seq
        {
            later.push((seq, item.path()));
        }
    }
    // Newest first, so that a crash half-way leaves a shorter but contiguous log.
    later.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    for (_, path) in later {
        let to = corrupt_name(&path);
        io.rename(&path, &to)?;
        io.sync_dir(dir_file, dir)?;
        report.quarantined.push(to);
    }
    if cut.offset <= HEADER_LEN {
        let to = corrupt_name(&cut.path);
        io.rename(&cut.path, &to)?;
        io.sync_dir(dir_file, dir)?;
        report.quarantined.push(to);
    } else {
        let copy = corrupt_name(&cut.path);
        std::fs::copy(&cut.path, &copy).map_err(|e| WalError::io("copy", &cut.path, e))?;
        io.sync_all(&open_ro(&copy)?, &copy)?;
        io.sync_dir(dir_file, dir)?;
        let file = open_rw(&cut.path)?;
        io.set_len(&file, &cut.path, cut.offset)?;
        io.sync_all(&file, &cut.path)?;
        report.quarantined.push(copy);
        report.truncated.push((cut.path.clone(), cut.offset));
    }
    Ok(())
}
