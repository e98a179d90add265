//! `POST /incr`: replicate an increment and answer the value right after it; in a client
//! session, at most once per (session, sequence number).

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
    let command = Command::Increment { by: request.by };
    // On a follower the runtime forwards the command to the leader and relays the answer
    // (`Config::forward_proposals`), so this is the same call on every node.
    let value = match in_session(&request)? {
        None => state.raft.propose(command).await?,
        // The runtime retries it (no leader yet, a busy node, an unknown outcome) until a
        // definite answer or the deadline; the session table applies it at most once, and
        // answers a retry of an applied one with the value of its one application.
        Some(InSession { session, seq, acked }) => {
            state
                .raft
                .propose_in_session(session, seq, acked, command, state.propose_timeout)
                .await?
        }
    };
    Ok(Json(ValueResponse { value }))
}

/// Where an increment goes in its client session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InSession {
    session: u64,
    seq: u64,
    acked: u64,
}

/// The session fields of `request`, checked: none at all (a plain increment), or a session
/// with a sequence number of 1 or more and an acknowledgement below it (by default, the
/// sequence number before it).
fn in_session(request: &IncrRequest) -> Result<Option<InSession>, ApiError> {
    let Some(session) = request.session else {
        if request.seq.is_some() || request.acked.is_some() {
            return Err(ApiError::BadRequest(
                "`seq` and `acked` belong to an increment in a session: `session` is missing".into(),
            ));
        }
        return Ok(None);
    };
    let seq = match request.seq {
        Some(seq) if seq > 0 => seq,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "an increment in session {session} needs a `seq` of 1 or more, not 0"
            )));
        }
        None => {
            return Err(ApiError::BadRequest(format!(
                "an increment in session {session} needs a `seq` (1 for the first, then increasing)"
            )));
        }
    };
    let acked = request.acked.unwrap_or(seq - 1);
    if acked >= seq {
        // The session table would drop the answers up to `acked`, this one's included,
        // and refuse it.
        return Err(ApiError::BadRequest(format!(
            "`acked` ({acked}) must be below `seq` ({seq}): the client cannot have the answer it asks for"
        )));
    }
    Ok(Some(InSession { session, seq, acked }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(session: Option<u64>, seq: Option<u64>, acked: Option<u64>) -> IncrRequest {
        IncrRequest {
            by: 1,
            session,
            seq,
            acked,
        }
    }

    fn refusal(r: IncrRequest) -> String {
        match in_session(&r) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{r:?} should be a bad request, is {other:?}"),
        }
    }

    #[test]
    fn a_plain_increment_has_no_session() {
        assert_eq!(in_session(&IncrRequest::by(3)).unwrap(), None);
    }

    #[test]
    fn acked_defaults_to_the_sequence_before() {
        assert_eq!(
            in_session(&request(Some(7), Some(1), None)).unwrap(),
            Some(InSession {
                session: 7,
                seq: 1,
                acked: 0
            })
        );
        assert_eq!(
            in_session(&request(Some(7), Some(5), Some(2))).unwrap(),
            Some(InSession {
                session: 7,
                seq: 5,
                acked: 2
            })
        );
    }

    #[test]
    fn malformed_session_fields_are_refused_with_what_is_wrong() {
        assert!(refusal(request(Some(7), None, None)).contains("needs a `seq`"));
        assert!(refusal(request(Some(7), Some(0), None)).contains("not 0"));
        assert!(refusal(request(Some(7), Some(3), Some(3))).contains("must be below"));
        assert!(refusal(request(None, Some(3), None)).contains("`session` is missing"));
        assert!(refusal(request(None, None, Some(1))).contains("`session` is missing"));
    }
}
