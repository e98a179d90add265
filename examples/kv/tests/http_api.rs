//! The HTTP API end to end on a 3-node cluster in this process: every route through every
//! node, each consistency level, and the 4xx answers, each with a message that says what
//! is wrong.

mod common;

use kv::MAX_VALUE_LEN;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Sends `request`; answers its status and JSON body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

/// Sends a request whose body the node refuses as too large. The node may answer and close
/// the connection while the body is still going out; the client then fails to write it and
/// never reads the answer. Such a try is made again (a few times), so that the answer
/// itself is what the test checks.
async fn send_too_large(request: impl Fn() -> reqwest::RequestBuilder) -> (StatusCode, Value) {
    for _ in 0..4 {
        match request().send().await {
            Ok(response) => {
                let status = response.status();
                return (status, response.json().await.expect("a JSON body"));
            }
            Err(e) if e.is_request() => continue,
            Err(e) => panic!("the node answers: {e}"),
        }
    }
    send(request()).await
}

/// Checks an error answer: `status`, and a message containing `words`.
fn refused((status, body): (StatusCode, Value), expected: StatusCode, words: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"].as_str().expect("an error message");
    assert!(message.contains(words), "{message:?} should say {words:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_through_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster(dir.path()).await;
    let leader = common::leader(&cluster).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let [on_leader, on_follower] = [leader, follower].map(|id| common::base(&cluster, id));
    let http = common::http();

    // A write through a follower is forwarded to the leader; each answers the value before.
    let put = |base: &str, key: &str, body: &'static [u8]| http.put(format!("{base}/kv/{key}")).body(body);
    assert_eq!(
        send(put(&on_follower, "colour", b"blue")).await,
        (StatusCode::OK, json!({"previous": null}))
    );
    assert_eq!(
        send(put(&on_leader, "colour", b"green")).await,
        (StatusCode::OK, json!({"previous": "blue"}))
    );

    // Linearizable (the default, and by name) and lease reads on every node see the last
    // acknowledged write at once.
    for id in 1..=3 {
        let base = common::base(&cluster, id);
        for query in ["", "?consistency=linearizable", "?consistency=lease"] {
            assert_eq!(
                send(http.get(format!("{base}/kv/colour{query}"))).await,
                (StatusCode::OK, json!({"value": "green"})),
                "node {id}{query}"
            );
        }
        // A local read answers the node's own state, which catches up.
        common::eventually("the write applied locally", || async {
            let answer = send(http.get(format!("{base}/kv/colour?consistency=local"))).await;
            (answer == (StatusCode::OK, json!({"value": "green"}))).then_some(())
        })
        .await;
    }

    // Keys are percent-decoded path segments; values are any bytes.
    assert_eq!(
        send(put(&on_follower, "a%2Fb%20c%C3%A9", &[0, 0xff, 1])).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(http.get(format!("{on_leader}/kv/a%2Fb%20c%C3%A9"))).await,
        (StatusCode::OK, json!({"value": {"base64": "AP8B"}}))
    );

    // Delete answers the value before; an absent key is a 404 with a message.
    assert_eq!(
        send(http.delete(format!("{on_follower}/kv/colour"))).await,
        (StatusCode::OK, json!({"previous": "green"}))
    );
    refused(
        send(http.get(format!("{on_follower}/kv/colour"))).await,
        StatusCode::NOT_FOUND,
        "no value at key `colour`",
    );
    assert_eq!(
        send(http.delete(format!("{on_leader}/kv/colour"))).await,
        (StatusCode::OK, json!({"previous": null}))
    );

    // Compare-and-swap: from absent, from a value (text or base64), to absent; a
    // mismatch answers the current value and changes nothing.
    let cas = |base: &str, body: Value| http.post(format!("{base}/kv/lock/cas")).json(&body);
    assert_eq!(
        send(cas(&on_follower, json!({"expected": null, "new": "me"}))).await,
        (StatusCode::OK, json!({"swapped": true, "current": "me"}))
    );
    assert_eq!(
        send(cas(&on_leader, json!({"expected": null, "new": "you"}))).await,
        (StatusCode::OK, json!({"swapped": false, "current": "me"}))
    );
    assert_eq!(
        send(cas(
            &on_follower,
            json!({"expected": {"base64": "bWU="}, "new": {"base64": "/w=="}})
        ))
        .await,
        (
            StatusCode::OK,
            json!({"swapped": true, "current": {"base64": "/w=="}})
        )
    );
    assert_eq!(
        send(cas(&on_leader, json!({"expected": {"base64": "/w=="}}))).await,
        (StatusCode::OK, json!({"swapped": true, "current": null}))
    );
    refused(
        send(http.get(format!("{on_leader}/kv/lock"))).await,
        StatusCode::NOT_FOUND,
        "no value",
    );

    // A scan: in key order, `end` excluded, paged by `limit` with `next`, or by prefix.
    for key in ["k1", "k2", "k3", "k4", "l1"] {
        assert_eq!(send(put(&on_leader, key, b"v")).await.0, StatusCode::OK);
    }
    let entry = |key: &str| json!({"key": key, "value": "v"});
    assert_eq!(
        send(http.get(format!("{on_follower}/kv?start=k2&end=l&limit=2"))).await,
        (
            StatusCode::OK,
            json!({"entries": [entry("k2"), entry("k3")], "next": "k4"})
        )
    );
    assert_eq!(
        send(http.get(format!(
            "{on_follower}/kv?start=k4&end=l&limit=2&consistency=lease"
        )))
        .await,
        (StatusCode::OK, json!({"entries": [entry("k4")], "next": null}))
    );
    assert_eq!(
        send(http.get(format!("{on_leader}/kv?prefix=k&consistency=local"))).await,
        (
            StatusCode::OK,
            json!({"entries": [entry("k1"), entry("k2"), entry("k3"), entry("k4")], "next": null})
        )
    );
    let (status, all) = send(http.get(format!("{on_leader}/kv"))).await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a/b cé", "k1", "k2", "k3", "k4", "l1"]);

    // The shared routes are there too, and admin requests still need the token.
    let (status, body) = send(http.get(format!("{on_follower}/status"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["leader"], json!(leader));
    let metrics = http.get(format!("{on_follower}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("raft_applied_index"));
    refused(
        send(
            http.post(format!("{on_follower}/admin/transfer"))
                .json(&json!({"to": leader})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "`kv certs` wrote",
    );

    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_values_and_parameters_are_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster(dir.path()).await;
    let base = common::base(&cluster, 1);
    let http = common::http();

    let long_key = "k".repeat(kv::MAX_KEY_LEN + 1);
    for request in [
        http.put(format!("{base}/kv/{long_key}")).body("v"),
        http.get(format!("{base}/kv/{long_key}")),
        http.delete(format!("{base}/kv/{long_key}")),
        http.post(format!("{base}/kv/{long_key}/cas")).body("{}"),
    ] {
        refused(
            send(request).await,
            StatusCode::BAD_REQUEST,
            "a key is at most 1024 bytes",
        );
    }
    // The longest key is fine.
    let longest = "k".repeat(kv::MAX_KEY_LEN);
    assert_eq!(
        send(http.put(format!("{base}/kv/{longest}")).body("v")).await.0,
        StatusCode::OK
    );

    refused(
        send(http.put(format!("{base}/kv/")).body("v")).await,
        StatusCode::BAD_REQUEST,
        "the key is empty",
    );
    refused(
        send(http.get(format!("{base}/kv/%FF%FE"))).await,
        StatusCode::BAD_REQUEST,
        "bad key",
    );
    refused(
        send(http.get(format!("{base}/kv/x?consistency=eventual"))).await,
        StatusCode::BAD_REQUEST,
        "bad consistency `eventual`",
    );
    refused(
        send(http.get(format!("{base}/kv?consistency=strong"))).await,
        StatusCode::BAD_REQUEST,
        "bad consistency `strong`",
    );
    refused(
        send(http.get(format!("{base}/kv/x?consistancy=local"))).await,
        StatusCode::BAD_REQUEST,
        "unknown query parameter `consistancy`",
    );
    refused(
        send(http.put(format!("{base}/kv/x?consistency=local")).body("v")).await,
        StatusCode::BAD_REQUEST,
        "takes no query parameters",
    );
    for (query, words) in [
        ("limit=0", "between 1 and 1000"),
        ("limit=1001", "between 1 and 1000"),
        ("limit=many", "bad limit `many`"),
        ("from=a", "unknown query parameter `from`"),
    ] {
        refused(
            send(http.get(format!("{base}/kv?{query}"))).await,
            StatusCode::BAD_REQUEST,
            words,
        );
    }

    // Values: up to MAX_VALUE_LEN bytes, whatever the route's JSON limit.
    // Not UTF-8, so it comes back in base64.
    let largest = vec![0xffu8; MAX_VALUE_LEN];
    assert_eq!(
        send(http.put(format!("{base}/kv/big")).body(largest)).await,
        (StatusCode::OK, json!({"previous": null}))
    );
    let (status, body) = send(http.get(format!("{base}/kv/big"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["value"]["base64"].as_str().unwrap().len(),
        MAX_VALUE_LEN.div_ceil(3) * 4
    );
    refused(
        send_too_large(|| {
            http.put(format!("{base}/kv/big"))
                .body(vec![7u8; MAX_VALUE_LEN + 1])
        })
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than the 1048576 bytes",
    );
    let too_big = "x".repeat(MAX_VALUE_LEN + 1);
    refused(
        send_too_large(|| {
            http.post(format!("{base}/kv/big/cas"))
                .json(&json!({"expected": null, "new": too_big}))
        })
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "`new` is 1048577 bytes long",
    );
    refused(
        send(http.post(format!("{base}/kv/big/cas")).body("{\"expected\": 1}")).await,
        StatusCode::BAD_REQUEST,
        "a value is a string",
    );
    refused(
        send(
            http.post(format!("{base}/kv/big/cas"))
                .body("{\"new\": \"x\", \"expect\": null}"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown field `expect`",
    );
    // Nothing refused was written.
    let (_, body) = send(http.get(format!("{base}/kv?limit=10"))).await;
    let keys: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["big", longest.as_str()]);
    refused(
        send(http.get(format!("{base}/nothing"))).await,
        StatusCode::NOT_FOUND,
        "no such route",
    );

    cluster.shutdown().await.unwrap();
}
