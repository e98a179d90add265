//! The demo: three nodes in one process over QUIC with mutual TLS, each running a member
//! of every group on one shared log; concurrent increments over HTTP, spread over every
//! node and every group; then every counter read back from every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft_runtime::{GroupId, MemberInfo, NodeId};
use raft_transport_quic::DevCa;
use reqwest::StatusCode;

use crate::group_of;
use crate::node::{BoundNode, Error, GroupStatus, IncrRequest, Node, NodeSettings, ValueResponse};

/// What the demo does.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Raft groups.
    #[arg(long, default_value_t = 8)]
    pub groups: u64,
    /// Counters, spread over the groups by name.
    #[arg(long, default_value_t = 64)]
    pub keys: usize,
    /// Increments in all.
    #[arg(long, default_value_t = 2_000)]
    pub increments: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
}

/// What the demo found.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// Increments acknowledged.
    pub acknowledged: usize,
    /// Increments whose outcome stayed unknown (a timeout): each may or may not count.
    pub unknown: usize,
    /// Counters read back, from every node.
    pub keys: usize,
    /// Each group's leader at the end.
    pub leaders: BTreeMap<GroupId, NodeId>,
    /// `fdatasync`s of the three logs during the increments.
    pub fsyncs: u64,
    /// How long the increments took.
    pub elapsed: Duration,
}

/// How long the demo waits for anything before it gives up.
const DEADLINE: Duration = Duration::from_secs(60);

fn key(i: usize) -> String {
    format!("counter-{i}")
}

/// Runs the demo and checks what it reads back: every counter, on every node, holds the
/// increments acknowledged for it (and at most the unknown ones besides).
pub async fn run(args: DemoArgs) -> Result<DemoReport, Error> {
    if args.groups == 0 || args.keys == 0 || args.clients == 0 {
        return Err("--groups, --keys and --clients must be at least 1".into());
    }
    let dir = tempfile::Builder::new().prefix("sharded-demo").tempdir()?;
    let ca = DevCa::generate()?;
    let mut bound = Vec::new();
    for id in 1..=3u64 {
        let settings = NodeSettings {
            id,
            raft_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join(format!("node-{id}")),
            tls: ca.node_tls(id)?,
            groups: args.groups,
            raft: NodeSettings::raft_defaults(),
        };
        bound.push(BoundNode::bind(settings).await?);
    }
    let members: BTreeMap<NodeId, MemberInfo> = bound
        .iter()
        .zip(1..)
        .map(|(node, id)| (id, node.raft_addr().to_string().into()))
        .collect();
    let mut nodes: Vec<Node> = Vec::new();
    for node in bound {
        nodes.push(node.start(members.clone()).await?);
    }
    let urls: Vec<SocketAddr> = nodes.iter().map(Node::http_addr).collect();
    let fsyncs_before: u64 = nodes.iter().map(|n| n.log_metrics().fsyncs).sum();
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(DEADLINE).build()?;

    // Client k sends increments k, k + clients, ..., each to node i % 3.
    let mut tasks = Vec::new();
    for k in 0..args.clients {
        let (client, urls, args) = (client.clone(), urls.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeMap::<String, usize>::new();
            let mut unknown = BTreeMap::<String, usize>::new();
            for i in (k..args.increments).step_by(args.clients) {
                let name = key(i % args.keys);
                let url = format!("http://{}/incr", urls[i % urls.len()]);
                let body = IncrRequest {
                    key: name.clone(),
                    by: 1,
                };
                let deadline = Instant::now() + DEADLINE;
                loop {
                    let response = client.post(&url).json(&body).send().await?;
                    match response.status() {
                        StatusCode::OK => {
                            let answer: ValueResponse = response.json().await?;
                            if answer.group != group_of(&name, args.groups) {
                                return Err(format!("{name} answered by group {}", answer.group).into());
                            }
                            *acked.entry(name).or_default() += 1;
                            break;
                        }
                        // Not applied: safe to send again.
                        StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        StatusCode::GATEWAY_TIMEOUT => {
                            *unknown.entry(name).or_default() += 1;
                            break;
                        }
                        status => {
                            let text = response.text().await.unwrap_or_default();
                            return Err(format!("POST /incr for {name}: {status} {text}").into());
                        }
                    }
                }
            }
            Ok::<_, Error>((acked, unknown))
        }));
    }
    let mut acked = BTreeMap::<String, usize>::new();
    let mut unknown = BTreeMap::<String, usize>::new();
    for task in tasks {
        let (a, u) = task.await??;
        for (name, n) in a {
            *acked.entry(name).or_default() += n;
        }
        for (name, n) in u {
            *unknown.entry(name).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    let fsyncs = nodes.iter().map(|n| n.log_metrics().fsyncs).sum::<u64>() - fsyncs_before;

    // Every counter, from every node: a linearizable read through its group's leader.
    for i in 0..args.keys.min(args.increments) {
        let name = key(i);
        let (low, high) = (
            acked.get(&name).copied().unwrap_or(0),
            acked.get(&name).copied().unwrap_or(0) + unknown.get(&name).copied().unwrap_or(0),
        );
        for url in &urls {
            let answer: ValueResponse = read_value(&client, url, &name).await?;
            let value = answer.value as usize;
            if value < low || value > high {
                return Err(format!(
                    "{name} reads {value} on {url}: {low} increments acknowledged, {} unknown",
                    high - low
                )
                .into());
            }
        }
    }
    let status: Vec<GroupStatus> = client
        .get(format!("http://{}/groups", urls[0]))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let leaders = status.iter().filter_map(|g| Some((g.group, g.leader?))).collect();
    for node in nodes {
        node.stop().await?;
    }
    Ok(DemoReport {
        acknowledged: acked.values().sum(),
        unknown: unknown.values().sum(),
        keys: args.keys.min(args.increments),
        leaders,
        fsyncs,
        elapsed,
    })
}

/// `GET /value/{name}`, sent again while the node answers that it cannot serve it yet.
async fn read_value(client: &reqwest::Client, url: &SocketAddr, name: &str) -> Result<ValueResponse, Error> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // The demo's names need no escaping in a path.
        let response = client.get(format!("http://{url}/value/{name}")).send().await?;
        match response.status() {
            StatusCode::OK => return Ok(response.json().await?),
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            status => {
                let text = response.text().await.unwrap_or_default();
                return Err(format!("GET /value/{name} on {url}: {status} {text}").into());
            }
        }
    }
}
