//! `counter bench`: measure the runtime on this machine (see [`crate::bench`]).

use std::path::PathBuf;
use std::time::Duration;

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

/// `16`, `256B`, `4k`, `4KiB`, `1MiB`.
fn parse_size(s: &str) -> Result<usize, String> {
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
    Ok(n * scale)
}

/// `500ms`, `3s`, `5m`, `1h`, or plain seconds (`3`, `0.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
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
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }
}
