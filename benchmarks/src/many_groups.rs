//! `raft-bench many-groups`: many Raft groups of the runtime in one process, each node of
//! a process sharing one transport ([`GroupMux`]), idle.
//!
//! Three processes' worth of nodes run in this one: three muxes (over the in-memory network,
//! or with `--quic` over three QUIC transports on loopback), each running one node of every
//! one of `--groups` groups, with the runtime's default settings (a 20 ms tick, or `--tick-ms`) and
//! quiescence after `--quiesce-after` ticks without requests (0: never). Groups are started
//! `--batch` at a time: each elects a leader and commits one command, and (with
//! quiescence) goes quiet on its three nodes before the next batch starts.
//!
//! Logs are in memory, or with `--wal` each process's nodes share one [`FileWal`] on disk
//! (in a temporary directory): one writer and one `fdatasync` per group commit for all the
//! process's groups.
//!
//! Measured: the resident memory the groups added, per group; this process's CPU over
//! `--idle-secs` seconds with every group idle, as a share of one core; the messages sent
//! meanwhile (per second, and per pair of processes per tick); then the latency of a
//! command to 1 % of the groups, one at a time (on quiet groups, the wake-up included).
//! With `--load-secs`, then `--clients` closed-loop clients propose for that long, each
//! going round its share of the groups: commands per second, their latency, and (with
//! `--wal`) `fdatasync`s per second and per command.
//!
//! Every figure is printed, none is asserted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_runtime::{Config, GroupHost, GroupMux, MemLogStore, MemNetwork, MemberInfo, NodeId, Raft};
use raft_storage_file::{FileWal, Options};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};

use crate::Error;
use crate::machine::Sink;
use crate::usage;

/// Options of `raft-bench many-groups`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Groups of three nodes.
    #[arg(long, default_value_t = 1_000)]
    pub groups: u64,
    /// Ticks without requests after which a group goes quiet; 0 never.
    #[arg(long, default_value_t = 10)]
    pub quiesce_after: u32,
    /// Seconds of idleness measured.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Groups started at a time.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Three QUIC transports on loopback instead of the in-memory network.
    #[arg(long)]
    pub quic: bool,
    /// Logs on disk: one write-ahead log per process, shared by all its groups (in a
    /// temporary directory under `--dir`, or the system's).
    #[arg(long)]
    pub wal: bool,
    /// Where `--wal` puts its logs.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Seconds of load after the idle measurement; 0 for none.
    #[arg(long, default_value_t = 0)]
    pub load_secs: u64,
    /// Closed-loop clients of the load, each with its share of the groups.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// The tick interval, in milliseconds (the runtime's default: 20). Elections and
    /// heartbeats are counted in ticks: a longer tick makes both slower, and costs less.
    #[arg(long, default_value_t = 20)]
    pub tick_ms: u64,
    /// Each process's nodes run on one task with one timer (a `GroupHost`) instead of a
    /// task and a timer each.
    #[arg(long)]
    pub host: bool,
}

type Node = Raft<Sink<Bytes>>;

const NODES: [NodeId; 3] = [1, 2, 3];
const WAIT: Duration = Duration::from_secs(60);

/// The three muxes and the members map every group bootstraps with.
async fn transports(quic: bool) -> Result<(Vec<GroupMux>, BTreeMap<NodeId, MemberInfo>), Error> {
    // Each group may take a quarter of a peer's queue and of the inbox's share of a peer.
    let (per_peer, per_group) = (4_096, 1_024);
    if !quic {
        let net = MemNetwork::new();
        let muxes = NODES
            .iter()
            .map(|&id| GroupMux::new(net.transport(id), per_peer, per_group))
            .collect();
        let members = NODES.iter().map(|&id| (id, format!("mem-{id}").into())).collect();
        return Ok((muxes, members));
    }
    let ca = DevCa::generate().map_err(|e| Error::from(format!("test CA: {e}")))?;
    let mut muxes = Vec::new();
    let mut members = BTreeMap::new();
    for id in NODES {
        let tls = ca
            .node_tls(id)
            .map_err(|e| Error::from(format!("certificate: {e}")))?;
        let mut config = QuicConfig::new(
            "127.0.0.1:0".parse().map_err(|e| Error::from(format!("{e}")))?,
            tls,
        );
        config.limits.peer_queue_capacity = 4_096;
        config.limits.peer_queue_group_share = 1_024;
        let transport = Arc::new(
            QuicTransport::bind(config)
                .await
                .map_err(|e| Error::from(format!("bind: {e}")))?,
        );
        members.insert(id, transport.local_addr().to_string().into());
        muxes.push(GroupMux::new(transport, per_peer, per_group));
    }
    Ok((muxes, members))
}

/// Proposes one command to `group` through its leader, retrying while it has none.
async fn propose(group: u64, nodes: &[Node; 3]) -> Result<(), Error> {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = nodes[0]
            .wait_for(WAIT, |m| m.leader.is_some())
            .await
            .map_err(|_| Error::from(format!("group {group} elected no leader")))?;
        let leader = m.leader.unwrap_or(1);
        let node = &nodes[(leader - 1) as usize];
        match node.propose(Bytes::from_static(b"x")).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_definitely_not_applied() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(Error::from(format!("group {group}: {e}"))),
        }
    }
}

fn sent(muxes: &[GroupMux]) -> u64 {
    muxes.iter().map(|m| m.metrics().messages_sent).sum()
}

fn fsyncs(wals: &[FileWal]) -> u64 {
    wals.iter().map(|w| w.metrics().fsyncs).sum()
}

/// What the load measured.
struct Load {
    commands: u64,
    latency: Histogram<u64>,
}

/// Elections won, in every group, since the start.
fn elections(groups: &[[Node; 3]]) -> u64 {
    groups
        .iter()
        .flatten()
        .map(|node| node.metrics().borrow().elections_won)
        .sum()
}

/// `clients` closed-loop clients propose for `secs`, client `k` going round the groups
/// `k`, `k + clients`, ... (all of them share the group when there is one).
async fn load(groups: &Arc<Vec<[Node; 3]>>, clients: usize, secs: u64) -> Result<Load, Error> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for k in 0..clients {
        let groups = groups.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| Error::from(format!("histogram: {e}")))?;
            let mine: Vec<usize> = (0..groups.len()).filter(|g| g % clients == k).collect();
            let mine = if mine.is_empty() {
                vec![k % groups.len()]
            } else {
                mine
            };
            let mut commands = 0u64;
            'run: loop {
                for &g in &mine {
                    if Instant::now() >= deadline {
                        break 'run;
                    }
                    let start = Instant::now();
                    propose(g as u64 + 1, &groups[g]).await?;
                    latency.saturating_record(start.elapsed().as_micros() as u64);
                    commands += 1;
                }
            }
            Ok::<_, Error>(Load { commands, latency })
        }));
    }
    let mut total = Load {
        commands: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| Error::from(format!("histogram: {e}")))?,
    };
    for task in tasks {
        let part = task
            .await
            .map_err(|e| Error::from(format!("a client failed: {e}")))??;
        total.commands += part.commands;
        total
            .latency
            .add(&part.latency)
            .map_err(|e| Error::from(format!("histogram: {e}")))?;
    }
    Ok(total)
}

/// Runs `raft-bench many-groups`.
pub async fn run(args: Args) -> Result<(), Error> {
    if args.groups == 0 || args.batch == 0 {
        return Err(Error::from("--groups and --batch must be at least 1"));
    }
    let before = usage::memory(None).rss;
    let (muxes, members) = transports(args.quic).await?;
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .map_err(|e| Error::from(format!("temporary directory: {e}")))?;
    let mut wals = Vec::new();
    if args.wal {
        for id in NODES {
            let wal = FileWal::open(scratch.path().join(format!("node-{id}")), Options::default())
                .map_err(|e| Error::from(format!("the log of node {id}: {e}")))?;
            wals.push(wal);
        }
    }
    if args.tick_ms == 0 {
        return Err(Error::from("--tick-ms must be at least 1"));
    }
    let tick = Duration::from_millis(args.tick_ms);
    let config = Config {
        quiesce_after_ticks: args.quiesce_after,
        tick_interval: tick,
        ..Config::default()
    };
    let hosts: Vec<GroupHost> = if args.host {
        NODES
            .iter()
            .map(|_| GroupHost::new(config.tick_interval))
            .collect()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let mut groups: Vec<[Node; 3]> = Vec::with_capacity(args.groups as usize);
    let mut first = 1;
    while first <= args.groups {
        let last = (first + args.batch - 1).min(args.groups);
        for group in first..=last {
            let mut nodes = Vec::with_capacity(3);
            for (i, &id) in NODES.iter().enumerate() {
                let mut builder = Raft::builder(id)
                    .group(group)
                    .config(config.clone())
                    .state_machine(Sink::<Bytes>::default())
                    .transport(muxes[i].transport())
                    .bootstrap(members.clone());
                if let Some(host) = hosts.get(i) {
                    builder = builder.host(host);
                }
                let started = match wals.get(i) {
                    Some(wal) => {
                        let log = wal
                            .group(group)
                            .map_err(|e| Error::from(format!("group {group}, node {id}: {e}")))?;
                        builder.log_store(log).start().await
                    }
                    None => builder.log_store(MemLogStore::new()).start().await,
                };
                let node = started.map_err(|e| Error::from(format!("group {group}, node {id}: {e}")))?;
                nodes.push(node);
            }
            let nodes: [Node; 3] = nodes
                .try_into()
                .map_err(|_| Error::from("three nodes per group"))?;
            groups.push(nodes);
        }
        for (offset, nodes) in groups[(first - 1) as usize..].iter().enumerate() {
            propose(first + offset as u64, nodes).await?;
        }
        if args.quiesce_after > 0 {
            for (offset, nodes) in groups[(first - 1) as usize..].iter().enumerate() {
                for node in nodes {
                    node.wait_for(WAIT, |m| m.quiescent).await.map_err(|_| {
                        Error::from(format!("group {} did not go quiet", first + offset as u64))
                    })?;
                }
            }
        }
        first = last + 1;
    }
    let setup = started.elapsed();
    let resident = usage::memory(None).rss.saturating_sub(before);

    let sent_before = sent(&muxes);
    let cpu_before = usage::self_cpu();
    let idle = Duration::from_secs(args.idle_secs);
    tokio::time::sleep(idle).await;
    let idle_cpu = usage::self_cpu().saturating_sub(cpu_before);
    let idle_sent = sent(&muxes).saturating_sub(sent_before);

    let woken = (args.groups / 100).max(1);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::from(format!("histogram: {e}")))?;
    for (g, nodes) in groups.iter().enumerate().take(woken as usize) {
        let start = Instant::now();
        propose(g as u64 + 1, nodes).await?;
        latency.saturating_record(start.elapsed().as_micros() as u64);
    }

    let n = args.groups as f64;
    let secs = idle.as_secs_f64();
    println!(
        "{} groups of 3 nodes in one process, {}, one {} transport{} per node shared by every group, quiescence after {} ticks{}",
        args.groups,
        if args.host {
            "one task and timer per node driving every group"
        } else {
            "a task and a timer per group's node"
        },
        if args.quic { "QUIC" } else { "in-memory" },
        if args.wal { " and one write-ahead log" } else { "" },
        args.quiesce_after,
        if args.quiesce_after == 0 { " (off)" } else { "" }
    );
    println!(
        "set-up: {:.1} s (each group elected, committed a command{})",
        setup.as_secs_f64(),
        if args.quiesce_after > 0 {
            " and went quiet"
        } else {
            ""
        }
    );
    println!(
        "memory: {:.1} MiB resident for the groups, {:.1} KiB per group ({:.1} KiB per node)",
        resident as f64 / (1 << 20) as f64,
        resident as f64 / n / 1024.0,
        resident as f64 / n / 3.0 / 1024.0
    );
    println!(
        "idle for {secs:.0} s: CPU {:.2} % of one core; {:.0} messages per second, {:.2} per pair of nodes per {} ms tick",
        100.0 * idle_cpu.as_secs_f64() / secs,
        idle_sent as f64 / secs,
        // Three pairs of processes, each way.
        idle_sent as f64 / secs * tick.as_secs_f64() / 6.0,
        args.tick_ms
    );
    println!(
        "a command to {woken} idle groups, one at a time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latency.value_at_quantile(0.5) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.max() as f64 / 1e3
    );
    let groups = Arc::new(groups);
    if args.load_secs > 0 {
        let (fsyncs_before, started) = (fsyncs(&wals), Instant::now());
        let (elections_before, cpu_before) = (elections(&groups), usage::self_cpu());
        for host in &hosts {
            host.take_slowest_pass();
        }
        let done = load(&groups, args.clients.max(1), args.load_secs).await?;
        let secs = started.elapsed().as_secs_f64();
        let cpu = usage::self_cpu().saturating_sub(cpu_before);
        let synced = fsyncs(&wals).saturating_sub(fsyncs_before);
        let elected = elections(&groups).saturating_sub(elections_before);
        let slowest = hosts.iter().map(GroupHost::take_slowest_pass).max();
        println!(
            "load, {} clients over {} groups for {:.0} s: {:.0} commands/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; CPU {:.0} % of one core; {elected} leaders elected{}{}",
            args.clients.max(1),
            args.groups,
            secs,
            done.commands as f64 / secs,
            done.latency.value_at_quantile(0.5) as f64 / 1e3,
            done.latency.value_at_quantile(0.99) as f64 / 1e3,
            done.latency.max() as f64 / 1e3,
            100.0 * cpu.as_secs_f64() / secs,
            match slowest {
                Some(pass) => format!("; slowest host pass {:.1} ms", pass.as_secs_f64() * 1e3),
                None => String::new(),
            },
            if args.wal {
                format!(
                    "; {:.0} fdatasyncs/s on the three logs ({:.2} per command)",
                    synced as f64 / secs,
                    synced as f64 / done.commands.max(1) as f64
                )
            } else {
                String::new()
            }
        );
    }
    futures::future::join_all(groups.iter().flatten().map(|node| node.shutdown())).await;
    for mux in &muxes {
        mux.shutdown().await;
    }
    Ok(())
}
