//! The errors of building a transport and of loading or generating its certificates.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a [`QuicTransport`](crate::QuicTransport) could not be built, or why certificate
/// material could not be loaded or generated. Each variant names the address or file at
/// fault, so that a misconfigured node says exactly what to fix.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The UDP socket could not be created or bound (for example, the port is busy).
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (development certificates).
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file was read but holds no usable item of the expected kind, or is malformed.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file (or a description of the in-memory source).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificates or key do not form a usable TLS identity (for example, the node's
    /// certificate does not name the node, or the key does not match).
    #[error("invalid TLS identity: {0}")]
    Identity(String),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
    /// Certificate generation (development helper) failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A configuration value is out of range, or disagrees with another.
    #[error(transparent)]
    Config(#[from] raft_core::ConfigError),
    /// The TLS crypto provider offers no cipher suite a QUIC connection can start with
    /// (`TLS_AES_128_GCM_SHA256`).
    #[error("the TLS crypto provider has no QUIC initial cipher suite")]
    NoInitialCipherSuite,
}
