//! `GET /status`: what this node knows, straight from the runtime's metrics.

use axum::Json;
use axum::extract::State;
use raft_runtime::Metrics;
use raft_runtime::raft_core::Role;

use super::AppState;
use crate::api::{HTTP_ATTRIBUTE, MemberStatus, StatusResponse};

pub(super) async fn handle(State(state): State<AppState>) -> Json<StatusResponse> {
    Json(status_of(&state.raft.metrics().borrow()))
}

/// The status a node reports, from its metrics.
pub(super) fn status_of(m: &Metrics) -> StatusResponse {
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
