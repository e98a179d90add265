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
//! its path and seed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_tests::linearizability::{self, Op, Operation, Verdict};
use raft_tests::netns::{self, Firewall, Namespace};
use raft_tests::process::{NodeProcess, counter_binary, start_counter};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const RAFT_PORT: u16 = 7000;
const HTTP_PORT: u16 = 8000;
/// Certificates are issued up front for every id a run may use.
const MAX_ID: u64 = 40;

#[test]
fn faults_three_nodes() {
    run("faults_three_nodes", 3);
}

#[test]
fn faults_five_nodes() {
    run("faults_five_nodes", 5);
}

/// The clusters of these tests would compete for two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Outside the namespace: make it and run the test again inside. Inside (or where no
/// namespace can be made): run the scenario.
fn run(test: &str, nodes: usize) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seed: u64 = std::env::var("RAFT_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::process::id() as u64 ^ (Instant::now().elapsed().as_nanos() as u64) ^ nanos()
        });
    if netns::inside() {
        return scenario(nodes, seed, true);
    }
    match Namespace::create("raftf") {
        Ok(ns) => {
            let env = vec![("RAFT_FAULTS_SEED".to_string(), seed.to_string())];
            let passed = ns.run_test_inside(test, &env).expect("run inside the namespace");
            assert!(
                passed,
                "{test} failed inside namespace {} (seed {seed})",
                ns.name()
            );
        }
        Err(reason) => {
            println!(
                "{test}: NETWORK FAULTS SKIPPED: cannot make a network namespace ({reason}); running process faults only"
            );
            scenario(nodes, seed, false);
        }
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn scenario(nodes: usize, seed: u64, network_faults: bool) {
    let secs: u64 = std::env::var("RAFT_FAULTS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("raft-faults-")
        .tempdir()
        .expect("run directory");
    println!(
        "faults: {nodes} nodes, seed {seed}, {secs} s of faults, network faults {}, run directory {}",
        if network_faults { "on" } else { "off" },
        dir.path().display()
    );
    let outcome = rt.block_on(async {
        let mut cluster = Cluster::start(dir.path(), nodes, network_faults).await?;
        let result = exercise(&mut cluster, seed, Duration::from_secs(secs)).await;
        cluster.stop_all();
        result
    });
    match outcome {
        Ok(summary) => println!("faults: passed: {summary}"),
        Err(failure) => {
            let kept = dir.keep();
            panic!(
                "faults failed (seed {seed}): {failure}\nhistory, fault schedule and node logs kept in {}\nreplay: RAFT_FAULTS_SEED={seed} cargo test -p raft-tests --test faults",
                kept.display()
            );
        }
    }
}

/// One machine of the cluster: its address, and the node that currently runs there.
struct Slot {
    ip: String,
    raft_port: u16,
    http_port: u16,
    id: u64,
    data: PathBuf,
    process: Option<NodeProcess>,
}

impl Slot {
    fn raft_addr(&self) -> String {
        format!("{}:{}", self.ip, self.raft_port)
    }

    fn http_addr(&self) -> String {
        format!("{}:{}", self.ip, self.http_port)
    }
}

struct Cluster {
    dir: PathBuf,
    certs: PathBuf,
    slots: Vec<Slot>,
    next_id: u64,
    http: reqwest::Client,
    firewall: Option<Firewall>,
    schedule: String,
    started: Instant,
}

impl Cluster {
    async fn start(dir: &Path, n: usize, network_faults: bool) -> Result<Cluster, String> {
        let certs = dir.join("certs");
        let ids: Vec<String> = (1..=MAX_ID).map(|i| i.to_string()).collect();
        let status = std::process::Command::new(counter_binary())
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", &ids.join(",")])
            .output()
            .map_err(|e| format!("counter certs: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "counter certs failed: {}",
                String::from_utf8_lossy(&status.stderr)
            ));
        }
        let firewall = if network_faults {
            Some(Firewall::new()?)
        } else {
            None
        };
        let mut slots = Vec::new();
        for i in 0..n {
            // In the namespace each node gets an address of its own; outside, free ports on
            // 127.0.0.1.
            let (ip, raft_port, http_port) = if network_faults {
                (format!("127.0.0.{}", 11 + i), RAFT_PORT, HTTP_PORT)
            } else {
                ("127.0.0.1".to_string(), free_port(), free_port())
            };
            let id = i as u64 + 1;
            slots.push(Slot {
                ip,
                raft_port,
                http_port,
                id,
                data: dir.join(format!("node-{id}")),
                process: None,
            });
        }
        let peers: Vec<String> = slots
            .iter()
            .map(|s| format!("{}={}", s.id, s.raft_addr()))
            .collect();
        let peers_http: Vec<String> = slots
            .iter()
            .map(|s| format!("{}={}", s.id, s.http_addr()))
            .collect();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            certs,
            slots,
            next_id: n as u64 + 1,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(4))
                .pool_max_idle_per_host(8)
                // Let go of idle connections before the nodes close them (after 10 s), so
                // that no increment is sent on a connection being closed.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())?,
            firewall,
            schedule: String::new(),
            started: Instant::now(),
        };
        for i in 0..n {
            let mut args = c.node_args(i);
            args.extend([
                "--peers".into(),
                peers.join(","),
                "--peers-http".into(),
                peers_http.join(","),
            ]);
            let log = c.dir.join(format!("node-{}.log", c.slots[i].id));
            c.slots[i].process = Some(start_counter(args, log));
        }
        for i in 0..n {
            c.wait_serving(i, Duration::from_secs(60)).await?;
        }
        c.note("cluster started");
        Ok(c)
    }

    fn node_args(&self, i: usize) -> Vec<String> {
        let s = &self.slots[i];
        vec![
            "node".into(),
            "--id".into(),
            s.id.to_string(),
            "--raft-addr".into(),
            s.raft_addr(),
            "--http-addr".into(),
            s.http_addr(),
            "--data-dir".into(),
            s.data.display().to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
        ]
    }

    fn note(&mut self, what: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let _ = writeln!(self.schedule, "{t:8.3}s {what}");
        println!("faults: {t:8.3}s {what}");
        let _ = std::fs::write(self.dir.join("faults.log"), &self.schedule);
    }

    async fn status(&self, i: usize) -> Option<Value> {
        let url = format!("http://{}/status", self.slots[i].http_addr());
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn wait_serving(&self, i: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.status(i).await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("node in slot {i} did not serve HTTP within {timeout:?}"))
    }

    /// Sends an admin request to the nodes in turn until one answers 200 (or 400: it would
    /// fail again). Returns the last status line.
    async fn admin(&self, path: &str, body: Value, timeout: Duration) -> Result<(), String> {
        // Admin requests carry the cluster's admin token, which `counter certs` wrote.
        let token = std::fs::read_to_string(self.certs.join("admin.token"))
            .map_err(|e| format!("reading the admin token: {e}"))?;
        let bearer = format!("Bearer {}", token.trim());
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            for s in &self.slots {
                let Some(p) = &s.process else { continue };
                if p.is_stopped() {
                    continue;
                }
                let url = format!("http://{}{path}", s.http_addr());
                match self
                    .http
                    .post(url)
                    .header("authorization", &bearer)
                    .json(&body)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) if r.status().as_u16() == 400 => {
                        return Err(format!("{path} refused: {}", r.text().await.unwrap_or_default()));
                    }
                    Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{path} did not succeed in time: {last}"))
    }

    fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].process.as_ref().is_some_and(|p| p.is_running()))
            .collect()
    }

    fn stop_all(&mut self) {
        for s in &mut self.slots {
            if let Some(mut p) = s.process.take() {
                p.resume();
                p.terminate();
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
        started: c.started,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = c.slots.iter().map(Slot::http_addr).collect();
    let mut clients = Vec::new();
    for id in 0..6u64 {
        clients.push(tokio::spawn(client(
            id,
            addrs.clone(),
            c.http.clone(),
            history.clone(),
            stop.clone(),
        )));
    }
    let faults = inject(c, seed, length).await;
    stop.store(true, Ordering::Relaxed);
    for cl in clients {
        let _ = cl.await;
    }
    let heal = heal(c).await;
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
        c.dir.join("history.json"),
        serde_json::to_string_pretty(&ops).unwrap_or_default(),
    );
    match (faults, heal) {
        (Ok(n), Ok(finals)) => {
            c.note(&format!("checking {} operations", ops.len()));
            let started = Instant::now();
            let verdict = verify(&ops, &finals).map(|s| format!("{n} faults; {s}"));
            c.note(&format!("checked in {:.1} s", started.elapsed().as_secs_f64()));
            verdict
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Injects faults one at a time until `length` has passed. Returns how many.
async fn inject(c: &mut Cluster, seed: u64, length: Duration) -> Result<usize, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let end = Instant::now() + length;
    let mut count = 0;
    let mut replaced = 0;
    let n = c.slots.len();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500 + rng.next_u64() % 1500)).await;
        let kinds = if c.firewall.is_some() { 6 } else { 4 };
        let hold = Duration::from_millis(1000 + rng.next_u64() % 2000);
        let victim = (rng.next_u64() % n as u64) as usize;
        match rng.next_u64() % kinds {
            0 => {
                c.note(&format!("SIGKILL node {} (slot {victim})", c.slots[victim].id));
                if let Some(p) = c.slots[victim].process.as_mut() {
                    p.kill();
                }
                tokio::time::sleep(hold).await;
                c.note(&format!("restart node {}", c.slots[victim].id));
                if let Some(p) = c.slots[victim].process.as_mut() {
                    p.restart().expect("restarting a counter node");
                }
            }
            1 => {
                c.note(&format!("SIGSTOP node {}", c.slots[victim].id));
                if let Some(p) = c.slots[victim].process.as_mut() {
                    p.pause();
                }
                tokio::time::sleep(hold).await;
                c.note(&format!("SIGCONT node {}", c.slots[victim].id));
                if let Some(p) = c.slots[victim].process.as_mut() {
                    p.resume();
                }
            }
            2 => {
                let to = c.slots[(victim + 1 + (rng.next_u64() % (n as u64 - 1)) as usize) % n].id;
                c.note(&format!("transfer leadership to node {to}"));
                if let Err(e) = c
                    .admin("/admin/transfer", json!({ "to": to }), Duration::from_secs(5))
                    .await
                {
                    c.note(&format!("transfer did not complete: {e}"));
                }
            }
            3 if replaced < 2 => {
                replaced += 1;
                replace(c, victim).await?;
            }
            4 => {
                // A node, or a minority, cut off from the rest.
                let size = 1 + (rng.next_u64() % (n as u64 / 2).max(1)) as usize;
                let side: BTreeSet<usize> = (0..size).map(|k| (victim + k) % n).collect();
                let names: Vec<u64> = side.iter().map(|&i| c.slots[i].id).collect();
                c.note(&format!("partition {names:?} from the rest"));
                let fw = c.firewall.as_ref().expect("network faults");
                for &a in &side {
                    for b in (0..n).filter(|b| !side.contains(b)) {
                        fw.cut(&c.slots[a].ip, &c.slots[b].ip)?;
                    }
                }
                tokio::time::sleep(hold * 2).await;
                c.firewall.as_ref().expect("network faults").heal()?;
                c.note("heal");
            }
            5 => {
                let other = (victim + 1 + (rng.next_u64() % (n as u64 - 1)) as usize) % n;
                let pct = 20 + (rng.next_u64() % 30) as u32;
                c.note(&format!(
                    "drop {pct}% of packets between nodes {} and {}",
                    c.slots[victim].id, c.slots[other].id
                ));
                let fw = c.firewall.as_ref().expect("network faults");
                fw.lose(&c.slots[victim].ip, &c.slots[other].ip, pct)?;
                fw.lose(&c.slots[other].ip, &c.slots[victim].ip, pct)?;
                tokio::time::sleep(hold * 2).await;
                c.firewall.as_ref().expect("network faults").heal()?;
                c.note("heal");
            }
            _ => continue,
        }
        count += 1;
    }
    Ok(count)
}

/// Removes the node of `slot` from the cluster, wipes its data directory, and adds the machine
/// back as a fresh node under a new id.
async fn replace(c: &mut Cluster, slot: usize) -> Result<(), String> {
    let old = c.slots[slot].id;
    c.note(&format!("remove node {old}"));
    match c
        .admin("/admin/remove", json!({ "id": old }), Duration::from_secs(30))
        .await
    {
        Ok(()) => {}
        // An earlier attempt whose answer was lost (a timeout, a node that stopped) did it.
        Err(e) if e.contains(&format!("node {old} is not a member")) => {
            c.note(&format!("node {old} was removed by an earlier attempt: {e}"));
        }
        Err(e) => {
            // Not removed (no quorum in time): leave it be.
            c.note(&format!("removal of node {old} did not complete: {e}"));
            return Ok(());
        }
    }
    if let Some(p) = c.slots[slot].process.as_mut() {
        p.kill();
    }
    let new = c.next_id;
    c.next_id += 1;
    if new > MAX_ID {
        return Err("out of certificates for new ids".into());
    }
    let data = c.dir.join(format!("node-{new}"));
    c.slots[slot].id = new;
    c.slots[slot].data = data;
    let mut args = c.node_args(slot);
    // The cluster it joins: the other slots' current nodes.
    let members: Vec<String> = (0..c.slots.len())
        .filter(|&i| i != slot)
        .map(|i| format!("{}={}", c.slots[i].id, c.slots[i].raft_addr()))
        .collect();
    args.extend(["--join".into(), "--peers".into(), members.join(",")]);
    let log = c.dir.join(format!("node-{new}.log"));
    c.note(&format!(
        "start node {new} empty in node {old}'s place and add it"
    ));
    c.slots[slot].process = Some(start_counter(args, log));
    c.wait_serving(slot, Duration::from_secs(30)).await?;
    let body =
        json!({ "id": new, "raft_addr": c.slots[slot].raft_addr(), "http_addr": c.slots[slot].http_addr() });
    if let Err(e) = c.admin("/admin/add", body, Duration::from_secs(60)).await {
        return Err(format!("adding node {new} back failed: {e}"));
    }
    c.note(&format!("node {new} is a voter"));
    Ok(())
}

/// Ends every fault, then waits until all nodes agree. Returns each node's final linearizable
/// read as (slot, call, return, value).
async fn heal(c: &mut Cluster) -> Result<Vec<(usize, u64, u64, u64)>, String> {
    if let Some(fw) = &c.firewall {
        fw.heal()?;
    }
    for s in &mut c.slots {
        if let Some(p) = s.process.as_mut() {
            p.resume();
            if !p.is_running() {
                p.restart().expect("restarting a counter node");
            }
        }
    }
    c.note("all faults healed; waiting for the nodes to agree");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut states = Vec::new();
        for i in c.running() {
            states.push(c.status(i).await);
        }
        let agreed = states.iter().all(Option::is_some) && {
            let key = |s: &Option<Value>| {
                let s = s.as_ref().expect("checked");
                (
                    s["applied"].as_u64(),
                    s["commit"].as_u64(),
                    s["last_log_index"].as_u64(),
                    s["leader"].as_u64(),
                )
            };
            let first = key(&states[0]);
            first.3.is_some() && states.iter().all(|s| key(s) == first)
        };
        if agreed {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nodes did not agree within 90 s after healing: {states:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.note("all nodes agree on commit, applied and last log index");
    let mut finals = Vec::new();
    let started = c.started;
    for i in c.running() {
        let url = format!("http://{}/value", c.slots[i].http_addr());
        let call = started.elapsed().as_micros() as u64;
        let v = c
            .http
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
