//! The figures of each run: the table printed as the runs finish, and the same figures as
//! JSON (`results.json`).

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{Setup, Workload};

/// Everything one `raft-bench` invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `raft-bench` and the crate's version.
    pub tool: String,
    /// When the benchmark started, in seconds since the Unix epoch.
    pub started_unix_seconds: u64,
    /// The machine, and how busy it was.
    pub machine: Machine,
    /// The options the runs used.
    pub settings: Settings,
    /// One entry per configuration, payload and client count, in the order run.
    pub runs: Vec<Run>,
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs available to the benchmark.
    pub cpus: usize,
    /// `uname -sr`-like kernel name and release, from /proc.
    pub kernel: String,
    /// 1, 5 and 15 minute load averages before the first run.
    pub load_average_before: Option<[f64; 3]>,
    /// The same after the last run (or the latest run, while running).
    pub load_average_after: Option<[f64; 3]>,
}

/// The options of the invocation.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Measured seconds per run, for timed runs.
    pub duration_seconds: Option<f64>,
    /// Operations per run, for counted runs.
    pub ops_per_run: Option<u64>,
    /// Unmeasured seconds of load before each measured part.
    pub warmup_seconds: f64,
    /// The runtime's `snapshot_every` on every node.
    pub snapshot_every: u64,
    /// Whether every command went through a client session (`--sessions`).
    pub sessions: bool,
    /// Commands per call of the write workload (`--batch`).
    pub batch: usize,
    /// Tokio worker threads of the benchmark's process (`--worker-threads`); `None`: one
    /// per CPU.
    pub worker_threads: Option<usize>,
    /// Where the write-ahead logs of configurations b and c were written.
    pub data_dir: String,
    /// Whether runs of a and b shared the benchmark's process (`--same-process`) rather
    /// than each getting a fresh one.
    pub same_process: bool,
}

/// Latency percentiles of completed operations, in microseconds, from the first attempt
/// to the answer.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_nanos(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
        }
    }
}

/// Memory and progress at one moment of a run's measured part.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the measured part began.
    pub seconds: f64,
    /// Operations completed by then.
    pub ops: u64,
    /// Resident memory then (the sum of the nodes' for configuration c).
    pub rss_bytes: u64,
    /// Peak resident memory so far.
    pub peak_bytes: u64,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// The configuration.
    pub config: Setup,
    /// What the configuration is.
    pub description: String,
    /// What the clients did.
    pub workload: Workload,
    /// Commands per call (writes in batches), 1 otherwise.
    pub batch: usize,
    /// Concurrent closed-loop clients.
    pub clients: usize,
    /// Payload bytes per operation (and per log entry).
    pub payload_bytes: usize,
    /// Operations completed in the measured part.
    pub ops: u64,
    /// Length of the measured part.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_second: f64,
    /// Latency percentiles.
    pub latency_us: Latency,
    /// Attempts refused as definitely not applied (busy), and retried.
    pub rejected: u64,
    /// The same, by the reason the cluster gave.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Operations that failed (outcome unknown, or the cluster unreachable).
    pub failed: u64,
    /// The first failure's reason.
    pub first_error: Option<String>,
    /// Log entries the leader committed during the measured part.
    pub entries_committed: u64,
    /// `fsync`/`fdatasync` calls on the write path of all three nodes.
    pub fsyncs: u64,
    /// `fsyncs` per committed entry (all three nodes together).
    pub fsyncs_per_entry: Option<f64>,
    /// Writes (batches handed to the log store and made durable) of all three nodes.
    pub log_writes: u64,
    /// `log_writes` per committed entry.
    pub log_writes_per_entry: Option<f64>,
    /// Bytes all three nodes sent to each other (0 for the in-memory network, which
    /// serializes nothing).
    pub wire_bytes: u64,
    /// `wire_bytes` per committed entry.
    pub wire_bytes_per_entry: Option<f64>,
    /// CPU seconds used during the measured part: the whole process for a and b (nodes
    /// and clients), the three nodes plus the client process for c.
    pub cpu_seconds: f64,
    /// The three node processes' share of `cpu_seconds` (configuration c only).
    pub cpu_seconds_nodes: Option<f64>,
    /// `cpu_seconds` per 1000 operations.
    pub cpu_seconds_per_1k_ops: f64,
    /// Peak resident memory: of the process that ran the three nodes and the clients for a
    /// and b (a fresh process per run, unless `--same-process`), the sum of the three
    /// nodes' peaks for c.
    pub peak_memory_bytes: u64,
    /// The peak after the first 60 measured seconds, for runs that long.
    pub peak_memory_first_minute_bytes: Option<u64>,
    /// Load averages when the run started (this benchmark's previous run included).
    pub load_average: Option<[f64; 3]>,
    /// CPU seconds the rest of the machine (other processes, the kernel's own work) used
    /// during the measured part: the machine's busy time less this benchmark's.
    pub other_cpu_seconds: f64,
    /// `other_cpu_seconds` as a share of all CPUs over the measured part: how busy the
    /// machine was with something else.
    pub other_cpu_share: f64,
    /// Progress and memory once a second.
    pub samples: Vec<Sample>,
}

impl Run {
    /// `peak_memory_bytes` over the first minute's peak, for runs of over a minute.
    pub fn memory_growth(&self) -> Option<f64> {
        self.peak_memory_first_minute_bytes
            .filter(|&first| first > 0)
            .map(|first| self.peak_memory_bytes as f64 / first as f64)
    }
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(report: &Report, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report).expect("the report always serializes");
    std::fs::write(path, text + "\n")
}

/// The table's header lines.
pub fn header() -> String {
    format!(
        "{:<3} {:<10} {:>7} {:>7} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}\n{}",
        "cfg",
        "workload",
        "clients",
        "payload",
        "ops/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "fsync/e",
        "wire B/e",
        "cpu s/1k",
        "peak MiB",
        "errors",
        "other",
        "-".repeat(122)
    )
}

/// One line of the table.
pub fn row(run: &Run) -> String {
    let l = &run.latency_us;
    let opt = |v: Option<f64>, decimals: usize| v.map_or("-".to_string(), |v| format!("{v:.decimals$}"));
    format!(
        "{:<3} {:<10} {:>7} {:>7} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8.3} {:>8.1} {:>6} {:>5.0}%",
        run.config.name(),
        workload(run),
        run.clients,
        bytes(run.payload_bytes),
        thousands(run.ops_per_second.round() as u64),
        micros(l.p50),
        micros(l.p99),
        micros(l.p999),
        opt(run.fsyncs_per_entry, 3),
        opt(run.wire_bytes_per_entry, 0),
        run.cpu_seconds_per_1k_ops,
        run.peak_memory_bytes as f64 / (1024.0 * 1024.0),
        run.failed + run.rejected,
        run.other_cpu_share * 100.0,
    )
}

/// The workload column: `write`, `write x4` for batches, `read`, `lease-read`,
/// `f-read` (follower reads).
fn workload(run: &Run) -> String {
    match run.workload {
        Workload::Write if run.batch > 1 => format!("write x{}", run.batch),
        Workload::FollowerRead => "f-read".to_string(),
        w => w.name().to_string(),
    }
}

/// `16 B`, `4 KiB`.
pub fn bytes(n: usize) -> String {
    if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with one decimal below 100, whole above.
fn micros(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_the_table() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_765_553), "1,765,553");
        assert_eq!(bytes(16), "16 B");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(micros(15.04), "15.0");
        assert_eq!(micros(2039.4), "2039");
    }
}
