//! Client sessions over HTTP, on `counter node` processes: an increment sent again with the
//! same session and sequence number, through any node, is counted once and answers the same
//! value; malformed session fields, unknown and expired sessions, acknowledged and too many
//! unacknowledged increments each get their own status; increments without a session work
//! as they always did; the client and `counter incr` use sessions.

mod common;

use common::{Cluster, run_counter, stdout_of};
use counter::client::ClientError;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `POST http://{addr}/incr` with `body`: the status and the JSON answer.
async fn incr(http: &reqwest::Client, addr: &str, body: Value) -> (StatusCode, Value) {
    let r = http
        .post(format!("http://{addr}/incr"))
        .json(&body)
        .send()
        .await
        .expect("the node answers");
    let status = r.status();
    (status, r.json().await.expect("a JSON answer"))
}

/// `POST http://{addr}/sessions`: the new session's id.
async fn open_session(http: &reqwest::Client, addr: &str) -> u64 {
    let r = http
        .post(format!("http://{addr}/sessions"))
        .send()
        .await
        .expect("the node answers");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("a JSON answer");
    body["session"]
        .as_u64()
        .unwrap_or_else(|| panic!("no session id in {body}"))
}

/// The error message of an error answer, which must say `what`.
fn error_says(answer: &(StatusCode, Value), status: StatusCode, what: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    let message = answer.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error answer is an ErrorResponse: {}", answer.1));
    assert!(message.contains(what), "{message:?} should say {what:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_in_a_session_counts_once_however_often_it_is_sent() {
    let mut cluster = Cluster::new(&[1, 2, 3]).await;
    let args = cluster.bootstrap_args(&[1, 2, 3]);
    for id in 1..=3 {
        cluster.start(id, &args);
    }
    cluster.wait_for_leader(&[1, 2, 3]).await;
    let http = common::http();
    let (n1, n2, n3) = (cluster.http(1), cluster.http(2), cluster.http(3));

    // Without a session, as always: each request counts.
    assert_eq!(
        incr(&http, &n1, json!({"by": 2})).await,
        (StatusCode::OK, json!({"value": 2}))
    );
    assert_eq!(
        incr(&http, &n2, json!({"by": 2})).await,
        (StatusCode::OK, json!({"value": 4}))
    );

    // One increment sent three times, through three nodes: counted once, the same answer.
    let session = open_session(&http, &n2).await;
    let first = json!({"by": 10, "session": session, "seq": 1});
    let answer = incr(&http, &n1, first.clone()).await;
    assert_eq!(answer, (StatusCode::OK, json!({"value": 14})));
    assert_eq!(incr(&http, &n2, first.clone()).await, answer);
    assert_eq!(incr(&http, &n3, first.clone()).await, answer);
    let value = cluster.client(&[3]).get().await.unwrap();
    assert_eq!(value, 14, "the repeated increment was counted once");

    // The next one counts, and is answered once more from the table when repeated; the
    // answer to the first is no longer held (seq 2 acknowledged it): 409.
    let second = json!({"by": 1, "session": session, "seq": 2});
    assert_eq!(
        incr(&http, &n3, second.clone()).await,
        (StatusCode::OK, json!({"value": 15}))
    );
    assert_eq!(
        incr(&http, &n1, second).await,
        (StatusCode::OK, json!({"value": 15}))
    );
    error_says(
        &incr(&http, &n2, first).await,
        StatusCode::CONFLICT,
        "acknowledged",
    );

    // Malformed session fields: 400, nothing counted.
    error_says(
        &incr(&http, &n1, json!({"by": 1, "session": session})).await,
        StatusCode::BAD_REQUEST,
        "needs a `seq`",
    );
    error_says(
        &incr(&http, &n1, json!({"by": 1, "session": session, "seq": 0})).await,
        StatusCode::BAD_REQUEST,
        "not 0",
    );
    error_says(
        &incr(&http, &n1, json!({"session": session, "seq": 3, "acked": 3})).await,
        StatusCode::BAD_REQUEST,
        "must be below",
    );
    error_says(
        &incr(&http, &n1, json!({"by": 1, "seq": 3})).await,
        StatusCode::BAD_REQUEST,
        "`session` is missing",
    );

    // A session that does not exist: 410, nothing counted.
    let unknown = session + 1_000_000;
    error_says(
        &incr(&http, &n2, json!({"session": unknown, "seq": 1})).await,
        StatusCode::GONE,
        &format!("session {unknown}"),
    );

    // A client that acknowledges nothing fills its session: 32 answers held, the 33rd
    // increment refused with 429 and not counted.
    let greedy = open_session(&http, &n3).await;
    for seq in 1..=32u64 {
        let (status, body) = incr(&http, &n3, json!({"session": greedy, "seq": seq, "acked": 0})).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"value": 15 + seq})));
    }
    error_says(
        &incr(&http, &n3, json!({"session": greedy, "seq": 33, "acked": 0})).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too many unacknowledged",
    );
    // Acknowledging what it has lets it go on.
    assert_eq!(
        incr(&http, &n1, json!({"session": greedy, "seq": 33})).await,
        (StatusCode::OK, json!({"value": 48}))
    );
    assert_eq!(cluster.client(&[2]).get().await.unwrap(), 48);

    // The client: a repeated increment in a session answers the same value, counted once.
    let client = cluster.client(&[3, 1, 2]);
    let s = client.open_session().await.unwrap();
    assert_ne!(s, session);
    assert_eq!(client.incr_in_session(s, 1, 2).await.unwrap(), 50);
    assert_eq!(client.incr_in_session(s, 1, 2).await.unwrap(), 50);
    assert_eq!(client.incr_in_session(s, 2, 1).await.unwrap(), 51);
    match client.incr_in_session(unknown, 1, 1).await {
        Err(ClientError::Rejected(m)) => assert!(m.contains("expired or does not exist"), "{m}"),
        other => panic!("an unknown session is refused, not {other:?}"),
    }

    // `counter incr` opens a session of its own.
    let out = run_counter(&["incr", "--cluster", &cluster.cluster_arg(&[2, 3]), "--by", "4"]).await;
    assert_eq!(stdout_of(&out).trim(), "55");
    assert_eq!(cluster.client(&[1]).get().await.unwrap(), 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_unused_expires_and_its_increments_are_refused() {
    let mut cluster = Cluster::new(&[1]).await;
    let mut args = cluster.bootstrap_args(&[1]);
    args.extend(["--session-timeout".to_string(), "1s".to_string()]);
    cluster.start(1, &args);
    cluster.wait_for_leader(&[1]).await;
    let http = common::http();
    let node = cluster.http(1);

    let old = open_session(&http, &node).await;
    assert_eq!(
        incr(&http, &node, json!({"session": old, "seq": 1})).await,
        (StatusCode::OK, json!({"value": 1}))
    );
    // Time in the session table moves with the entries that carry it: once a later
    // session entry is stamped more than a second after the old session's last use, the
    // old one is gone.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let new = open_session(&http, &node).await;
    error_says(
        &incr(&http, &node, json!({"session": old, "seq": 2})).await,
        StatusCode::GONE,
        "open a new session",
    );
    assert_eq!(
        incr(&http, &node, json!({"session": new, "seq": 1})).await,
        (StatusCode::OK, json!({"value": 2}))
    );
    assert_eq!(cluster.client(&[1]).get().await.unwrap(), 2);
}
