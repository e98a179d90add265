//! Snapshot files: written to a temporary file, fsynced, renamed into place and the
//! directory fsynced, then referred to from the log.
//!
//! ```text
//! magic "RAFTSNAP" | version u32 | meta_len u32 | data_len u64 | crc32c(bytes 0..24) u32 | 0 u32
//! meta (bincode SnapshotMeta, meta_len bytes) | data (data_len bytes) | crc32c(meta | data) u32
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_core::SnapshotMeta;
use raft_runtime::{READ_CHUNK, Snapshot, SnapshotStream};

use crate::error::WalError;
use crate::fault::{Io, open_ro};
use crate::format::{
    BINCODE, FORMAT_VERSION, MAX_VALUE, OLDEST_READABLE_VERSION, SnapRef, decode_serde, snapshot_name,
    snapshot_tmp_name, u32_at, u64_at,
};

const SNAP_MAGIC: [u8; 8] = *b"RAFTSNAP";
const SNAP_HEADER: usize = 32;

fn encode_meta(meta: &SnapshotMeta) -> Vec<u8> {
    bincode::serde::encode_to_vec(meta, BINCODE).expect("encoding into memory cannot fail")
}

fn header(meta_len: usize, data_len: u64) -> [u8; SNAP_HEADER] {
    let mut h = [0u8; SNAP_HEADER];
    h[0..8].copy_from_slice(&SNAP_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(meta_len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&data_len.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The expected size of the file a reference points to (`None` if it overflows: no file
/// has that size).
fn expected_len(snap: &SnapRef) -> Option<u64> {
    file_len(encode_meta(&snap.meta).len() as u64, snap.data_len)
}

/// Size of a snapshot file with `meta_len` bytes of metadata and `data_len` bytes of data.
fn file_len(meta_len: u64, data_len: u64) -> Option<u64> {
    (SNAP_HEADER as u64 + 4)
        .checked_add(meta_len)?
        .checked_add(data_len)
}

/// Writes `snapshot` as generation `generation`, durably, and returns the log's reference to it.
pub(crate) fn write_snapshot_file(
    io: &Io,
    dir: &Path,
    dir_file: &File,
    generation: u64,
    snapshot: &Snapshot,
) -> Result<SnapRef, WalError> {
    let mut data = Some(snapshot.data.clone());
    stream_snapshot_file(io, dir, dir_file, generation, &snapshot.meta, || Ok(data.take()))
}

/// Writes the snapshot of `meta` as generation `generation`, durably, from the chunks
/// `next` gives until it gives `None`, and returns the log's reference to it. Only one
/// chunk at a time is held. If `next` fails, nothing is left behind.
pub(crate) fn stream_snapshot_file(
    io: &Io,
    dir: &Path,
    dir_file: &File,
    generation: u64,
    meta: &SnapshotMeta,
    next: impl FnMut() -> Result<Option<Bytes>, WalError>,
) -> Result<SnapRef, WalError> {
    // Recovery refuses a log that names a generation beyond MAX_VALUE: never write one.
    if generation > MAX_VALUE {
        return Err(WalError::Exhausted {
            what: "snapshot generations",
        });
    }
    let tmp = dir.join(snapshot_tmp_name(generation));
    let result = write_tmp_and_rename(io, dir, dir_file, generation, meta, next, &tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_tmp_and_rename(
    io: &Io,
    dir: &Path,
    dir_file: &File,
    generation: u64,
    meta: &SnapshotMeta,
    mut next: impl FnMut() -> Result<Option<Bytes>, WalError>,
    tmp: &Path,
) -> Result<SnapRef, WalError> {
    let meta_bytes = encode_meta(meta);
    let data_at = (SNAP_HEADER + meta_bytes.len()) as u64;
    let file = io.create(tmp)?;
    io.sync_dir(dir_file, dir)?;
    // The data's length is known only at its end: the header is written last.
    io.write_all_at(&file, tmp, &meta_bytes, SNAP_HEADER as u64)?;
    let mut crc = crc32c::crc32c(&meta_bytes);
    let mut data_len = 0u64;
    while let Some(chunk) = next()? {
        io.write_all_at(&file, tmp, &chunk, data_at + data_len)?;
        crc = crc32c::crc32c_append(crc, &chunk);
        data_len += chunk.len() as u64;
    }
    io.write_all_at(&file, tmp, &crc.to_le_bytes(), data_at + data_len)?;
    io.write_all_at(&file, tmp, &header(meta_bytes.len(), data_len), 0)?;
    io.sync_all(&file, tmp)?;
    let path = dir.join(snapshot_name(generation));
    io.rename(tmp, &path)?;
    io.sync_dir(dir_file, dir)?;
    Ok(SnapRef {
        generation,
        meta: meta.clone(),
        data_len,
        data_crc: crc,
    })
}

/// The header and metadata of the file of `snapshot`, and the log's reference to it. The
/// data and then the checksum follow the head in the file.
fn file_head(generation: u64, snapshot: &Snapshot) -> (Vec<u8>, SnapRef) {
    let meta = encode_meta(&snapshot.meta);
    let data_len = snapshot.data.len() as u64;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&meta), &snapshot.data);
    let mut head = Vec::with_capacity(SNAP_HEADER + meta.len());
    head.extend_from_slice(&header(meta.len(), data_len));
    head.extend_from_slice(&meta);
    let snap = SnapRef {
        generation,
        meta: snapshot.meta.clone(),
        data_len,
        data_crc: crc,
    };
    (head, snap)
}

/// The whole file of `snapshot` and the log's reference to it (for the fuzzing harness).
pub(crate) fn file_bytes(generation: u64, snapshot: &Snapshot) -> (Vec<u8>, SnapRef) {
    let (mut bytes, snap) = file_head(generation, snapshot);
    bytes.extend_from_slice(&snapshot.data);
    bytes.extend_from_slice(&snap.data_crc.to_le_bytes());
    (bytes, snap)
}

/// Cheap check used by recovery: the file exists with the size the reference implies.
pub(crate) fn check_snapshot_file(dir: &Path, snap: &SnapRef) -> bool {
    std::fs::metadata(dir.join(snapshot_name(snap.generation)))
        .is_ok_and(|m| Some(m.len()) == expected_len(snap))
}

fn bad(path: &Path, reason: &'static str) -> WalError {
    WalError::SnapshotCorrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Opens a snapshot file and checks its header against the log's reference. Returns the
/// file, its metadata bytes and where the data starts.
fn open_checked(io: &Io, path: &Path, snap: &SnapRef) -> Result<(File, Vec<u8>, u64), WalError> {
    let file = open_ro(path)?;
    let len = file.metadata().map_err(|e| WalError::io("stat", path, e))?.len();
    if Some(len) != expected_len(snap) {
        return Err(bad(path, "file size does not match the log"));
    }
    let mut head = [0u8; SNAP_HEADER];
    io.read_exact_at(&file, path, &mut head, 0)?;
    if head[0..8] != SNAP_MAGIC {
        return Err(bad(path, "bad magic"));
    }
    let version = u32_at(&head, 8);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(WalError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if crc32c::crc32c(&head[0..24]) != u32_at(&head, 24) {
        return Err(bad(path, "header checksum mismatch"));
    }
    let meta_len = u32_at(&head, 12);
    if u64_at(&head, 16) != snap.data_len || file_len(meta_len.into(), snap.data_len) != Some(len) {
        return Err(bad(path, "lengths do not match the log"));
    }
    // The metadata is no longer than the file, whose size was checked above.
    let mut meta = vec![0u8; meta_len as usize];
    io.read_exact_at(&file, path, &mut meta, SNAP_HEADER as u64)?;
    let decoded: SnapshotMeta = decode_serde(&meta).map_err(|_| bad(path, "undecodable metadata"))?;
    if decoded != snap.meta {
        return Err(bad(path, "metadata does not match the log"));
    }
    Ok((file, meta, SNAP_HEADER as u64 + u64::from(meta_len)))
}

/// Reads a whole snapshot and verifies its checksum.
pub(crate) fn read_snapshot(io: &Io, dir: &Path, snap: &SnapRef) -> Result<Snapshot, WalError> {
    let path = dir.join(snapshot_name(snap.generation));
    let (file, meta, data_at) = open_checked(io, &path, snap)?;
    // The data is shorter than the file, whose size `open_checked` matched.
    let data_len = usize::try_from(snap.data_len).map_err(|_| bad(&path, "too large to load into memory"))?;
    let mut data = vec![0u8; data_len + 4];
    io.read_exact_at(&file, &path, &mut data, data_at)?;
    let trailer = u32_at(&data, data_len);
    data.truncate(data_len);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&meta), &data);
    if crc != trailer || crc != snap.data_crc {
        return Err(bad(&path, "data checksum mismatch"));
    }
    Ok(Snapshot {
        meta: snap.meta.clone(),
        data: Bytes::from(data),
    })
}

/// The stored snapshot as a byte stream, for sending it to a peer without loading it
/// into memory. Obtained from [`FileLogStore::snapshot_reader`](crate::FileLogStore::snapshot_reader).
///
/// It reads the state machine data (not the metadata, which [`SnapshotReader::meta`]
/// gives) and verifies the file's checksum when it reaches the end: a damaged file makes
/// the last `read` fail with [`io::ErrorKind::InvalidData`]. The stream keeps the file
/// open, so it stays readable even if a newer snapshot replaces it meanwhile.
#[derive(Debug)]
pub struct SnapshotReader {
    file: File,
    generation: u64,
    path: PathBuf,
    meta: SnapshotMeta,
    data_len: u64,
    data_at: u64,
    pos: u64,
    crc: u32,
    expected_crc: u32,
    verified: bool,
}

impl SnapshotReader {
    pub(crate) fn open(io: &Io, dir: &Path, snap: &SnapRef) -> Result<SnapshotReader, WalError> {
        let path = dir.join(snapshot_name(snap.generation));
        let (file, meta, data_at) = open_checked(io, &path, snap)?;
        Ok(SnapshotReader {
            file,
            generation: snap.generation,
            path,
            meta: snap.meta.clone(),
            data_len: snap.data_len,
            data_at,
            pos: 0,
            crc: crc32c::crc32c(&meta),
            expected_crc: snap.data_crc,
            verified: false,
        })
    }

    /// The generation of the file it reads.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Total length of the state machine data.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.data_len - self.pos
    }

    /// The data as a [`SnapshotStream`], read [`READ_CHUNK`] bytes at a time on tokio's
    /// blocking threads; a checksum mismatch is its last item, an error. Must be read on a
    /// tokio runtime.
    pub fn into_stream(self) -> SnapshotStream {
        let chunks = futures::stream::try_unfold(Some(self), |reader| async move {
            let Some(mut reader) = reader else {
                return Ok(None);
            };
            let (reader, chunk) = tokio::task::spawn_blocking(move || {
                // At the end, one more read verifies the checksum.
                let mut buf = vec![0u8; (reader.remaining().clamp(1, READ_CHUNK as u64)) as usize];
                let n = reader.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, io::Error>((reader, buf))
            })
            .await
            .map_err(io::Error::other)??;
            if chunk.is_empty() {
                return Ok(None);
            }
            Ok(Some((Bytes::from(chunk), Some(reader))))
        });
        SnapshotStream::new(chunks)
    }

    fn verify_trailer(&mut self) -> io::Result<()> {
        let mut trailer = [0u8; 4];
        self.file
            .read_exact_at(&mut trailer, self.data_at + self.data_len)?;
        if u32::from_le_bytes(trailer) != self.crc || self.crc != self.expected_crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                bad(&self.path, "data checksum mismatch"),
            ));
        }
        self.verified = true;
        Ok(())
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.data_len {
            if !self.verified {
                self.verify_trailer()?;
            }
            return Ok(0);
        }
        let want = buf.len().min((self.data_len - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.data_at + self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "snapshot file ended early",
            ));
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.pos += n as u64;
        if self.pos == self.data_len {
            self.verify_trailer()?;
        }
        Ok(n)
    }
}
