//! `POST /incr`: replicate an increment and answer the value right after it.

use axum::Json;
use axum::extract::{Request, State};

use raft_service::http::{parse_body, read_body};

use super::{ApiError, AppState};
use crate::api::{IncrRequest, ValueResponse};
use crate::state_machine::Command;

pub(super) async fn handle(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<ValueResponse>, ApiError> {
    let (_, body) = read_body(request, state.limits.max_body, state.limits.body_timeout).await?;
    // `curl -X POST host/incr` with no body means "add one".
    let request: IncrRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IncrRequest::default()
    } else {
        parse_body(&body)?
    };
    // On a follower the runtime forwards the command to the leader and relays the answer
    // (`Config::forward_proposals`), so this is the same call on every node.
    let value = state.raft.propose(Command::Increment { by: request.by }).await?;
    Ok(Json(ValueResponse { value }))
}
