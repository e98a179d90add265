//! Development certificates: a throw-away cluster CA and node certificates made with rcgen,
//! so that the example and the tests run with no setup. Nothing generated here is meant
//! for production, and no certificate or key is ever committed: generate them at run time.
//! The example is on [`DevCa`], the public face of this module.

use std::path::{Path, PathBuf};

use raft_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::QuicError;
use crate::identity::node_name;
use crate::tls::TlsConfig;

/// A generated cluster CA that can issue node certificates, for development and tests
/// only: its key lives in memory and is gone with it, so every certificate a cluster
/// needs must be issued from the one `DevCa`. Production clusters load PEM files from
/// their own CA with [`TlsConfig::from_pem_files`].
///
/// # Example
///
/// ```
/// use raft_transport_quic::{DevCa, TlsConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = DevCa::generate()?;
///
/// // In process: a ready TLS configuration for node 1, trusting this CA.
/// let tls = ca.node_tls(1)?;
/// assert_eq!(tls.node_id()?, 1);
///
/// // For separate processes: PEM files for node 2, loaded the way production loads its own.
/// let dir = tempfile::tempdir()?;
/// let files = ca.write_node_files(dir.path(), 2)?;
/// let tls = TlsConfig::from_pem_files(&files.ca, &files.cert, &files.key)?;
/// assert_eq!(tls.node_id()?, 2);
///
/// // Or the PEM text itself.
/// let node = ca.issue(3)?;
/// let tls = TlsConfig::from_pem(ca.ca_cert_pem(), &node.cert_pem, &node.key_pem)?;
/// assert_eq!(tls.node_id()?, 3);
/// # Ok(())
/// # }
/// ```
pub struct DevCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A node certificate and its key, as PEM text.
#[derive(Clone)]
pub struct NodeCert {
    /// The node the certificate names.
    pub node_id: NodeId,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The files [`DevCa::write_node_files`] wrote, to pass to [`TlsConfig::from_pem_files`].
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The node certificate.
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
}

impl DevCa {
    /// Generates a new CA (ECDSA P-256) named "raft development CA".
    pub fn generate() -> Result<DevCa, QuicError> {
        Self::generate_named("raft development CA")
    }

    /// Generates a new CA with the given common name (tests use distinct names to make
    /// "another CA" obvious in logs).
    pub fn generate_named(common_name: &str) -> Result<DevCa, QuicError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(DevCa {
            params,
            key,
            cert_pem,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate naming `node_id` (DNS name `node-<id>.raft`), valid for both
    /// client and server authentication.
    pub fn issue(&self, node_id: NodeId) -> Result<NodeCert, QuicError> {
        self.issue_with_names(node_id, &[node_id])
    }

    /// Issues a certificate naming every id in `names` (tests use this to build invalid
    /// certificates); `node_id` only labels the result.
    #[doc(hidden)]
    pub fn issue_with_names(&self, node_id: NodeId, names: &[NodeId]) -> Result<NodeCert, QuicError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name(node_id));
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|&id| Ok(SanType::DnsName(node_name(id).try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            node_id,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A ready [`TlsConfig`] for `node_id`: this CA as the trust root and a fresh node
    /// certificate.
    pub fn node_tls(&self, node_id: NodeId) -> Result<TlsConfig, QuicError> {
        let node = self.issue(node_id)?;
        TlsConfig::from_pem(&self.cert_pem, &node.cert_pem, &node.key_pem)
    }

    /// Writes `ca.pem`, `node-<id>.pem` and `node-<id>.key` into `dir` (created if needed;
    /// the key file is private to its owner on Unix) and returns their paths.
    pub fn write_node_files(&self, dir: &Path, node_id: NodeId) -> Result<NodeFiles, QuicError> {
        let node = self.issue(node_id)?;
        std::fs::create_dir_all(dir).map_err(|source| QuicError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = NodeFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("node-{node_id}.pem")),
            key: dir.join(format!("node-{node_id}.key")),
        };
        write_file(&files.ca, &self.cert_pem, false)?;
        write_file(&files.cert, &node.cert_pem, false)?;
        write_file(&files.key, &node.key_pem, true)?;
        Ok(files)
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), QuicError> {
    use std::io::Write;
    let err = |source| QuicError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)
}
