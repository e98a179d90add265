//! `counter node` processes for end-to-end tests: start, SIGKILL, SIGSTOP/SIGCONT, restart,
//! with each node's output appended to a log file, and every child killed when the test ends
//! (also when it panics, and when the test process itself dies).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The `counter` binary: `$COUNTER_BIN`, else the one next to the test binary's directory
/// (`target/<profile>/counter`), brought up to date with `cargo build -p counter` first
/// (once per process; after `cargo test --workspace` this may rebuild it once, since
/// features unify differently). A test run with `-p raft-tests` alone does not rebuild the
/// example, and a stale binary would test old code.
pub fn counter_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = std::env::var_os("COUNTER_BIN") {
        return PathBuf::from(p);
    }
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/<test> -> target/<profile>/counter
            let profile_dir = exe.parent().and_then(Path::parent).expect("target directory");
            let target_dir = profile_dir.parent().expect("target directory");
            let release = profile_dir.ends_with("release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "counter", "--target-dir"])
                .arg(target_dir);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p counter");
            assert!(status.success(), "cargo build -p counter failed");
            profile_dir.join("counter")
        })
        .clone()
}

/// One node process with the arguments it was started with.
pub struct NodeProcess {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl NodeProcess {
    /// Starts `counter` with `args`, appending its output to `log`.
    pub fn start(args: Vec<String>, log: PathBuf) -> NodeProcess {
        let mut p = NodeProcess {
            args,
            log,
            child: None,
            stopped: false,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log file");
        let err = out.try_clone().expect("node log file");
        let mut cmd = Command::new(counter_binary());
        cmd.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; the child dies with this process, so no node
        // outlives a test that was killed.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("starting counter node"));
        self.stopped = false;
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs (possibly stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is stopped with SIGSTOP.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: sending a signal to our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stopped = false;
    }

    /// SIGTERM and wait for a graceful exit; returns its exit status success.
    pub fn terminate(&mut self) -> bool {
        self.resume();
        self.signal(libc::SIGTERM);
        match self.child.take() {
            Some(mut c) => c.wait().is_ok_and(|s| s.success()),
            None => true,
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = self.child.is_some();
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if self.stopped {
            self.signal(libc::SIGCONT);
            self.stopped = false;
        }
    }

    /// Starts the process again with the same arguments (after a kill).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Replaces the arguments (for a node that comes back under a new id).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
