//! `raft-bench` on tiny plans: it measures every configuration, prints the table, writes
//! the JSON and the plot, and leaves no process and no directory behind.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

const RAFT_BENCH: &str = env!("CARGO_BIN_EXE_raft-bench");

/// Kills and reaps the benchmark if the test fails before it exits (its node processes
/// die with it).
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `raft-bench` with `args` and `--out out`; returns its stdout and stderr once it
/// has exited successfully.
async fn raft_bench(args: &[&str], out: &Path) -> (String, String) {
    let child = Command::new(RAFT_BENCH)
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raft-bench");
    let mut guard = ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(120);
    while guard.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the benchmark did not finish within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = guard.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "raft-bench failed: {}", output.status);
    assert!(
        stdout.contains("ops/s") && stdout.contains("p99.9"),
        "no table header"
    );
    (stdout, stderr)
}

fn runs(out: &Path) -> Vec<Value> {
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert!(
        json["tool"].as_str().unwrap().starts_with("raft-bench "),
        "{json}"
    );
    json["runs"].as_array().unwrap().clone()
}

/// The figures every run has, whatever its configuration.
fn check_common_figures(run: &Value) {
    assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
    assert!(run["ops_per_second"].as_f64().unwrap() > 0.0, "{run}");
    let latency = &run["latency_us"];
    let (p50, p99, p999) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["p999"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{run}");
    assert!(run["entries_committed"].as_u64().unwrap() > 0, "{run}");
    assert!(run["fsyncs_per_entry"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["cpu_seconds_per_1k_ops"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["peak_memory_bytes"].as_u64().unwrap() > 0, "{run}");
    assert!(run["other_cpu_share"].as_f64().unwrap() >= 0.0, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
}

fn check_plot(out: &Path) {
    let png = std::fs::read(out.join("plot.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "plot.png is not a PNG");
    assert!(png.len() > 10_000, "plot.png is suspiciously small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_benchmark_of_a_writes_its_figures_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (stdout, stderr) = raft_bench(
        &[
            "--configs",
            "a",
            "--clients",
            "1,4",
            "--payloads",
            "16,256",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
        ],
        &out,
    )
    .await;
    // Progress goes to stderr: with no terminal, one line per run.
    assert_eq!(stderr.matches("clients").count(), 4, "{stderr}");

    let runs = runs(&out);
    assert_eq!(runs.len(), 4, "{runs:?}");
    for (run, (payload, clients)) in runs.iter().zip([(16, 1), (16, 4), (256, 1), (256, 4)]) {
        assert_eq!(run["config"], "a", "{run}");
        assert_eq!(run["payload_bytes"], payload, "{run}");
        assert_eq!(run["clients"], clients, "{run}");
        check_common_figures(run);
        // The in-memory network serializes nothing.
        assert_eq!(run["wire_bytes"], 0, "{run}");
        // One line of the table per run.
        let row = format!("a   {:<10} {clients:>7}", "write");
        assert!(stdout.contains(&row), "no row for {clients} clients:\n{stdout}");
    }
    check_plot(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_and_c_measure_disk_and_wire_and_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let data = dir.path().join("data");
    let (stdout, _) = raft_bench(
        &[
            "--configs",
            "b,c",
            "--clients",
            "4",
            "--payloads",
            "256",
            "--duration",
            "500ms",
            "--warmup",
            "200ms",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &out,
    )
    .await;

    let runs = runs(&out);
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (run, config) in runs.iter().zip(["b", "c"]) {
        assert_eq!(run["config"], config, "{run}");
        assert_eq!(run["payload_bytes"], 256, "{run}");
        check_common_figures(run);
        // Every entry crosses QUIC to two followers, payload and framing included.
        assert!(run["wire_bytes_per_entry"].as_f64().unwrap() > 256.0, "{run}");
        assert!(
            stdout.contains(&format!("{config}   {:<10} {:>7}", "write", 4)),
            "{stdout}"
        );
    }
    // c's nodes are processes of their own: their share of the CPU is known.
    assert!(runs[0]["cpu_seconds_nodes"].is_null(), "{}", runs[0]);
    let nodes_cpu = runs[1]["cpu_seconds_nodes"].as_f64().unwrap();
    assert!(
        nodes_cpu > 0.0 && nodes_cpu <= runs[1]["cpu_seconds"].as_f64().unwrap(),
        "{}",
        runs[1]
    );
    check_plot(&out);

    // The write-ahead logs, certificates and node logs were removed with their runs...
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind in the data directory: {left:?}");
    // ...and no node process outlived the benchmark (each one's command line names its
    // directory under `data`).
    let data = data.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap() {
        let path = entry.unwrap().path();
        if let Ok(cmdline) = std::fs::read(path.join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(data)
        {
            panic!("a node is still running: {}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_every_command_of_a_and_c_goes_through_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let data = dir.path().join("data");
    let (stdout, _) = raft_bench(
        &[
            "--configs",
            "a,c",
            "--clients",
            "4",
            "--payloads",
            "16",
            "--duration",
            "500ms",
            "--warmup",
            "200ms",
            "--sessions",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &out,
    )
    .await;
    assert!(stdout.contains("every command in a client session"), "{stdout}");
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["settings"]["sessions"], true, "{json}");
    let runs = runs(&out);
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (run, config) in runs.iter().zip(["a", "c"]) {
        assert_eq!(run["config"], config, "{run}");
        // Commands are counted once applied; a cluster without sessions would have
        // refused every one.
        check_common_figures(run);
    }
}

/// The figures of a run of reads: operations and latencies, and no entries written for them
/// beyond the leader's own (a read writes nothing to the log).
fn check_read_figures(run: &Value) {
    assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
    let latency = &run["latency_us"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["entries_committed"].as_u64().unwrap() < 10, "{run}");
    assert_eq!(run["batch"], 1, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measures_batched_writes_and_every_kind_of_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (stdout, _) = raft_bench(
        &[
            "--configs",
            "a",
            "--workloads",
            "write,read,lease-read,follower-read",
            "--batch",
            "4",
            "--worker-threads",
            "1",
            "--clients",
            "4",
            "--payloads",
            "16",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
        ],
        &out,
    )
    .await;
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["settings"]["worker_threads"], 1, "{json}");
    let runs = runs(&out);
    assert_eq!(runs.len(), 4, "{runs:?}");
    let write = &runs[0];
    assert_eq!(write["workload"], "write", "{write}");
    assert_eq!(write["batch"], 4, "{write}");
    check_common_figures(write);
    // Every command of a batch is an operation and an entry.
    assert_eq!(write["ops"].as_u64().unwrap() % 4, 0, "{write}");
    assert!(
        write["entries_committed"].as_u64().unwrap() >= write["ops"].as_u64().unwrap() / 2,
        "{write}"
    );
    assert!(stdout.contains("write x4"), "{stdout}");
    for (run, workload) in runs[1..].iter().zip(["read", "lease-read", "follower-read"]) {
        assert_eq!(run["workload"], workload, "{run}");
        check_read_figures(run);
    }
    for label in ["read", "lease-read", "f-read"] {
        assert!(
            stdout.contains(&format!("a   {label:<10}")),
            "no row for {label}:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_serves_reads_over_http_on_the_leader_and_the_followers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let data = dir.path().join("data");
    raft_bench(
        &[
            "--configs",
            "c",
            "--workloads",
            "read,follower-read",
            "--clients",
            "4",
            "--duration",
            "500ms",
            "--warmup",
            "200ms",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &out,
    )
    .await;
    let runs = runs(&out);
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (run, workload) in runs.iter().zip(["read", "follower-read"]) {
        assert_eq!(run["config"], "c", "{run}");
        assert_eq!(run["workload"], workload, "{run}");
        check_read_figures(run);
    }
    // The nodes' directories are gone with them.
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "left behind in {data:?}"
    );
}

#[tokio::test]
async fn a_batch_in_c_or_with_sessions_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (args, reason) in [
        (
            &["--configs", "c", "--batch", "4"][..],
            "--batch is for configurations a and b",
        ),
        (
            &["--configs", "a", "--batch", "4", "--sessions"][..],
            "--batch and --sessions",
        ),
        (&["--configs", "a", "--batch", "0"][..], "0 is not in 1..=4096"),
    ] {
        let output = Command::new(RAFT_BENCH)
            .args(args)
            .args([
                "--clients",
                "1",
                "--duration",
                "100ms",
                "--warmup",
                "0ms",
                "--same-process",
            ])
            .arg("--out")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
