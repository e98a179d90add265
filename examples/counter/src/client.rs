//! A client of the counter's HTTP API that knows a list of nodes and tries them in turn:
//! the shared client ([`raft_service::client`]) and its retry rule, plus the counter's two
//! requests. An increment whose outcome is unknown is never sent again: it could count
//! twice.

use std::ops::Deref;
use std::time::Duration;

use raft_service::client::{Body, Method, Retry};

use crate::admin_token::AdminToken;
use crate::api::{IncrRequest, ValueResponse};

pub use raft_service::client::ClientError;

/// A client of a counter cluster. It derefs to the shared client, for the status and admin
/// requests.
#[derive(Debug)]
pub struct Client(raft_service::client::Client);

impl Client {
    /// A client of the nodes at `nodes` (`HOST:PORT` or `http://HOST:PORT`), giving up on a
    /// request after 30 s of trying (see [`raft_service::client::Client::new`]).
    pub fn new<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> Client {
        Client(raft_service::client::Client::new(nodes))
    }

    /// Sends `token` with admin requests (add, remove, transfer).
    pub fn with_admin_token(self, token: AdminToken) -> Client {
        Client(self.0.with_admin_token(token))
    }

    /// Gives up on a request after trying for `deadline` (each round tries every node).
    pub fn with_deadline(self, deadline: Duration) -> Client {
        Client(self.0.with_deadline(deadline))
    }

    /// Adds `by` to the counter; returns the value right after this increment.
    pub async fn incr(&self, by: u64) -> Result<u64, ClientError> {
        let body = Body::json(&IncrRequest { by });
        let r: ValueResponse = self
            .0
            .call(Method::POST, "/incr", Some(body), Retry::IfNotApplied)
            .await?;
        Ok(r.value)
    }

    /// The counter's value (a linearizable read).
    pub async fn get(&self) -> Result<u64, ClientError> {
        let r: ValueResponse = self.0.call(Method::GET, "/value", None, Retry::Always).await?;
        Ok(r.value)
    }
}

impl From<raft_service::client::Client> for Client {
    /// The counter's requests over a shared client (as [`raft_service::cmd::ClusterArgs`]
    /// makes one).
    fn from(client: raft_service::client::Client) -> Client {
        Client(client)
    }
}

impl Deref for Client {
    type Target = raft_service::client::Client;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
