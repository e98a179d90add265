//! A client of the counter's HTTP API that knows a list of nodes and tries them in turn:
//! the shared client ([`raft_service::client`]) and its retry rule, plus the counter's
//! requests.
//!
//! A plain increment ([`Client::incr`]) whose outcome is unknown is never sent again: it
//! could count twice. An increment in a client session ([`Client::incr_in_session`]) is
//! sent again, with the same session and sequence number, after any failure that may clear
//! up, unknown outcomes included, until it is answered or the deadline passes: the cluster
//! counts it once however often it arrives.

use raft_service::client::{Body, Method, Retry};

use crate::api::{IncrRequest, SessionResponse, ValueResponse};

pub use raft_service::client::ClientError;

raft_service::service_client! {
    /// A client of a counter cluster. It derefs to the shared client, for the status and admin
    /// requests.
    pub struct Client;
}

impl Client {
    /// Adds `by` to the counter; returns the value right after this increment. Outside any
    /// session: an unknown outcome ([`ClientError::Unknown`]) is reported, not retried.
    pub async fn incr(&self, by: u64) -> Result<u64, ClientError> {
        let body = Body::json(&IncrRequest::by(by));
        let r: ValueResponse = self
            .0
            .call(Method::POST, "/incr", Some(body), Retry::IfNotApplied)
            .await?;
        Ok(r.value)
    }

    /// Opens a client session; returns its id. Retried on every node until one answers or
    /// the deadline passes: an opening whose answer was lost at worst leaves an unused
    /// session behind, which expires after the cluster's session timeout.
    pub async fn open_session(&self) -> Result<u64, ClientError> {
        let r: SessionResponse = self
            .0
            .call(Method::POST, "/sessions", None, Retry::Always)
            .await?;
        Ok(r.session)
    }

    /// Adds `by` to the counter as increment `seq` of `session` (from
    /// [`Client::open_session`]; `seq` 1 for the session's first, then increasing); returns
    /// the value right after this increment. For a client that sends one increment at a
    /// time: sending `seq` tells the cluster that every earlier one was answered.
    ///
    /// Sent again with the same session and sequence number, through the nodes in turn,
    /// after every failure but a refusal of the session (a `503`, a `504`, a connection that
    /// broke), until it is answered or the deadline passes; the cluster counts it once, and
    /// answers a repeat with the value of its one application. Errors:
    /// [`ClientError::Unknown`] only once the deadline passed (or the session expired)
    /// after an attempt whose outcome was unknown; [`ClientError::Rejected`] when the
    /// session expired or never existed (`410`) or refused the sequence number (`409`,
    /// `429`); [`ClientError::Unavailable`] when no attempt may have been applied.
    pub async fn incr_in_session(&self, session: u64, seq: u64, by: u64) -> Result<u64, ClientError> {
        let body = Body::json(&IncrRequest::in_session(by, session, seq));
        let r: ValueResponse = self
            .0
            .call(Method::POST, "/incr", Some(body), Retry::Deduplicated)
            .await?;
        Ok(r.value)
    }

    /// The counter's value (a linearizable read).
    pub async fn get(&self) -> Result<u64, ClientError> {
        let r: ValueResponse = self.0.call(Method::GET, "/value", None, Retry::Always).await?;
        Ok(r.value)
    }
}
