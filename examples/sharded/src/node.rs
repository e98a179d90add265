//! One node of the sharded service: one write-ahead log, one QUIC endpoint and one task
//! shared by a Raft node of every group, and the HTTP API.
//!
//! Starting takes two steps, [`BoundNode::bind`] then [`BoundNode::start`], because a new
//! cluster's members must know each other's addresses before any of them starts Raft: the
//! demo binds three nodes to ports the OS picks, collects the addresses, then starts them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use raft_runtime::{Config, GroupHost, GroupId, GroupMux, MemberInfo, NodeId, Raft, StoreMetrics};
use raft_service::http::ApiError;
use raft_storage_file::{FileWal, Options};
use raft_transport_quic::{QuicConfig, QuicTransport, TlsConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::group_of;
use crate::state_machine::{Command, Counters, MAX_KEY};

/// The error of starting and stopping a node: one line for the user.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The node's id (never 0).
    pub id: NodeId,
    /// Where the Raft (QUIC) endpoint listens; port 0 picks a free port.
    pub raft_addr: SocketAddr,
    /// Where the HTTP API listens; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// The node's data directory: its write-ahead log, shared by every group.
    pub data_dir: PathBuf,
    /// The cluster CA, and this node's certificate and key.
    pub tls: TlsConfig,
    /// How many groups (`1..=groups`); every node of the cluster must say the same.
    pub groups: u64,
    /// The runtime's settings, the same for every group; start from
    /// [`NodeSettings::raft_defaults`].
    pub raft: Config,
}

impl NodeSettings {
    /// The library's defaults, but a follower forwards proposals to its group's leader
    /// (every node serves every write), and a group with nothing to do goes quiet after
    /// ten ticks: an idle group costs no CPU and sends nothing.
    pub fn raft_defaults() -> Config {
        Config {
            forward_proposals: true,
            quiesce_after_ticks: 10,
            ..Config::default()
        }
    }
}

/// A node whose log is open and whose sockets are bound, but which does not run yet.
pub struct BoundNode {
    settings: NodeSettings,
    transport: Arc<QuicTransport>,
    wal: FileWal,
    http: TcpListener,
}

impl BoundNode {
    /// Opens the node's log and binds its QUIC endpoint and HTTP listener.
    pub async fn bind(settings: NodeSettings) -> Result<BoundNode, Error> {
        if settings.groups == 0 {
            return Err("a node runs at least one group (--groups 0)".into());
        }
        let dir = settings.data_dir.clone();
        let wal = tokio::task::spawn_blocking(move || FileWal::open(dir, Options::default())).await??;
        let transport = QuicTransport::bind(QuicConfig::new(settings.raft_addr, settings.tls.clone()))
            .await
            .map_err(|e| format!("bind the Raft endpoint on {}: {e}", settings.raft_addr))?;
        let http = TcpListener::bind(settings.http_addr)
            .await
            .map_err(|e| format!("bind the HTTP API on {}: {e}", settings.http_addr))?;
        Ok(BoundNode {
            settings,
            transport: Arc::new(transport),
            wal,
            http,
        })
    }

    /// Where the Raft endpoint listens: the address the node's members are told.
    pub fn raft_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.http.local_addr()?)
    }

    /// Starts a Raft node of every group on the shared log and transport (bootstrapping
    /// each group with `members` on a first start), then serves the HTTP API.
    pub async fn start(self, members: BTreeMap<NodeId, MemberInfo>) -> Result<Node, Error> {
        let BoundNode {
            settings,
            transport,
            wal,
            http,
        } = self;
        let http_addr = http.local_addr()?;
        let raft_addr = transport.local_addr();
        // Each group may take an eighth of what the node queues for a peer.
        let mux = GroupMux::new(transport, 4_096, 512);
        // One task and one timer drive every group's node (the task ends once they stop).
        let host = GroupHost::new(settings.raft.tick_interval);
        let mut groups = BTreeMap::new();
        for group in 1..=settings.groups {
            let log = wal.group(group)?;
            let raft = Raft::builder(settings.id)
                .group(group)
                .config(settings.raft.clone())
                .state_machine(Counters::default())
                .log_store(log)
                .transport(mux.transport())
                .host(&host)
                .bootstrap(members.clone())
                .start()
                .await
                .map_err(|e| format!("group {group}: {e}"))?;
            groups.insert(group, raft);
        }
        let app = Api {
            groups: Arc::new(groups.clone()),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(http, routes(app))
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("the HTTP API stopped: {e}");
            }
        });
        Ok(Node {
            groups,
            mux,
            wal,
            raft_addr,
            http_addr,
            server,
            stop,
        })
    }
}

/// A running node.
pub struct Node {
    groups: BTreeMap<GroupId, Raft<Counters>>,
    mux: GroupMux,
    wal: FileWal,
    raft_addr: SocketAddr,
    http_addr: SocketAddr,
    server: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Node {
    /// The node's member of `group`.
    pub fn group(&self, group: GroupId) -> Option<&Raft<Counters>> {
        self.groups.get(&group)
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the Raft endpoint listens.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The counters of the node's shared log: writes, entries and `fdatasync`s, all groups
    /// together.
    pub fn log_metrics(&self) -> StoreMetrics {
        self.wal.metrics()
    }

    /// Stops the HTTP API, every group's Raft node and the transport, then closes the log.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        let _ = self.server.await;
        futures::future::join_all(self.groups.values().map(|raft| raft.shutdown())).await;
        drop(self.groups);
        self.mux.shutdown().await;
        let wal = self.wal;
        tokio::task::spawn_blocking(move || wal.close()).await??;
        Ok(())
    }
}

/// What the handlers share: the node's member of every group.
#[derive(Clone)]
struct Api {
    groups: Arc<BTreeMap<GroupId, Raft<Counters>>>,
}

impl Api {
    fn raft_of(&self, key: &str) -> Result<(GroupId, &Raft<Counters>), ApiError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(ApiError::BadRequest(format!(
                "a counter's name is 1 to {MAX_KEY} bytes, this one is {}",
                key.len()
            )));
        }
        let group = group_of(key, self.groups.len() as u64);
        let raft = self
            .groups
            .get(&group)
            .ok_or_else(|| ApiError::BadRequest(format!("no group {group} on this node")))?;
        Ok((group, raft))
    }
}

/// `POST /incr`'s body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IncrRequest {
    /// The counter's name.
    pub key: String,
    /// How much to add (default 1).
    #[serde(default = "one")]
    pub by: u64,
}

fn one() -> u64 {
    1
}

/// The answer of `POST /incr` and `GET /value/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueResponse {
    /// The counter's name.
    pub key: String,
    /// The group that holds it.
    pub group: GroupId,
    /// Its value: right after the increment, or as of the read.
    pub value: u64,
}

/// One line of `GET /groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// Its leader as this node knows it.
    pub leader: Option<NodeId>,
    /// Its term on this node.
    pub term: u64,
    /// Its commit index on this node.
    pub commit_index: u64,
    /// Whether it is quiet (idle: no ticks, no heartbeats) on this node.
    pub quiescent: bool,
}

fn routes(api: Api) -> Router {
    Router::new()
        .route("/incr", post(incr))
        .route("/value/{key}", get(value))
        .route("/groups", get(groups))
        .with_state(api)
}

/// `POST /incr {"key": "...", "by": n}`: replicates the increment in the key's group (the
/// runtime forwards it to that group's leader) and answers the value right after it.
async fn incr(
    State(api): State<Api>,
    Json(request): Json<IncrRequest>,
) -> Result<Json<ValueResponse>, ApiError> {
    let (group, raft) = api.raft_of(&request.key)?;
    let command = Command::Increment {
        key: request.key.clone(),
        by: request.by,
    };
    let value = raft.propose(command).await?;
    Ok(Json(ValueResponse {
        key: request.key,
        group,
        value,
    }))
}

/// `GET /value/{key}`: a linearizable read (ReadIndex through the group's leader) of one
/// counter on this node's copy of its group.
async fn value(State(api): State<Api>, Path(key): Path<String>) -> Result<Json<ValueResponse>, ApiError> {
    let (group, raft) = api.raft_of(&key)?;
    let name = key.clone();
    let value = raft.read(move |counters: &Counters| counters.get(&name)).await?;
    Ok(Json(ValueResponse { key, group, value }))
}

/// `GET /groups`: every group as this node sees it.
async fn groups(State(api): State<Api>) -> Json<Vec<GroupStatus>> {
    Json(
        api.groups
            .iter()
            .map(|(&group, raft)| {
                let m = raft.metrics().borrow().clone();
                GroupStatus {
                    group,
                    leader: m.leader,
                    term: m.term,
                    commit_index: m.commit,
                    quiescent: m.quiescent,
                }
            })
            .collect(),
    )
}
