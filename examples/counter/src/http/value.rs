//! `GET /value`: a linearizable read.

use axum::Json;
use axum::extract::State;

use super::{ApiError, AppState};
use crate::api::ValueResponse;
use crate::state_machine::Counter;

pub(super) async fn handle(State(state): State<AppState>) -> Result<Json<ValueResponse>, ApiError> {
    // ReadIndex: the runtime has the leader confirm it still leads, waits until this node
    // has applied everything committed before the read began, then runs the closure on
    // this node's own copy of the counter. A follower answers without stale reads, and
    // the read never enters the log.
    let value = state.raft.read(Counter::value).await?;
    Ok(Json(ValueResponse { value }))
}
