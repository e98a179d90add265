//! Where a node's certificates live: `ca.pem`, `node-<id>.pem` and `node-<id>.key` in one
//! directory, the layout that [`DevCa::write_node_files`] writes and `counter node --certs`
//! reads; and, next to them, the cluster's admin token (`admin.token`, see
//! [`crate::admin_token`]).

use std::path::{Path, PathBuf};

use raft_runtime::raft_core::NodeId;
use raft_transport_quic::{DevCa, NodeFiles, QuicError, TlsConfig};

use crate::admin_token::{AdminToken, TokenError};

/// The files of node `id` in `dir`.
pub fn node_files(dir: &Path, id: NodeId) -> NodeFiles {
    NodeFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("node-{id}.pem")),
        key: dir.join(format!("node-{id}.key")),
    }
}

/// The admin token's file in `dir`.
pub fn admin_token_file(dir: &Path) -> PathBuf {
    dir.join("admin.token")
}

/// Loads node `id`'s TLS identity from `dir`. Errors name the missing or bad file.
pub fn load(dir: &Path, id: NodeId) -> Result<TlsConfig, QuicError> {
    let files = node_files(dir, id);
    TlsConfig::from_pem_files(&files.ca, &files.cert, &files.key)
}

/// Why certificates were not written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A CA is already there: replacing it would lock out every node that trusts it.
    #[error("{} already exists; nodes with certificates from it would no longer be trusted (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    /// Generating or writing failed.
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// Generating or writing the admin token failed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Generates a development CA and a certificate for each of `ids`, and writes them as PEM
/// into `dir` (created if missing; keys readable by their owner only), with a new admin
/// token (readable by its owner only) in [`admin_token_file`].
///
/// The CA's own key is never written: it cannot issue more certificates later, so list
/// every id the cluster may ever use (nodes that will join later included).
pub fn write(dir: &Path, ids: &[NodeId], force: bool) -> Result<Vec<NodeFiles>, CertsError> {
    let ca_file = dir.join("ca.pem");
    if ca_file.exists() && !force {
        return Err(CertsError::Exists(ca_file));
    }
    let ca = DevCa::generate()?;
    let mut written = Vec::new();
    for &id in ids {
        written.push(ca.write_node_files(dir, id)?);
    }
    // A new CA is a new cluster: it gets a new token too (`force` was checked above).
    AdminToken::generate()?.write(&admin_token_file(dir), true)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_certificates_load_and_name_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &[1, 2], false).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(load(dir.path(), 2).unwrap().node_id().unwrap(), 2);

        let again = write(dir.path(), &[1], false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        write(dir.path(), &[1], true).unwrap();

        let token = AdminToken::load(&admin_token_file(dir.path())).unwrap();
        write(dir.path(), &[1], true).unwrap();
        let replaced = AdminToken::load(&admin_token_file(dir.path())).unwrap();
        assert!(
            !replaced.matches(token.authorization().trim_start_matches("Bearer ").as_bytes()),
            "a new CA comes with a new admin token"
        );

        let missing = load(dir.path(), 3).unwrap_err();
        assert!(missing.to_string().contains("node-3.pem"), "{missing}");
    }
}
