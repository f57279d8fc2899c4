//! The clock of one connection: a TCP stream whose reads and writes fail with
//! [`io::ErrorKind::TimedOut`] (and so close the connection) when it is held without reason.
//!
//! Two limits, both measured here rather than by hyper, because hyper's own head timer starts
//! whenever it waits for a request, so it would also end a kept-alive connection idling between
//! requests after the short head limit, well before a load balancer expects (and a request the
//! balancer sends at that moment would fail):
//! - **idle**: no byte moved in either direction for this long. "Either direction": an answer
//!   still being written to a slow reader keeps its connection, as far as this stream can see
//!   its bytes leave (a write returns once the kernel's send buffer takes them, so a reader must
//!   drain about half that buffer per idle limit). Only bytes count; a flush moves none (hyper
//!   and h2 flush on nearly every poll, which would otherwise keep an idle connection open for
//!   good).
//! - **head**: once a byte arrives while no request is under way, hyper must have parsed a whole
//!   request head within this time. What hyper parsed is not guessed from the bytes (blank
//!   lines, bare line feeds and interim answers all fool a byte scanner) but reported by the
//!   connection's service through an [`Exchange`]: a request handed over ends the head, its
//!   answer ends the request. The body is the router's to time
//!   (`OperatorConfig::request_timeout`). An HTTP/2 connection (its 24-byte preface, as
//!   hyper-util recognises it) multiplexes, so only the idle limit applies to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How an HTTP/2 connection starts.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's service tells its clock: requests handed over, and answered.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    handed_over: AtomicU64,
    answered: AtomicU64,
    multiplexed: AtomicBool,
}

impl Exchange {
    /// hyper parsed a request head and handed the request over.
    pub(super) fn request_started(&self, http2: bool) {
        if http2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.handed_over.fetch_add(1, Ordering::AcqRel);
    }

    /// The service answered a request handed over.
    pub(super) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::AcqRel);
    }

    fn under_way(&self) -> bool {
        self.handed_over.load(Ordering::Acquire) > self.answered.load(Ordering::Acquire)
    }
}

/// A TCP stream on the clock (see the module documentation).
pub(super) struct TimedStream {
    stream: TcpStream,
    idle: Duration,
    head: Duration,
    exchange: Arc<Exchange>,
    /// When a byte last moved (or the connection was accepted).
    last_progress: Instant,
    /// When the head now arriving began, while no request is under way.
    head_since: Option<Instant>,
    /// The requests handed over as of the last look at `exchange`.
    seen_handed_over: u64,
    /// Bytes of the HTTP/2 preface matched so far; `None` once decided.
    sniffed: Option<usize>,
    /// HTTP/2: only the idle limit applies.
    multiplexed: bool,
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

    /// For an operation still waiting: fails it once `at`, the connection's current deadline,
    /// has passed; else (re)aims the timer at `at` so that the task wakes then (and computes
    /// the deadline afresh: it may have moved).
    fn wait<T>(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if Instant::now() >= at {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection held too long without progress",
            )));
        }
        if self.at != Some(at) {
            self.at = Some(at);
            self.sleep.as_mut().reset(at);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection held too long without progress",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl TimedStream {
    /// `stream` with the `idle` and `head` limits (a head limit longer than the idle one is the
    /// idle one), told by `exchange` what its service received.
    pub(super) fn new(
        stream: TcpStream,
        idle: Duration,
        head: Duration,
        exchange: Arc<Exchange>,
    ) -> Self {
        Self {
            stream,
            idle,
            head: head.min(idle),
            exchange,
            last_progress: Instant::now(),
            head_since: None,
            seen_handed_over: 0,
            sniffed: Some(0),
            multiplexed: false,
            read: Deadline::new(),
            write: Deadline::new(),
        }
    }

    /// Catches up with the service: a request handed over since the last look ended its head.
    fn observe(&mut self) {
        let handed_over = self.exchange.handed_over.load(Ordering::Acquire);
        if handed_over != self.seen_handed_over {
            self.seen_handed_over = handed_over;
            self.head_since = None;
        }
        if self.exchange.multiplexed.load(Ordering::Relaxed) {
            self.multiplexed = true;
        }
    }

    /// When a waiting operation fails.
    fn deadline(&mut self) -> Instant {
        self.observe();
        let idle = self.last_progress + self.idle;
        match self.head_since {
            Some(since) if !self.multiplexed => idle.min(since + self.head),
            _ => idle,
        }
    }

    /// Bytes arrived: the first of a head (while no request is under way) starts its clock.
    fn received(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.observe();
        if let Some(matched) = self.sniffed {
            let n = bytes.len().min(H2_PREFACE.len() - matched);
            if bytes[..n] != H2_PREFACE[matched..matched + n] {
                self.sniffed = None;
            } else if matched + n == H2_PREFACE.len() {
                self.sniffed = None;
                self.multiplexed = true;
            } else {
                self.sniffed = Some(matched + n);
            }
        }
        if !self.multiplexed && self.head_since.is_none() && !self.exchange.under_way() {
            self.head_since = Some(self.last_progress);
        }
    }

    fn on_write(
        &mut self,
        poll: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.write.at = None;
                self.last_progress = Instant::now();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                let at = self.deadline();
                self.write.wait(at, cx)
            }
        }
    }

    /// Flush and shutdown move no bytes of their own: they wait on the clock but are no
    /// progress.
    fn on_other(
        &mut self,
        poll: Poll<io::Result<()>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if poll.is_ready() {
            return poll;
        }
        let at = self.deadline();
        self.write.wait(at, cx)
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read.at = None;
                // End of stream counts too: the connection is about to close anyway.
                this.last_progress = Instant::now();
                this.received(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let at = this.deadline();
                this.read.wait(at, cx)
            }
        }
    }
}

impl AsyncWrite for TimedStream {
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
        this.on_other(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.on_other(poll, cx)
    }
}

/// A connection's service, reporting to the connection's [`Exchange`] each request it is
/// handed and each answer it gives.
#[derive(Clone)]
pub(super) struct Clocked<S> {
    inner: S,
    exchange: Arc<Exchange>,
}

impl<S> Clocked<S> {
    /// `inner`, reporting to `exchange`.
    pub(super) fn new(inner: S, exchange: Arc<Exchange>) -> Self {
        Self { inner, exchange }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Clocked<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.exchange
            .request_started(request.version() == http::Version::HTTP_2);
        Answered {
            inner: Box::pin(self.inner.call(request)),
            exchange: Some(self.exchange.clone()),
        }
    }
}

/// The answer to a request handed over; reports it when it is ready (or dropped unanswered,
/// when hyper gives up on the connection).
pub(super) struct Answered<F> {
    inner: Pin<Box<F>>,
    exchange: Option<Arc<Exchange>>,
}

impl<F: Future> Future for Answered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let answer = self.inner.as_mut().poll(cx);
        if answer.is_ready()
            && let Some(exchange) = self.exchange.take()
        {
            exchange.answered();
        }
        answer
    }
}

impl<F> Drop for Answered<F> {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            exchange.answered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const IDLE: Duration = Duration::from_secs(5);
    const HEAD: Duration = Duration::from_secs(1);

    /// A connected pair: the client's end, and the server's on the clock with its exchange.
    async fn pair() -> (TcpStream, TimedStream, Arc<Exchange>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let exchange = Arc::new(Exchange::default());
        (
            client,
            TimedStream::new(server, IDLE, HEAD, exchange.clone()),
            exchange,
        )
    }

    /// Waits until bytes the client sent can be read: with the clock paused, time would
    /// otherwise jump ahead while they are still on their way.
    async fn arrived(server: &TimedStream) {
        server.stream.readable().await.unwrap();
    }

    /// Reads on the server end as hyper does, flushing on every wake-up (and waking every
    /// 100 ms); returns what was read before the read failed or `until` passed, and the error.
    async fn serve_reads(server: &mut TimedStream, until: Instant) -> (Vec<u8>, Option<io::Error>) {
        let mut got = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let mut buf = [0u8; 256];
            let mut read = ReadBuf::new(&mut buf);
            let outcome = std::future::poll_fn(|cx| {
                // Until it is pending, so that its next tick is armed: paused time would
                // otherwise jump straight to the connection's own deadline.
                while tick.poll_tick(cx).is_ready() {}
                let _ = Pin::new(&mut *server).poll_flush(cx);
                match Pin::new(&mut *server).poll_read(cx, &mut read) {
                    Poll::Ready(r) => Poll::Ready(Some(r)),
                    Poll::Pending if Instant::now() >= until => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match outcome {
                None => return (got, None),
                Some(Err(e)) => return (got, Some(e)),
                Some(Ok(())) if read.filled().is_empty() => return (got, None),
                Some(Ok(())) => got.extend_from_slice(read.filled()),
            }
        }
    }

    /// Sends `bytes` from the client and lets the server read them for `for_ms`.
    async fn send(
        client: &mut TcpStream,
        server: &mut TimedStream,
        bytes: &[u8],
        for_ms: u64,
    ) -> (Vec<u8>, Option<io::Error>) {
        client.write_all(bytes).await.unwrap();
        arrived(server).await;
        serve_reads(server, Instant::now() + Duration::from_millis(for_ms)).await
    }

    fn timed_out(error: Option<io::Error>) -> bool {
        error.is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn flushing_is_not_progress() {
        let (_client, mut server, _) = pair().await;
        let started = Instant::now();
        let (_, error) = serve_reads(&mut server, started + IDLE * 3).await;
        assert!(timed_out(error));
        assert_eq!(
            started.elapsed().as_secs(),
            IDLE.as_secs(),
            "closed at the idle limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_idles_past_the_head_limit_but_a_head_must_not_dribble() {
        let (mut client, mut server, exchange) = pair().await;
        let (got, error) = send(&mut client, &mut server, b"GET / HTTP/1.1\r\n\r\n", 100).await;
        assert!(!got.is_empty() && error.is_none(), "{error:?}");
        exchange.request_started(false);
        exchange.answered();
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();

        // Between requests: three head limits pass without a byte, and the connection stays.
        let (got, error) = serve_reads(&mut server, Instant::now() + HEAD * 3).await;
        assert!(got.is_empty() && error.is_none(), "{error:?}");

        // A head that starts and stalls is cut at the head limit, not the idle one.
        let started = Instant::now();
        let (got, error) = send(
            &mut client,
            &mut server,
            b"GET / HTTP/1.1\r\nHost:",
            IDLE.as_millis() as u64 * 2,
        )
        .await;
        assert_eq!(got, b"GET / HTTP/1.1\r\nHost:");
        assert!(timed_out(error));
        assert!(
            started.elapsed() <= HEAD + Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    /// Bytes do not say where a head ends (hyper skips leading blank lines, takes bare line
    /// feeds, and an interim `100 Continue` is no answer): only a request handed over does.
    #[tokio::test(start_paused = true)]
    async fn only_a_request_handed_over_ends_the_head() {
        for opening in [
            &b"\r\n\r\nGET / HTTP/1.1\r\nX-a: b"[..],
            b"PRI / HTTP/1.1\r\nX-a: b",
            b"GET / HTTP/1.1\n\n",
        ] {
            let (mut client, mut server, _) = pair().await;
            let started = Instant::now();
            let (_, error) = send(&mut client, &mut server, opening, 200).await;
            assert!(error.is_none());
            // Bytes keep coming, well inside the idle limit, but no request is handed over.
            let mut error = None;
            for _ in 0..4 {
                let (_, e) = send(&mut client, &mut server, b"b", 400).await;
                if e.is_some() {
                    error = e;
                    break;
                }
            }
            assert!(timed_out(error), "{:?}", String::from_utf8_lossy(opening));
            assert!(
                started.elapsed() <= HEAD + Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_under_way_has_no_head_limit() {
        let (mut client, mut server, exchange) = pair().await;
        send(
            &mut client,
            &mut server,
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 9\r\n\r\n",
            100,
        )
        .await;
        exchange.request_started(false);
        server
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        // The body trickles in for three head limits.
        for _ in 0..3 {
            let (got, error) = send(&mut client, &mut server, b"abc", 900).await;
            assert_eq!(got, b"abc");
            assert!(error.is_none(), "{error:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_have_only_the_idle_limit() {
        let (mut client, mut server, _) = pair().await;
        // The preface split after its first byte, then frames.
        send(&mut client, &mut server, b"P", 200).await;
        send(&mut client, &mut server, &H2_PREFACE[1..], 200).await;
        server
            .write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let started = Instant::now();
        let (_, error) = send(
            &mut client,
            &mut server,
            b"\x00\x00\x05\x01\x04\x00\x00\x00\x01",
            HEAD.as_millis() as u64 * 3,
        )
        .await;
        assert!(error.is_none(), "cut by the head limit: {error:?}");
        let (_, error) = serve_reads(&mut server, started + IDLE * 2).await;
        assert!(timed_out(error));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_being_written_keeps_the_connection() {
        let (mut client, mut server, exchange) = pair().await;
        send(&mut client, &mut server, b"GET / HTTP/1.1\r\n\r\n", 100).await;
        exchange.request_started(false);
        // The read side waits for the next request all along; the write side progresses every
        // second, for three idle limits.
        let mut read_buf = [0u8; 64];
        let started = Instant::now();
        while started.elapsed() < IDLE * 3 {
            let step = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(step);
            let outcome = std::future::poll_fn(|cx| {
                let mut read = ReadBuf::new(&mut read_buf);
                if let Poll::Ready(r) = Pin::new(&mut server).poll_read(cx, &mut read) {
                    return Poll::Ready(r);
                }
                step.as_mut().poll(cx).map(Ok)
            })
            .await;
            assert!(outcome.is_ok(), "{outcome:?}");
            server.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            client.read_exact(&mut one).await.unwrap();
        }
    }
}
