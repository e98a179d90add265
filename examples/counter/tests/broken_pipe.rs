//! Every printing command piped into a reader that has gone away (`counter status | head -3`
//! once `head` has its lines) ends quietly: exit status 141, as a shell reports for a
//! coreutils tool that SIGPIPE stopped, and no panic on stderr.

mod common;

use std::process::{ChildStdin, Command, Output, Stdio};

use common::{COUNTER, Cluster, run_counter, stdout_of};

/// The write end of a pipe whose only reader has already exited, so that the first write
/// into it fails with EPIPE. The reader is a `counter --version` that was given the
/// pipe's read end as its stdin and never read it.
fn pipe_without_reader() -> ChildStdin {
    let mut reader = Command::new(COUNTER)
        .arg("--version")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the reader");
    let write_end = reader.stdin.take().expect("piped stdin");
    assert!(reader.wait().expect("reap the reader").success());
    write_end
}

/// Runs `counter` with `args`, its stdout a pipe nobody reads any more.
async fn run_into_closed_pipe(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(COUNTER)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(pipe_without_reader()))
            .stderr(Stdio::piped())
            .output()
            .expect("run counter")
    })
    .await
    .expect("the blocking task ran")
}

/// The command ended as a coreutils tool would, quietly.
fn assert_quiet_end(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what} complained about the closed pipe: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(141),
        "{what} should exit with 141 when stdout has no reader; stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_commands_end_quietly_when_their_reader_is_gone() {
    // Commands that need no cluster. The demo prints its first line before it starts
    // anything, so it ends there.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.to_str().unwrap();
    let out = run_into_closed_pipe(&["certs", "--out", certs_arg, "--nodes", "1"]).await;
    assert_quiet_end("certs", &out);
    // It did its work before printing about it.
    assert!(certs.join("ca.pem").is_file());
    let out = run_into_closed_pipe(&["token", "--out", certs_arg, "--force"]).await;
    assert_quiet_end("token", &out);
    let demo_dir = dir.path().join("demo");
    let out = run_into_closed_pipe(&["demo", "--dir", demo_dir.to_str().unwrap()]).await;
    assert_quiet_end("demo", &out);
    assert!(!demo_dir.join("node-1").exists(), "the demo went on");

    // The clients, against a one-node cluster.
    let mut cluster = Cluster::new(&[1]).await;
    let args = cluster.bootstrap_args(&[1]);
    cluster.start(1, &args);
    cluster.wait_for_leader(&[1]).await;
    let addr = cluster.cluster_arg(&[1]);
    for command in ["status", "get", "incr"] {
        let out = run_into_closed_pipe(&[command, "--cluster", &addr]).await;
        assert_quiet_end(command, &out);
    }
    // The increment was made before its value could not be printed.
    let value = stdout_of(&run_counter(&["get", "--cluster", &addr]).await);
    assert_eq!(value.trim(), "1");
}
