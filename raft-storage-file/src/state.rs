//! The in-memory view of the durable log that reads are served from.
//!
//! One `RwLock<LogState>` guards it. The writer thread takes the write lock only after a
//! group is durable, for the few microseconds it takes to apply the group; readers never
//! wait for a disk write or an `fdatasync`. Entries are located through `locs` (one small
//! record per entry: term, segment, offset); the most recent ones are also in a bounded
//! cache, and older ones are read back from their segment with `pread`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use raft_core::{Entry, HardState, Index, StorageError, Term};

use crate::error::{CorruptKind, WalError};
use crate::fault::Io;
use crate::format::{RECORD_HEADER, SnapRef, decode_entry, padded, parse_record, rtype};

/// Where an entry lives on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// The entry's term.
    pub term: Term,
    /// Its segment.
    pub seg: u64,
    /// Offset of its record in the segment.
    pub offset: u64,
    /// Record length (frame header and payload, no padding).
    pub len: u32,
    /// [`Entry::size`], saturated to `u32`, for byte limits without reading the entry.
    pub size: u32,
}

/// An open segment, readable by any thread.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub file: Arc<File>,
}

/// The durable state as reads see it: every Raft group's log, and the segments they
/// share.
#[derive(Debug)]
pub(crate) struct LogState {
    /// Each Raft group's state, by group id. A group with no state here has never been
    /// written to (or was removed): its log is empty.
    pub groups: HashMap<u64, GroupState>,
    /// The cache budget of all groups together.
    pub cache_limit: u64,
    /// Bytes cached, all groups together.
    cache_total: u64,
    /// Entries cached, all groups together.
    cache_entries: usize,
    /// The group of each entry cached, in the order they were cached (with records of
    /// entries since truncated, compacted or evicted, skipped when they come up): the
    /// cache gives up the oldest entries first, whichever group they belong to.
    cache_order: VecDeque<u64>,
    /// Every segment file still part of the log, by number.
    pub segments: BTreeMap<u64, Segment>,
    /// The newest segment with data (never deleted by compaction); 0 if there is none.
    pub newest_seq: u64,
    /// End of the durable data in the newest segment.
    pub durable_end: u64,
}

impl LogState {
    pub(crate) fn new(cache_limit: u64) -> Self {
        LogState {
            groups: HashMap::new(),
            cache_limit,
            cache_total: 0,
            cache_entries: 0,
            cache_order: VecDeque::new(),
            segments: BTreeMap::new(),
            newest_seq: 0,
            durable_end: 0,
        }
    }

    /// A group's state, or an empty log's for a group never written to.
    pub(crate) fn group(&self, gid: u64) -> std::borrow::Cow<'_, GroupState> {
        match self.groups.get(&gid) {
            Some(group) => std::borrow::Cow::Borrowed(group),
            None => std::borrow::Cow::Owned(GroupState::new(0)),
        }
    }

    /// Changes a group's state (made empty if the group has none yet) with `f`, keeping
    /// the cache within its budget: the caches of all groups together stay within
    /// `cache_limit`, the entries cached first going first, whichever group they belong
    /// to (within a group, always its oldest).
    pub(crate) fn change<R>(&mut self, gid: u64, f: impl FnOnce(&mut GroupState) -> R) -> R {
        let limit = self.cache_limit;
        let group = self.groups.entry(gid).or_insert_with(|| GroupState::new(limit));
        let (bytes, entries) = (group.cache_bytes, group.cache.len());
        let out = f(group);
        self.cache_total = self.cache_total - bytes + group.cache_bytes;
        self.cache_entries = self.cache_entries - entries + group.cache.len();
        let pushed = std::mem::take(&mut group.pushed);
        self.cache_order.extend(std::iter::repeat_n(gid, pushed));
        while self.cache_total > limit {
            let Some(oldest) = self.cache_order.pop_front() else {
                break;
            };
            if let Some((size, _)) = self.groups.get_mut(&oldest).and_then(GroupState::evict_oldest) {
                self.cache_total -= size;
                self.cache_entries -= 1;
            }
        }
        // Records of entries that left the cache otherwise pile up: past twice the entries
        // cached, the order is rebuilt (each group's entries together, oldest first).
        if self.cache_order.len() > 2 * self.cache_entries + 1024 {
            self.cache_order = self
                .groups
                .iter()
                .flat_map(|(&gid, g)| std::iter::repeat_n(gid, g.cache.len()))
                .collect();
        }
        out
    }

    /// Drops a group's state, returning it.
    pub(crate) fn remove(&mut self, gid: u64) -> Option<GroupState> {
        let group = self.groups.remove(&gid)?;
        self.cache_total -= group.cache_bytes;
        self.cache_entries -= group.cache.len();
        Some(group)
    }

    /// Bytes cached, all groups together.
    #[cfg(test)]
    pub(crate) fn cache_total(&self) -> u64 {
        self.cache_total
    }

    /// The oldest segment that still holds something the log needs: the segment of the
    /// first live entry of any group, or the newest segment if that is older. (Hard
    /// states and snapshot references need no old segment: every segment starts with a
    /// checkpoint of them all.)
    pub(crate) fn oldest_needed_segment(&self) -> u64 {
        let live = self
            .groups
            .values()
            .filter_map(|g| g.locs.front().map(|l| l.seg))
            .min()
            .unwrap_or(u64::MAX);
        live.min(self.newest_seq)
    }
}

/// One Raft group's durable state.
#[derive(Clone, Debug)]
pub(crate) struct GroupState {
    pub hard_state: HardState,
    pub snapshot: Option<SnapRef>,
    /// First stored index; entries before it are compacted.
    pub first: Index,
    /// Term of the entry at `first - 1` (the snapshot's term once compacted to it).
    pub base_term: Term,
    /// Locations of the entries `first..=last`.
    pub locs: VecDeque<Loc>,
    /// The entries `last + 1 - cache.len() ..= last`.
    cache: VecDeque<Entry>,
    cache_bytes: u64,
    cache_limit: u64,
    /// Entries cached since [`LogState::change`] last looked.
    pushed: usize,
}

impl GroupState {
    pub(crate) fn new(cache_limit: u64) -> Self {
        GroupState {
            hard_state: HardState::default(),
            snapshot: None,
            first: 1,
            base_term: 0,
            locs: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_limit,
            pushed: 0,
        }
    }

    pub(crate) fn last(&self) -> Index {
        self.first + self.locs.len() as u64 - 1
    }

    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn cache_first(&self) -> Index {
        self.last() + 1 - self.cache.len() as u64
    }

    pub(crate) fn term(&self, index: Index) -> Result<Term, StorageError> {
        let base = self.first - 1;
        if index < base {
            return Err(StorageError::Compacted {
                index,
                first: self.first,
            });
        }
        if index == base {
            return Ok(self.base_term);
        }
        let last = self.last();
        if index > last {
            return Err(StorageError::Unavailable { index, last });
        }
        Ok(self.locs[(index - self.first) as usize].term)
    }

    /// Discards the entries at and after `index`.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        let last = self.last();
        if index > last {
            return;
        }
        let keep = index.saturating_sub(self.first) as usize;
        self.locs.truncate(keep);
        let drop = ((last + 1 - index) as usize).min(self.cache.len());
        for _ in 0..drop {
            if let Some(e) = self.cache.pop_back() {
                self.cache_bytes -= e.size();
            }
        }
    }

    /// Appends the entry after the last one.
    pub(crate) fn push(&mut self, entry: Entry, loc: Loc) {
        debug_assert_eq!(entry.index, self.last() + 1);
        self.locs.push_back(loc);
        if self.cache_limit == 0 {
            return;
        }
        // The budget is shared by every group: the log enforces it (`LogState::change`).
        self.cache_bytes += entry.size();
        self.cache.push_back(entry);
        self.pushed += 1;
    }

    /// Drops the oldest cached entry, returning its size and index.
    fn evict_oldest(&mut self) -> Option<(u64, Index)> {
        let entry = self.cache.pop_front()?;
        self.cache_bytes -= entry.size();
        Some((entry.size(), entry.index))
    }

    /// Points entry `index` to a new copy of its record (written by the writer when it
    /// carries a quiet group's entries forward), if the entry is still the one copied.
    pub(crate) fn relocate(&mut self, index: Index, loc: Loc) {
        if index < self.first || index > self.last() {
            return;
        }
        let slot = &mut self.locs[(index - self.first) as usize];
        if slot.term == loc.term {
            *slot = loc;
        }
    }

    /// Bytes of the live entries' records, and the segment of the first one.
    pub(crate) fn live(&self) -> Option<(u64, u64)> {
        let front = self.locs.front()?;
        Some((front.seg, self.locs.iter().map(|l| l.len as u64).sum()))
    }

    /// A snapshot from the leader: it replaces the log.
    pub(crate) fn install(&mut self, snap: SnapRef) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.first = snap.meta.index + 1;
        self.base_term = snap.meta.term;
        self.snapshot = Some(snap);
    }

    /// Discards entries up to `index`. Returns whether anything changed.
    pub(crate) fn compact(&mut self, index: Index) -> Result<bool, WalError> {
        let snapshot = self.snapshot_index();
        if index > snapshot || self.snapshot.is_none() {
            if index == 0 {
                return Ok(false);
            }
            return Err(WalError::CompactBeyondSnapshot { index, snapshot });
        }
        if index < self.first {
            return Ok(false);
        }
        let last = self.last();
        let base_term = if index <= last {
            self.locs[(index - self.first) as usize].term
        } else {
            // Only reachable when the snapshot is past the log; then the log is covered.
            self.snapshot.as_ref().map_or(0, |s| s.meta.term)
        };
        let drop = ((index + 1 - self.first) as usize).min(self.locs.len());
        self.locs.drain(..drop);
        while self.cache.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.cache.pop_front() {
                self.cache_bytes -= e.size();
            }
        }
        self.first = index + 1;
        self.base_term = base_term;
        Ok(true)
    }
}

/// What a read needs after the lock is released.
struct Plan {
    /// Entries to read from disk: index and location.
    disk: Vec<(Index, Loc)>,
    /// Files of the segments involved.
    files: BTreeMap<u64, (PathBuf, Arc<File>)>,
    /// Entries served from the cache, after the disk ones.
    cached: Vec<Entry>,
}

fn plan(log: &LogState, gid: u64, low: Index, high: Index, max_bytes: u64) -> Result<Plan, StorageError> {
    let state = &*log.group(gid);
    if low < state.first {
        return Err(StorageError::Compacted {
            index: low,
            first: state.first,
        });
    }
    let last = state.last();
    if high > last + 1 {
        return Err(StorageError::Unavailable {
            index: high - 1,
            last,
        });
    }
    let mut end = low;
    let mut total = 0u64;
    while end < high {
        let size = state.locs[(end - state.first) as usize].size as u64;
        total = total.saturating_add(size);
        if total > max_bytes && end > low {
            break;
        }
        end += 1;
    }
    let cache_first = state.cache_first();
    let disk_end = end.min(cache_first).max(low);
    let mut files = BTreeMap::new();
    let disk: Vec<(Index, Loc)> = (low..disk_end)
        .map(|i| (i, state.locs[(i - state.first) as usize]))
        .collect();
    for (_, loc) in &disk {
        if let std::collections::btree_map::Entry::Vacant(slot) = files.entry(loc.seg) {
            let seg = log.segments.get(&loc.seg).ok_or_else(|| {
                StorageError::Failure(format!("segment {} of a live entry is not open", loc.seg).into())
            })?;
            slot.insert((seg.path.clone(), seg.file.clone()));
        }
    }
    let cached = (disk_end..end)
        .map(|i| state.cache[(i - cache_first) as usize].clone())
        .collect();
    Ok(Plan { disk, files, cached })
}

/// Largest span read with one `pread`.
const MAX_SPAN: u64 = 8 << 20;
/// Largest gap between two records that one `pread` still covers.
const MAX_GAP: u64 = 64 << 10;

/// Serves [`LogStore::entries`](raft_runtime::LogStore::entries).
pub(crate) fn read_entries(
    state: &RwLock<LogState>,
    io: &Io,
    gid: u64,
    low: Index,
    high: Index,
    max_bytes: u64,
) -> Result<Vec<Entry>, StorageError> {
    let mut tries = 0;
    loop {
        let plan = plan(&state.read().expect("log state lock"), gid, low, high, max_bytes)?;
        if plan.disk.is_empty() {
            return Ok(plan.cached);
        }
        let mut out = Vec::with_capacity(plan.disk.len() + plan.cached.len());
        match read_from_segments(io, &plan, &mut out) {
            Ok(()) => {
                out.extend(plan.cached);
                return Ok(out);
            }
            Err(err) => {
                // A concurrent compaction may have recycled the segment under us, or the
                // writer carried the entries forward (and the old segment went).
                let log = state.read().expect("log state lock");
                let group = log.group(gid);
                if low < group.first {
                    return Err(StorageError::Compacted {
                        index: low,
                        first: group.first,
                    });
                }
                let moved = plan.disk.iter().any(|(index, loc)| {
                    index
                        .checked_sub(group.first)
                        .and_then(|i| group.locs.get(i as usize))
                        .is_some_and(|now| now != loc)
                });
                tries += 1;
                if !moved || tries > 3 {
                    return Err(StorageError::Failure(Box::new(err)));
                }
            }
        }
    }
}

fn read_from_segments(io: &Io, plan: &Plan, out: &mut Vec<Entry>) -> Result<(), WalError> {
    let mut i = 0;
    while i < plan.disk.len() {
        let (_, first) = plan.disk[i];
        let start = first.offset;
        let mut end = start + padded(first.len as usize - RECORD_HEADER) as u64;
        let mut j = i + 1;
        while j < plan.disk.len() {
            let loc = plan.disk[j].1;
            let rec_end = loc.offset + padded(loc.len as usize - RECORD_HEADER) as u64;
            if loc.seg != first.seg
                || loc.offset < end
                || loc.offset - end > MAX_GAP
                || rec_end - start > MAX_SPAN
            {
                break;
            }
            end = rec_end;
            j += 1;
        }
        let (path, file) = &plan.files[&first.seg];
        let mut buf = vec![0u8; (end - start) as usize];
        io.read_exact_at(file, path, &mut buf, start)?;
        let buf = Bytes::from(buf);
        for &(index, loc) in &plan.disk[i..j] {
            let pos = (loc.offset - start) as usize;
            let corrupt = |kind| WalError::corrupt(path, loc.offset, kind);
            let rec = parse_record(&buf, pos, loc.seg).map_err(corrupt)?;
            if rec.rtype != rtype::ENTRY || rec.len != loc.len {
                return Err(corrupt(CorruptKind::Decode));
            }
            let entry =
                decode_entry(&buf.slice(pos..pos + loc.len as usize), RECORD_HEADER + 1).map_err(corrupt)?;
            if entry.index != index || entry.term != loc.term {
                return Err(corrupt(CorruptKind::Decode));
            }
            out.push(entry);
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_core::EntryPayload;

    use super::*;

    fn loc(term: Term) -> Loc {
        Loc {
            term,
            seg: 1,
            offset: 64,
            len: 100,
            size: 100,
        }
    }

    /// The caches of all groups together stay within one budget, the entries cached
    /// first going first: the group that writes has its newest entries cached.
    #[test]
    fn the_cache_budget_is_shared_by_every_group() {
        let mut state = LogState::new(1_000);
        let entry = |index| Entry::new(1, index, EntryPayload::Normal(Bytes::from(vec![7u8; 90])));
        let size = entry(1).size();
        for gid in 1..=5u64 {
            for index in 1..=10 {
                state.change(gid, |g| g.push(entry(index), loc(1)));
                assert!(state.cache_total() <= 1_000, "group {gid}, entry {index}");
            }
            let g = state.group(gid);
            assert_eq!(g.last(), 10);
            assert!(g.cache_first() <= 10, "group {gid} caches its newest entry");
        }
        // The first groups' entries, cached first, went first.
        assert_eq!(state.group(1).cache_bytes, 0);
        let total: u64 = state.groups.values().map(|g| g.cache_bytes).sum();
        assert_eq!(total, state.cache_total());
        // Compaction and removal give their share back.
        state.change(5, |g| {
            g.snapshot = Some(SnapRef {
                generation: 1,
                meta: raft_core::SnapshotMeta {
                    index: 10,
                    term: 1,
                    conf_state: Default::default(),
                },
                data_len: 0,
                data_crc: 0,
            });
            g.compact(10).unwrap()
        });
        assert_eq!(state.group(5).cache_bytes, 0);
        let before = state.cache_total();
        let removed = state.remove(4).unwrap();
        assert_eq!(state.cache_total(), before - removed.cache_bytes);
        assert!(size > 0);
    }
}
