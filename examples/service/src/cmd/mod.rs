//! The subcommands every service's binary has, one file each (an argument struct and a
//! `run`), the options they share, what a demo is built from ([`demo`]), and the binary's
//! [`main`].
//!
//! A service's binary declares its own `clap` command enum, with its own subcommands (the
//! demo, the clients of its routes) and these, and hands it to [`main`].

pub mod add_node;
pub mod certs;
pub mod demo;
pub mod node;
pub mod remove_node;
pub mod status;
pub mod token;
pub mod transfer_leader;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::Error;
use crate::admin_token::{AdminToken, TokenError};
use crate::client::Client;
use crate::output;

/// How many malloc arenas the services' processes use at most, unless `MALLOC_ARENA_MAX`
/// says otherwise: the number of CPUs, between 2 and 4.
///
/// glibc gives threads that allocate at the same time arenas of their own, up to eight per
/// CPU, and memory freed into one arena serves only that arena. A node's threads come and
/// go (the blocking threads that read a snapshot, restore one, apply batches and sync the
/// log), and each leaves memory behind in its arena: measured on 2 CPUs, a `kv` node
/// catching up with a 300 MiB state by snapshot grew by 198 MiB with glibc's default (16
/// arenas there) while its heap peaked at 93 MiB, and by 97 MiB with two arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = cpus.clamp(2, 4) as libc::c_int;
    // SAFETY: mallopt only sets a tunable of the allocator; called before any thread
    // other than this one exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other allocators keep their own defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Runs a service's binary: parses the command line into `C` (exiting, as `clap` does, on
/// `--help`, `--version` or a usage error), sets up logging on stderr (`RUST_LOG`, or
/// [`default_log_filter`] of the subcommand when it is not set), starts the async runtime,
/// runs the command `run` makes of `C` in it, and reports an error as one line on stderr,
/// `<service>: <error>`. Returns the process's exit status: 0, 1 after an error, or
/// [`output::EXIT_STDOUT_CLOSED`] when stdout's reader went away.
pub fn main<C, F>(service: &str, run: impl FnOnce(C) -> F) -> ExitCode
where
    C: clap::Parser,
    F: Future<Output = Result<(), Error>>,
{
    limit_malloc_arenas();
    let mut matches = C::command().get_matches();
    let default_filter = default_log_filter(matches.subcommand_name());
    let cli = C::from_arg_matches_mut(&mut matches)
        .map_err(|e| e.format(&mut C::command()))
        .unwrap_or_else(|e| e.exit());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Logs go to stderr, so that stdout carries only the command's own output.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            report(service, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`counter status | head -3`): a normal end, with
        // the status a shell shows for a tool that SIGPIPE stopped (see `output`).
        Err(e) if output::is_stdout_closed(&*e) => ExitCode::from(output::EXIT_STDOUT_CLOSED),
        Err(e) => {
            report(service, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// The log level of subcommand `name` when `RUST_LOG` is not set: a node logs what it
/// does; the demo and the clients print their own output and log only what went wrong.
/// The demo stops nodes on purpose, so the warnings that causes are not shown.
pub fn default_log_filter(name: Option<&str>) -> &'static str {
    match name {
        Some("node") => "info",
        Some("demo") => "error",
        _ => "warn",
    }
}

/// Prints an error on stderr; if stderr is gone too, there is no one left to tell.
fn report(service: &str, error: &str) {
    let _ = writeln!(std::io::stderr(), "{service}: {error}");
}

/// Loads the admin token in `path` for a command of service `service`. When the file
/// cannot be read, the error says which commands write one.
pub fn load_admin_token(service: &str, path: &Path) -> Result<AdminToken, Error> {
    AdminToken::load(path).map_err(|e| match e {
        TokenError::Read { .. } => format!(
            "{e} (`{service} certs` writes one; `{service} token --out DIR` adds one to an existing directory)"
        )
        .into(),
        e => e.into(),
    })
}

/// The options every client command shares.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// HTTP addresses of the cluster's nodes, tried in turn (HOST:PORT,HOST:PORT,...).
    #[arg(long, value_delimiter = ',', required = true)]
    pub cluster: Vec<String>,
    /// Give up after trying for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl ClusterArgs {
    /// A client of these nodes.
    pub fn client(&self) -> Client {
        Client::new(&self.cluster).with_deadline(Duration::from_secs(self.timeout))
    }
}

/// Where the admin commands find the admin token: the certificates directory (as the
/// `certs` command wrote it) or a file of its own.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TokenArgs {
    /// The directory the `certs` command wrote; the token is its admin.token.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// The file holding the admin token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// Loads the token from where the arguments say, for a command of service
    /// `service`.
    pub fn load(&self, service: &str) -> Result<AdminToken, Error> {
        let path = match (&self.token_file, &self.certs) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => crate::certs::admin_token_file(dir),
            (None, None) => return Err("pass --certs DIR or --token-file FILE".into()),
        };
        load_admin_token(service, &path)
    }
}

/// `500ms`, `3s`, `5m`, `1h`, or plain seconds (`3`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (500ms, 3s, 5m)"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_log_what_they_do_and_the_demo_only_errors() {
        assert_eq!(default_log_filter(Some("node")), "info");
        assert_eq!(default_log_filter(Some("demo")), "error");
        assert_eq!(default_log_filter(Some("status")), "warn");
        assert_eq!(default_log_filter(None), "warn");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }
}
