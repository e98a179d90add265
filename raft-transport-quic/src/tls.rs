//! Mutual TLS: loading the cluster CA and a node's identity, and the verifiers that admit
//! only members of the cluster.
//!
//! Both ends of every connection verify each other:
//!
//! * the certificate chain must lead to the cluster CA (rustls' WebPKI verifiers do that);
//! * the certificate must name exactly one node (see [`crate::identity`]);
//! * that node must be a member: listed in the last
//!   [`Transport::set_peers`](raft_runtime::Transport::set_peers) call, or in
//!   [`QuicConfig::with_initial_peers`](crate::QuicConfig::with_initial_peers) before the
//!   first such call. Until the transport knows the membership, **every** peer is refused
//!   ("membership not known yet"): a certificate from the cluster CA is necessary, never
//!   sufficient, so a removed node or one from another cluster under the same CA is never
//!   admitted, not even in the moments after a restart.
//!
//! A client also checks that the server is the node it dialled: it passes
//! `node-<id>.raft` as the TLS server name, and the name must be in the certificate.
//!
//! TLS session resumption is disabled on both sides: a resumed session skips certificate
//! verification, and with it the membership check.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use raft_core::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore};
use rustls::{SignatureScheme, version};

use crate::error::QuicError;
use crate::identity::{node_id_of, parse_node_name};

/// ALPN protocol of the message connection.
pub(crate) const ALPN_MESSAGES: &[u8] = b"raft-msg/1";
/// ALPN protocol of a snapshot connection.
pub(crate) const ALPN_SNAPSHOTS: &[u8] = b"raft-snap/1";

/// A node's TLS material: the cluster CA it trusts, and its own certificate chain and key.
///
/// Both ends of every connection verify each other:
///
/// * the certificate chain must lead to the cluster CA (rustls' WebPKI verifiers do that);
/// * the certificate must name exactly one node (see [`crate::identity`]);
/// * that node must be a member: listed in the last
///   [`Transport::set_peers`](raft_runtime::Transport::set_peers) call, or in
///   [`QuicConfig::with_initial_peers`](crate::QuicConfig::with_initial_peers) before the
///   first such call. Until the transport knows the membership, **every** peer is refused
///   ("membership not known yet"): a certificate from the cluster CA is necessary, never
///   sufficient, so a removed node or one from another cluster under the same CA is never
///   admitted, not even in the moments after a restart.
///
/// A client also checks that the server is the node it dialled: it passes `node-<id>.raft`
/// as the TLS server name, and the name must be in the certificate. TLS session resumption
/// is disabled on both sides: a resumed session skips certificate verification, and with it
/// the membership check.
pub struct TlsConfig {
    /// The cluster CA certificate(s): the trust roots for peers' certificates.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// This node's certificate, first, followed by any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the node's certificate.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        TlsConfig {
            ca_certs: self.ca_certs.clone(),
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_certs", &self.ca_certs.len())
            .field("cert_chain", &self.cert_chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsConfig {
    /// Loads the CA certificate(s), the node's certificate chain and its private key from
    /// PEM files. Errors name the file at fault.
    pub fn from_pem_files(
        ca_file: impl AsRef<Path>,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<TlsConfig, QuicError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| QuicError::ReadFile {
                path: path.to_path_buf(),
                source,
            })
        };
        let (ca_file, cert_file, key_file) = (ca_file.as_ref(), cert_file.as_ref(), key_file.as_ref());
        Ok(TlsConfig {
            ca_certs: parse_certs(&read(ca_file)?, ca_file)?,
            cert_chain: parse_certs(&read(cert_file)?, cert_file)?,
            key: parse_key(&read(key_file)?, key_file)?,
        })
    }

    /// Parses the same three items from PEM text already in memory. Errors name the
    /// argument (`ca`, `cert` or `key`).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<TlsConfig, QuicError> {
        Ok(TlsConfig {
            ca_certs: parse_certs(ca_pem.as_bytes(), Path::new("<ca>"))?,
            cert_chain: parse_certs(cert_pem.as_bytes(), Path::new("<cert>"))?,
            key: parse_key(key_pem.as_bytes(), Path::new("<key>"))?,
        })
    }

    /// The node id this identity's certificate names.
    pub fn node_id(&self) -> Result<NodeId, QuicError> {
        let leaf = self
            .cert_chain
            .first()
            .ok_or_else(|| QuicError::Identity("empty certificate chain".into()))?;
        node_id_of(leaf).map_err(QuicError::Identity)
    }
}

fn pem_error(path: &Path, reason: impl Into<String>) -> QuicError {
    QuicError::Pem {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE section found"));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, QuicError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => pem_error(path, "no PRIVATE KEY section found"),
        e => pem_error(path, format!("malformed PEM: {e}")),
    })
}

/// The members this node admits, shared between the transport and its TLS verifiers.
#[derive(Debug)]
pub(crate) struct Members {
    own_id: NodeId,
    /// `None` until the membership is known (the first `set_peers`, or the initial list of
    /// the configuration): nobody is admitted.
    ids: RwLock<Option<BTreeSet<NodeId>>>,
    /// Handshakes refused because of a peer's certificate.
    refused: AtomicU64,
    log: Mutex<Option<Instant>>,
}

impl Members {
    /// Members admitting `initial` (`None`: nobody until the first [`Members::set`]).
    pub(crate) fn new(own_id: NodeId, initial: Option<BTreeSet<NodeId>>) -> Members {
        Members {
            own_id,
            ids: RwLock::new(initial),
            refused: AtomicU64::new(0),
            log: Mutex::new(None),
        }
    }

    pub(crate) fn set(&self, ids: BTreeSet<NodeId>) {
        *self.ids.write().unwrap_or_else(|e| e.into_inner()) = Some(ids);
    }

    /// Whether `id` may connect to this node (or be connected to).
    pub(crate) fn admits(&self, id: NodeId) -> Result<(), String> {
        if id == self.own_id {
            return Err(format!("peer presents this node's own identity ({id})"));
        }
        match &*self.ids.read().unwrap_or_else(|e| e.into_inner()) {
            None => Err(format!(
                "membership not known yet: node {id} cannot be admitted before the member list is set"
            )),
            Some(ids) if !ids.contains(&id) => Err(format!("node {id} is not a member of the cluster")),
            Some(_) => Ok(()),
        }
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts and logs (at most every few seconds) a refused peer certificate.
    fn refuse(&self, side: &str, err: rustls::Error) -> rustls::Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut last = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(node = self.own_id, "refused {side} certificate: {err}");
        } else {
            tracing::debug!(node = self.own_id, "refused {side} certificate: {err}");
        }
        err
    }
}

/// An identity failure carried inside a rustls error.
#[derive(Debug)]
struct IdentityError(String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

fn identity_error(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(IdentityError(
        reason,
    )))))
}

/// Server side: verifies a client's certificate chain, then its node name and membership.
#[derive(Debug)]
struct MemberClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    members: Arc<Members>,
}

impl ClientCertVerifier for MemberClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| self.members.refuse("client", e))?;
        let id = node_id_of(end_entity).map_err(|e| self.members.refuse("client", identity_error(e)))?;
        self.members
            .admits(id)
            .map_err(|e| self.members.refuse("client", identity_error(e)))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client side: verifies the server's chain and that it names the node dialled, then
/// membership.
#[derive(Debug)]
struct MemberServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    members: Arc<Members>,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| self.members.refuse("server", e))?;
        let expected = match server_name {
            ServerName::DnsName(name) => parse_node_name(name.as_ref()),
            _ => None,
        };
        let id = node_id_of(end_entity).map_err(|e| self.members.refuse("server", identity_error(e)))?;
        if expected != Some(id) {
            let reason = format!("server is node {id}, but node {expected:?} was dialled");
            return Err(self.members.refuse("server", identity_error(reason)));
        }
        self.members
            .admits(id)
            .map_err(|e| self.members.refuse("server", identity_error(e)))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls configurations of one node: one server side (both ALPNs) and a client side
/// per connection kind.
pub(crate) struct Crypto {
    pub(crate) server: rustls::ServerConfig,
    pub(crate) client_messages: rustls::ClientConfig,
    pub(crate) client_snapshots: rustls::ClientConfig,
}

/// Builds the rustls configurations for `tls`, with verifiers that consult `members`.
pub(crate) fn build_crypto(tls: &TlsConfig, members: &Arc<Members>) -> Result<Crypto, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in &tls.ca_certs {
        roots
            .add(ca.clone())
            .map_err(|e| QuicError::Identity(format!("unusable CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| QuicError::Identity(format!("cannot build client verifier: {e}")))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13])?
        .with_client_cert_verifier(Arc::new(MemberClientVerifier {
            inner: client_verifier,
            members: members.clone(),
        }))
        .with_single_cert(tls.cert_chain.clone(), tls.key.clone_key())?;
    server.alpn_protocols = vec![ALPN_MESSAGES.to_vec(), ALPN_SNAPSHOTS.to_vec()];
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| QuicError::Identity(format!("cannot build server verifier: {e}")))?;
    let client = |alpn: &[u8]| -> Result<rustls::ClientConfig, QuicError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MemberServerVerifier {
                inner: server_verifier.clone(),
                members: members.clone(),
            }))
            .with_client_auth_cert(tls.cert_chain.clone(), tls.key.clone_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(config)
    };
    Ok(Crypto {
        client_messages: client(ALPN_MESSAGES)?,
        client_snapshots: client(ALPN_SNAPSHOTS)?,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_admitted_before_the_membership_is_known() {
        let members = Members::new(1, None);
        let err = members.admits(2).unwrap_err();
        assert!(err.contains("membership not known yet"), "{err}");
        assert!(members.admits(1).is_err(), "never its own identity");
    }

    #[test]
    fn only_listed_members_are_admitted() {
        let members = Members::new(1, Some(BTreeSet::from([1, 2])));
        assert_eq!(members.admits(2), Ok(()));
        let err = members.admits(3).unwrap_err();
        assert!(err.contains("not a member"), "{err}");
        // A removed member is refused from the moment the new list is set.
        members.set(BTreeSet::from([1, 3]));
        assert!(members.admits(2).is_err());
        assert_eq!(members.admits(3), Ok(()));
        // An empty list is a known membership that admits nobody.
        members.set(BTreeSet::new());
        assert!(members.admits(3).unwrap_err().contains("not a member"));
    }
}
