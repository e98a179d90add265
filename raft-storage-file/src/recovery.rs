//! Recovery: rebuild the durable state from the segments, verifying every record.
//!
//! The rules (the crate README explains them at length):
//!
//! 1. Segments are read in number order. Every segment but the newest is *closed*: the
//!    next segment's header records where its committed data ends, and every byte up to
//!    there must be a valid record, ending in a commit record. Anything else is
//!    [`WalError::Corrupt`] naming the file and offset.
//! 2. The newest segment may end in a torn write. Records are read until the first one
//!    that fails; everything after the last commit record before it is discarded. But if
//!    a valid commit record of a *later* group write lies behind the failure, the failure
//!    is in data that was once durable: that is corruption, not a torn tail.
//! 3. A newest segment whose header is zero or invalid and that holds no durable data was
//!    being prepared or started when the process died; it is discarded.
//! 4. Records only take effect at their batch's commit record. Checkpoints, batch numbers
//!    and entry indexes are cross-checked while replaying.
//! 5. Records belong to Raft group 0 unless a group record names another group; each
//!    group's records are replayed into that group's state. A segment's first batch holds
//!    a checkpoint of every group the log knows.
//! 6. Finally the trait's restart rule, for each group: a stored snapshot at `s` whose
//!    term differs from the log's entry at `s` discards the log; otherwise entries after
//!    `s` are kept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft_core::{HardState, Index, Term};

use crate::error::{CorruptKind, WalError};
use crate::fault::{Io, open_ro};
use crate::format::{
    ALIGN, COMMIT_LEN, Checkpoint, FORMAT_VERSION, HEADER_LEN, HeaderError, MAX_VALUE, SegmentHeader,
    SnapRef, check_entry, commit_at, decode_checkpoint, decode_commit, decode_group, decode_hard_state,
    decode_snap_ref, padded, parse_record, parse_segment_name, parse_snapshot_name, rtype, snapshot_name,
};
use crate::snapshot::check_snapshot_file;
use crate::state::Loc;

/// Figures about the last recovery, from [`FileLogStore::recovery_stats`](crate::FileLogStore::recovery_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segments read.
    pub segments: usize,
    /// Bytes of segment data read and verified.
    pub bytes: u64,
    /// Entries in the recovered log.
    pub entries: u64,
    /// Bytes of a torn tail that were discarded (0 after a clean shutdown).
    pub torn_bytes: u64,
    /// How long recovery took.
    pub duration: Duration,
}

/// A segment that is part of the recovered log.
#[derive(Clone, Debug)]
pub(crate) struct RecoveredSegment {
    pub seq: u64,
    pub path: PathBuf,
    /// End of its committed data.
    pub end: u64,
    /// Its length on disk.
    pub file_len: u64,
}

/// One Raft group's recovered state.
#[derive(Debug)]
pub(crate) struct RecoveredGroup {
    pub hard_state: HardState,
    pub snapshot: Option<SnapRef>,
    pub first: Index,
    pub base_term: Term,
    pub locs: VecDeque<Loc>,
    /// The restart rule discarded entries that stay in the segments: the store must make
    /// that durable (see `FileWal::open`) before segments are cleaned up, or a replay of
    /// the segments left would bring the discarded entries back.
    pub discarded: bool,
}

/// The recovered state and the housekeeping `open` must do before writing.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// Every Raft group with state in the log, by group id.
    pub groups: BTreeMap<u64, RecoveredGroup>,
    /// Segments of the log, oldest first; the last is the newest.
    pub segments: Vec<RecoveredSegment>,
    pub next_seq: u64,
    pub next_batch: u64,
    pub next_gen: u64,
    /// Files to delete: temporaries, discarded segments, orphan snapshots.
    pub remove: Vec<PathBuf>,
    /// Discarded segments of full size that hold nothing but zeros after their header,
    /// fit for reuse. A file found on disk with data in it is removed instead: its records
    /// may be framed for any segment number (the checksum seed), including the one it
    /// would be reused under, and only zeros are proof that none is.
    pub reusable: Vec<PathBuf>,
    pub stats: RecoveryStats,
}

impl Recovery {
    /// Whether the restart rule discarded entries of any group.
    pub(crate) fn discarded(&self) -> bool {
        self.groups.values().any(|g| g.discarded)
    }
}

/// Where a repair cuts the log: the segment at `seg` (index into the list of segments
/// that were read) keeps `offset` bytes; every later segment goes.
#[derive(Clone, Debug)]
pub(crate) struct Cut {
    pub path: PathBuf,
    pub offset: u64,
}

/// A recovery failure, with where a repair would cut.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: WalError,
    pub cut: Option<Cut>,
}

impl From<WalError> for Failure {
    fn from(error: WalError) -> Self {
        Failure { error, cut: None }
    }
}

fn corrupt_at(path: &Path, offset: u64, kind: CorruptKind, cut: u64) -> Failure {
    Failure {
        error: WalError::corrupt(path, offset, kind),
        cut: Some(Cut {
            path: path.to_path_buf(),
            offset: cut,
        }),
    }
}

/// A record read but not yet committed.
enum Pending {
    Checkpoint(Box<Checkpoint>),
    Entry(Index, Loc),
    HardState(HardState),
    Install(Box<SnapRef>),
    Saved(Box<SnapRef>),
    Removed,
}

/// Where the record that set the current snapshot is.
#[derive(Clone, Debug)]
struct SnapOrigin {
    path: PathBuf,
    offset: u64,
    batch_start: u64,
}

/// The state rebuilt so far.
#[derive(Default)]
struct Replay {
    /// Whether a checkpoint was read (the first segment's first batch holds one).
    initialized: bool,
    groups: BTreeMap<u64, GroupReplay>,
    next_batch: Option<u64>,
}

/// One Raft group's state rebuilt so far.
#[derive(Default)]
struct GroupReplay {
    hard_state: HardState,
    snapshot: Option<(SnapRef, SnapOrigin)>,
    log_first: Index,
    locs: VecDeque<Loc>,
}

impl GroupReplay {
    /// Whether nothing is stored: no entry, no snapshot, the initial hard state. Such a
    /// group is as good as absent, and the writer keeps no checkpoint of it.
    fn is_empty(&self) -> bool {
        self.locs.is_empty() && self.snapshot.is_none() && self.hard_state == HardState::default()
    }

    fn append(&mut self, index: Index, loc: Loc) -> Result<(), CorruptKind> {
        if self.locs.is_empty() {
            self.log_first = index;
        } else {
            let last = self.log_first + self.locs.len() as u64 - 1;
            // The restart rule (see `recover`) discards a log that a snapshot at `s`
            // supersedes: one that ends before `s`, or disagrees with the snapshot's term
            // at `s`. Entries written since continue right after the snapshot, so an entry
            // after such a snapshot starts the log afresh, as it did in memory.
            let superseded = self.snapshot.as_ref().is_some_and(|(snap, _)| {
                let s = snap.meta.index;
                let disagrees = s >= self.log_first
                    && s <= last
                    && self.locs[(s - self.log_first) as usize].term != snap.meta.term;
                index <= s + 1 && (s > last || (index == s + 1 && disagrees))
            });
            if index > last + 1 && !superseded {
                return Err(CorruptKind::LogGap { index, last });
            }
            if index < self.log_first || superseded {
                self.locs.clear();
                self.log_first = index;
            } else {
                self.locs.truncate((index - self.log_first) as usize);
            }
        }
        self.locs.push_back(loc);
        Ok(())
    }
}

impl Replay {
    /// Applies a committed batch; on failure returns the offending record's offset.
    /// `first_batch` says whether the batch opens its segment: then it holds the
    /// segment's checkpoints, and every group known from the segments before must have
    /// one.
    fn commit(
        &mut self,
        pending: &mut Vec<(u64, u64, Pending)>,
        batch: u64,
        path: &Path,
        batch_start: u64,
        first_batch: bool,
    ) -> Result<(), (u64, CorruptKind)> {
        // A group with nothing stored needs no checkpoint.
        let mut unchecked: BTreeSet<u64> = if first_batch {
            self.groups
                .iter()
                .filter(|(_, g)| !g.is_empty())
                .map(|(&gid, _)| gid)
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut checkpointed = BTreeSet::new();
        for (offset, gid, rec) in pending.drain(..) {
            if !self.initialized && !matches!(rec, Pending::Checkpoint(_)) {
                return Err((offset, CorruptKind::MissingCheckpoint));
            }
            let origin = || SnapOrigin {
                path: path.to_path_buf(),
                offset,
                batch_start,
            };
            if let Pending::Removed = rec {
                self.groups.remove(&gid);
                continue;
            }
            let known = self.groups.contains_key(&gid);
            let group = self.groups.entry(gid).or_default();
            match rec {
                Pending::Checkpoint(cp) => {
                    self.initialized = true;
                    unchecked.remove(&gid);
                    if !checkpointed.insert(gid) {
                        // A second checkpoint of one group in a batch.
                        return Err((offset, CorruptKind::CheckpointMismatch));
                    }
                    if !known {
                        // The group's older segments are gone (or this is the first).
                        group.hard_state = cp.hard_state;
                        group.snapshot = cp.snapshot.map(|s| (s, origin()));
                    } else if cp.hard_state != group.hard_state
                        || cp.snapshot.as_ref() != group.snapshot.as_ref().map(|s| &s.0)
                    {
                        return Err((offset, CorruptKind::CheckpointMismatch));
                    }
                }
                Pending::Entry(index, loc) => group.append(index, loc).map_err(|k| (offset, k))?,
                Pending::HardState(hs) => group.hard_state = hs,
                Pending::Install(snap) => {
                    group.locs.clear();
                    group.snapshot = Some((*snap, origin()));
                }
                Pending::Saved(snap) => group.snapshot = Some((*snap, origin())),
                Pending::Removed => unreachable!("handled above"),
            }
        }
        if !unchecked.is_empty() {
            // A group the log knew has no checkpoint: once older segments go, its hard
            // state and snapshot would be lost.
            return Err((batch_start, CorruptKind::MissingCheckpoint));
        }
        if let Some(expected) = self.next_batch
            && batch != expected
        {
            return Err((
                batch_start,
                CorruptKind::BatchSequence {
                    expected,
                    found: batch,
                },
            ));
        }
        self.next_batch = Some(batch + 1);
        Ok(())
    }
}

/// How one segment's scan ended.
struct ScanEnd {
    /// End of the last commit record.
    committed: u64,
}

/// Scans `buf` (a segment's bytes) and replays its committed batches.
fn scan_segment(
    buf: &[u8],
    seq: u64,
    path: &Path,
    closed: bool,
    replay: &mut Replay,
) -> Result<ScanEnd, Failure> {
    let mut pos = HEADER_LEN as usize;
    let mut committed = HEADER_LEN;
    let mut pending: Vec<(u64, u64, Pending)> = Vec::new();
    // The group the records belong to: 0 at the start of every batch.
    let mut gid = 0u64;
    let mut stop: Option<(usize, CorruptKind)> = None;
    while pos < buf.len() {
        let rec = match parse_record(buf, pos, seq) {
            Ok(rec) => rec,
            Err(kind) => {
                stop = Some((pos, kind));
                break;
            }
        };
        let offset = pos as u64;
        let hard = |kind| corrupt_at(path, offset, kind, committed);
        if pos == HEADER_LEN as usize && !matches!(rec.rtype, rtype::CHECKPOINT | rtype::GROUP) {
            return Err(hard(CorruptKind::MissingCheckpoint));
        }
        let first_batch = committed == HEADER_LEN;
        match rec.rtype {
            // Checkpoints open a segment: they are in its first batch.
            rtype::CHECKPOINT if first_batch => {
                pending.push((
                    offset,
                    gid,
                    Pending::Checkpoint(Box::new(decode_checkpoint(rec.body).map_err(hard)?)),
                ));
            }
            rtype::GROUP => gid = decode_group(rec.body).map_err(hard)?,
            rtype::GROUP_REMOVED if rec.body.is_empty() => pending.push((offset, gid, Pending::Removed)),
            rtype::GROUP_REMOVED => return Err(hard(CorruptKind::Decode)),
            rtype::ENTRY => {
                let (term, index, size) = check_entry(rec.body).map_err(hard)?;
                let loc = Loc {
                    term,
                    seg: seq,
                    offset,
                    len: rec.len,
                    size: size.min(u32::MAX as u64) as u32,
                };
                pending.push((offset, gid, Pending::Entry(index, loc)));
            }
            rtype::HARD_STATE => pending.push((
                offset,
                gid,
                Pending::HardState(decode_hard_state(rec.body).map_err(hard)?),
            )),
            rtype::SNAPSHOT_INSTALL => pending.push((
                offset,
                gid,
                Pending::Install(Box::new(decode_snap_ref(rec.body).map_err(hard)?)),
            )),
            rtype::SNAPSHOT_SAVED => pending.push((
                offset,
                gid,
                Pending::Saved(Box::new(decode_snap_ref(rec.body).map_err(hard)?)),
            )),
            rtype::COMMIT => {
                let (_, batch) = decode_commit(rec.body).map_err(hard)?;
                replay
                    .commit(&mut pending, batch, path, committed, first_batch)
                    .map_err(|(at, kind)| corrupt_at(path, at, kind, committed))?;
                committed = offset + rec.padded_len as u64;
                gid = 0;
            }
            other => return Err(hard(CorruptKind::UnknownType(other))),
        }
        pos += rec.padded_len;
    }
    if closed {
        if let Some((at, kind)) = stop {
            return Err(corrupt_at(path, at as u64, kind, committed));
        }
        if let Some((at, _, _)) = pending.first() {
            return Err(corrupt_at(path, *at, CorruptKind::UncommittedTail, committed));
        }
        // A segment's header is written with its checkpoint and first batch; a closed
        // segment without them would let compaction delete the older segments that hold
        // the only copy of the hard state.
        if committed == HEADER_LEN {
            return Err(corrupt_at(
                path,
                HEADER_LEN,
                CorruptKind::MissingCheckpoint,
                committed,
            ));
        }
        return Ok(ScanEnd { committed });
    }
    if let Some((at, kind)) = stop
        && durable_behind(buf, seq, committed, at + ALIGN)
    {
        return Err(corrupt_at(path, at as u64, kind, committed));
    }
    Ok(ScanEnd { committed })
}

/// Whether a valid commit record of a group write that started after `committed` lies at
/// or after `from`: proof that data behind a bad record was durable.
fn durable_behind(buf: &[u8], seq: u64, committed: u64, from: usize) -> bool {
    let mut p = from.div_ceil(ALIGN) * ALIGN;
    let need = padded(COMMIT_LEN as usize);
    let marker = COMMIT_LEN.to_le_bytes();
    while p + need <= buf.len() {
        if buf[p..p + 4] == marker
            && let Some(group_start) = commit_at(buf, p, seq)
            && group_start > committed
        {
            return true;
        }
        p += ALIGN;
    }
    false
}

fn header_kind(err: HeaderError) -> CorruptKind {
    match err {
        HeaderError::Magic | HeaderError::Zero => CorruptKind::BadMagic,
        _ => CorruptKind::HeaderChecksum,
    }
}

struct Listed {
    seq: u64,
    path: PathBuf,
    len: u64,
    header: Result<SegmentHeader, HeaderError>,
}

/// Reads the first `len` bytes of a file into `buf`, which only ever grows (so that it is
/// not cleared before every segment), and returns them.
fn read_file<'a>(io: &Io, path: &Path, len: u64, buf: &'a mut Vec<u8>) -> Result<&'a [u8], WalError> {
    let file = open_ro(path)?;
    let len = len as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    io.read_exact_at(&file, path, &mut buf[..len], 0)?;
    Ok(&buf[..len])
}

/// How much of a segment's tail [`scan_tail`] and [`data_end`] read at a time.
const TAIL_CHUNK: usize = 1 << 20;

/// The index of the last non-zero byte of `buf`. Whole blocks are OR-folded (which
/// compiles to vector instructions) and only a non-zero block is searched byte by byte:
/// a segment's pre-allocated tail is zeros, and this is most of what recovery looks at in
/// a log that holds little.
fn last_nonzero(buf: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let whole = buf.len() - buf.len() % BLOCK;
    if let Some(p) = buf[whole..].iter().rposition(|&b| b != 0) {
        return Some(whole + p);
    }
    let blocks = buf[..whole].chunks_exact(BLOCK).enumerate().rev();
    for (i, block) in blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return block.iter().rposition(|&b| b != 0).map(|p| i * BLOCK + p);
        }
    }
    None
}

/// One past the last non-zero byte of the file's first `len` bytes at or after `from`
/// (`from` if they are all zero). Reads backwards in chunks through `chunk` and stops at
/// the first chunk that holds data: a zero-filled tail is read once, without a buffer of
/// its size; a recycled segment's tail, which holds stale data, stops it at once.
fn data_end(io: &Io, path: &Path, from: u64, len: u64, chunk: &mut Vec<u8>) -> Result<u64, WalError> {
    let file = open_ro(path)?;
    chunk.resize(TAIL_CHUNK, 0);
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(TAIL_CHUNK as u64).max(from);
        let part = &mut chunk[..(end - start) as usize];
        io.read_exact_at(&file, path, part, start)?;
        if let Some(p) = last_nonzero(part) {
            return Ok(start + p as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// What [`durable_in_file`] found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// A valid commit record of the segment.
    Commit,
    /// Data, but no such commit record.
    Data,
    /// Nothing but zeros.
    Zeros,
}

/// Whether a valid commit record of this segment (`seq`) for a group write that started
/// after `committed` lies in the file's first `len` bytes at or after the 8-aligned
/// offset `from` ([`durable_behind`] on the whole file), reading it in chunks through
/// `chunk`; chunks of zeros are skipped without looking for records.
fn durable_in_file(
    io: &Io,
    path: &Path,
    len: u64,
    seq: u64,
    committed: u64,
    from: u64,
    chunk: &mut Vec<u8>,
) -> Result<Tail, WalError> {
    debug_assert_eq!(from % ALIGN as u64, 0);
    let file = open_ro(path)?;
    // Each chunk also reads the length of a commit record beyond its share of the
    // positions, so that a record across the boundary is seen whole.
    let overlap = padded(COMMIT_LEN as usize);
    chunk.resize(TAIL_CHUNK + overlap, 0);
    let mut at = from;
    let mut found = Tail::Zeros;
    while at < len {
        let n = ((len - at) as usize).min(TAIL_CHUNK + overlap);
        let part = &mut chunk[..n];
        io.read_exact_at(&file, path, part, at)?;
        let share = n.min(TAIL_CHUNK);
        if last_nonzero(part).is_some() {
            found = Tail::Data;
            let mut p = 0;
            while p < share {
                if commit_at(part, p, seq).is_some_and(|group_start| group_start > committed) {
                    return Ok(Tail::Commit);
                }
                p += ALIGN;
            }
        }
        at += share as u64;
    }
    Ok(found)
}

/// Reads the directory and rebuilds the state, without changing anything on disk.
pub(crate) fn recover(io: &Io, dir: &Path, segment_size: u64) -> Result<Recovery, Failure> {
    let started = Instant::now();
    let mut listed = Vec::new();
    let mut snapshots = Vec::new();
    let mut remove = Vec::new();
    let read_dir = std::fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))?;
    for item in read_dir {
        let item = item.map_err(|e| WalError::io("read directory", dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = item.path();
        if let Some(seq) = parse_segment_name(name) {
            if seq > MAX_VALUE {
                let kind = CorruptKind::OutOfRange {
                    field: "segment number",
                    value: seq,
                };
                return Err(corrupt_at(&path, 0, kind, 0));
            }
            let len = item.metadata().map_err(|e| WalError::io("stat", &path, e))?.len();
            listed.push((seq, path, len));
        } else if let Some(generation) = parse_snapshot_name(name) {
            // No log refers to a generation this large; the file is an orphan like any
            // other snapshot the log does not name.
            if generation > MAX_VALUE {
                remove.push(path);
                continue;
            }
            snapshots.push(generation);
        } else if name.ends_with(".tmp") {
            remove.push(path);
        }
    }
    listed.sort_by_key(|(seq, _, _)| *seq);
    snapshots.sort_unstable();
    let next_seq = listed.last().map_or(1, |(seq, _, _)| seq + 1);

    let mut segs = Vec::with_capacity(listed.len());
    for (seq, path, len) in listed {
        let mut head = vec![0u8; len.min(HEADER_LEN) as usize];
        let file = open_ro(&path)?;
        io.read_exact_at(&file, &path, &mut head, 0)?;
        let header = SegmentHeader::decode(&head);
        if let Err(HeaderError::Version(found)) = header {
            return Err(WalError::UnsupportedVersion {
                path,
                found,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        segs.push(Listed {
            seq,
            path,
            len,
            header,
        });
    }

    let mut buf = Vec::new();
    let mut chunk = Vec::new();
    let mut reusable = Vec::new();
    // Rule 3: a newest segment without a valid header was never durably started. This is
    // usually the segment the janitor prepared ahead of the writer, full size and zeros
    // (or stale data): it is read once, a chunk at a time, to prove that it holds no
    // commit record of its own. Only a file of zeros is kept for reuse.
    while let Some(last) = segs.last() {
        let Err(err) = last.header else { break };
        let tail = durable_in_file(io, &last.path, last.len, last.seq, 0, HEADER_LEN, &mut chunk)?;
        if tail == Tail::Commit {
            return Err(corrupt_at(&last.path, 0, header_kind(err), 0));
        }
        let last = segs.pop().expect("checked above");
        if err == HeaderError::Zero && tail == Tail::Zeros && last.len == segment_size {
            reusable.push(last.path);
        } else {
            remove.push(last.path);
        }
    }
    for i in 0..segs.len() {
        let seg = &segs[i];
        let header = match seg.header {
            Ok(h) => h,
            Err(err) => return Err(corrupt_at(&seg.path, 0, header_kind(err), 0)),
        };
        if header.seq != seg.seq {
            let kind = CorruptKind::SequenceMismatch {
                expected: seg.seq,
                found: header.seq,
            };
            return Err(corrupt_at(&seg.path, 0, kind, 0));
        }
        if i > 0 && header.prev_seq != segs[i - 1].seq {
            let kind = CorruptKind::BrokenChain {
                prev_seq: header.prev_seq,
            };
            return Err(corrupt_at(&seg.path, 0, kind, 0));
        }
    }

    let mut replay = Replay::default();
    let mut segments = Vec::with_capacity(segs.len());
    let mut stats = RecoveryStats::default();
    for i in 0..segs.len() {
        let seg = &segs[i];
        let closed = i + 1 < segs.len();
        let limit = if closed {
            segs[i + 1].header.expect("validated").prev_end
        } else {
            // The newest segment is full size after a crash (pre-allocated), but holds
            // data only up to its last non-zero byte: zeros hold no record, so it is read
            // and scanned only that far, plus the length of a commit record, whose last
            // bytes may be zeros. What lies beyond is zeros, as the scan would have found.
            let end = data_end(io, &seg.path, HEADER_LEN, seg.len, &mut chunk)?;
            let overlap = padded(COMMIT_LEN as usize) as u64;
            (end.div_ceil(ALIGN as u64) * ALIGN as u64 + overlap).min(seg.len)
        };
        let data = read_file(io, &seg.path, limit.min(seg.len), &mut buf)?;
        stats.bytes += data.len() as u64;
        let end = scan_segment(data, seg.seq, &seg.path, closed, &mut replay)?;
        if closed && seg.len < limit {
            let kind = CorruptKind::Truncated { expected: limit };
            return Err(corrupt_at(&seg.path, seg.len, kind, end.committed));
        }
        if !closed {
            let data_end = last_nonzero(data).map_or(0, |p| p as u64 + 1);
            stats.torn_bytes = data_end.saturating_sub(end.committed);
        }
        segments.push(RecoveredSegment {
            seq: seg.seq,
            path: seg.path.clone(),
            end: end.committed,
            file_len: seg.len,
        });
    }
    stats.segments = segments.len();
    // A newest segment with nothing committed in it is dropped; its predecessor's end is
    // known from its header, which was validated above. It is kept for reuse only if
    // nothing but zeros follows the header.
    if segments.last().is_some_and(|s| s.end == HEADER_LEN) {
        let seg = segments.pop().expect("checked above");
        if seg.file_len == segment_size && stats.torn_bytes == 0 {
            reusable.push(seg.path);
        } else {
            remove.push(seg.path);
        }
    }

    let mut groups = BTreeMap::new();
    let mut origins = Vec::new();
    for (gid, group) in replay.groups {
        // A group with nothing stored is no group (the checkpoint a new log opens with
        // is group 0's, empty).
        if group.is_empty() {
            continue;
        }
        let (recovered, origin) = finish_group(group, &segments)?;
        if recovered.discarded {
            tracing::warn!(
                group = gid,
                "the stored snapshot disagrees with the log at its index; discarding the log"
            );
        }
        stats.entries += recovered.locs.len() as u64;
        origins.extend(origin.zip(recovered.snapshot.clone()));
        groups.insert(gid, recovered);
    }
    for (origin, snap) in &origins {
        if !check_snapshot_file(dir, snap) {
            let kind = CorruptKind::SnapshotFile {
                generation: snap.generation,
            };
            return Err(corrupt_at(&origin.path, origin.offset, kind, origin.batch_start));
        }
    }
    let current: BTreeSet<u64> = origins.iter().map(|(_, s)| s.generation).collect();
    for generation in &snapshots {
        if !current.contains(generation) {
            remove.push(dir.join(snapshot_name(*generation)));
        }
    }
    let next_gen = snapshots
        .last()
        .copied()
        .max(current.last().copied())
        .map_or(1, |g| g + 1);
    stats.duration = started.elapsed();
    Ok(Recovery {
        groups,
        segments,
        next_seq,
        next_batch: replay.next_batch.unwrap_or(1),
        next_gen,
        remove,
        reusable,
        stats,
    })
}

/// Applies the restart rule to a group's replayed log and checks what is left: no gap
/// after the snapshot, no term going down. Returns the group and where its snapshot
/// reference was read.
fn finish_group(
    group: GroupReplay,
    segments: &[RecoveredSegment],
) -> Result<(RecoveredGroup, Option<SnapOrigin>), Failure> {
    let GroupReplay {
        hard_state,
        snapshot,
        log_first,
        mut locs,
    } = group;
    let mut discarded = false;
    let (first, base_term) = match &snapshot {
        Some((snap, _)) => {
            let s = snap.meta.index;
            if let Some(front) = locs.front()
                && log_first > s + 1
            {
                let path = segment_path(segments, front.seg);
                let kind = CorruptKind::LogGap {
                    index: log_first,
                    last: s,
                };
                return Err(WalError::corrupt(path, front.offset, kind).into());
            }
            let end = log_first + locs.len() as u64;
            if !locs.is_empty()
                && s >= log_first
                && s < end
                && locs[(s - log_first) as usize].term != snap.meta.term
            {
                locs.clear();
                discarded = true;
            } else if !locs.is_empty() {
                let drop = ((s + 1).saturating_sub(log_first) as usize).min(locs.len());
                locs.drain(..drop);
            }
            (s + 1, snap.meta.term)
        }
        None => {
            if let Some(front) = locs.front()
                && log_first != 1
            {
                let path = segment_path(segments, front.seg);
                let kind = CorruptKind::LogGap {
                    index: log_first,
                    last: 0,
                };
                return Err(WalError::corrupt(path, front.offset, kind).into());
            }
            (1, 0)
        }
    };

    // Terms never decrease along a log, nor below the snapshot the log continues.
    let mut prev = base_term;
    for (i, loc) in locs.iter().enumerate() {
        if loc.term < prev {
            let kind = CorruptKind::TermRegression {
                index: first + i as u64,
                term: loc.term,
                prev,
            };
            return Err(WalError::corrupt(segment_path(segments, loc.seg), loc.offset, kind).into());
        }
        prev = loc.term;
    }
    let (snapshot, origin) = snapshot.unzip();
    let recovered = RecoveredGroup {
        hard_state,
        snapshot,
        first,
        base_term,
        locs,
        discarded,
    };
    Ok((recovered, origin))
}

fn segment_path(segments: &[RecoveredSegment], seq: u64) -> PathBuf {
    segments
        .iter()
        .find(|s| s.seq == seq)
        .map(|s| s.path.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_commit, frame};

    /// A file of `len` zeros with `records` (offset, bytes) written over them.
    fn file_with(dir: &Path, len: usize, records: &[(usize, &[u8])]) -> PathBuf {
        let mut data = vec![0u8; len];
        for (at, bytes) in records {
            data[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        let path = dir.join("segment");
        std::fs::write(&path, &data).unwrap();
        path
    }

    fn commit_record(seq: u64, group_start: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        frame(&mut buf, seq, |b| encode_commit(b, group_start, 1));
        buf
    }

    #[test]
    fn last_nonzero_finds_the_last_data_byte_in_any_block() {
        assert_eq!(last_nonzero(&[]), None);
        assert_eq!(last_nonzero(&[0; 1000]), None);
        for len in [1, 255, 256, 257, 1000, 4096] {
            for at in [0, len / 2, len - 1] {
                let mut buf = vec![0u8; len];
                buf[at] = 7;
                if at > 0 {
                    buf[0] = 1;
                }
                assert_eq!(last_nonzero(&buf), Some(at), "len {len}, at {at}");
            }
        }
    }

    #[test]
    fn data_end_reads_back_to_the_last_data_byte_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new(None);
        let mut chunk = Vec::new();
        let len = 3 * TAIL_CHUNK + 100;
        for at in [70, TAIL_CHUNK - 1, TAIL_CHUNK, 2 * TAIL_CHUNK + 5, len - 1] {
            let path = file_with(dir.path(), len, &[(at, &[9])]);
            let end = data_end(&io, &path, HEADER_LEN, len as u64, &mut chunk).unwrap();
            assert_eq!(end, at as u64 + 1, "data at {at}");
        }
        let path = file_with(dir.path(), len, &[(10, &[9])]);
        let end = data_end(&io, &path, HEADER_LEN, len as u64, &mut chunk).unwrap();
        assert_eq!(end, HEADER_LEN, "nothing at or after the header");
    }

    #[test]
    fn a_commit_record_is_found_anywhere_in_the_file_even_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new(None);
        let mut chunk = Vec::new();
        let seq = 5;
        let record = commit_record(seq, 4096);
        let len = 3 * TAIL_CHUNK;
        let from = HEADER_LEN;
        // Chunks start at `from`. Wholly inside a chunk, straddling a chunk boundary, just
        // after one, at the very end.
        let boundary = from as usize + TAIL_CHUNK;
        for at in [
            from as usize,
            boundary - 32,
            boundary - 16,
            boundary - 8,
            boundary,
            boundary + TAIL_CHUNK - 24,
            len - record.len(),
        ] {
            let path = file_with(dir.path(), len, &[(at, &record)]);
            assert_eq!(
                durable_in_file(&io, &path, len as u64, seq, 0, from, &mut chunk).unwrap(),
                Tail::Commit,
                "commit record at {at}"
            );
            // Not this segment's, or of a group that was already counted.
            let other = durable_in_file(&io, &path, len as u64, seq + 1, 0, from, &mut chunk).unwrap();
            assert_eq!(other, Tail::Data, "commit record at {at}");
            let counted = durable_in_file(&io, &path, len as u64, seq, 4096, from, &mut chunk).unwrap();
            assert_eq!(counted, Tail::Data, "commit record at {at}");
        }
        let zeros = file_with(dir.path(), len, &[]);
        let tail = durable_in_file(&io, &zeros, len as u64, seq, 0, from, &mut chunk).unwrap();
        assert_eq!(tail, Tail::Zeros);
    }
}
