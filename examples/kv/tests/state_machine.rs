//! The key-value state machine on its own: its state and applied index commit together and
//! survive a reopen; snapshots are point-in-time views streamed in chunks; a restore
//! replaces the state only once it is complete.

use bytes::Bytes;
use futures::StreamExt;
use kv::{Command, KvStore, Response};
use raft_runtime::{Applied, SnapshotStream, StateMachine};

fn put(index: u64, key: &str, value: &str) -> Applied<Command> {
    Applied {
        index,
        command: Command::Put {
            key: key.to_string(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        },
    }
}

fn bytes(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// The keys of a scan's page.
fn names(page: &kv::ScanPage) -> Vec<&str> {
    page.entries.iter().map(|(k, _)| k.as_str()).collect()
}

/// Reads a snapshot whole, counting its chunks.
async fn gather(mut s: SnapshotStream) -> (Bytes, usize) {
    let mut data = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = s.next_chunk().await.unwrap() {
        data.extend_from_slice(&chunk);
        chunks += 1;
    }
    (data.into(), chunks)
}

#[tokio::test]
async fn commands_and_the_applied_index_commit_together_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    assert_eq!(kv.applied_index().await.unwrap(), 0);
    let r = kv
        .apply(vec![put(2, "a", "1"), put(3, "b", "2")], 4)
        .await
        .unwrap();
    assert_eq!(r, vec![Response::Previous(None), Response::Previous(None)]);
    let cas = |index, expected: Option<Bytes>, new: Option<Bytes>| Applied {
        index,
        command: Command::CompareAndSwap {
            key: "a".into(),
            expected,
            new,
        },
    };
    let r = kv
        .apply(
            vec![
                put(5, "a", "3"),
                cas(6, bytes("1"), bytes("x")),
                cas(7, bytes("3"), bytes("4")),
                Applied {
                    index: 8,
                    command: Command::Delete { key: "b".into() },
                },
            ],
            8,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Response::Previous(bytes("1")),
            Response::Swapped {
                swapped: false,
                current: bytes("3")
            },
            Response::Swapped {
                swapped: true,
                current: bytes("4")
            },
            Response::Previous(bytes("2")),
        ]
    );
    // A batch without commands moves the index all the same.
    kv.apply(Vec::new(), 9).await.unwrap();
    drop(kv);
    let kv = KvStore::open(dir.path()).unwrap();
    assert_eq!(kv.applied_index().await.unwrap(), 9);
    assert_eq!(kv.get("a").unwrap(), bytes("4"));
    assert_eq!(kv.get("b").unwrap(), None);
}

#[tokio::test]
async fn oversized_keys_and_values_are_refused_alike_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    let long_key = "k".repeat(kv::state_machine::MAX_KEY_LEN + 1);
    let r = kv
        .apply(
            vec![
                put(1, &long_key, "v"),
                Applied {
                    index: 2,
                    command: Command::Put {
                        key: "k".into(),
                        value: vec![0u8; kv::state_machine::MAX_VALUE_LEN + 1].into(),
                    },
                },
            ],
            2,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r[0], Response::Refused(why) if why.contains("key")),
        "{r:?}"
    );
    assert!(
        matches!(&r[1], Response::Refused(why) if why.contains("value")),
        "{r:?}"
    );
    assert!(kv.is_empty().unwrap());
    assert_eq!(kv.applied_index().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_the_state_when_it_was_taken_streamed_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    let value = "v".repeat(1000);
    let batch: Vec<_> = (0..2000u64)
        .map(|i| put(i + 1, &format!("key-{i:05}"), &value))
        .collect();
    kv.apply(batch, 2000).await.unwrap();
    let view = kv.snapshot().await.unwrap();
    // Applied after the view was taken: not in it.
    kv.apply(
        vec![put(2001, "key-00000", "changed"), put(2002, "zzz", "new")],
        2002,
    )
    .await
    .unwrap();
    let (data, chunks) = gather(view).await;
    assert!(chunks > 10, "a 2 MB state in {chunks} chunks");

    let other = tempfile::tempdir().unwrap();
    let mut restored = KvStore::open(other.path()).unwrap();
    restored
        .apply(vec![put(1, "old", "gone after the restore")], 1)
        .await
        .unwrap();
    // Delivered in uneven pieces, so that records span chunks.
    let pieces: Vec<std::io::Result<Bytes>> =
        data.chunks(777).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    restored
        .restore(2000, SnapshotStream::new(futures::stream::iter(pieces)))
        .await
        .unwrap();
    assert_eq!(restored.applied_index().await.unwrap(), 2000);
    assert_eq!(restored.len().unwrap(), 2000);
    assert_eq!(restored.get("key-00000").unwrap(), bytes(&value));
    assert_eq!(restored.get("zzz").unwrap(), None);
    assert_eq!(restored.get("old").unwrap(), None);
    assert_eq!(restored.range("key-01998", 10).unwrap().len(), 2);
    // The restored state is the one on disk.
    drop(restored);
    let reopened = KvStore::open(other.path()).unwrap();
    assert_eq!(
        (reopened.applied().unwrap(), reopened.len().unwrap()),
        (2000, 2000)
    );
}

#[tokio::test]
async fn a_restore_that_fails_part_way_leaves_the_state_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    kv.apply(vec![put(1, "a", "1")], 1).await.unwrap();
    let (good, _) = gather(kv.snapshot().await.unwrap()).await;

    let other = tempfile::tempdir().unwrap();
    let mut target = KvStore::open(other.path()).unwrap();
    target.apply(vec![put(1, "mine", "kept")], 3).await.unwrap();
    let cases: Vec<(&str, SnapshotStream)> = vec![
        (
            "an error from the stream",
            SnapshotStream::new(futures::stream::iter(vec![
                Ok(good.slice(..10)),
                Err(std::io::Error::other("connection lost")),
            ])),
        ),
        (
            "a stream that ends inside a record",
            SnapshotStream::from_bytes(good.slice(..good.len() - 1)),
        ),
        (
            "bad magic",
            SnapshotStream::from_bytes(Bytes::from_static(b"NOTASNAPSHOT")),
        ),
        (
            "a length beyond the limits",
            SnapshotStream::from_bytes([&b"KVSNAP01"[..], &u32::MAX.to_le_bytes()].concat()),
        ),
    ];
    for (what, data) in cases {
        let err = target.restore(1, data).await.expect_err(what);
        assert!(!err.to_string().is_empty(), "{what}");
        assert_eq!(target.get("mine").unwrap(), bytes("kept"), "{what}");
        assert_eq!(target.applied().unwrap(), 3, "{what}");
        let leftovers: Vec<_> = std::fs::read_dir(other.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_str().unwrap().ends_with(".restore"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
}

#[test]
fn a_restore_a_crash_interrupted_is_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(KvStore::open(dir.path()).unwrap());
    let leftover = dir.path().join("kv.redb.restore");
    std::fs::write(&leftover, b"half a database").unwrap();
    let kv = KvStore::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(kv.applied().unwrap(), 0);
}

#[tokio::test]
async fn an_empty_state_snapshots_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    let view = kv.snapshot().await.unwrap();
    let chunks: Vec<_> = view.collect().await;
    assert_eq!(chunks.len(), 1, "just the magic");
    let data = chunks.into_iter().next().unwrap().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut restored = KvStore::open(other.path()).unwrap();
    restored
        .restore(5, SnapshotStream::from_bytes(data))
        .await
        .unwrap();
    assert_eq!((restored.applied().unwrap(), restored.len().unwrap()), (5, 0));
}

#[tokio::test]
async fn a_scan_pages_through_a_range_or_a_prefix_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = KvStore::open(dir.path()).unwrap();
    let keys = ["a", "app", "apple", "apply", "b", "ba", "c"];
    let batch = keys
        .iter()
        .enumerate()
        .map(|(i, k)| put(i as u64 + 1, k, k))
        .collect();
    kv.apply(batch, keys.len() as u64).await.unwrap();

    // Everything, in order, values included.
    let all = kv.scan("", None, "", 100, usize::MAX).unwrap();
    assert_eq!(names(&all), keys);
    assert_eq!(all.entries[2].1, bytes("apple").unwrap());
    assert_eq!(all.next, None);

    // `end` is excluded; `start` is included; `next` is where the next page starts.
    let page = kv.scan("app", Some("b"), "", 2, usize::MAX).unwrap();
    assert_eq!(names(&page), ["app", "apple"]);
    assert_eq!(page.next.as_deref(), Some("apply"));
    let page = kv.scan("apply", Some("b"), "", 2, usize::MAX).unwrap();
    assert_eq!(names(&page), ["apply"]);
    assert_eq!(page.next, None);

    // A prefix, alone or with a start inside or before it.
    assert_eq!(
        names(&kv.scan("", None, "app", 10, usize::MAX).unwrap()),
        ["app", "apple", "apply"]
    );
    assert_eq!(
        names(&kv.scan("apple", None, "app", 10, usize::MAX).unwrap()),
        ["apple", "apply"]
    );
    assert_eq!(
        names(&kv.scan("", None, "b", 10, usize::MAX).unwrap()),
        ["b", "ba"]
    );
    assert!(kv.scan("", None, "z", 10, usize::MAX).unwrap().entries.is_empty());

    // A byte budget ends a page early, but a page always holds one key.
    let page = kv.scan("", None, "", 100, 4).unwrap();
    assert_eq!(names(&page), ["a", "app"]);
    assert_eq!(page.next.as_deref(), Some("apple"));
    let page = kv.scan("apple", None, "", 100, 1).unwrap();
    assert_eq!(names(&page), ["apple"]);
    assert_eq!(page.next.as_deref(), Some("apply"));

    // Empty ranges and pages.
    assert_eq!(
        kv.scan("c", Some("b"), "", 10, usize::MAX).unwrap(),
        kv::ScanPage::default()
    );
    assert_eq!(
        kv.scan("", None, "", 0, usize::MAX).unwrap(),
        kv::ScanPage::default()
    );
    assert_eq!(kv.range("apply", 2).unwrap().len(), 2);
}
