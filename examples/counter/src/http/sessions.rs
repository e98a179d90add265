//! `POST /sessions`: open a client session, in which increments are counted at most once
//! however often they are sent.

use axum::Json;
use axum::extract::{Request, State};
use serde::de::IgnoredAny;

use raft_service::http::{parse_body, read_body};

use super::{ApiError, AppState};
use crate::api::SessionResponse;

pub(super) async fn handle(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<SessionResponse>, ApiError> {
    // No body is needed; one that is there is read within the limits, and must be JSON.
    let (_, body) = read_body(request, state.limits.max_body, state.limits.body_timeout).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse_body::<IgnoredAny>(&body)?;
    }
    // Opening goes through the log (the session's id is the index of the entry that opens
    // it), retried by the runtime until it is answered or the deadline passes. An opening
    // whose answer was lost leaves an unused session, which expires with the timeout.
    let session = state.raft.open_session(state.propose_timeout).await?;
    Ok(Json(SessionResponse {
        session: session.id(),
    }))
}
