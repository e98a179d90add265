//! The sharded example end to end: the demo's checks at a small size; bad requests get a
//! 4xx naming what was wrong; every node stopped and started again on its data directory
//! keeps every group's counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use raft_runtime::{MemberInfo, NodeId};
use raft_transport_quic::DevCa;
use sharded::demo::{self, DemoArgs};
use sharded::group_of;
use sharded::node::{BoundNode, IncrRequest, Node, NodeSettings, ValueResponse};

const GROUPS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reads_back_every_increment() {
    let report = demo::run(DemoArgs {
        groups: 4,
        keys: 12,
        increments: 120,
        clients: 6,
    })
    .await
    .expect("the demo runs");
    assert_eq!(report.acknowledged + report.unknown, 120);
    assert_eq!(report.keys, 12);
    assert_eq!(report.leaders.len(), 4, "every group has a leader");
    assert!(report.fsyncs > 0);
}

async fn start(
    dir: &std::path::Path,
    ca: &DevCa,
    addrs: &[(SocketAddr, SocketAddr)],
) -> (Vec<Node>, Vec<SocketAddr>) {
    let mut bound = Vec::new();
    for (i, &(raft_addr, http_addr)) in addrs.iter().enumerate() {
        let id = i as NodeId + 1;
        let settings = NodeSettings {
            id,
            raft_addr,
            http_addr,
            data_dir: dir.join(format!("node-{id}")),
            tls: ca.node_tls(id).unwrap(),
            groups: GROUPS,
            raft: NodeSettings::raft_defaults(),
        };
        // A stopped node's UDP socket closes once its endpoint's last task has gone: a
        // restart on the same address waits for that.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let node = loop {
            match BoundNode::bind(settings.clone()).await {
                Ok(node) => break node,
                Err(e) if e.to_string().contains("in use") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("node {id} does not bind: {e}"),
            }
        };
        bound.push(node);
    }
    let members: BTreeMap<NodeId, MemberInfo> = bound
        .iter()
        .zip(1..)
        .map(|(b, id)| (id, b.raft_addr().to_string().into()))
        .collect();
    let mut nodes = Vec::new();
    for b in bound {
        nodes.push(b.start(members.clone()).await.expect("the node starts"));
    }
    let urls = nodes.iter().map(Node::http_addr).collect();
    (nodes, urls)
}

async fn incr(client: &reqwest::Client, url: SocketAddr, key: &str) -> ValueResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .post(format!("http://{url}/incr"))
            .json(&IncrRequest {
                key: key.into(),
                by: 1,
            })
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::OK {
            return response.json().await.unwrap();
        }
        assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert!(tokio::time::Instant::now() < deadline, "no leader for {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn value(client: &reqwest::Client, url: SocketAddr, key: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .get(format!("http://{url}/value/{key}"))
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::OK {
            return response.json::<ValueResponse>().await.unwrap().value;
        }
        assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert!(tokio::time::Instant::now() < deadline, "no read of {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_restart_of_every_node_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (nodes, urls) = start(dir.path(), &ca, &[(any, any), (any, any), (any, any)]).await;
    let client = reqwest::Client::new();

    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        for n in 0..=i {
            let answer = incr(&client, urls[n % 3], key).await;
            assert_eq!(answer.group, group_of(key, GROUPS));
            assert_eq!(answer.value, n as u64 + 1);
        }
    }

    // Bad requests: an empty name, a name too long, a body that is not the JSON asked for.
    let long = "x".repeat(300);
    for (body, what) in [
        (r#"{"key": ""}"#.to_string(), "1 to 256 bytes"),
        (format!(r#"{{"key": "{long}"}}"#), "1 to 256 bytes"),
    ] {
        let response = client
            .post(format!("http://{}/incr", urls[0]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
        assert!(response.text().await.unwrap().contains(what));
    }
    let response = client
        .post(format!("http://{}/incr", urls[0]))
        .header("content-type", "application/json")
        .body("{\"by\": 1}")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());

    // Every node stops, then starts again on its directory and its addresses.
    let addrs: Vec<(SocketAddr, SocketAddr)> = nodes.iter().map(|n| (n.raft_addr(), n.http_addr())).collect();
    for node in nodes {
        node.stop().await.expect("the node stops cleanly");
    }
    let (nodes, urls) = start(dir.path(), &ca, &addrs).await;
    for (i, key) in keys.iter().enumerate() {
        for url in &urls {
            assert_eq!(value(&client, *url, key).await, i as u64 + 1, "{key} on {url}");
        }
    }
    assert_eq!(incr(&client, urls[2], &keys[9]).await.value, 11);
    for node in nodes {
        node.stop().await.expect("the node stops cleanly");
    }
}
