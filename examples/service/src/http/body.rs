//! Reading a request body: never more than the route accepts, never for longer than the
//! body timeout.
//!
//! Every body the shared routes take is a few dozen bytes of JSON, so they accept at most
//! `HttpLimits::max_body` (4 KiB by default), as should a service's routes unless they
//! need more (the `kv` service's values); without a limit, each request could make the
//! node hold whatever a client sends.
//!
//! The header-read timeout (see `server.rs`) does not cover the body, so the body has its
//! own: a client that sends headers and then trickles the body, or stops, is answered
//! `408` and its connection closed instead of being held open.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::ApiError;

/// Reads the body of `request` whole: at most `limit` bytes (`413` otherwise), within
/// `timeout` (`408` otherwise). Answers the request's head and its body.
pub async fn read(request: Request, limit: usize, timeout: Duration) -> Result<(Parts, Bytes), ApiError> {
    let (head, body) = request.into_parts();
    let too_large = || {
        ApiError::TooLarge(format!(
            "the request body is larger than the {limit} bytes {} accepts",
            head.uri.path()
        ))
    };
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // A chunked body declares nothing: count as it arrives, and stop at the limit.
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => Ok((head, collected.to_bytes())),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("cannot read the request body: {e}"))),
        Err(_) => Err(ApiError::BodyTimeout(format!(
            "the request body did not arrive within {timeout:?}"
        ))),
    }
}
