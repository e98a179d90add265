//! `raft-bench kv-catchup`: a key-value cluster holding a state of real size, and what it
//! costs to bring a new node up to it by a snapshot.
//!
//! Three `kv node` processes (the `kv` example's binary) on 127.0.0.1 under a temporary
//! directory. The leader is loaded with `--keys` keys of `--value-size` bytes over many
//! kept-alive HTTP/1 connections, and written to until its snapshot covers the whole load.
//! Then, under a steady write load of `--clients` clients (`PUT` of `--value-size` bytes to
//! random keys):
//!
//! 1. the baseline: `--secs` of that load with no snapshot moving;
//! 2. the catch-up: a fourth node started with `--join` and added (`kv add-node`); it gets
//!    the leader's snapshot, since the nodes keep no log behind their snapshots
//!    (`--log-kept-entries 0`) except, on the leader, the log after a snapshot it is
//!    sending (`--log-kept-mib`). Measured: the time from the add until the fourth node has
//!    installed the snapshot, the snapshot file's size and the rate; the time until it has
//!    also applied the log written meanwhile; and, over both, the growth of the sender's
//!    and the receiver's peak resident memory and the load;
//! 3. the restart: a follower stopped with SIGTERM and started again with the same
//!    arguments, timed until it answers and has applied up to the leader's commit index.
//!
//! Every figure is printed, none is asserted. Every process is stopped and the directory
//! removed at the end, also on error (the processes are killed when their handles drop,
//! and die with this process).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raft_testkit::process::{NodeProcess, Ports};
use serde::Deserialize;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::Error;
use crate::cli::{parse_duration, parse_size};
use crate::http1::{Connection, Response};
use crate::procs::send_once;
use crate::usage;
use crate::workload::{Client, Load, Measured, Outcome, Stop};

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nodes may take to start and agree on a leader.
const SETTLE: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How often the waits poll the nodes.
const POLL: Duration = Duration::from_millis(100);

/// Options of `raft-bench kv-catchup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keys to load before measuring.
    #[arg(long, default_value_t = 2_000_000)]
    pub keys: u64,
    /// Bytes of each value, loaded and written by the steady load (16, 100B, 1KiB).
    #[arg(long, default_value = "1KiB", value_parser = parse_size)]
    pub value_size: usize,
    /// Concurrent connections of the initial load.
    #[arg(long, default_value_t = 256)]
    pub load_clients: usize,
    /// Concurrent clients of the steady write load (baseline and during the catch-up).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long the baseline is measured (the load during the catch-up lasts as long as
    /// the catch-up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub secs: Duration,
    /// The nodes' --snapshot-every.
    #[arg(long, default_value_t = 200_000)]
    pub snapshot_every: u64,
    /// The nodes' --snapshot-log-percent: no snapshot before the log since the last one
    /// adds up to this share of its size.
    #[arg(long, default_value_t = 100)]
    pub snapshot_log_percent: u64,
    /// The nodes' --log-kept-mib: the log the leader keeps after a snapshot it is sending,
    /// so that the new node catches up from the log once it has installed it. Size it to the
    /// writes of a transfer (2 GiB at about 30 MiB/s under 2.5 MiB/s of writes: some 170
    /// MiB); less, and a snapshot taken meanwhile makes the new node install a second one.
    #[arg(long, default_value_t = 256)]
    pub log_kept_mib: u64,
    /// Run the new node at this CPU niceness (`nice -n`, 0 to 19). All four nodes share
    /// this machine's cores, where in a deployment the new node has its own: a positive
    /// value lets it use only what the cluster leaves idle, to show what sending the
    /// snapshot costs the cluster apart from what receiving it costs the machine.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub receiver_nice: u8,
    /// The `kv` binary. Default: $KV_BIN, else `kv` next to this executable (build it with
    /// `cargo build --release -p kv`).
    #[arg(long)]
    pub kv_bin: Option<PathBuf>,
    /// Where to make the temporary directory of the nodes' data (default: the system's
    /// temporary directory). It needs about 4 nodes x 2 x the loaded bytes.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The longest each phase may take (the load, the snapshot, the catch-up, the
    /// restart) before the run gives up.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A node's `GET /status`, the fields used here.
#[derive(Debug, Deserialize)]
struct Status {
    role: String,
    leader: Option<u64>,
    commit: u64,
    applied: u64,
    snapshot_index: u64,
}

/// One `kv node` process.
struct KvNode {
    id: u64,
    raft: SocketAddr,
    http: SocketAddr,
    data: PathBuf,
    process: NodeProcess,
}

/// CPU time used so far by each node (by id) and by this process (the load), and when.
struct CpuMark {
    at: Instant,
    nodes: Vec<(u64, Duration)>,
    load: Duration,
}

impl CpuMark {
    fn take(nodes: &[KvNode]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            nodes: nodes
                .iter()
                .filter_map(|n| n.process.pid().map(|pid| (n.id, usage::process_cpu(pid))))
                .collect(),
            load: usage::self_cpu(),
        }
    }

    /// Cores kept busy between `self` and `later`, by node and by the load: "node 1 0.62,
    /// ..., load 0.31".
    fn busy_until(&self, later: &CpuMark) -> String {
        let secs = (later.at - self.at).as_secs_f64().max(1e-9);
        let mut parts: Vec<String> = later
            .nodes
            .iter()
            .map(|&(id, cpu)| {
                let before = self
                    .nodes
                    .iter()
                    .find(|&&(i, _)| i == id)
                    .map_or(Duration::ZERO, |&(_, c)| c);
                format!("node {id} {:.2}", cpu.saturating_sub(before).as_secs_f64() / secs)
            })
            .collect();
        parts.push(format!(
            "load {:.2}",
            later.load.saturating_sub(self.load).as_secs_f64() / secs
        ));
        parts.join(", ")
    }
}

impl KvNode {
    fn pid(&self) -> Result<u32, Error> {
        self.process
            .pid()
            .ok_or_else(|| format!("kv node {} is not running", self.id).into())
    }

    /// Fails with the end of its log if the process has exited.
    fn check_alive(&mut self) -> Result<(), Error> {
        match self.process.try_wait() {
            Some(status) => Err(format!(
                "kv node {} exited ({status}):\n{}",
                self.id,
                self.process.log_tail(20)
            )
            .into()),
            None => Ok(()),
        }
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: Args) -> Result<(), Error> {
    if args.keys == 0 || args.clients == 0 || args.load_clients == 0 || args.value_size == 0 {
        return Err("--keys, --clients, --load-clients and --value-size must be positive".into());
    }
    if args.secs.is_zero() {
        return Err("--secs must be positive".into());
    }
    let kv = kv_binary(args.kv_bin.clone())?;
    usage::raise_open_files_limit();
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("kv-catchup-")
        .tempdir_in(&parent)?;
    let result = measure(&args, &kv, &dir).await;
    // The nodes are stopped (or killed) inside; the directory goes now, also on error.
    drop(dir);
    let figures = result?;
    figures.print(&args);
    Ok(())
}

fn kv_binary(arg: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(path) = arg.or_else(|| std::env::var_os("KV_BIN").map(PathBuf::from)) {
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let next_to = exe.with_file_name("kv");
    if next_to.is_file() {
        Ok(next_to)
    } else {
        Err(format!(
            "no kv binary at {}: build it (`cargo build --release -p kv`), or pass --kv-bin or set KV_BIN",
            next_to.display()
        )
        .into())
    }
}

/// Everything measured.
#[derive(Debug, Default)]
struct Figures {
    load_keys: u64,
    load_seconds: f64,
    load_failed: u64,
    topup_writes: u64,
    snapshot_index: u64,
    snapshot_wait_seconds: f64,
    baseline: Option<Measured>,
    baseline_snapshots_taken: u64,
    baseline_cpu: String,
    catchup_cpu: String,
    snapshot_bytes: u64,
    catchup_seconds: f64,
    caught_up_seconds: f64,
    catchup: Option<Measured>,
    catchup_snapshots_taken: u64,
    add_node_seconds: f64,
    receiver_installs: u64,
    sender_rss_before: u64,
    sender_peak_after: u64,
    receiver_rss_before: u64,
    receiver_peak_after: u64,
    stop_seconds: f64,
    restart_answer_seconds: f64,
    restart_seconds: f64,
    restart_applied_at_start: u64,
    restart_target: u64,
}

async fn measure(args: &Args, kv: &Path, dir: &TempDir) -> Result<Figures, Error> {
    let mut f = Figures::default();
    let certs = dir.path().join("certs");
    let out = std::process::Command::new(kv)
        .args(["certs", "--nodes", "1,2,3,4", "--out"])
        .arg(&certs)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", kv.display()))?;
    if !out.status.success() {
        return Err(format!("kv certs failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }

    let mut ports = Ports::new();
    let mut raft = Vec::new();
    let mut http = Vec::new();
    for _ in 0..4 {
        raft.push(ports.udp()?);
        http.push(ports.tcp()?);
    }
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let peers = list(&raft[..3]);
    let peers_http = list(&http[..3]);
    let node_args = |id: u64, data: &Path, join: bool| {
        let i = id as usize - 1;
        let mut a: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            id.to_string(),
            "--raft-addr".into(),
            raft[i].to_string(),
            "--http-addr".into(),
            http[i].to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--certs".into(),
            certs.display().to_string(),
            "--peers".into(),
            peers.clone(),
            "--snapshot-every".into(),
            args.snapshot_every.to_string(),
            "--snapshot-log-percent".into(),
            args.snapshot_log_percent.to_string(),
            "--log-kept-entries".into(),
            "0".into(),
            "--log-kept-mib".into(),
            args.log_kept_mib.to_string(),
            "--http-max-connections".into(),
            (args.load_clients.max(args.clients) + 64).to_string(),
        ];
        if join {
            a.push("--join".into());
        } else {
            a.push("--peers-http".into());
            a.push(peers_http.clone());
        }
        a
    };
    let start = |id: u64, join: bool| -> Result<KvNode, Error> {
        let data = dir.path().join(format!("node-{id}"));
        let log = dir.path().join(format!("node-{id}.log"));
        let (program, mut argv) = if join && args.receiver_nice > 0 {
            // `nice` runs the node in its own process (the pid stays the node's).
            let nice = vec![
                "-n".to_string(),
                args.receiver_nice.to_string(),
                kv.display().to_string(),
            ];
            (PathBuf::from("nice"), nice)
        } else {
            (kv.to_path_buf(), Vec::new())
        };
        argv.extend(node_args(id, &data, join));
        let process = NodeProcess::start(program, argv, log, "warn")?;
        Ok(KvNode {
            id,
            raft: raft[id as usize - 1],
            http: http[id as usize - 1],
            data,
            process,
        })
    };
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(id, false)?);
    }
    let result = phases(args, kv, &certs, &mut nodes, &start, &mut f).await;
    // Stop every node, gently first; whatever is left is killed when dropped.
    for node in &mut nodes {
        if node.process.terminate_within(STOP_GRACE).await.is_none() {
            node.process.kill();
        }
    }
    result.map(|()| f)
}

async fn phases(
    args: &Args,
    kv: &Path,
    certs: &Path,
    nodes: &mut Vec<KvNode>,
    start: &impl Fn(u64, bool) -> Result<KvNode, Error>,
    f: &mut Figures,
) -> Result<(), Error> {
    let leader_id = agreed_leader(nodes).await?;
    let leader = nodes.iter().position(|n| n.id == leader_id).expect("a member");
    let leader_http = nodes[leader].http;
    let value: Arc<[u8]> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into();

    // The load: every key once.
    eprintln!(
        "kv-catchup: loading {} keys of {} B through node {leader_id} with {} connections",
        args.keys, args.value_size, args.load_clients
    );
    let next = Arc::new(AtomicU64::new(0));
    let clients = (0..args.load_clients)
        .map(|_| PutClient::new(leader_http, Keys::Sequential(next.clone()), value.clone()))
        .collect();
    let load = Load::start(
        clients,
        Duration::ZERO,
        Stop::Ops {
            count: args.keys,
            limit: args.timeout,
        },
    );
    let progress = load.progress();
    let total = args.keys;
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            eprintln!("kv-catchup: {} of {total} keys loaded", progress.completed());
        }
    });
    let loaded = load.finish().await;
    ticker.abort();
    if loaded.ops < args.keys {
        return Err(format!(
            "the load wrote {} of {} keys within {:?} ({} failed; first error: {:?})",
            loaded.ops, args.keys, args.timeout, loaded.failed, loaded.first_error
        )
        .into());
    }
    f.load_keys = loaded.ops;
    f.load_seconds = loaded.seconds;
    f.load_failed = loaded.failed;

    // Write until the leader's snapshot covers the load.
    let waited = Instant::now();
    let target = status(leader_http).await?.commit;
    let deadline = Instant::now() + args.timeout;
    loop {
        let s = status(leader_http).await?;
        if s.snapshot_index >= target {
            f.snapshot_index = s.snapshot_index;
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the leader's snapshot did not reach index {target} within {:?} (it is at {})",
                args.timeout, s.snapshot_index
            )
            .into());
        }
        nodes[leader].check_alive()?;
        // Overwrites of loaded keys: they add to the log, not to the state.
        let m = random_load(
            args,
            leader_http,
            &value,
            args.load_clients,
            Duration::ZERO,
            Stop::After(Duration::from_secs(1)),
        )
        .finish()
        .await;
        f.topup_writes += m.ops;
    }
    f.snapshot_wait_seconds = waited.elapsed().as_secs_f64();
    eprintln!(
        "kv-catchup: loaded in {:.1} s; the leader's snapshot covers index {} after {} more writes",
        f.load_seconds, f.snapshot_index, f.topup_writes
    );

    // The baseline.
    let taken = metric(leader_http, "raft_snapshots_taken").await?;
    let cpu_before = CpuMark::take(nodes);
    let baseline = random_load(
        args,
        leader_http,
        &value,
        args.clients,
        Duration::from_secs(1),
        Stop::After(args.secs),
    )
    .finish()
    .await;
    f.baseline_cpu = cpu_before.busy_until(&CpuMark::take(nodes));
    f.baseline_snapshots_taken = metric(leader_http, "raft_snapshots_taken").await? - taken;
    f.baseline = Some(baseline);

    // The catch-up.
    eprintln!("kv-catchup: baseline done; starting node 4 and adding it");
    nodes.push(start(4, true)?);
    let joiner = nodes.len() - 1;
    let joiner_http = nodes[joiner].http;
    let joiner_raft = nodes[joiner].raft;
    let answer_by = Instant::now() + SETTLE;
    while status(joiner_http).await.is_err() {
        nodes[joiner].check_alive()?;
        if Instant::now() >= answer_by {
            return Err(format!("node 4 did not answer /status within {SETTLE:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
    f.receiver_rss_before = usage::memory(Some(nodes[joiner].pid()?)).rss;
    let load = random_load(
        args,
        leader_http,
        &value,
        args.clients,
        Duration::from_secs(1),
        Stop::After(args.timeout),
    );
    tokio::time::sleep_until(load.measured_from()).await;
    let taken = metric(leader_http, "raft_snapshots_taken").await?;
    let leader_pid = nodes[leader].pid()?;
    f.sender_rss_before = usage::memory(Some(leader_pid)).rss;
    let snapshot_at_add = status(leader_http).await?.snapshot_index;
    f.snapshot_bytes = largest_snapshot_file(&nodes[leader].data);
    let added = Instant::now();
    let cpu_before = CpuMark::take(nodes);
    let add_args: Vec<String> = vec![
        "add-node".into(),
        "--cluster".into(),
        leader_http.to_string(),
        "--certs".into(),
        certs.display().to_string(),
        "--id".into(),
        "4".into(),
        "--raft-addr".into(),
        joiner_raft.to_string(),
        "--http-addr".into(),
        joiner_http.to_string(),
        "--timeout".into(),
        args.timeout.as_secs().max(1).to_string(),
    ];
    // A process like the nodes: its output in a log file, killed if this run ends first.
    let add_log = certs.with_file_name("add-node.log");
    let mut add = NodeProcess::start(kv, add_args, add_log, "warn")?;
    let mut add_done = None;
    let deadline = added + args.timeout;
    // First the snapshot's install, then the log written meanwhile, under the same load:
    // caught up once node 4 has applied what the leader had committed just before.
    let mut installed = None;
    let (installed, caught_up) = loop {
        if installed.is_none() {
            let installs = metric(joiner_http, "raft_snapshots_installed").await.unwrap_or(0);
            if installs >= 1
                && let Ok(s) = status(joiner_http).await
                && s.applied >= snapshot_at_add
            {
                installed = Some(added.elapsed());
            }
        }
        if let Some(at) = installed {
            let commit = status(leader_http).await?.commit;
            if let Ok(s) = status(joiner_http).await
                && s.applied >= commit
            {
                break (at, added.elapsed());
            }
        }
        if add_done.is_none()
            && let Some(status) = add.try_wait()
        {
            add_done = Some((status, added.elapsed()));
        }
        nodes[joiner].check_alive()?;
        nodes[leader].check_alive()?;
        if Instant::now() >= deadline {
            load.halt();
            let what = if installed.is_none() {
                "installed no snapshot"
            } else {
                "did not catch up with the leader's log"
            };
            return Err(format!("node 4 {what} within {:?}", args.timeout).into());
        }
        tokio::time::sleep(POLL).await;
    };
    load.halt();
    f.catchup_cpu = cpu_before.busy_until(&CpuMark::take(nodes));
    f.caught_up_seconds = caught_up.as_secs_f64();
    f.catchup_seconds = installed.as_secs_f64();
    f.sender_peak_after = usage::memory(Some(leader_pid)).peak;
    f.receiver_peak_after = usage::memory(Some(nodes[joiner].pid()?)).peak;
    f.catchup = Some(load.finish().await);
    f.catchup_snapshots_taken = metric(leader_http, "raft_snapshots_taken").await? - taken;
    let (add_status, took) = loop {
        if let Some(done) = add_done {
            break done;
        }
        if let Some(status) = add.try_wait() {
            break (status, added.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(format!("kv add-node did not finish within {:?}", args.timeout).into());
        }
        tokio::time::sleep(POLL).await;
    };
    if !add_status.success() {
        return Err(format!("kv add-node failed ({add_status}):\n{}", add.log_tail(20)).into());
    }
    f.add_node_seconds = took.as_secs_f64();
    f.receiver_installs = metric(joiner_http, "raft_snapshots_installed").await?;
    eprintln!(
        "kv-catchup: node 4 installed the snapshot in {:.1} s and caught up in {:.1} s; restarting a follower",
        f.catchup_seconds, f.caught_up_seconds
    );

    // The restart of a follower that holds the whole state.
    let follower = nodes
        .iter()
        .position(|n| n.id != leader_id && n.id != 4)
        .expect("two followers");
    let follower_http = nodes[follower].http;
    let stopping = Instant::now();
    if nodes[follower]
        .process
        .terminate_within(STOP_GRACE)
        .await
        .is_none()
    {
        return Err(format!("node {} did not stop within {STOP_GRACE:?}", nodes[follower].id).into());
    }
    f.stop_seconds = stopping.elapsed().as_secs_f64();
    f.restart_target = status(leader_http).await?.commit;
    let restarted = Instant::now();
    nodes[follower].process.restart()?;
    let deadline = restarted + args.timeout;
    loop {
        if let Ok(s) = status(follower_http).await {
            if f.restart_answer_seconds == 0.0 {
                f.restart_answer_seconds = restarted.elapsed().as_secs_f64();
                f.restart_applied_at_start = s.applied;
            }
            if s.applied >= f.restart_target {
                f.restart_seconds = restarted.elapsed().as_secs_f64();
                break;
            }
        }
        nodes[follower].check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "the restarted follower did not catch up within {:?}",
                args.timeout
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `clients` clients writing `value` to random keys among the loaded ones.
fn random_load(
    args: &Args,
    leader: SocketAddr,
    value: &Arc<[u8]>,
    clients: usize,
    warmup: Duration,
    stop: Stop,
) -> Load {
    let clients = (0..clients)
        .map(|i| {
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1);
            PutClient::new(
                leader,
                Keys::Random {
                    state: seed | 1,
                    keys: args.keys,
                },
                value.clone(),
            )
        })
        .collect();
    Load::start(clients, warmup, stop)
}

/// The time the nodes agree on a leader that says it leads; its id.
async fn agreed_leader(nodes: &mut [KvNode]) -> Result<u64, Error> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut views = Vec::new();
        for node in nodes.iter_mut() {
            node.check_alive()?;
            views.push(status(node.http).await.ok());
        }
        if let Some(Some(first)) = views.first()
            && let Some(leader) = first.leader
            && views
                .iter()
                .all(|v| v.as_ref().is_some_and(|v| v.leader == Some(leader)))
            && views
                .iter()
                .flatten()
                .zip(nodes.iter())
                .any(|(v, n)| n.id == leader && v.role == "leader")
        {
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            return Err(format!("the kv nodes agreed on no leader within {SETTLE:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<Response, Error> {
    let mut connection = Connection::get(addr, path);
    let response = tokio::time::timeout(REQUEST_TIMEOUT, connection.send())
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    if response.status != 200 {
        return Err(format!(
            "GET http://{addr}{path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
        .into());
    }
    Ok(response)
}

async fn status(addr: SocketAddr) -> Result<Status, Error> {
    Ok(serde_json::from_slice(&get(addr, "/status").await?.body)?)
}

/// The value of the sample `name` (a counter may carry `_total`) in a node's /metrics.
async fn metric(addr: SocketAddr, name: &str) -> Result<u64, Error> {
    let text = String::from_utf8(get(addr, "/metrics").await?.body)?;
    sample(&text, name).ok_or_else(|| format!("no {name} in http://{addr}/metrics").into())
}

fn sample(text: &str, name: &str) -> Option<u64> {
    let total = format!("{name}_total");
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name || key == total).then(|| value.trim().parse::<f64>().ok().map(|v| v as u64))?
    })
}

/// The size of the largest snapshot file (`*.snap`) under `dir`, 0 if none.
fn largest_snapshot_file(dir: &Path) -> u64 {
    let mut largest = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "snap") {
                largest = largest.max(meta.len());
            }
        }
    }
    largest
}

/// Which key a [`PutClient`] writes next.
enum Keys {
    /// The next of a count shared by all clients: each key once.
    Sequential(Arc<AtomicU64>),
    /// A random one of the `keys` loaded (xorshift).
    Random { state: u64, keys: u64 },
}

impl Keys {
    fn next(&mut self) -> u64 {
        match self {
            Keys::Sequential(next) => next.fetch_add(1, Ordering::Relaxed),
            Keys::Random { state, keys } => {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state % *keys
            }
        }
    }
}

/// A client that sends `PUT /kv/{key}` with the value as the body, on a kept-alive
/// connection of its own; a refused write is sent again to the same key.
struct PutClient {
    connection: Connection,
    keys: Keys,
    value: Arc<[u8]>,
    pending: bool,
    addr: SocketAddr,
}

impl PutClient {
    fn new(addr: SocketAddr, keys: Keys, value: Arc<[u8]>) -> PutClient {
        PutClient {
            connection: Connection::put(addr, "/kv/none", &[]),
            keys,
            value,
            pending: false,
            addr,
        }
    }
}

fn key_path(key: u64) -> String {
    format!("/kv/k{key:010}")
}

impl Client for PutClient {
    async fn call(&mut self) -> Outcome {
        if !self.pending {
            let key = self.keys.next();
            self.connection.set_put(&key_path(key), &self.value);
            self.pending = true;
        }
        let addr = self.addr;
        let outcome = send_once(&mut self.connection, || format!("PUT http://{addr}/kv")).await;
        if !matches!(outcome, Outcome::Rejected(_)) {
            self.pending = false;
        }
        outcome
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn ops_line(m: &Measured) -> String {
    let ops = if m.seconds > 0.0 {
        m.ops as f64 / m.seconds
    } else {
        0.0
    };
    let ms = |q: f64| m.latencies.value_at_quantile(q) as f64 / 1e6;
    format!(
        "{ops:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms ({} writes in {:.1} s, {} failed)",
        ms(0.5),
        ms(0.99),
        m.ops,
        m.seconds,
        m.failed
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

impl Figures {
    fn print(&self, args: &Args) {
        let bytes = self.load_keys * args.value_size as u64;
        println!(
            "kv-catchup: 3 kv nodes + 1 joining{}, 127.0.0.1, {} CPUs",
            if args.receiver_nice > 0 {
                format!(" (at nice {})", args.receiver_nice)
            } else {
                String::new()
            },
            usage::cpus()
        );
        println!(
            "load                 {} keys x {} B = {:.1} MiB in {:.1} s: {:.0} keys/s, {:.1} MiB/s ({} connections, {} failed)",
            self.load_keys,
            args.value_size,
            mib(bytes),
            self.load_seconds,
            self.load_keys as f64 / self.load_seconds.max(1e-9),
            mib(bytes) / self.load_seconds.max(1e-9),
            args.load_clients,
            self.load_failed
        );
        println!(
            "snapshot             index {} covers the load after {} more writes, {:.1} s; file {:.1} MiB",
            self.snapshot_index,
            self.topup_writes,
            self.snapshot_wait_seconds,
            mib(self.snapshot_bytes)
        );
        if let Some(b) = &self.baseline {
            println!(
                "baseline             {} ({} clients; leader snapshots taken meanwhile: {})",
                ops_line(b),
                args.clients,
                self.baseline_snapshots_taken
            );
        }
        println!(
            "catch-up             snapshot installed on node 4 {:.1} s after the add: {:.1} MiB/s; add-node returned after {:.1} s",
            self.catchup_seconds,
            mib(self.snapshot_bytes) / self.catchup_seconds.max(1e-9),
            self.add_node_seconds
        );
        println!(
            "receiver installs    snapshots installed on node 4: {}; it caught up with the leader's log {:.1} s after the add",
            self.receiver_installs, self.caught_up_seconds
        );
        if let Some(c) = &self.catchup {
            println!(
                "during catch-up      {} (leader snapshots taken meanwhile: {})",
                ops_line(c),
                self.catchup_snapshots_taken
            );
            if let Some(b) = &self.baseline {
                let rate = |m: &Measured| m.ops as f64 / m.seconds.max(1e-9);
                println!(
                    "vs baseline          throughput {:+.1}% (target: within 20%)",
                    (rate(c) / rate(b).max(1e-9) - 1.0) * 100.0
                );
            }
        }
        println!(
            "cores busy           baseline: {}; catch-up: {}",
            self.baseline_cpu, self.catchup_cpu
        );
        println!(
            "sender memory        leader peak RSS {:.1} MiB, {:+.1} MiB over its RSS before the add (target: < 128 MiB)",
            mib(self.sender_peak_after),
            mib(self.sender_peak_after) - mib(self.sender_rss_before)
        );
        println!(
            "receiver memory      node 4 peak RSS {:.1} MiB, {:+.1} MiB over its RSS before the add (target: < 128 MiB)",
            mib(self.receiver_peak_after),
            mib(self.receiver_peak_after) - mib(self.receiver_rss_before)
        );
        println!(
            "restart              follower stopped in {:.1} s; answered /status {:.2} s after its start (applied {}), caught up to commit {} in {:.2} s",
            self.stop_seconds,
            self.restart_answer_seconds,
            self.restart_applied_at_start,
            self.restart_target,
            self.restart_seconds
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_picks_keys_in_range() {
        let text = "# TYPE raft_snapshots_installed counter\nraft_snapshots_installed_total 2\nraft_snapshot_index 17\n";
        assert_eq!(sample(text, "raft_snapshots_installed"), Some(2));
        assert_eq!(sample(text, "raft_snapshot_index"), Some(17));
        assert_eq!(sample(text, "raft_snapshots_taken"), None);
        let mut keys = Keys::Random { state: 7, keys: 10 };
        assert!((0..1000).all(|_| keys.next() < 10));
        assert_eq!(key_path(42), "/kv/k0000000042");
    }
}
