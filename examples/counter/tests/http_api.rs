//! The HTTP API of one node, request by request, as curl would use it; then a graceful
//! stop and a restart with the same arguments, which resumes from the data directory.

mod common;

use common::{Cluster, metric};
use counter::api::StatusResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_the_api_and_resumes_after_a_restart() {
    let mut cluster = Cluster::new(&[1]).await;
    let mut args = cluster.bootstrap_args(&[1]);
    // Snapshot often, so that the restart restores the counter from a snapshot.
    args.extend(["--snapshot-every".to_string(), "3".to_string()]);
    cluster.start(1, &args);
    cluster.wait_for_leader(&[1]).await;
    let base = format!("http://{}", cluster.http(1));
    let http = common::http();

    // POST /incr with no body adds one; with {"by": n} adds n.
    let r = http.post(format!("{base}/incr")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": 1}));
    let r = http
        .post(format!("{base}/incr"))
        .json(&json!({"by": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": 6}));
    let r = http.get(format!("{base}/value")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": 6}));

    // GET /status. The runtime refreshes its indexes in the metrics once per tick, so
    // they may trail the increments above for a moment.
    let status: StatusResponse = common::wait_until("the status to show both increments applied", || async {
        let s: StatusResponse = http
            .get(format!("{base}/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s.commit >= 3 && s.applied == s.commit).then_some(s)
    })
    .await;
    assert_eq!(
        (status.id, status.role.as_str(), status.leader),
        (1, "leader", Some(1))
    );
    assert!(status.term >= 1, "{status:?}");
    assert_eq!(status.members.len(), 1);
    assert_eq!(status.members[0].raft_addr, cluster.specs[&1].raft.to_string());
    assert_eq!(
        status.members[0].http_addr.as_deref(),
        Some(cluster.http(1).as_str())
    );

    // GET /metrics: Prometheus text with the runtime's counters and gauges.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    assert!(metric(&text, "raft_proposals_total") >= 2, "{text}");
    assert!(metric(&text, "raft_applied_entries_total") >= 2, "{text}");
    assert!(metric(&text, "raft_store_fsyncs_total") >= 1, "{text}");
    assert_eq!(metric(&text, "raft_elections_won_total"), 1, "{text}");
    assert_eq!(
        metric(&text, "raft_commit_index"),
        metric(&text, "raft_applied_index")
    );
    assert!(text.contains("raft_transport_bytes_sent_total "), "{text}");
    assert!(text.contains("raft_role{role=\"leader\"} 1"), "{text}");

    // Errors are JSON with the right status.
    let r = http
        .post(format!("{base}/incr"))
        .body("{\"by\": -1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let r = http.get(format!("{base}/no-such-thing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // Admin requests carry the admin token (tests/admin_auth.rs: without it, 401).
    let authorization = cluster.admin_token().authorization();
    let r = http
        .post(format!("{base}/admin/remove"))
        .header("authorization", &authorization)
        .json(&json!({"id": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "removing a non-member is invalid"
    );
    // A transfer to the node that already leads is done already.
    let r = http
        .post(format!("{base}/admin/transfer"))
        .header("authorization", &authorization)
        .json(&json!({"to": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // SIGTERM stops it cleanly; the same command line resumes from the data directory.
    let exit = cluster.terminate(1).await;
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    cluster.start(1, &args);
    cluster.wait_for_leader(&[1]).await;
    assert_eq!(cluster.client(&[1]).get().await.unwrap(), 6);
    let status = cluster.status(1).await.unwrap();
    assert!(
        status.snapshot_index > 0,
        "the log was compacted into a snapshot: {status:?}"
    );
    assert_eq!(cluster.client(&[1]).incr(4).await.unwrap(), 10);
}
