//! Admin requests need the cluster's admin token: without it, or with a wrong one, every
//! admin route answers `401` on every node and the cluster is left as it was; with it
//! (from the certificates directory or a token file), the admin commands work, also
//! through a follower, which passes the request and the token on to the leader.

mod common;

use common::{Cluster, run_counter, stdout_of};
use counter::admin_token::AdminToken;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_without_the_token_are_refused_and_change_nothing() {
    let mut cluster = Cluster::new(&[1, 2]).await;
    let boot = cluster.bootstrap_args(&[1]);
    cluster.start(1, &boot);
    let mut join = vec!["--join".to_string()];
    join.extend(cluster.bootstrap_args(&[1]).into_iter().take(2));
    cluster.start(2, &join);
    assert_eq!(cluster.wait_for_leader(&[1]).await, 1);
    let before = cluster.status(1).await.expect("node 1 status");

    let token = cluster.admin_token();
    let other_cluster = AdminToken::generate().unwrap().authorization();
    let add = json!({
        "id": 2,
        "raft_addr": cluster.specs[&2].raft.to_string(),
        "http_addr": cluster.http(2),
    });
    let http = common::http();
    let requests = [
        ("/admin/add", add),
        ("/admin/remove", json!({"id": 1})),
        ("/admin/transfer", json!({"to": 2})),
    ];
    let credentials = [
        (None, "admin requests need the cluster's admin token"),
        (Some("Basic dXNlcjpwYXNz".to_string()), "not a bearer token"),
        (Some("Bearer".to_string()), "not a bearer token"),
        (Some(other_cluster), "wrong admin token"),
        (Some(format!("{}x", token.authorization())), "wrong admin token"),
    ];
    // Node 2 knows no leader yet: it must refuse before it even considers passing the
    // request on (which would answer 503).
    for node in [1, 2] {
        for (path, body) in &requests {
            for (authorization, expected) in &credentials {
                let mut request = http
                    .post(format!("http://{}{path}", cluster.http(node)))
                    .json(body);
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                let r = request.send().await.expect("the node answers");
                assert_eq!(
                    r.status(),
                    StatusCode::UNAUTHORIZED,
                    "node {node} {path} with {authorization:?}"
                );
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
                let error: Value = r.json().await.expect("a JSON error");
                let error = error["error"].as_str().expect("an error message");
                assert!(error.contains(expected), "{path}: {error}");
                assert!(
                    !error.contains(token.authorization().trim_start_matches("Bearer ")),
                    "the answer must not show the token"
                );
            }
        }
    }

    // The admin commands: a wrong token file is refused, and nothing changed.
    let wrong = cluster.dir.path().join("wrong.token");
    AdminToken::generate().unwrap().write(&wrong, false).unwrap();
    let raft2 = cluster.specs[&2].raft.to_string();
    let http2 = cluster.http(2);
    let cluster1 = cluster.http(1);
    let add_args = |token: [&str; 2]| {
        let mut args = vec![
            "add-node",
            "--cluster",
            &cluster1,
            "--id",
            "2",
            "--raft-addr",
            &raft2,
            "--http-addr",
            &http2,
            "--timeout",
            "10",
        ];
        args.extend(token);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let wrong_arg = wrong.display().to_string();
    let args = add_args(["--token-file", &wrong_arg]);
    let out = run_counter(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong admin token"), "{stderr}");

    let after = cluster.status(1).await.expect("node 1 status");
    assert_eq!(after.members, before.members, "the membership is unchanged");
    assert_eq!((after.leader, after.joint), (Some(1), false));
    let node2 = cluster.status(2).await.expect("node 2 status");
    assert!(node2.members.is_empty(), "node 2 was not added: {node2:?}");

    // With the token from the certificates directory, it works.
    let certs = cluster.certs_arg();
    let args = add_args(["--certs", &certs]);
    let printed = stdout_of(&run_counter(&args.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(printed.contains("node 2 is a voter"), "{printed}");

    // Through the follower, with the token in a file of its own: node 2 checks the
    // token, then passes the request on to node 1, which checks it again.
    let copy = cluster.dir.path().join("copy.token");
    token.write(&copy, false).unwrap();
    let out = run_counter(&[
        "transfer-leader",
        "--cluster",
        &cluster.http(2),
        "--to",
        "2",
        "--token-file",
        copy.to_str().unwrap(),
    ])
    .await;
    stdout_of(&out);
    assert_eq!(cluster.wait_for_leader(&[1, 2]).await, 2);

    // A follower does not pass an unauthenticated request on: node 1 refuses it itself.
    let r = http
        .post(format!("http://{}/admin/remove", cluster.http(1)))
        .json(&json!({"id": 2}))
        .send()
        .await
        .expect("node 1 answers");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let status = cluster.status(2).await.expect("node 2 status");
    assert_eq!(status.members.len(), 2, "{status:?}");

    // Other routes need no token.
    cluster.client(&[1, 2]).incr(1).await.expect("an increment");
    assert_eq!(cluster.client(&[1]).get().await.expect("a read"), 1);
}
