//! The key-value state machine (redb on disk) in a 3-node cluster on the in-memory network,
//! under a seeded schedule of faults: partitions, paused nodes, lost messages, restarts and
//! leadership transfers, with snapshots taken and installed all along (a snapshot every 40
//! entries, a short log kept behind it). Concurrent clients put, delete, compare-and-swap
//! and read (linearizable and lease reads) a few keys on any node; every outcome is
//! recorded, and the history is checked for linearizability against a register per key by
//! porcupine-rs. After healing, every node's database must hold the same keys and values.
//!
//! Knobs: `RAFT_KV_FAULTS_SEED` (replay a schedule), `RAFT_KV_FAULTS_SECS` (length of the
//! fault phase; default 12).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv::{Command, KvStore, Response};
use porcupine_rs::{CheckResult, Operation};
use raft_runtime::{Config, NodeId, ProposeError, Raft, ReadError};
use raft_testkit::{Cluster, InMemory};
use raft_tests::kv_model::{self, Input, KvModel, Output, Value};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::Mutex;

const NODES: u64 = 3;
const CLIENTS: u32 = 5;
const KEYS: usize = 4;

type KvCluster = Cluster<KvStore, InMemory>;

fn config() -> Config {
    Config {
        tick_interval: Duration::from_millis(10),
        propose_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        snapshot_every: 40,
        log_kept_entries: 10,
        forward_proposals: true,
        ..Config::default()
    }
}

fn text(v: Option<Bytes>) -> Value {
    v.map(|b| String::from_utf8(b.to_vec()).expect("values are text"))
}

fn bytes(v: &Value) -> Option<Bytes> {
    v.as_ref().map(|s| Bytes::copy_from_slice(s.as_bytes()))
}

/// What the clients did, for the report.
#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    unknown: AtomicU64,
    not_applied: AtomicU64,
    reads: AtomicU64,
    reads_failed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_histories_under_faults_are_linearizable() {
    let seed: u64 = std::env::var("RAFT_KV_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            (u64::from(std::process::id()) << 20 ^ u64::from(nanos)) % 1_000_000
        });
    let secs: u64 = std::env::var("RAFT_KV_FAULTS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("kv faults: seed {seed} (RAFT_KV_FAULTS_SEED={seed} replays the schedule), {secs} s");

    let data = tempfile::tempdir().unwrap();
    let root = data.path().to_path_buf();
    let cluster: KvCluster = Cluster::start(
        NODES,
        config(),
        InMemory::new(),
        move |id: NodeId, previous: Option<&KvStore>| {
            // A restart keeps the node's database, as a process restart would.
            previous
                .cloned()
                .unwrap_or_else(|| KvStore::open(root.join(format!("kv-{id}"))).unwrap())
        },
    )
    .await;
    let cluster = Arc::new(Mutex::new(cluster));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());

    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let cluster = cluster.clone();
        let stop = stop.clone();
        let tally = tally.clone();
        let seed = seed.wrapping_mul(31).wrapping_add(u64::from(client));
        clients.push(tokio::spawn(async move {
            run_client(client, seed, cluster, stop, start, tally).await
        }));
    }

    // The faults, one at a time, each undone before the next.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let victim = 1 + rng.next_u64() % NODES;
        let hold = Duration::from_millis(200 + rng.next_u64() % 600);
        let kind = match rng.next_u64() % 6 {
            0 => {
                cluster.lock().await.plugins.net.isolate(victim, &[1, 2, 3]);
                tokio::time::sleep(hold).await;
                cluster.lock().await.plugins.net.heal();
                "partition"
            }
            1 => {
                cluster.lock().await.plugins.net.pause(victim);
                tokio::time::sleep(hold).await;
                cluster.lock().await.plugins.net.resume(victim);
                "pause"
            }
            2 => {
                cluster
                    .lock()
                    .await
                    .plugins
                    .net
                    .set_drop_rate(0.2, rng.next_u64());
                tokio::time::sleep(hold).await;
                cluster.lock().await.plugins.net.heal();
                "message loss"
            }
            3 => {
                let mut c = cluster.lock().await;
                c.stop(victim).await;
                drop(c);
                tokio::time::sleep(hold).await;
                cluster.lock().await.restart(victim).await;
                "restart"
            }
            4 => {
                let c = cluster.lock().await;
                let leader = c.leader().await;
                let to = 1 + (leader + rng.next_u64() % (NODES - 1)) % NODES;
                // A transfer that does not finish in time is no failure of the cluster.
                let _ = c.node(leader).transfer_leader(to).await;
                "leader transfer"
            }
            _ => {
                tokio::time::sleep(hold).await;
                "calm"
            }
        };
        *faults.entry(kind).or_default() += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let mut history: Vec<Operation<KvModel>> = Vec::new();
    for c in clients {
        history.extend(c.await.expect("client task"));
    }

    // Every node converges on the same keys and values.
    let c = Arc::try_unwrap(cluster).ok().expect("clients done").into_inner();
    let leader = c.leader().await;
    let last = c
        .node(leader)
        .current_metrics()
        .await
        .expect("the leader answers")
        .last_log_index;
    c.wait_applied(last).await;
    let contents = |id: NodeId| c.state_machines[&id].range("", 10_000).unwrap();
    let expected = contents(leader);
    for id in 1..=NODES {
        assert_eq!(
            contents(id),
            expected,
            "node {id} differs from the leader {leader}"
        );
    }
    let installed: u64 = (1..=NODES).map(|id| c.metrics(id).snapshots_installed).sum();
    let taken: u64 = (1..=NODES).map(|id| c.metrics(id).snapshots_taken).sum();

    let verdict = kv_model::check(&history, Duration::from_secs(120));
    eprintln!(
        "kv faults: seed {seed}: {} operations checked ({} writes acknowledged, {} with unknown \
         outcomes, {} definitely not applied; {} reads, {} failed); faults {faults:?}; \
         snapshots taken {taken}, installed {installed}; verdict {verdict:?}",
        history.len(),
        tally.acknowledged.load(Ordering::Relaxed),
        tally.unknown.load(Ordering::Relaxed),
        tally.not_applied.load(Ordering::Relaxed),
        tally.reads.load(Ordering::Relaxed),
        tally.reads_failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        verdict,
        CheckResult::Ok,
        "seed {seed}: the history is not linearizable"
    );
    assert!(
        tally.acknowledged.load(Ordering::Relaxed) > 50 && tally.reads.load(Ordering::Relaxed) > 50,
        "seed {seed}: too little got through to test anything"
    );
    c.shutdown().await;
}

/// One client: random operations on random keys through random nodes until told to stop.
async fn run_client(
    client: u32,
    seed: u64,
    cluster: Arc<Mutex<KvCluster>>,
    stop: Arc<AtomicBool>,
    start: Instant,
    tally: Arc<Tally>,
) -> Vec<Operation<KvModel>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut history = Vec::new();
    let mut seen: Vec<Value> = vec![None; KEYS];
    let mut n = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let k = (rng.next_u64() % KEYS as u64) as usize;
        let key = format!("k{k}");
        let node: Raft<KvStore> = {
            let c = cluster.lock().await;
            let id = 1 + rng.next_u64() % NODES;
            match c.nodes.get(&id) {
                Some(node) => node.clone(),
                None => continue,
            }
        };
        let fresh = format!("c{client}-{n}");
        let roll = rng.next_u64() % 100;
        if roll < 40 {
            let lease = roll < 20;
            let call = now();
            let read_key = key.clone();
            let read = move |sm: &KvStore| sm.get(&read_key);
            let result = if lease {
                node.lease_read(read).await
            } else {
                node.read(read).await
            };
            match result {
                Ok(Ok(v)) => {
                    let v = text(v);
                    seen[k] = v.clone();
                    tally.reads.fetch_add(1, Ordering::Relaxed);
                    history.push(kv_model::operation(
                        client,
                        &key,
                        Input::Get,
                        call,
                        Some((now(), Output::Read(v))),
                    ));
                }
                Ok(Err(e)) => panic!("reading {key}: the database failed: {e}"),
                // Reads that fail tell nothing; these are the failures faults cause.
                Err(
                    ReadError::Timeout
                    | ReadError::NotLeader { .. }
                    | ReadError::LeadershipLost
                    | ReadError::ShuttingDown
                    | ReadError::Busy(_),
                ) => {
                    tally.reads_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        let (input, command) = if roll < 70 {
            (
                Input::Put(fresh.clone()),
                Command::Put {
                    key: key.clone(),
                    value: Bytes::from(fresh.clone().into_bytes()),
                },
            )
        } else if roll < 90 {
            let expected = if rng.next_u64() % 4 == 0 {
                None
            } else {
                seen[k].clone()
            };
            let new = Some(fresh.clone());
            (
                Input::Cas {
                    expected: expected.clone(),
                    new: new.clone(),
                },
                Command::CompareAndSwap {
                    key: key.clone(),
                    expected: bytes(&expected),
                    new: bytes(&new),
                },
            )
        } else {
            (Input::Delete, Command::Delete { key: key.clone() })
        };
        let call = now();
        match node.propose(command).await {
            Ok(response) => {
                let output = match response {
                    Response::Previous(p) => Output::Previous(text(p)),
                    Response::Swapped { swapped, current } => {
                        seen[k] = text(current.clone());
                        Output::Swapped {
                            swapped,
                            current: text(current),
                        }
                    }
                    Response::Refused(why) => panic!("a valid command was refused: {why}"),
                };
                tally.acknowledged.fetch_add(1, Ordering::Relaxed);
                history.push(kv_model::operation(
                    client,
                    &key,
                    input,
                    call,
                    Some((now(), output)),
                ));
            }
            Err(e) if e.is_definitely_not_applied() => {
                tally.not_applied.fetch_add(1, Ordering::Relaxed);
            }
            Err(ProposeError::Timeout | ProposeError::Unknown(_)) => {
                tally.unknown.fetch_add(1, Ordering::Relaxed);
                history.push(kv_model::operation(client, &key, input, call, None));
            }
            Err(e) => panic!("an error the test does not expect: {e}"),
        }
    }
    history
}
