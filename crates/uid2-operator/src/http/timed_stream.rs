//! The clock of one connection: a TCP stream whose reads and writes fail with
//! [`io::ErrorKind::TimedOut`] (and so close the connection) when it is held without reason.
//!
//! Two limits, both measured here rather than by hyper, because hyper's own head timer starts
//! whenever it waits for a request, so it would also end a kept-alive connection idling between
//! requests after the short head limit, well before a load balancer expects (and a request the
//! balancer sends at that moment would fail):
//! - **idle**: no byte moved in either direction for this long. "Either direction": an answer
//!   still flowing to a slow reader keeps its connection however long it takes. Only bytes
//!   count; a flush moves none (hyper and h2 flush on nearly every poll, which would otherwise
//!   keep an idle connection open for good).
//! - **head**: an HTTP/1 request head must arrive in full within this time of its first byte.
//!   Heads are found by their blank line; the body is the router's to time
//!   (`OperatorConfig::request_timeout`). An HTTP/2 connection (known by its preface)
//!   multiplexes frames, so only the idle limit applies to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The end of an HTTP/1 request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// How an HTTP/2 connection starts (`PRI * HTTP/2.0…`); no HTTP/1 method is `PRI`.
const H2_START: &[u8; 3] = b"PRI";

/// Where the connection is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte or between requests: only the idle limit applies. `sniffed`
    /// counts the first bytes of the connection compared with [`H2_START`] so far.
    Waiting { sniffed: u8 },
    /// A request head arriving since `since`; `matched` bytes of [`HEAD_END`] ended what came.
    Head { since: Instant, matched: u8 },
    /// The head is in; until the answer starts, the router times the request.
    Request,
    /// HTTP/2.
    Multiplexed,
}

/// A TCP stream on the clock (see the module documentation).
pub(super) struct TimedStream {
    stream: TcpStream,
    idle: Duration,
    head: Duration,
    /// When a byte last moved (or the connection was accepted).
    last_progress: Instant,
    phase: Phase,
    /// Whether this connection has received a byte yet (the HTTP/2 check looks at the first).
    fresh: bool,
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
    /// has passed; else (re)aims the timer at `at` so that the task wakes then.
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
    /// idle one).
    pub(super) fn new(stream: TcpStream, idle: Duration, head: Duration) -> Self {
        Self {
            stream,
            idle,
            head: head.min(idle),
            last_progress: Instant::now(),
            phase: Phase::Waiting { sniffed: 0 },
            fresh: true,
            read: Deadline::new(),
            write: Deadline::new(),
        }
    }

    /// When a waiting operation fails.
    fn deadline(&self) -> Instant {
        let idle = self.last_progress + self.idle;
        match self.phase {
            Phase::Head { since, .. } => idle.min(since + self.head),
            _ => idle,
        }
    }

    /// Follows the exchange through bytes that arrived.
    fn received(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.fresh {
            // Decide HTTP/2 on the connection's first three bytes, which may come one at a time.
            let Phase::Waiting { sniffed } = self.phase else {
                unreachable!("a fresh connection is waiting")
            };
            let mut sniffed = usize::from(sniffed);
            while sniffed < H2_START.len() && !bytes.is_empty() {
                if bytes[0] != H2_START[sniffed] {
                    break;
                }
                sniffed += 1;
                bytes = &bytes[1..];
            }
            if sniffed == H2_START.len() {
                self.fresh = false;
                self.phase = Phase::Multiplexed;
                return;
            }
            if bytes.is_empty() {
                // All a prefix of the preface so far: keep looking.
                self.phase = Phase::Waiting {
                    sniffed: sniffed as u8,
                };
                return;
            }
            // HTTP/1: the bytes taken as a prefix were the head's first.
            self.fresh = false;
            self.phase = Phase::Head {
                since: Instant::now(),
                matched: 0,
            };
        }
        if let Phase::Waiting { .. } = self.phase {
            self.phase = Phase::Head {
                since: Instant::now(),
                matched: 0,
            };
        }
        if let Phase::Head { since, matched } = self.phase {
            let mut matched = usize::from(matched);
            for &b in bytes {
                matched = if b == HEAD_END[matched] {
                    matched + 1
                } else if b == HEAD_END[0] {
                    1
                } else {
                    0
                };
                if matched == HEAD_END.len() {
                    self.phase = Phase::Request;
                    return;
                }
            }
            self.phase = Phase::Head {
                since,
                matched: matched as u8,
            };
        }
    }

    /// Follows the exchange through bytes that left: an answer (not an interim `1xx`, such as
    /// `100 Continue`, after which the body comes) ends the request.
    fn sent(&mut self, first: &[u8]) {
        if matches!(self.phase, Phase::Head { .. } | Phase::Request)
            && !first.starts_with(b"HTTP/1.1 1")
        {
            self.phase = Phase::Waiting { sniffed: 0 };
        }
    }

    fn on_write(
        &mut self,
        poll: Poll<io::Result<usize>>,
        first: &[u8],
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.write.at = None;
                self.last_progress = Instant::now();
                self.sent(first);
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
        this.on_write(poll, buf, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        this.on_write(poll, first, cx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const IDLE: Duration = Duration::from_secs(5);
    const HEAD: Duration = Duration::from_secs(1);

    /// A connected pair: the client's end and the server's, on the clock.
    async fn pair() -> (TcpStream, TimedStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, TimedStream::new(server, IDLE, HEAD))
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

    #[tokio::test(start_paused = true)]
    async fn flushing_is_not_progress() {
        let (_client, mut server) = pair().await;
        let started = Instant::now();
        let (_, error) = serve_reads(&mut server, started + IDLE * 3).await;
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
        assert_eq!(
            started.elapsed().as_secs(),
            IDLE.as_secs(),
            "closed at the idle limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_idles_past_the_head_limit_but_a_head_must_not_dribble() {
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        arrived(&server).await;
        let (got, error) =
            serve_reads(&mut server, Instant::now() + Duration::from_millis(300)).await;
        assert!(
            got.ends_with(b"\r\n\r\n") && error.is_none(),
            "{:?} {error:?}",
            String::from_utf8_lossy(&got)
        );
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();

        // Between requests: three head limits pass without a byte, and the connection stays.
        let idle_until = Instant::now() + HEAD * 3;
        let (got, error) = serve_reads(&mut server, idle_until).await;
        assert!(got.is_empty() && error.is_none(), "{error:?}");

        // A head that starts and stalls is cut at the head limit, not the idle one.
        client.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
        arrived(&server).await;
        let started = Instant::now();
        let (got, error) = serve_reads(&mut server, started + IDLE * 2).await;
        assert_eq!(got, b"GET / HTTP/1.1\r\nHost:");
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
        assert!(
            started.elapsed() <= HEAD + Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_interim_answer_does_not_end_the_request() {
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 9\r\n\r\n")
            .await
            .unwrap();
        arrived(&server).await;
        serve_reads(&mut server, Instant::now() + Duration::from_millis(300)).await;
        server
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        // The body trickles in for longer than the head limit: it is not a new head.
        for _ in 0..3 {
            client.write_all(b"abc").await.unwrap();
            arrived(&server).await;
            let (got, error) =
                serve_reads(&mut server, Instant::now() + Duration::from_millis(900)).await;
            assert_eq!(got, b"abc");
            assert!(error.is_none(), "{error:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_have_only_the_idle_limit() {
        let (mut client, mut server) = pair().await;
        // The preface split after its first byte, then frames with no blank line in them.
        client.write_all(b"P").await.unwrap();
        arrived(&server).await;
        serve_reads(&mut server, Instant::now() + Duration::from_millis(200)).await;
        client
            .write_all(b"RI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        arrived(&server).await;
        serve_reads(&mut server, Instant::now() + Duration::from_millis(200)).await;
        server
            .write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        client
            .write_all(b"\x00\x00\x05\x01\x04\x00\x00\x00\x01")
            .await
            .unwrap();
        arrived(&server).await;
        let started = Instant::now();
        let (_, error) = serve_reads(&mut server, started + HEAD * 3).await;
        assert!(error.is_none(), "cut by the head limit: {error:?}");
        let (_, error) = serve_reads(&mut server, started + IDLE * 2).await;
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_flowing_to_a_slow_reader_keeps_the_connection() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        arrived(&server).await;
        serve_reads(&mut server, Instant::now() + Duration::from_millis(100)).await;
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
