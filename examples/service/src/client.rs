//! A client of a service's HTTP API that knows a list of nodes and tries them in turn.
//!
//! The retry rule is the point of this file. A request that *definitely* did not take
//! effect (the node was unreachable, or answered `503`) is tried on the next node, round
//! after round, until a deadline. A request whose outcome is *unknown* (a `504`, or a
//! connection that broke after the request was sent) is retried only if sending it again
//! is safe: a read, or a write that the cluster applies at most once however often it
//! arrives (a command in a client session, [`Retry::Deduplicated`]). Sending any other
//! write again could apply it twice (count an increment twice).
//!
//! This client speaks the shared routes (status and admin); a service's client wraps it
//! and adds its own requests with [`Client::call`] and [`Client::call_optional`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use raft_runtime::raft_core::NodeId;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::admin_token::AdminToken;
use crate::api::{AddRequest, ErrorResponse, RemoveRequest, StatusResponse, TransferRequest};

pub use reqwest::Method;

/// How long an idle connection is kept for reuse: less than the servers' default
/// header-read timeout (10 s), which also closes idle connections, so that the client
/// lets a connection go before the server does rather than send on one being closed.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// The least time a request is given, however close the deadline: cutting a write short
/// only turns its outcome from known into unknown.
const MIN_REQUEST_TIME: Duration = Duration::from_secs(1);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Definitely not applied: no node could take the request before the deadline.
    #[error("not applied: {0}")]
    Unavailable(String),
    /// The outcome is unknown: the request may or may not have taken effect.
    #[error("outcome unknown (it may or may not have been applied): {0}")]
    Unknown(String),
    /// The cluster refused the request as invalid; retrying cannot help.
    #[error("refused: {0}")]
    Rejected(String),
}

impl ClientError {
    /// Whether the request definitely did not take effect.
    pub fn is_definitely_not_applied(&self) -> bool {
        !matches!(self, ClientError::Unknown(_))
    }

    /// What happened, without the verdict on whether it was applied.
    pub fn detail(&self) -> &str {
        match self {
            ClientError::Unavailable(m) | ClientError::Unknown(m) | ClientError::Rejected(m) => m,
        }
    }
}

/// Declares a service's client: a newtype over the shared [`Client`] (reached through
/// `Deref`, for the status and admin requests) with its constructors, to which the
/// service adds its own requests in an `impl` block, calling [`Client::call`] and
/// [`Client::call_optional`] on the field `.0`.
///
/// ```ignore
/// raft_service::service_client! {
///     /// A client of a counter cluster.
///     pub struct Client;
/// }
/// ```
#[macro_export]
macro_rules! service_client {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name($crate::client::Client);

        impl $name {
            /// A client of the nodes at `nodes` (`HOST:PORT` or `http://HOST:PORT`),
            /// giving up on a request after 30 s of trying (see
            /// [`raft_service::client::Client::new`]).
            pub fn new<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> $name {
                $name($crate::client::Client::new(nodes))
            }

            /// Sends `token` with admin requests (add, remove, transfer).
            pub fn with_admin_token(self, token: $crate::admin_token::AdminToken) -> $name {
                $name(self.0.with_admin_token(token))
            }

            /// Gives up on a request after trying for `deadline` (each round tries every
            /// node).
            pub fn with_deadline(self, deadline: ::std::time::Duration) -> $name {
                $name(self.0.with_deadline(deadline))
            }
        }

        impl ::std::convert::From<$crate::client::Client> for $name {
            /// The service's requests over a shared client (as
            /// [`raft_service::cmd::ClusterArgs`] makes one).
            fn from(client: $crate::client::Client) -> $name {
                $name(client)
            }
        }

        impl ::std::ops::Deref for $name {
            type Target = $crate::client::Client;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}

/// Whether a request may be sent again after an unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only if it definitely did not take effect (writes, admin changes).
    IfNotApplied,
    /// Always: sending it again does no harm (reads, which change nothing; opening a
    /// client session, where a retry at worst leaves an unused session to expire). Giving
    /// up after the deadline is [`ClientError::Unavailable`], whatever the attempts' outcomes.
    Always,
    /// Always, until an answer or the deadline: a write that the cluster applies at most
    /// once however often it is sent (a command in a client session, with the same session
    /// and sequence number every time). Its answer is that of its one application.
    /// Unlike [`Retry::Always`], it remembers whether any attempt's outcome was unknown:
    /// then giving up at the deadline, or a refusal by a later attempt (say, the session
    /// expired meanwhile), is [`ClientError::Unknown`], since the earlier attempt may have
    /// taken effect.
    Deduplicated,
}

/// The body of a request: its bytes and their content type.
#[derive(Clone, Debug)]
pub struct Body {
    bytes: Bytes,
    content_type: &'static str,
}

impl Body {
    /// `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Body {
        Body {
            bytes: serde_json::to_vec(value)
                .expect("the API's bodies always serialize")
                .into(),
            content_type: "application/json",
        }
    }

    /// `bytes` as they are (`application/octet-stream`).
    pub fn raw(bytes: impl Into<Bytes>) -> Body {
        Body {
            bytes: bytes.into(),
            content_type: "application/octet-stream",
        }
    }
}

/// A client of a service's cluster.
#[derive(Debug)]
pub struct Client {
    nodes: Vec<String>,
    http: reqwest::Client,
    deadline: Duration,
    /// The node that answered last: tried first next time.
    preferred: AtomicUsize,
    /// Sent with admin requests.
    admin_token: Option<AdminToken>,
}

impl Client {
    /// A client of the nodes at `nodes` (`HOST:PORT` or `http://HOST:PORT`), giving up on a
    /// request after 30 s of trying (the runtime's own timeouts, 10 s for a proposal and
    /// 30 s for a membership change, fit in it).
    pub fn new<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> Client {
        let nodes = nodes
            .into_iter()
            .map(|n| {
                let n = n.as_ref().trim().trim_end_matches('/');
                if n.starts_with("http://") {
                    n.to_string()
                } else {
                    format!("http://{n}")
                }
            })
            .collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .expect("a plain HTTP client always builds");
        Client {
            nodes,
            http,
            deadline: Duration::from_secs(30),
            preferred: AtomicUsize::new(0),
            admin_token: None,
        }
    }

    /// Sends `token` with admin requests (add, remove, transfer), which the nodes refuse
    /// (`401`) without the cluster's admin token.
    pub fn with_admin_token(mut self, token: AdminToken) -> Client {
        self.admin_token = Some(token);
        self
    }

    /// Gives up on a request after trying for `deadline` (each round tries every node).
    pub fn with_deadline(mut self, deadline: Duration) -> Client {
        self.deadline = deadline;
        self
    }

    /// The nodes' base URLs.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The status of the node at `node` (one of [`Client::nodes`]), asked once.
    pub async fn status_of(&self, node: &str) -> Result<StatusResponse, ClientError> {
        let deadline = Instant::now() + self.deadline;
        match self.send(node, Method::GET, "/status", None, deadline).await {
            Outcome::Ok(bytes) => decode(node, &bytes),
            Outcome::NotApplied(e) => Err(ClientError::Unavailable(e)),
            Outcome::NotFound(e) => Err(ClientError::Rejected(e)),
            Outcome::Unknown(e) => Err(ClientError::Unknown(e)),
            Outcome::Rejected(e) => Err(ClientError::Rejected(e)),
        }
    }

    /// Adds a node (learner first, voter once caught up). Answers the leader's status.
    pub async fn add_node(&self, request: &AddRequest) -> Result<StatusResponse, ClientError> {
        self.call(
            Method::POST,
            "/admin/add",
            Some(Body::json(request)),
            Retry::IfNotApplied,
        )
        .await
    }

    /// Removes node `id`. Answers the leader's status.
    pub async fn remove_node(&self, id: NodeId) -> Result<StatusResponse, ClientError> {
        let body = Body::json(&RemoveRequest { id });
        self.call(Method::POST, "/admin/remove", Some(body), Retry::IfNotApplied)
            .await
    }

    /// Hands leadership to node `to`. Answers the old leader's status.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<StatusResponse, ClientError> {
        let body = Body::json(&TransferRequest { to });
        self.call(Method::POST, "/admin/transfer", Some(body), Retry::IfNotApplied)
            .await
    }

    /// Sends the request (`path` with its query, if any) to each node in turn, starting
    /// with the one that answered last, round after round, until one succeeds (`200`,
    /// whose JSON body is the answer), the outcome is unknown and `retry` forbids another
    /// try, or the deadline passes. Any other `4xx` is [`ClientError::Rejected`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        retry: Retry,
    ) -> Result<T, ClientError> {
        let answer = self.call_inner(method, path, body, retry, false).await?;
        Ok(answer.expect("a 404 is an error unless asked otherwise"))
    }

    /// Like [`Client::call`], but a `404` is an answer too: `None` (the `kv` service's
    /// `GET` of an absent key).
    pub async fn call_optional<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        retry: Retry,
    ) -> Result<Option<T>, ClientError> {
        self.call_inner(method, path, body, retry, true).await
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        retry: Retry,
        not_found_is_answer: bool,
    ) -> Result<Option<T>, ClientError> {
        if self.nodes.is_empty() {
            return Err(ClientError::Unavailable("no nodes given".into()));
        }
        let deadline = Instant::now() + self.deadline;
        let mut pause = Duration::from_millis(50);
        // An attempt whose outcome was unknown, for a `Retry::Deduplicated` request: it may
        // have taken effect, whatever later attempts say.
        let mut uncertain: Option<String> = None;
        loop {
            let mut last = String::new();
            let first = self.preferred.load(Ordering::Relaxed);
            for i in 0..self.nodes.len() {
                let index = (first + i) % self.nodes.len();
                let node = &self.nodes[index];
                match self
                    .send(node, method.clone(), path, body.clone(), deadline)
                    .await
                {
                    Outcome::Ok(bytes) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return decode(node, &bytes).map(Some);
                    }
                    Outcome::NotFound(_) if not_found_is_answer => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(None);
                    }
                    Outcome::Rejected(e) | Outcome::NotFound(e) => {
                        return Err(match uncertain {
                            Some(earlier) => ClientError::Unknown(format!(
                                "{e}, after an earlier attempt whose outcome is unknown ({earlier})"
                            )),
                            None => ClientError::Rejected(e),
                        });
                    }
                    Outcome::Unknown(e) if retry == Retry::IfNotApplied => {
                        return Err(ClientError::Unknown(e));
                    }
                    Outcome::Unknown(e) => {
                        if retry == Retry::Deduplicated {
                            uncertain = Some(e.clone());
                        }
                        last = e;
                    }
                    Outcome::NotApplied(e) => last = e,
                }
            }
            if Instant::now() + pause >= deadline {
                let gave_up = format!("gave up after {:?}; last error: {last}", self.deadline);
                return Err(match uncertain {
                    Some(earlier) => ClientError::Unknown(format!(
                        "{gave_up}; an earlier attempt's outcome is unknown ({earlier})"
                    )),
                    None => ClientError::Unavailable(gave_up),
                });
            }
            // Every node refused: typically an election is under way. Give it time.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn send(
        &self,
        node: &str,
        method: Method,
        path: &str,
        body: Option<Body>,
        deadline: Instant,
    ) -> Outcome {
        let time_left = deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .http
            .request(method, format!("{node}{path}"))
            .timeout(time_left.max(MIN_REQUEST_TIME));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, body.content_type)
                .body(body.bytes);
        }
        if let Some(token) = &self.admin_token
            && path.starts_with("/admin/")
        {
            // Only where it is needed: a token sent with every request is a token
            // exposed to every request's logs and proxies.
            request = request.header(reqwest::header::AUTHORIZATION, token.authorization());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Outcome::NotApplied(format!("{node}: cannot connect: {}", root_cause(&e)));
            }
            Err(e) => return Outcome::Unknown(format!("{node}: {}", root_cause(&e))),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Outcome::Unknown(format!("{node}: the answer was cut off: {}", root_cause(&e))),
        };
        if status == StatusCode::OK {
            return Outcome::Ok(bytes);
        }
        let message = match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(e) => format!("{node}: {}", e.error),
            Err(_) => format!("{node}: HTTP {status}"),
        };
        match status {
            StatusCode::SERVICE_UNAVAILABLE => Outcome::NotApplied(message),
            StatusCode::NOT_FOUND => Outcome::NotFound(message),
            s if s.is_client_error() => Outcome::Rejected(message),
            // 504, and anything unexpected: assume the worst.
            _ => Outcome::Unknown(message),
        }
    }
}

enum Outcome {
    Ok(Bytes),
    NotApplied(String),
    /// A `404`: an error, or, for [`Client::call_optional`], the answer "absent".
    NotFound(String),
    Unknown(String),
    Rejected(String),
}

fn decode<T: DeserializeOwned>(node: &str, bytes: &[u8]) -> Result<T, ClientError> {
    // The request succeeded; only its answer is unreadable.
    serde_json::from_slice(bytes).map_err(|e| ClientError::Unknown(format!("{node}: unreadable answer: {e}")))
}

/// The innermost cause of an HTTP error: "Connection refused (os error 111)" says more than
/// "error sending request for url".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode as Status;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;

    /// A node that answers `POST /w` with the statuses of `script` in turn, then with the
    /// last one for ever (`200` answers `{"v": 1}`); counts the requests.
    struct Scripted {
        script: Mutex<VecDeque<u16>>,
        requests: AtomicUsize,
    }

    async fn answer(State(node): State<Arc<Scripted>>) -> Response {
        node.requests.fetch_add(1, Ordering::Relaxed);
        let status = {
            let mut script = node.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script[0]
            }
        };
        let status = Status::from_u16(status).unwrap();
        if status == Status::OK {
            Json(json!({"v": 1})).into_response()
        } else {
            (status, Json(json!({"error": format!("scripted {status}")}))).into_response()
        }
    }

    /// Serves a scripted node; answers its address and its state.
    async fn node(script: &[u16]) -> (String, Arc<Scripted>) {
        let state = Arc::new(Scripted {
            script: Mutex::new(script.iter().copied().collect()),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new().route("/w", post(answer)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, state)
    }

    async fn write(client: &Client, retry: Retry) -> Result<Value, ClientError> {
        client
            .call(Method::POST, "/w", Some(Body::json(&json!({}))), retry)
            .await
    }

    #[tokio::test]
    async fn a_deduplicated_write_is_retried_after_unknown_outcomes_until_answered() {
        let (a, node_a) = node(&[504, 504]).await;
        let (b, node_b) = node(&[503, 200]).await;
        let client = Client::new([a, b]).with_deadline(Duration::from_secs(20));
        assert_eq!(
            write(&client, Retry::Deduplicated).await.unwrap(),
            json!({"v": 1})
        );
        // a: 504; b: 503; a: 504; b: 200.
        assert_eq!(node_a.requests.load(Ordering::Relaxed), 2);
        assert_eq!(node_b.requests.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn other_writes_stop_at_the_first_unknown_outcome() {
        let (a, node_a) = node(&[504]).await;
        let (b, node_b) = node(&[200]).await;
        let client = Client::new([a, b]).with_deadline(Duration::from_secs(20));
        let e = write(&client, Retry::IfNotApplied).await.unwrap_err();
        assert!(matches!(e, ClientError::Unknown(_)), "{e:?}");
        assert_eq!(node_a.requests.load(Ordering::Relaxed), 1);
        assert_eq!(node_b.requests.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_deduplicated_write_given_up_after_an_unknown_outcome_is_unknown() {
        // A 504, then only 503s until the deadline: an attempt may have been applied.
        let (a, _) = node(&[504, 503]).await;
        let client = Client::new([a.clone()]).with_deadline(Duration::from_millis(1500));
        let e = write(&client, Retry::Deduplicated).await.unwrap_err();
        assert!(matches!(e, ClientError::Unknown(_)), "{e:?}");
        assert!(e.detail().contains("scripted 504"), "{e}");

        // Reads give up as unavailable, whatever the attempts said.
        let (b, _) = node(&[504]).await;
        let client = Client::new([b]).with_deadline(Duration::from_millis(1500));
        let e = write(&client, Retry::Always).await.unwrap_err();
        assert!(matches!(e, ClientError::Unavailable(_)), "{e:?}");

        // Only 503s: definitely not applied.
        let (c, _) = node(&[503]).await;
        let client = Client::new([c]).with_deadline(Duration::from_millis(1500));
        let e = write(&client, Retry::Deduplicated).await.unwrap_err();
        assert!(matches!(e, ClientError::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_refusal_after_an_unknown_outcome_is_unknown() {
        // The session expired after an attempt whose outcome is unknown: it may have been
        // applied before.
        let (a, _) = node(&[504, 410]).await;
        let client = Client::new([a]).with_deadline(Duration::from_secs(20));
        let e = write(&client, Retry::Deduplicated).await.unwrap_err();
        assert!(matches!(e, ClientError::Unknown(_)), "{e:?}");
        assert!(e.detail().contains("scripted 410 Gone"), "{e}");

        // Refused outright: definitely not applied.
        let (b, node_b) = node(&[410]).await;
        let client = Client::new([b]).with_deadline(Duration::from_secs(20));
        let e = write(&client, Retry::Deduplicated).await.unwrap_err();
        assert!(matches!(e, ClientError::Rejected(_)), "{e:?}");
        assert_eq!(node_b.requests.load(Ordering::Relaxed), 1);
    }
}
