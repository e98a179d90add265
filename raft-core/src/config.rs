//! Static configuration of one Raft node.

use std::borrow::Cow;
use std::fmt;

use crate::types::NodeId;

/// The settings of one node. Build it with [`Config::new`], adjust fields, and let
/// [`RawNode::new`](crate::RawNode::new) validate it (or call [`Config::validate`] yourself).
///
/// All durations are in *ticks*: the driver calls [`RawNode::tick`](crate::RawNode::tick)
/// at a fixed interval and the protocol never reads a clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id. Zero is reserved.
    pub id: NodeId,
    /// The base election timeout: a follower that hears nothing from a leader for a
    /// randomized timeout in `[min_election_tick, max_election_tick)` campaigns, and a
    /// leader with check-quorum steps down if a quorum was silent for this many ticks.
    pub election_tick: u32,
    /// How often a leader sends heartbeats. Must be below `election_tick`.
    pub heartbeat_tick: u32,
    /// Lower bound (inclusive) of the randomized election timeout; at least `election_tick`.
    pub min_election_tick: u32,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub max_election_tick: u32,
    /// Run a pre-vote round before a real election, so that a node that rejoins after a
    /// partition does not disrupt a healthy leader by bumping the term.
    pub pre_vote: bool,
    /// A leader steps down if it has not heard from a quorum for an election timeout, and
    /// followers that heard from a leader within the election timeout ignore vote requests.
    /// Required for lease reads.
    pub check_quorum: bool,
    /// Maximum size in bytes of the entries in one append message (at least one entry is
    /// always sent).
    pub max_append_bytes: u64,
    /// Maximum number of append messages in flight to one peer in the replicate state.
    pub max_inflight_msgs: usize,
    /// Maximum size in bytes of the entries in flight to one peer in the replicate state:
    /// no append is sent while this much is unacknowledged (so one message may overshoot
    /// it). It bounds what a follower that catches up holds in memory before it has
    /// written it, and what the leader holds for it meanwhile.
    pub max_inflight_bytes: u64,
    /// Maximum size in bytes of entries proposed by this leader and not yet committed;
    /// further proposals are refused with
    /// [`ProposeError::UncommittedLimit`](crate::ProposeError::UncommittedLimit).
    pub max_uncommitted_bytes: u64,
    /// Maximum size in bytes of the committed entries handed out in one `Ready` (at least
    /// one entry is always handed out).
    pub max_apply_bytes: u64,
    /// Maximum size in bytes of the committed entries handed out and not yet reported
    /// applied ([`RawNode::on_applied`](crate::RawNode::on_applied)); no more are handed out
    /// until the state machine catches up (one batch always may be out). It bounds what a
    /// follower that receives the log faster than it applies it holds in memory.
    pub max_applying_bytes: u64,
    /// Maximum number of read requests waiting for confirmation at once.
    pub max_pending_reads: usize,
    /// How many ticks shorter than `election_tick` a leader's lease is, to absorb drift
    /// between the tick rates of different nodes. The lease is
    /// `election_tick - lease_drift_ticks` ticks from the send time of the last heartbeat
    /// round a quorum acknowledged.
    pub lease_drift_ticks: u32,
    /// Seed of the random generator behind election timeouts.
    pub seed: u64,
}

/// A configuration value breaks a rule: which field, the value it was given, and the rule.
///
/// The one shape of configuration error in every crate of this workspace (the runtime's,
/// the transport's and the log store's settings are checked into it too), so that a
/// service assembling a node reports any of them alike:
///
/// ```
/// let mut config = raft_core::Config::new(1);
/// config.max_append_bytes = 0;
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field, "max_append_bytes");
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration: `max_append_bytes` = 0: must be at least 1"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}` = {value}: {rule}")]
pub struct ConfigError {
    /// The field, as a path from the configuration that was checked: `election_tick`, or
    /// `protocol.election_tick` for the protocol settings inside the runtime's.
    pub field: Cow<'static, str>,
    /// The value it was given, as Rust's `Debug` prints it (`0`, `15`, `10ms`).
    pub value: String,
    /// The rule the value breaks, for people: "must be at least 1".
    pub rule: Cow<'static, str>,
}

impl ConfigError {
    /// `field` was given `value`, which breaks `rule`.
    pub fn new(field: &'static str, value: impl fmt::Debug, rule: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field: Cow::Borrowed(field),
            value: format!("{value:?}"),
            rule: rule.into(),
        }
    }

    /// The same error, for a field of the settings found at `section` of a larger
    /// configuration: `election_tick` becomes `protocol.election_tick`.
    pub fn within(mut self, section: &str) -> Self {
        self.field = Cow::Owned(format!("{section}.{}", self.field));
        self
    }
}

impl Config {
    /// A configuration with sensible defaults for node `id`: election after 10 to 20 ticks,
    /// heartbeats every 2 ticks, pre-vote and check-quorum on, 1 MiB per append message,
    /// 256 messages and 8 MiB in flight per peer, 64 MiB of uncommitted entries, 4 MiB
    /// apply batches and 8 MiB being applied.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            min_election_tick: 10,
            max_election_tick: 20,
            pre_vote: true,
            check_quorum: true,
            max_append_bytes: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 8 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_apply_bytes: 4 << 20,
            max_applying_bytes: 8 << 20,
            max_pending_reads: 65_536,
            lease_drift_ticks: 2,
            seed: id,
        }
    }

    /// Sets the election timeout and the randomized range `[election, 2 * election)`.
    pub fn with_election_tick(mut self, election: u32) -> Self {
        self.election_tick = election;
        self.min_election_tick = election;
        self.max_election_tick = election.saturating_mul(2);
        self
    }

    /// Checks every field, naming the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            field: &'static str,
            value: impl fmt::Debug,
            rule: impl Into<Cow<'static, str>>,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::new(field, value, rule))
            }
        }
        check(self.id != 0, "id", self.id, "must not be 0 (reserved)")?;
        check(
            self.heartbeat_tick > 0,
            "heartbeat_tick",
            self.heartbeat_tick,
            "must be at least 1",
        )?;
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::new(
                "election_tick",
                self.election_tick,
                format!("must be greater than heartbeat_tick ({})", self.heartbeat_tick),
            ));
        }
        if self.min_election_tick < self.election_tick {
            return Err(ConfigError::new(
                "min_election_tick",
                self.min_election_tick,
                format!("must be at least election_tick ({})", self.election_tick),
            ));
        }
        if self.max_election_tick <= self.min_election_tick {
            return Err(ConfigError::new(
                "max_election_tick",
                self.max_election_tick,
                format!(
                    "must be greater than min_election_tick ({})",
                    self.min_election_tick
                ),
            ));
        }
        let at_least_one = "must be at least 1";
        check(
            self.max_append_bytes > 0,
            "max_append_bytes",
            self.max_append_bytes,
            at_least_one,
        )?;
        check(
            self.max_inflight_msgs > 0,
            "max_inflight_msgs",
            self.max_inflight_msgs,
            at_least_one,
        )?;
        check(
            self.max_inflight_bytes > 0,
            "max_inflight_bytes",
            self.max_inflight_bytes,
            at_least_one,
        )?;
        check(
            self.max_uncommitted_bytes > 0,
            "max_uncommitted_bytes",
            self.max_uncommitted_bytes,
            at_least_one,
        )?;
        check(
            self.max_applying_bytes > 0,
            "max_applying_bytes",
            self.max_applying_bytes,
            at_least_one,
        )?;
        check(
            self.max_apply_bytes > 0,
            "max_apply_bytes",
            self.max_apply_bytes,
            at_least_one,
        )?;
        check(
            self.max_pending_reads > 0,
            "max_pending_reads",
            self.max_pending_reads,
            at_least_one,
        )?;
        if self.lease_drift_ticks >= self.election_tick {
            return Err(ConfigError::new(
                "lease_drift_ticks",
                self.lease_drift_ticks,
                format!("must be below election_tick ({})", self.election_tick),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::new(1).validate().unwrap();
        Config::new(7).with_election_tick(5).validate().unwrap();
    }

    #[test]
    fn each_invalid_field_is_named() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", Box::new(|c| c.id = 0)),
            ("heartbeat_tick", Box::new(|c| c.heartbeat_tick = 0)),
            ("election_tick", Box::new(|c| c.election_tick = 2)),
            ("min_election_tick", Box::new(|c| c.min_election_tick = 5)),
            ("max_election_tick", Box::new(|c| c.max_election_tick = 10)),
            ("max_append_bytes", Box::new(|c| c.max_append_bytes = 0)),
            ("max_inflight_msgs", Box::new(|c| c.max_inflight_msgs = 0)),
            ("max_inflight_bytes", Box::new(|c| c.max_inflight_bytes = 0)),
            ("max_applying_bytes", Box::new(|c| c.max_applying_bytes = 0)),
            ("max_uncommitted_bytes", Box::new(|c| c.max_uncommitted_bytes = 0)),
            ("max_apply_bytes", Box::new(|c| c.max_apply_bytes = 0)),
            ("max_pending_reads", Box::new(|c| c.max_pending_reads = 0)),
            ("lease_drift_ticks", Box::new(|c| c.lease_drift_ticks = 10)),
        ];
        for (field, mutate) in cases {
            let mut c = Config::new(1);
            mutate(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().contains(&format!("`{field}` = ")), "{err}");
        }
    }

    #[test]
    fn the_error_names_the_field_the_value_and_the_rule() {
        let mut c = Config::new(1);
        c.heartbeat_tick = 12;
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "election_tick");
        assert_eq!(err.value, "10");
        assert_eq!(
            err.to_string(),
            "invalid configuration: `election_tick` = 10: must be greater than heartbeat_tick (12)"
        );
        let err = err.within("protocol");
        assert_eq!(err.field, "protocol.election_tick");
        assert!(
            err.to_string()
                .starts_with("invalid configuration: `protocol.election_tick` = 10:")
        );
    }
}
