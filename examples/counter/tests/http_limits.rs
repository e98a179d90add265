//! What one HTTP client may cost a node is bounded: bodies over the limit get `413`; a
//! client that sends half a request head and stops is disconnected, and so is a kept-alive
//! connection left idle; a body that stops arriving gets `408`; and connections past the
//! limit wait until one closes.
//!
//! These speak HTTP over raw TCP where a well-behaved client library would not misbehave
//! as needed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cluster, DEADLINE};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One node, started with `extra` arguments, leading.
async fn one_node(extra: &[&str]) -> Cluster {
    let mut cluster = Cluster::new(&[1]).await;
    let mut args = cluster.bootstrap_args(&[1]);
    args.extend(extra.iter().map(|a| a.to_string()));
    cluster.start(1, &args);
    cluster.wait_for_leader(&[1]).await;
    cluster
}

/// Reads one response (status line, headers with `Content-Length`, body): its status and
/// body. `None` if the connection closed first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a Content-Length"));
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some((
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
    ))
}

/// Waits (up to [`DEADLINE`]) for the server to close the connection; panics if it sends
/// anything first, or keeps it open.
async fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut rest = Vec::new();
    match timeout(DEADLINE, stream.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => assert!(
            rest.is_empty(),
            "{what}: unexpected answer {:?}",
            String::from_utf8_lossy(&rest)
        ),
        // A reset is a close too.
        Ok(Err(_)) => {}
        Err(_) => panic!("{what}: the connection is still open after {DEADLINE:?}"),
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_with_413() {
    let cluster = one_node(&[]).await;
    let base = format!("http://{}", cluster.http(1));
    let http = common::http();
    // An increment is a few dozen bytes of JSON; blanks make one as large as needed.
    let incr = |size: usize| {
        let body = format!("{{\"by\": 1{}}}", " ".repeat(size - 9));
        assert_eq!(body.len(), size);
        body
    };
    let post_incr = |body: String| {
        http.post(format!("{base}/incr"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post_incr(incr(4000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "4000 B fits under 4 KiB");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": 1}));

    let r = post_incr(incr(6000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("larger than the 4096 bytes /incr accepts"),
        "{error}"
    );

    // A chunked body declares no length: it is counted as it arrives.
    let mut stream = connect(cluster.specs[&1].http).await;
    let data = incr(10_000);
    let request = format!(
        "POST /incr HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{data}\r\n0\r\n\r\n",
        data.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = timeout(DEADLINE, read_response(&mut stream))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(status, 413, "{body}");

    // Admin bodies too: 4 KiB at most.
    let padded = format!("{{\"to\": 1{}}}", " ".repeat(5000));
    let r = http
        .post(format!("{base}/admin/transfer"))
        .header("authorization", cluster.admin_token().authorization())
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("4096 bytes /admin/transfer"),
        "{error}"
    );

    // None of the refused increments counted.
    assert_eq!(cluster.client(&[1]).get().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_disconnected() {
    let cluster = one_node(&["--http-header-timeout", "1s", "--http-body-timeout", "1s"]).await;
    let addr = cluster.specs[&1].http;

    // Half a request head, then nothing: closed without an answer.
    let mut stream = connect(addr).await;
    stream
        .write_all(b"POST /incr HTTP/1.1\r\nhost: x\r\ncontent-le")
        .await
        .unwrap();
    expect_closed(&mut stream, "half a request head").await;

    // A kept-alive connection left idle after an answer: closed too.
    let mut stream = connect(addr).await;
    stream
        .write_all(b"GET /value HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status, 200);
    expect_closed(&mut stream, "an idle kept-alive connection").await;

    // A whole head, then a body that stops: 408, and closed.
    let mut stream = connect(addr).await;
    stream
        .write_all(b"POST /incr HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"by\": ")
        .await
        .unwrap();
    let (status, body) = timeout(DEADLINE, read_response(&mut stream))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("did not arrive within 1s"), "{body}");
    expect_closed(&mut stream, "after the 408").await;

    // The node still serves, and nothing was counted.
    assert_eq!(cluster.client(&[1]).get().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    // Timeouts long enough that no held connection is closed under the test.
    let cluster = one_node(&["--http-max-connections", "2", "--http-header-timeout", "5m"]).await;
    let addr = cluster.specs[&1].http;
    let status = b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n";

    // Two connections, each answered once and kept alive: the limit is taken.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(addr).await;
        stream.write_all(status).await.unwrap();
        let answer = timeout(DEADLINE, read_response(&mut stream))
            .await
            .expect("an answer in time");
        assert_eq!(answer.map(|a| a.0), Some(200));
        held.push(stream);
    }

    // A third connection is not served while they are open...
    let mut third = connect(addr).await;
    third.write_all(status).await.unwrap();
    let early = timeout(Duration::from_secs(2), read_response(&mut third)).await;
    assert!(
        early.is_err(),
        "a third connection was served while both places were taken: {early:?}"
    );

    // ...and is served as soon as one of them closes.
    drop(held.remove(0));
    let answer = timeout(DEADLINE, read_response(&mut third))
        .await
        .expect("the waiting connection is served once a place frees");
    assert_eq!(answer.map(|a| a.0), Some(200));

    // The one still held keeps working alongside.
    held[0].write_all(status).await.unwrap();
    let answer = timeout(DEADLINE, read_response(&mut held[0])).await.unwrap();
    assert_eq!(answer.map(|a| a.0), Some(200));
}
