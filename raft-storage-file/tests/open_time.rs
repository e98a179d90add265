//! How long opening an existing log takes, by segment size and by how much the newest
//! segment holds. A measurement, not a check (no verdict depends on timing), so it is
//! ignored by default:
//!
//! `cargo test -p raft-storage-file --release --test open_time -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::{append_sync, ents, open, write};
use raft_core::HardState;
use raft_runtime::LogStore;
use raft_storage_file::Options;

/// How the log was left before it is opened again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    /// Closed: the newest segment trimmed to its data, the next one prepared.
    Closed,
    /// As a crash leaves it: the newest segment at full size, the next one prepared.
    Crashed,
}

/// Copies the files of `from` into the new directory `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_file() {
            std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
        }
    }
}

/// Writes `entries` entries of `len` bytes into a new log with `segment_size` segments,
/// leaves it as `left` says, then opens it `rounds` times (each time from the same
/// files); prints the median open time and the recovery figures.
fn measure(segment_size: u64, entries: u64, len: usize, left: Left, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_size,
        ..Options::default()
    };
    let store = open(dir.path(), options());
    let hs = HardState {
        term: 1,
        vote: Some(1),
        commit: 0,
    };
    let mut next = 1;
    while next <= entries {
        let to = (next + 99).min(entries);
        append_sync(&store, write(ents(1, next, to, len), Some(hs))).unwrap();
        next = to + 1;
    }
    // The files as they are now, every write durable: what a crash would leave, once the
    // janitor has prepared the next segment.
    let image = tempfile::tempdir().unwrap();
    common::wait_for("the next segment to be prepared", || {
        common::segment_files(dir.path())
            .iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == segment_size))
            .count()
            >= 2
    });
    copy_dir(dir.path(), &image.path().join("log"));
    store.close().unwrap();

    let mut times = Vec::new();
    let mut stats = None;
    for round in 0..rounds {
        let path = match left {
            Left::Closed => dir.path().to_path_buf(),
            Left::Crashed => {
                let path = dir.path().join(format!("round-{round}"));
                copy_dir(&image.path().join("log"), &path);
                path
            }
        };
        let start = Instant::now();
        let store = open(&path, options());
        times.push(start.elapsed());
        assert_eq!(store.last_index(), entries);
        stats = Some(store.recovery_stats());
        store.close().unwrap();
    }
    times.sort();
    let stats = stats.unwrap();
    println!(
        "{left:?}: segment {:>3} MiB, {:>6} entries of {len} B: open median {:>7.1} ms (min {:.1}); recovery read {} segments, {:.1} MiB, in {:.1} ms",
        segment_size >> 20,
        entries,
        ms(times[times.len() / 2]),
        ms(times[0]),
        stats.segments,
        stats.bytes as f64 / (1 << 20) as f64,
        ms(stats.duration),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn open_time_by_segment_size() {
    for left in [Left::Closed, Left::Crashed] {
        for segment_size in [4 << 20, 16 << 20, 64 << 20] {
            for entries in [10, 10_000] {
                measure(segment_size, entries, 100, left, 7);
            }
        }
        // A log of more than one segment.
        measure(64 << 20, 500_000, 100, left, 5);
    }
}
