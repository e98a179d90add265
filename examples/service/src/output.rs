//! The commands' output on stdout, where a reader that goes away is a normal end.
//!
//! `counter status --cluster ... | head -3` closes the pipe after three lines. Rust ignores
//! `SIGPIPE`, so the next write fails with `EPIPE` instead of killing the process, and
//! `println!` panics on that. Every command prints through [`outln!`](crate::outln)
//! instead, which turns `EPIPE` into [`OutputError::Closed`]: the command stops there,
//! as it would on any error, and `main` exits quietly with status 141.
//!
//! 141 is what a shell reports for a coreutils tool (`cat`, `ls`, `seq`) that `SIGPIPE`
//! killed in the same place (128 + 13), so a script with `set -o pipefail` sees the same
//! status from `counter status | head -1` as from `ls | head -1`. Any other write error
//! (a full disk behind `> file`) is an ordinary error: reported, status 1.

use std::fmt;
use std::io::{self, Write};

/// The exit status after the reader of stdout went away: a shell's status for a process
/// that `SIGPIPE` killed (128 + 13).
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// Why a line could not be written to stdout.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (`EPIPE`): nothing more can be shown, so the command ends.
    /// A normal end, not a failure (see the module docs).
    #[error("stdout was closed by its reader")]
    Closed,
    /// Any other write error.
    #[error("cannot write to stdout: {0}")]
    Io(#[source] io::Error),
}

/// Writes `args` and a newline to `out`; see [`line()`](fn@line).
pub fn line_to(out: &mut impl Write, args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => OutputError::Closed,
            _ => OutputError::Io(e),
        })
}

/// Writes `args` and a newline to stdout. Stdout is line buffered, so the line is out
/// (or the error known) when this returns.
pub fn line(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    line_to(&mut io::stdout().lock(), args)
}

/// Whether `error` (as a command returns it) means that stdout's reader went away.
pub fn is_stdout_closed(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(error.downcast_ref::<OutputError>(), Some(OutputError::Closed))
}

/// `println!` for the commands: writes a line to stdout and evaluates to
/// `Result<(), OutputError>`, for `?`, instead of panicking when the reader went away.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone, or that fails some other way.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_a_normal_end_and_other_errors_are_errors() {
        let closed = line_to(&mut Failing(io::ErrorKind::BrokenPipe), format_args!("x"));
        let closed: crate::Error = Box::new(closed.unwrap_err());
        assert!(is_stdout_closed(&*closed));

        let full = line_to(&mut Failing(io::ErrorKind::StorageFull), format_args!("x"));
        let full: crate::Error = Box::new(full.unwrap_err());
        assert!(!is_stdout_closed(&*full));
        assert!(full.to_string().starts_with("cannot write to stdout"), "{full}");
    }

    #[test]
    fn lines_end_with_a_newline() {
        let mut out = Vec::new();
        line_to(&mut out, format_args!("node {}", 1)).unwrap();
        line_to(&mut out, format_args!("")).unwrap();
        assert_eq!(out, b"node 1\n\n");
    }
}
