//! `GET /status`: what this node knows, asked of the runtime at the time of the request.

use axum::Json;
use axum::extract::State;
use raft_runtime::raft_core::Role;
use raft_runtime::{Metrics, Raft, StateMachine};

use super::AppState;
use crate::api::{HTTP_ATTRIBUTE, MemberStatus, StatusResponse};

pub(super) async fn handle<SM: StateMachine>(State(state): State<AppState<SM>>) -> Json<StatusResponse> {
    Json(current_status(&state.raft).await)
}

/// The node's status as of now. The metrics watch (`Raft::metrics`) refreshes the
/// commit and applied indexes only once per tick, so right after a write it can show
/// the index before it; `current_metrics` asks the node itself. A node that cannot answer
/// (stopped, or its mailbox full) gets its last published figures, marked as such in
/// [`StatusResponse::stale`].
pub(super) async fn current_status<SM: StateMachine>(raft: &Raft<SM>) -> StatusResponse {
    match raft.current_metrics().await {
        Ok(m) => status_of(&m, None),
        Err(e) => {
            let published = raft.metrics().borrow().clone();
            status_of(&published, Some(format!("the node did not answer ({e})")))
        }
    }
}

/// The status a node reports, from its metrics; `stale` says why they are not current.
fn status_of(m: &Metrics, stale: Option<String>) -> StatusResponse {
    StatusResponse {
        id: m.id,
        role: role_name(m.role).to_string(),
        term: m.term,
        leader: m.leader,
        commit: m.commit,
        applied: m.applied,
        last_log_index: m.last_log_index,
        snapshot_index: m.snapshot_index,
        joint: m.joint,
        members: m
            .members
            .iter()
            .map(|(&id, member)| MemberStatus {
                id,
                voter: member.voter,
                raft_addr: member.address.clone(),
                http_addr: member.attributes.get(HTTP_ATTRIBUTE).cloned(),
            })
            .collect(),
        stale,
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}
