//! The protocol's hot path: proposals through propose -> Ready -> persisted -> committed ->
//! applied, on one node and on a three-node loop, with in-memory storage and no network.
//!
//! `cargo bench -p raft-core --bench hot_path`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use raft_core::{ConfState, Config, MemStorage, Message, RawNode, Role};

const PAYLOAD: usize = 128;

fn node(id: u64, voters: &[u64]) -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state(ConfState::with_voters(voters.iter().copied()));
    let mut cfg = Config::new(id);
    cfg.max_inflight_msgs = 4096;
    cfg.max_uncommitted_bytes = 1 << 30;
    RawNode::new(cfg, storage, 0).unwrap()
}

/// One synchronous driver pass over every node; returns the number of entries applied.
fn drive(nodes: &mut [RawNode<MemStorage>], inbox: &mut Vec<Message>) -> usize {
    let mut applied = 0;
    for node in nodes.iter_mut() {
        if !node.has_ready() {
            continue;
        }
        let mut ready = node.ready().unwrap();
        inbox.append(&mut ready.messages);
        if let Some(mut p) = ready.persist.take() {
            node.storage_mut().persist(&p).unwrap();
            node.on_persisted(p.token).unwrap();
            inbox.append(&mut p.messages);
        }
        if let Some(last) = ready.committed_entries.last() {
            applied += ready.committed_entries.len();
            node.on_applied(last.index).unwrap();
        }
    }
    applied
}

fn settle(nodes: &mut [RawNode<MemStorage>]) -> usize {
    let mut applied = 0;
    let mut inbox = Vec::new();
    loop {
        let n = drive(nodes, &mut inbox);
        applied += n;
        if inbox.is_empty() && n == 0 && nodes.iter().all(|n| !n.has_ready()) {
            return applied;
        }
        for m in inbox.drain(..) {
            let to = (m.to - 1) as usize;
            nodes[to].step(m).unwrap();
        }
    }
}

/// Keeps memory flat: compacts every node's log behind its applied index.
fn compact(nodes: &mut [RawNode<MemStorage>]) {
    for n in nodes.iter_mut() {
        let applied = n.status().applied;
        if applied > raft_core::LogStorage::first_index(n.storage()) + 50_000 {
            let meta = n.snapshot_meta_at(applied).unwrap();
            n.storage_mut().compact(meta).unwrap();
        }
    }
}

fn cluster(size: u64) -> Vec<RawNode<MemStorage>> {
    let voters: Vec<u64> = (1..=size).collect();
    let mut nodes: Vec<RawNode<MemStorage>> = voters.iter().map(|&id| node(id, &voters)).collect();
    nodes[0].campaign().unwrap();
    settle(&mut nodes);
    assert_eq!(nodes[0].role(), Role::Leader);
    nodes
}

fn bench(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    for size in [1u64, 3] {
        for batch in [1usize, 64, 1024] {
            let mut group = c.benchmark_group(format!("{size}_node{}", if size > 1 { "s" } else { "" }));
            group.throughput(Throughput::Elements(batch as u64));
            let mut nodes = cluster(size);
            group.bench_function(format!("batch_{batch}"), |b| {
                b.iter_batched(
                    || (),
                    |()| {
                        for _ in 0..batch {
                            nodes[0].propose(payload.clone()).unwrap();
                        }
                        let applied = settle(&mut nodes);
                        compact(&mut nodes);
                        black_box(applied)
                    },
                    BatchSize::SmallInput,
                )
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
