//! `GET /metrics`: the runtime's metrics in the Prometheus (OpenMetrics) text format.
//!
//! The runtime already counts everything and publishes a fresh [`Metrics`] value through a
//! watch channel. Rather than mirror each figure into a metric object that must be kept in
//! step, a collector reads the latest value at scrape time and writes it out as constant
//! counters and gauges.

use std::fmt;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use raft_runtime::raft_core::Role;
use raft_runtime::{Metrics, StateMachine};
use tokio::sync::watch;

use super::AppState;
use super::status::role_name;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) async fn handle<SM: StateMachine>(State(state): State<AppState<SM>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.render())
}

/// A registry holding the one collector that reads the node's metrics.
pub(super) struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub(super) fn new(metrics: watch::Receiver<Metrics>) -> Exporter {
        let mut registry = Registry::with_prefix("raft");
        registry.register_collector(Box::new(RaftCollector { metrics }));
        Exporter { registry }
    }

    pub(super) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[derive(Debug)]
struct RaftCollector {
    metrics: watch::Receiver<Metrics>,
}

impl Collector for RaftCollector {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Clone, so that the runtime is never blocked on the watch channel while the text
        // is written.
        let m = self.metrics.borrow().clone();
        let out = &mut out;

        gauge(out, "node_id", "This node's id", m.id)?;
        gauge(out, "term", "The current term", m.term)?;
        gauge(
            out,
            "leader_id",
            "The leader this node knows of (0: none)",
            m.leader.unwrap_or(0),
        )?;
        let role = out.encode_descriptor(
            "role",
            "1 for this node's current role",
            None,
            ConstGauge::new(0u64).metric_type(),
        )?;
        encode_roles(role, m.role)?;
        gauge(out, "commit_index", "The commit index", m.commit)?;
        gauge(
            out,
            "applied_index",
            "The last index applied to the state machine",
            m.applied,
        )?;
        gauge(
            out,
            "last_log_index",
            "The index of the last log entry",
            m.last_log_index,
        )?;
        gauge(
            out,
            "snapshot_index",
            "The index of the stored snapshot",
            m.snapshot_index,
        )?;
        gauge(
            out,
            "members",
            "Members of the configuration (voters and learners)",
            m.members.len() as u64,
        )?;
        gauge(
            out,
            "voters",
            "Voters of the configuration",
            m.voters().len() as u64,
        )?;
        gauge(
            out,
            "joint",
            "1 while a membership change is half done",
            u64::from(m.joint),
        )?;

        counter(
            out,
            "proposals",
            "Proposals this node accepted (as leader, or forwarded)",
            m.proposals,
        )?;
        counter(
            out,
            "applied_entries",
            "Entries applied to the state machine",
            m.applied_entries,
        )?;
        counter(
            out,
            "leader_changes",
            "Times this node saw the leader change",
            m.leader_changes,
        )?;
        counter(out, "elections_won", "Elections this node won", m.elections_won)?;
        counter(
            out,
            "snapshots_taken",
            "Snapshots taken locally",
            m.snapshots_taken,
        )?;
        counter(
            out,
            "snapshots_installed",
            "Snapshots installed from a leader",
            m.snapshots_installed,
        )?;

        counter(
            out,
            "store_writes",
            "Writes the log store made durable",
            m.store.writes,
        )?;
        counter(
            out,
            "store_entries",
            "Entries written to the log",
            m.store.entries,
        )?;
        counter(
            out,
            "store_bytes",
            "Bytes written to the log, framing included",
            m.store.bytes,
        )?;
        counter(
            out,
            "store_fsyncs",
            "fsync/fdatasync calls on the write path",
            m.store.fsyncs,
        )?;

        counter(
            out,
            "transport_messages_sent",
            "Messages queued for peers",
            m.transport.messages_sent,
        )?;
        counter(
            out,
            "transport_bytes_sent",
            "Bytes sent to peers, framing included",
            m.transport.bytes_sent,
        )?;
        counter(
            out,
            "transport_messages_received",
            "Messages received from peers",
            m.transport.messages_received,
        )?;
        counter(
            out,
            "transport_bytes_received",
            "Bytes received from peers",
            m.transport.bytes_received,
        )?;
        counter(
            out,
            "transport_dropped",
            "Batches dropped (peer queue full or peer unknown)",
            m.transport.dropped,
        )?;
        Ok(())
    }
}

fn gauge(out: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(out.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(out: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(out.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One sample per role, labelled `role`, 1 for the current one: dashboards can then
/// graph "which node leads" without knowing the role names in advance.
fn encode_roles(
    mut family: prometheus_client::encoding::MetricEncoder,
    current: Role,
) -> Result<(), fmt::Error> {
    for role in [Role::Leader, Role::Follower, Role::Candidate, Role::PreCandidate] {
        let labels = [("role", role_name(role))];
        let sample = ConstGauge::new(u64::from(role == current));
        sample.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_the_role() {
        let (_tx, rx) = watch::channel(test_metrics());
        let text = Exporter::new(rx).render();
        assert!(text.contains("# TYPE raft_proposals counter"), "{text}");
        assert!(text.contains("raft_proposals_total 0"), "{text}");
        assert!(text.contains("raft_store_fsyncs_total 0"), "{text}");
        assert!(text.contains("raft_transport_bytes_sent_total 0"), "{text}");
        assert!(text.contains("# TYPE raft_term gauge"), "{text}");
        assert!(text.contains("raft_role{role=\"follower\"} 1"), "{text}");
        assert!(text.contains("raft_role{role=\"leader\"} 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    fn test_metrics() -> Metrics {
        Metrics::new(1)
    }
}
