//! The command line: `raft-bench [OPTIONS]` runs the benchmark; `raft-bench node`, hidden,
//! runs one node of configuration c (see [`crate::node`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::workload::Stop;
use crate::{Plan, Setup, Workload};

/// Measure throughput, latency, fsyncs, bytes, CPU and memory of 3-node Raft clusters.
#[derive(Debug, Parser)]
#[command(name = "raft-bench", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal: what else to run instead of the benchmark.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The benchmark's options.
    #[command(flatten)]
    pub bench: Args,
}

/// What else the executable runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of configuration c until SIGINT or SIGTERM (the benchmark starts three).
    #[command(hide = true)]
    Node(crate::node::Args),
    /// Measure a `kv` cluster with a large state: load, a new node's catch-up by snapshot
    /// (time, rate, memory, the write load meanwhile), and a follower's restart.
    KvCatchup(crate::kv_catchup::Args),
    /// Measure what many idle groups cost the protocol (memory, CPU and messages per
    /// tick), awake and quiescent.
    Groups(crate::groups::Args),
    /// Measure many groups of the runtime in one process, each process's nodes sharing one
    /// transport: memory per group, idle CPU and messages, waking a quiet group.
    ManyGroups(crate::many_groups::Args),
}

impl Cli {
    /// The benchmark's `--worker-threads`, if given (a node process takes the default).
    pub fn worker_threads(&self) -> Option<usize> {
        match self.command {
            None => self.bench.worker_threads.map(|n| n as usize),
            Some(_) => None,
        }
    }

    /// The log level when `RUST_LOG` is not set. The benchmark stops nodes on purpose, so
    /// the warnings that causes are not shown; a node logs its warnings to its log file.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Some(Command::Node(_)) => "warn",
            Some(Command::KvCatchup(_) | Command::Groups(_) | Command::ManyGroups(_)) | None => "error",
        }
    }

    /// Runs the benchmark, or a node.
    pub async fn run(self) -> Result<(), Error> {
        match self.command {
            Some(Command::Node(args)) => crate::node::run(args).await,
            Some(Command::KvCatchup(args)) => crate::kv_catchup::run(args).await,
            Some(Command::Groups(args)) => crate::groups::run(args).await,
            Some(Command::ManyGroups(args)) => crate::many_groups::run(args).await,
            None => run(self.bench).await,
        }
    }
}

/// The benchmark's options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configurations to run: a (3 nodes in this process, in-memory log and network),
    /// b (3 nodes in this process, file WAL with fsync and QUIC over loopback),
    /// c (3 `raft-bench node` processes driven over HTTP).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
    configs: Vec<Setup>,
    /// What the clients do, one set of runs each: write (propose), read (linearizable
    /// ReadIndex reads on the leader), lease-read (reads on the leader's lease),
    /// follower-read (linearizable reads on the followers).
    #[arg(long, value_delimiter = ',', default_value = "write")]
    workloads: Vec<Workload>,
    /// Commands per call of the write workload in configurations a and b: more than 1
    /// proposes them together with `Raft::propose_batch` (one answer per command; every
    /// command counts as an operation, the latency is the call's).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    batch: u64,
    /// Numbers of concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,1024,4096")]
    clients: Vec<usize>,
    /// Payload sizes, one run each: bytes, or with a unit (16, 256B, 4KiB, 4k).
    #[arg(long, value_delimiter = ',', default_value = "16", value_parser = parse_size)]
    payloads: Vec<usize>,
    /// How long to measure each run (500ms, 3s, 5m).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Measure this many operations per run instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    ops: Option<u64>,
    /// With --ops: end a run after this long even if the operations are not all done.
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "ops")]
    time_limit: Duration,
    /// Unmeasured load before each run's measured part.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Directory for results.json and plot.png (created if missing).
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Directory for the write-ahead logs of b and c (a temporary directory per run is
    /// made in it and removed after). Default: the --out directory. Put it on the disk
    /// you want to measure, not on tmpfs.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The runtime's snapshot_every: snapshot and compact the log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Propose every command in a client session (each client opens one and numbers its
    /// commands), so that retries are applied at most once; measures what sessions cost.
    #[arg(long)]
    sessions: bool,
    /// Tokio worker threads of the process that runs a and b (nodes and clients) and c's
    /// clients; by default one per CPU. With 1, every task runs on one thread and no
    /// wake-up crosses cores.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    worker_threads: Option<u64>,
    /// Run configurations a and b in this process instead of a fresh process per run
    /// (quicker, and simpler to profile; but each run's peak memory then includes what
    /// the allocator kept from the runs before).
    #[arg(long)]
    same_process: bool,
    /// Internal: run the one run given and write its figures as JSON to this file.
    #[arg(long = "child-run-json", hide = true)]
    child_run_json: Option<PathBuf>,
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    if args.clients.is_empty() || args.clients.contains(&0) {
        return Err("--clients needs counts of at least 1".into());
    }
    let stop = match args.ops {
        Some(0) => return Err("--ops needs at least 1".into()),
        Some(count) => Stop::Ops {
            count,
            limit: args.time_limit,
        },
        None if args.duration.is_zero() => return Err("--duration must be positive".into()),
        None => Stop::After(args.duration),
    };
    let mut configs = args.configs;
    configs.dedup();
    let mut workloads = args.workloads;
    workloads.dedup();
    let plan = Plan {
        setups: configs,
        workloads,
        batch: args.batch as usize,
        clients: args.clients,
        payloads: args.payloads,
        stop,
        warmup: args.warmup,
        data_dir: args.data_dir.unwrap_or_else(|| args.out.clone()),
        out: args.out,
        snapshot_every: args.snapshot_every,
        sessions: args.sessions,
        worker_threads: args.worker_threads.map(|n| n as usize),
        same_process: args.same_process,
        exe,
    };
    match args.child_run_json {
        Some(json) => crate::run_as_child(plan, &json).await,
        None => crate::run(plan).await.map(|_| ()),
    }
}

/// `16`, `256B`, `4k`, `4KiB`, `1MiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (16, 256B, 4KiB)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("`{s}`: unknown unit (B, KiB, MiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}` is too large"))
}

/// `500ms`, `3s`, `5m`, `1h`, or plain seconds (`3`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (500ms, 3s, 5m)"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("256B"), Ok(256));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size(&format!("{}MiB", usize::MAX)).is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_benchmark_and_the_hidden_node_parse() {
        let cli = Cli::try_parse_from(["raft-bench", "--configs", "a,c", "--clients", "1,64"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.bench.configs, vec![Setup::A, Setup::C]);
        assert_eq!(cli.bench.clients, vec![1, 64]);
        assert_eq!(cli.bench.payloads, vec![16]);

        let node = Cli::try_parse_from([
            "raft-bench",
            "node",
            "--id",
            "2",
            "--raft-addr",
            "127.0.0.1:7001",
            "--http-addr",
            "127.0.0.1:8001",
            "--data-dir",
            "/tmp/x",
            "--certs",
            "/tmp/c",
            "--peers",
            "1=127.0.0.1:7000,2=127.0.0.1:7001",
        ])
        .unwrap();
        assert!(matches!(node.command, Some(Command::Node(_))));
        // The benchmark's options and the node's do not mix.
        assert!(Cli::try_parse_from(["raft-bench", "--clients", "1", "node", "--id", "1"]).is_err());
    }
}
