//! Reading the codec's units (greetings and frames) from a QUIC receive stream.

use quinn::{ReadError, RecvStream};

use crate::codec::{Frame, FrameDecoder, FrameError, GREETING_LEN, decode_greeting};

/// Bytes asked of quinn per read.
const READ_CHUNK: usize = 256 << 10;

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFailure {
    /// The peer sent bytes that break the protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    #[error("{0}")]
    Stream(String),
}

/// A read error in words, with the cause of a lost connection (quinn's own text for it
/// says only "connection lost").
pub(crate) fn read_error(e: &ReadError) -> String {
    match e {
        ReadError::ConnectionLost(e) => format!("connection lost: {e}"),
        other => other.to_string(),
    }
}

/// Reads the next frame's payload; `Ok(None)` when the peer finished the stream cleanly
/// between frames.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<Frame>, ReadFailure> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(Some(frame));
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => decoder.extend(chunk.bytes),
            Ok(None) if decoder.is_empty() => return Ok(None),
            Ok(None) => return Err(FrameError::Truncated.into()),
            Err(e) => return Err(ReadFailure::Stream(read_error(&e))),
        }
    }
}

/// Reads a message-stream greeting and returns the peer's incarnation.
pub(crate) async fn read_greeting(recv: &mut RecvStream) -> Result<u64, ReadFailure> {
    let mut greeting = [0u8; GREETING_LEN];
    recv.read_exact(&mut greeting)
        .await
        .map_err(|e| ReadFailure::Stream(format!("no greeting: {e}")))?;
    Ok(decode_greeting(&greeting)?)
}
