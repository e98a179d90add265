//! Several groups on the same nodes, as a multi-group driver runs them: one log per node
//! whose sync makes every group's queued writes durable at once, one timer per node
//! ticking every group, one network, and crashes and partitions that hit every group on a
//! node together (a crash loses the un-synced writes of all of them). Each group is a
//! [`Sim`] of its own, with its own safety checks; this loop makes the node-wide events
//! and leaves the rest (deliveries, driver passes, proposals, reads, compaction) to the
//! groups. With quiescence on, a node wakes the quiescent followers of every group whose
//! leader's node it cannot reach, as a liveness signal per peer node would.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{Fail, Sim, SimOptions, random_partition};
use raft_core::NodeId;

pub struct MultiSim {
    pub seed: u64,
    groups: Vec<Sim>,
    rng: ChaCha8Rng,
    steps: u64,
    crashes: bool,
    partitions: bool,
    /// Syncs of a node's log that made writes of more than one group durable.
    pub shared_syncs: u64,
}

impl MultiSim {
    /// `groups` groups over the same nodes, each with `opts` (membership changes are not
    /// supported: every group has the same members) and a seed of its own.
    pub fn new(seed: u64, groups: u64, opts: SimOptions) -> MultiSim {
        assert!(!opts.membership, "groups share their members");
        let sims = (0..groups)
            .map(|g| {
                let mut sim = Sim::new(seed.wrapping_mul(1_000).wrapping_add(g), opts.clone());
                sim.shared_nodes = true;
                // A group makes a share of the steps' events: its quiet windows are as
                // long in its own events as a single group's.
                sim.quiet_window = 250 * groups;
                sim
            })
            .collect();
        MultiSim {
            seed,
            groups: sims,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x00AB_C0DE),
            steps: opts.steps,
            crashes: opts.crashes,
            partitions: opts.partitions,
            shared_syncs: 0,
        }
    }

    pub fn groups(&self) -> &[Sim] {
        &self.groups
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn fail(&self, group: usize, e: Fail) -> Fail {
        format!(
            "multi-group seed {} ({} groups), group {group}: {e}",
            self.seed,
            self.groups.len()
        )
    }

    fn ids(&self) -> Vec<NodeId> {
        self.groups[0].nodes.keys().copied().collect()
    }

    fn live(&self) -> Vec<NodeId> {
        self.groups[0].live_ids()
    }

    /// Runs the fault phase, then each group's liveness phase.
    pub fn run(&mut self) -> Result<(), Fail> {
        for step in 1..=self.steps {
            for sim in &mut self.groups {
                sim.step_no = step;
            }
            let roll = self.pick(1000);
            let result = match roll {
                // Per group, as often as a single group's simulation makes them.
                0..=39 => self.sync_random(),
                40..=64 => self.tick(),
                65..=68 if self.crashes => self.crash_or_restart(),
                69..=72 if self.partitions => {
                    self.partition_or_heal();
                    Ok(())
                }
                _ => {
                    let g = self.pick(self.groups.len());
                    self.groups[g].random_event().map_err(|e| (g, e))
                }
            };
            result.map_err(|(g, e)| self.fail(g, e))?;
        }
        for g in 0..self.groups.len() {
            let result = self.groups[g].liveness();
            result.map_err(|e| self.fail(g, e))?;
        }
        Ok(())
    }

    /// A node syncs its log: every write any group queued there becomes durable.
    fn sync_random(&mut self) -> Result<(), (usize, Fail)> {
        let live = self.live();
        if live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        let mut groups_written = 0;
        for (g, sim) in self.groups.iter_mut().enumerate() {
            if sim.nodes[&id].pending.is_empty() {
                continue;
            }
            groups_written += 1;
            sim.log(format!("node {id} syncs its shared log"));
            while !sim.nodes[&id].pending.is_empty() {
                sim.persist_one(id).map_err(|e| (g, e))?;
            }
        }
        if groups_written > 1 {
            self.shared_syncs += 1;
        }
        Ok(())
    }

    /// Every node's timer fires: each ticks all its groups.
    fn tick(&mut self) -> Result<(), (usize, Fail)> {
        for sim in &mut self.groups {
            sim.tick_all();
        }
        Ok(())
    }

    /// A node crashes (losing every group's un-synced writes) or one restarts; at most a
    /// minority is down at once.
    fn crash_or_restart(&mut self) -> Result<(), (usize, Fail)> {
        let live = self.live();
        let down: Vec<NodeId> = self.ids().into_iter().filter(|id| !live.contains(id)).collect();
        if !down.is_empty() && self.pick(100) < 60 {
            let id = down[self.pick(down.len())];
            for (g, sim) in self.groups.iter_mut().enumerate() {
                sim.restart(id).map_err(|e| (g, e))?;
            }
            return Ok(());
        }
        if down.len() * 2 + 2 > self.ids().len() || live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        for sim in &mut self.groups {
            sim.crash(id);
        }
        Ok(())
    }

    /// Cuts the nodes in two (for every group alike), or heals.
    fn partition_or_heal(&mut self) {
        if !self.groups[0].cut.is_empty() && self.pick(2) == 0 {
            for sim in &mut self.groups {
                sim.cut.clear();
                sim.log("heal".into());
            }
            return;
        }
        let ids = self.ids();
        let (side, cut) = random_partition(&mut self.rng, &ids);
        for sim in &mut self.groups {
            sim.cut = cut.clone();
            sim.log(format!("partition {side:?} from the rest"));
        }
    }
}
