//! End-to-end fault test of the key-value store: the `kv` example as real `kv node`
//! processes (QUIC with mutual TLS, file WAL, redb), under the seeded fault schedule of the
//! counter's fault test (SIGKILL and restart, SIGSTOP and SIGCONT, partitions of a node or a
//! minority, packet loss on links, leadership transfer, and a node removed and replaced by
//! a fresh one under a new id; see [`raft_tests::fault_cluster`]), with a snapshot taken
//! every few dozen entries and no log kept behind it, so that restarted, cut-off and
//! replacement nodes catch up by snapshot.
//!
//! Concurrent clients put, delete, compare-and-swap and read (linearizable, and lease
//! reads) a few keys over HTTP through random nodes, and record every operation with its
//! call and return times. A write that was answered `503`, or never sent, definitely did
//! not happen and is left out; a write answered `504`, or whose answer was lost (a timeout,
//! a connection cut), has an unknown outcome; a read that fails constrains nothing. Any
//! other answer fails the test. After healing, every node's full local scan must hold the
//! same keys and values, and agree with a final linearizable read of every key on every
//! node; the whole history, final reads included, must be linearizable against a register
//! per key ([`raft_tests::kv_model`], porcupine-rs).
//!
//! Knobs: `RAFT_KV_FAULTS_SEED` (replay a schedule and the clients' choices),
//! `RAFT_KV_FAULTS_SECS` (length of the fault phase; default 30). A failing run keeps its
//! directory (history, fault schedule, every node's log) and prints its path, the seed and
//! the command that replays it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use porcupine_rs::{CheckResult, Operation};
use raft_tests::fault_cluster::{self, Cluster, Service};
use raft_tests::kv_model::{self, Input, KvModel, Output, Value};
use raft_tests::process::kv_binary;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::json;

/// Concurrent clients.
const CLIENTS: u32 = 6;
/// The keys they work on: `k0` to `k5`.
const KEYS: usize = 6;
/// A snapshot every this many entries (and no log kept behind it).
const SNAPSHOT_EVERY: u64 = 40;
/// How long the linearizability check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// Keys per page of the final scans: small, so that a scan takes several pages.
const SCAN_PAGE: usize = 2;

#[test]
fn kv_faults_three_nodes() {
    let service = Service {
        label: "kv faults",
        target: "kv_faults",
        seed_var: "RAFT_KV_FAULTS_SEED",
        secs_var: "RAFT_KV_FAULTS_SECS",
        default_secs: 30,
        binary: kv_binary(),
        node_flags: vec![
            "--snapshot-every".into(),
            SNAPSHOT_EVERY.to_string(),
            "--log-kept-entries".into(),
            "0".into(),
        ],
    };
    fault_cluster::run(&service, "kv_faults_three_nodes", 3, exercise);
}

/// An operation, and how it was sent (the node, and a read's consistency), for
/// `history.txt`.
type Recorded = (Operation<KvModel>, String);

fn key(k: usize) -> String {
    format!("k{k}")
}

/// What the clients did, for the summary.
#[derive(Default)]
struct Tally {
    /// Writes answered with success.
    acknowledged: AtomicU64,
    /// Writes whose outcome is unknown.
    unknown: AtomicU64,
    /// Writes that definitely did not happen (`503`, or never sent).
    not_applied: AtomicU64,
    /// Linearizable reads answered.
    reads: AtomicU64,
    /// Lease reads answered.
    lease_reads: AtomicU64,
    /// Reads that failed (they constrain nothing).
    reads_failed: AtomicU64,
}

fn count(n: &AtomicU64) {
    n.fetch_add(1, Ordering::Relaxed);
}

fn get(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// How a request ended.
enum Answer {
    /// `200`, with its JSON body.
    Ok(serde_json::Value),
    /// Another status, with its body (empty if it could not be read).
    Status(u16, String),
    /// The request may have been sent, and no answer came (a timeout, a connection cut,
    /// a body cut short).
    Lost(String),
    /// The request was never sent: the connection could not be made.
    NotSent,
}

/// Sends `request`; a `200` whose body is not JSON is an error.
async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let r = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(Answer::NotSent),
        Err(e) => return Ok(Answer::Lost(e.to_string())),
    };
    let status = r.status().as_u16();
    let body = match r.bytes().await {
        Ok(body) => body,
        Err(e) if status == 200 => return Ok(Answer::Lost(format!("200, body lost: {e}"))),
        Err(_) => Default::default(),
    };
    if status != 200 {
        return Ok(Answer::Status(
            status,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    serde_json::from_slice(&body).map(Answer::Ok).map_err(|e| {
        format!(
            "a 200 whose body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// A value in an answer: `null` or a string (the clients write text only).
fn text(v: &serde_json::Value) -> Result<Value, String> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        other => Err(format!("a value that no client wrote: {other}")),
    }
}

/// Reads `key` through `addr` at `consistency`: `Ok(Some(value))` when answered (the value
/// `None` for an absent key), `Ok(None)` when the read failed in a way faults cause.
async fn read(
    http: &reqwest::Client,
    addr: &str,
    key: &str,
    consistency: &str,
) -> Result<Option<Value>, String> {
    let url = format!("http://{addr}/kv/{key}?consistency={consistency}");
    match send(http.get(url)).await? {
        Answer::Ok(body) => Ok(Some(text(&body["value"])?)),
        Answer::Status(404, body) if body.contains("no value at key") => Ok(Some(None)),
        // Not confirmed (no leader, leadership lost, timeout): safe to retry, tells nothing.
        Answer::Status(503, _) | Answer::Lost(_) | Answer::NotSent => Ok(None),
        Answer::Status(status, body) => Err(format!(
            "{consistency} read of {key} through {addr}: unexpected {status}: {body}"
        )),
    }
}

/// One client: random operations on random keys through random nodes until told to stop.
/// Fails on an answer that faults cannot explain.
async fn client(
    id: u32,
    seed: u64,
    addrs: Vec<String>,
    http: reqwest::Client,
    started: Instant,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<Vec<Recorded>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut history = Vec::new();
    // The last value this client saw at each key, for compare-and-swaps that may succeed.
    let mut seen: Vec<Value> = vec![None; KEYS];
    let now = || started.elapsed().as_nanos() as u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = (rng.next_u64() % KEYS as u64) as usize;
        let key = key(k);
        let addr = &addrs[(rng.next_u64() % addrs.len() as u64) as usize];
        let fresh = format!("c{id}-{n}");
        let roll = rng.next_u64() % 100;
        if roll < 40 {
            let consistency = if roll < 15 { "lease" } else { "linearizable" };
            let call = now();
            match read(&http, addr, &key, consistency).await? {
                Some(v) => {
                    seen[k] = v.clone();
                    count(if consistency == "lease" {
                        &tally.lease_reads
                    } else {
                        &tally.reads
                    });
                    history.push((
                        kv_model::operation(id, &key, Input::Get, call, Some((now(), Output::Read(v)))),
                        format!("{consistency} read through {addr}"),
                    ));
                }
                None => {
                    count(&tally.reads_failed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            continue;
        }
        let url = format!("http://{addr}/kv/{key}");
        let (input, request) = if roll < 70 {
            (Input::Put(fresh.clone()), http.put(url).body(fresh.clone()))
        } else if roll < 80 {
            (Input::Delete, http.delete(url))
        } else {
            let expected = match rng.next_u64() % 5 {
                0 => None,
                1 => Some(format!("c{id}-{}", rng.next_u64() % n)),
                _ => seen[k].clone(),
            };
            // One swap in four removes the key.
            let new = (rng.next_u64() % 4 != 0).then(|| fresh.clone());
            let body = json!({ "expected": expected, "new": new });
            (
                Input::Cas { expected, new },
                http.post(format!("{url}/cas")).json(&body),
            )
        };
        let call = now();
        let answer = send(request).await?;
        let output = match answer {
            Answer::Ok(body) => {
                let ret = now();
                let output = match &input {
                    Input::Put(_) | Input::Delete => Output::Previous(text(&body["previous"])?),
                    Input::Cas { .. } => {
                        let swapped = body["swapped"]
                            .as_bool()
                            .ok_or_else(|| format!("a swap's answer without `swapped`: {body}"))?;
                        let current = text(&body["current"])?;
                        seen[k] = current.clone();
                        Output::Swapped { swapped, current }
                    }
                    Input::Get => unreachable!("reads are above"),
                };
                if let Input::Put(v) = &input {
                    seen[k] = Some(v.clone());
                }
                count(&tally.acknowledged);
                Some((ret, output))
            }
            Answer::Status(503, _) | Answer::NotSent => {
                count(&tally.not_applied);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Answer::Status(504, _) | Answer::Lost(_) => {
                count(&tally.unknown);
                None
            }
            Answer::Status(status, body) => {
                return Err(format!(
                    "{input:?} on {key} through {addr}: unexpected {status}: {body}"
                ));
            }
        };
        history.push((
            kv_model::operation(id, &key, input, call, output),
            format!("through {addr}"),
        ));
    }
    Ok(history)
}

/// Snapshots taken and installed, summed over every process a slot ran: the nodes'
/// counters start again at each restart, so a counter that went down was a new process
/// and what the old one had counted is kept. A snapshot made within a sampling period of a
/// kill may be missed: the sums are lower bounds.
#[derive(Default)]
struct SnapshotCounts {
    /// Per slot: (counted by earlier processes, last sample) for snapshots taken, then
    /// installed.
    slots: Vec<[(u64, u64); 2]>,
}

impl SnapshotCounts {
    const NAMES: [&str; 2] = ["raft_snapshots_taken_total", "raft_snapshots_installed_total"];

    async fn sample(&mut self, http: &reqwest::Client, addrs: &[String]) {
        self.slots.resize(addrs.len(), Default::default());
        for (slot, addr) in addrs.iter().enumerate() {
            for (m, name) in Self::NAMES.iter().enumerate() {
                if let Some(v) = fault_cluster::metric(http, addr, name).await {
                    let (earlier, last) = &mut self.slots[slot][m];
                    if v < *last {
                        *earlier += *last;
                    }
                    *last = v;
                }
            }
        }
    }

    fn total(&self, m: usize) -> u64 {
        self.slots.iter().map(|s| s[m].0 + s[m].1).sum()
    }
}

/// The fault phase with the clients, the healing, and the checks. Returns a one-line
/// summary.
async fn exercise(c: &mut Cluster, seed: u64, length: Duration) -> Result<String, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let addrs = c.http_addrs();
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        clients.push(tokio::spawn(client(
            id,
            seed.wrapping_mul(31).wrapping_add(u64::from(id)),
            addrs.clone(),
            c.http().clone(),
            c.started(),
            stop.clone(),
            tally.clone(),
        )));
    }
    let sampler = {
        let (http, addrs, stop) = (c.http().clone(), addrs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut counts = SnapshotCounts::default();
            while !stop.load(Ordering::Relaxed) {
                counts.sample(&http, &addrs).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            counts
        })
    };
    let faults = c.inject(seed, length).await;
    stop.store(true, Ordering::Relaxed);
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (id, handle) in clients.into_iter().enumerate() {
        match handle.await {
            Ok(Ok(ops)) => recorded.extend(ops),
            Ok(Err(e)) => failures.push(format!("client {id}: {e}")),
            Err(e) => failures.push(format!("client {id} panicked: {e}")),
        }
    }
    let mut snapshots = sampler.await.map_err(|e| format!("the snapshot sampler: {e}"))?;
    c.note(&format!(
        "clients stopped: {} operations recorded",
        recorded.len()
    ));
    let finals = match c.heal().await {
        Ok(()) => final_state(c, &mut recorded).await,
        Err(e) => Err(e),
    };
    snapshots.sample(c.http(), &addrs).await;
    write_history(c, &recorded);
    let history: Vec<Operation<KvModel>> = recorded.into_iter().map(|(op, _)| op).collect();
    if !failures.is_empty() {
        return Err(format!("unexpected answers: {}", failures.join("; ")));
    }
    let faults = faults?;
    let keys = finals?;

    let (taken, installed) = (snapshots.total(0), snapshots.total(1));
    let acknowledged = get(&tally.acknowledged);
    let reads = get(&tally.reads) + get(&tally.lease_reads);
    if acknowledged < 20 || reads < 20 {
        return Err(format!(
            "too little got through to test anything: {acknowledged} writes acknowledged, {reads} reads"
        ));
    }
    if taken == 0 {
        return Err("no node took a snapshot".into());
    }
    c.note(&format!("checking {} operations", history.len()));
    let checking = Instant::now();
    let verdict = tokio::task::block_in_place(|| kv_model::check(&history, CHECK_TIMEOUT));
    let checked = checking.elapsed().as_secs_f64();
    c.note(&format!("checked in {checked:.1} s: {verdict:?}"));
    match verdict {
        CheckResult::Ok => {}
        CheckResult::Illegal => {
            // Each key is a register of its own: name the ones whose history is wrong.
            let keys: Vec<String> = (0..KEYS)
                .map(key)
                .filter(|k| {
                    let ops: Vec<_> = history.iter().filter(|o| o.op.key == *k).cloned().collect();
                    kv_model::check(&ops, CHECK_TIMEOUT) == CheckResult::Illegal
                })
                .collect();
            return Err(format!(
                "the history is not linearizable: not at keys {keys:?} (see history.txt)"
            ));
        }
        CheckResult::Unknown => {
            return Err(format!(
                "the linearizability check did not finish within {CHECK_TIMEOUT:?}"
            ));
        }
    }
    Ok(format!(
        "{} operations ({acknowledged} writes acknowledged, {} unknown, {} not applied; {reads} reads \
         ({} linearizable, {} lease), {} failed); faults {faults}; snapshots taken {taken}, installed \
         {installed} (at least); {keys} keys at the end, the same on every node; linearizable \
         (checked in {checked:.1} s)",
        history.len(),
        get(&tally.unknown),
        get(&tally.not_applied),
        get(&tally.reads),
        get(&tally.lease_reads),
        get(&tally.reads_failed),
    ))
}

/// After healing: waits until every node's local scan holds the same keys and values, then
/// reads every key linearizably on every node (adding the reads to `history`) and checks
/// that each read agrees with the scans. Returns how many keys there are.
async fn final_state(c: &mut Cluster, history: &mut Vec<Recorded>) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    if c.running().is_empty() {
        return Err("no node is running after healing".into());
    }
    let contents = loop {
        let mut scans = Vec::new();
        for i in c.running() {
            scans.push((c.slots()[i].id, scan(c.http(), &c.slots()[i].http_addr()).await));
        }
        let first = &scans[0].1;
        if first.is_ok() && scans.iter().all(|(_, s)| s.as_ref().ok() == first.as_ref().ok()) {
            break first.clone()?;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the nodes' local scans did not converge within 60 s after healing: {scans:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.note(&format!(
        "every node's local scan holds the same {} keys: {contents:?}",
        contents.len()
    ));
    if let Some(stray) = contents.keys().find(|k| !(0..KEYS).any(|i| key(i) == **k)) {
        return Err(format!("a key no client wrote: {stray}"));
    }
    for i in c.running() {
        let (id, addr) = (c.slots()[i].id, c.slots()[i].http_addr());
        for k in 0..KEYS {
            let key = key(k);
            let deadline = Instant::now() + Duration::from_secs(30);
            let started = c.started();
            let (call, ret, value) = loop {
                let call = started.elapsed().as_nanos() as u64;
                if let Some(v) = read(c.http(), &addr, &key, "linearizable").await? {
                    break (call, started.elapsed().as_nanos() as u64, v);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "no final linearizable read of {key} on node {id} within 30 s"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            history.push((
                kv_model::operation(
                    1_000 + i as u32,
                    &key,
                    Input::Get,
                    call,
                    Some((ret, Output::Read(value.clone()))),
                ),
                format!("final linearizable read through {addr}"),
            ));
            if value.as_ref() != contents.get(&key) {
                return Err(format!(
                    "node {id} reads {key} = {value:?} linearizably, but the scans hold {:?}",
                    contents.get(&key)
                ));
            }
        }
    }
    c.note("every key's final linearizable read on every node agrees with the scans");
    Ok(contents.len())
}

/// The node's whole local state, scanned page by page (`?consistency=local`).
async fn scan(http: &reqwest::Client, addr: &str) -> Result<BTreeMap<String, String>, String> {
    let mut contents = BTreeMap::new();
    let mut start = String::new();
    loop {
        let mut url = reqwest::Url::parse(&format!("http://{addr}/kv"))
            .map_err(|e| format!("a scan URL for {addr}: {e}"))?;
        url.query_pairs_mut()
            .append_pair("consistency", "local")
            .append_pair("limit", &SCAN_PAGE.to_string())
            .append_pair("start", &start);
        let page = match send(http.get(url)).await? {
            Answer::Ok(page) => page,
            Answer::Status(status, body) => return Err(format!("scan of {addr}: {status}: {body}")),
            Answer::Lost(e) => return Err(format!("scan of {addr}: {e}")),
            Answer::NotSent => return Err(format!("scan of {addr}: not sent")),
        };
        let entries = page["entries"]
            .as_array()
            .ok_or_else(|| format!("a scan page without entries: {page}"))?;
        for entry in entries {
            let key = entry["key"]
                .as_str()
                .ok_or_else(|| format!("a scan entry without a key: {entry}"))?;
            match text(&entry["value"])? {
                Some(v) => contents.insert(key.to_string(), v),
                None => return Err(format!("a scan entry without a value: {entry}")),
            };
        }
        match &page["next"] {
            serde_json::Value::Null => return Ok(contents),
            serde_json::Value::String(next) => start = next.clone(),
            other => return Err(format!("a scan page's `next` is {other}")),
        }
    }
}

/// Writes the history to `history.txt` in the run directory, one operation a line (times
/// in nanoseconds since the cluster started), before it is checked, so that it is there
/// whatever becomes of the check.
fn write_history(c: &Cluster, history: &[Recorded]) {
    let mut text = String::new();
    for (o, how) in history {
        let ret = if o.return_time == i64::MAX {
            "unknown".to_string()
        } else {
            o.return_time.to_string()
        };
        let _ = writeln!(
            text,
            "client {:?} call {} return {ret} key {} {:?} -> {:?} ({how})",
            o.client_id, o.call_time, o.op.key, o.op.input, o.op.output
        );
    }
    let _ = std::fs::write(c.dir().join("history.txt"), text);
}
