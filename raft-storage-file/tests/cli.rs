//! The operator tool: `raft-wal check` and `raft-wal repair`.

mod common;

use std::process::Command;

use common::*;
use raft_runtime::LogStore;
use raft_storage_file::{Options, verify};

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-wal"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_and_repair_from_the_command_line() {
    let dir = fast_tempdir();
    let options = Options {
        segment_size: 4096,
        ..Options::default()
    };
    {
        let store = open(dir.path(), options.clone());
        for i in 0..30 {
            append_sync(&store, write(ents(1, i * 3 + 1, i * 3 + 3, 100), None)).unwrap();
        }
    }
    let path = dir.path().to_str().unwrap();
    let (code, out, _) = tool(&["check", path]);
    assert_eq!(code, 0);
    assert!(out.contains("entries:    1..=90"), "{out}");

    // Damage a closed segment.
    let report = verify(dir.path()).unwrap();
    let damaged = &report.segments[2];
    let mut bytes = std::fs::read(&damaged.path).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&damaged.path, bytes).unwrap();
    let name = damaged.path.file_name().unwrap().to_str().unwrap();

    let (code, _, err) = tool(&["check", path]);
    assert_eq!(code, 1);
    assert!(err.contains(name) && err.contains("offset"), "{err}");

    // Without --yes, repair explains and changes nothing.
    let (code, _, err) = tool(&["repair", path]);
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(tool(&["check", path]).0, 1);

    let (code, out, _) = tool(&["repair", path, "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("repaired:") && out.contains(name), "{out}");
    assert_eq!(tool(&["check", path]).0, 0);
    let store = open(dir.path(), options);
    assert!(store.last_index() < 90);
    assert_eq!(all_entries(&store), ents(1, 1, store.last_index(), 100));

    assert_eq!(tool(&["bogus"]).0, 2);
}

#[test]
fn check_lists_the_groups_of_a_shared_log() {
    let dir = fast_tempdir();
    {
        let wal = raft_storage_file::FileWal::open(dir.path(), Options::default()).unwrap();
        for g in [1u64, 2] {
            let log = wal.group(g).unwrap();
            append_sync(&log, write(ents(g, 1, g + 1, 10), None)).unwrap();
        }
    }
    let (code, out, _) = tool(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("groups:     2"), "{out}");
    assert!(
        out.contains("group 1: entries 1..=2, term 0, snapshot none"),
        "{out}"
    );
    assert!(out.contains("group 2: entries 1..=3"), "{out}");
    let report = verify(dir.path()).unwrap();
    assert_eq!(
        report.groups.iter().map(|g| g.group).collect::<Vec<_>>(),
        vec![1, 2]
    );
}
