//! Throughput and latency of a three-node cluster in one process: in-memory log store,
//! in-process network, an empty state machine whose command is `()` (the conditions of
//! openraft's `benchmarks/minimal`: no network, no serialization between nodes, no fsync).
//!
//! This is `raft-bench --configs a --payloads 0` with the settings the runtime's own
//! benchmark had: 5 s per run after 1 s of warm-up, a snapshot every 100,000 entries,
//! 1 to 4096 clients, each run in a fresh process. It prints the same table (throughput,
//! latency percentiles, CPU, memory) and writes `results.json` and `plot.png` under
//! cargo's temporary directory for benchmarks.
//!
//! `cargo bench -p raft-bench --bench cluster [-- --seconds N --clients 1,64,256]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use raft_bench::workload::Stop;
use raft_bench::{Plan, Setup, Workload};

/// `--seconds N` and `--clients LIST`; anything else (cargo passes `--bench`) is ignored.
fn plan() -> Result<Plan, String> {
    let mut seconds = 5u64;
    let mut clients = vec![1, 64, 256, 1024, 4096];
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = argv
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--seconds takes a whole number of seconds, at least 1")?;
            }
            "--clients" => {
                clients = argv
                    .next()
                    .and_then(|list| list.split(',').map(|c| c.trim().parse().ok()).collect())
                    .filter(|list: &Vec<usize>| !list.is_empty() && !list.contains(&0))
                    .ok_or("--clients takes a list of counts of at least 1 (1,64,256)")?;
            }
            _ => {}
        }
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-bench");
    Ok(Plan {
        setups: vec![Setup::A],
        workloads: vec![Workload::Write],
        batch: 1,
        clients,
        payloads: vec![0],
        stop: Stop::After(Duration::from_secs(seconds)),
        warmup: Duration::from_secs(1),
        data_dir: out.clone(),
        out,
        snapshot_every: 100_000,
        sessions: false,
        worker_threads: None,
        same_process: false,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_raft-bench")),
    })
}

fn main() -> ExitCode {
    let plan = match plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(raft_bench::run(plan)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster: {e}");
            ExitCode::FAILURE
        }
    }
}
