//! Nodes on in-memory stores and one in-memory network.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use raft_runtime::{MemLogStore, MemNetwork, MemTransport, MemberInfo, NodeId, async_trait};

use crate::cluster::Plugins;

/// In-memory stores that outlive restarts, on one [`MemNetwork`] the test controls.
///
/// After every stop it checks that the node let go of its store (so a real store could be
/// reopened at once), and panics if not.
#[derive(Default)]
pub struct InMemory {
    /// The network: partitions, drops, delays and pauses.
    pub net: MemNetwork,
    /// Each node's store.
    pub stores: BTreeMap<NodeId, MemLogStore>,
    given: BTreeMap<NodeId, Weak<MemLogStore>>,
}

impl InMemory {
    /// A new network with no stores yet.
    pub fn new() -> InMemory {
        InMemory::default()
    }
}

#[async_trait]
impl Plugins for InMemory {
    type Store = Arc<MemLogStore>;
    type Transport = MemTransport;

    async fn parts(&mut self, id: NodeId) -> (Arc<MemLogStore>, MemTransport) {
        let store = Arc::new(self.stores.entry(id).or_default().clone());
        self.given.insert(id, Arc::downgrade(&store));
        (store, self.net.transport(id))
    }

    fn member(&self, id: NodeId) -> MemberInfo {
        MemberInfo::new(format!("mem-{id}"))
    }

    fn stopped(&mut self, id: NodeId) {
        if let Some(store) = self.given.remove(&id) {
            assert!(
                store.upgrade().is_none(),
                "node {id} still holds its log store after shutdown"
            );
        }
    }
}
