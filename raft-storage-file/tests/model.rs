//! Model-based property test: random sequences of appends (with conflicting suffixes),
//! hard states, snapshot installs, local snapshots, compactions, group removals and
//! reopens, each for one of three Raft groups sharing one log, checked after every step
//! against an in-memory model of the `LogStore` contract for each group.
//!
//! `PROPTEST_CASES=2000 cargo test -p raft-storage-file --test model` runs a longer search.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use raft_core::{ConfState, Entry, HardState, SnapshotMeta, StorageError, limit_size};
use raft_runtime::{LogStore, LogWrite, Snapshot};
use raft_storage_file::{FileWal, GroupLog, Options};

/// The groups sharing the log: group 0 (a `FileLogStore`'s), and two others, one with the
/// largest id.
const GROUPS: [u64; 3] = [0, 5, u64::MAX];

/// One append, resolved against the model when it runs.
#[derive(Clone, Debug)]
struct AppendSpec {
    /// How far before the end the new entries start (a conflicting suffix if > 0).
    back: u8,
    count: u8,
    new_term: bool,
    len: u16,
    hard_state: Option<u8>,
}

#[derive(Clone, Debug)]
enum Step {
    Append(AppendSpec),
    /// Several appends, to any group, queued without waiting, then one flush.
    Burst(Vec<(usize, AppendSpec)>),
    HardState(u8),
    /// A snapshot from the leader at `last + ahead - behind`, with some entries after it.
    Install {
        ahead: u8,
        behind: u8,
        entries: u8,
    },
    /// A local snapshot `back` entries before the end.
    Save {
        back: u8,
    },
    /// Compact to `back` entries before the snapshot.
    Compact {
        back: u8,
    },
    /// Removes the group from the log.
    Remove,
    Reopen,
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    (
        prop_oneof![6 => Just(0u8), 1 => 1u8..6, 1 => 6u8..40],
        1u8..8,
        prop::bool::weighted(0.2),
        prop_oneof![3 => 0u16..300, 1 => 300u16..3000],
        proptest::option::weighted(0.4, any::<u8>()),
    )
        .prop_map(|(back, count, new_term, len, hard_state)| AppendSpec {
            back,
            count,
            new_term,
            len,
            hard_state,
        })
}

/// A step and the group (its place in [`GROUPS`]) it is for.
fn step() -> impl Strategy<Value = (usize, Step)> {
    let step = prop_oneof![
        10 => append_spec().prop_map(Step::Append),
        4 => prop::collection::vec((0..GROUPS.len(), append_spec()), 1..6).prop_map(Step::Burst),
        1 => any::<u8>().prop_map(Step::HardState),
        1 => (0u8..6, 0u8..4, 0u8..4).prop_map(|(ahead, behind, entries)| Step::Install { ahead, behind, entries }),
        2 => (0u8..20).prop_map(|back| Step::Save { back }),
        2 => (0u8..10).prop_map(|back| Step::Compact { back }),
        1 => Just(Step::Remove),
        2 => Just(Step::Reopen),
    ];
    // Group 0 most often, as a single-group log would be used.
    (prop_oneof![2 => Just(0usize), 1 => 1..GROUPS.len()], step)
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop::sample::select(vec![4096u64, 8192, 16384]),
        prop::sample::select(vec![0u64, 700, 4096, 1 << 20]),
        any::<bool>(),
    )
        .prop_map(|(segment_size, cache_bytes, recycle_segments)| Options {
            segment_size,
            cache_bytes,
            max_group_bytes: 4096,
            recycle_segments,
            ..Options::default()
        })
}

/// The contract, in memory.
#[derive(Debug, Default)]
struct Model {
    snapshot: Option<Snapshot>,
    hard_state: HardState,
    first: u64,
    base_term: u64,
    entries: Vec<Entry>,
    term: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            first: 1,
            term: 1,
            ..Model::default()
        }
    }

    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Whether nothing is stored: then the log does not list the group.
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.snapshot.is_none() && self.hard_state == HardState::default()
    }

    fn snap_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn term_at(&self, index: u64) -> u64 {
        if index + 1 == self.first {
            self.base_term
        } else {
            self.entries[(index - self.first) as usize].term
        }
    }

    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        self.entries.truncate((first.index - self.first) as usize);
        self.entries.extend_from_slice(entries);
    }

    fn install(&mut self, snap: Snapshot) {
        self.entries.clear();
        self.first = snap.meta.index + 1;
        self.base_term = snap.meta.term;
        self.snapshot = Some(snap);
    }

    fn compact(&mut self, index: u64) {
        if index < self.first {
            return;
        }
        self.base_term = self.term_at(index);
        self.entries.drain(..(index + 1 - self.first) as usize);
        self.first = index + 1;
    }

    /// The trait's restart rule (snapshots here always agree with the log).
    fn restart(&mut self) {
        if let Some(snap) = &self.snapshot {
            let s = snap.meta.index;
            let term = snap.meta.term;
            if s >= self.first {
                self.compact(s);
            }
            self.base_term = term;
        }
    }

    /// Builds the write for `spec` and applies it to the model.
    fn resolve_append(&mut self, spec: &AppendSpec) -> LogWrite {
        let lowest = self.first.max(self.snap_index() + 1);
        let start = (self.last() + 1).saturating_sub(spec.back as u64).max(lowest);
        if spec.new_term {
            self.term += 1;
        }
        let entries = ents(self.term, start, start + spec.count as u64 - 1, spec.len as usize);
        self.append(&entries);
        let hard_state = spec.hard_state.map(|v| self.next_hard_state(v));
        LogWrite {
            snapshot: None,
            entries,
            hard_state,
        }
    }

    fn next_hard_state(&mut self, v: u8) -> HardState {
        let hs = HardState {
            term: self.term,
            vote: (v % 4 != 0).then_some((v % 4) as u64),
            commit: v as u64,
        };
        self.hard_state = hs;
        hs
    }
}

fn conf(index: u64) -> ConfState {
    ConfState::with_voters([1, 2, 3 + index % 3])
}

fn check_all(wal: &FileWal, stores: &[GroupLog], models: &[Model], probe: u64) -> Result<(), TestCaseError> {
    let listed: Vec<u64> = GROUPS
        .iter()
        .zip(models)
        .filter(|(_, m)| !m.is_empty())
        .map(|(g, _)| *g)
        .collect();
    let mut groups = wal.groups();
    groups.sort_by_key(|g| GROUPS.iter().position(|x| x == g));
    prop_assert_eq!(groups, listed);
    for (store, model) in stores.iter().zip(models) {
        check(store, model, probe)?;
    }
    Ok(())
}

fn check(store: &GroupLog, model: &Model, probe: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.first_index(), model.first);
    prop_assert_eq!(store.last_index(), model.last());
    let state = store.initial_state().unwrap();
    prop_assert_eq!(state.hard_state, model.hard_state);
    let expected_conf = model
        .snapshot
        .as_ref()
        .map(|s| s.meta.conf_state.clone())
        .unwrap_or_default();
    prop_assert_eq!(state.conf_state, expected_conf);
    prop_assert_eq!(
        store.snapshot_meta(),
        model.snapshot.as_ref().map(|s| s.meta.clone())
    );
    for i in model.first - 1..=model.last() {
        prop_assert_eq!(store.term(i).unwrap(), model.term_at(i), "term at {}", i);
    }
    if model.first >= 2 {
        let compacted = matches!(store.term(model.first - 2), Err(StorageError::Compacted { .. }));
        prop_assert!(compacted);
    }
    let unavailable = matches!(
        store.term(model.last() + 1),
        Err(StorageError::Unavailable { .. })
    );
    prop_assert!(unavailable);
    let all = store.entries(model.first, model.last() + 1, u64::MAX).unwrap();
    prop_assert_eq!(&all, &model.entries);
    if !model.entries.is_empty() {
        let n = model.entries.len() as u64;
        let low = model.first + probe % n;
        let high = low + 1 + (probe / 7) % (model.last() + 1 - low);
        let max_bytes = probe % 4000;
        let got = store.entries(low, high, max_bytes).unwrap();
        let slice = &model.entries[(low - model.first) as usize..(high - model.first) as usize];
        prop_assert_eq!(got.as_slice(), limit_size(slice, max_bytes));
    }
    Ok(())
}

fn open_all(dir: &std::path::Path, options: &Options) -> (FileWal, Vec<GroupLog>) {
    let wal = FileWal::open(dir, options.clone()).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let stores = GROUPS.iter().map(|&g| wal.group(g).unwrap()).collect();
    (wal, stores)
}

fn run(options: Options, steps: Vec<(usize, Step)>) -> Result<(), TestCaseError> {
    // tmpfs when available: this test checks the store's logic, thousands of syncs deep;
    // the crash and fault tests use the real disk.
    let dir = fast_tempdir();
    let rt = runtime();
    let (mut wal, mut stores) = open_all(dir.path(), &options);
    let mut models: Vec<Model> = GROUPS.iter().map(|_| Model::new()).collect();
    for (n, (g, step)) in steps.iter().enumerate() {
        let (store, model) = (&stores[*g], &mut models[*g]);
        match step {
            Step::Append(spec) => {
                let w = model.resolve_append(spec);
                append_sync(store, w).unwrap();
            }
            Step::Burst(specs) => {
                let fsyncs = wal.metrics().fsyncs;
                let done = Arc::new(Mutex::new(Vec::new()));
                for (k, (g, spec)) in specs.iter().enumerate() {
                    let w = models[*g].resolve_append(spec);
                    let done = done.clone();
                    stores[*g].append(
                        w,
                        Box::new(move |r| {
                            r.unwrap();
                            done.lock().unwrap().push(k);
                        }),
                    );
                }
                rt.block_on(wal.flush()).unwrap();
                prop_assert_eq!(done.lock().unwrap().clone(), (0..specs.len()).collect::<Vec<_>>());
                // However many groups wrote, no write took more than one sync.
                prop_assert!(wal.metrics().fsyncs - fsyncs <= specs.len() as u64);
            }
            Step::HardState(v) => {
                let hs = model.next_hard_state(*v);
                append_sync(store, write(Vec::new(), Some(hs))).unwrap();
            }
            Step::Install {
                ahead,
                behind,
                entries,
            } => {
                model.term += 1;
                let s = (model.last() + *ahead as u64)
                    .saturating_sub(*behind as u64)
                    .max(model.snap_index());
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        index: s,
                        term: model.term,
                        conf_state: conf(s),
                    },
                    data: Bytes::from(format!("state at {s}")),
                };
                model.install(snap.clone());
                let after = ents(model.term, s + 1, s + *entries as u64, 50);
                model.append(&after);
                let w = LogWrite {
                    snapshot: Some(stage(store, snap)),
                    entries: after,
                    hard_state: Some(model.next_hard_state(s as u8)),
                };
                append_sync(store, w).unwrap();
            }
            Step::Save { back } => {
                let lowest = model.snap_index() + 1;
                if model.last() < lowest {
                    continue;
                }
                let s = model.last().saturating_sub(*back as u64).max(lowest);
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        index: s,
                        term: model.term_at(s),
                        conf_state: conf(s),
                    },
                    data: payload(7, s, (s % 5000) as usize),
                };
                rt.block_on(save_streamed(store, snap.clone())).unwrap();
                model.snapshot = Some(snap);
            }
            Step::Compact { back } => {
                let c = model.snap_index().saturating_sub(*back as u64);
                if model.snapshot.is_none() {
                    continue;
                }
                store.compact(c).unwrap();
                model.compact(c);
            }
            Step::Remove => {
                let group = GROUPS[*g];
                // The group's log must be closed first.
                let refused = wal.remove_group_blocking(group).unwrap_err();
                prop_assert!(refused.to_string().contains("open already"), "{}", refused);
                let placeholder = wal.group(u64::MAX - 1).unwrap();
                drop(std::mem::replace(&mut stores[*g], placeholder));
                wal.remove_group_blocking(group).unwrap();
                stores[*g] = wal.group(group).unwrap();
                *model = Model::new();
            }
            Step::Reopen => {
                drop(stores);
                drop(wal);
                (wal, stores) = open_all(dir.path(), &options);
                for (store, model) in stores.iter().zip(&mut models) {
                    model.restart();
                    let loaded = rt.block_on(load_whole(store)).unwrap();
                    prop_assert_eq!(loaded, model.snapshot.clone());
                }
            }
        }
        check_all(&wal, &stores, &models, n as u64 * 7919 + 13)?;
    }
    // A last reopen checks everything that was written.
    drop(stores);
    drop(wal);
    let (wal, stores) = open_all(dir.path(), &options);
    for model in &mut models {
        model.restart();
    }
    check_all(&wal, &stores, &models, 1)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]


    #[test]
    fn store_matches_the_model(options in options(), steps in prop::collection::vec(step(), 1..60)) {
        run(options, steps)?;
    }
}
