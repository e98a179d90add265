//! How the runtime's errors become HTTP statuses.
//!
//! The one distinction a client needs is whether retrying is safe. The runtime's errors
//! already say it ([`ProposeError::is_definitely_not_applied`]); this file keeps that
//! answer intact on the way out: `503` when nothing happened, `504` when something may have.
//!
//! A command in a client session that the session table refuses was not applied either,
//! but retrying it as it is cannot help, so each refusal has a status of its own: `410`
//! (the session expired or never existed: open a new one), `409` (the client acknowledged
//! this command's answer already), `429` (the session holds too many unacknowledged
//! answers), `400` (sessions are off, or the record is malformed). A full session table is
//! `503`, like any other refusal that clears up by itself.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use raft_runtime::{AdminError, ProposeError, ReadError, SessionError};

use crate::api::ErrorResponse;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `400`: the request is malformed or asks for something invalid; retrying cannot help.
    #[error("{0}")]
    BadRequest(String),
    /// `401`: an admin request without the cluster's admin token (see `auth.rs`).
    #[error("{0}")]
    Unauthorized(String),
    /// `404`: no such route.
    #[error("no such route")]
    NotFound,
    /// `404`: what the request names does not exist (the `kv` service's absent key).
    #[error("{0}")]
    Missing(String),
    /// `408`: the body did not arrive within the body timeout (see `body.rs`).
    #[error("{0}")]
    BodyTimeout(String),
    /// `409`: a command in a client session whose answer the client acknowledged already
    /// (a later command said so): the cluster no longer holds its answer. Not applied now.
    #[error("{0}")]
    Conflict(String),
    /// `410`: a command in a client session that expired (unused for longer than the
    /// session timeout) or never existed. Not applied; open a new session.
    #[error("{0}")]
    Gone(String),
    /// `413`: the body is larger than the route accepts (see `body.rs`).
    #[error("{0}")]
    TooLarge(String),
    /// `429`: a command in a client session that holds as many unacknowledged answers as
    /// it may. Not applied; the client must acknowledge answers it has first.
    #[error("{0}")]
    TooManyPending(String),
    /// `503`: definitely not applied; safe to retry, here or on another node.
    #[error("{0}")]
    NotApplied(String),
    /// `504`: the outcome is unknown; the request may or may not have taken effect.
    #[error("{0}")]
    Unknown(String),
    /// `500`: the node failed to answer (its state could not be read).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyPending(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotApplied(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unauthorized(_) = self {
            // RFC 6750: a 401 names the scheme the server expects.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::BodyTimeout(_) | ApiError::TooLarge(_) = self {
            // The rest of the body was not read, so the connection cannot carry another
            // request; say so rather than leave the client to find out.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let message = e.to_string();
        match e {
            ProposeError::Session(refused) => match refused {
                SessionError::Expired { .. } => {
                    ApiError::Gone(format!("{message}; not applied: open a new session"))
                }
                SessionError::Acknowledged { .. } => {
                    ApiError::Conflict(format!("{message}; not applied: its answer is no longer held"))
                }
                SessionError::TooManyPending { .. } => ApiError::TooManyPending(format!(
                    "{message}; not applied: acknowledge the answers you have first"
                )),
                SessionError::TooManySessions => {
                    ApiError::NotApplied(format!("{message}; retry once some expire"))
                }
                SessionError::NotEnabled | SessionError::Malformed(_) => ApiError::BadRequest(message),
            },
            e if e.is_definitely_not_applied() => ApiError::NotApplied(message),
            // `UnknownOutcome::SessionExpired` among them: an earlier attempt may have
            // been applied before the session expired.
            _ => ApiError::Unknown(message),
        }
    }
}

impl From<ReadError> for ApiError {
    /// A read changes nothing, so a failed read is always safe to retry.
    fn from(e: ReadError) -> Self {
        ApiError::NotApplied(e.to_string())
    }
}

impl From<AdminError> for ApiError {
    /// `NotLeader` never gets here: the admin handlers pass such requests on to the leader.
    fn from(e: AdminError) -> Self {
        match e {
            // The change itself is wrong (a removed id, an unknown node, a transfer to a
            // learner): asking again cannot make it right.
            AdminError::Invalid(_) | AdminError::InvalidTransfer(_) => ApiError::BadRequest(e.to_string()),
            // The runtime's own words: "it may or may not take effect".
            AdminError::LeadershipLost | AdminError::Timeout => ApiError::Unknown(e.to_string()),
            AdminError::NotLeader { .. }
            | AdminError::NotCaughtUp { .. }
            | AdminError::TransferAborted { .. }
            | AdminError::Pending
            | AdminError::Busy(_)
            | AdminError::ShuttingDown => ApiError::NotApplied(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use raft_runtime::{BusyReason, InvalidTransfer, UnknownOutcome};

    use super::*;

    #[test]
    fn proposals_map_to_503_only_when_definitely_not_applied() {
        let busy: ApiError = ProposeError::Busy(BusyReason::Mailbox).into();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let no_leader: ApiError = ProposeError::NotLeader { leader: None }.into();
        assert_eq!(no_leader.status(), StatusCode::SERVICE_UNAVAILABLE);
        let stopping: ApiError = ProposeError::ShuttingDown.into();
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        let timeout: ApiError = ProposeError::Timeout.into();
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let unknown: ApiError = ProposeError::Unknown(UnknownOutcome::ShutDown).into();
        assert_eq!(unknown.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn session_refusals_have_statuses_of_their_own() {
        let status = |e: SessionError| ApiError::from(ProposeError::Session(e)).status();
        assert_eq!(status(SessionError::Expired { session: 7 }), StatusCode::GONE);
        let acked = SessionError::Acknowledged {
            session: 7,
            seq: 2,
            acked: 3,
        };
        assert_eq!(status(acked), StatusCode::CONFLICT);
        assert_eq!(
            status(SessionError::TooManyPending { session: 7 }),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(SessionError::TooManySessions),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(SessionError::NotEnabled), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(SessionError::Malformed("short".into())),
            StatusCode::BAD_REQUEST
        );
        // An earlier attempt's outcome was unknown, and the session is gone since: the
        // command may have been applied.
        let expired: ApiError = ProposeError::Unknown(UnknownOutcome::SessionExpired { session: 7 }).into();
        assert_eq!(expired.status(), StatusCode::GATEWAY_TIMEOUT);
        let gone: ApiError = ProposeError::Session(SessionError::Expired { session: 7 }).into();
        assert!(gone.to_string().contains("session 7"), "{gone}");
    }

    #[test]
    fn reads_are_always_503() {
        let e: ApiError = ReadError::Timeout.into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn admin_errors_say_whether_the_change_may_have_happened() {
        let e: ApiError = AdminError::Timeout.into();
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let e: ApiError = AdminError::InvalidTransfer(InvalidTransfer::NotVoter { target: 9 }).into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e: ApiError = AdminError::NotCaughtUp { node: 4 }.into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
