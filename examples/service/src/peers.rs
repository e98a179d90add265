//! The initial members of a new cluster, as given on the command line
//! (`--peers 1=HOST:PORT,2=HOST:PORT,...`), and the bootstrap membership built from them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use raft_runtime::{MemberInfo, NodeId};

use crate::api::HTTP_ATTRIBUTE;

/// How a node with an empty log joins its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Bootstrap a new cluster with these members (the same map on every initial member).
    Bootstrap(BTreeMap<NodeId, MemberInfo>),
    /// Wait to be added to the running cluster of these members.
    Join(BTreeMap<NodeId, MemberInfo>),
}

/// One `ID=HOST:PORT` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The node id.
    pub id: NodeId,
    /// Its address, as other nodes reach it.
    pub addr: String,
}

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` in `{s}` is not a node id"))?;
        if id == 0 {
            return Err(format!("node id 0 is reserved (in `{s}`)"));
        }
        let addr = addr.trim();
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!("`{addr}` in `{s}` is not HOST:PORT"));
        }
        Ok(PeerAddr {
            id,
            addr: addr.to_string(),
        })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.id, self.addr)
    }
}

/// Why a set of peers cannot bootstrap a cluster.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeersError {
    /// An id appears twice.
    #[error("node {0} is listed twice in --peers")]
    Duplicate(NodeId),
    /// The node itself is missing: it would bootstrap a cluster it is not part of.
    #[error(
        "node {id} is not in --peers ({listed}); list every initial member, this one included, or start it with --join"
    )]
    NotListed {
        /// The node.
        id: NodeId,
        /// The ids that are listed.
        listed: String,
    },
    /// An HTTP address names a node that `--peers` does not list.
    #[error("--peers-http lists node {0}, which --peers does not")]
    UnknownHttpPeer(NodeId),
}

/// The bootstrap membership of node `me`: every peer with its Raft address and, where
/// given, its HTTP address as the `http` attribute.
///
/// Every initial member must bootstrap from the *same* map (it becomes the replicated
/// configuration), which is why the HTTP addresses come from a shared list too rather than
/// each node adding only its own.
pub fn bootstrap(me: NodeId, raft: &[PeerAddr], http: &[PeerAddr]) -> Result<StartMode, PeersError> {
    let mut members = listed(raft)?;
    if !members.contains_key(&me) {
        let listed = members
            .keys()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PeersError::NotListed { id: me, listed });
    }
    for peer in http {
        let info = members
            .get_mut(&peer.id)
            .ok_or(PeersError::UnknownHttpPeer(peer.id))?;
        info.attributes
            .insert(HTTP_ATTRIBUTE.to_string(), peer.addr.clone());
    }
    Ok(StartMode::Bootstrap(members))
}

/// The membership for a node joining a running cluster: `raft` lists the cluster's current
/// members. Until the node learns the configuration from the leader, its transport admits
/// only them.
pub fn join(raft: &[PeerAddr]) -> Result<StartMode, PeersError> {
    Ok(StartMode::Join(listed(raft)?))
}

/// The members `--peers` lists, each once.
fn listed(raft: &[PeerAddr]) -> Result<BTreeMap<NodeId, MemberInfo>, PeersError> {
    let mut members = BTreeMap::new();
    for peer in raft {
        if members
            .insert(peer.id, MemberInfo::new(peer.addr.clone()))
            .is_some()
        {
            return Err(PeersError::Duplicate(peer.id));
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(s: &str) -> Vec<PeerAddr> {
        s.split(',').map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn parses_id_equals_host_port() {
        let p: PeerAddr = "3=node-3.example:7003".parse().unwrap();
        assert_eq!(p.id, 3);
        assert_eq!(p.addr, "node-3.example:7003");
        assert_eq!(p.to_string(), "3=node-3.example:7003");
        assert!("3".parse::<PeerAddr>().is_err());
        assert!("x=127.0.0.1:1".parse::<PeerAddr>().is_err());
        assert!("0=127.0.0.1:1".parse::<PeerAddr>().is_err());
        assert!("1=127.0.0.1".parse::<PeerAddr>().is_err());
        assert!("1=127.0.0.1:99999".parse::<PeerAddr>().is_err());
    }

    #[test]
    fn bootstrap_map_carries_http_addresses() {
        let raft = peers("1=a:1,2=b:2");
        let http = peers("1=a:11,2=b:22");
        let StartMode::Bootstrap(members) = bootstrap(2, &raft, &http).unwrap() else {
            panic!("expected a bootstrap membership");
        };
        assert_eq!(members[&1].address, "a:1");
        assert_eq!(members[&2].attributes[HTTP_ATTRIBUTE], "b:22");
    }

    #[test]
    fn refuses_a_node_missing_from_its_own_peers() {
        let err = bootstrap(4, &peers("1=a:1,2=b:2,3=c:3"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("node 4 is not in --peers (1, 2, 3)"),
            "{err}"
        );
        assert_eq!(
            bootstrap(1, &peers("1=a:1,1=b:2"), &[]).unwrap_err(),
            PeersError::Duplicate(1)
        );
        assert_eq!(
            bootstrap(1, &peers("1=a:1"), &peers("2=b:2")).unwrap_err(),
            PeersError::UnknownHttpPeer(2)
        );
    }
}
