//! SIGKILL at the three moments a snapshot is most fragile, each followed by a restart that
//! must recover and converge, with every acknowledged write kept:
//!
//! 1. while a node writes a snapshot of its own database (its log store's temporary
//!    snapshot file exists);
//! 2. while a node that joins receives the leader's snapshot (its log store is staging it:
//!    the temporary file of the staged snapshot exists);
//! 3. while a node that joins swaps the received snapshot into its database (the
//!    database's restore file exists).
//!
//! Each moment is caught by watching the node's data directory for the file that only
//! exists then; the node is killed the moment it appears.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::procs::{Node, Nodes, data_dir, metrics, start, start_joining, status};
use common::{DEADLINE, eventually, sample};
use kv::client::Client;
use kv::http::Consistency;
use tokio::time::Instant;

/// Values of 4 KiB: a few thousand keys make snapshots of several MiB, long enough to
/// write that the file being written can be seen.
const VALUE: usize = 4 << 10;
/// Snapshot often, and keep no log behind a snapshot: a joining node needs the snapshot.
const FLAGS: &[&str] = &["--snapshot-every", "400", "--log-kept-entries", "0"];

fn value(i: usize) -> Bytes {
    Bytes::from(format!("{i:08}").repeat(VALUE / 8))
}

/// Writes keys `from..to` through the nodes at `addrs`, 8 at a time; returns the keys
/// acknowledged.
async fn load(addrs: &[String], from: usize, to: usize) -> Vec<usize> {
    let mut acknowledged = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let client = Client::new(addrs).with_deadline(DEADLINE);
        tasks.spawn(async move {
            let mut done = Vec::new();
            for i in (from + lane..to).step_by(8) {
                // A write whose node was killed under it may fail: it is not counted.
                if client.put(&format!("key-{i:06}"), value(i)).await.is_ok() {
                    done.push(i);
                }
            }
            done
        });
    }
    while let Some(done) = tasks.join_next().await {
        acknowledged.extend(done.expect("load task"));
    }
    acknowledged
}

/// Watches `dir` until a file whose name `matches` appears, then SIGKILLs `node`.
/// Returns whether it did before `until`.
async fn kill_when(dir: PathBuf, matches: fn(&str) -> bool, node: &mut Node, until: Instant) -> bool {
    while Instant::now() < until {
        let seen = std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_str().is_some_and(matches))
        });
        if seen {
            node.process.kill();
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

fn snapshot_tmp(name: &str) -> bool {
    name.starts_with("snap-") && name.ends_with(".tmp")
}

fn restore_file(name: &str) -> bool {
    name.ends_with(".restore")
}

/// Waits until every node answers, has applied what the leader committed, and holds every
/// acknowledged key in its own database.
async fn converged(nodes: &Nodes, acknowledged: &[usize]) {
    let http = common::http();
    let commit = eventually("the cluster's commit index", || async {
        let mut commit = None;
        for node in &nodes.0 {
            let s = status(&http, node).await?;
            if s.leader == Some(s.id) {
                commit = Some(s.commit);
            }
        }
        commit
    })
    .await;
    for node in &nodes.0 {
        eventually("every node to apply what was committed", || async {
            let s = status(&http, node).await?;
            (s.applied >= commit).then_some(())
        })
        .await;
        let local = Client::new([node.http.to_string()]).with_deadline(DEADLINE);
        for &i in acknowledged.iter().step_by(37) {
            let got = local
                .get(&format!("key-{i:06}"), Consistency::Local)
                .await
                .expect("a local read");
            assert_eq!(got, Some(value(i)), "key {i} on {}", node.http);
        }
    }
}

async fn join(nodes: &mut Nodes, dir: &Path, certs: &Path, id: usize) {
    nodes.0.push(start_joining(dir, certs, id, nodes, FLAGS));
    let node = nodes.0.last().unwrap();
    // Added in the background: the command waits for the node to catch up, which it
    // does only after the restart below.
    let args = vec![
        "add-node".to_string(),
        "--certs".into(),
        certs.display().to_string(),
        "--cluster".into(),
        nodes.0[..3]
            .iter()
            .map(|n| n.http.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "--id".into(),
        id.to_string(),
        "--raft-addr".into(),
        node.raft.to_string(),
        "--http-addr".into(),
        node.http.to_string(),
    ];
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_kv(&args).await
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_a_snapshot_is_written_received_or_swapped_then_restart_converges() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::write_certs(dir.path(), "1,2,3,4,5").await;
    let mut nodes = start(dir.path(), &certs, FLAGS);
    let all: Vec<String> = nodes.0.iter().map(|n| n.http.to_string()).collect();
    let mut acknowledged = load(&all, 0, 300).await;

    // 1. Killed while writing a snapshot of its own (node 3: leader or not).
    let wal = data_dir(dir.path(), 3).join("wal");
    let until = Instant::now() + DEADLINE;
    let (killed, more) = {
        let victim = &mut nodes.0[2];
        tokio::join!(
            kill_when(wal, snapshot_tmp, victim, until),
            load(&all, 300, 1_500)
        )
    };
    assert!(killed, "node 3 never wrote a snapshot");
    acknowledged.extend(more);
    nodes.0[2].process.restart().expect("restart node 3");
    converged(&nodes, &acknowledged).await;

    // 2. Killed while receiving the leader's snapshot (node 4 joins).
    join(&mut nodes, dir.path(), &certs, 4).await;
    let wal = data_dir(dir.path(), 4).join("wal");
    let killed = kill_when(wal, snapshot_tmp, &mut nodes.0[3], Instant::now() + DEADLINE).await;
    assert!(killed, "node 4 never received a snapshot");
    nodes.0[3].process.restart().expect("restart node 4");
    converged(&nodes, &acknowledged).await;
    let http = common::http();
    assert!(
        sample(
            &metrics(&http, &nodes.0[3]).await,
            "raft_snapshots_installed_total"
        ) >= 1
    );

    // 3. Killed while swapping the received snapshot into its database (node 5 joins).
    join(&mut nodes, dir.path(), &certs, 5).await;
    let kv_dir = data_dir(dir.path(), 5).join("kv");
    let killed = kill_when(kv_dir, restore_file, &mut nodes.0[4], Instant::now() + DEADLINE).await;
    assert!(killed, "node 5 never restored a snapshot");
    nodes.0[4].process.restart().expect("restart node 5");
    // Writes go on, and every node, the three killed ones included, converges.
    acknowledged.extend(load(&all, 1_500, 1_600).await);
    converged(&nodes, &acknowledged).await;

    for node in &mut nodes.0 {
        let stopped = node.process.terminate_within(DEADLINE).await;
        assert!(
            stopped.is_some_and(|s| s.success()),
            "SIGTERM ends a node with status 0"
        );
    }
}
