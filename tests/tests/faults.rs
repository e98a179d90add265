//! End-to-end fault tests: the counter cluster as real `counter node` processes (QUIC with
//! mutual TLS, file WAL), concurrent clients over HTTP recording a history, and a seeded
//! schedule of faults: SIGKILL and restart, SIGSTOP and SIGCONT, partitions of a node or a
//! minority, packet loss on links, leadership transfer, and a node removed and replaced by a
//! fresh one (clean data directory, new id).
//!
//! Each client opens a client session and sends its increments in it, as
//! `{"by": 1, "session": S, "seq": K}`, one at a time. An increment is sent again, with the
//! same session and sequence number, on the next node after every failure (a `503`, a `504`,
//! a connection refused or broken, a request that timed out) until it is answered: the
//! cluster counts it once however often it arrives. When the fault phase ends, the clients
//! start nothing new, but every increment under way keeps being retried through the healing
//! until it is answered (for up to a minute after it). So every increment sent is
//! acknowledged, and the check is exact: every node must converge on a value equal to the
//! number of increments acknowledged, each acknowledged increment must have answered a
//! distinct value from 1 to that value (none counted twice, however often it was retried),
//! and the history must be linearizable, each retried increment one operation from its first
//! attempt to its answer. The test prints how many attempts with an unknown outcome were
//! retried.
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

/// How long after the healing the increments under way may take to be answered.
const FINISH_WITHIN: Duration = Duration::from_secs(60);

/// The pause after an attempt that failed, before the next node is tried.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The shared record of what clients did.
struct History {
    ops: Vec<Operation>,
    started: Instant,
    tally: Tally,
}

/// What the clients counted besides the history, for the checks and the summary.
#[derive(Default)]
struct Tally {
    /// The (session, sequence number) of every acknowledged increment.
    acknowledged: BTreeSet<(u64, u64)>,
    /// Attempts whose outcome was unknown (a `504`, a connection broken or timed out after
    /// the request was sent, an answer cut off) and that were sent again.
    unknown_retries: u64,
    /// Acknowledged increments that were sent again after at least one such attempt.
    retried_after_unknown: u64,
    /// Answers a correct cluster never gives these clients (a session refused, a `500`),
    /// each with the client and the request: any fails the test.
    errors: Vec<String>,
}

impl History {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

/// What a client's loop needs: the nodes, the HTTP client, the shared history and the two
/// flags: `stop` (start nothing new) and `give_up` (stop retrying what is under way).
#[derive(Clone)]
struct Ctx {
    addrs: Vec<String>,
    http: reqwest::Client,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
    give_up: Arc<AtomicBool>,
}

async fn client(id: u64, ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(id);
    let Some(session) = open_session(id, &ctx, &mut rng).await else {
        return;
    };
    let mut seq = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        let node = (rng.next_u64() % ctx.addrs.len() as u64) as usize;
        if rng.next_u64() % 10 < 7 {
            seq += 1;
            if !increment(id, &ctx, node, session, seq).await {
                return;
            }
        } else {
            read(id, &ctx, node).await;
        }
    }
}

/// Opens a session through the nodes in turn, until one answers or the fault phase ends.
async fn open_session(id: u64, ctx: &Ctx, rng: &mut ChaCha8Rng) -> Option<u64> {
    let mut node = (rng.next_u64() % ctx.addrs.len() as u64) as usize;
    while !ctx.stop.load(Ordering::Relaxed) {
        let url = format!("http://{}/sessions", ctx.addrs[node]);
        if let Ok(r) = ctx.http.post(url).send().await
            && r.status().is_success()
            && let Some(session) = r.json::<Value>().await.ok().and_then(|v| v["session"].as_u64())
        {
            return Some(session);
        }
        // Any failure: an opening whose answer was lost leaves an unused session, which
        // expires; try the next node.
        node = (node + 1) % ctx.addrs.len();
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let mut history = ctx.history.lock().await;
    history.tally.errors.push(format!(
        "client {id} could not open a session before the faults ended"
    ));
    None
}

/// Increment `seq` of `session`, first sent to `node`, then to the next node after every
/// failure, until it is answered or the clients give up. Returns false when the client
/// cannot go on (the cluster gave an answer it never should, or the clients gave up).
async fn increment(id: u64, ctx: &Ctx, mut node: usize, session: u64, seq: u64) -> bool {
    let body = json!({"by": 1, "session": session, "seq": seq});
    let call = ctx.history.lock().await.now();
    // Whether an attempt so far may have been applied.
    let mut uncertain = false;
    let mut unknown_retries = 0;
    loop {
        if ctx.give_up.load(Ordering::Relaxed) {
            let mut history = ctx.history.lock().await;
            if uncertain {
                history.ops.push(Operation::unknown(id, Op::Incr(1), call));
            }
            // Otherwise definitely not applied: it stays out of the history.
            return false;
        }
        let url = format!("http://{}/incr", ctx.addrs[node]);
        let unknown = match ctx.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                let value = r.json::<Value>().await.ok().and_then(|v| v["value"].as_u64());
                let mut history = ctx.history.lock().await;
                let ret = history.now();
                let Some(value) = value else {
                    // The answer was cut off: send it again.
                    drop(history);
                    uncertain = true;
                    unknown_retries += 1;
                    node = (node + 1) % ctx.addrs.len();
                    continue;
                };
                history.ops.push(Operation::ok(id, Op::Incr(1), call, ret, value));
                history.tally.acknowledged.insert((session, seq));
                history.tally.unknown_retries += unknown_retries;
                history.tally.retried_after_unknown += u64::from(unknown_retries > 0);
                return true;
            }
            // Definitely not applied by this attempt.
            Ok(r) if r.status().as_u16() == 503 => false,
            Ok(r) if r.status().as_u16() == 504 => true,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let mut history = ctx.history.lock().await;
                history.tally.errors.push(format!(
                    "client {id}: increment {seq} of session {session}: {status} {text}"
                ));
                history.ops.push(Operation::unknown(id, Op::Incr(1), call));
                return false;
            }
            // The request never left: not applied.
            Err(e) if e.is_connect() => false,
            // Sent, and then the connection broke or the request timed out.
            Err(_) => true,
        };
        if unknown {
            uncertain = true;
            unknown_retries += 1;
        }
        node = (node + 1) % ctx.addrs.len();
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One linearizable read through `node`, recorded if it may tell something.
async fn read(id: u64, ctx: &Ctx, node: usize) {
    let call = ctx.history.lock().await.now();
    let outcome = ctx
        .http
        .get(format!("http://{}/value", ctx.addrs[node]))
        .send()
        .await;
    let ret = ctx.history.lock().await.now();
    let record = match outcome {
        Ok(r) if r.status().is_success() => {
            match r.json::<Value>().await.ok().and_then(|v| v["value"].as_u64()) {
                Some(v) => Some(Operation::ok(id, Op::Read, call, ret, v)),
                None => Some(Operation::unknown(id, Op::Read, call)),
            }
        }
        // A failed read changed nothing: leave it out of the history.
        Ok(_) | Err(_) => None,
    };
    match record {
        Some(o) => ctx.history.lock().await.ops.push(o),
        None => tokio::time::sleep(RETRY_PAUSE).await,
    }
}

/// The fault phase, the healing, and the checks. Returns a one-line summary.
async fn exercise(c: &mut Cluster, seed: u64, length: Duration) -> Result<String, String> {
    let ctx = Ctx {
        addrs: c.http_addrs(),
        http: c.http().clone(),
        history: Arc::new(Mutex::new(History {
            ops: Vec::new(),
            started: c.started(),
            tally: Tally::default(),
        })),
        stop: Arc::new(AtomicBool::new(false)),
        give_up: Arc::new(AtomicBool::new(false)),
    };
    let mut clients = Vec::new();
    for id in 0..6u64 {
        clients.push(tokio::spawn(client(id, ctx.clone())));
    }
    let faults = c.inject(seed, length).await;
    // Nothing new from here on; what is under way goes on through the healing.
    ctx.stop.store(true, Ordering::Relaxed);
    let healed = c.heal().await;
    let mut all = futures::future::join_all(clients);
    let finished = match &healed {
        Ok(()) => tokio::time::timeout(FINISH_WITHIN, &mut all).await.is_ok(),
        Err(_) => false,
    };
    if !finished {
        ctx.give_up.store(true, Ordering::Relaxed);
        all.await;
    }
    c.note(if finished {
        "every increment under way was answered"
    } else {
        "gave up on the increments still under way"
    });
    let heal = match healed {
        Ok(()) => final_reads(c).await,
        Err(e) => Err(e),
    };
    let history = Arc::try_unwrap(ctx.history)
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
    let tally = history.tally;
    c.note(&format!(
        "the clients sent {} attempts again after an unknown outcome, over {} increments",
        tally.unknown_retries, tally.retried_after_unknown
    ));
    match (faults, heal) {
        (Ok(n), Ok(finals)) => {
            c.note(&format!("checking {} operations", ops.len()));
            let started = Instant::now();
            let verdict = verify(&ops, &finals, &tally).map(|s| format!("{} faults; {s}", n.total()));
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

/// Exactly once, exactly: every increment sent was acknowledged, and the final value is
/// their number; and linearizability.
fn verify(ops: &[Operation], finals: &[(usize, u64, u64, u64)], tally: &Tally) -> Result<String, String> {
    if let Some(first) = tally.errors.first() {
        return Err(format!(
            "{} unexpected answers, the first: {first}",
            tally.errors.len()
        ));
    }
    let values: BTreeSet<u64> = finals.iter().map(|f| f.3).collect();
    if values.len() != 1 {
        return Err(format!("nodes read different final values: {finals:?}"));
    }
    let final_value = *values.iter().next().expect("one value");
    let unanswered = ops
        .iter()
        .filter(|o| o.op == Op::Incr(1) && o.result.is_none())
        .count();
    if unanswered > 0 {
        return Err(format!(
            "{unanswered} increments were still unanswered {FINISH_WITHIN:?} after the healing"
        ));
    }
    let acked: Vec<u64> = ops
        .iter()
        .filter(|o| o.op == Op::Incr(1))
        .filter_map(|o| o.result.map(|(_, v)| v))
        .collect();
    let acked_n = acked.len() as u64;
    if tally.acknowledged.len() as u64 != acked_n {
        return Err(format!(
            "{acked_n} increments acknowledged, but {} distinct (session, seq) pairs",
            tally.acknowledged.len()
        ));
    }
    if final_value != acked_n {
        return Err(format!(
            "final value {final_value}, but {acked_n} increments were acknowledged, each once: increments {}",
            if final_value > acked_n {
                "counted twice"
            } else {
                "lost"
            }
        ));
    }
    // Each of 1..=final_value answered exactly one increment: none counted twice, however
    // often it was sent, and none lost.
    let mut answered = acked;
    answered.sort_unstable();
    if let Some((i, &v)) = answered.iter().enumerate().find(|&(i, &v)| v != i as u64 + 1) {
        return Err(format!(
            "the acknowledged increments' values are not 1..={final_value} each once: the {}th smallest is {v}",
            i + 1
        ));
    }
    let reads = ops.iter().filter(|o| o.op == Op::Read).count();
    // Only used if the history held increments other than +1, which then go through the
    // search: some hundred steps per operation, at most 16 bytes of cache each.
    let budget = (ops.len() as u64 * 600).max(50_000_000);
    match linearizability::check(ops, 0, budget) {
        Verdict::Linearizable => Ok(format!(
            "{} operations ({acked_n} increments, every one acknowledged and counted once; {reads} reads), final value {final_value}, linearizable; {} retries of unknown outcomes over {} increments, all counted once",
            ops.len(),
            tally.unknown_retries,
            tally.retried_after_unknown
        )),
        Verdict::NotLinearizable { why, .. } => Err(format!("history not linearizable: {why}")),
        Verdict::Inconclusive { deepest } => Err(format!(
            "linearizability check inconclusive within its step budget of {budget} steps (at best {deepest} of {} operations linearized)",
            ops.len()
        )),
    }
}
