//! Serving the router on a TCP listener with the limits a server open to the internet needs.
//!
//! Without them one client can hold the operator: connections that never finish their headers
//! or their body, or never read their answer, stay open for good, and enough of them exhaust
//! the file descriptors (then even `/ops/healthcheck` goes unanswered) or, with large answers,
//! the memory. So: a deadline for the request head, a deadline for bytes to move in either
//! direction on an open connection, a cap on open connections, past which new ones wait in
//! the kernel's accept queue, and one on the requests an HTTP/2 connection multiplexes. (The
//! deadline of a whole request, which also answers a body that never arrives, and the budget of
//! body bytes being received, are the router's: see [`OperatorConfig::request_timeout`] and
//! [`BODY_BUDGET_BYTES`](super::BODY_BUDGET_BYTES).)
//!
//! [`OperatorConfig::request_timeout`]: crate::OperatorConfig::request_timeout

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::timed_stream::{Clocked, Exchange, TimedStream};

/// Limits on the connections a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of an HTTP/1 request to the end of its head (request line and
    /// headers).
    pub header_read_timeout: Duration,
    /// Longest a connection may go without a byte arriving or leaving, whether a request is
    /// under way or the connection idles between requests.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // Longer than the 60 s a load balancer (AWS ALB, nginx) keeps an idle connection to
            // its backends: were the operator to close first, a request the balancer sent at
            // that moment would fail with a 502.
            idle_timeout: Duration::from_secs(75),
            max_connections: 8192,
        }
    }
}

/// Requests one HTTP/2 connection may have under way (hyper's default is 200): a client that
/// needs more opens more connections, which `max_connections` counts.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// How long a stopping server waits for the requests under way.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets the
/// requests under way finish (for up to 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The head limit is the connection clock's: hyper's timer would also run while a
        // kept-alive connection waits for its next request (see `TimedStream`).
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        stream.set_nodelay(true).ok();
        let exchange = Arc::new(Exchange::default());
        let io = TokioIo::new(TimedStream::new(
            stream,
            limits.idle_timeout,
            limits.header_read_timeout,
            exchange.clone(),
        ));
        let service = TowerToHyperService::new(Clocked::new(app.clone(), exchange));
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // An error here is the connection's (reset, timed out, malformed): nothing to do.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("stopped with requests still under way"),
    }
}

/// An accept error: one connection's (it was reset before we took it) costs nothing; running
/// out of file descriptors or memory is the process's, and retrying at once would spin.
async fn accept_failed(e: &io::Error) {
    let connection_only = matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    );
    if !connection_only {
        tracing::warn!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
