//! `raft-wal`: check or repair a log directory of `raft-storage-file` offline.
//!
//! ```text
//! raft-wal check DIR          verify every record; exit 0 if the log opens cleanly
//! raft-wal repair DIR --yes   cut the log before the first corruption (loses data!)
//! ```
//!
//! Both take the directory lock, so they refuse to run while a node has the log open.

use std::process::ExitCode;

use raft_storage_file::{repair, verify};

const USAGE: &str = "usage: raft-wal check DIR | raft-wal repair DIR --yes";

fn print_error(err: &dyn std::error::Error) {
    eprintln!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn check(dir: &str) -> ExitCode {
    match verify(dir) {
        Ok(report) => {
            println!("log at {dir} is healthy");
            println!("  segments:   {}", report.segments.len());
            if report.groups.iter().all(|g| g.group == 0) {
                println!("  entries:    {}..={}", report.first_index, report.last_index);
                println!("  hard state: {:?}", report.hard_state);
                match &report.snapshot {
                    Some(s) => println!("  snapshot:   index {} term {}", s.index, s.term),
                    None => println!("  snapshot:   none"),
                }
            } else {
                // A log shared by several Raft groups: one line each, the first 20.
                println!("  groups:     {}", report.groups.len());
                for g in report.groups.iter().take(20) {
                    let snapshot = g.snapshot.as_ref().map_or("none".to_string(), |s| {
                        format!("index {} term {}", s.index, s.term)
                    });
                    println!(
                        "  group {}: entries {}..={}, term {}, snapshot {snapshot}",
                        g.group, g.first_index, g.last_index, g.hard_state.term
                    );
                }
                if report.groups.len() > 20 {
                    println!("  ... and {} more groups", report.groups.len() - 20);
                }
            }
            if report.stats.torn_bytes > 0 {
                println!(
                    "  torn tail:  {} bytes after the last complete batch (dropped on the next open)",
                    report.stats.torn_bytes
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_error(&err);
            ExitCode::FAILURE
        }
    }
}

fn run_repair(dir: &str) -> ExitCode {
    match repair(dir) {
        Ok(report) if report.repaired.is_empty() => {
            println!("log at {dir} is healthy; nothing to repair");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for err in &report.repaired {
                println!("repaired: {err}");
            }
            for (path, len) in &report.truncated {
                println!("cut {} to {len} bytes", path.display());
            }
            for path in &report.quarantined {
                println!("kept aside: {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_error(&err);
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", dir] => check(dir),
        ["repair", dir, "--yes"] => run_repair(dir),
        ["repair", _] => {
            eprintln!(
                "repair cuts the log at the last complete batch before the first corruption and \
                 moves everything after it aside: acknowledged entries and the node's vote can be lost.\n\
                 Run it only on a node the cluster can bring back up to date, then pass --yes."
            );
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
