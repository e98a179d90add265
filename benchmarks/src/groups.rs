//! `raft-bench groups`: what many idle groups cost the protocol, awake and quiescent.
//!
//! `--groups` groups of three nodes each, all in this process, driven by one thread
//! through `raft_core` alone (in-memory storage, messages handed over directly): no
//! runtime, no network, no disk. This isolates the protocol's own share of an idle group's
//! cost, which a node hosting thousands of groups pays once per group: the memory of its
//! three replicas, and the CPU of ticking them and exchanging their heartbeats.
//!
//! Each group elects its first node and commits one command. Then `--ticks` ticks go by
//! with every group awake (ticks, heartbeats, their answers), then every leader is asked to
//! quiesce ([`RawNode::quiesce`]) and the same ticks go by again, twice: once with every
//! node ticked and its driver pass run, once with the quiescent groups left out (what a
//! driver that tracks them does). Measured in each phase:
//! this process's CPU time per tick of all groups, as a share of one core at the runtime's
//! default tick of 20 ms, and the messages sent per tick. Memory: the resident size
//! before the groups and after. Then one command is proposed to 1 % of the groups, which
//! wakes them: the messages that took, and how many of the groups committed it.
//!
//! Every figure is printed, none is asserted.

use std::time::Duration;

use raft_runtime::raft_core::{ConfState, Config, MemStorage, Message, RawNode, Role};

use crate::Error;
use crate::usage;

/// Options of `raft-bench groups`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Groups of three nodes.
    #[arg(long, default_value_t = 10_000)]
    pub groups: usize,
    /// Ticks per phase.
    #[arg(long, default_value_t = 100)]
    pub ticks: u32,
}

/// The tick the runtime uses by default, against which CPU per tick is put as a share of
/// a core.
const TICK: Duration = Duration::from_millis(20);

struct Group {
    nodes: [RawNode<MemStorage>; 3],
}

fn config(id: u64, seed: u64) -> Config {
    // The runtime's protocol defaults.
    let mut c = Config::new(id).with_election_tick(15);
    c.heartbeat_tick = 3;
    c.pre_vote = true;
    c.check_quorum = true;
    c.seed = seed;
    c
}

impl Group {
    fn new(g: u64) -> Result<Group, Error> {
        let cs = ConfState::with_voters([1, 2, 3]);
        let node = |id: u64| {
            RawNode::new(
                config(id, g * 3 + id),
                MemStorage::new_with_conf_state(cs.clone()),
                0,
            )
            .map_err(|e| Error::from(format!("group {g}, node {id}: {e}")))
        };
        Ok(Group {
            nodes: [node(1)?, node(2)?, node(3)?],
        })
    }

    /// Runs the group's drivers until nothing moves: each node's ready is persisted on the
    /// spot, its committed entries applied, its messages delivered. Returns the messages
    /// sent.
    fn drive(&mut self) -> Result<u64, Error> {
        let mut sent = 0;
        let mut net: Vec<Message> = Vec::new();
        loop {
            for node in &mut self.nodes {
                if !node.has_ready() {
                    continue;
                }
                let ready = node.ready().map_err(|e| Error::from(format!("ready: {e}")))?;
                net.extend(ready.messages);
                if let Some(p) = ready.persist {
                    node.storage_mut()
                        .persist(&p)
                        .map_err(|e| Error::from(format!("persist: {e}")))?;
                    node.on_persisted(p.token)
                        .map_err(|e| Error::from(format!("persisted: {e}")))?;
                    net.extend(p.messages);
                }
                if let Some(last) = ready.committed_entries.last() {
                    node.on_applied(last.index)
                        .map_err(|e| Error::from(format!("applied: {e}")))?;
                }
            }
            if net.is_empty() {
                return Ok(sent);
            }
            sent += net.len() as u64;
            for m in net.drain(..) {
                let to = m.to as usize - 1;
                // A refusal (a late answer after a role change) is part of normal life.
                let _ = self.nodes[to].step(m);
            }
        }
    }

    fn tick(&mut self) -> Result<u64, Error> {
        for node in &mut self.nodes {
            node.tick();
        }
        self.drive()
    }
}

/// CPU and messages over `ticks` ticks of every group. With `skip_quiescent`, the driver
/// leaves out the groups whose nodes are all quiescent, as a driver that keeps a list of
/// the groups it has to tick would.
fn phase(groups: &mut [Group], ticks: u32, skip_quiescent: bool) -> Result<(Duration, u64), Error> {
    let cpu = usage::self_cpu();
    let mut sent = 0;
    for _ in 0..ticks {
        for g in groups.iter_mut() {
            if skip_quiescent && g.nodes.iter().all(|n| n.is_quiescent()) {
                continue;
            }
            sent += g.tick()?;
        }
    }
    Ok((usage::self_cpu().saturating_sub(cpu), sent))
}

/// Runs `raft-bench groups`.
pub async fn run(args: Args) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || measure(args))
        .await
        .map_err(|e| Error::from(format!("the measurement thread failed: {e}")))?
}

fn measure(args: Args) -> Result<(), Error> {
    if args.groups == 0 || args.ticks == 0 {
        return Err(Error::from("--groups and --ticks must be at least 1"));
    }
    usage::reset_peak();
    let before = usage::memory(None).rss;
    let mut groups = Vec::with_capacity(args.groups);
    for g in 0..args.groups as u64 {
        let mut group = Group::new(g)?;
        group.nodes[0]
            .campaign()
            .map_err(|e| Error::from(format!("campaign: {e}")))?;
        group.drive()?;
        group.nodes[0]
            .propose(vec![7u8; 16])
            .map_err(|e| Error::from(format!("group {g} refused a command: {e}")))?;
        group.drive()?;
        groups.push(group);
    }
    // A few ticks so that every follower has heard a heartbeat.
    phase(&mut groups, 6, false)?;
    let leaders = groups
        .iter()
        .filter(|g| g.nodes[0].role() == Role::Leader)
        .count();
    let resident = usage::memory(None).rss.saturating_sub(before);
    let per_group = resident / args.groups as u64;

    let (awake_cpu, awake_sent) = phase(&mut groups, args.ticks, false)?;
    let mut quiet = 0;
    for g in groups.iter_mut() {
        if g.nodes[0].quiesce() {
            quiet += 1;
        }
        g.drive()?;
    }
    let all_quiet = groups
        .iter()
        .filter(|g| g.nodes.iter().all(|n| n.is_quiescent()))
        .count();
    let (quiet_cpu, quiet_sent) = phase(&mut groups, args.ticks, false)?;
    let (skipped_cpu, skipped_sent) = phase(&mut groups, args.ticks, true)?;

    let woken = (args.groups / 100).max(1);
    let mut wake_sent = 0;
    let mut committed = 0;
    for g in groups.iter_mut().take(woken) {
        let index = g.nodes[0]
            .propose(vec![8u8; 16])
            .map_err(|e| Error::from(format!("a quiescent leader refused a command: {e}")))?;
        wake_sent += g.drive()?;
        if g.nodes.iter().all(|n| n.commit_index() >= index) {
            committed += 1;
        }
    }

    let ticks = f64::from(args.ticks);
    let share = |cpu: Duration| 100.0 * cpu.as_secs_f64() / ticks / TICK.as_secs_f64();
    println!(
        "{} groups of 3 nodes ({} led by their first node), protocol only (raft-core, in-memory), one thread",
        args.groups, leaders
    );
    println!(
        "memory: {:.1} MiB resident for the groups, {:.1} KiB per group ({:.1} KiB per replica)",
        resident as f64 / (1 << 20) as f64,
        per_group as f64 / 1024.0,
        per_group as f64 / 3.0 / 1024.0
    );
    println!("| phase | CPU per tick of all groups | share of a core at a 20 ms tick | messages per tick |");
    println!("|---|---:|---:|---:|");
    for (name, cpu, sent) in [
        ("awake", awake_cpu, awake_sent),
        ("quiescent, every node ticked", quiet_cpu, quiet_sent),
        (
            "quiescent, quiescent groups not ticked",
            skipped_cpu,
            skipped_sent,
        ),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.1} % | {:.0} |",
            cpu.as_secs_f64() * 1e3 / ticks,
            share(cpu),
            sent as f64 / ticks
        );
    }
    println!("quiescence: {quiet} leaders agreed, {all_quiet} groups quiescent on all three nodes");
    println!(
        "a command to {woken} quiescent groups: {committed} committed on all three nodes, {:.1} messages per group",
        wake_sent as f64 / woken as f64
    );
    Ok(())
}
