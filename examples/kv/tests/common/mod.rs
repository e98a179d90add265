//! What the key-value tests share: a 3-node cluster in this process (the demo's, from
//! `raft-service`), the `kv` binary, and waiting with generous deadlines.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

pub mod procs;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kv::client::Client;
use kv::node::{KvService, NodeConfig};
use raft_service::cmd::demo::Cluster;
use tokio::time::Instant;

/// The binary under test.
pub const KV: &str = env!("CARGO_BIN_EXE_kv");

/// How long a condition may take to come true. This is a loaded 2-core machine: elections,
/// process starts and catch-ups can take far longer than they usually do.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Three nodes in this process, on QUIC with mutual TLS and a data directory each under
/// `dir`, once they agree on a leader.
pub async fn cluster(dir: &Path) -> Cluster<KvService> {
    let certs = dir.join("certs");
    kv::certs::write(&certs, &[1, 2, 3], false).expect("certificates");
    let cluster = Cluster::start(dir, &certs, NodeConfig::raft_defaults(), DEADLINE)
        .await
        .expect("a 3-node cluster starts");
    cluster.wait_for_leader(None).await.expect("a leader");
    cluster
}

/// The leader the running nodes agree on.
pub async fn leader(cluster: &Cluster<KvService>) -> u64 {
    cluster.wait_for_leader(None).await.expect("a leader").0
}

/// `http://HOST:PORT` of node `id`.
pub fn base(cluster: &Cluster<KvService>, id: u64) -> String {
    format!("http://{}", cluster.configs()[&id].http_addr)
}

/// A client of nodes `ids`.
pub fn client(cluster: &Cluster<KvService>, ids: &[u64]) -> Client {
    Client::new(cluster.http_addrs(ids)).with_deadline(DEADLINE)
}

/// A plain HTTP client for raw requests to the API (never through a proxy).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("HTTP client")
}

/// Runs `kv` with `args` to completion (a client command, which gives up by itself after
/// its `--timeout`), killing it should it outlive [`DEADLINE`].
pub async fn run_kv(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(KV)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kv");
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kv {args:?} did not end within {DEADLINE:?}"))
        .expect("kv ran")
}

/// Writes the certificates and admin token of nodes `ids` ("1,2,3") to `dir/certs` with
/// `kv certs`, and returns that directory.
pub async fn write_certs(dir: &Path, ids: &str) -> PathBuf {
    let certs = dir.join("certs");
    let path = certs.to_str().expect("a UTF-8 path");
    succeeded(&run_kv(&["certs", "--out", path, "--nodes", ids]).await);
    certs
}

/// Stdout of a `kv` run that must have succeeded.
pub fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kv failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a `kv` run that must have failed with status 1.
pub fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "kv should have failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `probe` every 50 ms until it answers `Some`, for up to [`DEADLINE`]; panics
/// naming `what` otherwise.
pub async fn eventually<T, Fut: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> Fut) -> T {
    let give_up = Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Some(answer) => return answer,
            None if Instant::now() >= give_up => panic!("no {what} within {DEADLINE:?}"),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The value of the sample `name` (without labels) in Prometheus text.
pub fn sample(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|line| line.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    line[name.len()..].trim().parse().expect("a number")
}
