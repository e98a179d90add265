//! Deterministic simulation of raft-core under faults. See `sim/mod.rs`.

mod sim;

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

/// The soak's options for `seed`: 5,000 steps, membership changes and reads on even seeds.
fn soak_options(seed: u64) -> SimOptions {
    let opts = SimOptions::from_seed(seed, 5_000);
    if seed % 2 == 0 {
        opts.with_membership_and_reads()
    } else {
        opts
    }
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
