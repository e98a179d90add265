//! `kv demo`: a 3-node cluster in one process, on the real transport, the real
//! write-ahead log and a real database per node, taken through a leader failure and a
//! recovery.
//!
//! Nothing here is simulated: each node has its own QUIC endpoint with mutual TLS on
//! 127.0.0.1, its own data directory (write-ahead log and database), and its own HTTP API,
//! and every write and read goes through that API, exactly as with `kv node` processes.
//! The cluster is [`raft_service::cmd::demo::Cluster`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_runtime::raft_core::NodeId;
use raft_service::cmd::demo::{Cluster, DemoDir, check, more, secs, step};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, ClientError, Scan};
use crate::http::{Consistency, MAX_SCAN_LIMIT};
use crate::node::{KvService, NodeConfig};
use crate::{Error, outln};

pub use raft_service::cmd::demo::Args;

/// Keys written before the leader is stopped, spread over the three nodes.
const FIRST_KEYS: usize = 30;
/// Keys written while it is down: more than `SNAPSHOT_EVERY`, so that the new leader
/// snapshots its database and compacts its log past the stopped node's, and the node must
/// catch up from a snapshot streamed out of the leader's database.
const KEYS_WHILE_DOWN: usize = 120;
/// How many writes are in flight at once while the leader is down.
const CONCURRENCY: usize = 10;
/// Snapshot every this many entries (the default, 10,000, would never trigger here).
const SNAPSHOT_EVERY: u64 = 50;
/// How long any one step may take before the demo gives up. Generous: the demo must pass
/// on a slow, busy machine too.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the demo; fails with the step that went wrong.
pub async fn run(args: Args) -> Result<(), Error> {
    let started = Instant::now();
    let demo_dir = DemoDir::new::<KvService>(&args)?;
    let dir = demo_dir.path();
    outln!("kv demo: a 3-node key-value cluster in this process, on QUIC with mutual TLS over 127.0.0.1")?;
    outln!("data: {}", dir.display())?;
    outln!()?;

    let certs = dir.join("certs");
    raft_service::certs::write(&certs, &[1, 2, 3], false)?;
    let text = format!(
        "a development CA, certificates for nodes 1, 2, 3 and an admin token in {}",
        certs.display()
    );
    step(1, "certificates", &text)?;

    let mut raft = NodeConfig::raft_defaults();
    raft.snapshot_every = SNAPSHOT_EVERY;
    // Compact the log right up to each snapshot, so that a node that missed entries
    // covered by a snapshot receives the snapshot.
    raft.log_kept_entries = 0;
    let mut cluster = Cluster::<KvService>::start(dir, &certs, raft, STEP_TIMEOUT).await?;
    for (i, c) in cluster.configs().values().enumerate() {
        let text = format!(
            "node {}: raft {} (QUIC), http {}, data {} (wal/ and kv/)",
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

    // Through every node in turn: followers forward the writes to the leader.
    let mut expected = BTreeMap::new();
    for i in 0..FIRST_KEYS {
        let id = i as NodeId % 3 + 1;
        let (key, value) = entry(i);
        let previous = cluster.client::<Client>(&[id]).put(&key, value.clone()).await?;
        check(previous, None, &format!("the previous value of {key}"))?;
        expected.insert(key, value);
    }
    let text = format!(
        "{FIRST_KEYS} keys put over HTTP, {} through each node",
        FIRST_KEYS / 3
    );
    step(4, "writes", &text)?;
    let all = cluster.client::<Client>(&[1, 2, 3]);
    let swapped = all
        .cas("key-000", Some(value(0)), Some(Bytes::from_static(b"swapped")))
        .await?;
    check(swapped.swapped, true, "the compare-and-swap of key-000")?;
    let refused = all
        .cas("key-001", Some(Bytes::from_static(b"wrong")), None)
        .await?;
    check(refused.swapped, false, "the compare-and-swap of key-001")?;
    expected.insert("key-000".into(), Bytes::from_static(b"swapped"));
    let deleted = all.delete("key-002").await?;
    check(deleted, Some(value(2)), "the value deleted from key-002")?;
    expected.remove("key-002");
    more("compare-and-swap key-000 from value-000 to swapped: swapped")?;
    more("compare-and-swap key-001 from wrong: refused, the value is value-001")?;
    more("deleted key-002")?;

    let stopped = leader;
    // Nothing is being written: what the database holds now is what it holds once stopped.
    let db_applied = cluster.nodes()[&stopped].service().store().applied()?;
    let last_index = cluster.stop(stopped).await?;
    let text = format!(
        "stopped node {stopped}: its Raft tasks, write-ahead log, database, QUIC endpoint and HTTP server"
    );
    step(5, "stop leader", &text)?;
    let t = Instant::now();
    let (leader, term) = cluster.wait_for_leader(Some(stopped)).await?;
    let leader_changes = 1;
    more(&format!(
        "node {leader} leads (term {term}), elected in {:.1} s",
        secs(t)
    ))?;
    let survivors: Vec<NodeId> = cluster.nodes().keys().copied().collect();
    let read = cluster
        .client::<Client>(&survivors)
        .get("key-000", Consistency::Linearizable)
        .await?;
    check(
        read,
        Some(Bytes::from_static(b"swapped")),
        "key-000 after the election",
    )?;
    agree(&cluster, &survivors, &expected).await?;
    more(&format!(
        "all {} keys read through the survivors, linearizably: nothing lost",
        expected.len()
    ))?;

    let written = put_concurrently(cluster.client::<Client>(&survivors)).await?;
    expected.extend(written);
    let text = format!(
        "{KEYS_WHILE_DOWN} more keys through nodes {} and {}, {CONCURRENCY} at a time",
        survivors[0], survivors[1]
    );
    step(6, "while down", &text)?;
    let compacted = cluster.nodes()[&leader]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.first_log_index > last_index + 1)
        .await;
    if let Ok(m) = compacted {
        more(&format!(
            "node {leader} snapshotted its database at index {} and dropped the log before it",
            m.snapshot_index
        ))?;
    }

    cluster.restart(stopped).await?;
    let text = format!(
        "node {stopped} reopened its write-ahead log and its database, which holds the state up to index {db_applied}: the runtime delivers only what follows"
    );
    step(7, "restart", &text)?;
    let target = cluster.nodes()[&leader].raft().metrics().borrow().commit;
    let caught_up = cluster.nodes()[&stopped]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.applied >= target && m.leader.is_some())
        .await
        .map_err(|_| format!("node {stopped} did not catch up to index {target}"))?;
    let how = if caught_up.snapshots_installed > 0 {
        format!(
            "installed node {leader}'s snapshot (streamed from its database into a new file), then the entries after it"
        )
    } else {
        "applied the entries it missed".to_string()
    };
    more(&format!(
        "node {stopped} caught up: {how}; applied up to index {}",
        caught_up.applied
    ))?;

    for id in 1..=3 {
        agree(&cluster, &[id], &expected).await?;
    }
    step(
        8,
        "agreement",
        &format!("all 3 nodes read the same {} keys and values", expected.len()),
    )?;

    cluster.shutdown().await?;
    outln!()?;
    outln!(
        "demo ok: keys={} leader_changes={leader_changes} ({:.1} s)",
        expected.len(),
        secs(started)
    )?;
    Ok(())
}

/// Key and value number `i`.
fn entry(i: usize) -> (String, Bytes) {
    (format!("key-{i:03}"), value(i))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i:03}"))
}

/// Checks that a linearizable scan of all keys through `ids` answers `expected`.
async fn agree(
    cluster: &Cluster<KvService>,
    ids: &[NodeId],
    expected: &BTreeMap<String, Bytes>,
) -> Result<(), Error> {
    let scan = Scan {
        limit: Some(MAX_SCAN_LIMIT),
        ..Scan::default()
    };
    let page = cluster
        .client::<Client>(ids)
        .scan(&scan, Consistency::Linearizable)
        .await?;
    let read: BTreeMap<String, Bytes> = page.entries.into_iter().map(|e| (e.key, e.value.0)).collect();
    check(&read, expected, &format!("the keys read through nodes {ids:?}"))
}

/// Puts `KEYS_WHILE_DOWN` keys after the first ones, `CONCURRENCY` at a time; returns
/// them.
async fn put_concurrently(client: Client) -> Result<Vec<(String, Bytes)>, Error> {
    let client = Arc::new(client);
    let mut workers = JoinSet::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        workers.spawn(async move {
            let mut written = Vec::new();
            for i in (FIRST_KEYS + worker..FIRST_KEYS + KEYS_WHILE_DOWN).step_by(CONCURRENCY) {
                let (key, value) = entry(i);
                client.put(&key, value.clone()).await?;
                written.push((key, value));
            }
            Ok::<_, ClientError>(written)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}
