//! Reading request bodies within bounds: per request (1 MiB, as upstream; 16 KiB where no API
//! key is needed), per caller (a key that is no enabled client's is refused before its body is
//! read), and for the whole process (a budget of bytes being received at once, and a smaller one
//! of its own for the endpoints anyone may call, so that callers without a key cannot make the
//! publishers and bidders who have one wait).
//!
//! A body is memory held for as long as its sender takes to send it, up to the request timeout:
//! without the process-wide budget, slow senders on thousands of connections (or hundreds of
//! HTTP/2 streams on one) could hold gigabytes. With it, they can only make other requests
//! wait for their turn to read, and a request that waits past its timeout is a retryable 503;
//! a body that is still arriving at that point is the sender's doing, and gets a 408.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use tokio::sync::Semaphore;
use uid2_proto::wire::ResponseStatus;

use super::{ApiError, RequestDeadline, api_key};
use crate::Operator;
use crate::clients::Client;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Largest body of the endpoints anyone may call (refresh, client-side generation): their
/// bodies are a refresh token or a small JSON object of well under 2 KiB.
pub const MAX_PUBLIC_BODY_BYTES: usize = 16 << 10;

/// Bytes of request bodies the process receives at once, across the requests that carry an
/// enabled client's API key.
pub const BODY_BUDGET_BYTES: usize = 256 << 20;

/// Bytes of request bodies the process receives at once for the endpoints anyone may call,
/// from callers without an enabled client's key (4,096 bodies of [`MAX_PUBLIC_BODY_BYTES`]),
/// apart from [`BODY_BUDGET_BYTES`].
pub const PUBLIC_BODY_BUDGET_BYTES: usize = 64 << 20;

/// Least time a body is given to arrive once the server is ready to read it (half the request
/// timeout, if that is shorter).
const MIN_TIME_TO_RECEIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The budget is counted in KiB, so that a permit count fits any semaphore.
const BUDGET_UNIT: usize = 1 << 10;

/// The process-wide budgets of body bytes being received, shared by every request of a router:
/// one for requests with an enabled client's key, one for the endpoints anyone may call.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    keyed: Arc<Semaphore>,
    public: Arc<Semaphore>,
}

impl BodyBudget {
    /// Budgets of `keyed` and `public` bytes.
    pub(crate) fn new(keyed: usize, public: usize) -> Self {
        let semaphore = |bytes: usize| Arc::new(Semaphore::new(bytes.div_ceil(BUDGET_UNIT)));
        Self {
            keyed: semaphore(keyed),
            public: semaphore(public),
        }
    }
}

/// Which of the [`BodyBudget`]s a body is received within.
#[derive(Debug, Clone, Copy)]
enum Pool {
    Keyed,
    Public,
}

/// A request body of an endpoint that needs an API key: read (up to [`MAX_BODY_BYTES`]) only
/// once the key is known to be an enabled client's; otherwise the 401 comes first, as plain
/// text on the v1 identity map as upstream, else `{"status":"unauthorized"}`. Roles are the
/// handler's to check, on the client found here (the key is looked up once per request).
pub struct LimitedBody {
    /// The body.
    pub bytes: Bytes,
    /// The enabled client whose API key the request carries.
    pub client: Arc<Client>,
}

impl FromRequest<Arc<Operator>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, op: &Arc<Operator>) -> Result<Self, Self::Rejection> {
        let Some(client) = enabled_client(&req, op) else {
            return Err(if req.uri().path().starts_with("/v1/") {
                ApiError::unauthorized_text()
            } else {
                ApiError::unauthorized()
            });
        };
        let bytes = read(req, MAX_BODY_BYTES, Pool::Keyed).await?;
        Ok(LimitedBody { bytes, client })
    }
}

/// A request body of an endpoint anyone may call, read up to [`MAX_PUBLIC_BODY_BYTES`].
pub struct PublicBody(pub Bytes);

impl FromRequest<Arc<Operator>> for PublicBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, op: &Arc<Operator>) -> Result<Self, Self::Rejection> {
        // A publisher refreshing from its server with its key is received within the keyed
        // budget, out of reach of whoever fills the public one.
        let pool = match enabled_client(&req, op) {
            Some(_) => Pool::Keyed,
            None => Pool::Public,
        };
        read(req, MAX_PUBLIC_BODY_BYTES, pool).await.map(PublicBody)
    }
}

/// The enabled client whose API key `req` carries, if any.
fn enabled_client(req: &Request, op: &Operator) -> Option<Arc<Client>> {
    let key = api_key(req.headers())?;
    op.snapshot().clients.enabled(key).cloned()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ResponseStatus::ClientError,
        format!("Request body larger than {limit} bytes"),
    )
}

/// Reads the body, at most `limit` bytes, within the router's [`BodyBudget`] for `pool`: the
/// bytes it may take (as declared by `Content-Length`, else `limit`) are reserved before the
/// first is read and given back once the last has arrived.
async fn read(req: Request, limit: usize, pool: Pool) -> Result<Bytes, ApiError> {
    let declared = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::client_error("Invalid body: bad Content-Length"))?,
        ),
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let reserve = declared.unwrap_or(limit);
    let semaphore = req
        .extensions()
        .get::<BodyBudget>()
        .map(|budget| match pool {
            Pool::Keyed => budget.keyed.clone(),
            Pool::Public => budget.public.clone(),
        });
    let _reserved = match &semaphore {
        // An empty body costs nothing to receive.
        Some(semaphore) if reserve > 0 => {
            let units = u32::try_from(reserve.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX);
            Some(
                semaphore
                    .acquire_many(units)
                    .await
                    .expect("the budget is never closed"),
            )
        }
        _ => None,
    };
    let deadline = req.extensions().get::<RequestDeadline>().copied();
    let receive = axum::body::to_bytes(req.into_body(), limit);
    let received = match deadline {
        Some(RequestDeadline { at, allowed }) => {
            // Waiting for the budget is the server's doing: a body it left almost no time to
            // arrive is not the sender's fault, and gets a retryable 503 rather than a 408.
            let server_late = at.saturating_duration_since(tokio::time::Instant::now())
                < MIN_TIME_TO_RECEIVE.min(allowed / 2);
            tokio::time::timeout_at(at, receive).await.map_err(|_| {
                if server_late {
                    ApiError::unavailable("too busy to read the request in time")
                } else {
                    not_received()
                }
            })?
        }
        None => receive.await,
    };
    received.map_err(|e| {
        if is_length_limit(&e) {
            too_large(limit)
        } else {
            ApiError::client_error(format!("Invalid body: {e}"))
        }
    })
}

/// A body its sender did not finish within the request's time: the client's doing, so a 4xx
/// (retrying with a body that arrives will do), not the 503 of a server too slow to answer.
fn not_received() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        ResponseStatus::ClientError,
        "Request body not received in time",
    )
}

/// Whether a body error (anywhere in its chain) is the length limit being hit.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}
