//! The accept loop: serving the router on a listener, within limits on connections and on
//! how long a client may take.
//!
//! `axum::serve` would serve the router too, but it sets no header-read timeout (hyper's
//! needs a timer, which `axum::serve` does not give it) and accepts every connection, so a
//! client could hold a node's connections and memory open for free: open thousands of
//! connections, or send half a request head on each and stop. Here:
//!
//! - **Connection limit.** A permit from a semaphore is taken *before* accepting, and held
//!   by the connection until it closes. Past [`HttpLimits::max_connections`], new
//!   connections are not accepted: they wait in the kernel's listen backlog until a
//!   connection closes (and once the backlog is full, the kernel turns new ones away).
//!   A limit on requests (tower's `ConcurrencyLimit`) would not do: an idle connection
//!   costs a socket, a buffer and a task without ever making a request.
//! - **Header-read timeout.** hyper closes a connection whose request head (request line
//!   and headers) has not arrived in full within [`HttpLimits::header_timeout`] of the
//!   connection being ready for it. hyper starts the same timer when a kept-alive
//!   connection goes idle, so it is also the idle bound: a connection with no request
//!   under way is closed after that long.
//! - **Head size.** Request heads larger than [`MAX_HEAD`] are refused (`431`), so that
//!   a connection's read buffer stays small.
//! - The body has its own timeout and size limit, applied where it is read (`body.rs`).
//!
//! Stopping stops accepting, asks every open connection to close once its request in
//! flight (if any) is answered, and returns when they have.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::HttpLimits;
use super::log_limit::LogLimit;

/// The largest request head (request line and headers) a connection reads: far more than
/// any client of this API sends.
pub const MAX_HEAD: usize = 16 * 1024;

/// Serves `router` on `listener` until `stop` resolves, then stops gracefully (see the
/// module's documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let (closing, closing_rx) = watch::channel(false);
    let accept_errors = LogLimit::default();
    let mut connections = JoinSet::new();
    let mut stop = pin!(stop);
    loop {
        // First a free place, then a connection to fill it: past the limit, connections
        // are left waiting in the listen backlog rather than accepted and then starved.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let (stream, remote) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(error = %e, suppressed, "accepting an HTTP connection failed");
                    }
                    // Out of file descriptors or memory: give the open connections time
                    // to finish instead of spinning on the same error.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Forget the connections that have ended, so that the set stays as small as the
        // number of open ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            remote,
            router.clone(),
            limits,
            permit,
            closing_rx.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, or until `closing` asks it to stop (then it
/// finishes the request in flight first). Holds `_permit` all along.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: HttpLimits,
    _permit: OwnedSemaphorePermit,
    mut closing: watch::Receiver<bool>,
) {
    // Handlers can see who sent a request (the admin check logs it).
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request
    });
    let service = TowerToHyperService::new(service);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let asked_to_close = async {
        // (An error means the server is gone: close too.)
        let _ = closing.wait_for(|&closing| closing).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = asked_to_close => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // A timeout, a malformed request, a client gone: the client's doing, and hyper
        // has already answered what it could.
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}
