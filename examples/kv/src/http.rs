//! The key-value routes, served with the routes every service shares (`/status`,
//! `/metrics`, `/admin/*`, see [`raft_service::http`]). See [`crate::api`] for the bodies.
//!
//! - `PUT /kv/{key}` (the body is the value, raw), `DELETE /kv/{key}` and
//!   `POST /kv/{key}/cas` propose a [`Command`]. On a follower the runtime forwards it to
//!   the leader (`Config::forward_proposals`), so every node takes every write.
//! - `GET /kv/{key}` and `GET /kv` (a scan) read, at the consistency the request asks for
//!   (`?consistency=`, see [`Consistency`]).
//!
//! Keys are path segments, percent-decoded: UTF-8, not empty, at most [`MAX_KEY_LEN`]
//! bytes (a `/` in a key is written `%2F`). Anything else is a `400` that says what is
//! wrong. A value is at most [`MAX_VALUE_LEN`] bytes (`413` beyond).

use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::routing::{any, get, post, put};
use raft_runtime::Raft;
use raft_service::http::{ApiError, HttpLimits, parse_body, read_body};

use crate::api::{CasRequest, CasResponse, Entry, PreviousResponse, ScanResponse, Value, ValueResponse};
use crate::state_machine::{Command, KvError, KvStore, MAX_KEY_LEN, MAX_VALUE_LEN, Response};

/// Keys a scan answers when the request does not say.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// The most keys one scan answers.
pub const MAX_SCAN_LIMIT: usize = 1000;
/// About how many bytes of keys and values one scan answers at most: a page ends once it
/// holds this much (it always holds one key), and `next` says where the rest starts.
pub const MAX_SCAN_BYTES: usize = 4 << 20;
/// The largest compare-and-swap body: room for two values of [`MAX_VALUE_LEN`] bytes in
/// base64, and the JSON around them. (A text value full of characters that JSON escapes
/// may not fit; send it in base64.)
pub const MAX_CAS_BODY: usize = 3 * MAX_VALUE_LEN;

/// How much a read trusts the node it is sent to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// `linearizable` (the default): ReadIndex. The leader confirms with a quorum that it
    /// still leads, and the node answers once it has applied everything committed before
    /// the read began: the read sees every write acknowledged before it was sent.
    #[default]
    Linearizable,
    /// `lease`: the same, but the leader confirms from its lease (a quorum acknowledged it
    /// within the election timeout) instead of asking a quorum again. Saves a round trip;
    /// correct as long as the nodes' clocks run at about the same rate.
    Lease,
    /// `local`: the node's own state, without asking anyone. Fastest, and answers even
    /// without a leader, but may be stale: a follower may not have applied the latest
    /// writes yet, and a node cut off from the others may lag without bound.
    Local,
}

impl Consistency {
    /// Its name in `?consistency=`.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Local => "local",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "local" => Ok(Consistency::Local),
            _ => Err("use linearizable (the default), lease or local".into()),
        }
    }
}

/// What the handlers get: the node's Raft handle, the node's own store (for reads), and
/// the limits.
#[derive(Clone)]
struct AppState {
    raft: Raft<KvStore>,
    store: KvStore,
    limits: HttpLimits,
}

/// The key-value routes over `raft`, reading from `store` (the node's own, the one the
/// runtime applies to), bodies read within `limits` (values and compare-and-swap bodies
/// within limits of their own).
pub fn routes(raft: Raft<KvStore>, store: KvStore, limits: HttpLimits) -> Router {
    Router::new()
        .route("/kv", get(scan))
        .route("/kv/", any(empty_key))
        .route("/kv/{key}", put(put_value).get(get_value).delete(delete_value))
        .route("/kv/{key}/cas", post(compare_and_swap))
        .with_state(AppState { raft, store, limits })
}

/// The key of the request, checked.
fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| ApiError::BadRequest(format!("bad key: {e}")))?;
    check_key(&key)?;
    Ok(key)
}

/// Refuses an empty key and a key longer than [`MAX_KEY_LEN`] bytes.
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::BadRequest("the key is empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "the key is {} bytes long; a key is at most {MAX_KEY_LEN} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Refuses a value longer than [`MAX_VALUE_LEN`] bytes with `413`.
fn check_value(what: &str, value: Option<&Value>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.0.len() > MAX_VALUE_LEN => Err(ApiError::TooLarge(format!(
            "{what} is {} bytes long; a value is at most {MAX_VALUE_LEN} bytes",
            v.0.len()
        ))),
        _ => Ok(()),
    }
}

async fn empty_key() -> ApiError {
    ApiError::BadRequest("the key is empty: the path is /kv/{key}".into())
}

/// Proposes `command`; answers the state machine's response to it.
async fn propose(state: &AppState, command: Command) -> Result<Response, ApiError> {
    match state.raft.propose(command).await? {
        // Checked here before proposing, so only a node with other limits could refuse.
        Response::Refused(reason) => Err(ApiError::BadRequest(reason)),
        response => Ok(response),
    }
}

fn previous(response: Response) -> Result<Json<PreviousResponse>, ApiError> {
    match response {
        Response::Previous(previous) => Ok(Json(PreviousResponse {
            previous: previous.map(Value),
        })),
        other => Err(unexpected(other)),
    }
}

fn unexpected(response: Response) -> ApiError {
    ApiError::Internal(format!("the state machine answered {response:?}"))
}

async fn put_value(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<PreviousResponse>, ApiError> {
    let key = key_of(path)?;
    no_query(request.uri().query())?;
    let (_, value) = read_body(request, MAX_VALUE_LEN, state.limits.body_timeout).await?;
    previous(propose(&state, Command::Put { key, value }).await?)
}

async fn delete_value(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<PreviousResponse>, ApiError> {
    let key = key_of(path)?;
    no_query(query.as_deref())?;
    previous(propose(&state, Command::Delete { key }).await?)
}

async fn compare_and_swap(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<CasResponse>, ApiError> {
    let key = key_of(path)?;
    no_query(request.uri().query())?;
    let (_, body) = read_body(request, MAX_CAS_BODY, state.limits.body_timeout).await?;
    let CasRequest { expected, new } = parse_body(&body)?;
    check_value("`expected`", expected.as_ref())?;
    check_value("`new`", new.as_ref())?;
    let command = Command::CompareAndSwap {
        key,
        expected: expected.map(|v| v.0),
        new: new.map(|v| v.0),
    };
    match propose(&state, command).await? {
        Response::Swapped { swapped, current } => Ok(Json(CasResponse {
            swapped,
            current: current.map(Value),
        })),
        other => Err(unexpected(other)),
    }
}

async fn get_value(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<ValueResponse>, ApiError> {
    let key = key_of(path)?;
    let mut consistency = Consistency::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "consistency" => consistency = parse_param(&name, &value)?,
            other => return Err(unknown_param(other, "consistency")),
        }
    }
    let value = read(&state, consistency, {
        let key = key.clone();
        move |store| store.get(&key)
    })
    .await?;
    match value {
        Some(value) => Ok(Json(ValueResponse { value: Value(value) })),
        None => Err(ApiError::Missing(format!("no value at key `{key}`"))),
    }
}

async fn scan(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ScanResponse>, ApiError> {
    let (mut start, mut end, mut prefix) = (String::new(), None, String::new());
    let mut limit = DEFAULT_SCAN_LIMIT;
    let mut consistency = Consistency::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "start" => start = value.into_owned(),
            "end" => end = Some(value.into_owned()),
            "prefix" => prefix = value.into_owned(),
            "limit" => limit = parse_param(&name, &value)?,
            "consistency" => consistency = parse_param(&name, &value)?,
            other => return Err(unknown_param(other, "start, end, prefix, limit and consistency")),
        }
    }
    if !(1..=MAX_SCAN_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit is {limit}; it must be between 1 and {MAX_SCAN_LIMIT}"
        )));
    }
    let page = read(&state, consistency, move |store| {
        store.scan(&start, end.as_deref(), &prefix, limit, MAX_SCAN_BYTES)
    })
    .await?;
    Ok(Json(ScanResponse {
        entries: page
            .entries
            .into_iter()
            .map(|(key, value)| Entry {
                key,
                value: Value(value),
            })
            .collect(),
        next: page.next,
    }))
}

/// Reads the node's store with `f` at `consistency`.
///
/// For a linearizable or a lease read, the runtime first confirms the read (the leader
/// still leads, and this node has applied everything committed before the read began);
/// the store is then read, on a blocking thread, outside the runtime's applier so that a
/// long scan does not hold up what is being applied. The store can only have moved on
/// since the confirmation, by committed entries: the answer is still one that the read may
/// see.
async fn read<T: Send + 'static>(
    state: &AppState,
    consistency: Consistency,
    f: impl FnOnce(&KvStore) -> Result<T, KvError> + Send + 'static,
) -> Result<T, ApiError> {
    match consistency {
        Consistency::Linearizable => state.raft.read(|_| ()).await?,
        Consistency::Lease => state.raft.lease_read(|_| ()).await?,
        Consistency::Local => {}
    }
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::Internal(format!("the read failed: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn parse_param<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: fmt::Display,
{
    value
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("bad {name} `{value}`: {e}")))
}

fn unknown_param(name: &str, known: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unknown query parameter `{name}` (this route takes {known})"
    ))
}

/// Writes take no query parameters: one there is a mistake (a consistency on a write, a
/// key with an unescaped `?`), refused rather than ignored.
fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query {
        Some(q) if !q.is_empty() => Err(ApiError::BadRequest(format!(
            "this route takes no query parameters (got `{q}`); a `?` in a key is written %3F"
        ))),
        _ => Ok(()),
    }
}
