//! `counter bench` on a tiny plan: it measures, prints the table, and writes the JSON and
//! the plot.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::ChildGuard;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_benchmark_writes_its_figures_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let child = Command::new(common::COUNTER)
        .args([
            "bench",
            "--configs",
            "a",
            "--clients",
            "1,4",
            "--payloads",
            "16,256",
        ])
        .args(["--duration", "500ms", "--warmup", "100ms", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn counter bench");
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
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "counter bench failed: {}", output.status);
    assert!(
        stdout.contains("ops/s") && stdout.contains("p99.9"),
        "no table header"
    );
    // Progress goes to stderr: with no terminal, one line per run.
    assert_eq!(stderr.matches("clients").count(), 4, "{stderr}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{json}");
    for (run, (payload, clients)) in runs.iter().zip([(16, 1), (16, 4), (256, 1), (256, 4)]) {
        assert_eq!(run["config"], "a", "{run}");
        assert_eq!(run["payload_bytes"], payload, "{run}");
        assert_eq!(run["clients"], clients, "{run}");
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
        assert!(run["cpu_seconds_per_1k_ops"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["peak_memory_bytes"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["failed"], 0, "{run}");
        // One line of the table per run.
        let row = format!("a {clients:>9}");
        assert!(stdout.contains(&row), "no row for {clients} clients:\n{stdout}");
    }

    let png = std::fs::read(out.join("plot.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "plot.png is not a PNG");
    assert!(png.len() > 10_000, "plot.png is suspiciously small");
}
