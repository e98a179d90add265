//! Node processes for end-to-end tests and benchmarks: start, SIGKILL, SIGTERM, SIGSTOP and
//! SIGCONT, restart, each process's output appended to a log file, and every child killed
//! when its handle is dropped (also when the test panics) and when this process dies.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// One child process with the program and arguments it was started with.
pub struct NodeProcess {
    program: PathBuf,
    args: Vec<String>,
    rust_log: String,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl NodeProcess {
    /// Starts `program` with `args` and `RUST_LOG` set to `rust_log` (unless the
    /// environment sets it), appending its output to `log`.
    pub fn start(
        program: impl Into<PathBuf>,
        args: Vec<String>,
        log: PathBuf,
        rust_log: &str,
    ) -> std::io::Result<NodeProcess> {
        let mut p = NodeProcess {
            program: program.into(),
            args,
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| rust_log.to_string()),
            log,
            child: None,
            stopped: false,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let out = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn()?);
        self.stopped = false;
        Ok(())
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

    /// The exit status, if the process has exited by itself (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to our own child, not yet reaped, so the pid still names it.
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

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        self.resume();
        self.signal(libc::SIGTERM);
        match self.child.take() {
            Some(mut c) => c.wait().is_ok_and(|s| s.success()),
            None => true,
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit without blocking the runtime.
    /// Returns the exit status; `None` if the process did not exit in time (it is then
    /// killed when this handle is dropped) or was not running.
    pub async fn terminate_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.resume();
        self.signal(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + timeout;
        while self.child.is_some() {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
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
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Replaces the arguments (for a node that comes back under a new id).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log, to explain a failure.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Makes the process that `command` starts die with this one, even if this one is killed
/// (`PR_SET_PDEATHSIG`; it fires when the thread that spawned the child exits, so spawn
/// from a thread that lives as long as the children should).
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and makes one
    // async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Ports on 127.0.0.1 that were free a moment ago (bound to port 0, then released), none
/// handed out twice. Another process could take one in between, which on loopback in a
/// test run is rare enough.
#[derive(Debug, Default)]
pub struct Ports {
    taken: HashSet<u16>,
}

impl Ports {
    /// No port handed out yet.
    pub fn new() -> Ports {
        Ports::default()
    }

    /// A free UDP port (for QUIC).
    pub fn udp(&mut self) -> std::io::Result<SocketAddr> {
        loop {
            let addr = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
            if self.taken.insert(addr.port()) {
                return Ok(addr);
            }
        }
    }

    /// A free TCP port (for HTTP).
    pub fn tcp(&mut self) -> std::io::Result<SocketAddr> {
        loop {
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            if self.taken.insert(addr.port()) {
                return Ok(addr);
            }
        }
    }
}
