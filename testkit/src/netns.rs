//! Private network namespaces for tests that cut links.
//!
//! A test that injects network faults runs in a namespace of its own: the outer test makes the
//! namespace, then runs itself again inside it (`ip netns exec NAME <this test binary> --exact
//! <test>`), and everything the inner run starts (node processes, firewall rules) lives and
//! dies there. Deleting the namespace removes every rule, so nothing leaks onto the host even
//! when the test fails.

use std::process::Command;

/// Set in the environment of the inner run.
pub const INNER: &str = "RAFT_TESTS_IN_NETNS";

/// Whether this process is the inner run, inside the test's namespace.
pub fn inside() -> bool {
    std::env::var_os(INNER).is_some()
}

/// A network namespace, deleted on drop.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace with its loopback up. Fails (with the reason) where namespaces
    /// cannot be made, for example without root.
    pub fn create(prefix: &str) -> Result<Namespace, String> {
        let name = format!("{prefix}-{}-{}", std::process::id(), nanos() % 1_000_000);
        run("ip", &["netns", "add", &name])?;
        let ns = Namespace { name };
        run(
            "ip",
            &["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"],
        )?;
        // nftables must work in it too: the inner run checks again, but fail early and clearly.
        run("ip", &["netns", "exec", &ns.name, "nft", "list", "ruleset"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the current test binary's test `test` inside the namespace (with `--exact`,
    /// `--nocapture` and `--include-ignored`), passing `env`. Returns whether it passed.
    pub fn run_test_inside(&self, test: &str, env: &[(String, String)]) -> Result<bool, String> {
        let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(exe)
            .args([
                "--exact",
                test,
                "--nocapture",
                "--include-ignored",
                "--test-threads",
                "1",
            ])
            .env(INNER, "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("running the test inside {}: {e}", self.name))?;
        Ok(status.success())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Link faults inside the namespace, as nftables rules on UDP (Raft's QUIC traffic) between
/// node addresses. Each node listens on an address of its own in 127.0.0.0/8, so a rule on
/// addresses also catches the ephemeral ports of snapshot streams.
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// Installs an empty table with an input chain. Must run inside a namespace.
    pub fn new() -> Result<Firewall, String> {
        let fw = Firewall {
            table: "raftfaults".into(),
        };
        let _ = nft(&format!("delete table inet {}", fw.table));
        nft(&format!("add table inet {}", fw.table))?;
        nft(&format!(
            "add chain inet {} input {{ type filter hook input priority 0; policy accept; }}",
            fw.table
        ))?;
        Ok(fw)
    }

    /// Drops all Raft traffic between `a` and `b`, both ways.
    pub fn cut(&self, a: &str, b: &str) -> Result<(), String> {
        for (from, to) in [(a, b), (b, a)] {
            nft(&format!(
                "add rule inet {} input ip saddr {from} ip daddr {to} meta l4proto udp drop",
                self.table
            ))?;
        }
        Ok(())
    }

    /// Drops `percent`% of the Raft packets from `from` to `to`, at random.
    pub fn lose(&self, from: &str, to: &str, percent: u32) -> Result<(), String> {
        nft(&format!(
            "add rule inet {} input ip saddr {from} ip daddr {to} meta l4proto udp numgen random mod 100 < {percent} drop",
            self.table
        ))
    }

    /// Removes every rule.
    pub fn heal(&self) -> Result<(), String> {
        nft(&format!("flush chain inet {} input", self.table))
    }
}

fn nft(command: &str) -> Result<(), String> {
    let args: Vec<&str> = command.split_whitespace().collect();
    run("nft", &args)
}
