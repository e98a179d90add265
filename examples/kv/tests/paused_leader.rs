//! Three `kv node` processes; the leader is paused (SIGSTOP) long past its lease while the
//! others elect a new leader and take a write, and a lease read is sent to it during the
//! pause. When it resumes, its ticks are behind the time that passed: it must not serve
//! the read from the lease it held before the pause, which would miss the write.
//!
//! Whether the read reaches the node's Raft loop before its missed ticks are counted is a
//! race, so the test repeats the pause; a node that trusted such a lease answered from it
//! in about a third of the rounds, and failed the test every time.

mod common;

use std::time::Duration;

use common::eventually;
use common::procs::{start, status};

const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_leader_serves_no_lease_read_from_before_its_pause() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::write_certs(dir.path(), "1,2,3").await;
    let mut nodes = start(dir.path(), &certs, &[]);
    let http = common::http();
    // Short requests: a write through a node without a leader is retried.
    let quick = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        let leader = eventually("a leader known to every node", || async {
            let mut leaders = Vec::new();
            for node in &nodes.0 {
                leaders.push(status(&http, node).await?.leader?);
            }
            leaders.iter().all(|&l| l == leaders[0]).then_some(leaders[0])
        })
        .await;
        let at = (leader - 1) as usize;
        let other = (at + 1) % 3;
        let (leader_http, other_http) = (nodes.0[at].http, nodes.0[other].http);
        let old = format!("old-{round}");
        let new = format!("new-{round}");
        let r = http
            .put(format!("http://{leader_http}/kv/k"))
            .body(old.clone())
            .send()
            .await
            .expect("put through the leader");
        assert!(r.status().is_success(), "put through the leader: {}", r.status());
        // A lease read now: the leader holds its lease, and the client its connection.
        let r = http
            .get(format!("http://{leader_http}/kv/k?consistency=lease"))
            .send()
            .await
            .expect("lease read");
        assert!(r.text().await.unwrap().contains(&old));

        nodes.0[at].process.pause();
        // The others elect a leader of their own (a write through them waits for it).
        eventually("a write through the other nodes", || async {
            let r = quick
                .put(format!("http://{other_http}/kv/k"))
                .body(new.clone())
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let read = tokio::spawn({
            let http = http.clone();
            async move {
                let r = http
                    .get(format!("http://{leader_http}/kv/k?consistency=lease"))
                    .send()
                    .await
                    .expect("lease read through the paused leader");
                (r.status(), r.text().await.unwrap_or_default())
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.0[at].process.resume();
        let (code, body) = read.await.unwrap();
        // Served (with the new value) or refused; never the value before the pause.
        if body.contains(&old) {
            stale.push(format!("round {round}: node {leader} answered {code} {body}"));
        } else {
            assert!(
                body.contains(&new) || code.as_u16() == 503,
                "round {round}: {code} {body}"
            );
        }
        // Let the cluster settle before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        stale.is_empty(),
        "a resumed leader served lease reads from before its pause: {stale:?}"
    );
}
