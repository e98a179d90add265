//! Replays the seed corpus of the `wal_recovery` fuzz target (`fuzz/seeds/wal_recovery/`,
//! crash reproducers included) through the same harness, on the stable toolchain.
//!
//! `WAL_SEED_OUT=<dir> cargo test -p raft-storage-file --test fuzz_seeds -- --ignored`
//! writes the seeds built from real logs (see `write_seeds_from_real_logs`) to `<dir>`.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use raft_core::{ConfState, EntryPayload, HardState, SnapshotMeta};
use raft_runtime::fuzzing::CountingAlloc;
use raft_runtime::{LogStore, Snapshot};
use raft_storage_file::fuzzing::{raw_input, wal_recovery};
use raft_storage_file::{FileLogStore, Options};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn seeds() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/wal_recovery");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn wal_recovery_seeds_replay() {
    let files = seeds();
    assert!(files.len() >= 10, "the seed corpus is missing");
    let scratch = fast_tempdir();
    for file in files {
        let data = std::fs::read(&file).unwrap();
        eprintln!("replaying {}", file.display());
        wal_recovery(scratch.path(), &data);
    }
}

fn options() -> Options {
    Options {
        segment_size: 4096,
        cache_bytes: 1024,
        ..Options::default()
    }
}

/// Real logs, each encoded as a raw-mode input of the harness.
#[test]
#[ignore = "writes seed files; run with WAL_SEED_OUT set"]
fn write_seeds_from_real_logs() {
    let Some(out) = std::env::var_os("WAL_SEED_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();
    let save = |name: &str, dir: &Path| std::fs::write(out.join(name), raw_input(dir)).unwrap();
    let hs = |term, commit| HardState {
        term,
        vote: Some(1),
        commit,
    };

    // Entries and a hard state in one segment.
    let dir = fast_tempdir();
    {
        let store = open(dir.path(), options());
        append_sync(&store, write(ents(1, 1, 3, 20), Some(hs(1, 2)))).unwrap();
    }
    save("real-entries", dir.path());

    // Several segments, a higher term overwriting a suffix, a membership entry.
    let dir = fast_tempdir();
    {
        let store = open(dir.path(), options());
        for i in 0..6 {
            append_sync(
                &store,
                write(ents(1, i * 4 + 1, i * 4 + 4, 150), Some(hs(1, i * 4))),
            )
            .unwrap();
        }
        let mut e = ents(2, 20, 21, 10);
        e.push(raft_core::Entry::new(
            2,
            22,
            EntryPayload::Membership(Box::new(ConfState::with_voters([1, 2, 3]))),
        ));
        append_sync(&store, write(e, Some(hs(2, 21)))).unwrap();
    }
    save("real-segments-overwrite", dir.path());

    // A saved snapshot, compaction, and entries after it.
    let dir = fast_tempdir();
    {
        let store = open(dir.path(), options());
        append_sync(&store, write(ents(1, 1, 8, 30), Some(hs(1, 8)))).unwrap();
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 5,
                term: 1,
                conf_state: ConfState::with_voters([1, 2]),
            },
            data: Bytes::from_static(b"state at 5"),
        };
        store.save_snapshot_blocking(snap).unwrap();
        store.compact(5).unwrap();
        append_sync(&store, write(ents(2, 9, 10, 30), Some(hs(2, 9)))).unwrap();
    }
    save("real-snapshot-saved", dir.path());

    // A snapshot installed from a leader.
    let dir = fast_tempdir();
    {
        let store = open(dir.path(), options());
        append_sync(&store, write(ents(1, 1, 2, 30), Some(hs(1, 1)))).unwrap();
        let w = raft_runtime::LogWrite {
            snapshot: Some(stage(
                &store,
                Snapshot {
                    meta: SnapshotMeta {
                        index: 40,
                        term: 3,
                        conf_state: ConfState::with_voters([1, 2, 3]),
                    },
                    data: Bytes::from_static(b"installed"),
                },
            )),
            entries: ents(3, 41, 42, 10),
            hard_state: Some(hs(3, 41)),
        };
        append_sync(&store, w).unwrap();
    }
    save("real-snapshot-installed", dir.path());

    // Three groups on one log across segments: one compacted behind a snapshot, one
    // removed, one quiet whose entries are carried forward.
    let dir = fast_tempdir();
    {
        let wal = raft_storage_file::FileWal::open(dir.path(), options()).unwrap();
        let (busy, quiet, gone) = (
            wal.group(0).unwrap(),
            wal.group(7).unwrap(),
            wal.group(9).unwrap(),
        );
        append_sync(&quiet, write(ents(1, 1, 2, 20), Some(hs(1, 1)))).unwrap();
        append_sync(&gone, write(ents(1, 1, 1, 20), None)).unwrap();
        for i in 0..8 {
            append_sync(
                &busy,
                write(ents(1, i * 4 + 1, i * 4 + 4, 150), Some(hs(1, i * 4))),
            )
            .unwrap();
        }
        busy.save_snapshot_blocking(Snapshot {
            meta: SnapshotMeta {
                index: 30,
                term: 1,
                conf_state: ConfState::with_voters([1, 2, 3]),
            },
            data: Bytes::from_static(b"state at 30"),
        })
        .unwrap();
        busy.compact(30).unwrap();
        drop(gone);
        wal.remove_group_blocking(9).unwrap();
        append_sync(&busy, write(ents(2, 33, 34, 150), Some(hs(2, 33)))).unwrap();
    }
    save("real-shared-groups", dir.path());

    // A torn tail: the newest segment cut inside its last write.
    let dir = fast_tempdir();
    let cut = {
        let store = open(dir.path(), options());
        append_sync(&store, write(ents(1, 1, 2, 30), None)).unwrap();
        let before = store.durable_position().unwrap();
        append_sync(&store, write(ents(1, 3, 4, 30), Some(hs(1, 3)))).unwrap();
        let after = store.durable_position().unwrap();
        drop(store);
        (after.segment, (before.offset + after.offset) / 2)
    };
    let file = std::fs::OpenOptions::new().write(true).open(&cut.0).unwrap();
    file.set_len(cut.1).unwrap();
    save("real-torn-tail", dir.path());
    let _ = FileLogStore::open(dir.path(), options());
}
