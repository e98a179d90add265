//! A snapshot of a database far larger than the memory a node may spend on it is taken and
//! restored a chunk at a time: the process's peak resident memory grows by much less than
//! the state. (Before redb's page cache was bounded, a restore grew it by about the size of
//! the state.)
//!
//! The only test in its binary: it reads the process's peak resident memory, which other
//! tests running beside it would raise.

use bytes::Bytes;
use kv::{Command, KvStore};
use raft_runtime::{Applied, StateMachine};

/// 640 MiB of values.
const KEYS: usize = 640 << 10;
const VALUE: usize = 1 << 10;
/// What taking and restoring the snapshot may add to the peak resident memory: well under
/// the state's size. Measured: +58 to +61 MiB on an idle machine; more under load, where the
/// allocator keeps more memory on the blocking threads that read and write the chunks.
const MAX_GROWTH: u64 = 256 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_is_taken_and_restored_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = KvStore::open(dir.path().join("source")).unwrap();
    let mut index = 0;
    for batch in 0..KEYS / 4096 {
        let commands = (0..4096)
            .map(|i| {
                index += 1;
                let n = batch * 4096 + i;
                Applied {
                    index,
                    command: Command::Put {
                        key: format!("key-{n:08}"),
                        value: Bytes::from(vec![(n % 251) as u8; VALUE]),
                    },
                }
            })
            .collect();
        source.apply(commands, index).await.unwrap();
    }

    let before = raft_testkit::proc_status("VmHWM:");
    let mut target = KvStore::open(dir.path().join("target")).unwrap();
    let snapshot = source.snapshot().await.unwrap();
    target.restore(index, snapshot).await.unwrap();
    let after = raft_testkit::proc_status("VmHWM:");
    let growth = after.saturating_sub(before);
    eprintln!(
        "{} MiB of values snapshotted and restored: peak resident memory +{} MiB",
        (KEYS * VALUE) >> 20,
        growth >> 20
    );
    assert_eq!(target.len().unwrap(), KEYS as u64);
    assert_eq!(target.applied().unwrap(), index);
    let last = format!("key-{:08}", KEYS - 1);
    assert_eq!(
        target.get(&last).unwrap(),
        Some(Bytes::from(vec![((KEYS - 1) % 251) as u8; VALUE]))
    );
    assert!(
        growth < MAX_GROWTH,
        "restoring {} MiB grew the peak resident memory by {} MiB",
        (KEYS * VALUE) >> 20,
        growth >> 20
    );
}
