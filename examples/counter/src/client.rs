//! A client of the counter's HTTP API that knows a list of nodes and tries them in turn:
//! the shared client ([`raft_service::client`]) and its retry rule, plus the counter's two
//! requests. An increment whose outcome is unknown is never sent again: it could count
//! twice.

use raft_service::client::{Body, Method, Retry};

use crate::api::{IncrRequest, ValueResponse};

pub use raft_service::client::ClientError;

raft_service::service_client! {
    /// A client of a counter cluster. It derefs to the shared client, for the status and admin
    /// requests.
    pub struct Client;
}

impl Client {
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
