//! What the end-to-end fault tests share, whatever the service: a cluster of real node
//! processes of one of the examples (`counter node`, `kv node`: QUIC with mutual TLS, file
//! WAL, the HTTP API of `raft-service`), run inside a private network namespace; a seeded
//! schedule of faults (SIGKILL and restart, SIGSTOP and SIGCONT, partitions of a node or a
//! minority, packet loss on links, leadership transfer, a node removed and replaced by a
//! fresh one under a new id); and the healing that ends every fault and waits until the
//! nodes agree.
//!
//! A test describes its service in a [`Service`] and hands [`run`] its `exercise`: the
//! clients it runs, the faults ([`Cluster::inject`]), the healing ([`Cluster::heal`]) and
//! the checks. [`run`] makes the network namespace and runs the test again inside it (where
//! it cannot, it says so and runs the process faults only), starts the cluster in a run
//! directory, and keeps that directory (history, fault schedule, every node's log) and
//! prints the seed and the command that replays it when the exercise fails; on success it
//! stops every process and removes the directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::netns::{self, Firewall, Namespace};
use crate::process::{NodeProcess, Ports, start_node};

/// Every node's Raft port inside the namespace (each node has an address of its own).
const RAFT_PORT: u16 = 7000;
/// Every node's HTTP port inside the namespace.
const HTTP_PORT: u16 = 8000;
/// Certificates are issued up front for every id a run may use.
const MAX_ID: u64 = 40;

/// The service a fault test runs, and the test's knobs.
#[derive(Clone, Debug)]
pub struct Service {
    /// Names the test in its output (`faults`, `kv faults`).
    pub label: &'static str,
    /// The test target that holds the test (`cargo test -p raft-tests --test TARGET`),
    /// for the replay command; also names the run directory (`raft-TARGET-*`).
    pub target: &'static str,
    /// The variable that sets the seed of the fault schedule and the clients.
    pub seed_var: &'static str,
    /// The variable that sets the length of the fault phase, in seconds.
    pub secs_var: &'static str,
    /// The length of the fault phase when `secs_var` is unset.
    pub default_secs: u64,
    /// The service's binary. It has the commands of `raft-service`: `certs` and `node`.
    pub binary: PathBuf,
    /// Flags given to every `node` command, after the ones every node gets (`--id`,
    /// addresses, data directory, certificates).
    pub node_flags: Vec<String>,
}

/// The fault tests of one test binary would compete for two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the fault test `test` (the name of the `#[test]` function) of `service` on a
/// cluster of `nodes` nodes.
///
/// Outside the namespace: makes it and runs the test again inside (with the seed chosen
/// here), and passes or fails with it. Inside (or where no namespace can be made): starts
/// the cluster and calls `exercise` with it, the seed and the length of the fault phase.
/// `exercise` returns a one-line summary, printed as `LABEL: passed: SUMMARY`, or why the
/// test failed, which fails it keeping the run directory.
pub fn run<F>(service: &Service, test: &str, nodes: usize, exercise: F)
where
    F: AsyncFnOnce(&mut Cluster, u64, Duration) -> Result<String, String>,
{
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seed: u64 = std::env::var(service.seed_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::process::id() as u64 ^ (Instant::now().elapsed().as_nanos() as u64) ^ nanos()
        });
    if netns::inside() {
        return scenario(service, nodes, seed, true, exercise);
    }
    match Namespace::create("raftf") {
        Ok(ns) => {
            let env = vec![(service.seed_var.to_string(), seed.to_string())];
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
            scenario(service, nodes, seed, false, exercise);
        }
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn scenario<F>(service: &Service, nodes: usize, seed: u64, network_faults: bool, exercise: F)
where
    F: AsyncFnOnce(&mut Cluster, u64, Duration) -> Result<String, String>,
{
    let label = service.label;
    let secs: u64 = std::env::var(service.secs_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(service.default_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix(&format!("raft-{}-", service.target.replace('_', "-")))
        .tempdir()
        .expect("run directory");
    println!(
        "{label}: {nodes} nodes, seed {seed}, {secs} s of faults, network faults {}, run directory {}",
        if network_faults { "on" } else { "off" },
        dir.path().display()
    );
    let outcome = rt.block_on(async {
        let mut cluster = Cluster::start(service, dir.path(), nodes, network_faults).await?;
        let result = exercise(&mut cluster, seed, Duration::from_secs(secs)).await;
        cluster.stop_all();
        result
    });
    match outcome {
        Ok(summary) => println!("{label}: passed: {summary}"),
        Err(failure) => {
            let kept = dir.keep();
            panic!(
                "{label} failed (seed {seed}): {failure}\nhistory, fault schedule and node logs kept in {}\nreplay: {}={seed} cargo test -p raft-tests --test {}",
                kept.display(),
                service.seed_var,
                service.target,
            );
        }
    }
}

/// One machine of the cluster: its address, and the node that currently runs there.
pub struct Slot {
    /// The machine's IP address (its own in the namespace; 127.0.0.1 outside).
    pub ip: String,
    /// The Raft (QUIC) port of the node there.
    pub raft_port: u16,
    /// The HTTP port of the node there.
    pub http_port: u16,
    /// The id of the node there (a replaced node's successor has a new one).
    pub id: u64,
    /// The node's data directory.
    pub data: PathBuf,
    /// The node's process; `None` only before the cluster starts.
    pub process: Option<NodeProcess>,
}

impl Slot {
    /// `IP:PORT` of the node's Raft endpoint.
    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.ip, self.raft_port)
    }

    /// `IP:PORT` of the node's HTTP API.
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.ip, self.http_port)
    }
}

/// How many faults of each kind a schedule injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCount(pub BTreeMap<&'static str, usize>);

impl FaultCount {
    /// All faults.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl fmt::Display for FaultCount {
    /// `N (KIND N, KIND N, ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.total())?;
        let kinds: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        if !kinds.is_empty() {
            write!(f, " ({})", kinds.join(", "))?;
        }
        Ok(())
    }
}

/// The nodes of a fault test, the HTTP client that talks to them, the firewall that cuts
/// their links, and the log of what was done to them (`faults.log` in the run directory).
pub struct Cluster {
    dir: PathBuf,
    certs: PathBuf,
    binary: PathBuf,
    label: &'static str,
    node_flags: Vec<String>,
    slots: Vec<Slot>,
    next_id: u64,
    http: reqwest::Client,
    firewall: Option<Firewall>,
    schedule: String,
    started: Instant,
}

impl Cluster {
    /// Makes certificates for every id a run may use in `dir/certs`, starts `n` nodes of
    /// `service` that bootstrap a cluster (each at an address of its own with
    /// `network_faults`, which also installs the firewall; on free ports of 127.0.0.1
    /// otherwise), and waits until each serves HTTP.
    pub async fn start(
        service: &Service,
        dir: &Path,
        n: usize,
        network_faults: bool,
    ) -> Result<Cluster, String> {
        let certs = dir.join("certs");
        let ids: Vec<String> = (1..=MAX_ID).map(|i| i.to_string()).collect();
        let name = service.binary.display();
        let status = std::process::Command::new(&service.binary)
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", &ids.join(",")])
            .output()
            .map_err(|e| format!("{name} certs: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "{name} certs failed: {}",
                String::from_utf8_lossy(&status.stderr)
            ));
        }
        let firewall = if network_faults {
            Some(Firewall::new()?)
        } else {
            None
        };
        let mut slots = Vec::new();
        let mut ports = Ports::new();
        for i in 0..n {
            // In the namespace each node gets an address of its own; outside, free ports on
            // 127.0.0.1.
            let (ip, raft_port, http_port) = if network_faults {
                (format!("127.0.0.{}", 11 + i), RAFT_PORT, HTTP_PORT)
            } else {
                let raft = ports.udp().map_err(|e| format!("a free UDP port: {e}"))?;
                let http = ports.tcp().map_err(|e| format!("a free TCP port: {e}"))?;
                ("127.0.0.1".to_string(), raft.port(), http.port())
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
            binary: service.binary.clone(),
            label: service.label,
            node_flags: service.node_flags.clone(),
            slots,
            next_id: n as u64 + 1,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(4))
                .pool_max_idle_per_host(8)
                // Let go of idle connections before the nodes close them (after 10 s), so
                // that no write is sent on a connection being closed.
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
            c.start_process(i, args);
        }
        for i in 0..n {
            c.wait_serving(i, Duration::from_secs(60)).await?;
        }
        c.note("cluster started");
        Ok(c)
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the cluster started: the origin of the clients' times and of the schedule's.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The machines, in slot order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// `IP:PORT` of each slot's HTTP API, in slot order. A slot keeps its address when its
    /// node is replaced.
    pub fn http_addrs(&self) -> Vec<String> {
        self.slots.iter().map(Slot::http_addr).collect()
    }

    /// An HTTP client for the nodes (no proxy, a 4 s timeout, idle connections dropped
    /// before the nodes would close them).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The slots whose node is running (neither killed nor stopped).
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].process.as_ref().is_some_and(|p| p.is_running()))
            .collect()
    }

    fn node_args(&self, i: usize) -> Vec<String> {
        let s = &self.slots[i];
        let mut args: Vec<String> = vec![
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
        ];
        args.extend(self.node_flags.iter().cloned());
        args
    }

    fn start_process(&mut self, i: usize, args: Vec<String>) {
        let log = self.dir.join(format!("node-{}.log", self.slots[i].id));
        self.slots[i].process = Some(start_node(&self.binary, args, log));
    }

    /// Records `what` in the schedule (`faults.log` in the run directory), with the time
    /// since the start, and prints it.
    pub fn note(&mut self, what: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let _ = writeln!(self.schedule, "{t:8.3}s {what}");
        println!("{}: {t:8.3}s {what}", self.label);
        let _ = std::fs::write(self.dir.join("faults.log"), &self.schedule);
    }

    /// Slot `i`'s `/status`, if it answers with success.
    pub async fn status(&self, i: usize) -> Option<Value> {
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

    /// Sends an admin request to the nodes in turn until one answers 200, for up to
    /// `timeout`. A 400 fails at once (it would fail again); otherwise the error names the
    /// last answer.
    pub async fn admin(&self, path: &str, body: Value, timeout: Duration) -> Result<(), String> {
        // Admin requests carry the cluster's admin token, which `certs` wrote.
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

    /// Resumes and terminates every node.
    pub fn stop_all(&mut self) {
        for s in &mut self.slots {
            if let Some(mut p) = s.process.take() {
                p.resume();
                p.terminate();
            }
        }
    }

    /// Injects faults drawn from `seed`, one at a time, each undone before the next, until
    /// `length` has passed. Network faults (partitions, packet loss) only with the
    /// firewall; at most two replacements. Fails only where the harness itself fails (a
    /// firewall rule that cannot be set, a replacement that cannot be added back).
    pub async fn inject(&mut self, seed: u64, length: Duration) -> Result<FaultCount, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let end = Instant::now() + length;
        let mut count = FaultCount::default();
        let mut replaced = 0;
        let n = self.slots.len();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500 + rng.next_u64() % 1500)).await;
            let kinds = if self.firewall.is_some() { 6 } else { 4 };
            let hold = Duration::from_millis(1000 + rng.next_u64() % 2000);
            let victim = (rng.next_u64() % n as u64) as usize;
            let kind = match rng.next_u64() % kinds {
                0 => {
                    self.note(&format!("SIGKILL node {} (slot {victim})", self.slots[victim].id));
                    if let Some(p) = self.slots[victim].process.as_mut() {
                        p.kill();
                    }
                    tokio::time::sleep(hold).await;
                    self.note(&format!("restart node {}", self.slots[victim].id));
                    if let Some(p) = self.slots[victim].process.as_mut() {
                        p.restart().map_err(|e| format!("restarting a node: {e}"))?;
                    }
                    "kill"
                }
                1 => {
                    self.note(&format!("SIGSTOP node {}", self.slots[victim].id));
                    if let Some(p) = self.slots[victim].process.as_mut() {
                        p.pause();
                    }
                    tokio::time::sleep(hold).await;
                    self.note(&format!("SIGCONT node {}", self.slots[victim].id));
                    if let Some(p) = self.slots[victim].process.as_mut() {
                        p.resume();
                    }
                    "pause"
                }
                2 => {
                    let to = self.slots[(victim + 1 + (rng.next_u64() % (n as u64 - 1)) as usize) % n].id;
                    self.note(&format!("transfer leadership to node {to}"));
                    if let Err(e) = self
                        .admin("/admin/transfer", json!({ "to": to }), Duration::from_secs(5))
                        .await
                    {
                        self.note(&format!("transfer did not complete: {e}"));
                    }
                    "transfer"
                }
                3 if replaced < 2 => {
                    replaced += 1;
                    self.replace(victim).await?;
                    "replace"
                }
                4 => {
                    // A node, or a minority, cut off from the rest.
                    let size = 1 + (rng.next_u64() % (n as u64 / 2).max(1)) as usize;
                    let side: BTreeSet<usize> = (0..size).map(|k| (victim + k) % n).collect();
                    let names: Vec<u64> = side.iter().map(|&i| self.slots[i].id).collect();
                    self.note(&format!("partition {names:?} from the rest"));
                    let fw = self.firewall.as_ref().expect("network faults");
                    for &a in &side {
                        for b in (0..n).filter(|b| !side.contains(b)) {
                            fw.cut(&self.slots[a].ip, &self.slots[b].ip)?;
                        }
                    }
                    self.heal_network_after(hold * 2).await?;
                    "partition"
                }
                5 => {
                    let other = (victim + 1 + (rng.next_u64() % (n as u64 - 1)) as usize) % n;
                    let pct = 20 + (rng.next_u64() % 30) as u32;
                    self.note(&format!(
                        "drop {pct}% of packets between nodes {} and {}",
                        self.slots[victim].id, self.slots[other].id
                    ));
                    let fw = self.firewall.as_ref().expect("network faults");
                    fw.lose(&self.slots[victim].ip, &self.slots[other].ip, pct)?;
                    fw.lose(&self.slots[other].ip, &self.slots[victim].ip, pct)?;
                    self.heal_network_after(hold * 2).await?;
                    "loss"
                }
                _ => continue,
            };
            *count.0.entry(kind).or_default() += 1;
        }
        Ok(count)
    }

    /// Lets a network fault last `hold`, then removes every firewall rule.
    async fn heal_network_after(&mut self, hold: Duration) -> Result<(), String> {
        tokio::time::sleep(hold).await;
        self.firewall.as_ref().expect("network faults").heal()?;
        self.note("heal");
        Ok(())
    }

    /// Removes the node of `slot` from the cluster, wipes its data directory, and adds the
    /// machine back as a fresh node under a new id. A removal that does not complete (no
    /// quorum in time) leaves the node be.
    async fn replace(&mut self, slot: usize) -> Result<(), String> {
        let old = self.slots[slot].id;
        self.note(&format!("remove node {old}"));
        match self
            .admin("/admin/remove", json!({ "id": old }), Duration::from_secs(30))
            .await
        {
            Ok(()) => {}
            // An earlier attempt whose answer was lost (a timeout, a node that stopped) did it.
            Err(e) if e.contains(&format!("node {old} is not a member")) => {
                self.note(&format!("node {old} was removed by an earlier attempt: {e}"));
            }
            Err(e) => {
                // Not removed (no quorum in time): leave it be.
                self.note(&format!("removal of node {old} did not complete: {e}"));
                return Ok(());
            }
        }
        if let Some(p) = self.slots[slot].process.as_mut() {
            p.kill();
        }
        let new = self.next_id;
        self.next_id += 1;
        if new > MAX_ID {
            return Err("out of certificates for new ids".into());
        }
        let data = self.dir.join(format!("node-{new}"));
        self.slots[slot].id = new;
        self.slots[slot].data = data;
        let mut args = self.node_args(slot);
        // The cluster it joins: the other slots' current nodes.
        let members: Vec<String> = (0..self.slots.len())
            .filter(|&i| i != slot)
            .map(|i| format!("{}={}", self.slots[i].id, self.slots[i].raft_addr()))
            .collect();
        args.extend(["--join".into(), "--peers".into(), members.join(",")]);
        self.note(&format!(
            "start node {new} empty in node {old}'s place and add it"
        ));
        self.start_process(slot, args);
        self.wait_serving(slot, Duration::from_secs(30)).await?;
        let body = json!({
            "id": new,
            "raft_addr": self.slots[slot].raft_addr(),
            "http_addr": self.slots[slot].http_addr(),
        });
        if let Err(e) = self.admin("/admin/add", body, Duration::from_secs(60)).await {
            return Err(format!("adding node {new} back failed: {e}"));
        }
        self.note(&format!("node {new} is a voter"));
        Ok(())
    }

    /// Ends every fault (the firewall's rules, stopped and killed nodes), then waits up to
    /// 90 s until every node answers `/status` with the same applied, commit and last log
    /// indexes and the same leader.
    pub async fn heal(&mut self) -> Result<(), String> {
        if let Some(fw) = &self.firewall {
            fw.heal()?;
        }
        for s in &mut self.slots {
            if let Some(p) = s.process.as_mut() {
                p.resume();
                if !p.is_running() {
                    p.restart()
                        .map_err(|e| format!("restarting node {}: {e}", s.id))?;
                }
            }
        }
        self.note("all faults healed; waiting for the nodes to agree");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut states = Vec::new();
            for i in self.running() {
                states.push(self.status(i).await);
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
        self.note("all nodes agree on commit, applied and last log index");
        Ok(())
    }
}

/// The counter or gauge `name` (as the exposition names it, e.g.
/// `raft_snapshots_taken_total`) in the `/metrics` of the node at `addr` (`IP:PORT`), if it
/// answers.
pub async fn metric(http: &reqwest::Client, addr: &str, name: &str) -> Option<u64> {
    let r = http.get(format!("http://{addr}/metrics")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let text = r.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
