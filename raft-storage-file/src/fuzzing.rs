//! The fuzzing harness of log recovery. **Not a stable API**: hidden from the
//! documentation, it may change or go away in any release.
//!
//! [`wal_recovery`] turns arbitrary bytes into the files of a log directory, opens it and
//! asserts what must hold for any directory; a panic is a finding. The cargo-fuzz target in
//! `raft-storage-file/fuzz/` calls it, and so does the replay test `tests/fuzz_seeds.rs`,
//! which runs every file of `fuzz/seeds/wal_recovery/` on the stable toolchain.
//! Allocation bounds are checked when the binary installs
//! [`raft_runtime::fuzzing::CountingAlloc`] as its global allocator.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_core::{ConfState, Entry, EntryPayload, HardState, Index, SnapshotMeta, StorageError, Term};
use raft_runtime::fuzzing::measure;
use raft_runtime::{LogStore, LogWrite, Snapshot};

use crate::error::WalError;
use crate::format::{
    Checkpoint, MAX_VALUE, SegmentHeader, SnapRef, encode_checkpoint, encode_commit, encode_entry,
    encode_group, encode_group_removed, encode_hard_state, encode_snap_ref, frame, rtype, segment_name,
    snapshot_name,
};
use crate::options::Options;
use crate::repair;
use crate::snapshot::file_bytes;
use crate::store::{FileWal, GroupLog};

/// Options every harness open uses: small segments, a small cache.
fn options() -> Options {
    Options {
        segment_size: 4096,
        cache_bytes: 1024,
        ..Options::default()
    }
}

/// What the allocations of opening or reading a directory may reach, for `written` bytes of
/// files: 64 bytes per byte of file (a record body's decode limit is at most 32 times the
/// body, and recovery holds one segment's bytes plus one small location per entry), plus
/// 4 MiB of fixed costs.
pub fn allowance(written: usize) -> usize {
    written.saturating_mul(64).saturating_add(4 << 20)
}

/// The target `wal_recovery`.
///
/// `scratch` must be a directory the harness may use: it (re)creates `scratch/wal` and
/// writes the files decoded from `data` there. The first byte picks the mode:
///
/// - **raw** (first byte divisible by 4): the rest is a list of files, each a kind byte
///   (segment 1 to 4, snapshot 1 or 2, a temporary file, or a segment or snapshot with a
///   number chosen by the input), a 16-bit length and the contents;
/// - **framed** (otherwise): the rest is a list of segments, each a list of operations
///   (checkpoint, entries, hard states, snapshot references with or without a matching
///   snapshot file, commit records, group records and removals, arbitrary records, raw
///   bytes) that the harness encodes
///   and frames with valid lengths and checksums, chaining the segment headers, so that
///   most inputs reach the record decoders and the replay rules.
///
/// It opens the directory (as a [`FileWal`]) and asserts: the open either fails with a
/// typed error naming a file of the directory and an offset within it, or recovers the
/// log of every group consistently (first and last index agree with the snapshot, terms
/// never decrease, every entry reads back with the term recovery reported, the snapshot
/// file loads or fails with a typed error), reopens to the same state, and takes a new
/// entry that survives another reopen.
/// A failed open is followed by [`repair`]; if that succeeds the directory must then open
/// and pass the same checks. No step may panic or allocate beyond [`allowance`].
pub fn wal_recovery(scratch: &Path, data: &[u8]) {
    let dir = scratch.join("wal");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot clear {}: {e}", dir.display()),
    }
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let files = if mode % 4 == 0 {
        raw_files(rest)
    } else {
        Framer::new(Input::new(rest)).run()
    };
    let mut written = 0;
    let mut lengths = BTreeMap::new();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).expect("write a scratch file");
        written += bytes.len();
        lengths.insert(dir.join(name), bytes.len() as u64);
    }
    let budget = allowance(written);
    match open_checked(&dir, budget) {
        Ok(state) => after_open(&dir, state, budget),
        Err(err) => {
            check_error(&err, &dir, &lengths);
            let (repaired, peak) = measure(|| repair(&dir));
            check_peak("repair", peak, budget.saturating_mul(2));
            match repaired {
                Ok(_) => {
                    let state = open_checked(&dir, budget)
                        .unwrap_or_else(|e| panic!("the log does not open after a successful repair: {e}"));
                    after_open(&dir, state, budget);
                }
                Err(err) => check_error(&err, &dir, &BTreeMap::new()),
            }
        }
    }
}

fn check_peak(what: &str, peak: Option<usize>, budget: usize) {
    if let Some(peak) = peak {
        assert!(
            peak <= budget,
            "{what} allocated {peak} bytes, more than {budget}"
        );
    }
}

/// A failed open must say what and where: a typed error naming a file of the directory
/// and, for corruption, an offset within it (`lengths` holds the files as written, when
/// nothing changed them since).
fn check_error(err: &WalError, dir: &Path, lengths: &BTreeMap<PathBuf, u64>) {
    match err {
        WalError::Corrupt { path, offset, .. } => {
            assert!(
                path.starts_with(dir),
                "corruption reported in {}: {err}",
                path.display()
            );
            if let Some(&len) = lengths.get(path) {
                assert!(
                    *offset <= len,
                    "offset {offset} past the end ({len}) of {}: {err}",
                    path.display()
                );
            }
        }
        WalError::UnsupportedVersion { path, .. } | WalError::SnapshotCorrupt { path, .. } => {
            assert!(path.starts_with(dir), "error names {}: {err}", path.display());
        }
        other => panic!("unexpected error for a hostile directory: {other}"),
    }
}

/// What a recovered store holds, compared across reopens.
#[derive(Clone, Debug, PartialEq)]
struct State {
    first: Index,
    last: Index,
    base_term: Term,
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Option<SnapshotMeta>,
}

/// Every group's recovered state.
type States = BTreeMap<u64, State>;

/// Opens the directory (within the allocation budget) and reads every group's log back,
/// checking its consistency.
fn open_checked(dir: &Path, budget: usize) -> Result<States, WalError> {
    let (opened, peak) = measure(|| FileWal::open(dir, options()));
    check_peak("open", peak, budget);
    let wal = opened?;
    let (states, peak) = measure(|| {
        wal.groups()
            .into_iter()
            .map(|g| (g, read_state(&wal.group(g).expect("a group of the log opens"))))
            .collect::<States>()
    });
    check_peak("reading the log", peak, budget);
    if let Err(err) = wal.close() {
        // Opening may have tried to write (a record that makes a discard durable); a log
        // at the end of its numbers refuses it and reports that at close. Nothing else
        // may fail here.
        match err.backend().downcast_ref::<WalError>() {
            Some(WalError::Exhausted { .. }) => {}
            _ => panic!("closing a store that wrote nothing: {err}"),
        }
    }
    Ok(states)
}

fn read_state(store: &GroupLog) -> State {
    let first = store.first_index();
    let last = store.last_index();
    assert!(first >= 1, "first index 0");
    assert!(
        last.checked_add(1).is_some_and(|end| end >= first),
        "last {last} before first {first}"
    );
    let base_term = store.term(first - 1).expect("the term before the first index");
    let snapshot = store.snapshot_meta();
    match &snapshot {
        Some(meta) => {
            assert_eq!(meta.index + 1, first, "the log does not start after the snapshot");
            assert_eq!(meta.term, base_term, "the base term is not the snapshot's");
        }
        None => assert_eq!((first, base_term), (1, 0), "a log without snapshot starts at 1"),
    }
    if first >= 2 {
        assert!(matches!(
            store.term(first - 2),
            Err(StorageError::Compacted { .. })
        ));
    }
    assert!(matches!(
        store.term(last.saturating_add(1)),
        Err(StorageError::Unavailable { .. })
    ));
    let mut prev = base_term;
    let mut terms = Vec::new();
    for index in first..=last {
        let term = store.term(index).expect("the term of a stored entry");
        assert!(term >= prev, "term {term} at {index} after term {prev}");
        prev = term;
        terms.push(term);
    }
    let entries = if last >= first {
        store
            .entries(first, last + 1, u64::MAX)
            .expect("every recovered entry reads back")
    } else {
        Vec::new()
    };
    assert_eq!(entries.len(), terms.len(), "entries read back");
    for (i, (entry, term)) in entries.iter().zip(&terms).enumerate() {
        assert_eq!(entry.index, first + i as u64, "entry index");
        assert_eq!(entry.term, *term, "entry term");
    }
    let initial = store.initial_state().expect("the initial state");
    assert!(initial.hard_state.term <= MAX_VALUE && initial.hard_state.commit <= MAX_VALUE);
    let expected_conf = snapshot
        .as_ref()
        .map(|m| m.conf_state.clone())
        .unwrap_or_default();
    assert_eq!(
        initial.conf_state, expected_conf,
        "the configuration is the snapshot's"
    );
    match store.load_snapshot_blocking() {
        Ok(Some(loaded)) => assert_eq!(Some(&loaded.meta), snapshot.as_ref(), "loaded snapshot"),
        Ok(None) => assert!(snapshot.is_none(), "the snapshot does not load"),
        Err(WalError::SnapshotCorrupt { .. }) | Err(WalError::UnsupportedVersion { .. }) => {}
        Err(other) => panic!("unexpected error loading the snapshot: {other}"),
    }
    match store.snapshot_reader() {
        Ok(Some(mut reader)) => {
            let mut sink = Vec::new();
            if let Err(e) = reader.read_to_end(&mut sink) {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "snapshot stream: {e}");
            }
        }
        Ok(None) => assert!(snapshot.is_none()),
        Err(WalError::SnapshotCorrupt { .. }) | Err(WalError::UnsupportedVersion { .. }) => {}
        Err(other) => panic!("unexpected error streaming the snapshot: {other}"),
    }
    State {
        first,
        last,
        base_term,
        entries,
        hard_state: initial.hard_state,
        conf_state: initial.conf_state,
        snapshot,
    }
}

/// A recovered log reopens to the same state, and takes a new entry (in its first group,
/// or group 0 in a log without any).
fn after_open(dir: &Path, states: States, budget: usize) {
    let again = open_checked(dir, budget).unwrap_or_else(|e| panic!("a recovered log does not reopen: {e}"));
    assert_eq!(again, states, "reopening changed the log");
    let (gid, state) = match states.first_key_value() {
        Some((&gid, state)) => (gid, state.clone()),
        // A log without groups: group 0 is empty, without opening the log again.
        None => (
            0,
            State {
                first: 1,
                last: 0,
                base_term: 0,
                entries: Vec::new(),
                hard_state: HardState::default(),
                conf_state: ConfState::default(),
                snapshot: None,
            },
        ),
    };
    if state.last >= MAX_VALUE {
        return;
    }
    let wal = FileWal::open(dir, options()).expect("a recovered log reopens");
    let store = wal.group(gid).expect("the group opens");
    let term = state.entries.last().map_or(state.base_term, |e| e.term);
    let entry = Entry::new(
        term,
        state.last + 1,
        EntryPayload::Normal(Bytes::from_static(b"after")),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let write = LogWrite {
        snapshot: None,
        entries: vec![entry.clone()],
        hard_state: None,
    };
    store.append(
        write,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    match rx.recv().expect("a completion") {
        Ok(()) => {}
        Err(err) => {
            // A log at the end of its segment or batch numbers takes no more writes, and
            // must still reopen as it was.
            match err.backend().downcast_ref::<WalError>() {
                Some(WalError::Exhausted { .. }) => {}
                _ => panic!("a recovered log refuses a new entry: {err}"),
            }
            drop((store, wal));
            let again = open_checked(dir, budget).unwrap_or_else(|e| panic!("the log does not reopen: {e}"));
            assert_eq!(again, states, "a refused write changed the log");
            return;
        }
    }
    drop(store);
    wal.close().expect("close after a write");
    let after =
        open_checked(dir, budget).unwrap_or_else(|e| panic!("the log does not reopen after a write: {e}"));
    let mut expected = states;
    let group = expected.entry(gid).or_insert(state);
    group.last += 1;
    group.entries.push(entry);
    assert_eq!(after, expected, "the new entry did not survive a reopen");
}

/// Reads the input: bytes, little-endian numbers, and numbers near a given value.
struct Input<'a> {
    data: &'a [u8],
}

/// Values worth trying wherever a number goes.
const EXTREMES: [u64; 8] = [
    0,
    1,
    u32::MAX as u64,
    MAX_VALUE - 1,
    MAX_VALUE,
    MAX_VALUE + 1,
    u64::MAX - 1,
    u64::MAX,
];

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for byte in &mut b {
            *byte = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Mostly a value near `near` (from two below to five above), sometimes any value or
    /// an extreme one.
    fn near(&mut self, near: u64) -> u64 {
        let b = self.byte();
        match b {
            0..=191 => near.saturating_add(u64::from(b % 8)).saturating_sub(2),
            192..=247 => self.u64(),
            _ => EXTREMES[usize::from(b - 248)],
        }
    }
}

fn raw_files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut input = Input::new(data);
    let mut files = BTreeMap::new();
    while !input.is_empty() {
        let kind = input.byte();
        let name = match kind % 8 {
            0..=3 => segment_name(u64::from(kind % 4) + 1),
            4 => snapshot_name(u64::from(kind / 8 % 2) + 1),
            5 => format!("prep-{:016x}.tmp", kind / 8),
            6 => segment_name(input.near(5)),
            _ => snapshot_name(input.near(3)),
        };
        let len = usize::from(input.u16());
        files.insert(name, input.bytes(len).to_vec());
    }
    files.into_iter().collect()
}

/// Builds segments of framed records from the input.
struct Framer<'a> {
    input: Input<'a>,
    files: BTreeMap<String, Vec<u8>>,
    /// The next segment number and the last one written.
    seq: u64,
    prev_seq: u64,
    /// Where the committed data of the last segment ends.
    prev_end: u64,
    batch: u64,
    index: Index,
    term: Term,
    hard_state: HardState,
    snapshot: Option<SnapRef>,
    generation: u64,
}

impl<'a> Framer<'a> {
    fn new(mut input: Input<'a>) -> Self {
        let seq = input.near(3);
        Framer {
            input,
            files: BTreeMap::new(),
            seq,
            prev_seq: 0,
            prev_end: 0,
            batch: 1,
            index: 1,
            term: 1,
            hard_state: HardState::default(),
            snapshot: None,
            generation: 1,
        }
    }

    fn run(mut self) -> Vec<(String, Vec<u8>)> {
        while !self.input.is_empty() && self.files.len() < 16 {
            self.segment();
        }
        self.files.into_iter().collect()
    }

    fn conf_state(&mut self) -> ConfState {
        let shape = self.input.byte();
        let mut voters = BTreeSet::new();
        for _ in 0..(shape % 4) {
            voters.insert(self.input.near(2));
        }
        let mut cs = ConfState {
            voters,
            ..ConfState::default()
        };
        if shape & 0x10 != 0 {
            cs.learners.insert(self.input.near(5));
        }
        if shape & 0x20 != 0 {
            cs.voters_outgoing.insert(self.input.near(1));
            cs.auto_leave = shape & 0x80 != 0;
        }
        if shape & 0x40 != 0 {
            let len = usize::from(self.input.byte() % 16);
            let id = self.input.near(1);
            cs.node_meta
                .insert(id, Bytes::copy_from_slice(self.input.bytes(len)));
        }
        cs
    }

    /// A snapshot reference, and maybe its file (matching, damaged, or arbitrary).
    fn snap_ref(&mut self) -> SnapRef {
        let meta = SnapshotMeta {
            index: self.input.near(self.index.saturating_sub(1)),
            term: self.input.near(self.term),
            conf_state: self.conf_state(),
        };
        let generation = match self.input.byte() {
            0..=223 => {
                self.generation += 1;
                self.generation
            }
            _ => self.input.near(self.generation),
        };
        let file = self.input.byte();
        let len = usize::from(self.input.byte() % 32);
        let data = Bytes::copy_from_slice(self.input.bytes(len));
        let (mut bytes, snap) = file_bytes(generation, &Snapshot { meta, data });
        match file % 4 {
            0 => return snap,
            1 => {}
            2 => {
                if !bytes.is_empty() {
                    let at = usize::from(self.input.u16()) % bytes.len();
                    bytes[at] ^= self.input.byte() | 1;
                }
            }
            _ => bytes.truncate(usize::from(self.input.u16()) % (bytes.len() + 1)),
        }
        self.files.insert(snapshot_name(generation), bytes);
        snap
    }

    fn segment(&mut self) {
        let flags = self.input.byte();
        let seq = self.seq;
        let mut buf = Vec::new();
        let header = SegmentHeader {
            seq,
            prev_seq: self.prev_seq,
            prev_end: if flags & 0x02 != 0 {
                self.input.near(self.prev_end)
            } else {
                self.prev_end
            },
        };
        match flags & 0x0c {
            0x04 => buf.extend_from_slice(&[0u8; 64]),
            0x08 if flags & 0x01 != 0 => {
                let mut h = header.encode();
                let at = usize::from(self.input.byte() % 64);
                h[at] ^= self.input.byte() | 1;
                buf.extend_from_slice(&h);
            }
            _ => buf.extend_from_slice(&header.encode()),
        }
        let mut committed = buf.len() as u64;
        let mut group_start = 0u64;
        if flags & 0x10 == 0 {
            let cp = Checkpoint {
                hard_state: self.hard_state,
                snapshot: self.snapshot.clone(),
            };
            frame(&mut buf, seq, |b| encode_checkpoint(b, &cp));
        }
        // Pending effects of the batch being built, applied at its commit record.
        let mut pending_hs = None;
        let mut pending_snap = None;
        let mut ops = 0;
        while !self.input.is_empty() && ops < 64 {
            ops += 1;
            let op = self.input.byte();
            match op % 12 {
                0 => {
                    let cp = Checkpoint {
                        hard_state: self.hard_state,
                        snapshot: self.snapshot.clone(),
                    };
                    frame(&mut buf, seq, |b| encode_checkpoint(b, &cp));
                }
                1..=3 => {
                    let index = self.input.near(self.index);
                    let term = self.input.near(self.term);
                    let payload = match op % 12 {
                        1 => {
                            let len = usize::from(self.input.byte() % 64);
                            let data = Bytes::copy_from_slice(self.input.bytes(len));
                            // Odd lengths make records of the driver's own.
                            if len % 2 == 0 {
                                EntryPayload::Normal(data)
                            } else {
                                EntryPayload::Internal(data)
                            }
                        }
                        2 => EntryPayload::Empty,
                        _ => EntryPayload::Membership(Box::new(self.conf_state())),
                    };
                    let entry = Entry::new(term, index, payload);
                    frame(&mut buf, seq, |b| encode_entry(b, &entry));
                    self.index = index.saturating_add(1);
                    self.term = term;
                }
                4 => {
                    let hs = HardState {
                        term: self.input.near(self.term),
                        vote: match self.input.byte() % 3 {
                            0 => None,
                            _ => Some(self.input.near(1)),
                        },
                        commit: self.input.near(self.index.saturating_sub(1)),
                    };
                    frame(&mut buf, seq, |b| encode_hard_state(b, &hs));
                    pending_hs = Some(hs);
                }
                5 | 6 => {
                    let snap = self.snap_ref();
                    let kind = if op % 12 == 5 {
                        rtype::SNAPSHOT_INSTALL
                    } else {
                        rtype::SNAPSHOT_SAVED
                    };
                    frame(&mut buf, seq, |b| encode_snap_ref(b, kind, &snap));
                    if kind == rtype::SNAPSHOT_INSTALL {
                        self.index = snap.meta.index.saturating_add(1);
                        self.term = snap.meta.term;
                    }
                    pending_snap = Some(snap);
                }
                7 | 8 => {
                    let (start, batch) = if op % 12 == 7 {
                        (group_start, self.batch)
                    } else {
                        (self.input.near(group_start), self.input.near(self.batch))
                    };
                    frame(&mut buf, seq, |b| encode_commit(b, start, batch));
                    self.batch = batch.saturating_add(1);
                    committed = buf.len() as u64;
                    if let Some(hs) = pending_hs.take() {
                        self.hard_state = hs;
                    }
                    if let Some(snap) = pending_snap.take() {
                        self.snapshot = Some(snap);
                    }
                    // A new group write starts after the commit, now and then.
                    if self.input.byte() % 2 == 0 {
                        group_start = committed;
                    }
                }
                9 => {
                    let kind = self.input.byte();
                    let len = usize::from(self.input.byte());
                    let body = self.input.bytes(len);
                    frame(&mut buf, seq, |b| {
                        b.push(kind);
                        b.extend_from_slice(body);
                    });
                }
                10 => {
                    let len = usize::from(self.input.byte() % 64);
                    buf.extend_from_slice(self.input.bytes(len));
                }
                _ => match self.input.byte() % 4 {
                    // Another group's records follow, or the current group goes.
                    0 => {
                        let gid = self.input.near(1);
                        frame(&mut buf, seq, |b| encode_group(b, gid));
                    }
                    1 => {
                        frame(&mut buf, seq, encode_group_removed);
                    }
                    _ => break,
                },
            }
        }
        if flags & 0x20 != 0 {
            // Pre-allocated, unused space after the data.
            buf.resize(buf.len() + usize::from(self.input.byte()) * 8, 0);
        }
        self.files.insert(segment_name(seq), buf);
        self.prev_seq = seq;
        self.prev_end = committed;
        self.seq = if flags & 0x40 != 0 {
            self.input.near(seq.saturating_add(1))
        } else {
            seq.saturating_add(1)
        };
    }
}

/// Encodes the files of a log directory as a raw-mode input of [`wal_recovery`] (for
/// building seed corpora from real logs). Files whose names the raw mode cannot express
/// are left out.
pub fn raw_input(dir: &Path) -> Vec<u8> {
    let mut out = vec![0u8];
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let kind = (1..=4u8)
            .map(|seq| (segment_name(u64::from(seq)), seq - 1))
            .chain((1..=2u8).map(|g| (snapshot_name(u64::from(g)), 4 + (g - 1) * 8)))
            .find(|(n, _)| *n == name)
            .map(|(_, kind)| kind);
        let Some(kind) = kind else { continue };
        let bytes = std::fs::read(dir.join(&name)).expect("read a log file");
        let len = bytes.len().min(usize::from(u16::MAX));
        out.push(kind);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&bytes[..len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify;

    #[test]
    fn empty_and_short_inputs() {
        let scratch = tempfile::tempdir().unwrap();
        for input in [&[][..], &[0], &[1], &[0, 0], &[1, 0, 0, 7, 1, 2, 1, 1, 0, 7, 7]] {
            wal_recovery(scratch.path(), input);
        }
    }

    #[test]
    fn verify_agrees_with_the_harness_on_a_framed_log() {
        let scratch = tempfile::tempdir().unwrap();
        // Framed: segment 1, a normal entry at 1, a commit, end.
        let input = [1, 1, 0, 1, 2, 2, 3, b'a', b'b', b'c', 7, 1, 11];
        wal_recovery(scratch.path(), &input);
        let report = verify(scratch.path().join("wal")).unwrap();
        assert_eq!(report.last_index, 2, "the entry and the one the harness appended");
    }
}
