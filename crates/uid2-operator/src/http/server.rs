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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// Limits on the connections a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its head (request line and headers); also
    /// how long a new connection may stay silent before its first byte.
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
        .header_read_timeout(limits.header_read_timeout)
        // A client may close its sending side once its request is out (`nc -N`, some
        // scripts) and still wait for the answer.
        .half_close(true);
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
        let io = TokioIo::new(IdleTimeout::new(
            stream,
            limits.idle_timeout,
            limits.header_read_timeout,
        ));
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(app.clone()))
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

/// A TCP stream whose reads and writes fail with [`io::ErrorKind::TimedOut`] once one has
/// waited too long without a byte moving in either direction; the connection then closes.
/// "Either direction": an answer still being sent to a slow reader keeps the connection alive
/// even though nothing arrives meanwhile, and a connection that has never sent a byte gets
/// only the request-head deadline (hyper's own head timer starts at the first byte, so a
/// client that connects and says nothing would otherwise hold its slot for the idle timeout).
struct IdleTimeout {
    stream: TcpStream,
    /// The limit once the client has sent a byte: between requests, or waiting mid-request.
    idle: Duration,
    /// The limit before the first byte.
    first_byte: Duration,
    /// When a byte last moved (or the connection was accepted).
    last_progress: Instant,
    /// Whether the client has sent anything yet.
    heard: bool,
    read: Deadline,
    write: Deadline,
}

/// The timer of a read or write that is waiting, if one is.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// The instant `sleep` is set to, if it is armed.
    at: Option<Instant>,
}

impl Deadline {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            at: None,
        }
    }

    /// For an operation still waiting: (re)aims the timer at `at`, the connection's current
    /// deadline, and fails the operation once that has passed.
    fn wait<T>(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.at != Some(at) {
            self.at = Some(at);
            self.sleep.as_mut().reset(at);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl IdleTimeout {
    fn new(stream: TcpStream, idle: Duration, first_byte: Duration) -> Self {
        Self {
            stream,
            idle,
            first_byte: first_byte.min(idle),
            last_progress: Instant::now(),
            heard: false,
            read: Deadline::new(),
            write: Deadline::new(),
        }
    }

    /// When a waiting operation times out: no byte moved since `last_progress` for the limit.
    fn deadline(&self) -> Instant {
        let limit = if self.heard {
            self.idle
        } else {
            self.first_byte
        };
        self.last_progress + limit
    }

    /// After a write-side operation answered `poll`: progress moves the shared deadline; a wait
    /// is checked against it.
    fn on_write<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.write.at = None;
            self.last_progress = Instant::now();
            return poll;
        }
        let at = self.deadline();
        self.write.wait(at, cx)
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if poll.is_ready() {
            this.read.at = None;
            this.last_progress = Instant::now();
            this.heard |= buf.filled().len() > before;
            return poll;
        }
        let at = this.deadline();
        this.read.wait(at, cx)
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.on_write(poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.on_write(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.on_write(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.on_write(poll, cx)
    }
}
