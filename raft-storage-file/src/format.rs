//! The on-disk format: file names, segment headers, record framing and record bodies.
//!
//! A segment file is a 64-byte header followed by records, each aligned to 8 bytes:
//!
//! ```text
//! header  magic "RAFTWAL\0" | version u32 | flags u32 | seq u64 | prev_seq u64 | prev_end u64
//!         | 20 reserved zero bytes | crc32c(bytes 0..60) u32                    (all little-endian)
//! record  len u32 | crc u32 | payload (len bytes: type u8, body) | zero padding to 8 bytes
//!         crc = crc32c(seq u64 | len u32 | payload)
//! ```
//!
//! Seeding every record checksum with the segment number means a recycled segment file's
//! stale records can never pass for records of the file's new life.

use bytes::Bytes;
use raft_core::{ConfState, Entry, EntryPayload, HardState, Index, SnapshotMeta, Term};
use serde::{Deserialize, Serialize};

use crate::error::CorruptKind;

/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"RAFTWAL\0";
/// The format version this build writes.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// The oldest version this code still reads. Version 2 added internal entries (kind 3),
/// version 3 the records of several Raft groups in one log (group records); files of
/// earlier versions hold neither and read the same, as the log of group 0.
pub(crate) const OLDEST_READABLE_VERSION: u32 = 1;
/// Length of the segment header; the first record starts here.
pub(crate) const HEADER_LEN: u64 = 64;
/// Length of a record's frame header (length and checksum).
pub(crate) const RECORD_HEADER: usize = 8;
/// Record alignment.
pub(crate) const ALIGN: usize = 8;
/// Largest record payload.
pub(crate) const MAX_RECORD: usize = (u32::MAX as usize) - 64;

/// Record types (the first payload byte).
pub(crate) mod rtype {
    /// Hard state and snapshot reference at the start of a segment.
    pub const CHECKPOINT: u8 = 1;
    /// One log entry.
    pub const ENTRY: u8 = 2;
    /// A new hard state.
    pub const HARD_STATE: u8 = 3;
    /// A snapshot from the leader: replaces the snapshot and discards the log.
    pub const SNAPSHOT_INSTALL: u8 = 4;
    /// A snapshot taken locally: replaces the snapshot, leaves the log alone.
    pub const SNAPSHOT_SAVED: u8 = 5;
    /// Ends a batch: everything since the previous commit record is durable together.
    pub const COMMIT: u8 = 6;
    /// Names the Raft group the records after it belong to, up to the next group record or
    /// the end of the batch (each batch starts in group 0).
    pub const GROUP: u8 = 7;
    /// The current group is removed from the log: its state, entries and snapshot go.
    pub const GROUP_REMOVED: u8 = 8;
}

/// Payload length of a group record: type, group id.
pub(crate) const GROUP_LEN: usize = 1 + 8;

/// Payload length of a commit record: type, group start, batch number.
pub(crate) const COMMIT_LEN: u32 = 1 + 8 + 8;

/// Bytes of an entry record's body before the payload: term, index, size, kind.
const ENTRY_FIXED: usize = 8 + 8 + 8 + 1;

/// The bincode configuration of every serde-encoded record body (pinned: it is on disk).
/// Decoding adds a byte limit proportional to the body (see [`decode_serde`]).
pub(crate) const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// The largest term, index, batch number or snapshot generation read from a file (2^63 - 1).
/// No correct log comes anywhere near it; refusing larger values keeps every `+ 1` on them
/// free of overflow, here and in the protocol above.
pub(crate) const MAX_VALUE: u64 = i64::MAX as u64;

/// Refuses a number read from a file above [`MAX_VALUE`].
pub(crate) fn check_range(field: &'static str, value: u64) -> Result<u64, CorruptKind> {
    if value > MAX_VALUE {
        return Err(CorruptKind::OutOfRange { field, value });
    }
    Ok(value)
}

/// Name of the lock file.
pub(crate) const LOCK_NAME: &str = "LOCK";

/// A segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// This segment's number (also in its file name).
    pub seq: u64,
    /// The number of the segment this one follows (0 for the first segment ever).
    pub prev_seq: u64,
    /// Where the committed data of segment `prev_seq` ends.
    pub prev_end: u64,
}

/// Why a header could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// All zero (or absent): a prepared segment never written to.
    Zero,
    /// Not our magic.
    Magic,
    /// Our magic, another version.
    Version(u32),
    /// Checksum mismatch.
    Checksum,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.prev_seq.to_le_bytes());
        h[32..40].copy_from_slice(&self.prev_end.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if buf.iter().all(|&b| b == 0) {
            return Err(HeaderError::Zero);
        }
        if buf.len() < HEADER_LEN as usize {
            return Err(HeaderError::Checksum);
        }
        let magic = buf[0..8] == SEGMENT_MAGIC;
        let version = u32_at(buf, 8);
        if crc32c::crc32c(&buf[0..60]) != u32_at(buf, 60) {
            // A later format may lay its header out differently: our magic and a higher
            // version number say "not ours to judge" rather than "damaged".
            if magic && version > FORMAT_VERSION && version < 1 << 16 {
                return Err(HeaderError::Version(version));
            }
            return Err(if magic {
                HeaderError::Checksum
            } else {
                HeaderError::Magic
            });
        }
        if !magic {
            return Err(HeaderError::Magic);
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::Version(version));
        }
        Ok(SegmentHeader {
            seq: u64_at(buf, 16),
            prev_seq: u64_at(buf, 24),
            prev_end: u64_at(buf, 32),
        })
    }
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Total on-disk size of a record with a `len`-byte payload, padding included.
pub(crate) fn padded(len: usize) -> usize {
    (RECORD_HEADER + len).div_ceil(ALIGN) * ALIGN
}

fn record_crc(seq: u64, len: u32, payload: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends one framed record to `buf`; `body` writes the payload (type byte first).
/// Returns the record's start in `buf` and its unpadded length.
pub(crate) fn frame(buf: &mut Vec<u8>, seq: u64, body: impl FnOnce(&mut Vec<u8>)) -> (usize, u32) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER]);
    body(buf);
    let len = buf.len() - start - RECORD_HEADER;
    debug_assert!(len > 0 && len <= MAX_RECORD);
    let len = len as u32;
    let crc = record_crc(seq, len, &buf[start + RECORD_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let total = padded(len as usize);
    buf.resize(start + total, 0);
    (start, RECORD_HEADER as u32 + len)
}

/// A record that passed its checksum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRecord<'a> {
    /// The record type.
    pub rtype: u8,
    /// The payload after the type byte.
    pub body: &'a [u8],
    /// Frame header plus payload, without padding.
    pub len: u32,
    /// On-disk size including padding.
    pub padded_len: usize,
}

/// Parses and verifies the record at `pos` of a segment whose number is `seq`.
pub(crate) fn parse_record(buf: &[u8], pos: usize, seq: u64) -> Result<RawRecord<'_>, CorruptKind> {
    let payload_at = pos
        .checked_add(RECORD_HEADER)
        .filter(|&at| at <= buf.len())
        .ok_or(CorruptKind::BadLength(0))?;
    let len = u32_at(buf, pos);
    let crc = u32_at(buf, pos + 4);
    let end = payload_at
        .checked_add(len as usize)
        .filter(|&end| len != 0 && len as usize <= MAX_RECORD && end <= buf.len())
        .ok_or(CorruptKind::BadLength(len))?;
    let payload = &buf[payload_at..end];
    if record_crc(seq, len, payload) != crc {
        return Err(CorruptKind::Checksum);
    }
    // `end` is within the buffer, so rounding it up to the alignment cannot overflow.
    let padded_len = padded(len as usize);
    let pad_end = pos + padded_len;
    if pad_end > buf.len() {
        return Err(CorruptKind::BadLength(len));
    }
    if buf[end..pad_end].iter().any(|&b| b != 0) {
        return Err(CorruptKind::Padding);
    }
    Ok(RawRecord {
        rtype: payload[0],
        body: &payload[1..],
        len: RECORD_HEADER as u32 + len,
        padded_len,
    })
}

/// Whether the 8-aligned position `pos` holds a valid commit record; returns its group
/// start. Used to look past a bad record for durable data behind it.
pub(crate) fn commit_at(buf: &[u8], pos: usize, seq: u64) -> Option<u64> {
    if pos.checked_add(padded(COMMIT_LEN as usize))? > buf.len() || u32_at(buf, pos) != COMMIT_LEN {
        return None;
    }
    if buf[pos + RECORD_HEADER] != rtype::COMMIT {
        return None;
    }
    let rec = parse_record(buf, pos, seq).ok()?;
    Some(decode_commit(rec.body).ok()?.0)
}

/// A reference from the log to a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapRef {
    /// The snapshot file's generation (its file name).
    pub generation: u64,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    /// Length of the state machine data.
    pub data_len: u64,
    /// CRC-32C of the metadata and data, as in the file's trailer.
    pub data_crc: u32,
}

/// The state a segment starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The hard state.
    pub hard_state: HardState,
    /// The stored snapshot.
    pub snapshot: Option<SnapRef>,
}

fn encode_serde<T: Serialize>(buf: &mut Vec<u8>, value: &T) {
    bincode::serde::encode_into_std_write(value, buf, BINCODE).expect("encoding into memory cannot fail");
}

/// Decodes a serde record body that must fill `body` exactly.
///
/// bincode reserves room for a byte array or string as soon as it reads the array's
/// length, before it reads the bytes. So every decode gets a byte limit of at least eight
/// times the body's length (the standard configuration counts up to eight bytes for a
/// one-byte integer), rounded up to a power of four: a length inside a body that claims
/// more than that is refused, and no body makes the decoder reserve more than 32 times its
/// own size (plus 16 KiB).
pub(crate) fn decode_serde<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CorruptKind> {
    fn exact<T>(
        result: Result<(T, usize), bincode::error::DecodeError>,
        len: usize,
    ) -> Result<T, CorruptKind> {
        match result {
            Ok((value, used)) if used == len => Ok(value),
            _ => Err(CorruptKind::Decode),
        }
    }
    macro_rules! tiers {
        ($($bits:literal)*) => {{
            let need = body.len().saturating_mul(8);
            $(
                if need <= 1usize << $bits {
                    let config = BINCODE.with_limit::<{ 1usize << $bits }>();
                    return exact(bincode::serde::decode_from_slice::<T, _>(body, config), body.len());
                }
            )*
            Err(CorruptKind::Decode)
        }};
    }
    // A record body is below 4 GiB, so the last tier covers every body on 64-bit targets.
    #[cfg(target_pointer_width = "64")]
    {
        tiers!(12 14 16 18 20 22 24 26 28 30 32 34 36)
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        tiers!(12 14 16 18 20 22 24 26 28 30 31)
    }
}

/// Decodes a checkpoint body and checks its numbers' range.
pub(crate) fn decode_checkpoint(body: &[u8]) -> Result<Checkpoint, CorruptKind> {
    let cp: Checkpoint = decode_serde(body)?;
    check_hard_state(&cp.hard_state)?;
    if let Some(snap) = &cp.snapshot {
        check_snap_ref(snap)?;
    }
    Ok(cp)
}

/// Decodes a hard state body and checks its numbers' range.
pub(crate) fn decode_hard_state(body: &[u8]) -> Result<HardState, CorruptKind> {
    let hs = decode_serde(body)?;
    check_hard_state(&hs)?;
    Ok(hs)
}

/// Decodes a snapshot reference body and checks its numbers' range.
pub(crate) fn decode_snap_ref(body: &[u8]) -> Result<SnapRef, CorruptKind> {
    let snap = decode_serde(body)?;
    check_snap_ref(&snap)?;
    Ok(snap)
}

fn check_hard_state(hs: &HardState) -> Result<(), CorruptKind> {
    check_range("hard state term", hs.term)?;
    check_range("hard state commit", hs.commit)?;
    Ok(())
}

/// Checks the numbers of a snapshot's metadata (from the log or from a snapshot file).
pub(crate) fn check_snapshot_meta(meta: &SnapshotMeta) -> Result<(), CorruptKind> {
    check_range("snapshot index", meta.index)?;
    check_range("snapshot term", meta.term)?;
    Ok(())
}

fn check_snap_ref(snap: &SnapRef) -> Result<(), CorruptKind> {
    check_range("snapshot generation", snap.generation)?;
    check_range("snapshot data length", snap.data_len)?;
    check_snapshot_meta(&snap.meta)
}

pub(crate) fn encode_checkpoint(buf: &mut Vec<u8>, cp: &Checkpoint) {
    buf.push(rtype::CHECKPOINT);
    encode_serde(buf, cp);
}

pub(crate) fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    buf.push(rtype::HARD_STATE);
    encode_serde(buf, hs);
}

pub(crate) fn encode_snap_ref(buf: &mut Vec<u8>, rtype: u8, snap: &SnapRef) {
    buf.push(rtype);
    encode_serde(buf, snap);
}

pub(crate) fn encode_commit(buf: &mut Vec<u8>, group_start: u64, batch: u64) {
    buf.push(rtype::COMMIT);
    buf.extend_from_slice(&group_start.to_le_bytes());
    buf.extend_from_slice(&batch.to_le_bytes());
}

pub(crate) fn encode_group(buf: &mut Vec<u8>, group: u64) {
    buf.push(rtype::GROUP);
    buf.extend_from_slice(&group.to_le_bytes());
}

/// Decodes a group record's body (any group id is valid).
pub(crate) fn decode_group(body: &[u8]) -> Result<u64, CorruptKind> {
    if body.len() != GROUP_LEN - 1 {
        return Err(CorruptKind::Decode);
    }
    Ok(u64_at(body, 0))
}

pub(crate) fn encode_group_removed(buf: &mut Vec<u8>) {
    buf.push(rtype::GROUP_REMOVED);
}

/// Decodes a commit body into (group start, batch number).
pub(crate) fn decode_commit(body: &[u8]) -> Result<(u64, u64), CorruptKind> {
    if body.len() != 16 {
        return Err(CorruptKind::Decode);
    }
    Ok((u64_at(body, 0), check_range("batch number", u64_at(body, 8))?))
}

const KIND_EMPTY: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
const KIND_INTERNAL: u8 = 3;

/// An upper bound of the on-disk size of an entry record; exact for all but membership
/// entries, whose configuration is bounded by [`Entry::size`] times two.
pub(crate) fn entry_record_bound(entry: &Entry) -> usize {
    let body = match &entry.payload {
        EntryPayload::Empty => 0,
        EntryPayload::Normal(data) | EntryPayload::Internal(data) => data.len(),
        EntryPayload::Membership(_) => 2 * entry.size() as usize + 64,
    };
    padded(1 + ENTRY_FIXED + body)
}

pub(crate) fn encode_entry(buf: &mut Vec<u8>, entry: &Entry) {
    buf.push(rtype::ENTRY);
    buf.extend_from_slice(&entry.term.to_le_bytes());
    buf.extend_from_slice(&entry.index.to_le_bytes());
    buf.extend_from_slice(&entry.size().to_le_bytes());
    match &entry.payload {
        EntryPayload::Empty => buf.push(KIND_EMPTY),
        EntryPayload::Normal(data) => {
            buf.push(KIND_NORMAL);
            buf.extend_from_slice(data);
        }
        EntryPayload::Membership(cs) => {
            buf.push(KIND_MEMBERSHIP);
            encode_serde(buf, cs);
        }
        EntryPayload::Internal(data) => {
            buf.push(KIND_INTERNAL);
            buf.extend_from_slice(data);
        }
    }
}

/// The fixed part of an entry body: term, index and [`Entry::size`].
pub(crate) fn decode_entry_meta(body: &[u8]) -> Result<(Term, Index, u64), CorruptKind> {
    if body.len() < ENTRY_FIXED || body[24] > KIND_INTERNAL {
        return Err(CorruptKind::Decode);
    }
    let term = check_range("entry term", u64_at(body, 0))?;
    let index = check_range("entry index", u64_at(body, 8))?;
    Ok((term, index, u64_at(body, 16)))
}

/// Checks a whole entry body without building the entry (recovery reads every entry
/// this way, so that an entry it accepts can be read back): the fixed part, and the
/// payload an empty or membership entry must have. Returns the fixed part.
pub(crate) fn check_entry(body: &[u8]) -> Result<(Term, Index, u64), CorruptKind> {
    let meta = decode_entry_meta(body)?;
    match body[24] {
        KIND_EMPTY if body.len() != ENTRY_FIXED => return Err(CorruptKind::Decode),
        KIND_MEMBERSHIP => {
            decode_serde::<ConfState>(&body[ENTRY_FIXED..])?;
        }
        _ => {}
    }
    Ok(meta)
}

/// Decodes an entry body held in `record` (the whole record, frame included, so that a
/// `Normal` payload can share its buffer); `body_at` is where the body starts in it.
pub(crate) fn decode_entry(record: &Bytes, body_at: usize) -> Result<Entry, CorruptKind> {
    let body = &record[body_at..];
    let (term, index, _) = decode_entry_meta(body)?;
    let data_at = body_at + ENTRY_FIXED;
    let payload = match body[24] {
        KIND_EMPTY if record.len() == data_at => EntryPayload::Empty,
        KIND_NORMAL => EntryPayload::Normal(record.slice(data_at..)),
        KIND_INTERNAL => EntryPayload::Internal(record.slice(data_at..)),
        KIND_MEMBERSHIP => EntryPayload::Membership(Box::new(decode_serde::<ConfState>(&record[data_at..])?)),
        _ => return Err(CorruptKind::Decode),
    };
    Ok(Entry { term, index, payload })
}

/// File name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// File name of snapshot generation `generation`.
pub(crate) fn snapshot_name(generation: u64) -> String {
    format!("snap-{generation:016x}.snap")
}

/// Temporary file name of a snapshot being written.
pub(crate) fn snapshot_tmp_name(generation: u64) -> String {
    format!("snap-{generation:016x}.tmp")
}

/// Temporary file name of a segment being prepared.
pub(crate) fn prep_tmp_name(seq: u64) -> String {
    format!("prep-{seq:016x}.tmp")
}

/// Temporary file name of an obsolete segment kept for reuse.
pub(crate) fn free_tmp_name(seq: u64) -> String {
    format!("free-{seq:016x}.tmp")
}

fn parse_hex_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_hex_name(name, "wal-", ".log")
}

pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_hex_name(name, "snap-", ".snap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            seq: 7,
            prev_seq: 6,
            prev_end: 1234,
        };
        let mut bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(SegmentHeader::decode(&[0u8; 64]), Err(HeaderError::Zero));
        bytes[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bytes), Err(HeaderError::Checksum));
        // A newer version is refused as such, whatever its checksum says.
        let newer = FORMAT_VERSION + 1;
        let mut vn = h.encode();
        vn[8..12].copy_from_slice(&newer.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&vn), Err(HeaderError::Version(newer)));
        let with_version = |v: u32| {
            let mut b = h.encode();
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&b[0..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // Every version from the oldest readable one on reads; version 0 never existed.
        for v in OLDEST_READABLE_VERSION..=FORMAT_VERSION {
            assert_eq!(SegmentHeader::decode(&with_version(v)), Ok(h), "version {v}");
        }
        assert_eq!(
            SegmentHeader::decode(&with_version(0)),
            Err(HeaderError::Version(0))
        );
        let mut v0 = h.encode();
        v0[8..12].fill(0);
        assert_eq!(SegmentHeader::decode(&v0), Err(HeaderError::Checksum));
    }

    #[test]
    fn record_round_trip_is_seeded_by_segment() {
        let mut buf = Vec::new();
        let entry = Entry::new(3, 9, EntryPayload::Normal(Bytes::from_static(b"hello")));
        let (start, len) = frame(&mut buf, 5, |b| encode_entry(b, &entry));
        assert_eq!(start, 0);
        assert_eq!(buf.len() % ALIGN, 0);
        let rec = parse_record(&buf, 0, 5).unwrap();
        assert_eq!(rec.rtype, rtype::ENTRY);
        assert_eq!(rec.len, len);
        let bytes = Bytes::copy_from_slice(&buf[..len as usize]);
        assert_eq!(decode_entry(&bytes, RECORD_HEADER + 1).unwrap(), entry);
        assert_eq!(parse_record(&buf, 0, 6).unwrap_err(), CorruptKind::Checksum);
        let mut flipped = buf.clone();
        flipped[12] ^= 0x10;
        assert_eq!(parse_record(&flipped, 0, 5).unwrap_err(), CorruptKind::Checksum);
    }

    #[test]
    fn commit_records_are_found_by_resync() {
        let mut buf = Vec::new();
        frame(&mut buf, 1, |b| encode_hard_state(b, &HardState::default()));
        let at = buf.len();
        frame(&mut buf, 1, |b| encode_commit(b, 64, 3));
        assert_eq!(commit_at(&buf, at, 1), Some(64));
        assert_eq!(commit_at(&buf, 0, 1), None);
        assert_eq!(commit_at(&buf, at, 2), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_snapshot_name(&snapshot_name(7)), Some(7));
        assert_eq!(parse_segment_name("wal-1.log"), None);
    }
}
