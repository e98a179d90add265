//! Replays the seed corpus of the `frame_codec` fuzz target (`fuzz/seeds/frame_codec/`,
//! crash reproducers included) through the same harness, on the stable toolchain, with the
//! allocation meter installed so that the allocation bound is checked too.

use std::path::{Path, PathBuf};

use raft_transport_quic::fuzzing::{CountingAlloc, frame_codec, measure, sample_inputs};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/frame_codec")
}

#[test]
fn frame_codec_seeds_replay() {
    let dir = seed_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the seed corpus is missing");
    for file in files {
        eprintln!("replaying {}", file.display());
        frame_codec(&std::fs::read(&file).unwrap());
    }
}

/// The valid inputs the seeds were made from, as the code encodes them today (the committed
/// seeds may predate a change of the message types).
#[test]
fn frame_codec_sample_inputs_replay() {
    for (name, input) in sample_inputs() {
        eprintln!("replaying sample {name}");
        frame_codec(&input);
    }
}

#[test]
fn the_allocation_meter_is_installed() {
    let (v, peak) = measure(|| vec![0u8; 1 << 20]);
    assert_eq!(v.len(), 1 << 20);
    assert!(peak.unwrap() >= 1 << 20);
}

/// Writes the seed corpus from `sample_inputs` (crash reproducers are added by hand).
#[test]
#[ignore = "writes the seed files: run with FRAME_SEED_OUT=<dir>"]
fn write_seeds() {
    let Some(out) = std::env::var_os("FRAME_SEED_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();
    for (name, input) in sample_inputs() {
        std::fs::write(out.join(name), input).unwrap();
    }
}
