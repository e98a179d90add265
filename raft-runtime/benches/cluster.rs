//! Throughput and latency of a three-node cluster in one process: in-memory log store,
//! in-process network, an empty state machine (the conditions of openraft's
//! `benchmarks/minimal`: no network, no serialization between nodes, no fsync).
//!
//! `cargo bench -p raft-runtime --bench cluster [-- --seconds N --clients 1,64,256]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_runtime::raft_core::Index;
use raft_runtime::{
    Applied, Config, MemLogStore, MemNetwork, MemberInfo, Membership, RaftHandle, RaftNode, StateMachine,
    StateMachineError,
};

/// A state machine that does nothing.
struct Empty;

#[async_trait]
impl StateMachine for Empty {
    type Command = ();
    type Response = ();

    async fn apply(&mut self, batch: Vec<Applied<()>>) -> Result<Vec<()>, StateMachineError> {
        Ok(vec![(); batch.len()])
    }
    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(0)
    }
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }
    async fn restore(&mut self, _: Index, _: Bytes) -> Result<(), StateMachineError> {
        Ok(())
    }
}

struct Args {
    seconds: u64,
    clients: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        clients: vec![1, 64, 256, 1024, 4096],
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--seconds" => {
                a.seconds = argv[i + 1].parse().expect("--seconds N");
                i += 1;
            }
            "--clients" => {
                a.clients = argv[i + 1]
                    .split(',')
                    .map(|c| c.parse().expect("--clients list"))
                    .collect();
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    a
}

async fn cluster() -> Vec<RaftHandle<Empty>> {
    let net = MemNetwork::new();
    let members: BTreeMap<u64, MemberInfo> = (1..=3).map(|id| (id, MemberInfo::default())).collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut cfg = Config::new(id);
        cfg.snapshot_every = 100_000;
        let node = RaftNode::start(
            cfg,
            Empty,
            Arc::new(MemLogStore::new()),
            Arc::new(net.transport(id)),
            Membership::Bootstrap(members.clone()),
        )
        .await
        .expect("start");
        nodes.push(node);
    }
    nodes
}

async fn run(clients: usize, seconds: u64) -> (f64, Histogram<u64>) {
    let nodes = cluster().await;
    // Find a stable leader: warm up until 100 proposals in a row succeed through it.
    let leader = loop {
        let m = nodes[0]
            .wait_for(Duration::from_secs(30), |m| m.leader.is_some())
            .await
            .expect("leader");
        let leader = nodes[(m.leader.unwrap() - 1) as usize].clone();
        let mut ok = true;
        for _ in 0..100 {
            if leader.propose(()).await.is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            break leader;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Clients start together and warm up for a second; only operations completed in the
    // measured window after it count, so spawning thousands of tasks is not measured.
    let start = Instant::now() + Duration::from_secs(1);
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let h = leader.clone();
        tasks.push(tokio::spawn(async move {
            // Latencies go into a plain vector (cheap to append) and into the histogram
            // after the run, so that measuring costs little of what it measures.
            let mut latencies: Vec<u32> = Vec::with_capacity(4096);
            let mut n = 0u64;
            let mut now = Instant::now();
            while now < deadline {
                match h.propose(()).await {
                    Ok(()) => {
                        let done = Instant::now();
                        if done >= start && done < deadline {
                            latencies.push((done - now).as_micros().min(u32::MAX as u128) as u32);
                            n += 1;
                        }
                        now = done;
                    }
                    Err(e) if e.is_definitely_not_applied() => {
                        tokio::task::yield_now().await;
                        now = Instant::now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
            for l in latencies {
                hist.record(u64::from(l.max(1))).ok();
            }
            (n, hist)
        }));
    }
    let mut total = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
    for t in tasks {
        let (n, h) = t.await.unwrap();
        total += n;
        hist.add(h).unwrap();
    }
    let elapsed = (deadline - start).as_secs_f64();
    for n in nodes {
        n.shutdown().await;
    }
    (total as f64 / elapsed, hist)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "3 nodes in one process, in-memory store and network, empty state machine, 1 s warm-up and {} s measured per run",
        a.seconds
    );
    println!(
        "{:>8} {:>14} {:>12} {:>12} {:>12}",
        "clients", "ops/s", "p50 (us)", "p99 (us)", "p99.9 (us)"
    );
    for &c in &a.clients {
        let (rate, h) = rt.block_on(run(c, a.seconds));
        println!(
            "{:>8} {:>14.0} {:>12.1} {:>12.1} {:>12.1}",
            c,
            rate,
            h.value_at_quantile(0.5) as f64,
            h.value_at_quantile(0.99) as f64,
            h.value_at_quantile(0.999) as f64
        );
    }
}
