//! The UDP sockets and quinn configuration: where the tuning measured on this machine is
//! applied (socket buffers, GSO, MTU bounds, flow-control windows, keep-alive).

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    Endpoint, EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TokioRuntime, TransportConfig, VarInt,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Tuning;
use crate::error::QuicError;
use crate::tls::Crypto;

/// Application close codes, as seen by the peer in `ApplicationClosed`.
pub(crate) mod close {
    use quinn::VarInt;

    /// The transport is shutting down.
    pub(crate) const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// A duplicate connection between the same pair lost the tie-break.
    pub(crate) const DUPLICATE: VarInt = VarInt::from_u32(1);
    /// The peer sent a frame that does not decode.
    pub(crate) const MALFORMED: VarInt = VarInt::from_u32(2);
    /// The peer sent a frame longer than the maximum.
    pub(crate) const OVERSIZE: VarInt = VarInt::from_u32(3);
    /// The peer is no longer a member.
    pub(crate) const NOT_MEMBER: VarInt = VarInt::from_u32(4);
    /// The peer did not greet in time, or greeted with the wrong protocol.
    pub(crate) const PROTOCOL: VarInt = VarInt::from_u32(5);
    /// A snapshot transfer is over (successfully or not).
    pub(crate) const SNAPSHOT_DONE: VarInt = VarInt::from_u32(6);
    /// The peer holds more connections to this node than allowed; this one was the oldest.
    pub(crate) const TOO_MANY_CONNECTIONS: VarInt = VarInt::from_u32(7);
    /// The peer stopped reading: a write made no progress for the write timeout.
    pub(crate) const WRITE_TIMEOUT: VarInt = VarInt::from_u32(8);

    /// Whether a connection ended the way connections end in a cluster's ordinary life, to
    /// be logged at debug rather than as a warning: this node closed it; the peer closed a
    /// duplicate, or shut down (`SHUTDOWN`); the peer went away without a word (the
    /// connection timed out: its process exited, or its machine is down) or restarted
    /// (reset). If the peer stays away, the next attempt to reach it says so, as a
    /// warning ("peer unreachable"). Any other end (a refusal, a protocol error, a peer
    /// that stopped reading) is a real error.
    pub(crate) fn is_expected_end(error: &quinn::ConnectionError) -> bool {
        use quinn::ConnectionError as E;
        match error {
            E::LocallyClosed | E::TimedOut | E::Reset => true,
            E::ApplicationClosed(c) => c.error_code == SHUTDOWN || c.error_code == DUPLICATE,
            E::VersionMismatch | E::TransportError(_) | E::ConnectionClosed(_) | E::CidsExhausted => false,
        }
    }
}

/// Creates and binds a UDP socket with the requested buffer sizes. Buffer sizes are best
/// effort: the kernel caps them (see `net.core.rmem_max`), which is logged, not an error.
pub(crate) fn bind_socket(addr: SocketAddr, tuning: &Tuning) -> Result<std::net::UdpSocket, QuicError> {
    let err = |source| QuicError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped peers too when listening on an IPv6 address; best effort.
        let _ = socket.set_only_v6(false);
    }
    if let Err(e) = socket.set_send_buffer_size(tuning.udp_send_buffer) {
        tracing::debug!("cannot set UDP send buffer: {e}");
    }
    if let Err(e) = socket.set_recv_buffer_size(tuning.udp_recv_buffer) {
        tracing::debug!("cannot set UDP receive buffer: {e}");
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    tracing::debug!(
        %addr,
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        "UDP socket bound"
    );
    Ok(socket.into())
}

/// The QUIC transport parameters of one side of every connection.
///
/// Streams are limited to what the protocol uses: the dialler opens exactly one
/// bidirectional stream per connection (the message stream, or one snapshot transfer) and
/// the accepting side opens none; nothing uses unidirectional streams or datagrams. So the
/// accepting side (`accepting = true`) lets its peer open one bidirectional stream at a
/// time, and the dialling side lets its peer open none; QUIC flow control then makes any
/// further stream impossible, instead of buffering up to quinn's default of 100 streams
/// per connection, each with its own receive window.
pub(crate) fn transport_config(tuning: &Tuning, accepting: bool) -> Result<Arc<TransportConfig>, QuicError> {
    let mut config = TransportConfig::default();
    let idle = IdleTimeout::try_from(tuning.idle_timeout).map_err(|_| {
        QuicError::Config(raft_core::ConfigError::new(
            "tuning.idle_timeout",
            tuning.idle_timeout,
            crate::config::IDLE_TIMEOUT_RULE,
        ))
    })?;
    config
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(tuning.keep_alive_interval))
        .stream_receive_window(VarInt::from_u32(tuning.stream_window))
        .receive_window(VarInt::from_u32(tuning.connection_window))
        .send_window(tuning.send_window)
        .initial_mtu(tuning.initial_mtu)
        .enable_segmentation_offload(tuning.gso)
        .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(accepting)))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(tuning.max_mtu);
    config.mtu_discovery_config(Some(mtu));
    Ok(Arc::new(config))
}

/// quinn's bound on connection attempts received but not yet accepted or refused (the
/// accept loop decides on each at once; this only bounds a backlog if it falls behind).
const MAX_PENDING_INCOMING: usize = 1024;

/// The listening endpoint (server and message client) and a client-only endpoint on its
/// own socket for outgoing snapshots, so that bulk sends do not queue behind (or in front
/// of) heartbeats in one socket.
pub(crate) struct Endpoints {
    pub(crate) main: Endpoint,
    pub(crate) snapshots: Endpoint,
    pub(crate) client_messages: quinn::ClientConfig,
    pub(crate) client_snapshots: quinn::ClientConfig,
}

pub(crate) fn build(listen: SocketAddr, tuning: &Tuning, crypto: Crypto) -> Result<Endpoints, QuicError> {
    let no_suite = |_| QuicError::NoInitialCipherSuite;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(crypto.server).map_err(no_suite)?,
    ));
    server
        .transport_config(transport_config(tuning, true)?)
        .max_incoming(MAX_PENDING_INCOMING);
    let transport = transport_config(tuning, false)?;
    let client = |config: rustls::ClientConfig| -> Result<quinn::ClientConfig, QuicError> {
        let mut client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(config).map_err(no_suite)?));
        client.transport_config(transport.clone());
        Ok(client)
    };
    let client_messages = client(crypto.client_messages)?;
    let client_snapshots = client(crypto.client_snapshots)?;

    let runtime = Arc::new(TokioRuntime);
    let socket = bind_socket(listen, tuning)?;
    let main = Endpoint::new(EndpointConfig::default(), Some(server), socket, runtime.clone())
        .map_err(|source| QuicError::Bind { addr: listen, source })?;
    let local = main
        .local_addr()
        .map_err(|source| QuicError::Bind { addr: listen, source })?;
    let snapshot_addr = SocketAddr::new(local.ip(), 0);
    let socket = bind_socket(snapshot_addr, tuning)?;
    let snapshots = Endpoint::new(EndpointConfig::default(), None, socket, runtime).map_err(|source| {
        QuicError::Bind {
            addr: snapshot_addr,
            source,
        }
    })?;
    Ok(Endpoints {
        main,
        snapshots,
        client_messages,
        client_snapshots,
    })
}
