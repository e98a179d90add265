//! End-to-end fault tests: the counter cluster as real `counter node` processes (QUIC with
//! mutual TLS, file WAL), concurrent clients over HTTP recording a history, and a seeded
//! schedule of faults: SIGKILL and restart, SIGSTOP and SIGCONT, partitions of a node or a
//! minority, packet loss on links, leadership transfer, and a node removed and replaced by a
//! fresh one (clean data directory, new id). After healing, every node must converge, every
//! acknowledged increment must be counted exactly once, and the history must be linearizable.
//!
//! Network faults need a private network namespace (root, `ip`, `nft`): the test makes one and
//! runs itself inside it. Where it cannot, it says so and runs the process faults only.
//!
//! Knobs: `RAFT_FAULTS_SEED` (replay a schedule), `RAFT_FAULTS_SECS` (length of the fault
//! phase; default 40). A long soak with all fault kinds:
//!
//! ```text
//! RAFT_FAULTS_SECS=600 cargo test -p raft-tests --release --test faults -- --nocapture
//! ```
//!
//! A failing run keeps its directory (history, fault schedule, every node's log) and prints
//! its path and seed. The cluster, the fault schedule and the healing are
//! [`raft_tests::fault_cluster`]'s, shared with the key-value fault test (`kv_faults.rs`);
//! the clients and the checks are the counter's own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_tests::fault_cluster::{self, Cluster, Service};
use raft_tests::linearizability::{self, Op, Operation, Verdict};
use raft_tests::process::counter_binary;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[test]
fn faults_three_nodes() {
    run("faults_three_nodes", 3);
}

#[test]
fn faults_five_nodes() {
    run("faults_five_nodes", 5);
}

/// The counter's nodes, with the knobs of this test.
fn run(test: &str, nodes: usize) {
    let service = Service {
        label: "faults",
        target: "faults",
        seed_var: "RAFT_FAULTS_SEED",
        secs_var: "RAFT_FAULTS_SECS",
        default_secs: 40,
        binary: counter_binary(),
        node_flags: Vec::new(),
    };
    fault_cluster::run(&service, test, nodes, exercise);
}

/// The shared record of what clients did.
struct History {
    ops: Vec<Operation>,
    started: Instant,
}

impl History {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

async fn client(
    id: u64,
    addrs: Vec<String>,
    http: reqwest::Client,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(id);
    while !stop.load(Ordering::Relaxed) {
        let addr = &addrs[(rng.next_u64() % addrs.len() as u64) as usize];
        let incr = rng.next_u64() % 10 < 7;
        let call = history.lock().await.now();
        let (op, request) = if incr {
            (
                Op::Incr(1),
                http.post(format!("http://{addr}/incr")).json(&json!({"by": 1})),
            )
        } else {
            (Op::Read, http.get(format!("http://{addr}/value")))
        };
        let outcome = request.send().await;
        let ret = history.lock().await.now();
        let record = match outcome {
            Ok(r) if r.status().is_success() => {
                match r.json::<Value>().await.ok().and_then(|v| v["value"].as_u64()) {
                    Some(v) => Some(Operation::ok(id, op, call, ret, v)),
                    None => Some(Operation::unknown(id, op, call)),
                }
            }
            // Definitely not applied: leave it out of the history.
            Ok(r) if r.status().as_u16() == 503 => None,
            Ok(_) => Some(Operation::unknown(id, op, call)),
            // The request never left: not applied.
            Err(e) if e.is_connect() => None,
            Err(_) => Some(Operation::unknown(id, op, call)),
        };
        match record {
            Some(o) => history.lock().await.ops.push(o),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The fault phase, the healing, and the checks. Returns a one-line summary.
async fn exercise(c: &mut Cluster, seed: u64, length: Duration) -> Result<String, String> {
    let history = Arc::new(Mutex::new(History {
        ops: Vec::new(),
        started: c.started(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = c.http_addrs();
    let mut clients = Vec::new();
    for id in 0..6u64 {
        clients.push(tokio::spawn(client(
            id,
            addrs.clone(),
            c.http().clone(),
            history.clone(),
            stop.clone(),
        )));
    }
    let faults = c.inject(seed, length).await;
    stop.store(true, Ordering::Relaxed);
    for cl in clients {
        let _ = cl.await;
    }
    let heal = match c.heal().await {
        Ok(()) => final_reads(c).await,
        Err(e) => Err(e),
    };
    let history = Arc::try_unwrap(history)
        .ok()
        .expect("clients stopped")
        .into_inner();
    let mut ops = history.ops;
    if let Ok(finals) = &heal {
        for (slot, call, ret, value) in finals {
            ops.push(Operation::ok(1_000 + *slot as u64, Op::Read, *call, *ret, *value));
        }
    }
    // Written before the check, so that it is there whatever becomes of the check.
    let _ = std::fs::write(
        c.dir().join("history.json"),
        serde_json::to_string_pretty(&ops).unwrap_or_default(),
    );
    match (faults, heal) {
        (Ok(n), Ok(finals)) => {
            c.note(&format!("checking {} operations", ops.len()));
            let started = Instant::now();
            let verdict = verify(&ops, &finals).map(|s| format!("{} faults; {s}", n.total()));
            c.note(&format!("checked in {:.1} s", started.elapsed().as_secs_f64()));
            verdict
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Each running node's final linearizable read, after healing, as (slot, call, return,
/// value).
async fn final_reads(c: &Cluster) -> Result<Vec<(usize, u64, u64, u64)>, String> {
    let mut finals = Vec::new();
    let started = c.started();
    for i in c.running() {
        let url = format!("http://{}/value", c.slots()[i].http_addr());
        let call = started.elapsed().as_micros() as u64;
        let v = c
            .http()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("final read on slot {i}: {e}"))?
            .json::<Value>()
            .await
            .map_err(|e| format!("final read on slot {i}: {e}"))?;
        let ret = started.elapsed().as_micros() as u64;
        let value = v["value"]
            .as_u64()
            .ok_or_else(|| format!("final read on slot {i}: {v}"))?;
        finals.push((i, call, ret, value));
    }
    Ok(finals)
}

/// Exactly once and linearizability.
fn verify(ops: &[Operation], finals: &[(usize, u64, u64, u64)]) -> Result<String, String> {
    let values: BTreeSet<u64> = finals.iter().map(|f| f.3).collect();
    if values.len() != 1 {
        return Err(format!("nodes read different final values: {finals:?}"));
    }
    let final_value = *values.iter().next().expect("one value");
    let acked: Vec<u64> = ops
        .iter()
        .filter(|o| o.op == Op::Incr(1))
        .filter_map(|o| o.result.map(|(_, v)| v))
        .collect();
    let distinct: BTreeSet<u64> = acked.iter().copied().collect();
    if distinct.len() != acked.len() {
        return Err("two acknowledged increments returned the same value: one was not counted".into());
    }
    let unknown = ops
        .iter()
        .filter(|o| o.op == Op::Incr(1) && o.result.is_none())
        .count() as u64;
    let acked_n = acked.len() as u64;
    if final_value < acked_n || final_value > acked_n + unknown {
        return Err(format!(
            "final value {final_value} outside [{acked_n}, {}]: increments lost or duplicated",
            acked_n + unknown
        ));
    }
    if let Some(&max) = distinct.iter().next_back()
        && max > final_value
    {
        return Err(format!(
            "an increment answered {max} but the final value is {final_value}"
        ));
    }
    let reads = ops.iter().filter(|o| o.op == Op::Read).count();
    // Only used if the history held increments other than +1, which then go through the
    // search: some hundred steps per operation, at most 16 bytes of cache each.
    let budget = (ops.len() as u64 * 600).max(50_000_000);
    match linearizability::check(ops, 0, budget) {
        Verdict::Linearizable => Ok(format!(
            "{} operations ({acked_n} acknowledged increments, {unknown} unknown, {reads} reads), final value {final_value}, linearizable",
            ops.len()
        )),
        Verdict::NotLinearizable { why, .. } => Err(format!("history not linearizable: {why}")),
        Verdict::Inconclusive { deepest } => Err(format!(
            "linearizability check inconclusive within its step budget of {budget} steps (at best {deepest} of {} operations linearized)",
            ops.len()
        )),
    }
}
