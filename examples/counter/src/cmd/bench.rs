//! `counter bench`: measure the runtime on this machine (see [`crate::bench`]).

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_duration, parse_size};
use crate::Error;
use crate::bench::workload::Stop;
use crate::bench::{Plan, Setup};

/// Arguments of `counter bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configurations to run: a (3 nodes in this process, in-memory log and network),
    /// b (3 nodes in this process, file WAL with fsync and QUIC over loopback),
    /// c (3 `counter node` processes driven over HTTP).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
    configs: Vec<Setup>,
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
    let plan = Plan {
        setups: configs,
        clients: args.clients,
        payloads: args.payloads,
        stop,
        warmup: args.warmup,
        data_dir: args.data_dir.unwrap_or_else(|| args.out.clone()),
        out: args.out,
        snapshot_every: args.snapshot_every,
        same_process: args.same_process,
    };
    match args.child_run_json {
        Some(json) => crate::bench::run_as_child(plan, &json).await,
        None => crate::bench::run(plan).await.map(|_| ()),
    }
}
