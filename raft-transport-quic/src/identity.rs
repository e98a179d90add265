//! How a certificate names a node.
//!
//! Every node certificate carries exactly one DNS subject alternative name of the form
//! `node-<id>.raft`, where `<id>` is the node id in decimal without leading zeros (for
//! example `node-7.raft`). The `.raft` suffix is not a real top-level domain, so these names
//! never collide with names a public CA would sign; they are only meaningful under the
//! cluster CA.
//!
//! A client dials a peer with the server name `node-<id>.raft`, so the standard WebPKI name
//! check already proves that the server is the node it meant to reach. A server learns who
//! its client is by reading that name from the client's (chain-verified) certificate.

use raft_core::NodeId;
use rustls::pki_types::CertificateDer;

/// The suffix of every node name.
const SUFFIX: &str = ".raft";
/// The prefix of every node name.
const PREFIX: &str = "node-";

/// The DNS name that identifies `id` in certificates and TLS server names: `node-<id>.raft`.
pub fn node_name(id: NodeId) -> String {
    format!("{PREFIX}{id}{SUFFIX}")
}

/// Parses a node name (`node-<id>.raft`) back into the id. Returns `None` for any other
/// name, for id 0 (reserved) and for ids written with leading zeros, so that each id has
/// exactly one spelling.
pub fn parse_node_name(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id != 0)
}

/// The node id a certificate names.
///
/// The certificate must carry exactly one `node-<id>.raft` DNS name; none or several is an
/// error (a certificate that names two nodes could impersonate either). This only reads
/// the name: whether the certificate is signed by the cluster CA is checked separately.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, String> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("malformed certificate: {e}"))?;
    let mut ids = parsed.valid_dns_names().filter_map(parse_node_name);
    let Some(id) = ids.next() else {
        return Err("certificate names no node (expected a DNS name node-<id>.raft)".to_string());
    };
    if let Some(other) = ids.next() {
        return Err(format!("certificate names several nodes ({id} and {other})"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip() {
        for id in [1, 7, 42, u64::MAX] {
            assert_eq!(parse_node_name(&node_name(id)), Some(id));
        }
    }

    #[test]
    fn other_names_are_not_nodes() {
        for name in [
            "node-0.raft",
            "node-01.raft",
            "node-.raft",
            "node-1x.raft",
            "node-1.raft.example",
            "xnode-1.raft",
            "node-18446744073709551616.raft",
            "localhost",
        ] {
            assert_eq!(parse_node_name(name), None, "{name}");
        }
    }
}
