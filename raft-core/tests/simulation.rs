//! Deterministic simulation of raft-core under faults. See `sim/mod.rs`.

mod sim;

use sim::multi::MultiSim;
use sim::{Sim, SimOptions};

const STEPS: u64 = 2_000;

#[derive(Default, Debug)]
struct Totals {
    seeds: u64,
    steps: u64,
    elections: u64,
    proposals: u64,
    committed: u64,
    crashes: u64,
    snapshots: u64,
    reads: u64,
    reads_failed: u64,
    conf_changes: u64,
    transfers: u64,
    quiescences: u64,
    wakes: u64,
}

fn run_seeds(seeds: std::ops::Range<u64>, opts: impl Fn(u64) -> SimOptions) -> Totals {
    let mut t = Totals::default();
    for seed in seeds {
        let mut sim = Sim::new(seed, opts(seed));
        if let Err(e) = sim.run() {
            panic!("{e}");
        }
        t.seeds += 1;
        t.steps += sim.opts.steps;
        t.elections += sim.elections;
        t.proposals += sim.proposals_accepted;
        t.committed += sim.committed_entries();
        t.crashes += sim.crashes;
        t.snapshots += sim.snapshots_installed;
        t.reads += sim.reads_completed;
        t.reads_failed += sim.reads_failed;
        t.conf_changes += sim.conf_changes;
        t.transfers += sim.transfers;
        t.quiescences += sim.quiescences;
        t.wakes += sim.wakes;
    }
    println!("{t:?}");
    t
}

/// 500 seeds of 2,000 steps each over 3 and 5 nodes with loss, duplication, reordering,
/// partitions, crash-restarts and compaction (the mix varies with the seed).
#[test]
fn safety_and_liveness_over_500_seeds() {
    let t = run_seeds(0..500, |seed| SimOptions::from_seed(seed, STEPS));
    // Guard against a simulation that silently stops exercising the protocol.
    assert!(
        t.elections > 500 && t.committed > 10 * t.seeds && t.snapshots > 100 && t.crashes > 300,
        "{t:?}"
    );
}

/// The same seeds and steps with random membership changes (3 to 7 nodes: learners added,
/// promoted, demoted, removed, joint replacements, wiped and re-added nodes), leadership
/// transfers, and ReadIndex and lease reads checked for linearizability.
#[test]
fn membership_reads_and_transfers_over_500_seeds() {
    let t = run_seeds(0..500, |seed| {
        SimOptions::from_seed(seed, STEPS).with_membership_and_reads()
    });
    assert!(
        t.conf_changes > 500 && t.reads > 3_000 && t.transfers > 100,
        "{t:?}"
    );
}

/// Seeds with quiescence: the driver quiesces idle leaders at half the ticks and wakes
/// quiescent followers that cannot reach their leader (see `SimOptions::quiesce`), with
/// membership changes, transfers and reads (lease reads must not outlive a quiescence) on
/// half of them.
#[test]
fn quiescence_over_300_seeds() {
    let t = run_seeds(0..300, |seed| {
        let opts = SimOptions::from_seed(seed, STEPS).with_quiescence();
        if seed % 2 == 0 {
            opts.with_membership_and_reads()
        } else {
            opts
        }
    });
    assert!(
        t.quiescences > 150 && t.wakes > 30 && t.reads > 600 && t.committed > 10 * t.seeds,
        "{t:?}"
    );
}

/// Four groups on the same 3 or 5 nodes, sharing each node's log (one sync makes every
/// group's writes durable), timer and network; crashes lose every group's un-synced
/// writes at once, partitions cut every group alike (see `sim/multi.rs`). Reads on all
/// seeds, quiescence on half. Replay one: `RAFT_SIM_MULTI_SEED=<seed> cargo test -p
/// raft-core --test simulation several_groups -- --nocapture`; run more with
/// `RAFT_SIM_MULTI_SEEDS=<count>` (and `--release`).
#[test]
fn several_groups_sharing_nodes_over_100_seeds() {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let seeds = match (var("RAFT_SIM_MULTI_SEED"), var("RAFT_SIM_MULTI_SEEDS")) {
        (Some(seed), _) => seed..seed + 1,
        (None, count) => 0..count.unwrap_or(100),
    };
    let (mut shared_syncs, mut committed, mut quiescences, mut reads, mut crashes) = (0, 0, 0, 0, 0);
    let n = seeds.end - seeds.start;
    for seed in seeds {
        // Each group makes about a quarter of the events: four times the steps.
        let mut opts = SimOptions::from_seed(seed, 4 * STEPS);
        opts.reads = true;
        if seed % 2 == 1 {
            opts = opts.with_quiescence();
        }
        let mut multi = MultiSim::new(seed, 4, opts);
        if let Err(e) = multi.run() {
            panic!("{e}");
        }
        shared_syncs += multi.shared_syncs;
        for g in multi.groups() {
            committed += g.committed_entries();
            quiescences += g.quiescences;
            reads += g.reads_completed;
            crashes += g.crashes;
        }
    }
    println!(
        "{n} seeds: shared syncs {shared_syncs}, committed {committed}, quiescences {quiescences}, reads {reads}, crashes {crashes}"
    );
    if n >= 100 {
        let per_100 = |x: u64| x * 100 / n;
        assert!(
            per_100(shared_syncs) > 2_000
                && per_100(committed) > 4_000
                && per_100(quiescences) > 30
                && per_100(reads) > 2_000
                && per_100(crashes) > 1_000,
            "the groups stopped exercising what they share"
        );
    }
}

/// Replays one seed: `RAFT_SIM_SEED=<seed> [RAFT_SIM_VERBOSE=1] cargo test -p raft-core
/// --test simulation replay -- --nocapture`. Without the variable it runs seed 0.
#[test]
fn replay() {
    let seed: u64 = std::env::var("RAFT_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let steps: u64 = std::env::var("RAFT_SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS);
    let mut opts = SimOptions::from_seed(seed, steps);
    if std::env::var("RAFT_SIM_MEMBERSHIP").is_ok() {
        opts = opts.with_membership_and_reads();
    }
    if std::env::var("RAFT_SIM_QUIESCE").is_ok() {
        opts = opts.with_quiescence();
    }
    let mut sim = Sim::new(seed, opts);
    if let Err(e) = sim.run() {
        panic!("{e}");
    }
}

/// A long soak (half the seeds with membership changes and reads):
/// `cargo test -p raft-core --release --test simulation soak -- --ignored --nocapture`.
/// `RAFT_SIM_SOAK_SEEDS` sets the number of seeds (default 20,000).
#[test]
#[ignore]
fn soak() {
    let n: u64 = std::env::var("RAFT_SIM_SOAK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    run_seeds(1_000_000..1_000_000 + n, soak_options);
}

/// The soak's options for `seed`: 5,000 steps, membership changes and reads on even seeds,
/// quiescence on half of each kind (`seed / 2` odd).
fn soak_options(seed: u64) -> SimOptions {
    let mut opts = SimOptions::from_seed(seed, 5_000);
    if seed % 2 == 0 {
        opts = opts.with_membership_and_reads();
    }
    if (seed / 2) % 2 == 1 {
        opts = opts.with_quiescence();
    }
    opts
}

/// Seeds the soak once failed on, replayed with the soak's options. 1,006,824: a lone voter
/// won a term on a tick and crashed before the term was durable; a node removed by a not yet
/// committed change then won the same term with that voter's vote (legitimately: the first
/// leadership was never visible, and the simulator now says so).
const SOAK_REGRESSIONS: &[u64] = &[1_006_824];

#[test]
fn soak_regressions() {
    for &seed in SOAK_REGRESSIONS {
        run_seeds(seed..seed + 1, soak_options);
    }
}
