//! `node`: run one node until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raft_runtime::raft_core::NodeId;
use raft_storage_file::Options;

use super::load_admin_token;
use super::parse_duration;
use crate::http::HttpLimits;
use crate::node::{BoundNode, DEFAULT_LOG_CACHE, NodeConfig};
use crate::peers::{self, PeerAddr};
use crate::shutdown::Signals;
use crate::{Error, Service};

/// Arguments of the `node` command.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("membership").required(true).multiple(true).args(["peers", "join"])))]
pub struct Args {
    /// This node's id.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    id: NodeId,
    /// Where to listen for Raft traffic (QUIC over UDP), IP:PORT.
    #[arg(long)]
    raft_addr: SocketAddr,
    /// Where to serve the HTTP API, IP:PORT.
    #[arg(long)]
    http_addr: SocketAddr,
    /// The node's data directory: its write-ahead log, and its state if the service keeps
    /// it on disk (created if missing; one node per directory).
    #[arg(long)]
    data_dir: PathBuf,
    /// The directory holding ca.pem, node-ID.pem and node-ID.key (see the `certs` command).
    #[arg(long)]
    certs: PathBuf,
    /// The Raft addresses of all initial members, this node included (ID=HOST:PORT,...);
    /// with `--join`, those of the cluster's current members.
    /// Used on the first start only, to bootstrap the cluster; a restart resumes from the
    /// data directory. Give every initial member the same list.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<PeerAddr>,
    /// The HTTP addresses of the initial members (ID=HOST:PORT,...), recorded in the
    /// cluster's configuration so that any node can pass admin requests on to the leader.
    /// Give every initial member the same list.
    #[arg(long, value_delimiter = ',', requires = "peers")]
    peers_http: Vec<PeerAddr>,
    /// Start empty and wait to be added by the cluster (see the `add-node` command) instead of
    /// bootstrapping a new cluster. `--peers` then lists the cluster's current members:
    /// until this node is added, it accepts connections from them only.
    #[arg(long, requires = "peers")]
    join: bool,
    /// Take a snapshot of the state and compact the log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Also take one once this many MiB of entries were applied since the last (0 never).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    snapshot_every_mib: u64,
    /// Whatever the two options above say, take the next snapshot only once the entries
    /// applied since the last add up to this percentage of its size, or to 1,000,000
    /// entries: a snapshot copies the whole state, so a large state is snapshotted less
    /// often (0 turns this off).
    #[arg(long, default_value_t = 100)]
    snapshot_log_percent: u64,
    /// Keep this many entries of log behind each snapshot, so that a follower that lags by
    /// fewer catches up from the log rather than by a whole snapshot (0 keeps none).
    #[arg(long, default_value_t = 5_000)]
    log_kept_entries: u64,
    /// Keep at most this many MiB of log behind each snapshot (see `--log-kept-entries`);
    /// the log after a snapshot being sent to a follower is kept within it too, so that
    /// the follower catches up from the log after it rather than by another snapshot.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    log_kept_mib: u64,
    /// Keep up to this many MiB of recent log entries in memory, sparing disk reads when
    /// they are applied or sent to followers (0 keeps none).
    #[arg(long, default_value_t = DEFAULT_LOG_CACHE >> 20, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    log_cache_mib: u64,
    /// The file holding the admin token that admin requests must carry. Default:
    /// admin.token in the --certs directory (the `certs` command writes it).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Close a connection whose request head (request line and headers) has not arrived
    /// within this long, counted from the connection's start or the previous answer: also
    /// how long a kept-alive connection may sit idle (500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    http_header_timeout: Duration,
    /// Answer 408 and close the connection when a request body has not arrived within
    /// this long after its head.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    http_body_timeout: Duration,
    /// Serve at most this many HTTP connections at once; more wait, unaccepted, until one
    /// closes. Keep it well below the open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    http_max_connections: u32,
    /// For a service with client sessions (the counter): expire a session left unused for
    /// this long, by the time the leaders stamp into its commands (default 10m). Give every
    /// node of the cluster the same.
    #[arg(long, value_parser = parse_positive_duration)]
    session_timeout: Option<Duration>,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// Runs the node. Misuse (a missing certificate or admin token, a locked or unusable data directory, an
/// id missing from `--peers`, a busy port) fails before the node starts, with one line
/// that names what is wrong.
pub async fn run<S: Service>(args: Args) -> Result<(), Error> {
    let mode = if args.join {
        peers::join(&args.peers)?
    } else {
        peers::bootstrap(args.id, &args.peers, &args.peers_http)?
    };
    let mut signals = Signals::install()?;
    let tls = crate::certs::load(&args.certs, args.id)?;
    let token_file = args
        .admin_token_file
        .unwrap_or_else(|| crate::certs::admin_token_file(&args.certs));
    let admin_token = load_admin_token(S::NAME, &token_file)?;
    let http_limits = HttpLimits {
        header_timeout: args.http_header_timeout,
        body_timeout: args.http_body_timeout,
        max_connections: args.http_max_connections as usize,
        ..HttpLimits::default()
    };
    let mut raft = S::raft_defaults();
    if let Some(timeout) = args.session_timeout {
        match raft.sessions.as_mut() {
            Some(sessions) => sessions.timeout = timeout,
            None => return Err(format!("--session-timeout: {} has no client sessions", S::NAME).into()),
        }
    }
    raft.snapshot_every = args.snapshot_every;
    raft.snapshot_every_bytes = args.snapshot_every_mib << 20;
    raft.snapshot_log_percent = args.snapshot_log_percent;
    raft.log_kept_entries = args.log_kept_entries;
    raft.log_kept_bytes = args.log_kept_mib << 20;
    let log = Options {
        cache_bytes: args.log_cache_mib << 20,
        ..NodeConfig::log_defaults()
    };
    let config = NodeConfig {
        id: args.id,
        raft_addr: args.raft_addr,
        http_addr: args.http_addr,
        data_dir: args.data_dir,
        tls,
        admin_token,
        http_limits,
        raft,
        log,
    };
    let node = BoundNode::<S>::bind(config).await?.start(mode).await?;

    enum Stop {
        Signal(&'static str),
        Failed(String),
    }
    let stop = tokio::select! {
        name = signals.recv() => Stop::Signal(name),
        reason = node.failed() => Stop::Failed(reason),
    };
    match stop {
        Stop::Signal(name) => {
            tracing::info!(node = node.id(), "{name} received; shutting down");
            node.shutdown().await?;
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Stop::Failed(reason) => {
            let id = node.id();
            if let Err(e) = node.shutdown().await {
                tracing::warn!(error = %e, "while shutting down");
            }
            Err(format!("node {id} stopped after a fatal error: {reason}").into())
        }
    }
}
