//! Per-follower flow control: probe and replicate states, the in-flight window, stale and
//! reordered rejections, unreachable peers.

mod common;

use common::{Network, config, data, msg};
use raft_core::{AppendResponse, MessageBody, ProgressState};

fn net_with_window(window: usize) -> Network {
    Network::with(&[1, 2, 3], &[], move |id| {
        let mut c = config(id);
        c.max_inflight_msgs = window;
        c.max_append_bytes = 1; // one entry per message
        c
    })
}

fn state(net: &mut Network, peer: u64) -> ProgressState {
    net.raw(1).status().progress[&peer].state
}

#[test]
fn probe_sends_one_append_until_answered() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(2);
    net.propose_ok(1, "a");
    net.report_unreachable_and_probe(2);
    net.dropped.clear();
    net.msgs.clear();
    for i in 0..5 {
        net.raw(1).propose(data(&format!("p{i}"))).unwrap();
        net.process(1);
    }
    assert_eq!(state(&mut net, 2), ProgressState::Probe);
    // Only the first probe left; the rest wait for an answer.
    let to2 = net
        .dropped
        .iter()
        .filter(|m| m.to == 2 && m.kind() == "Append")
        .count()
        + net
            .msgs
            .iter()
            .filter(|m| m.to == 2 && m.kind() == "Append")
            .count();
    assert_eq!(to2, 1);
}

#[test]
fn replicate_state_pipelines_until_the_window_is_full() {
    let mut net = net_with_window(3);
    net.elect(1);
    assert_eq!(state(&mut net, 2), ProgressState::Replicate);
    for i in 0..10 {
        net.raw(1).propose(data(&format!("c{i}"))).unwrap();
    }
    net.process(1);
    assert_eq!(
        net.appends(1, 2).len(),
        3,
        "three messages in flight, the window's size"
    );
    assert_eq!(net.raw(1).status().progress[&2].inflight, 3);
}

#[test]
fn acknowledgements_free_the_window() {
    let mut net = net_with_window(2);
    net.elect(1);
    for i in 0..6 {
        net.raw(1).propose(data(&format!("c{i}"))).unwrap();
    }
    net.stabilize();
    for id in 1..=3 {
        assert_eq!(
            net.node(id).applied_data().len(),
            6,
            "node {id} got everything through a window of 2"
        );
    }
}

#[test]
fn rejection_moves_a_replicating_follower_back_to_probe() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    assert_eq!(state(&mut net, 2), ProgressState::Replicate);
    let matched = net.raw(1).status().progress[&2].matched;
    // Two more entries go out and are not delivered; the follower rejects the second.
    net.raw(1).propose("b").unwrap();
    net.raw(1).propose("c").unwrap();
    net.raw(1).ready().unwrap();
    net.raw(1)
        .step(msg(
            2,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected: matched + 1,
                hint_index: matched,
                hint_term: 1,
                round: 0,
            }),
        ))
        .unwrap();
    assert_eq!(state(&mut net, 2), ProgressState::Probe);
    assert_eq!(net.raw(1).status().progress[&2].next, matched + 1);
}

#[test]
fn heartbeat_response_unpauses_a_probe() {
    let mut net = Network::new(3);
    net.elect(1);
    net.report_unreachable_and_probe(2);
    net.cut.insert((1, 2));
    net.raw(1).propose(data("x")).unwrap();
    net.stabilize();
    assert_eq!(net.raw(1).status().progress[&2].matched, 1, "the probe was lost");
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(
        net.raw(1).status().progress[&2].matched,
        2,
        "the heartbeat answer let a new probe out"
    );
}

#[test]
fn reordered_stale_rejection_is_ignored() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.propose_ok(1, "b");
    let before = net.raw(1).status().progress[&2];
    // A rejection of an old probe, delivered late, must not move `next` backwards.
    net.raw(1)
        .step(msg(
            2,
            1,
            1,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected: 1,
                hint_index: 0,
                hint_term: 0,
                round: 0,
            }),
        ))
        .unwrap();
    let after = net.raw(1).status().progress[&2];
    assert_eq!(after.next, before.next);
    assert_eq!(after.state, ProgressState::Replicate);
}

#[test]
fn unreachable_peer_drops_back_to_probe() {
    let mut net = Network::new(3);
    net.elect(1);
    assert_eq!(state(&mut net, 2), ProgressState::Replicate);
    net.raw(1).report_unreachable(2);
    assert_eq!(state(&mut net, 2), ProgressState::Probe);
}

#[test]
fn lost_appends_in_a_full_window_are_recovered() {
    let mut net = net_with_window(2);
    net.elect(1);
    net.cut.insert((1, 2));
    for i in 0..6 {
        net.raw(1).propose(data(&format!("c{i}"))).unwrap();
    }
    net.stabilize();
    assert_eq!(
        net.raw(1).status().progress[&2].inflight,
        2,
        "window full of lost messages"
    );
    net.heal();
    net.run_ticks(10);
    assert_eq!(
        net.node(2).applied_data().len(),
        6,
        "the heartbeat answers reopened the window"
    );
}

#[test]
fn probe_uses_the_follower_hint_to_jump_back() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..20 {
        net.propose_ok(1, &format!("c{i}"));
    }
    net.heal();
    let mut rejections = 0;
    for _ in 0..50 {
        net.tick(1, 1);
        let out = net.collect();
        rejections += out
            .iter()
            .filter(|m| {
                matches!(
                    m.body,
                    MessageBody::AppendResponse(AppendResponse::Rejected { .. })
                )
            })
            .count();
        for m in out {
            net.deliver(m);
        }
        if net.node(3).applied_data().len() == 20 {
            break;
        }
    }
    assert_eq!(net.node(3).applied_data().len(), 20);
    // One rejection moves the probe back past all 20 entries; a second, for a duplicate
    // probe that was already in flight, is stale and ignored. Without the hint it would
    // take 20.
    assert!(
        rejections <= 2,
        "{rejections} rejections to skip 20 missing entries"
    );
}

trait ProbeHelper {
    fn report_unreachable_and_probe(&mut self, peer: u64);
}

impl ProbeHelper for Network {
    fn report_unreachable_and_probe(&mut self, peer: u64) {
        self.raw(1).report_unreachable(peer);
    }
}

#[test]
fn replicate_state_stops_sending_once_the_window_holds_its_bytes() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_inflight_msgs = 256;
        c.max_append_bytes = 1; // one entry per message
        c.max_inflight_bytes = 1;
        c
    });
    net.elect(1);
    assert_eq!(state(&mut net, 2), ProgressState::Replicate);
    for i in 0..10 {
        net.raw(1).propose(data(&format!("c{i}"))).unwrap();
    }
    net.process(1);
    assert_eq!(
        net.appends(1, 2).len(),
        1,
        "one message fills a window of one byte; the rest wait for its acknowledgement"
    );
    let progress = &net.raw(1).status().progress[&2];
    assert_eq!(progress.inflight, 1);
    assert!(progress.inflight_bytes > 0);
    // Acknowledged one at a time, everything still gets through.
    net.stabilize();
    for id in 1..=3 {
        assert_eq!(net.node(id).applied_data().len(), 10, "node {id}");
    }
}
