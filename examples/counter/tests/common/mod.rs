//! What the multi-process tests share: `counter node` processes on loopback ports, killed
//! and reaped whatever happens, and waiting for conditions with generous deadlines.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use counter::admin_token::AdminToken;
use counter::api::StatusResponse;
use counter::client::Client;
pub use raft_testkit::process::{NodeProcess, Ports};
use tempfile::TempDir;
use tokio::time::Instant;

/// The binary under test.
pub const COUNTER: &str = env!("CARGO_BIN_EXE_counter");

/// How long a condition may take to come true. This is a loaded 2-core machine: elections,
/// process starts and catch-ups can take far longer than they usually do.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `counter` with `args` to completion (the short-lived commands: `certs` and the
/// clients, which give up by themselves after their `--timeout`). Runs on a blocking
/// thread, so the async runtime keeps serving the test meanwhile.
pub async fn run_counter(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(COUNTER)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run counter")
    })
    .await
    .expect("the blocking task ran")
}

/// Stdout of a command that must have succeeded.
pub fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "counter failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills its child (if still running) and reaps it when dropped.
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One node's fixed identity: its ports and its data directory stay the same across
/// restarts, as they would on a real machine.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: u64,
    pub raft: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// `counter node` processes in a temporary directory, with certificates made by
/// `counter certs`. Dropping it kills and reaps every process it started, and, if the
/// test is failing, prints the end of each node's log.
pub struct Cluster {
    pub dir: TempDir,
    pub certs: PathBuf,
    pub specs: BTreeMap<u64, NodeSpec>,
    ports: Ports,
    running: BTreeMap<u64, NodeProcess>,
}

impl Cluster {
    /// A cluster directory with certificates for `ids` (nodes that may join later
    /// included) and a spec for each.
    pub async fn new(ids: &[u64]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("counter-test-")
            .tempdir()
            .expect("temp dir");
        let certs = dir.path().join("certs");
        let list = ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        stdout_of(&run_counter(&["certs", "--out", certs.to_str().unwrap(), "--nodes", &list]).await);
        let mut cluster = Cluster {
            dir,
            certs,
            specs: BTreeMap::new(),
            ports: Ports::new(),
            running: BTreeMap::new(),
        };
        for &id in ids {
            let spec = NodeSpec {
                id,
                raft: cluster.ports.udp().expect("a free UDP port"),
                http: cluster.ports.tcp().expect("a free TCP port"),
                data_dir: cluster.dir.path().join(format!("node-{id}")),
                log: cluster.dir.path().join(format!("node-{id}.log")),
            };
            cluster.specs.insert(id, spec);
        }
        cluster
    }

    /// The `--peers` and `--peers-http` arguments that bootstrap `initial`.
    pub fn bootstrap_args(&self, initial: &[u64]) -> Vec<String> {
        let list = |f: &dyn Fn(&NodeSpec) -> SocketAddr| {
            initial
                .iter()
                .map(|id| format!("{id}={}", f(&self.specs[id])))
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            "--peers".into(),
            list(&|s| s.raft),
            "--peers-http".into(),
            list(&|s| s.http),
        ]
    }

    /// Starts `counter node` for `id` with `extra` arguments (membership and tuning).
    /// Its output is appended to its log file, across restarts.
    pub fn start(&mut self, id: u64, extra: &[String]) {
        assert!(!self.running.contains_key(&id), "node {id} is already running");
        let spec = &self.specs[&id];
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            id.to_string(),
            "--raft-addr".into(),
            spec.raft.to_string(),
            "--http-addr".into(),
            spec.http.to_string(),
            "--data-dir".into(),
            spec.data_dir.display().to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let process =
            NodeProcess::start(COUNTER, args, spec.log.clone(), "info").expect("spawn counter node");
        self.running.insert(id, process);
    }

    /// Kills node `id` with SIGKILL (no chance to flush or say goodbye) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let mut process = self.running.remove(&id).expect("node is running");
        process.kill();
    }

    /// Stops node `id` with SIGTERM and waits for it to exit; returns its exit status.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        let mut process = self.running.remove(&id).expect("node is running");
        match process.terminate_within(DEADLINE).await {
            Some(status) => status,
            // Dropping the process kills it.
            None => panic!("node {id} did not exit within {DEADLINE:?} of SIGTERM"),
        }
    }

    /// The HTTP address of node `id`.
    pub fn http(&self, id: u64) -> String {
        self.specs[&id].http.to_string()
    }

    /// The HTTP addresses of `ids`, comma-separated, as `--cluster` takes them.
    pub fn cluster_arg(&self, ids: &[u64]) -> String {
        ids.iter().map(|&id| self.http(id)).collect::<Vec<_>>().join(",")
    }

    /// A client that tries `ids` in turn.
    pub fn client(&self, ids: &[u64]) -> Client {
        Client::new(ids.iter().map(|&id| self.http(id)))
    }

    /// The cluster's admin token, as `counter certs` wrote it.
    pub fn admin_token(&self) -> AdminToken {
        AdminToken::load(&counter::certs::admin_token_file(&self.certs)).expect("the admin token")
    }

    /// The `--certs` argument of the admin commands (add-node, remove-node,
    /// transfer-leader), which read the token from there.
    pub fn certs_arg(&self) -> String {
        self.certs.display().to_string()
    }

    /// The status of node `id`, or `None` if it does not answer.
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        self.client(&[id])
            .status_of(&format!("http://{}", self.http(id)))
            .await
            .ok()
    }

    /// Waits until every node in `ids` answers and follows the same leader, which is
    /// among them; returns that leader.
    pub async fn wait_for_leader(&self, ids: &[u64]) -> u64 {
        wait_until("a leader that every node follows", || async {
            let mut leader = None;
            for &id in ids {
                let s = self.status(id).await?;
                match (leader, s.leader) {
                    (_, None) => return None,
                    (None, l) => leader = l,
                    (Some(a), Some(b)) if a != b => return None,
                    _ => {}
                }
            }
            leader.filter(|l| ids.contains(l))
        })
        .await
    }

    /// Waits until every node in `ids` has applied the same index and reads the same
    /// value through its own HTTP API; returns the value.
    pub async fn wait_for_agreement(&self, ids: &[u64]) -> u64 {
        wait_until(
            "every node to apply the same entries and read the same value",
            || async {
                let mut applied = HashSet::new();
                let mut values = HashSet::new();
                for &id in ids {
                    let s = self.status(id).await?;
                    if s.applied < s.commit {
                        return None;
                    }
                    applied.insert(s.applied);
                    values.insert(
                        self.client(&[id])
                            .with_deadline(Duration::from_secs(5))
                            .get()
                            .await
                            .ok()?,
                    );
                }
                (applied.len() == 1 && values.len() == 1).then(|| values.into_iter().next().unwrap())
            },
        )
        .await
    }

    /// Prints the last lines of each node's log (for a failing test).
    fn dump_logs(&self) {
        for spec in self.specs.values() {
            let Ok(file) = File::open(&spec.log) else { continue };
            let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
            eprintln!("----- node {} log (last 40 lines) -----", spec.id);
            for line in lines.iter().rev().take(40).rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill and reap first, so that the logs are complete.
        self.running.clear();
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// Polls `probe` until it returns `Some`, for up to [`DEADLINE`]; panics naming `what`
/// otherwise.
pub async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `path` holds anything.
pub fn non_empty_dir(path: &Path) -> bool {
    path.read_dir().is_ok_and(|mut d| d.next().is_some())
}

/// The value of the sample `name` (without labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// A plain HTTP client for raw requests to the API (never through a proxy).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}
