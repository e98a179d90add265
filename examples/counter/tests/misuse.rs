//! `counter node` misused: each mistake stops it before it serves anything, with a
//! non-zero exit and one line that names what is wrong.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ChildGuard, Cluster, DEADLINE, Ports};
use tokio::time::Instant;

/// Runs `counter node` with `args`, expecting it to fail on its own; returns the last line
/// of its stderr (earlier lines are logs).
async fn fails(args: &[String]) -> String {
    let child = Command::new(common::COUNTER)
        .arg("node")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn counter node");
    let mut guard = ChildGuard(Some(child));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "counter node {args:?} kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let child = guard.0.take().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!status.success(), "counter node {args:?} succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("counter: "),
        "the error is the last line: {stderr}"
    );
    last
}

fn node_args(id: u64, raft: &str, http: &str, data: &Path, certs: &Path, peers: &str) -> Vec<String> {
    vec![
        "--id".into(),
        id.to_string(),
        "--raft-addr".into(),
        raft.into(),
        "--http-addr".into(),
        http.into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--certs".into(),
        certs.display().to_string(),
        "--peers".into(),
        peers.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_fails_with_one_clear_line() {
    // A healthy node, to collide with.
    let mut cluster = Cluster::new(&[1, 2]).await;
    let boot = cluster.bootstrap_args(&[1]);
    cluster.start(1, &boot);
    cluster.wait_for_leader(&[1]).await;
    let spec = cluster.specs[&1].clone();
    let (raft, http) = (spec.raft.to_string(), spec.http.to_string());
    let peers = format!("1={raft}");
    let dir = cluster.dir.path().to_path_buf();
    let mut ports = Ports::new();
    let (free_raft, free_http) = (
        ports.udp().expect("a free UDP port").to_string(),
        ports.tcp().expect("a free TCP port").to_string(),
    );

    // A missing certificate names the file.
    let empty = dir.join("no-certs");
    std::fs::create_dir(&empty).unwrap();
    let line = fails(&node_args(
        1,
        &free_raft,
        &free_http,
        &dir.join("a"),
        &empty,
        &peers,
    ))
    .await;
    assert!(line.contains("cannot read") && line.contains("ca.pem"), "{line}");

    // Certificates without the admin token (a directory made before tokens existed):
    // the line names the file and how to add one.
    let no_token = dir.join("no-token");
    std::fs::create_dir(&no_token).unwrap();
    for file in ["ca.pem", "node-1.pem", "node-1.key"] {
        std::fs::copy(cluster.certs.join(file), no_token.join(file)).unwrap();
    }
    let line = fails(&node_args(
        1,
        &free_raft,
        &free_http,
        &dir.join("a"),
        &no_token,
        &peers,
    ))
    .await;
    assert!(
        line.contains("cannot read the admin token")
            && line.contains("admin.token")
            && line.contains("counter token"),
        "{line}"
    );
    // A token file that holds no token.
    let short = dir.join("short.token");
    std::fs::write(&short, "secret\n").unwrap();
    let mut args = node_args(1, &free_raft, &free_http, &dir.join("a"), &cluster.certs, &peers);
    args.extend(["--admin-token-file".into(), short.display().to_string()]);
    let line = fails(&args).await;
    assert!(
        line.contains("short.token is not an admin token") && line.contains("fewer than the 32"),
        "{line}"
    );

    // An id that --peers does not list.
    let line = fails(&node_args(
        2,
        &free_raft,
        &free_http,
        &dir.join("b"),
        &cluster.certs,
        &peers,
    ))
    .await;
    assert!(line.contains("node 2 is not in --peers (1)"), "{line}");

    // The running node's data directory is locked, and the error names its process.
    let line = fails(&node_args(
        1,
        &free_raft,
        &free_http,
        &spec.data_dir,
        &cluster.certs,
        &peers,
    ))
    .await;
    assert!(line.contains("is locked by process"), "{line}");

    // A data directory that cannot be one (a file is in the way).
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let line = fails(&node_args(
        1,
        &free_raft,
        &free_http,
        &file,
        &cluster.certs,
        &peers,
    ))
    .await;
    assert!(
        line.contains("cannot open the write-ahead log") && line.contains("a-file"),
        "{line}"
    );

    // Busy ports, Raft and HTTP.
    let line = fails(&node_args(
        1,
        &raft,
        &free_http,
        &dir.join("c"),
        &cluster.certs,
        &peers,
    ))
    .await;
    assert!(
        line.contains(&format!("cannot bind UDP socket on {raft}")),
        "{line}"
    );
    let line = fails(&node_args(
        1,
        &free_raft,
        &http,
        &dir.join("d"),
        &cluster.certs,
        &peers,
    ))
    .await;
    assert!(
        line.contains(&format!("cannot bind the HTTP API on {http}")),
        "{line}"
    );

    // The healthy node was never disturbed.
    assert!(cluster.client(&[1]).incr(1).await.is_ok());
}
