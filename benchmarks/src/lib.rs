//! `raft-bench`: what the runtime does on this machine, as a table, JSON and a plot.
//!
//! Each run starts a fresh three-node cluster in one of three configurations, waits for a
//! stable leader, puts it under a closed-loop load of `clients` concurrent clients (each
//! sends one operation, waits for the answer, sends the next) for a warm-up and then for
//! the measured part, reads the figures, and stops the cluster:
//!
//! | config | nodes | log store | transport | state machine | clients call |
//! |---|---|---|---|---|---|
//! | `a` | 3 in this process | in memory (no fsync) | in-process channels | [`machine::Sink`] | `Raft::propose` on the leader |
//! | `b` | 3 in this process | file WAL, `fdatasync` per group commit | QUIC + mutual TLS on 127.0.0.1 | [`machine::Sink`] | `Raft::propose` on the leader |
//! | `c` | 3 `raft-bench node` processes ([`node`]) | file WAL | QUIC + mutual TLS on 127.0.0.1 | [`machine::Sink`] of `Bytes` | `POST /propose` on the leader, HTTP/1.1 keep-alive |
//!
//! Configuration `a` reproduces the conditions of openraft's `benchmarks/minimal` (and is
//! what `cargo bench -p raft-bench` runs); `b` is the same cluster on the real storage and
//! network; `c` is a service as deployed: separate processes, each with an HTTP API, the
//! payload sent as each request's body.
//!
//! The clients write by default (`--workloads write`), one command per call or, with
//! `--batch N` in a and b, N per call through `Raft::propose_batch`; or they read:
//! linearizable reads on the leader, lease reads, or linearizable reads on the followers
//! ([`Workload`]).
//!
//! Per run: operations per second; latency percentiles from an HDR histogram; fsyncs and
//! bytes sent between nodes per committed entry (from the nodes' metrics); CPU seconds per
//! 1000 operations (`getrusage`, `/proc/<pid>/stat`); peak resident memory (`VmHWM`).
//!
//! A run of `a` or `b` happens in a fresh `raft-bench` process of its own (started with
//! a hidden option, [`CHILD_FLAG`]), so that its peak memory and its allocator owe nothing
//! to the runs before; `c`'s nodes are fresh processes anyway.
//!
//! The pieces: [`workload`] drives the clients and records latencies; `inproc` (a, b) and
//! `procs` (c) start and stop the clusters, [`node`] is c's node process and `http1` c's
//! load generator; `usage` asks the OS for CPU and memory; [`report`] holds the figures
//! and prints them, and `plot` draws them; [`cli`] is the command line.

pub mod cli;
pub mod groups;
pub mod kv_catchup;
pub mod machine;
pub mod many_groups;
pub mod node;
pub mod report;
pub mod workload;

mod http1;
mod inproc;
mod plot;
mod procs;
mod usage;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use inproc::InProcess;
use report::{Report, Run, Sample};
use workload::{Client, Load, Stop};

/// The error of the benchmark: any error, reported to the user as one line.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One of the three cluster configurations.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    /// 3 nodes in this process: in-memory log store and network, empty state machine.
    A,
    /// 3 nodes in this process: file WAL (fsync on) and QUIC over loopback.
    B,
    /// 3 `raft-bench node` processes driven over their HTTP API.
    C,
}

impl Setup {
    /// `a`, `b` or `c`.
    pub fn name(self) -> &'static str {
        match self {
            Setup::A => "a",
            Setup::B => "b",
            Setup::C => "c",
        }
    }

    /// What the configuration is, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Setup::A => {
                "3 nodes in one process, in-memory log store, in-process transport, empty state machine"
            }
            Setup::B => {
                "3 nodes in one process, file WAL (fdatasync per group commit), QUIC with mutual TLS over 127.0.0.1, empty state machine"
            }
            Setup::C => {
                "3 `raft-bench node` processes (file WAL, QUIC with mutual TLS over 127.0.0.1, empty state machine), POST /propose to the leader over HTTP/1.1 keep-alive"
            }
        }
    }
}

/// What the clients do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Propose commands to the leader (`Raft::propose`, `Raft::propose_batch` with
    /// `--batch`; `POST /propose` in c).
    Write,
    /// Linearizable reads on the leader: ReadIndex, one heartbeat round confirming the
    /// reads that arrived together (`Raft::read`; `GET /applied` in c).
    Read,
    /// Reads on the leader served from its lease, without a round while the lease holds
    /// (`Raft::lease_read`; `GET /applied?lease` in c).
    LeaseRead,
    /// Linearizable reads on the followers (clients spread over both): each asks the
    /// leader for a confirmed read index, then reads its own state once it has applied it.
    FollowerRead,
}

impl Workload {
    /// `write`, `read`, `lease-read`, `follower-read`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::LeaseRead => "lease-read",
            Workload::FollowerRead => "follower-read",
        }
    }

    /// Whether the workload reads (its operations write no entries).
    pub fn reads(self) -> bool {
        self != Workload::Write
    }
}

/// What to run: every combination of configuration, workload, payload and client count,
/// in that order of nesting.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The configurations.
    pub setups: Vec<Setup>,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Commands per call of the write workload (1: `Raft::propose`; more:
    /// `Raft::propose_batch`, configurations a and b).
    pub batch: usize,
    /// Concurrent client counts.
    pub clients: Vec<usize>,
    /// Payload sizes in bytes.
    pub payloads: Vec<usize>,
    /// When each run's measured part ends.
    pub stop: Stop,
    /// Unmeasured load before each measured part.
    pub warmup: Duration,
    /// Where `results.json` and `plot.png` go (created if missing).
    pub out: PathBuf,
    /// Where the write-ahead logs of b and c go (a temporary directory per run, removed
    /// after it). It must be on the disk to measure: fsync on tmpfs costs nothing.
    pub data_dir: PathBuf,
    /// The runtime's `snapshot_every`.
    pub snapshot_every: u64,
    /// Whether every command goes through a client session.
    pub sessions: bool,
    /// Tokio worker threads of the process running a and b and c's clients (`None`: the
    /// default, one per CPU). Recorded in the report; the caller builds the runtime.
    pub worker_threads: Option<usize>,
    /// Run a and b in this process rather than in a fresh process per run. A fresh
    /// process gives each run its own peak memory and a clean allocator; this process is
    /// quicker to start and easier to profile.
    pub same_process: bool,
    /// The `raft-bench` executable, which runs c's nodes (`raft-bench node`) and, unless
    /// [`Plan::same_process`], each run of a and b. The binary passes itself; a cargo
    /// bench or test passes `env!("CARGO_BIN_EXE_raft-bench")`.
    pub exe: PathBuf,
}

impl Plan {
    /// The number of runs.
    pub fn runs(&self) -> usize {
        self.setups.len() * self.workloads.len() * self.clients.len() * self.payloads.len()
    }

    /// Checks that every run of the plan can be made, before any is.
    pub fn check(&self) -> Result<(), Error> {
        let batched_writes = self.batch != 1 && self.workloads.contains(&Workload::Write);
        if self.batch == 0 {
            return Err("--batch needs at least 1 command per call".into());
        }
        if batched_writes && self.setups.contains(&Setup::C) {
            return Err(
                "--batch is for configurations a and b: c's HTTP API proposes one command per request".into(),
            );
        }
        if batched_writes && self.sessions {
            return Err(
                "--batch and --sessions do not go together: a session proposes one command at a time".into(),
            );
        }
        Ok(())
    }
}

/// The JSON file, in [`Plan::out`].
pub const JSON_FILE: &str = "results.json";
/// The plot, in [`Plan::out`].
pub const PLOT_FILE: &str = "plot.png";

/// Counters summed over the cluster's nodes, read from their metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// The leader's commit index.
    committed: u64,
    /// fsyncs on the write path, all nodes.
    fsyncs: u64,
    /// Writes the log stores made durable, all nodes.
    log_writes: u64,
    /// Bytes sent between nodes, all nodes.
    wire_bytes: u64,
}

/// What the cluster's processes have used so far.
#[derive(Clone, Copy, Debug)]
struct Usage {
    /// CPU time of every process involved, clients included.
    cpu: Duration,
    /// The node processes' part of it, when they are separate processes.
    cpu_nodes: Option<Duration>,
    /// Memory of the nodes (and, in-process, of the clients).
    memory: usage::Memory,
}

/// A running cluster to measure.
trait Target {
    /// The client type the workload runs.
    type Client: Client;

    /// `n` clients doing `workload`, writes in batches of `batch` commands; an error if
    /// the configuration cannot run that.
    fn clients(&self, n: usize, workload: Workload, batch: usize) -> Result<Vec<Self::Client>, Error>;

    /// The nodes' counters now.
    fn counters(&self) -> impl Future<Output = Result<Counters, Error>>;

    /// CPU and memory used so far.
    fn usage(&self) -> Usage;

    /// Stops every node.
    fn shutdown(self) -> impl Future<Output = Result<(), Error>>;
}

/// Runs the plan, printing the table as it goes, and writes `results.json` and
/// `plot.png` into [`Plan::out`].
pub async fn run(plan: Plan) -> Result<Report, Error> {
    plan.check()?;
    usage::raise_open_files_limit();
    std::fs::create_dir_all(&plan.out)?;
    std::fs::create_dir_all(&plan.data_dir)?;
    let mut report = Report {
        tool: format!("raft-bench {}", env!("CARGO_PKG_VERSION")),
        started_unix_seconds: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: report::Machine {
            cpus: usage::cpus(),
            kernel: kernel(),
            load_average_before: usage::load_average(),
            load_average_after: None,
        },
        settings: report::Settings {
            duration_seconds: match plan.stop {
                Stop::After(d) => Some(d.as_secs_f64()),
                Stop::Ops { .. } => None,
            },
            ops_per_run: match plan.stop {
                Stop::Ops { count, .. } => Some(count),
                Stop::After(_) => None,
            },
            warmup_seconds: plan.warmup.as_secs_f64(),
            snapshot_every: plan.snapshot_every,
            sessions: plan.sessions,
            batch: plan.batch,
            worker_threads: plan.worker_threads,
            data_dir: plan.data_dir.display().to_string(),
            same_process: plan.same_process,
        },
        runs: Vec::new(),
    };
    let load = report.machine.load_average_before.map_or("?".to_string(), |l| {
        format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
    });
    println!(
        "raft-bench: {} runs, {} CPUs, load average {load}{}",
        plan.runs(),
        report.machine.cpus,
        if plan.sessions {
            ", every command in a client session"
        } else {
            ""
        }
    );
    for setup in &plan.setups {
        println!("  {}: {}", setup.name(), setup.description());
    }
    println!();
    println!("{}", report::header());
    let json = plan.out.join(JSON_FILE);
    let mut n = 0;
    for &setup in &plan.setups {
        for &workload in &plan.workloads {
            for &payload in &plan.payloads {
                for &clients in &plan.clients {
                    n += 1;
                    let spec = Spec::new(setup, workload, clients, payload);
                    let bar = progress_bar(&format!(
                        "[{n}/{}] {} {} {clients:>4} clients {:>6}",
                        plan.runs(),
                        setup.name(),
                        workload.name(),
                        report::bytes(payload)
                    ));
                    let run = if setup == Setup::C || plan.same_process {
                        run_one(spec, &plan, &bar).await
                    } else {
                        run_in_child(spec, &plan, &bar).await
                    };
                    bar.finish_and_clear();
                    let run = run.map_err(|e| {
                        format!("{} {} with {clients} clients: {e}", setup.name(), workload.name())
                    })?;
                    println!("{}", report::row(&run));
                    if let Some(growth) = run.memory_growth() {
                        println!(
                            "    peak memory {:.1} MiB, {:.2}x the first minute's {:.1} MiB",
                            mib(run.peak_memory_bytes),
                            growth,
                            mib(run.peak_memory_first_minute_bytes.unwrap_or(0))
                        );
                    }
                    for (reason, count) in &run.rejected_by_reason {
                        println!("    {count} refused and sent again: {reason}");
                    }
                    if let Some(error) = &run.first_error {
                        println!("    {} failed; the first: {error}", run.failed);
                    }
                    report.runs.push(run);
                    report.machine.load_average_after = usage::load_average();
                    // After every run, so that an interrupted benchmark keeps what it measured.
                    report::write_json(&report, &json)?;
                }
            }
        }
    }
    let png = plan.out.join(PLOT_FILE);
    plot::write_png(&report.runs, &png)?;
    println!();
    println!("figures: {}", json.display());
    println!("plot:    {}", png.display());
    Ok(report)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn kernel() -> String {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/sys/kernel/{f}")).unwrap_or_default();
    format!("{} {}", read("ostype").trim(), read("osrelease").trim())
}

/// A progress bar on stderr (hidden when stderr is not a terminal: then one line per run
/// says which run is starting).
fn progress_bar(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{prefix} {spinner} {wide_bar} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    if bar.is_hidden() {
        eprintln!("{prefix} ...");
    }
    bar
}

/// The hidden option of `raft-bench` that makes it a child running one run of a plan
/// and writing the run's figures as JSON to the file it names.
pub const CHILD_FLAG: &str = "--child-run-json";

/// Runs the one run of `plan` in this process and writes its figures to `json` (what a
/// child started by `run_in_child` does).
pub async fn run_as_child(plan: Plan, json: &std::path::Path) -> Result<(), Error> {
    let (&[setup], &[workload], &[clients], &[payload]) = (
        &plan.setups[..],
        &plan.workloads[..],
        &plan.clients[..],
        &plan.payloads[..],
    ) else {
        return Err(format!(
            "{CHILD_FLAG} runs exactly one configuration, workload, client count and payload"
        )
        .into());
    };
    plan.check()?;
    std::fs::create_dir_all(&plan.data_dir)?;
    let spec = Spec::new(setup, workload, clients, payload);
    let run = run_one(spec, &plan, &ProgressBar::hidden()).await?;
    std::fs::write(json, serde_json::to_vec(&run)?)?;
    Ok(())
}

/// Runs one run of configuration a or b in a fresh `raft-bench` process (this executable),
/// so that its peak memory and its allocator are its own, and reads back its figures.
async fn run_in_child(spec: Spec, plan: &Plan, bar: &ProgressBar) -> Result<Run, Error> {
    let json = tempfile::Builder::new()
        .prefix("run-")
        .suffix(".json")
        .tempfile_in(&plan.data_dir)?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut command = std::process::Command::new(&plan.exe);
    command
        .args(["--configs", spec.setup.name()])
        .args(["--workloads", spec.workload.name()])
        .args(["--batch", &plan.batch.to_string()])
        .args(["--clients", &spec.clients.to_string()])
        .args(["--payloads", &spec.payload.to_string()])
        .args(["--warmup", &ms(plan.warmup)])
        .args(["--snapshot-every", &plan.snapshot_every.to_string()])
        .args(plan.sessions.then_some("--sessions"))
        .args(
            plan.worker_threads
                .map(|n| ["--worker-threads".to_string(), n.to_string()])
                .into_iter()
                .flatten(),
        )
        .arg("--data-dir")
        .arg(&plan.data_dir)
        .arg(CHILD_FLAG)
        .arg(json.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let length = match plan.stop {
        Stop::After(d) => {
            command.args(["--duration", &ms(d)]);
            d
        }
        Stop::Ops { count, limit } => {
            command
                .args(["--ops", &count.to_string()])
                .args(["--time-limit", &ms(limit)]);
            limit
        }
    };
    raft_testkit::process::die_with_parent(&mut command);
    let started = Instant::now();
    let mut child = ChildProcess(command.spawn()?);
    bar.set_length(length.as_millis() as u64);
    bar.set_message("running in its own process");
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        let elapsed = started.elapsed().saturating_sub(plan.warmup);
        bar.set_position(elapsed.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !status.success() {
        return Err(format!("its process failed ({status})").into());
    }
    Ok(serde_json::from_slice(&std::fs::read(json.path())?)?)
}

/// A child process, killed and reaped if still running when dropped.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One run's place in the plan.
#[derive(Clone, Copy, Debug)]
struct Spec {
    setup: Setup,
    workload: Workload,
    clients: usize,
    payload: usize,
    load_average: Option<[f64; 3]>,
}

impl Spec {
    /// A run's place; the load average is read when it starts.
    fn new(setup: Setup, workload: Workload, clients: usize, payload: usize) -> Spec {
        Spec {
            setup,
            workload,
            clients,
            payload,
            load_average: None,
        }
    }
}

/// Starts the cluster for one run, measures, and stops it (also when measuring failed).
async fn run_one(mut spec: Spec, plan: &Plan, bar: &ProgressBar) -> Result<Run, Error> {
    bar.set_message("starting the cluster");
    spec.load_average = usage::load_average();
    let Spec {
        setup,
        clients,
        payload,
        ..
    } = spec;
    // The peak of this run, not of an earlier one (for a and b, which run in-process).
    usage::reset_peak();
    let every = plan.snapshot_every;
    let sessions = plan.sessions;
    // A payload of 0 bytes is no payload at all: the command is `()`.
    match (setup, payload) {
        (Setup::A, 0) => {
            let cluster = InProcess::<(), _>::start_in_memory(payload, every, sessions).await?;
            measure(cluster, spec, plan, bar).await
        }
        (Setup::A, _) => {
            let cluster = InProcess::<Bytes, _>::start_in_memory(payload, every, sessions).await?;
            measure(cluster, spec, plan, bar).await
        }
        (Setup::B, 0) => {
            let cluster = InProcess::<(), _>::start_durable(payload, every, sessions, &plan.data_dir).await?;
            measure(cluster, spec, plan, bar).await
        }
        (Setup::B, _) => {
            let cluster =
                InProcess::<Bytes, _>::start_durable(payload, every, sessions, &plan.data_dir).await?;
            measure(cluster, spec, plan, bar).await
        }
        (Setup::C, _) => {
            let cluster =
                procs::Processes::start(&plan.exe, payload, clients, every, sessions, &plan.data_dir).await?;
            measure(cluster, spec, plan, bar).await
        }
    }
}

/// Measures `target` as `spec` says, then shuts it down.
async fn measure<T: Target>(target: T, spec: Spec, plan: &Plan, bar: &ProgressBar) -> Result<Run, Error> {
    let measured = measure_running(&target, spec, plan, bar).await;
    bar.set_message("stopping the cluster");
    let stopped = target.shutdown().await;
    let run = measured?;
    stopped?;
    Ok(run)
}

async fn measure_running<T: Target>(
    target: &T,
    spec: Spec,
    plan: &Plan,
    bar: &ProgressBar,
) -> Result<Run, Error> {
    let clients = target.clients(spec.clients, spec.workload, plan.batch)?;
    let load = Load::start(clients, plan.warmup, plan.stop);
    let progress = load.progress();
    let from = load.measured_from();
    let until = load.deadline();
    bar.set_message("warming up");
    tokio::time::sleep_until(from).await;

    let before = target.counters().await?;
    let usage_before = target.usage();
    let busy_before = usage::machine_busy();
    let (length, by_ops) = match plan.stop {
        Stop::After(d) => (d.as_millis() as u64, false),
        Stop::Ops { count, .. } => (count, true),
    };
    bar.set_length(length);
    let mut samples = Vec::new();
    let mut next_sample = from + Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let finish = load.finish();
    tokio::pin!(finish);
    let measured = loop {
        tokio::select! {
            measured = &mut finish => break measured,
            _ = tick.tick() => {
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(from);
                let done = progress.completed();
                bar.set_position(if by_ops { done } else { elapsed.as_millis() as u64 });
                let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
                let left = until.saturating_duration_since(now).as_secs_f64();
                bar.set_message(format!("{} ops/s, {left:.0} s left", report::thousands(rate as u64)));
                if now >= next_sample {
                    let usage = target.usage();
                    samples.push(Sample {
                        seconds: elapsed.as_secs_f64(),
                        ops: done,
                        rss_bytes: usage.memory.rss,
                        peak_bytes: usage.memory.peak,
                    });
                    next_sample += Duration::from_secs(1);
                }
            }
        }
    };
    let usage_after = target.usage();
    let busy = usage::machine_busy().saturating_sub(busy_before).as_secs_f64();
    // The nodes publish their counters on every tick (20 ms by default): wait for the
    // last ones of the measured part.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = target.counters().await?;

    let entries = after.committed.saturating_sub(before.committed);
    let fsyncs = after.fsyncs.saturating_sub(before.fsyncs);
    let log_writes = after.log_writes.saturating_sub(before.log_writes);
    let wire_bytes = after.wire_bytes.saturating_sub(before.wire_bytes);
    let per_entry = |n: u64| (entries > 0).then(|| n as f64 / entries as f64);
    let cpu = usage_after.cpu.saturating_sub(usage_before.cpu).as_secs_f64();
    let cpu_nodes = match (usage_before.cpu_nodes, usage_after.cpu_nodes) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b).as_secs_f64()),
        _ => None,
    };
    let first_minute = samples.iter().find(|s| s.seconds >= 60.0).map(|s| s.peak_bytes);
    Ok(Run {
        config: spec.setup,
        description: spec.setup.description().to_string(),
        workload: spec.workload,
        batch: if spec.workload == Workload::Write {
            plan.batch
        } else {
            1
        },
        clients: spec.clients,
        payload_bytes: spec.payload,
        ops: measured.ops,
        seconds: measured.seconds,
        ops_per_second: measured.ops as f64 / measured.seconds.max(1e-9),
        latency_us: report::Latency::from_nanos(&measured.latencies),
        rejected: measured.rejected.values().sum(),
        rejected_by_reason: measured.rejected,
        failed: measured.failed,
        first_error: measured.first_error,
        entries_committed: entries,
        fsyncs,
        fsyncs_per_entry: per_entry(fsyncs),
        log_writes,
        log_writes_per_entry: per_entry(log_writes),
        wire_bytes,
        wire_bytes_per_entry: per_entry(wire_bytes),
        cpu_seconds: cpu,
        cpu_seconds_nodes: cpu_nodes,
        cpu_seconds_per_1k_ops: if measured.ops > 0 {
            cpu * 1000.0 / measured.ops as f64
        } else {
            0.0
        },
        peak_memory_bytes: usage_after.memory.peak,
        peak_memory_first_minute_bytes: first_minute,
        load_average: spec.load_average,
        other_cpu_seconds: (busy - cpu).max(0.0),
        other_cpu_share: (busy - cpu).max(0.0) / (measured.seconds.max(1e-9) * usage::cpus() as f64),
        samples,
    })
}
