//! Snapshot data as a stream of chunks: what a state machine hands over when it takes a
//! snapshot, and what it reads when it restores one.
//!
//! The runtime reads a snapshot a chunk at a time while the state machine goes on applying,
//! so a state machine never has to serialize its whole state into one buffer, and a large
//! state is never required to fit in memory to be moved. A small state kept in memory can
//! still hand over one buffer ([`SnapshotStream::from_bytes`]) and read one back
//! ([`SnapshotStream::into_bytes`]).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// The size of the chunks [`SnapshotStream::from_reader`] reads.
pub const READ_CHUNK: usize = 64 << 10;

/// A snapshot's data: a stream of chunks, read in order, that ends with the last one. An
/// error ends it too: the snapshot is then incomplete and must not be used.
pub struct SnapshotStream {
    inner: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>,
}

impl SnapshotStream {
    /// A snapshot held in one buffer.
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        SnapshotStream::new(futures::stream::iter((!data.is_empty()).then_some(Ok(data))))
    }

    /// A snapshot produced by any stream of chunks (a read transaction walked a page at a
    /// time, a checkpoint file...). Empty chunks are allowed and skipped by readers.
    pub fn new(stream: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Self {
        SnapshotStream {
            inner: Box::pin(stream),
        }
    }

    /// A snapshot read from `reader` (a file, for example) in chunks of [`READ_CHUNK`].
    pub fn from_reader(reader: impl AsyncRead + Send + 'static) -> Self {
        SnapshotStream::new(ReaderStream::with_capacity(reader, READ_CHUNK))
    }

    /// The next non-empty chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        while let Some(chunk) = self.inner.next().await {
            let chunk = chunk?;
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }

    /// The whole snapshot in one buffer, refusing one larger than `limit` bytes (with
    /// [`io::ErrorKind::InvalidData`]) before it holds more than that.
    pub async fn into_bytes(mut self, limit: u64) -> io::Result<Bytes> {
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        let mut total = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            total = total.saturating_add(chunk.len() as u64);
            if total > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the snapshot is larger than {limit} bytes"),
                ));
            }
            // A snapshot of one chunk is passed on without a copy.
            if total == chunk.len() as u64 {
                first = Some(chunk);
                continue;
            }
            if let Some(first) = first.take() {
                buf.extend_from_slice(&first);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    }

    /// The snapshot as a reader, for formats read with [`tokio::io`].
    pub fn into_reader(self) -> impl AsyncRead + Send + Unpin + 'static {
        StreamReader::new(self)
    }
}

impl Stream for SnapshotStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> SnapshotStream {
        SnapshotStream::new(futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn chunks_are_read_in_order_and_empty_ones_skipped() {
        let mut s = chunks(&[b"ab", b"", b"c"]);
        assert_eq!(s.next_chunk().await.unwrap().unwrap(), "ab");
        assert_eq!(s.next_chunk().await.unwrap().unwrap(), "c");
        assert!(s.next_chunk().await.unwrap().is_none());
        let mut empty = SnapshotStream::from_bytes(Vec::new());
        assert!(empty.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn into_bytes_joins_the_chunks_up_to_its_limit() {
        assert_eq!(
            chunks(&[b"ab", b"cd", b"e"]).into_bytes(5).await.unwrap(),
            "abcde"
        );
        assert_eq!(chunks(&[b"abc"]).into_bytes(3).await.unwrap(), "abc");
        assert_eq!(chunks(&[]).into_bytes(0).await.unwrap(), "");
        let err = chunks(&[b"ab", b"cd"]).into_bytes(3).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than 3 bytes"), "{err}");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_as_an_error() {
        let s = SnapshotStream::new(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(io::Error::other("disk gone")),
        ]));
        let err = s.into_bytes(100).await.unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
    }

    #[tokio::test]
    async fn readers_in_and_out() {
        let data: Vec<u8> = (0..(3 * READ_CHUNK + 5)).map(|i| i as u8).collect();
        let mut s = SnapshotStream::from_reader(std::io::Cursor::new(data.clone()));
        let first = s.next_chunk().await.unwrap().unwrap();
        assert!(first.len() <= READ_CHUNK);
        let mut out = first.to_vec();
        s.into_reader().read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
    }
}
