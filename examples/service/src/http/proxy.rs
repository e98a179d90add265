//! Passing an admin request on to the leader's HTTP API.
//!
//! The Raft transport knows where the leader's *Raft* endpoint is; its HTTP address is an
//! attribute that each node registers with the membership ([`HTTP_ATTRIBUTE`]), replicated
//! like the rest of the configuration, so every node can look it up.
//!
//! The leader checks the admin token too, so the request goes on with it: this node's own
//! copy, which is the one the client's matched (every node of a cluster loads the same).

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use raft_runtime::StateMachine;

use super::{ApiError, AppState};
use crate::api::HTTP_ATTRIBUTE;
use crate::client::root_cause;

/// Sends `body` to `path` on the leader and relays its answer unchanged.
pub(super) async fn to_leader<SM: StateMachine>(state: &AppState<SM>, path: &str, body: Bytes) -> Response {
    let (leader, address) = {
        let m = state.raft.metrics().borrow().clone();
        let Some(leader) = m.leader else {
            return ApiError::NotApplied("no leader is known right now; retry shortly".into())
                .into_response();
        };
        let address = m
            .members
            .get(&leader)
            .and_then(|member| member.attributes.get(HTTP_ATTRIBUTE).cloned());
        (leader, address)
    };
    let Some(address) = address else {
        return ApiError::NotApplied(format!(
            "the leader, node {leader}, registered no HTTP address; send the request to it directly"
        ))
        .into_response();
    };
    let url = format!("http://{address}{path}");
    let sent = state
        .leader_client
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(&state.forwarded, state.raft.id().to_string())
        .header(header::AUTHORIZATION, state.admin_token.authorization())
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        // Nothing reached the leader: nothing happened.
        Err(e) if e.is_connect() => {
            return ApiError::NotApplied(format!(
                "cannot reach the leader, node {leader}, at {address}: {}",
                root_cause(&e)
            ))
            .into_response();
        }
        // The request may have reached it; the answer did not come back.
        Err(e) => {
            return ApiError::Unknown(format!(
                "no answer from the leader, node {leader}, at {address}: {}",
                root_cause(&e)
            ))
            .into_response();
        }
    };
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        // The client's token was this node's; the leader holds another one.
        return ApiError::Unauthorized(format!(
            "the leader, node {leader}, refused the admin token this node passed the request on with: every node must load the same admin token (admin.token)"
        ))
        .into_response();
    }
    match response.bytes().await {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            ApiError::Unknown(format!("the leader's answer was cut off: {}", root_cause(&e))).into_response()
        }
    }
}
