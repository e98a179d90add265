//! The `kv` client commands, run as a user runs them, against a running 3-node cluster.

mod common;

use common::{failed, run_kv, succeeded};
use kv::http::Consistency;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_write_read_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster(dir.path()).await;
    let all = cluster.http_addrs(&[1, 2, 3]).join(",");
    let one = |id| cluster.http_addrs(&[id]).join(",");
    let kv = |args: &[&str]| {
        let mut full = vec![args[0], "--cluster"];
        full.push(&all);
        full.extend(&args[1..]);
        full.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_kv(&args).await
    };

    assert_eq!(
        succeeded(&run(kv(&["put", "fruit", "apple"])).await),
        "previous: null\n"
    );
    assert_eq!(
        succeeded(&run(kv(&["put", "fruit", "pear"])).await),
        "previous: \"apple\"\n"
    );
    assert_eq!(succeeded(&run(kv(&["get", "fruit"])).await), "pear\n");
    for consistency in ["linearizable", "lease"] {
        let out = run(kv(&["get", "fruit", "--consistency", consistency])).await;
        assert_eq!(succeeded(&out), "pear\n", "{consistency}");
    }
    // A local read on each node answers once that node has applied the write.
    for id in 1..=3 {
        let node = one(id);
        common::eventually("a local read of the write", || async {
            let out = run_kv(&["get", "--cluster", &node, "fruit", "--consistency", "local"]).await;
            (out.status.success() && out.stdout == b"pear\n").then_some(())
        })
        .await;
    }
    let usage = run(kv(&["get", "fruit", "--consistency", "eventual"])).await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "clap refuses an unknown consistency"
    );
    let said = String::from_utf8_lossy(&usage.stderr);
    assert!(
        said.contains("'eventual'") && said.contains("use linearizable (the default), lease or local"),
        "{said}"
    );

    // Compare-and-swap, with the ways to say "absent".
    assert_eq!(
        succeeded(&run(kv(&["cas", "fruit", "--expected", "pear", "--new", "plum"])).await),
        "swapped\n"
    );
    let refused = failed(&run(kv(&["cas", "fruit", "--expected", "pear", "--new", "fig"])).await);
    assert!(
        refused.contains("kv: not swapped: the value is \"plum\""),
        "{refused}"
    );
    assert_eq!(
        succeeded(&run(kv(&["cas", "lock", "--expect-absent", "--new", "held"])).await),
        "swapped\n"
    );
    assert_eq!(
        succeeded(&run(kv(&["cas", "lock", "--expected", "held", "--delete"])).await),
        "swapped\n"
    );
    let refused = failed(&run(kv(&["cas", "lock", "--expected", "held", "--delete"])).await);
    assert!(refused.contains("not swapped: the value is null"), "{refused}");
    let usage = run(kv(&["cas", "lock", "--new", "x"])).await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "clap refuses a cas without --expected"
    );

    // Delete, then the key is gone.
    assert_eq!(
        succeeded(&run(kv(&["delete", "fruit"])).await),
        "previous: \"plum\"\n"
    );
    assert_eq!(
        succeeded(&run(kv(&["delete", "fruit"])).await),
        "previous: null\n"
    );
    let missing = failed(&run(kv(&["get", "fruit"])).await);
    assert!(missing.contains("kv: no value at key `fruit`"), "{missing}");

    // Scan: JSON lines in key order, and where the rest starts.
    for (key, value) in [("b/1", "x"), ("b/2", "y"), ("b/3", "z"), ("c", "w")] {
        succeeded(&run(kv(&["put", key, value])).await);
    }
    assert_eq!(
        succeeded(&run(kv(&["scan", "--prefix", "b/", "--limit", "2"])).await),
        "{\"key\":\"b/1\",\"value\":\"x\"}\n{\"key\":\"b/2\",\"value\":\"y\"}\n{\"next\":\"b/3\"}\n"
    );
    assert_eq!(
        succeeded(
            &run(kv(&[
                "scan",
                "--start",
                "b/2",
                "--end",
                "c",
                "--consistency",
                "lease"
            ]))
            .await
        ),
        "{\"key\":\"b/2\",\"value\":\"y\"}\n{\"key\":\"b/3\",\"value\":\"z\"}\n"
    );
    let usage = run(kv(&["scan", "--limit", "1001"])).await;
    assert_eq!(usage.status.code(), Some(2), "clap refuses a limit over 1000");

    // The shared commands work on a kv cluster too.
    let status = succeeded(&run(kv(&["status"])).await);
    assert!(
        status.contains("leader") && status.contains("members"),
        "{status}"
    );

    // What the commands wrote, the library's client reads.
    let page = common::client(&cluster, &[1, 2, 3])
        .scan(&kv::client::Scan::default(), Consistency::Linearizable)
        .await
        .unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["b/1", "b/2", "b/3", "c"]);
    cluster.shutdown().await.unwrap();
}
