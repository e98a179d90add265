//! Fuzzing harnesses and their allocation meter. **Not a stable API**: hidden from the
//! documentation, it may change or go away in any release.
//!
//! A harness takes arbitrary bytes and asserts the properties that must hold for every
//! input; a panic is a finding. The cargo-fuzz targets in `raft-runtime/fuzz/` call the
//! harnesses, and so does the replay test `tests/fuzz_seeds.rs`, which runs every file of
//! `fuzz/seeds/<target>/` on the stable toolchain.
//!
//! Allocation bounds are checked through [`CountingAlloc`]: a binary that installs it as its
//! global allocator lets [`measure`] report how far a closure's allocations on the current
//! thread rose above where they started. Without it the bounds are not checked.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bincode::config;
use bincode::de::read::Reader;
use bincode::error::DecodeError;
use bytes::Bytes;
use raft_core::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::member::MemberInfo;
use crate::transport::WireMessage;

/// A global allocator (over [`System`]) that keeps, per thread, the bytes allocated and not
/// freed, and their peak. Install it with `#[global_allocator]` in a fuzz target or test
/// binary; [`measure`] reads it.
///
/// Memory freed on another thread than the one that allocated it skews both threads'
/// counts, so measure only closures that keep their allocations on their own thread.
#[derive(Debug, Default)]
pub struct CountingAlloc;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // `try_with`: the counters have no destructor, but a thread being torn down may
    // still free memory; such frees are simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn size(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the same arguments and only adds
// bookkeeping in thread-local cells, which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(size(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(size(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        note(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(size(new_size) - size(layout.size()));
        }
        new
    }
}

/// Runs `f` and returns its result with the peak, in bytes, of the current thread's live
/// allocations above their level when `f` started (`None` unless [`CountingAlloc`] is the
/// global allocator). The result's own allocations count.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get).saturating_sub(start);
    let installed = INSTALLED.load(Ordering::Relaxed);
    (result, installed.then(|| usize::try_from(peak).unwrap_or(0)))
}

/// The allocation a decoder may make for `len` bytes of input: 64 bytes per input byte (the
/// decoders' byte limits are at most 32 times the input), plus 4 MiB for the room serde
/// reserves up front for a sequence (at most 1 MiB per sequence being decoded) and for
/// fixed costs.
pub fn decode_allowance(len: usize) -> usize {
    len.saturating_mul(64).saturating_add(4 << 20)
}

fn check_allowance(what: &str, input: &[u8], peak: Option<usize>, allowance: usize) {
    if let Some(peak) = peak {
        assert!(
            peak <= allowance,
            "{what}: decoding {} bytes allocated {peak} bytes, more than the allowance of {allowance}",
            input.len()
        );
    }
}

/// The target `wire_codec`: decodes arbitrary bytes as what one node reads from another.
///
/// The first byte picks the decoder, the rest is its input:
///
/// - a batch of [`WireMessage`]s, and a single [`raft_core::Message`], with the
///   configuration and per-value byte limits of the QUIC transport's frame decoder
///   (bincode standard, limit eight times the bytes left rounded up to a power of four);
/// - the runtime's command and response codec (`codec::decode`) at a few representative
///   command and response types, and [`MemberInfo`] (decoded from configurations).
///
/// Properties: no panic; errors are values; the decoder's allocations stay within
/// [`decode_allowance`] of the input (the runtime codec within its fixed 64 MiB limit:
/// see [`RUNTIME_CODEC_ALLOWANCE`]); every decoded value, encoded again, decodes to
/// the same value; and the runtime codec's two paths (decoding from a slice, and from an
/// entry's buffer, which slices `Bytes` out of it) accept the same inputs and decode the
/// same values.
pub fn wire_codec(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 10 {
        0 => transport_batch(input),
        1 => transport_single::<Message>(input),
        2 => transport_single::<WireMessage>(input),
        3 => runtime_codec::<MemberInfo>(input),
        4 => runtime_codec::<u64>(input),
        5 => runtime_codec::<String>(input),
        6 => runtime_codec::<Bytes>(input),
        7 => runtime_codec::<SampleCommand>(input),
        8 => runtime_codec::<Result<BTreeMap<String, Bytes>, String>>(input),
        _ => runtime_codec::<(u64, Option<Vec<u64>>, Vec<String>)>(input),
    }
}

/// A command shape typical of a key-value service, for the runtime codec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum SampleCommand {
    /// Sets a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Removes keys.
    Delete(Vec<String>),
    /// Adds to a counter.
    Increment(u64),
    /// A compare-and-set.
    Cas {
        /// The key.
        key: String,
        /// The value expected.
        expected: Option<Bytes>,
        /// The value to set.
        new: Bytes,
    },
}

/// What the runtime codec may allocate today for `len` bytes of input: its fixed 64 MiB
/// decode limit plus [`decode_allowance`]. The codec's byte limit is not proportional to the
/// input (a 10-byte response claiming a 60 MiB byte string makes it reserve 60 MiB); once
/// it is, this allowance should become [`decode_allowance`] alone, as
/// [`wire_codec_strict`] checks.
pub const RUNTIME_CODEC_ALLOWANCE: usize = 64 << 20;

/// [`wire_codec`] with the runtime codec held to [`decode_allowance`] like the transport's
/// decoder. Fails today on inputs that claim long byte strings (see
/// [`RUNTIME_CODEC_ALLOWANCE`]).
pub fn wire_codec_strict(data: &[u8]) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STRICT.with(|strict| strict.set(false));
        }
    }
    STRICT.with(|strict| strict.set(true));
    let _reset = Reset;
    wire_codec(data);
}

thread_local! {
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// A bincode reader over a slice that knows how much is left, like the transport's frame
/// reader.
struct SliceReader<'a> {
    rest: &'a [u8],
}

impl Reader for SliceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        if out.len() > self.rest.len() {
            return Err(DecodeError::UnexpectedEnd {
                additional: out.len() - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(out.len());
        out.copy_from_slice(head);
        self.rest = tail;
        Ok(())
    }
}

type Standard = config::Configuration<config::LittleEndian, config::Varint, config::NoLimit>;

fn standard() -> Standard {
    config::standard()
}

/// One value decoded as `raft-transport-quic`'s `decode_limited` does: a byte limit of
/// eight times the bytes left, rounded up to a power of four.
fn decode_limited<T: DeserializeOwned>(reader: &mut SliceReader<'_>) -> Result<T, DecodeError> {
    macro_rules! tiers {
        ($($bits:literal)*) => {{
            let need = reader.rest.len().saturating_mul(8);
            $(
                if need <= 1usize << $bits {
                    return bincode::serde::decode_from_reader(
                        reader,
                        standard().with_limit::<{ 1usize << $bits }>(),
                    );
                }
            )*
            Err(DecodeError::LimitExceeded)
        }};
    }
    tiers!(12 14 16 18 20 22 24 26 28 30 31)
}

fn encode_standard<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, standard()).expect("a decoded value encodes")
}

/// Decodes a frame payload into a batch of messages, as the transport's `decode_batch`.
fn decode_batch(input: &[u8]) -> Result<Vec<WireMessage>, DecodeError> {
    let mut reader = SliceReader { rest: input };
    let mut batch = Vec::new();
    while !reader.rest.is_empty() {
        batch.push(decode_limited::<WireMessage>(&mut reader)?);
    }
    Ok(batch)
}

fn transport_batch(input: &[u8]) {
    let (decoded, peak) = measure(|| decode_batch(input));
    check_allowance("transport batch", input, peak, decode_allowance(input.len()));
    let Ok(batch) = decoded else { return };
    let mut encoded = Vec::new();
    for msg in &batch {
        encoded.extend_from_slice(&encode_standard(msg));
    }
    let again = decode_batch(&encoded).expect("a re-encoded batch decodes");
    assert_eq!(again, batch, "a batch changes across encode and decode");
}

fn transport_single<T>(input: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (decoded, peak) = measure(|| {
        let mut reader = SliceReader { rest: input };
        decode_limited::<T>(&mut reader).map(|value| (value, reader.rest.len()))
    });
    check_allowance(
        std::any::type_name::<T>(),
        input,
        peak,
        decode_allowance(input.len()),
    );
    let Ok((value, _rest)) = decoded else { return };
    let encoded = encode_standard(&value);
    let mut reader = SliceReader { rest: &encoded };
    let again: T = decode_limited(&mut reader).expect("a re-encoded value decodes");
    assert!(reader.rest.is_empty(), "a re-encoded value leaves bytes behind");
    assert_eq!(again, value, "a value changes across encode and decode");
}

fn runtime_codec<T>(input: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static,
{
    let (decoded, peak) = measure(|| codec::decode::<T>(input));
    // The path that slices `Bytes` out of an entry's buffer accepts exactly what the
    // general one does, and decodes the same value.
    let shared = codec::decode_owned::<T>(Bytes::copy_from_slice(input));
    match (&decoded, &shared) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the two decoding paths disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("the two decoding paths disagree: {a:?} against {b:?}"),
    }
    let allowance = if STRICT.with(Cell::get) {
        decode_allowance(input.len())
    } else {
        decode_allowance(input.len()).saturating_add(RUNTIME_CODEC_ALLOWANCE)
    };
    check_allowance(std::any::type_name::<T>(), input, peak, allowance);
    let Ok(value) = decoded else { return };
    let encoded = codec::encode(&value).expect("a decoded value encodes");
    let again: T = codec::decode(&encoded).expect("a re-encoded value decodes");
    assert_eq!(again, value, "a value changes across encode and decode");
}

/// The limits the session harness decodes tables under.
const SESSION_LIMITS: crate::sessions::Limits = crate::sessions::Limits {
    max_sessions: 4,
    max_pending: 4,
    max_pending_bytes: 64,
    timeout: 1_000,
};

/// The readers of client-session state, which comes from log entries and snapshots (a
/// corrupt file, a hostile peer): the first byte picks one, the rest is its input.
///
/// - `0`: a runtime record ([`crate::sessions::record::decode`]); one that decodes must be
///   written back to the same bytes.
/// - `1`: a session table in its snapshot form; one that decodes must encode to a form that
///   decodes to the same table.
/// - `2`: a snapshot split into its session table and the state machine's data, read in
///   chunks of 7 bytes; on success the data left is all that follows the table.
///
/// None may panic.
pub fn session_state(data: &[u8]) {
    use crate::sessions::{Sessions, record, snapshot};

    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let bytes = Bytes::copy_from_slice(input);
            let Ok(decoded) = record::decode(&bytes) else {
                return;
            };
            let (mut again, stamp) = match &decoded {
                record::Record::Open { stamp } => (record::open(), *stamp),
                record::Record::Command {
                    stamp,
                    session,
                    seq,
                    acked,
                    command,
                } => (record::command(*session, *seq, *acked, command), *stamp),
            };
            record::stamp(&mut again, stamp).expect("a record just built takes a stamp");
            assert_eq!(&again[..], input, "a record changes across decode and encode");
        }
        1 => {
            let Ok(table) = Sessions::decode(input, SESSION_LIMITS) else {
                return;
            };
            let encoded = table.encode().expect("a decoded table encodes");
            let again = Sessions::decode(&encoded, SESSION_LIMITS).expect("a re-encoded table decodes");
            assert_eq!(again, table, "a table changes across encode and decode");
        }
        _ => {
            let chunks: Vec<std::io::Result<Bytes>> =
                input.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let stream = crate::SnapshotStream::new(futures::stream::iter(chunks));
            let split = futures::executor::block_on(snapshot::split(stream, SESSION_LIMITS));
            let Ok((_, rest)) = split else { return };
            let rest = futures::executor::block_on(rest.into_bytes(u64::MAX)).expect("the rest reads");
            let table_len =
                u64::from_le_bytes(input[8..16].try_into().expect("a split snapshot has a header"));
            assert_eq!(
                rest.len() as u64,
                input.len() as u64 - 16 - table_len,
                "the data after the table is handed on whole"
            );
        }
    }
}

/// Named inputs of [`session_state`]: valid records, tables and snapshots, and a few
/// malformed ones. The seed corpus of its fuzz target is written from these.
pub fn session_sample_inputs() -> Vec<(String, Vec<u8>)> {
    use crate::sessions::{Admit, Sessions, record, snapshot};

    let mut out = Vec::new();
    let mut open = record::open();
    record::stamp(&mut open, 1_700_000_000_000).expect("stamps");
    out.push(("record-open".to_string(), [&[0u8][..], &open].concat()));
    let mut command = record::command(12, 3, 2, b"\x05incr");
    record::stamp(&mut command, 1_700_000_000_500).expect("stamps");
    out.push(("record-command".to_string(), [&[0u8][..], &command].concat()));
    out.push(("record-short".to_string(), vec![0, 1, 0, 0]));
    let mut table = Sessions::new(SESSION_LIMITS);
    table.open(12, 100).expect("room");
    table.open(30, 200).expect("room");
    assert_eq!(table.admit(12, 1, 0, 300), Admit::Apply);
    table.record(12, 1, Bytes::from_static(b"\x2a"));
    let encoded = table.encode().expect("encodes");
    out.push(("table".to_string(), [&[1u8][..], &encoded].concat()));
    let stream = snapshot::wrap(
        &table,
        crate::SnapshotStream::from_bytes(&b"state machine data"[..]),
    )
    .expect("wraps");
    let whole = futures::executor::block_on(stream.into_bytes(1 << 20)).expect("reads");
    out.push(("snapshot".to_string(), [&[2u8][..], &whole].concat()));
    out.push((
        "snapshot-no-table".to_string(),
        [&[2u8][..], b"plain state"].concat(),
    ));
    let claims = [&whole[..8], &u64::MAX.to_le_bytes()[..]].concat();
    out.push((
        "snapshot-claims-huge-table".to_string(),
        [&[2u8][..], &claims].concat(),
    ));
    out
}

/// Named inputs of [`wire_codec`] built from valid values of every decoder's type, plus a
/// few hostile ones: the seed corpus of the fuzz target is written from these.
pub fn sample_inputs() -> Vec<(String, Vec<u8>)> {
    use raft_core::{
        Append, AppendResponse, ConfState, Entry, EntryPayload, Heartbeat, HeartbeatResponse, MessageBody,
        ReadIndexRequest, ReadIndexResponse, RequestVote, SnapshotMeta, VoteResponse,
    };

    use crate::transport::ForwardError;

    let msg = |term, body| Message {
        from: 1,
        to: 2,
        term,
        body,
    };
    let conf = ConfState {
        node_meta: [(1, Bytes::from_static(b"10.0.0.1:7000"))].into(),
        ..ConfState::with_voters([1, 2, 3])
    };
    let messages = vec![
        (
            "request-vote",
            msg(
                3,
                MessageBody::RequestVote(RequestVote {
                    pre_vote: true,
                    last_index: 10,
                    last_term: 2,
                    leader_transfer: false,
                }),
            ),
        ),
        (
            "vote-response",
            msg(
                3,
                MessageBody::VoteResponse(VoteResponse {
                    pre_vote: false,
                    granted: true,
                }),
            ),
        ),
        (
            "append",
            msg(
                2,
                MessageBody::Append(Append {
                    prev_index: 4,
                    prev_term: 1,
                    entries: vec![
                        Entry::new(2, 5, EntryPayload::Empty),
                        Entry::new(2, 6, EntryPayload::Normal(Bytes::from_static(b"command"))),
                        Entry::new(2, 7, EntryPayload::Membership(Box::new(conf.clone()))),
                    ],
                    commit: 5,
                }),
            ),
        ),
        (
            "append-rejected",
            msg(
                2,
                MessageBody::AppendResponse(AppendResponse::Rejected {
                    rejected: 9,
                    hint_index: 6,
                    hint_term: 1,
                    round: 3,
                }),
            ),
        ),
        (
            "append-accepted",
            msg(
                2,
                MessageBody::AppendResponse(AppendResponse::Accepted { index: 7 }),
            ),
        ),
        (
            "heartbeat",
            msg(
                2,
                MessageBody::Heartbeat(Heartbeat {
                    commit: 7,
                    round: 12,
                    quiesce: false,
                }),
            ),
        ),
        (
            "heartbeat-response",
            msg(2, MessageBody::HeartbeatResponse(HeartbeatResponse { round: 12 })),
        ),
        (
            "snapshot",
            msg(
                4,
                MessageBody::Snapshot(Box::new(SnapshotMeta {
                    index: 100,
                    term: 3,
                    conf_state: conf,
                })),
            ),
        ),
        ("timeout-now", msg(5, MessageBody::TimeoutNow)),
        (
            "read-index",
            msg(5, MessageBody::ReadIndex(ReadIndexRequest { ctx: 77 })),
        ),
        (
            "read-index-response",
            msg(
                5,
                MessageBody::ReadIndexResponse(ReadIndexResponse {
                    ctx: 77,
                    index: Some(9),
                }),
            ),
        ),
    ];
    let prefixed = |selector: u8, bytes: Vec<u8>| [vec![selector], bytes].concat();
    let mut out = Vec::new();
    let mut batch = Vec::new();
    for (name, m) in &messages {
        out.push((format!("message-{name}"), prefixed(1, encode_standard(m))));
        batch.extend_from_slice(&encode_standard(&WireMessage::Raft(m.clone())));
    }
    let wires = [
        WireMessage::Forward {
            id: 1,
            command: Bytes::from_static(b"incr"),
        },
        WireMessage::ForwardReply {
            id: 1,
            result: Ok(Bytes::from_static(b"42")),
        },
        WireMessage::ForwardReply {
            id: 2,
            result: Err(ForwardError::NotLeader { leader: Some(3) }),
        },
        WireMessage::ForwardReply {
            id: 3,
            result: Err(ForwardError::Malformed("bad".into())),
        },
    ];
    for (i, w) in wires.iter().enumerate() {
        out.push((format!("wire-{i}"), prefixed(2, encode_standard(w))));
        batch.extend_from_slice(&encode_standard(w));
    }
    out.push(("batch".into(), prefixed(0, batch)));
    let codec = |value: &dyn erased::Encode| value.encode();
    out.push((
        "codec-member-info".into(),
        prefixed(3, codec(&MemberInfo::new("10.0.0.1:7000"))),
    ));
    out.push(("codec-u64".into(), prefixed(4, codec(&42u64))));
    out.push(("codec-string".into(), prefixed(5, codec(&"hello".to_string()))));
    out.push((
        "codec-bytes".into(),
        prefixed(6, codec(&Bytes::from_static(b"\x00\x01"))),
    ));
    out.push((
        "codec-command".into(),
        prefixed(
            7,
            codec(&SampleCommand::Cas {
                key: "k".into(),
                expected: Some(Bytes::from_static(b"v")),
                new: Bytes::from_static(b"w"),
            }),
        ),
    ));
    let map: Result<BTreeMap<String, Bytes>, String> =
        Ok([("a".to_string(), Bytes::from_static(b"1"))].into());
    out.push(("codec-result-map".into(), prefixed(8, codec(&map))));
    out.push((
        "codec-tuple".into(),
        prefixed(9, codec(&(7u64, Some(vec![1u64, 2]), vec!["x".to_string()]))),
    ));
    // A byte string claiming 60 MiB, and one claiming u64::MAX.
    for (selector, name) in [(6u8, "codec-bytes"), (2, "wire-forward")] {
        let mut claim = if selector == 2 { vec![1, 1] } else { Vec::new() };
        claim.push(252);
        claim.extend_from_slice(&(60u32 << 20).to_le_bytes());
        claim.extend_from_slice(b"abc");
        out.push((format!("{name}-claims-60mib"), prefixed(selector, claim.clone())));
        let mut max = if selector == 2 { vec![1, 1] } else { Vec::new() };
        max.push(253);
        max.extend_from_slice(&u64::MAX.to_le_bytes());
        out.push((format!("{name}-claims-max"), prefixed(selector, max)));
    }
    out
}

/// Type erasure for encoding sample values with the runtime codec.
mod erased {
    pub(super) trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize + 'static> Encode for T {
        fn encode(&self) -> Vec<u8> {
            crate::codec::encode(self).expect("a sample encodes").to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_inputs_are_refused_quietly() {
        for selector in 0..10u8 {
            wire_codec(&[selector]);
            wire_codec(&[selector, 0xff, 0xff, 0xff, 0xff]);
            wire_codec(&[selector, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        }
        wire_codec(&[]);
    }

    #[test]
    fn session_samples_pass_the_harness() {
        for (_, input) in session_sample_inputs() {
            session_state(&input);
        }
    }

    #[test]
    fn samples_pass_the_harness() {
        for (name, input) in sample_inputs() {
            if name.starts_with("codec-bytes-claims") {
                continue;
            }
            wire_codec(&input);
        }
    }

    #[test]
    fn valid_values_round_trip() {
        let msg = WireMessage::Forward {
            id: 7,
            command: Bytes::from_static(b"cmd"),
        };
        let mut input = vec![0u8];
        input.extend_from_slice(&encode_standard(&msg));
        input.extend_from_slice(&encode_standard(&msg));
        wire_codec(&input);
        let mut input = vec![7u8];
        input.extend_from_slice(&codec::encode(&SampleCommand::Increment(3)).unwrap());
        wire_codec(&input);
    }
}
