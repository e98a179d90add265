//! Membership and leadership over HTTP, driven by the client commands and sent to
//! followers on purpose, so that each request must be passed on to the leader: a `--join`
//! node is added, leadership is handed to it, a node is removed, and its id is refused
//! when it tries to come back.

mod common;

use common::{Cluster, run_counter, stdout_of};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_take_over_and_leave_through_any_node() {
    let mut cluster = Cluster::new(&[1, 2, 3, 4]).await;
    let boot = cluster.bootstrap_args(&[1, 2, 3]);
    for id in 1..=3 {
        cluster.start(id, &boot);
    }
    let mut join = vec!["--join".to_string()];
    join.extend(cluster.bootstrap_args(&[1, 2, 3]).into_iter().take(2));
    cluster.start(4, &join);
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    // The admin commands read the admin token from the certificates directory.
    let certs = cluster.certs_arg();
    for _ in 0..5 {
        cluster.client(&[1, 2, 3]).incr(1).await.expect("increment");
    }

    // Node 4 waits to be added: it knows no leader, so it can take nothing yet, and says
    // so with 503 (definitely not applied).
    let http = common::http();
    let node4 = format!("http://{}", cluster.http(4));
    let requests = [
        http.post(format!("{node4}/incr")),
        http.get(format!("{node4}/value")),
        http.post(format!("{node4}/admin/transfer"))
            .header("authorization", cluster.admin_token().authorization())
            .body(r#"{"to": 1}"#),
    ];
    for request in requests {
        let response = request.send().await.expect("node 4 answers");
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            response.url()
        );
        let body: serde_json::Value = response.json().await.expect("JSON error body");
        assert!(body["error"].is_string(), "{body}");
    }
    let status = cluster.status(4).await.expect("node 4 status");
    assert!(status.members.is_empty() && status.leader.is_none(), "{status:?}");

    // Add it through a follower, which passes the request on to the leader.
    let node4_raft = cluster.specs[&4].raft.to_string();
    let out = run_counter(&[
        "add-node",
        "--certs",
        &certs,
        "--cluster",
        &cluster.http(follower),
        "--id",
        "4",
        "--raft-addr",
        &node4_raft,
        "--http-addr",
        &cluster.http(4),
    ])
    .await;
    let printed = stdout_of(&out);
    assert!(printed.contains("node 4 is a voter"), "{printed}");
    let value = cluster.wait_for_agreement(&[1, 2, 3, 4]).await;
    assert_eq!(
        value, 5,
        "node 4 caught up with the increments made before it joined"
    );
    let status = cluster.status(4).await.expect("node 4 status");
    let me = status
        .members
        .iter()
        .find(|m| m.id == 4)
        .expect("node 4 is a member");
    assert!(me.voter);
    assert_eq!(me.http_addr.as_deref(), Some(cluster.http(4).as_str()));

    // Hand leadership to node 4, again through a follower.
    let out = run_counter(&[
        "transfer-leader",
        "--certs",
        &certs,
        "--cluster",
        &cluster.http(follower),
        "--to",
        "4",
    ])
    .await;
    stdout_of(&out);
    assert_eq!(cluster.wait_for_leader(&[1, 2, 3, 4]).await, 4);
    let value = cluster
        .client(&[1])
        .incr(1)
        .await
        .expect("increment through node 1");
    assert_eq!(value, 6);

    // Remove a follower, asking that very node: it passes the request on to node 4.
    let out = run_counter(&[
        "remove-node",
        "--certs",
        &certs,
        "--cluster",
        &cluster.http(follower),
        "--id",
        &follower.to_string(),
    ])
    .await;
    let printed = stdout_of(&out);
    assert!(
        printed.contains(&format!("node {follower} is removed")),
        "{printed}"
    );
    let status = cluster.status(4).await.expect("leader status");
    let mut members: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    members.sort_unstable();
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&id| id != follower).collect();
    assert_eq!(members, remaining);
    let exit = cluster.terminate(follower).await;
    assert!(exit.success(), "the removed node stops cleanly: {exit}");

    // Its id can never come back; the refusal is final (400), not a retryable 503.
    let follower_raft = cluster.specs[&follower].raft.to_string();
    let out = run_counter(&[
        "add-node",
        "--certs",
        &certs,
        "--cluster",
        &cluster.cluster_arg(&remaining),
        "--id",
        &follower.to_string(),
        "--raft-addr",
        &follower_raft,
        "--timeout",
        "10",
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("removed"),
        "{stderr}"
    );

    assert_eq!(cluster.wait_for_agreement(&remaining).await, 6);
}
