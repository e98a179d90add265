//! `POST /admin/add`, `/admin/remove` and `/admin/transfer`: membership and leadership.
//!
//! The runtime takes these only on the leader. Any node accepts them anyway: a node that
//! does not lead passes the request, byte for byte, to the leader's HTTP API ([`proxy`]).
//! Only requests with the admin token get here (`auth.rs` checks it first).

use std::future::Future;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use raft_runtime::raft_core::Role;
use raft_runtime::{AdminError, MemberInfo, Raft, StateMachine};

use super::status::current_status;
use super::{ApiError, AppState, body, parse_body, proxy};
use crate::api::{AddRequest, HTTP_ATTRIBUTE, RemoveRequest, TransferRequest};

pub(super) async fn add<SM: StateMachine>(State(state): State<AppState<SM>>, request: Request) -> Response {
    let (head, body) = match body::read(request, state.limits.max_body, state.limits.body_timeout).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let headers = head.headers;
    let request: AddRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut info = MemberInfo::new(request.raft_addr);
    if let Some(http) = request.http_addr {
        info = info.with(HTTP_ATTRIBUTE, http);
    }
    // `add_voter` adds a learner, waits for it to catch up, then promotes it: a new
    // voter that still had the whole log to fetch would weaken the quorum meanwhile.
    on_leader(&state, &headers, "/admin/add", body, move |raft| async move {
        raft.add_voter(request.id, info).await
    })
    .await
}

pub(super) async fn remove<SM: StateMachine>(
    State(state): State<AppState<SM>>,
    request: Request,
) -> Response {
    let (head, body) = match body::read(request, state.limits.max_body, state.limits.body_timeout).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let headers = head.headers;
    let request: RemoveRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    on_leader(&state, &headers, "/admin/remove", body, move |raft| async move {
        raft.remove_node(request.id).await
    })
    .await
}

pub(super) async fn transfer<SM: StateMachine>(
    State(state): State<AppState<SM>>,
    request: Request,
) -> Response {
    let (head, body) = match body::read(request, state.limits.max_body, state.limits.body_timeout).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let headers = head.headers;
    let request: TransferRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    on_leader(
        &state,
        &headers,
        "/admin/transfer",
        body,
        move |raft| async move {
            if raft.id() == request.to {
                // Already where it was asked to be: done, not an error.
                return Ok(());
            }
            raft.transfer_leader(request.to).await
        },
    )
    .await
}

/// Runs `change` if this node leads, and passes the request on to the leader otherwise
/// (also when leadership moved away while the change was being tried). Answers the
/// leader's status after the change.
async fn on_leader<SM, F, Fut>(
    state: &AppState<SM>,
    headers: &HeaderMap,
    path: &str,
    body: Bytes,
    change: F,
) -> Response
where
    SM: StateMachine,
    F: FnOnce(Raft<SM>) -> Fut,
    Fut: Future<Output = Result<(), AdminError>>,
{
    if state.raft.metrics().borrow().role != Role::Leader {
        return pass_on(state, headers, path, body).await;
    }
    match change(state.raft.clone()).await {
        Ok(()) => Json(current_status(&state.raft).await).into_response(),
        Err(AdminError::NotLeader { .. }) => pass_on(state, headers, path, body).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn pass_on<SM: StateMachine>(
    state: &AppState<SM>,
    headers: &HeaderMap,
    path: &str,
    body: Bytes,
) -> Response {
    if headers.contains_key(&state.forwarded) {
        // Another node took this one for the leader. Forwarding again could bounce the
        // request between two nodes with different ideas of the leader; the client
        // retries instead, by which time the cluster agrees again.
        return ApiError::NotApplied(format!(
            "node {} was sent this request as the leader, but does not lead",
            state.raft.id()
        ))
        .into_response();
    }
    proxy::to_leader(state, path, body).await
}
