//! `GET /status` answers figures as of the request, not as of the last tick: right after an
//! increment, the node asked shows the increment committed and applied. A node that can no
//! longer be asked answers its last published figures, and says so.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use counter::admin_token::AdminToken;
use counter::client::Client;
use counter::http::HttpLimits;
use counter::node::{BoundNode, Node, NodeConfig};
use counter::peers::{self, PeerAddr};
use tokio::time::Instant;

/// Generous: this is a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// One node that bootstraps a cluster of itself, ticking every 250 ms: a status that came
/// from the per-tick metrics would lag an increment made between two ticks.
async fn start_slow_ticking_node(dir: &std::path::Path) -> Node {
    let certs = dir.join("certs");
    counter::certs::write(&certs, &[1], false).unwrap();
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut raft = NodeConfig::raft_defaults();
    raft.tick_interval = Duration::from_millis(250);
    raft.protocol = raft.protocol.with_election_tick(4);
    raft.protocol.heartbeat_tick = 1;
    let config = NodeConfig {
        id: 1,
        raft_addr: any_port,
        http_addr: any_port,
        data_dir: dir.join("node-1"),
        tls: counter::certs::load(&certs, 1).unwrap(),
        admin_token: AdminToken::load(&counter::certs::admin_token_file(&certs)).unwrap(),
        http_limits: HttpLimits::default(),
        raft,
        log: NodeConfig::log_defaults(),
    };
    let bound = BoundNode::bind(config).await.unwrap();
    let me = |addr: SocketAddr| {
        vec![PeerAddr {
            id: 1,
            addr: addr.to_string(),
        }]
    };
    let membership = peers::bootstrap(1, &me(bound.raft_addr()), &me(bound.http_addr())).unwrap();
    bound.start(membership).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_right_after_an_increment_shows_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_slow_ticking_node(dir.path()).await;
    let client = Client::new([node.http_addr().to_string()]).with_deadline(DEADLINE);
    let url = client.nodes()[0].clone();

    // Leading, with everything it committed applied.
    let deadline = Instant::now() + DEADLINE;
    let mut before = loop {
        let status = client.status_of(&url).await.unwrap();
        if status.role == "leader" && status.applied == status.commit && status.commit > 0 {
            break status;
        }
        assert!(Instant::now() < deadline, "no leader: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(before.stale, None);

    for i in 1..=5 {
        let value = client.incr(1).await.unwrap();
        assert_eq!(value, i);
        let after = client.status_of(&url).await.unwrap();
        assert_eq!(after.stale, None);
        // The increment is the one entry appended since: it is committed, and applied
        // (its answer came from the applier).
        assert_eq!(
            after.commit,
            before.commit + 1,
            "increment {i}: commit before {}, after {}",
            before.commit,
            after.commit
        );
        assert!(
            after.applied >= after.commit - 1 && after.last_log_index == after.commit,
            "increment {i}: {after:?}"
        );
        before = after;
    }

    // Once the node cannot be asked any more, the last published figures, marked stale.
    node.raft().clone().shutdown().await;
    let stopped = client.status_of(&url).await.unwrap();
    let why = stopped.stale.expect("a stopped node's figures are marked stale");
    assert!(why.contains("did not answer"), "{why}");
    assert_eq!(stopped.id, 1);
    node.shutdown().await.unwrap();
}
