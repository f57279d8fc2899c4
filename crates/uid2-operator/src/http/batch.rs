//! A bounded pool for batch work (identity map, buckets, opt-out status).
//!
//! A 10,000-identity map is tens of milliseconds of CPU. Run on the async workers it would hold
//! one of them that long and delay every token generate queued behind it (the official operator
//! blocks its event loop this way). Here batches run on blocking threads, at most one per core
//! at a time, and at most two at a time per client, so one busy mapper cannot take every core.
//! A client may have 32 batches under way (waiting, running or being sent: more than the 20
//! parallel identity-map calls the official documentation allows); one more is refused with a
//! 429 at once, so that waiting requests, each holding its parsed input, cannot pile up without
//! end.
//!
//! A batch returns its finished HTTP response: answers can be tens of megabytes of JSON (all
//! buckets since an old date), and serialising, sealing and encoding them is batch work too.
//! The client's permit stays with the answer until it has been sent (see [`Sending`]): a
//! client that asks and never reads holds at most two answers in memory, not one per request.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Batches one client may run at once.
const PER_CLIENT: usize = 2;
/// Batches one client may have under way: waiting for a turn, running or being sent.
const PER_CLIENT_UNDER_WAY: usize = 32;

/// The pool.
#[derive(Debug)]
pub struct BatchPool {
    global: Arc<Semaphore>,
    per_client: Mutex<HashMap<String, Arc<ClientSlots>>>,
}

/// One client's share of the pool.
#[derive(Debug)]
struct ClientSlots {
    running: Arc<Semaphore>,
    under_way: Arc<Semaphore>,
}

impl Default for BatchPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchPool {
    /// A pool sized to the machine.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::with_cores(cores)
    }

    /// A pool that runs at most `cores` batches at once.
    fn with_cores(cores: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(cores)),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `work` for `client` on the pool; `work` answers the request, sealed and encoded.
    pub async fn run(
        &self,
        client: &str,
        work: impl FnOnce() -> Response + Send + 'static,
    ) -> Result<Response, ApiError> {
        let slots = {
            let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(client.to_owned())
                .or_insert_with(|| {
                    Arc::new(ClientSlots {
                        running: Arc::new(Semaphore::new(PER_CLIENT)),
                        under_way: Arc::new(Semaphore::new(PER_CLIENT_UNDER_WAY)),
                    })
                })
                .clone()
        };
        let under_way = slots.under_way.clone().try_acquire_owned().map_err(|_| {
            ApiError::too_many_requests(format!(
                "{PER_CLIENT_UNDER_WAY} batch requests of this client are under way already"
            ))
        })?;
        let busy = || ApiError::unavailable("batch pool closed");
        let running = slots
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        let core = self
            .global
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        // The permits go with the work: if this request is dropped (its client went away, or it
        // timed out) the work still runs to its end, and still counts against the cores and
        // against its client, so that asking and hanging up cannot take more than a fair share.
        let permits = [running, under_way];
        let (response, permits) = tokio::task::spawn_blocking(move || {
            let response = work();
            drop(core);
            (response, permits)
        })
        .await
        .map_err(|_| ApiError::unavailable("batch work failed"))?;
        Ok(response.map(|body| Body::new(Sending::new(body, permits))))
    }
}

/// Largest piece of an answer handed to the connection at a time. The connection takes the
/// next piece only when its buffer has room, so the last piece, and with it the permit, is
/// taken only once nearly all of the answer has gone out.
const PIECE: usize = 64 * 1024;

/// An answer being sent, in pieces, holding the permits of the client that asked for it.
pub(crate) struct Sending {
    body: Body,
    /// The rest of a data frame larger than [`PIECE`].
    rest: Bytes,
    _permits: [OwnedSemaphorePermit; 2],
}

impl Sending {
    fn new(body: Body, permits: [OwnedSemaphorePermit; 2]) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            _permits: permits,
        }
    }

    fn piece_of(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > PIECE {
            self.rest = data.split_off(PIECE);
        }
        data
    }
}

impl HttpBody for Sending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            let piece = self.piece_of(rest);
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let piece = self.piece_of(data);
                    Poll::Ready(Some(Ok(Frame::data(piece))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    fn answer(len: usize) -> Response {
        Response::new(Body::from(vec![7u8; len]))
    }

    #[tokio::test]
    async fn a_client_holds_its_permits_until_its_answers_are_sent() {
        let pool = BatchPool::new();
        let first = pool.run("a", || answer(300_000)).await.unwrap();
        let second = pool.run("a", || answer(10)).await.unwrap();
        // Both answers unsent: the client's third batch waits, another client's does not.
        let mut third = Box::pin(pool.run("a", || answer(10)));
        assert!(futures_poll_once(third.as_mut()).await.is_none());
        assert!(pool.run("b", || answer(10)).await.is_ok());

        // Sent in pieces, whole, with its length known; once it is, the third batch runs.
        let mut body = first.into_body();
        assert_eq!(body.size_hint().exact(), Some(300_000));
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            pieces.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(
            pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
            [PIECE, PIECE, PIECE, PIECE, 300_000 - 4 * PIECE]
        );
        assert!(pieces.iter().all(|p| p.iter().all(|&b| b == 7)));
        drop(body);
        let third = third.await.unwrap();
        let sent = third.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 10);
        drop(second);
    }

    #[tokio::test]
    async fn a_client_with_every_batch_under_way_is_refused_one_more() {
        let pool = BatchPool::new();
        // Two answered and unsent, the rest waiting behind them.
        let sent = [
            pool.run("a", || answer(10)).await.unwrap(),
            pool.run("a", || answer(10)).await.unwrap(),
        ];
        let mut waiting: Vec<_> = (0..PER_CLIENT_UNDER_WAY - 2)
            .map(|_| Box::pin(pool.run("a", || answer(10))))
            .collect();
        for w in &mut waiting {
            assert!(futures_poll_once(w.as_mut()).await.is_none());
        }
        // Refused at once, not queued.
        let refused = futures_poll_once(Box::pin(pool.run("a", || answer(10))))
            .await
            .expect("answered without waiting")
            .unwrap_err()
            .into_response();
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert!(pool.run("b", || answer(10)).await.is_ok());
        // Once the two are sent, the rest run, and the client may ask again.
        drop(sent);
        for w in waiting {
            assert!(w.await.is_ok());
        }
        assert!(pool.run("a", || answer(10)).await.is_ok());
    }

    #[tokio::test]
    async fn a_batch_whose_caller_hung_up_still_counts_against_its_client() {
        // More cores than one client may use, so that only the client's own share can make
        // its next batch wait.
        let pool = BatchPool::with_cores(PER_CLIENT + 2);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(finish_rx));
        for _ in 0..PER_CLIENT {
            let (started, gate) = (started_tx.clone(), gate.clone());
            let mut call = Box::pin(pool.run("a", move || {
                started.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
                answer(10)
            }));
            assert!(futures_poll_once(call.as_mut()).await.is_none());
            started_rx.recv().unwrap();
            // The caller goes away while its batch runs.
            drop(call);
        }
        // Both batches still run: the client's next one does not start until they end;
        // another client's runs at once.
        let started = started_tx.clone();
        let mut next = Box::pin(pool.run("a", move || {
            started.send(()).unwrap();
            answer(10)
        }));
        assert!(futures_poll_once(next.as_mut()).await.is_none());
        assert!(pool.run("b", || answer(10)).await.is_ok());
        assert!(
            started_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the client's third batch ran beside its two"
        );
        for _ in 0..PER_CLIENT {
            finish_tx.send(()).unwrap();
        }
        assert!(next.await.is_ok());
        started_rx.recv().unwrap();
    }

    /// Polls `f` once: `Some` if it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| match Pin::new(&mut f).poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
