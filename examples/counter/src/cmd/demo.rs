//! `counter demo`: a 3-node cluster in one process, on the real transport and the real
//! write-ahead log, taken through a leader failure and a recovery.
//!
//! Nothing here is simulated: each node has its own QUIC endpoint with mutual TLS on
//! 127.0.0.1, its own log directory, and its own HTTP API, and every increment and read
//! goes through that API, exactly as with `counter node` processes. Stopping the leader
//! stops all of it (Raft tasks, log, endpoint, HTTP server), and restarting it reopens its
//! log from disk. The cluster is [`raft_service::cmd::demo::Cluster`].

use std::sync::Arc;
use std::time::Duration;

use raft_runtime::raft_core::NodeId;
use raft_service::Service;
use raft_service::cmd::demo::{Cluster, DemoDir, check, more, secs, step};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::client::{Client, ClientError};
use crate::node::CounterService;
use crate::outln;

pub use raft_service::cmd::demo::Args;

/// Increments before the leader is stopped, spread over the three nodes.
const FIRST_INCREMENTS: u64 = 30;
/// Increments while it is down: more than `SNAPSHOT_EVERY`, so that the new leader
/// snapshots and compacts its log past the stopped node's, and the node must catch up
/// from a snapshot rather than from log entries alone.
const INCREMENTS_WHILE_DOWN: u64 = 150;
/// How many increments are in flight at once while the leader is down: enough to show
/// the log writer committing several per `fsync`.
const CONCURRENCY: u64 = 10;
/// Snapshot every this many entries (the default, 10,000, would never trigger here).
const SNAPSHOT_EVERY: u64 = 100;
/// How long any one step may take before the demo gives up. Generous: the demo must pass
/// on a slow, busy machine too.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the demo; fails with the step that went wrong.
pub async fn run(args: Args) -> Result<(), Error> {
    let started = Instant::now();
    let demo_dir = DemoDir::new::<CounterService>(&args)?;
    let dir = demo_dir.path();
    outln!("counter demo: a 3-node cluster in this process, on QUIC with mutual TLS over 127.0.0.1")?;
    outln!("data: {}", dir.display())?;
    outln!()?;

    // Certificates, written the way `counter certs` writes them and read back the way
    // `counter node` reads them.
    let certs = dir.join("certs");
    crate::certs::write(&certs, &[1, 2, 3], false)?;
    let text = format!(
        "a development CA, certificates for nodes 1, 2, 3 and an admin token in {}",
        certs.display()
    );
    step(1, "certificates", &text)?;

    let mut raft = CounterService::raft_defaults();
    raft.snapshot_every = SNAPSHOT_EVERY;
    let mut cluster = Cluster::<CounterService>::start(dir, &certs, raft, STEP_TIMEOUT).await?;
    for (i, c) in cluster.configs().values().enumerate() {
        let text = format!(
            "node {}: raft {} (QUIC), http {}, log {}",
            c.id,
            c.raft_addr,
            c.http_addr,
            c.data_dir.display()
        );
        if i == 0 {
            step(2, "start", &text)?
        } else {
            more(&text)?
        }
    }

    let t = Instant::now();
    let (leader, term) = cluster.wait_for_leader(None).await?;
    step(
        3,
        "election",
        &format!("node {leader} leads (term {term}), elected in {:.1} s", secs(t)),
    )?;

    // Through every node in turn: followers forward the increments to the leader.
    let mut expected = 0;
    for i in 0..FIRST_INCREMENTS {
        let id = i % 3 + 1;
        let value = cluster.client::<Client>(&[id]).incr(1).await?;
        expected += 1;
        check(
            value,
            expected,
            &format!("increment {expected} through node {id}"),
        )?;
    }
    let text = format!(
        "{FIRST_INCREMENTS} increments over HTTP, {} through each node: value = {expected}",
        FIRST_INCREMENTS / 3
    );
    step(4, "increments", &text)?;

    let stopped = leader;
    let last_index = cluster.stop(stopped).await?;
    let text =
        format!("stopped node {stopped}: its Raft tasks, write-ahead log, QUIC endpoint and HTTP server");
    step(5, "stop leader", &text)?;
    let t = Instant::now();
    let (leader, term) = cluster.wait_for_leader(Some(stopped)).await?;
    let leader_changes = 1;
    more(&format!(
        "node {leader} leads (term {term}), elected in {:.1} s",
        secs(t)
    ))?;
    let survivors: Vec<NodeId> = cluster.nodes().keys().copied().collect();
    let value = cluster.client::<Client>(&survivors).get().await?;
    check(value, expected, "the value after the election")?;
    more(&format!(
        "value read through the survivors: {value} (nothing lost)"
    ))?;

    let done = increment_concurrently(cluster.client::<Client>(&survivors)).await?;
    expected += done;
    let value = cluster.client::<Client>(&survivors).get().await?;
    check(value, expected, "the value after the increments")?;
    let text = format!(
        "{done} more increments through nodes {} and {}, {CONCURRENCY} at a time: value = {value}",
        survivors[0], survivors[1]
    );
    step(6, "while down", &text)?;
    let compacted = cluster.nodes()[&leader]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.snapshot_index > last_index)
        .await;
    if let Ok(m) = compacted {
        more(&format!(
            "node {leader} snapshotted the counter at index {} and dropped the log before it",
            m.snapshot_index
        ))?;
    }

    let recovered = cluster.restart(stopped).await?;
    let text = format!(
        "node {stopped} reopened its write-ahead log: term {}, log up to index {}",
        recovered.term, recovered.last_log_index
    );
    step(7, "restart", &text)?;
    let target = cluster.nodes()[&leader].raft().metrics().borrow().commit;
    let caught_up = cluster.nodes()[&stopped]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.applied >= target && m.leader.is_some())
        .await
        .map_err(|_| format!("node {stopped} did not catch up to index {target}"))?;
    let how = if caught_up.snapshots_installed > 0 {
        format!("installed node {leader}'s snapshot, then the entries after it")
    } else {
        "replayed the entries it missed".to_string()
    };
    more(&format!(
        "node {stopped} caught up: {how}; applied up to index {}",
        caught_up.applied
    ))?;
    let value = cluster.client::<Client>(&[stopped]).get().await?;
    more(&format!("value read through node {stopped}: {value}"))?;

    for id in 1..=3 {
        let value = cluster.client::<Client>(&[id]).get().await?;
        check(value, expected, &format!("the value read through node {id}"))?;
    }
    step(8, "agreement", &format!("all 3 nodes read value = {expected}"))?;

    cluster.shutdown().await?;
    outln!()?;
    outln!(
        "demo ok: value={expected} leader_changes={leader_changes} ({:.1} s)",
        secs(started)
    )?;
    Ok(())
}

/// Sends `INCREMENTS_WHILE_DOWN` increments, `CONCURRENCY` at a time; returns how many.
async fn increment_concurrently(client: Client) -> Result<u64, Error> {
    let client = Arc::new(client);
    let per_worker = INCREMENTS_WHILE_DOWN / CONCURRENCY;
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        workers.spawn(async move {
            for _ in 0..per_worker {
                client.incr(1).await?;
            }
            Ok::<_, ClientError>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(per_worker * CONCURRENCY)
}
