//! A snapshot far larger than the store may hold in memory is saved and loaded as a stream,
//! a chunk at a time. The only test in its binary: it reads the process's peak resident
//! memory, which other tests running beside it would raise.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use raft_runtime::{LogStore, SnapshotStream};
use raft_storage_file::Options;

/// 128 MiB, in chunks of 64 KiB.
const CHUNKS: usize = 2048;
const CHUNK: usize = 64 << 10;

/// Chunk `i` of the large snapshot, made when it is read.
fn chunk(i: usize) -> Bytes {
    let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..CHUNK)
        .map(|j| (seed >> ((j % 8) * 8)) as u8 ^ j as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A process's memory figure from `/proc/self/status`, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_large_snapshot_is_saved_and_loaded_a_chunk_at_a_time() {
    let dir = fast_tempdir();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    let rt = runtime();
    let before = proc_status("VmRSS:");
    let data = SnapshotStream::new(futures::stream::iter(0..CHUNKS).map(|i| Ok(chunk(i))));
    rt.block_on(store.save_snapshot(snap_meta(10), data)).unwrap();
    assert_eq!(store.snapshot_meta(), Some(snap_meta(10)));

    let stored = rt
        .block_on(store.load_snapshot())
        .unwrap()
        .expect("a stored snapshot");
    assert_eq!(stored.meta, snap_meta(10));
    let mut data = stored.data;
    let mut read = 0usize;
    let mut expected = chunk(0);
    let mut at = 0usize;
    while let Some(got) = rt.block_on(data.next_chunk()).unwrap() {
        for part in got.chunks(1024) {
            if at == CHUNK {
                expected = chunk(read / CHUNK);
                at = 0;
            }
            assert_eq!(part, &expected[at..at + part.len()], "data at byte {read}");
            at += part.len();
            read += part.len();
        }
    }
    assert_eq!(read, CHUNKS * CHUNK);
    let grown = proc_status("VmHWM:").saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "saving and loading a {} MiB snapshot grew the peak resident memory by {} MiB",
        (CHUNKS * CHUNK) >> 20,
        grown >> 20
    );
}
