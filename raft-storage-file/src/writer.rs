//! The writer thread: group commit.
//!
//! [`append`](raft_runtime::LogStore::append) only pushes onto a queue. The writer thread
//! takes *everything* queued since its last sync, encodes it into one buffer (each
//! [`LogWrite`] as records ending in a commit record), writes it with one `pwrite`, syncs
//! it with one `fdatasync`, applies it to the in-memory state and then calls the
//! completions in submission order. While it syncs, new appends pile up for the next
//! group, so the number of syncs per entry falls as the load rises.
//!
//! The writes of every Raft group on the log share the groups: one `fdatasync` covers
//! the writes of all the groups that queued one. A group's records follow a group record
//! naming it (group 0's need none).
//!
//! A failed write or sync is fatal: that group and everything after it fails with the
//! same error, and the writer never touches the file again (after a failed `fsync` the
//! page cache may hold data that will never reach the disk, so retrying would lie).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use raft_core::{Entry, HardState, Index};
use raft_runtime::{Completion, LogWrite, StoreError};
use tokio::sync::oneshot;

use crate::error::{InvalidWrite, WalError};
use crate::format::{
    BINCODE, COMMIT_LEN, Checkpoint, GROUP_LEN, MAX_RECORD, MAX_VALUE, SegmentHeader, SnapRef,
    encode_checkpoint, encode_commit, encode_entry, encode_group, encode_group_removed, encode_hard_state,
    encode_snap_ref, entry_record_bound, frame, padded, rtype,
};
use crate::state::{Loc, Segment, read_entries};
use crate::store::Shared;

/// The answer channel of a flush or snapshot save.
pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Work for the writer. The `u64` is the Raft group the op is for.
pub(crate) enum Op {
    /// A write from the runtime.
    Write(u64, LogWrite, Completion),
    /// A locally taken snapshot whose file is already durable.
    SaveSnapshot(u64, SnapRef, Reply),
    /// Answer once everything before is durable.
    Flush(Reply),
    /// Writes a snapshot-install record for the stored snapshot (whose file exists), so
    /// that a replay discards the log before it as the last recovery did.
    Reinstall(u64, SnapRef, Completion),
    /// Removes a group from the log: its state, entries and snapshot.
    Remove(u64, Reply),
}

impl Op {
    fn fail(self, shared: &Shared, err: StoreError) {
        match self {
            Op::Write(_, _, done) => Done::Completion(done).finish(Err(err)),
            Op::SaveSnapshot(_, snap, reply) => {
                shared.janitor.delete_snapshots([snap.generation]);
                let _ = reply.send(Err(err));
            }
            Op::Flush(reply) | Op::Remove(_, reply) => {
                let _ = reply.send(Err(err));
            }
            Op::Reinstall(_, _, done) => done(Err(err)),
        }
    }
}

/// The writer's mailbox.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

#[derive(Default)]
struct QueueState {
    ops: Vec<Op>,
    closed: bool,
}

impl Queue {
    /// Queues `op`, or gives it back if the store is closed.
    pub(crate) fn push(&self, op: Op) -> Option<Op> {
        let mut state = self.state.lock().expect("queue lock");
        if state.closed {
            return Some(op);
        }
        state.ops.push(op);
        // The writer only sleeps on an empty queue, so only the first op must wake it.
        let wake = state.ops.len() == 1;
        drop(state);
        if wake {
            self.cv.notify_one();
        }
        None
    }

    /// Moves every queued op into `into` (which must be empty), waiting for one if needed.
    /// Returns `false` once the queue is closed and drained.
    fn take(&self, into: &mut Vec<Op>) -> bool {
        let mut state = self.state.lock().expect("queue lock");
        while state.ops.is_empty() {
            if state.closed {
                return false;
            }
            state = self.cv.wait(state).expect("queue lock");
        }
        std::mem::swap(&mut state.ops, into);
        true
    }

    pub(crate) fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.cv.notify_all();
    }
}

enum Done {
    Completion(Completion),
    Reply(Reply),
}

impl Done {
    fn finish(self, result: Result<(), StoreError>) {
        match self {
            Done::Completion(done) => {
                if catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
                    tracing::error!("a log store completion panicked");
                }
            }
            Done::Reply(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

enum Body {
    Nothing,
    Write {
        gid: u64,
        snapshot: Option<SnapRef>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        locs: Vec<Loc>,
    },
    Saved(u64, SnapRef),
    Removed(u64),
}

impl Body {
    /// The group whose records the body writes.
    fn gid(&self) -> u64 {
        match self {
            Body::Nothing => 0,
            Body::Write { gid, .. } | Body::Saved(gid, _) | Body::Removed(gid) => *gid,
        }
    }
}

struct Item {
    body: Body,
    done: Done,
    /// The result to report if the group succeeds (a refused snapshot save reports an error
    /// without failing the store).
    result: Result<(), StoreError>,
}

#[derive(Default)]
struct Group {
    items: Vec<Item>,
    /// Upper bound of the encoded size.
    bound: usize,
    /// Whether anything must be written.
    records: bool,
    /// Snapshot files that were never referenced and can go.
    unused_snapshots: Vec<u64>,
}

struct Active {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    end: u64,
}

/// What the writer starts from after recovery.
pub(crate) struct WriterInit {
    /// The newest segment and the end of its data (0, 0 without segments).
    pub prev_seq: u64,
    pub prev_end: u64,
    /// Each group's checkpoint and last index.
    pub groups: BTreeMap<u64, (Checkpoint, Index)>,
    pub next_batch: u64,
}

/// A group's log as the queued writes leave it, for validating the next ones.
#[derive(Clone, Debug, Default)]
struct Mirror {
    last: Index,
    snapshot: Option<SnapRef>,
}

impl Mirror {
    fn snapshot_index(&self) -> Option<Index> {
        self.snapshot.as_ref().map(|s| s.meta.index)
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    prev_seq: u64,
    prev_end: u64,
    /// Each group's hard state and snapshot after the last durable group commit: a new
    /// segment's checkpoints.
    durable: BTreeMap<u64, Checkpoint>,
    /// Each group's log as the queued writes leave it.
    mirrors: HashMap<u64, Mirror>,
    next_batch: u64,
    buf: Vec<u8>,
    failed: Option<StoreError>,
}

const SMALL_RECORD_BOUND: usize = 64;

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, init: WriterInit) -> Self {
        let mirrors = init
            .groups
            .iter()
            .map(|(&gid, (cp, last))| {
                let mirror = Mirror {
                    last: *last,
                    snapshot: cp.snapshot.clone(),
                };
                (gid, mirror)
            })
            .collect();
        let durable = init.groups.into_iter().map(|(gid, (cp, _))| (gid, cp)).collect();
        Writer {
            shared,
            active: None,
            prev_seq: init.prev_seq,
            prev_end: init.prev_end,
            durable,
            mirrors,
            next_batch: init.next_batch,
            buf: Vec::new(),
            failed: None,
        }
    }

    /// The thread's body: runs until the queue is closed and drained.
    pub(crate) fn run(mut self) {
        let mut ops = Vec::new();
        let max_group = self.shared.options.max_group_bytes;
        while self.shared.queue.take(&mut ops) {
            let mut group = Group::default();
            for op in ops.drain(..) {
                if let Some(err) = &self.failed {
                    op.fail(&self.shared, err.clone());
                    continue;
                }
                self.admit(op, &mut group);
                if group.bound >= max_group {
                    self.commit(&mut group);
                }
            }
            self.commit(&mut group);
        }
        self.finish();
    }

    fn mirror(&mut self, gid: u64) -> &mut Mirror {
        self.mirrors.entry(gid).or_default()
    }

    fn validate(&self, gid: u64, write: &LogWrite) -> Result<(), WalError> {
        let range = |field: &'static str, value: u64| {
            if value > MAX_VALUE {
                return Err(WalError::InvalidWrite(InvalidWrite::OutOfRange { field, value }));
            }
            Ok(())
        };
        if let Some(s) = &write.snapshot {
            range("snapshot index", s.meta.index)?;
            range("snapshot term", s.meta.term)?;
        }
        if let Some(hs) = &write.hard_state {
            range("hard state term", hs.term)?;
            range("hard state commit", hs.commit)?;
        }
        for e in &write.entries {
            range("entry index", e.index)?;
            range("entry term", e.term)?;
        }
        let (mut last, mut snap) = self
            .mirrors
            .get(&gid)
            .map_or((0, 0), |m| (m.last, m.snapshot_index().unwrap_or(0)));
        if let Some(s) = &write.snapshot {
            last = s.meta.index;
            snap = s.meta.index;
        }
        let Some(first) = write.entries.first() else {
            return Ok(());
        };
        if first.index > last + 1 {
            return Err(WalError::InvalidWrite(InvalidWrite::Gap {
                index: first.index,
                last,
            }));
        }
        if first.index <= snap {
            return Err(WalError::InvalidWrite(InvalidWrite::Compacted {
                index: first.index,
                snapshot: snap,
            }));
        }
        for pair in write.entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(WalError::InvalidWrite(InvalidWrite::NotContiguous {
                    prev: pair[0].index,
                    found: pair[1].index,
                }));
            }
        }
        if let Some(e) = write.entries.iter().find(|e| entry_record_bound(e) > MAX_RECORD) {
            return Err(WalError::InvalidWrite(InvalidWrite::TooLarge { index: e.index }));
        }
        Ok(())
    }

    /// Adds an op to the group being built.
    fn admit(&mut self, op: Op, group: &mut Group) {
        match op {
            Op::Write(gid, write, done) => {
                if write.is_empty() {
                    group.items.push(Item {
                        body: Body::Nothing,
                        done: Done::Completion(done),
                        result: Ok(()),
                    });
                    return;
                }
                if let Err(err) = self.validate(gid, &write) {
                    self.commit(group);
                    let err = self.fail(err);
                    Done::Completion(done).finish(Err(err));
                    return;
                }
                let LogWrite {
                    snapshot,
                    entries,
                    hard_state,
                } = write;
                let mut bound = 0;
                let snapshot = match snapshot {
                    None => None,
                    Some(staged) => {
                        // Its file was written and made durable when it was staged: the
                        // log's writes never wait for a snapshot's data.
                        // A group installs only what it staged itself.
                        let snap = {
                            let mut staged_map = self.shared.staged.lock().unwrap_or_else(|e| e.into_inner());
                            match staged_map.get(&staged.id) {
                                Some((owner, snap)) if *owner == gid && snap.meta == staged.meta => {
                                    staged_map.remove(&staged.id).map(|(_, snap)| snap)
                                }
                                _ => None,
                            }
                        };
                        match snap {
                            Some(snap) => {
                                bound += snap_ref_bound(&snap);
                                let mirror = self.mirror(gid);
                                mirror.last = snap.meta.index;
                                mirror.snapshot = Some(snap.clone());
                                Some(snap)
                            }
                            None => {
                                self.commit(group);
                                let err = self.fail(WalError::InvalidWrite(InvalidWrite::NotStaged {
                                    id: staged.id,
                                    index: staged.meta.index,
                                }));
                                Done::Completion(done).finish(Err(err));
                                return;
                            }
                        }
                    }
                };
                if let Some(last) = entries.last() {
                    self.mirror(gid).last = last.index;
                }
                bound += entries.iter().map(entry_record_bound).sum::<usize>();
                if hard_state.is_some() {
                    bound += SMALL_RECORD_BOUND;
                }
                group.bound += bound + padded(COMMIT_LEN as usize) + padded(GROUP_LEN);
                group.records = true;
                let locs = Vec::with_capacity(entries.len());
                group.items.push(Item {
                    body: Body::Write {
                        gid,
                        snapshot,
                        entries,
                        hard_state,
                        locs,
                    },
                    done: Done::Completion(done),
                    result: Ok(()),
                });
            }
            Op::SaveSnapshot(gid, snap, reply) => {
                let done = Done::Reply(reply);
                let index = snap.meta.index;
                let mirror = self.mirror(gid);
                let mirror_last = mirror.last;
                if mirror.snapshot_index().is_some_and(|current| index <= current) {
                    // A newer snapshot is already stored: keep it.
                    group.unused_snapshots.push(snap.generation);
                    group.items.push(Item {
                        body: Body::Nothing,
                        done,
                        result: Ok(()),
                    });
                } else if snap.meta.term > MAX_VALUE {
                    group.unused_snapshots.push(snap.generation);
                    let err = WalError::InvalidWrite(InvalidWrite::OutOfRange {
                        field: "snapshot term",
                        value: snap.meta.term,
                    });
                    group.items.push(Item {
                        body: Body::Nothing,
                        done,
                        result: Err(StoreError::new(err)),
                    });
                } else if index > mirror_last {
                    group.unused_snapshots.push(snap.generation);
                    let err = WalError::SnapshotBeyondLog {
                        index,
                        last: mirror_last,
                    };
                    group.items.push(Item {
                        body: Body::Nothing,
                        done,
                        result: Err(StoreError::new(err)),
                    });
                } else {
                    self.mirror(gid).snapshot = Some(snap.clone());
                    group.bound += snap_ref_bound(&snap) + padded(COMMIT_LEN as usize) + padded(GROUP_LEN);
                    group.records = true;
                    group.items.push(Item {
                        body: Body::Saved(gid, snap),
                        done,
                        result: Ok(()),
                    });
                }
            }
            Op::Flush(reply) => group.items.push(Item {
                body: Body::Nothing,
                done: Done::Reply(reply),
                result: Ok(()),
            }),
            Op::Reinstall(gid, snap, done) => {
                let mirror = self.mirror(gid);
                mirror.last = snap.meta.index;
                mirror.snapshot = Some(snap.clone());
                group.bound += snap_ref_bound(&snap) + padded(COMMIT_LEN as usize) + padded(GROUP_LEN);
                group.records = true;
                group.items.push(Item {
                    body: Body::Write {
                        gid,
                        snapshot: Some(snap),
                        entries: Vec::new(),
                        hard_state: None,
                        locs: Vec::new(),
                    },
                    done: Done::Completion(done),
                    result: Ok(()),
                });
            }
            Op::Remove(gid, reply) => {
                let done = Done::Reply(reply);
                if self.mirrors.remove(&gid).is_none() && !self.durable.contains_key(&gid) {
                    // Nothing of the group is in the log.
                    group.items.push(Item {
                        body: Body::Nothing,
                        done,
                        result: Ok(()),
                    });
                    return;
                }
                group.bound += padded(GROUP_LEN) + padded(1) + padded(COMMIT_LEN as usize);
                group.records = true;
                group.items.push(Item {
                    body: Body::Removed(gid),
                    done,
                    result: Ok(()),
                });
            }
        }
    }

    /// Makes the group durable, applies it and calls its completions.
    fn commit(&mut self, group: &mut Group) {
        let Group {
            mut items,
            records,
            unused_snapshots,
            ..
        } = std::mem::take(group);
        if items.is_empty() {
            return;
        }
        self.shared.janitor.delete_snapshots(unused_snapshots);
        let entries: u64 = items
            .iter()
            .map(|item| match &item.body {
                Body::Write { entries, .. } => entries.len() as u64,
                _ => 0,
            })
            .sum();
        if records {
            if let Err(err) = self.write_group(&mut items) {
                let err = self.fail(err);
                for item in items {
                    item.done.finish(Err(err.clone()));
                }
                return;
            }
        }
        // Counters first, so that whoever a completion wakes sees them.
        let writes = items
            .iter()
            .filter(|item| matches!(item.done, Done::Completion(_)))
            .count() as u64;
        let metrics = &self.shared.metrics;
        metrics.writes.fetch_add(writes, Ordering::Relaxed);
        metrics.entries.fetch_add(entries, Ordering::Relaxed);
        for item in items {
            item.done.finish(item.result);
        }
    }

    fn fail(&mut self, err: WalError) -> StoreError {
        tracing::error!(%err, "log store write failed; the store refuses all further writes");
        let err = StoreError::new(err);
        self.failed = Some(err.clone());
        *self.shared.failure.lock().expect("failure lock") = Some(err.clone());
        err
    }

    /// Encodes, writes and syncs the group, then applies it to the in-memory state.
    fn write_group(&mut self, items: &mut [Item]) -> Result<(), WalError> {
        // Recovery refuses batch numbers beyond MAX_VALUE: never write one.
        if self.next_batch.saturating_add(items.len() as u64) > MAX_VALUE + 1 {
            return Err(WalError::Exhausted {
                what: "batch numbers",
            });
        }
        let bound: usize = items.iter().map(item_bound).sum();
        let segment_size = self.shared.options.segment_size;
        let rotate = self
            .active
            .as_ref()
            .is_none_or(|a| a.end + bound as u64 > segment_size);
        let mut rotated = None;
        let mut carried = if rotate {
            self.carry_forward()
        } else {
            Carried::new()
        };
        self.buf.clear();
        // Exactly what the group needs (a rotation's header and checkpoint are small): grown
        // by doubling, the buffer would keep up to twice the largest group.
        self.buf.reserve_exact(bound.saturating_add(4096));
        // The group the records being encoded belong to: 0 at the start of every batch.
        let mut current = 0;
        let (seq, write_at) = if rotate {
            if let Some(active) = &self.active {
                self.prev_seq = active.seq;
                self.prev_end = active.end;
            }
            let prepared = self.shared.janitor.take_prepared()?;
            let header = SegmentHeader {
                seq: prepared.seq,
                prev_seq: self.prev_seq,
                prev_end: self.prev_end,
            };
            self.buf.extend_from_slice(&header.encode());
            // The checkpoint of every group (of group 0 alone in a log with none yet)
            // opens the segment, in the batch of the first item.
            let seq = prepared.seq;
            if self.durable.is_empty() {
                let empty = Checkpoint {
                    hard_state: Default::default(),
                    snapshot: None,
                };
                frame(&mut self.buf, seq, |b| encode_checkpoint(b, &empty));
            }
            for (&gid, checkpoint) in &self.durable {
                if gid != current {
                    frame(&mut self.buf, seq, |b| encode_group(b, gid));
                    current = gid;
                }
                frame(&mut self.buf, seq, |b| encode_checkpoint(b, checkpoint));
                if let Some((entries, locs)) = carried.get_mut(&gid) {
                    for entry in entries.iter() {
                        let (at, len) = frame(&mut self.buf, seq, |b| encode_entry(b, entry));
                        locs.push(loc_of(entry, seq, at as u64, len));
                    }
                }
            }
            rotated = Some(Active {
                seq,
                path: prepared.path,
                file: Arc::new(prepared.file),
                end: 0,
            });
            (seq, 0)
        } else {
            let active = self.active.as_ref().expect("checked above");
            (active.seq, active.end)
        };
        let group_start = write_at;
        for item in items.iter_mut() {
            let gid = item.body.gid();
            if !matches!(item.body, Body::Nothing) && gid != current {
                frame(&mut self.buf, seq, |b| encode_group(b, gid));
                current = gid;
            }
            match &mut item.body {
                Body::Nothing => continue,
                Body::Write {
                    gid: _,
                    snapshot,
                    entries,
                    hard_state,
                    locs,
                } => {
                    if let Some(snap) = snapshot {
                        frame(&mut self.buf, seq, |b| {
                            encode_snap_ref(b, rtype::SNAPSHOT_INSTALL, snap)
                        });
                    }
                    for entry in entries.iter() {
                        let (at, len) = frame(&mut self.buf, seq, |b| encode_entry(b, entry));
                        locs.push(loc_of(entry, seq, write_at + at as u64, len));
                    }
                    if let Some(hs) = hard_state {
                        frame(&mut self.buf, seq, |b| encode_hard_state(b, hs));
                    }
                }
                Body::Saved(_, snap) => {
                    frame(&mut self.buf, seq, |b| {
                        encode_snap_ref(b, rtype::SNAPSHOT_SAVED, snap)
                    });
                }
                Body::Removed(_) => {
                    frame(&mut self.buf, seq, encode_group_removed);
                }
            }
            let batch = self.next_batch;
            self.next_batch += 1;
            frame(&mut self.buf, seq, |b| encode_commit(b, group_start, batch));
            // Every batch starts in group 0.
            current = 0;
        }
        let (path, file) = match (&rotated, &self.active) {
            (Some(new), _) | (None, Some(new)) => (new.path.clone(), new.file.clone()),
            (None, None) => unreachable!("a group is written to the active or a new segment"),
        };
        let io = &self.shared.io;
        io.write_all_at(&file, &path, &self.buf, write_at)?;
        self.shared.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
        io.sync_data(&file, &path)?;
        self.shared
            .metrics
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        let end = write_at + self.buf.len() as u64;
        if let Some(new) = rotated {
            self.active = Some(new);
        }
        let active = self.active.as_mut().expect("set above");
        active.end = end;
        self.apply(items, carried, rotate.then_some((seq, path, file)), end);
        if rotate {
            self.shared.janitor.request_cleanup();
        }
        Ok(())
    }

    /// Quiet groups' entries to carry into the segment about to open, so that the old
    /// segments they hold can go: segments are removed oldest first, so one entry of a
    /// group that never compacts would otherwise keep every segment after it. Carried are
    /// the live entries of every group whose first live entry is older than the segment
    /// before the newest, if they take at most a sixteenth of a segment (a larger log is a
    /// busy group's, which snapshots and compacts on its own), up to a quarter of a
    /// segment in all. Recovery reads the copies as it reads any entry: they replace the
    /// same entries, which the old segments still hold until they go.
    fn carry_forward(&self) -> Carried {
        let segment_size = self.shared.options.segment_size;
        let (group_limit, mut budget) = (segment_size / 16, segment_size / 4);
        let wanted: Vec<(u64, Index, Index)> = {
            let state = self.shared.state.read().expect("log state lock");
            // A log of one group holds back nothing but that group's own live entries:
            // carrying them would only rewrite them.
            if state.groups.len() < 2 {
                return Carried::new();
            }
            let Some(&keep_from) = state.segments.keys().rev().nth(1) else {
                return Carried::new();
            };
            let mut wanted = Vec::new();
            for (&gid, group) in &state.groups {
                if let Some((seg, bytes)) = group.live()
                    && seg < keep_from
                    && bytes <= group_limit
                    && bytes <= budget
                    && self.durable.contains_key(&gid)
                {
                    budget -= bytes;
                    wanted.push((gid, group.first, group.last()));
                }
            }
            wanted
        };
        let mut carried = Carried::new();
        for (gid, first, last) in wanted {
            // A read that fails (the group compacted meanwhile) leaves the group as it is.
            let read = read_entries(
                &self.shared.state,
                &self.shared.io,
                gid,
                first,
                last + 1,
                u64::MAX,
            );
            if let Ok(entries) = read {
                carried.insert(gid, (entries, Vec::new()));
            }
        }
        carried
    }

    /// Applies a durable group to the in-memory state that reads see.
    fn apply(
        &mut self,
        items: &mut [Item],
        carried: Carried,
        new_segment: Option<(u64, PathBuf, Arc<File>)>,
        end: u64,
    ) {
        let mut replaced = Vec::new();
        {
            let mut state = self.shared.state.write().expect("log state lock");
            if let Some((seq, path, file)) = new_segment {
                state.segments.insert(seq, Segment { path, file });
                state.newest_seq = seq;
            }
            for (gid, (entries, locs)) in carried {
                if let Some(group) = state.groups.get_mut(&gid) {
                    for (entry, loc) in entries.iter().zip(locs) {
                        group.relocate(entry.index, loc);
                    }
                }
            }
            state.durable_end = end;
            // The groups written to, whose checkpoints change once the group is applied.
            let mut touched = BTreeSet::new();
            for item in items.iter_mut() {
                let gid = item.body.gid();
                if !matches!(item.body, Body::Nothing) {
                    touched.insert(gid);
                }
                match &mut item.body {
                    Body::Nothing => {}
                    Body::Write {
                        gid: _,
                        snapshot,
                        entries,
                        hard_state,
                        locs,
                    } => {
                        state.change(gid, |group| {
                            if let Some(snap) = snapshot.take() {
                                // A reinstall names the stored file: keep it.
                                replaced.extend(
                                    group
                                        .snapshot
                                        .as_ref()
                                        .map(|s| s.generation)
                                        .filter(|&g| g != snap.generation),
                                );
                                group.install(snap);
                            }
                            if let Some(first) = entries.first() {
                                group.truncate_from(first.index);
                            }
                            for (entry, loc) in std::mem::take(entries).into_iter().zip(locs.drain(..)) {
                                group.push(entry, loc);
                            }
                            if let Some(hs) = hard_state {
                                group.hard_state = *hs;
                            }
                        });
                    }
                    Body::Saved(_, snap) => {
                        state.change(gid, |group| {
                            replaced.extend(group.snapshot.as_ref().map(|s| s.generation));
                            group.snapshot = Some(snap.clone());
                        });
                    }
                    Body::Removed(_) => {
                        if let Some(group) = state.remove(gid) {
                            replaced.extend(group.snapshot.as_ref().map(|s| s.generation));
                        }
                    }
                }
            }
            for gid in touched {
                match state.groups.get(&gid) {
                    Some(group) => {
                        let checkpoint = Checkpoint {
                            hard_state: group.hard_state,
                            snapshot: group.snapshot.clone(),
                        };
                        self.durable.insert(gid, checkpoint);
                    }
                    None => {
                        self.durable.remove(&gid);
                    }
                }
            }
        }
        self.shared.janitor.delete_snapshots(replaced);
    }

    /// On shutdown: trim the pre-allocated tail of the active segment, so that the next
    /// recovery reads only data.
    fn finish(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if let Some(active) = &self.active {
            let io = &self.shared.io;
            let result = io
                .set_len(&active.file, &active.path, active.end)
                .and_then(|()| io.sync_all(&active.file, &active.path));
            if let Err(err) = result {
                tracing::warn!(%err, "could not trim the last log segment on close");
            }
        }
    }
}

/// Entries carried forward by group: the entries, and their new locations once encoded.
type Carried = BTreeMap<u64, (Vec<Entry>, Vec<Loc>)>;

fn loc_of(entry: &Entry, seg: u64, offset: u64, len: u32) -> Loc {
    Loc {
        term: entry.term,
        seg,
        offset,
        len,
        size: entry.size().min(u32::MAX as u64) as u32,
    }
}

fn snap_ref_bound(snap: &SnapRef) -> usize {
    let body = bincode::serde::encode_to_vec(snap, BINCODE).map_or(4096, |v| v.len());
    padded(1 + body)
}

fn item_bound(item: &Item) -> usize {
    let body = match &item.body {
        Body::Nothing => return 0,
        Body::Write {
            gid: _,
            snapshot,
            entries,
            hard_state,
            ..
        } => {
            snapshot.as_ref().map_or(0, snap_ref_bound)
                + entries.iter().map(entry_record_bound).sum::<usize>()
                + hard_state.map_or(0, |_| SMALL_RECORD_BOUND)
        }
        Body::Saved(_, snap) => snap_ref_bound(snap),
        Body::Removed(_) => padded(1),
    };
    body + padded(GROUP_LEN) + padded(COMMIT_LEN as usize)
}
