//! One node of a service: its write-ahead log, its state machine, its QUIC endpoint, its
//! Raft tasks and its HTTP API, started and stopped as a unit.
//!
//! Starting takes two steps, [`BoundNode::bind`] then [`BoundNode::start`], because a
//! new cluster's members must know each other's addresses before any of them starts Raft:
//! the demo binds three nodes to ports the OS picks, collects the addresses, and only then
//! starts them. The `node` command (`counter node`) simply calls one after the other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft_runtime::{Config, NodeId, Raft, StartError, StoreError};

use raft_storage_file::{FileLogStore, Options, WalError};
use raft_transport_quic::{QuicConfig, QuicError, QuicTransport, TlsConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Service;
use crate::admin_token::AdminToken;
use crate::http::HttpLimits;
use crate::peers::StartMode;

/// How long stopping waits for each part (the HTTP server's open requests, the last users
/// of the log store) before giving up on it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's id (never 0, never the id of a removed node).
    pub id: NodeId,
    /// Where the Raft (QUIC) endpoint listens. Port 0 picks a free port.
    pub raft_addr: SocketAddr,
    /// Where the HTTP API listens. Port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// The node's data directory (created if missing): the write-ahead log's, and the
    /// service's if it keeps anything on disk (see [`Service::log_dir`]).
    pub data_dir: PathBuf,
    /// The cluster CA, and this node's certificate and key.
    pub tls: TlsConfig,
    /// The token admin requests must carry (the same on every node of the cluster).
    pub admin_token: AdminToken,
    /// What one HTTP client may cost the node.
    pub http_limits: HttpLimits,
    /// The runtime's settings; start from the service's [`Service::raft_defaults`].
    pub raft: Config,
    /// How the write-ahead log is opened; start from [`NodeConfig::log_defaults`].
    pub log: Options,
}

impl NodeConfig {
    /// The runtime settings the services share: the library's defaults, except that a
    /// follower forwards proposals to the leader rather than refusing them, so that every
    /// node can serve every write (the counter's `POST /incr`, the `kv` store's `PUT`). A
    /// service adds what it needs in [`Service::raft_defaults`], which starts from these.
    pub fn raft_defaults() -> Config {
        Config {
            forward_proposals: true,
            ..Config::default()
        }
    }

    /// The write-ahead log settings the services use: the store's defaults, except for an
    /// entry cache of [`DEFAULT_LOG_CACHE`] bytes.
    pub fn log_defaults() -> Options {
        Options {
            cache_bytes: DEFAULT_LOG_CACHE,
            ..Options::default()
        }
    }
}

/// The services' default for the write-ahead log's entry cache (the store's own default is
/// 64 MiB). The cache spares disk reads of recent entries, to apply them and to send them to
/// followers; it fills on every node, so it is part of what a node that joins grows by.
pub const DEFAULT_LOG_CACHE: u64 = 8 << 20;

/// Why a node could not start or stop cleanly. Each message names the file, directory or
/// address at fault.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The write-ahead log could not be opened (locked by another process, unreadable,
    /// corrupt).
    #[error("cannot open the write-ahead log: {0}")]
    Store(#[source] WalError),
    /// The service could not open what it keeps in the data directory (its database).
    #[error("cannot open the {service} state: {source}")]
    Service {
        /// The service's name.
        service: &'static str,
        /// The service's reason.
        #[source]
        source: crate::Error,
    },
    /// The HTTP port could not be bound.
    #[error("cannot bind the HTTP API on {addr}: {source}")]
    HttpBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The QUIC transport could not be set up (busy port, bad certificate).
    #[error(transparent)]
    Transport(#[from] QuicError),
    /// The Raft runtime refused to start.
    #[error("cannot start Raft: {0}")]
    Start(#[from] StartError),
    /// The write-ahead log reported an error when it was closed.
    #[error("closing the write-ahead log: {0}")]
    Close(#[source] StoreError),
}

/// A node of service `S` whose log and state are open and whose sockets are bound, but
/// which does not run yet.
pub struct BoundNode<S: Service> {
    config: NodeConfig,
    store: Arc<FileLogStore>,
    service: S,
    state_machine: S::StateMachine,
    transport: Arc<QuicTransport>,
    http: TcpListener,
}

impl<S: Service> BoundNode<S> {
    /// Opens the write-ahead log (taking its lock) and the service's state
    /// ([`Service::open`]), then binds the HTTP and Raft ports. The log comes first so that
    /// a second process started on the same directory fails before it touches anything
    /// else.
    pub async fn bind(config: NodeConfig) -> Result<BoundNode<S>, NodeError> {
        let dir = S::log_dir(&config);
        // Opening recovers the log: file I/O that must not stall the async runtime.
        let options = config.log.clone();
        let store = tokio::task::spawn_blocking(move || FileLogStore::open(dir, options))
            .await
            .expect("opening the log store panicked")
            .map_err(NodeError::Store)?;
        let store = Arc::new(store);
        let opened = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || S::open(&config))
                .await
                .expect("opening the service's state panicked")
        };
        let (service, state_machine) = match opened {
            Ok(opened) => opened,
            Err(source) => {
                // Release the log's lock before answering, as a failed start should.
                let _ = close_store(config.id, store).await;
                return Err(NodeError::Service {
                    service: S::NAME,
                    source,
                });
            }
        };
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| NodeError::HttpBind {
                addr: config.http_addr,
                source,
            })?;
        let quic = QuicConfig::new(config.raft_addr, config.tls.clone());
        let transport = QuicTransport::bind(quic).await?;
        Ok(BoundNode {
            config,
            store,
            service,
            state_machine,
            transport: Arc::new(transport),
            http,
        })
    }

    /// The address the Raft endpoint listens on (with the real port if 0 was asked for).
    pub fn raft_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The address the HTTP API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("a bound listener has an address")
    }

    /// Starts Raft (recovering from the log, or bootstrapping or waiting to join as
    /// `mode` says on a first start) and then serves the HTTP API.
    pub async fn start(self, mode: StartMode) -> Result<Node<S>, NodeError> {
        let raft_addr = self.raft_addr();
        let http_addr = self.http_addr();
        let admin_timeout = self.config.raft.admin_timeout;
        let admin_token = self.config.admin_token;
        let http_limits = self.config.http_limits;
        let builder = Raft::builder(self.config.id)
            .config(self.config.raft)
            .state_machine(self.state_machine)
            .log_store(self.store.clone())
            .transport(self.transport);
        let raft = match mode {
            StartMode::Bootstrap(members) => builder.bootstrap(members),
            StartMode::Join(members) => builder.join(members),
        }
        .start()
        .await?;

        // A forwarded admin request may take as long as the change itself, plus the hop.
        let routes = self.service.routes(raft.clone(), http_limits);
        let router = crate::http::router(
            S::NAME,
            routes,
            raft.clone(),
            admin_timeout + Duration::from_secs(5),
            admin_token,
            http_limits,
        );
        let (stop_http, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(crate::http::serve(self.http, router, http_limits, async {
            let _ = stopped.await;
        }));
        tracing::info!(node = raft.id(), %raft_addr, %http_addr, "node serving");
        Ok(Node {
            raft,
            raft_addr,
            http_addr,
            store: self.store,
            service: self.service,
            server,
            stop_http,
        })
    }
}

/// A running node of service `S`.
pub struct Node<S: Service> {
    raft: Raft<S::StateMachine>,
    raft_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Arc<FileLogStore>,
    service: S,
    server: JoinHandle<()>,
    stop_http: oneshot::Sender<()>,
}

impl<S: Service> Node<S> {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    /// The Raft handle, for talking to the node in-process (the demo watches its metrics).
    pub fn raft(&self) -> &Raft<S::StateMachine> {
        &self.raft
    }

    /// The service, as [`Service::open`] made it.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The address of the Raft endpoint.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The address of the HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Resolves if the node stops by itself after a fatal error (a failed disk write, a
    /// failed state machine), with the reason. A process should then exit: its node no
    /// longer takes part in the cluster.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(fatal) = metrics.borrow_and_update().fatal.clone() {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the node stopped".into();
            }
        }
    }

    /// Stops the node gracefully and releases its ports and its log directory.
    ///
    /// The order matters: first the HTTP server stops taking new connections; then Raft
    /// shuts down, which answers the requests still in flight (success, or a clear error)
    /// so the HTTP server can finish them; then the log store is closed, once nothing uses
    /// it any more, which flushes it and releases its lock.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let id = self.raft.id();
        let _ = self.stop_http.send(());
        self.raft.shutdown().await;
        let mut server = self.server;
        if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
            tracing::warn!(
                node = id,
                "HTTP requests still open after shutdown; dropping them"
            );
            server.abort();
        }
        drop(self.raft);
        close_store(id, self.store).await
    }
}

/// Closes the store: flushes it and releases its directory lock. A stopped node holds no
/// reference to its store (its shutdown awaits every task it started), so this is the last
/// one; should anything else still hold it, it closes when that lets go.
async fn close_store(id: NodeId, store: Arc<FileLogStore>) -> Result<(), NodeError> {
    match Arc::try_unwrap(store) {
        Ok(store) => tokio::task::spawn_blocking(move || store.close())
            .await
            .expect("closing the log store panicked")
            .map_err(NodeError::Close),
        Err(_) => {
            tracing::warn!(
                node = id,
                "the log store is still referenced after shutdown; it closes when released"
            );
            Ok(())
        }
    }
}
