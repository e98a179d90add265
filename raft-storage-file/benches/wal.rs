//! Throughput, latency and recovery figures for the file log store.
//!
//! ```text
//! cargo bench -p raft-storage-file --bench wal                 # full run (~1 minute of load)
//! cargo bench -p raft-storage-file --bench wal -- --quick      # shorter runs, smaller log
//! cargo bench -p raft-storage-file --bench wal -- --dir /path  # where to put the logs
//! cargo bench -p raft-storage-file --bench wal -- --only recovery   # or baseline, commit
//! ```
//!
//! It prints Markdown tables:
//!
//! 1. The floor: one `pwrite` + `fdatasync` of 256 B and 4 KiB into a pre-allocated file,
//!    in a loop, against a single appender's append-to-durable latency, in interleaved
//!    slices so that both see the same disk.
//! 2. Group commit: 1, 16, 64 and 256 concurrent appenders (writes in flight, each one
//!    entry of 256 B or 4 KiB; a new write is submitted as soon as one completes), giving
//!    appends per second, MB/s of entry payload, fsyncs per entry, and the latency from
//!    `append` to the completion at p50 and p99.
//! 3. Recovery of a log of 1M entries of 256 B: `open` time and MB/s of log read, with
//!    the files in the page cache (warm) and evicted from it with `posix_fadvise` (cold).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_core::{Entry, EntryPayload, HardState};
use raft_runtime::{LogStore, LogWrite};
use raft_storage_file::{FileLogStore, Options};

struct Args {
    quick: bool,
    dir: Option<PathBuf>,
    only: Option<String>,
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == part)
    }
}

fn args() -> Args {
    let mut args = Args {
        quick: false,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--dir" => args.dir = it.next().map(PathBuf::from),
            "--only" => args.only = it.next(),
            // `cargo bench` passes `--bench`; ignore it and anything else.
            _ => {}
        }
    }
    args
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The floor: a pre-allocated file written sequentially, one `pwrite` + `fdatasync` at
/// a time.
struct RawFile {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    at: u64,
}

impl RawFile {
    fn new(dir: &Path) -> RawFile {
        let path = dir.join("baseline.dat");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let len = 64u64 << 20;
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            file.write_all_at(&zeros, at).unwrap();
            at += zeros.len() as u64;
        }
        file.sync_all().unwrap();
        RawFile {
            path,
            file,
            len,
            at: 0,
        }
    }

    fn run(&mut self, size: usize, duration: Duration, h: &mut Histogram<u64>) {
        let buf = vec![0xA5u8; size];
        let t0 = Instant::now();
        while t0.elapsed() < duration {
            if self.at + size as u64 > self.len {
                self.at = 0;
            }
            let t = Instant::now();
            self.file.write_all_at(&buf, self.at).unwrap();
            self.file.sync_data().unwrap();
            h.record(t.elapsed().as_nanos() as u64).unwrap();
            self.at += size as u64;
        }
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A single appender against the raw floor, interleaved in short slices so that both
/// see the same disk (a shared disk's sync latency drifts over seconds).
fn single_appender_vs_floor(base: &Path, size: usize, rounds: usize, slice: Duration) {
    let mut raw = RawFile::new(base);
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = FileLogStore::open(dir.path(), Options::default()).unwrap();
    let mut next = 1;
    load(&store, 1, size, slice, &mut next);
    let mut floor = Histogram::<u64>::new(3).unwrap();
    let mut wal = Histogram::<u64>::new(3).unwrap();
    for _ in 0..rounds {
        raw.run(size, slice, &mut floor);
        wal.add(load(&store, 1, size, slice, &mut next).latency).unwrap();
    }
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
        if size == 256 { "256 B" } else { "4 KiB" },
        micros(&floor, 0.5),
        micros(&floor, 0.99),
        micros(&wal, 0.5),
        micros(&wal, 0.99),
        micros(&wal, 0.5) / micros(&floor, 0.5),
    );
}

struct LoadResult {
    appends_per_sec: f64,
    payload_mb_per_sec: f64,
    fsyncs_per_entry: f64,
    latency: Histogram<u64>,
}

/// Keeps `writers` one-entry writes in flight for `duration`.
fn load(store: &FileLogStore, writers: usize, size: usize, duration: Duration, next: &mut u64) -> LoadResult {
    let data = Bytes::from(vec![0x5Au8; size]);
    let (tx, rx) = mpsc::channel::<(Instant, Instant)>();
    let submit = |index: u64| {
        let tx = tx.clone();
        let started = Instant::now();
        let write = LogWrite {
            snapshot: None,
            entries: vec![Entry::new(1, index, EntryPayload::Normal(data.clone()))],
            hard_state: Some(HardState {
                term: 1,
                vote: Some(1),
                commit: index.saturating_sub(1),
            }),
        };
        store.append(
            write,
            Box::new(move |r| {
                r.expect("durable");
                let _ = tx.send((started, Instant::now()));
            }),
        );
    };
    let before = store.metrics();
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let t0 = Instant::now();
    for _ in 0..writers {
        submit(*next);
        *next += 1;
    }
    let mut completed = 0u64;
    let mut in_flight = writers;
    while in_flight > 0 {
        let (started, done) = rx.recv().unwrap();
        latency.record((done - started).as_nanos() as u64).unwrap();
        completed += 1;
        in_flight -= 1;
        if t0.elapsed() < duration {
            submit(*next);
            *next += 1;
            in_flight += 1;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let after = store.metrics();
    let entries = after.entries - before.entries;
    LoadResult {
        appends_per_sec: completed as f64 / elapsed,
        payload_mb_per_sec: (completed * size as u64) as f64 / elapsed / 1e6,
        fsyncs_per_entry: (after.fsyncs - before.fsyncs) as f64 / entries as f64,
        latency,
    }
}

/// Evicts a directory's files from the page cache.
fn evict(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(file) = std::fs::File::open(&path) {
            // SAFETY: plain syscall on a descriptor we own.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

fn recovery(base: &Path, entries: u64) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let payload = Bytes::from(vec![0x3Cu8; 256]);
    {
        let store = FileLogStore::open(dir.path(), Options::default()).unwrap();
        let per_write = 1000u64;
        let (tx, rx) = mpsc::channel();
        let mut in_flight = 0;
        let mut index = 1;
        while index <= entries {
            let last = (index + per_write - 1).min(entries);
            let write = LogWrite {
                snapshot: None,
                entries: (index..=last)
                    .map(|i| Entry::new(1, i, EntryPayload::Normal(payload.clone())))
                    .collect(),
                hard_state: Some(HardState {
                    term: 1,
                    vote: Some(1),
                    commit: last,
                }),
            };
            let tx = tx.clone();
            store.append(write, Box::new(move |r| tx.send(r).unwrap()));
            in_flight += 1;
            if in_flight == 8 {
                rx.recv().unwrap().unwrap();
                in_flight -= 1;
            }
            index = last + 1;
        }
        store.flush_blocking().unwrap();
    }
    println!("| state | entries | log bytes read | open time | MB/s |");
    println!("|---|---:|---:|---:|---:|");
    for (label, cold) in [("warm (page cache)", false), ("cold (evicted)", true)] {
        if cold {
            evict(dir.path());
        }
        let t = Instant::now();
        let store = FileLogStore::open(dir.path(), Options::default()).unwrap();
        let elapsed = t.elapsed();
        let stats = store.recovery_stats();
        assert_eq!(store.last_index(), entries);
        println!(
            "| {label} | {} | {:.1} MB | {:.3} s | {:.0} |",
            stats.entries,
            stats.bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            stats.bytes as f64 / 1e6 / elapsed.as_secs_f64()
        );
        drop(store);
    }
}

fn main() {
    let args = args();
    let holder;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => {
            holder = tempfile::tempdir().unwrap();
            holder.path().to_path_buf()
        }
    };
    let (duration, rounds, recovery_entries) = if args.quick {
        (Duration::from_millis(800), 4, 200_000)
    } else {
        (Duration::from_secs(3), 12, 1_000_000)
    };
    println!("log directory: {}", base.display());
    if args.runs("baseline") {
        println!();
        println!("### Single appender against one pwrite + fdatasync (interleaved)");
        println!();
        println!("| entry | fdatasync p50 µs | p99 µs | append-to-durable p50 µs | p99 µs | p50 ratio |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for size in [256usize, 4096] {
            single_appender_vs_floor(&base, size, rounds, duration / 5);
        }
    }
    if args.runs("commit") {
        println!();
        println!("### Group commit");
        println!();
        println!("| entry | appenders | appends/s | MB/s | fsyncs/entry | p50 µs | p99 µs |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for size in [256usize, 4096] {
            for writers in [1usize, 16, 64, 256] {
                let dir = tempfile::tempdir_in(&base).unwrap();
                let store = FileLogStore::open(dir.path(), Options::default()).unwrap();
                let mut next = 1;
                // Warm up: the first segment gets prepared and the caches fill.
                load(&store, writers, size, duration / 4, &mut next);
                let r = load(&store, writers, size, duration, &mut next);
                println!(
                    "| {} | {writers} | {:.0} | {:.1} | {:.3} | {:.0} | {:.0} |",
                    if size == 256 { "256 B" } else { "4 KiB" },
                    r.appends_per_sec,
                    r.payload_mb_per_sec,
                    r.fsyncs_per_entry,
                    micros(&r.latency, 0.5),
                    micros(&r.latency, 0.99),
                );
            }
        }
    }
    if args.runs("recovery") {
        println!();
        println!("### Recovery of {recovery_entries} entries of 256 B");
        println!();
        recovery(&base, recovery_entries);
    }
}
