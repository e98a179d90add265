//! Runtime configuration: the protocol's settings plus the actors' timing and bounds.

use std::time::Duration;

use raft_core::NodeId;

/// The settings of one node. Start from [`Config::default`] and adjust; [`Config::validate`]
/// (run by [`Builder::start`](crate::Builder::start)) names the first invalid field.
#[derive(Clone, Debug)]
pub struct Config {
    /// The protocol settings (election and heartbeat ticks, pre-vote, check-quorum, flow
    /// control, limits). Its `id` is replaced by the id the node is built with
    /// ([`Raft::builder`](crate::Raft::builder)); its `seed` is drawn at random at start
    /// unless [`Config::deterministic_seed`] is set.
    pub protocol: raft_core::Config,
    /// Real time per protocol tick.
    pub tick_interval: Duration,
    /// Capacity of the node's request mailbox; requests beyond it get a busy error.
    pub mailbox_capacity: usize,
    /// Batches of traffic each peer may have queued for this node; a peer's batches beyond
    /// it are dropped (the protocol retransmits). Each peer has its own share, so one peer
    /// flooding the node cannot crowd out the others.
    pub inbox_capacity: usize,
    /// Proposals waiting to be applied; beyond this, proposals get a busy error.
    pub max_pending_proposals: usize,
    /// Writes handed to the log store and not yet durable; beyond this, proposals get a busy
    /// error until the disk catches up.
    pub max_inflight_writes: usize,
    /// Entries committed but not yet applied; beyond this, proposals get a busy error.
    pub max_apply_lag: u64,
    /// Take a snapshot (and compact the log) every this many applied entries; 0 never.
    pub snapshot_every: u64,
    /// Also take one once this many bytes of entries (as counted by `Entry::size`) were
    /// applied since the last, so that large commands cannot fill the disk between
    /// snapshots; 0 never.
    pub snapshot_every_bytes: u64,
    /// Whatever `snapshot_every` and `snapshot_every_bytes` say, wait for the entries
    /// applied since the last snapshot to add up to this percentage of its size (as the
    /// log store reports it, [`LogStore::snapshot_len`](crate::LogStore::snapshot_len))
    /// before taking the next one. A snapshot copies the whole state: without this, a
    /// state of gigabytes would be copied every `snapshot_every_bytes` of writes. The log
    /// on disk then grows to this share of the state between snapshots (up to
    /// `snapshot_log_max_entries`). 0 turns it off.
    pub snapshot_log_percent: u64,
    /// However large the state, `snapshot_log_percent` holds a snapshot back for at most
    /// this many entries since the last: the log store keeps a little memory per entry (32
    /// bytes in the file store), so a state of many small records must not make the log
    /// grow without bound. 0: no bound.
    pub snapshot_log_max_entries: u64,
    /// Lets an idle group go quiet after this many ticks in which its leader had no request
    /// to handle: once every member holds the whole log, the leader sends a last heartbeat
    /// round and stops its clock, and so do its followers (see
    /// [`RawNode::quiesce`](raft_core::RawNode::quiesce)). A quiet group sends nothing and
    /// its task sleeps until a request or a message wakes it, so an idle group costs no CPU:
    /// what lets a process host thousands of groups ([`GroupMux`](crate::GroupMux)).
    ///
    /// The price: a leader that dies while its group is quiet is noticed only when the group
    /// is next used (a request to a follower wakes it, and it elects a new leader after an
    /// election timeout), and the first lease read after a wake-up waits for a heartbeat
    /// round. 0 (the default) never quiesces.
    pub quiesce_after_ticks: u32,
    /// Entries kept in the log behind a snapshot, so that a follower that lags a little
    /// catches up from the log instead of receiving the whole state; 0 compacts the log up
    /// to each snapshot. Bounded by `log_kept_bytes` as well: the log keeps what fits in
    /// both. A follower further behind receives a snapshot. On a leader, the log after a
    /// snapshot being sent to a follower is kept as well, within `log_kept_bytes`, so that
    /// the follower catches up from it once the snapshot is installed. (A restart of the
    /// file store starts the log after the snapshot again.)
    pub log_kept_entries: u64,
    /// Bytes of entries (as counted by `Entry::size`) kept in the log behind a snapshot at
    /// most; see `log_kept_entries`.
    pub log_kept_bytes: u64,
    /// How long a proposal may wait for its outcome before it fails with an unknown outcome.
    pub propose_timeout: Duration,
    /// How long a read may take, from the request to its answer, waiting for a leader
    /// included.
    pub read_timeout: Duration,
    /// Reads a node holds at once (waiting for confirmation, for the applier, or being
    /// served); beyond this, reads get a busy error.
    pub max_pending_reads: usize,
    /// How long a membership change or leadership transfer may take, all its steps and
    /// retries included (`add_voter`'s learner step and promotion share it).
    pub admin_timeout: Duration,
    /// Forward proposals made on a follower to the leader instead of refusing them.
    pub forward_proposals: bool,
    /// Use `protocol.seed` as is instead of drawing a random one (for reproducible tests).
    pub deterministic_seed: bool,
    /// Client sessions, which apply a retried command at most once
    /// ([`Raft::open_session`](crate::Raft::open_session)); `None` (the default) turns
    /// them off. Every node of a cluster must have the same setting from the cluster's first
    /// start: the table of sessions is part of the replicated state and of every snapshot.
    pub sessions: Option<SessionConfig>,
}

/// The bounds and the timeout of client sessions ([`Config::sessions`]). They decide what
/// is applied, so every node of a cluster must use the same. The table of sessions is held
/// in memory and in every snapshot: at most `max_sessions` times `max_pending_bytes` of
/// responses (plus a few dozen bytes per session and per held response).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Sessions held at once; opening one more is refused
    /// ([`SessionError::TooManySessions`](crate::SessionError)) until some expire.
    pub max_sessions: usize,
    /// Responses a session holds for its client at most (commands applied whose answers
    /// the client has not acknowledged yet); a command past it is refused
    /// ([`SessionError::TooManyPending`](crate::SessionError)) until the client
    /// acknowledges some.
    pub max_pending: usize,
    /// Bytes of (encoded) responses a session holds at most; a command is admitted while
    /// the session holds less, so it may pass this by one response.
    pub max_pending_bytes: usize,
    /// How long a session may go unused before it expires, by the time the leaders stamp
    /// into its commands (never a node's own clock: every node expires the same sessions at
    /// the same entry). A command of an expired session is refused, never applied.
    pub timeout: Duration,
}

impl Default for SessionConfig {
    /// 10,000 sessions, each holding up to 32 responses and 16 KiB of them, expiring after
    /// 10 minutes unused.
    fn default() -> Self {
        SessionConfig {
            max_sessions: 10_000,
            max_pending: 32,
            max_pending_bytes: 16 << 10,
            timeout: Duration::from_secs(600),
        }
    }
}

impl SessionConfig {
    pub(crate) fn limits(&self) -> crate::sessions::Limits {
        crate::sessions::Limits {
            max_sessions: self.max_sessions,
            max_pending: self.max_pending,
            max_pending_bytes: self.max_pending_bytes,
            timeout: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("sessions.max_sessions", self.max_sessions),
            ("sessions.max_pending", self.max_pending),
            ("sessions.max_pending_bytes", self.max_pending_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, value, "must be at least 1"));
            }
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "sessions.timeout",
                self.timeout,
                "must be at least 1 ms",
            ));
        }
        Ok(())
    }
}

/// A configuration value is invalid: the one shape of configuration error of every crate
/// (see [`raft_core::ConfigError`]). Fields of [`Config::protocol`] are named
/// `protocol.<field>`.
pub use raft_core::ConfigError;

impl Default for Config {
    /// A 20 ms tick, elections after 300 to 600 ms, heartbeats every 60 ms, a snapshot every
    /// 10,000 entries (or 64 MiB of them, and no sooner than as many bytes of entries as the
    /// last snapshot holds, up to 1,000,000 entries) keeping up to 5,000 entries (and at
    /// most 64 MiB) of log behind it, proposals refused (not forwarded) on followers.
    fn default() -> Self {
        // The protocol's id is the node's, set at start.
        let mut protocol = raft_core::Config::new(PLACEHOLDER_ID).with_election_tick(15);
        protocol.heartbeat_tick = 3;
        Config {
            protocol,
            tick_interval: Duration::from_millis(20),
            mailbox_capacity: 65_536,
            inbox_capacity: 4_096,
            max_pending_proposals: 262_144,
            max_inflight_writes: 1_024,
            max_apply_lag: 262_144,
            snapshot_every: 10_000,
            snapshot_every_bytes: 64 << 20,
            snapshot_log_percent: 100,
            snapshot_log_max_entries: 1_000_000,
            log_kept_entries: 5_000,
            log_kept_bytes: 64 << 20,
            quiesce_after_ticks: 0,
            propose_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            max_pending_reads: 65_536,
            admin_timeout: Duration::from_secs(30),
            forward_proposals: false,
            deterministic_seed: false,
            sessions: None,
        }
    }
}

/// Stands for the node's id in the protocol settings until the node is built: the id is
/// given once, to the builder, which checks it.
const PLACEHOLDER_ID: NodeId = 1;

impl Config {
    /// Checks every field, naming the first invalid one. (The node id is not part of the
    /// configuration: the builder checks it.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut protocol = self.protocol.clone();
        protocol.id = PLACEHOLDER_ID;
        protocol.validate().map_err(|e| e.within("protocol"))?;
        if self.tick_interval.is_zero() {
            return Err(ConfigError::new(
                "tick_interval",
                self.tick_interval,
                "must be positive",
            ));
        }
        for (field, value) in [
            ("mailbox_capacity", self.mailbox_capacity),
            ("inbox_capacity", self.inbox_capacity),
            ("max_pending_proposals", self.max_pending_proposals),
            ("max_inflight_writes", self.max_inflight_writes),
            ("max_pending_reads", self.max_pending_reads),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, value, "must be at least 1"));
            }
        }
        if self.max_apply_lag == 0 {
            return Err(ConfigError::new(
                "max_apply_lag",
                self.max_apply_lag,
                "must be at least 1",
            ));
        }
        for (field, value) in [
            ("propose_timeout", self.propose_timeout),
            ("read_timeout", self.read_timeout),
            ("admin_timeout", self.admin_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(field, value, "must be positive"));
            }
        }
        if let Some(sessions) = &self.sessions {
            sessions.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_fields() {
        Config::default().validate().unwrap();
        let c = Config {
            max_inflight_writes: 0,
            ..Config::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid configuration: `max_inflight_writes` = 0: must be at least 1"
        );
        let c = Config {
            tick_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid configuration: `tick_interval` = 0ns: must be positive"
        );
        // The protocol's settings are named by their path from the runtime's.
        let mut c = Config::default();
        c.protocol.max_inflight_msgs = 0;
        assert_eq!(c.validate().unwrap_err().field, "protocol.max_inflight_msgs");
        let mut c = Config::default();
        c.protocol.heartbeat_tick = 100;
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "protocol.election_tick", "{err}");
        assert_eq!(err.value, "15");
        let mut c = Config::default();
        c.protocol.max_pending_reads = 0;
        assert_eq!(c.validate().unwrap_err().field, "protocol.max_pending_reads");
        let c = Config {
            sessions: Some(SessionConfig {
                max_pending: 0,
                ..SessionConfig::default()
            }),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "sessions.max_pending");
        let c = Config {
            sessions: Some(SessionConfig {
                timeout: Duration::from_micros(999),
                ..SessionConfig::default()
            }),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "sessions.timeout");
        Config {
            sessions: Some(SessionConfig::default()),
            ..Config::default()
        }
        .validate()
        .unwrap();
    }
}
