//! Replays the `cluster` fuzz target's seed corpus (`raft-core/fuzz/seeds/cluster/`) on the
//! stable toolchain, so that every crash the fuzzer ever found stays fixed. The harness is
//! the same source file the fuzz target runs (`raft-core/fuzz/harness.rs`); see its docs for
//! what it drives and asserts, and the README for how to fuzz.
//!
//! Seed names say what they hold: `known-*` reproduce crashes reported before fuzzing began
//! (now refused), `found-*` reproduce findings of the fuzzer (now fixed), `seed-*` are
//! inputs the fuzzer found that reach a feature (snapshots, membership changes, restarts,
//! transfers, reads, hostile appends...), and `open-*` reproduce findings not fixed yet,
//! listed in [`OPEN`].

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Reproducers of findings that are reported and not fixed yet, with what they show. They
/// are left out of the replay, and each must still fail: once a fix lands,
/// `open_findings_still_reproduce` fails and the file comes off this list.
const OPEN: &[(&str, &str)] = &[];

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, data)
        })
        .collect();
    files.sort();
    files
}

fn is_open(name: &str) -> bool {
    OPEN.iter().any(|(open, _)| *open == name)
}

#[test]
fn cluster_seed_corpus_replays_without_findings() {
    let files = seeds("cluster");
    assert!(
        files.len() >= 10,
        "the seed corpus went missing ({} files)",
        files.len()
    );
    let mut failed = Vec::new();
    for (name, data) in files.iter().filter(|(name, _)| !is_open(name)) {
        if catch_unwind(AssertUnwindSafe(|| harness::cluster(data))).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "seeds with findings (messages above): {failed:?}"
    );
}

#[test]
fn open_findings_still_reproduce() {
    let files = seeds("cluster");
    for (open, what) in OPEN {
        let (_, data) = files
            .iter()
            .find(|(name, _)| name == open)
            .unwrap_or_else(|| panic!("open finding {open} has no reproducer in fuzz/seeds/cluster"));
        let reproduced = catch_unwind(AssertUnwindSafe(|| harness::cluster(data))).is_err();
        assert!(
            reproduced,
            "{open} no longer reproduces ({what}): if it was fixed, take it off OPEN"
        );
    }
}
