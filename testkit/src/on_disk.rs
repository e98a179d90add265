//! Nodes on the file write-ahead log and QUIC with mutual TLS, on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use raft_runtime::{MemberInfo, NodeId, async_trait};
use raft_storage_file::{FileLogStore, Options};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};

use crate::cluster::Plugins;

/// A write-ahead log per node in a temporary directory (removed when this is dropped), and
/// a QUIC transport per node on 127.0.0.1 with a certificate from a fresh development CA.
/// A node binds a port the OS picks at its first start and the same port at every restart.
pub struct OnDisk {
    /// The CA every node's certificate comes from.
    pub ca: DevCa,
    /// The parent of the nodes' data directories.
    pub root: tempfile::TempDir,
    /// Each node's Raft address, once bound.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// The store options every node opens its log with.
    pub options: Options,
    given: BTreeMap<NodeId, Weak<FileLogStore>>,
}

impl OnDisk {
    /// A new CA and an empty temporary directory in the system's temporary directory.
    pub fn new() -> OnDisk {
        OnDisk::with_root(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A new CA and an empty temporary directory (named `wal-...`) under `parent`, for
    /// logs on a chosen file system.
    pub fn in_dir(parent: &Path) -> std::io::Result<OnDisk> {
        let root = tempfile::Builder::new().prefix("wal-").tempdir_in(parent)?;
        Ok(OnDisk::with_root(root))
    }

    fn with_root(root: tempfile::TempDir) -> OnDisk {
        OnDisk {
            ca: DevCa::generate().expect("a development CA"),
            root,
            addrs: BTreeMap::new(),
            options: Options::default(),
            given: BTreeMap::new(),
        }
    }

    /// Node `id`'s data directory.
    pub fn dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    /// Binds node `id`'s transport: on a port the OS picks the first time, on the same port
    /// after (retrying while the old socket goes away).
    pub async fn bind(&mut self, id: NodeId) -> QuicTransport {
        let tls = self.ca.node_tls(id).expect("a node certificate");
        let addr = self
            .addrs
            .get(&id)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut attempt = 0;
        let transport = loop {
            match QuicTransport::bind(QuicConfig::new(addr, tls.clone())).await {
                Ok(t) => break t,
                Err(e) if attempt < 50 => {
                    let _ = e;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("binding node {id} to {addr}: {e}"),
            }
        };
        self.addrs.insert(id, transport.local_addr());
        transport
    }
}

impl Default for OnDisk {
    fn default() -> Self {
        OnDisk::new()
    }
}

#[async_trait]
impl Plugins for OnDisk {
    type Store = Arc<FileLogStore>;
    type Transport = QuicTransport;

    async fn parts(&mut self, id: NodeId) -> (Arc<FileLogStore>, QuicTransport) {
        let dir = self.dir(id);
        let options = self.options.clone();
        let store = tokio::task::spawn_blocking(move || FileLogStore::open(&dir, options))
            .await
            .expect("opening a log store panicked")
            .unwrap_or_else(|e| panic!("opening node {id}'s log: {e}"));
        let store = Arc::new(store);
        self.given.insert(id, Arc::downgrade(&store));
        let transport = self.bind(id).await;
        (store, transport)
    }

    fn member(&self, id: NodeId) -> MemberInfo {
        MemberInfo::new(self.addrs[&id].to_string())
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
