//! Admin requests must carry the cluster's admin token: `Authorization: Bearer <token>`.
//!
//! A middleware in front of the `/admin/...` routes, so that no handler can forget it.
//! It runs on every node, the one the client asked included: a follower checks the token
//! before it passes the request on to the leader (with its own copy of the same token,
//! see `proxy.rs`), and the leader checks it again.
//!
//! A refused request gets `401` with a JSON error that says what was wrong (no header, not
//! a bearer token, the wrong token) but never anything about the token itself. Refusals
//! are logged, at most one line every ten seconds with the count of the others
//! (`log_limit.rs`), so that a client trying tokens in a loop cannot flood the log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use raft_runtime::StateMachine;

use super::{ApiError, AppState};

/// Passes the request on if it carries the admin token; answers `401` otherwise.
pub(super) async fn require_admin_token<SM: StateMachine>(
    State(state): State<AppState<SM>>,
    request: Request,
    next: Next,
) -> Response {
    let refusal = match request.headers().get(header::AUTHORIZATION) {
        None => format!(
            "admin requests need the cluster's admin token in an `Authorization: Bearer <token>` header (the token is admin.token in the directory `{} certs` wrote)",
            state.service
        ),
        Some(value) => match bearer_token(value.as_bytes()) {
            None => "the Authorization header is not a bearer token; send `Authorization: Bearer <token>`".into(),
            Some(presented) if state.admin_token.matches(presented) => {
                return next.run(request).await;
            }
            Some(_) => {
                "wrong admin token: it is not this cluster's (compare with admin.token in the certificates directory)".into()
            }
        },
    };
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "?".into());
    if let Some(suppressed) = state.auth_log.allow() {
        tracing::warn!(
            path = %request.uri().path(),
            %from,
            suppressed,
            "refused an admin request: {refusal}"
        );
    }
    ApiError::Unauthorized(refusal).into_response()
}

/// The token in an `Authorization` value of the bearer scheme (whose name, RFC 9110
/// says, is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
    }
}
