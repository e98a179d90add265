//! What a transport needs to start: who it is, where it listens, its TLS identity, and the
//! limits and tuning knobs (all with defaults measured on a small loopback machine).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfigError, NodeId};

use crate::error::QuicError;
use crate::tls::TlsConfig;

/// Everything [`QuicTransport::bind`](crate::QuicTransport::bind) needs. The node's id is
/// not part of it: the transport serves the node its certificate names (see
/// [`crate::identity`]), and refuses to register a node of another id.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// The UDP address to listen on (port 0 picks a free port; see
    /// [`QuicTransport::local_addr`](crate::QuicTransport::local_addr)).
    pub listen_addr: SocketAddr,
    /// The cluster CA and this node's certificate chain and key.
    pub tls: TlsConfig,
    /// Sizes and counts that bound memory.
    pub limits: Limits,
    /// Timers and socket tuning.
    pub tuning: Tuning,
    /// The members known at bind time, with their addresses, applied before the transport
    /// accepts its first connection (see [`QuicConfig::with_initial_peers`]). `None` (the
    /// default): the transport refuses every peer until the first
    /// [`Transport::set_peers`](raft_runtime::Transport::set_peers).
    pub initial_peers: Option<BTreeMap<NodeId, Bytes>>,
}

impl QuicConfig {
    /// A configuration with default [`Limits`] and [`Tuning`].
    pub fn new(listen_addr: SocketAddr, tls: TlsConfig) -> Self {
        QuicConfig {
            listen_addr,
            tls,
            limits: Limits::default(),
            tuning: Tuning::default(),
            initial_peers: None,
        }
    }

    /// Sets the members this node admits from the moment it binds, with the same meaning
    /// as [`Transport::set_peers`](raft_runtime::Transport::set_peers): member id to
    /// address (`host:port` as UTF-8; empty when the address is not known, in which case
    /// the member may connect but is not dialled). Entries for this node and for id 0 are
    /// ignored, as in `set_peers`.
    ///
    /// Peers are admitted only if they are listed: without an initial list the transport
    /// refuses every handshake ("membership not known yet") until the runtime's first
    /// `set_peers`. Give the list here when the members are known at bind time (a fixed
    /// cluster, or the member list a node recovered from its log), so that there is no
    /// such window at all. The runtime's later `set_peers` calls replace it.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use raft_transport_quic::{DevCa, QuicConfig};
    /// # let tls = DevCa::generate().unwrap().node_tls(1).unwrap();
    /// let config = QuicConfig::new("127.0.0.1:7001".parse().unwrap(), tls).with_initial_peers(
    ///     BTreeMap::from([
    ///         (1, "127.0.0.1:7001".into()),
    ///         (2, "127.0.0.1:7002".into()),
    ///         (3, "127.0.0.1:7003".into()),
    ///     ]),
    /// );
    /// ```
    pub fn with_initial_peers(mut self, peers: BTreeMap<NodeId, Bytes>) -> Self {
        self.initial_peers = Some(peers);
        self
    }

    /// Checks that every value is in range and that the values agree with each other.
    /// Fails with [`QuicError::Config`], naming the field by its path
    /// (`limits.max_frame_size`, `tuning.idle_timeout`), its value and the rule it breaks.
    pub fn validate(&self) -> Result<(), QuicError> {
        self.check().map_err(QuicError::Config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        fn rule(
            ok: bool,
            field: &'static str,
            value: impl std::fmt::Debug,
            rule: impl Into<Cow<'static, str>>,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::new(field, value, rule))
            }
        }
        let l = &self.limits;
        let t = &self.tuning;
        let positive = "must be positive";
        rule(
            (1024..=crate::codec::MAX_FRAME_LIMIT).contains(&l.max_frame_size),
            "limits.max_frame_size",
            l.max_frame_size,
            "must be between 1 KiB and 256 MiB",
        )?;
        rule(
            l.coalesce_bytes > 0 && l.coalesce_bytes <= l.max_frame_size,
            "limits.coalesce_bytes",
            l.coalesce_bytes,
            format!(
                "must be positive and at most max_frame_size ({})",
                l.max_frame_size
            ),
        )?;
        rule(
            l.peer_queue_capacity > 0,
            "limits.peer_queue_capacity",
            l.peer_queue_capacity,
            positive,
        )?;
        rule(
            l.peer_queue_group_share > 0 && l.peer_queue_group_share <= l.peer_queue_capacity,
            "limits.peer_queue_group_share",
            l.peer_queue_group_share,
            format!(
                "must be positive and at most peer_queue_capacity ({})",
                l.peer_queue_capacity
            ),
        )?;
        rule(
            l.max_snapshot_size > 0,
            "limits.max_snapshot_size",
            l.max_snapshot_size,
            positive,
        )?;
        rule(
            (1024..=crate::codec::MAX_DATA_FRAME).contains(&l.snapshot_chunk_size),
            "limits.snapshot_chunk_size",
            l.snapshot_chunk_size,
            "must be between 1 KiB and 64 MiB",
        )?;
        rule(
            !l.snapshot_accept_timeout.is_zero(),
            "limits.snapshot_accept_timeout",
            l.snapshot_accept_timeout,
            positive,
        )?;
        rule(
            l.max_concurrent_handshakes > 0,
            "limits.max_concurrent_handshakes",
            l.max_concurrent_handshakes,
            positive,
        )?;
        rule(
            l.max_connections_per_peer >= 2,
            "limits.max_connections_per_peer",
            l.max_connections_per_peer,
            "must be at least 2 (a message and a snapshot connection)",
        )?;
        rule(
            !t.idle_timeout.is_zero(),
            "tuning.idle_timeout",
            t.idle_timeout,
            positive,
        )?;
        rule(
            quinn::IdleTimeout::try_from(t.idle_timeout).is_ok(),
            "tuning.idle_timeout",
            t.idle_timeout,
            IDLE_TIMEOUT_RULE,
        )?;
        rule(
            !t.keep_alive_interval.is_zero(),
            "tuning.keep_alive_interval",
            t.keep_alive_interval,
            positive,
        )?;
        rule(
            t.keep_alive_interval < t.idle_timeout,
            "tuning.keep_alive_interval",
            t.keep_alive_interval,
            format!("must be below idle_timeout ({:?})", t.idle_timeout),
        )?;
        rule(
            !t.handshake_timeout.is_zero(),
            "tuning.handshake_timeout",
            t.handshake_timeout,
            positive,
        )?;
        rule(
            !t.write_timeout.is_zero(),
            "tuning.write_timeout",
            t.write_timeout,
            positive,
        )?;
        rule(
            !t.reconnect_initial.is_zero(),
            "tuning.reconnect_initial",
            t.reconnect_initial,
            positive,
        )?;
        rule(
            t.reconnect_max >= t.reconnect_initial,
            "tuning.reconnect_max",
            t.reconnect_max,
            format!("must be at least reconnect_initial ({:?})", t.reconnect_initial),
        )?;
        rule(
            t.initial_mtu >= 1200,
            "tuning.initial_mtu",
            t.initial_mtu,
            "must be at least 1200",
        )?;
        rule(
            t.max_mtu >= t.initial_mtu,
            "tuning.max_mtu",
            t.max_mtu,
            format!("must be at least initial_mtu ({})", t.initial_mtu),
        )?;
        Ok(())
    }
}

/// The rule of QUIC's idle timeout, which the protocol carries in milliseconds as a
/// variable-length integer.
pub(crate) const IDLE_TIMEOUT_RULE: &str = "must be below 2^62 milliseconds (QUIC's limit)";

/// Limits that bound memory and work per peer. Every queue and buffer is bounded by one.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest message frame accepted or sent, in bytes (the length prefix is checked
    /// against it before any buffer is allocated). A larger frame from a peer closes its
    /// connection; a larger single message to send is dropped and logged. Between 1 KiB
    /// and 256 MiB ([`QuicConfig::validate`] refuses anything else). Default 16 MiB.
    pub max_frame_size: usize,
    /// Queued batches are merged into frames of about this many bytes. Default 1 MiB.
    pub coalesce_bytes: usize,
    /// Batches queued per peer before [`send`](raft_runtime::Transport::send) answers
    /// `Full`. Default 1024.
    pub peer_queue_capacity: usize,
    /// The share of a peer's queue one group may take: past this many of its batches
    /// queued for a peer, [`send`](raft_runtime::Transport::send) answers `Full` for that
    /// group while the peer's other groups still get through. It keeps one busy group (a
    /// follower catching up through large appends) from crowding out the heartbeats of the
    /// other groups two nodes share. Between 1 and `peer_queue_capacity`, which sets no
    /// share of its own: the default (1024), for a node of one group. A process running the
    /// nodes of many groups on one transport ([`GroupMux`](raft_runtime::GroupMux)) sets it
    /// to a fraction of the queue (a quarter, say).
    pub peer_queue_group_share: usize,
    /// The largest snapshot this node receives, in bytes, counted as its data arrives (a
    /// sender does not announce a length: it reads its snapshot as it sends it). A transfer
    /// is refused as soon as a data frame would take it past this size, before that frame's
    /// bytes are read: the sender's `send_snapshot` returns `TransportError::Refused`, and
    /// the node is told the snapshot is incomplete and keeps nothing of it.
    ///
    /// This bounds the disk a received snapshot may fill, not memory: the data is handed
    /// to the node as it arrives (which writes it to its log store chunk by chunk), and a
    /// reception holds at most the snapshot connection's QUIC stream receive window
    /// ([`Tuning::stream_window`], 8 MiB by default) plus one
    /// [`snapshot_chunk_size`](Limits::snapshot_chunk_size) (1 MiB), whatever the
    /// snapshot's size. Must be positive. Default 64 GiB: set it to what the receiving
    /// node's disk can spare for one staged snapshot beside the stored one.
    pub max_snapshot_size: u64,
    /// The largest piece of a snapshot handled at once, in bytes: a sender writes the data
    /// it reads in frames of at most this size (splitting a larger chunk it reads), and a
    /// receiver gathers at most this much of what arrived before handing it to its node
    /// (less when no more has arrived). It is the "one chunk" of the memory bound of a
    /// reception (see [`max_snapshot_size`](Limits::max_snapshot_size)). Between 1 KiB
    /// and 64 MiB. Default 1 MiB.
    pub snapshot_chunk_size: usize,
    /// How long a sender waits, once it has sent a snapshot's last byte, for the verdict
    /// of the receiver's node (which answers once it has stored the whole snapshot), and,
    /// when the receiver stopped reading, for its reason. Must be positive. Default
    /// 5 minutes.
    pub snapshot_accept_timeout: Duration,
    /// Incoming handshakes in progress at once, node-wide. Default 16.
    ///
    /// A handshake costs the server a key exchange and a signature, on the tokio runtime
    /// that also drives the node's Raft timers, before it even knows whether the client is
    /// a member; this cap bounds that work. Past it, a connection attempt from an address
    /// that has not proved it can receive (a QUIC Retry token) is answered with a Retry,
    /// which costs no key exchange and no state: spoofed sources never come back, and a
    /// genuine peer's client repeats its attempt at once, within the same connection
    /// attempt, when a slot may be free. An attempt that already carries a valid token and
    /// still finds no slot is refused (`CONNECTION_REFUSED`); the peer's link retries later
    /// with its backoff. Either way the cost is one small packet, never a key exchange.
    /// Counted in `QuicStats::handshakes_turned_away`.
    pub max_concurrent_handshakes: usize,
    /// Connections one peer may hold open to this node at once (message and snapshot
    /// connections it dialled, counted from the end of the handshake). A correct peer needs
    /// one message connection, briefly two when connections cross or the peer restarts,
    /// and one per snapshot transfer. A connection past the limit makes the node close the
    /// peer's oldest other connection, never the message connection in use. Default 4;
    /// at least 2. Counted in `QuicStats::excess_connections_closed`.
    pub max_connections_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            coalesce_bytes: 1 << 20,
            peer_queue_capacity: 1024,
            peer_queue_group_share: 1024,
            max_snapshot_size: 64 << 30,
            snapshot_chunk_size: 1 << 20,
            snapshot_accept_timeout: Duration::from_secs(300),
            max_concurrent_handshakes: 16,
            max_connections_per_peer: 4,
        }
    }
}

/// Timers and socket settings. The defaults come from measurements on a 2-core machine over
/// loopback; see the crate README.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// A connection silent for this long is dead. Default 10 s.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below `idle_timeout`. Default 2 s.
    pub keep_alive_interval: Duration,
    /// Time allowed for a TLS handshake plus the stream greeting. Default 5 s.
    pub handshake_timeout: Duration,
    /// How long a write to a peer's message stream may make no progress. A peer that
    /// stops reading makes QUIC flow control block the writes to it; past this time its
    /// link closes the connection, drops what is queued for that peer (Raft retransmits)
    /// and reconnects with the usual backoff. Only that peer's link waits meanwhile:
    /// every peer has its own. This bounds a stall, not a transfer: a slow peer that keeps
    /// reading never times out. Default 10 s.
    pub write_timeout: Duration,
    /// First reconnect delay; doubles per failure, with jitter. Default 50 ms.
    pub reconnect_initial: Duration,
    /// The cap on the reconnect delay. Default 5 s.
    pub reconnect_max: Duration,
    /// Minimum interval between two "peer unreachable" log lines for one peer. A peer that
    /// shut down (closing its connections with the shutdown code) is reported unreachable
    /// only once it has been away this long, so that a restart goes unremarked; a peer that
    /// vanished without a word is reported at the first failed attempt. Default 30 s.
    pub unreachable_log_interval: Duration,
    /// Requested UDP send buffer (`SO_SNDBUF`), bytes; the kernel may cap it. Default 4 MiB.
    pub udp_send_buffer: usize,
    /// Requested UDP receive buffer (`SO_RCVBUF`), bytes; the kernel may cap it. Default 4 MiB.
    pub udp_recv_buffer: usize,
    /// Generic segmentation offload: one system call sends many datagrams. Default on.
    pub gso: bool,
    /// The MTU a connection starts with. Default 1200 (safe on any path).
    pub initial_mtu: u16,
    /// Upper bound for path MTU discovery. Default 6000: with GSO, larger datagrams were
    /// slower on this machine's loopback.
    pub max_mtu: u16,
    /// Per-stream receive window, bytes: how much a peer may send on a stream ahead of
    /// what this node has read. It bounds what a snapshot reception holds (see
    /// [`Limits::max_snapshot_size`]), and a snapshot sender's unacknowledged data. Default
    /// 8 MiB.
    pub stream_window: u32,
    /// Per-connection receive window, bytes. Default 16 MiB.
    pub connection_window: u32,
    /// Per-connection send buffer, bytes. Default 16 MiB.
    pub send_window: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            unreachable_log_interval: Duration::from_secs(30),
            udp_send_buffer: 4 << 20,
            udp_recv_buffer: 4 << 20,
            gso: true,
            initial_mtu: 1200,
            max_mtu: 6000,
            stream_window: 8 << 20,
            connection_window: 16 << 20,
            send_window: 16 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DevCa;

    #[test]
    fn the_frame_size_is_checked_against_the_documented_range() {
        let tls = DevCa::generate().unwrap().node_tls(1).unwrap();
        let config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), tls);
        let with_frame = |size: usize| {
            let mut c = config.clone();
            c.limits.max_frame_size = size;
            c.limits.coalesce_bytes = c.limits.coalesce_bytes.min(size);
            c.validate()
        };
        for ok in [1 << 10, 16 << 20, 256 << 20] {
            assert!(with_frame(ok).is_ok(), "{ok} is in range");
        }
        for bad in [0, (1 << 10) - 1, (256 << 20) + 1, 1 << 30] {
            let err = with_frame(bad).unwrap_err();
            assert!(
                err.to_string().contains("between 1 KiB and 256 MiB"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn each_invalid_field_is_named_by_its_path() {
        let tls = DevCa::generate().unwrap().node_tls(1).unwrap();
        let base = QuicConfig::new("127.0.0.1:0".parse().unwrap(), tls);
        base.validate().unwrap();
        type Mutation = Box<dyn Fn(&mut QuicConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "limits.max_frame_size",
                Box::new(|c| c.limits.max_frame_size = 512),
            ),
            ("limits.coalesce_bytes", Box::new(|c| c.limits.coalesce_bytes = 0)),
            (
                "limits.peer_queue_capacity",
                Box::new(|c| c.limits.peer_queue_capacity = 0),
            ),
            (
                "limits.peer_queue_group_share",
                Box::new(|c| c.limits.peer_queue_group_share = 0),
            ),
            (
                "limits.peer_queue_group_share",
                Box::new(|c| c.limits.peer_queue_group_share = 1025),
            ),
            (
                "limits.snapshot_chunk_size",
                Box::new(|c| c.limits.snapshot_chunk_size = 100),
            ),
            (
                "limits.snapshot_chunk_size",
                Box::new(|c| c.limits.snapshot_chunk_size = (64 << 20) + 1),
            ),
            (
                "limits.max_snapshot_size",
                Box::new(|c| c.limits.max_snapshot_size = 0),
            ),
            (
                "limits.snapshot_accept_timeout",
                Box::new(|c| c.limits.snapshot_accept_timeout = Duration::ZERO),
            ),
            (
                "limits.max_concurrent_handshakes",
                Box::new(|c| c.limits.max_concurrent_handshakes = 0),
            ),
            (
                "limits.max_connections_per_peer",
                Box::new(|c| c.limits.max_connections_per_peer = 1),
            ),
            (
                "tuning.idle_timeout",
                Box::new(|c| c.tuning.idle_timeout = Duration::ZERO),
            ),
            (
                "tuning.idle_timeout",
                Box::new(|c| c.tuning.idle_timeout = Duration::MAX),
            ),
            (
                "tuning.keep_alive_interval",
                Box::new(|c| c.tuning.keep_alive_interval = Duration::ZERO),
            ),
            (
                "tuning.handshake_timeout",
                Box::new(|c| c.tuning.handshake_timeout = Duration::ZERO),
            ),
            (
                "tuning.write_timeout",
                Box::new(|c| c.tuning.write_timeout = Duration::ZERO),
            ),
            (
                "tuning.reconnect_initial",
                Box::new(|c| c.tuning.reconnect_initial = Duration::ZERO),
            ),
            (
                "tuning.reconnect_max",
                Box::new(|c| c.tuning.reconnect_max = Duration::from_millis(1)),
            ),
            ("tuning.initial_mtu", Box::new(|c| c.tuning.initial_mtu = 1000)),
            ("tuning.max_mtu", Box::new(|c| c.tuning.max_mtu = 1199)),
        ];
        for (field, mutate) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            match c.validate() {
                Err(QuicError::Config(e)) => {
                    assert_eq!(e.field, field, "{e}");
                    assert!(
                        e.to_string()
                            .starts_with(&format!("invalid configuration: `{field}` = "))
                    );
                }
                other => panic!("{field}: expected a configuration error, got {other:?}"),
            }
        }
    }
}
