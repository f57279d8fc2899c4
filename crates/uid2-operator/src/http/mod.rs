//! The operator's HTTP surface: every v2 endpoint, the legacy v1 ones, client-side generation,
//! ops routes and the browser SDK, with CORS on every response.
//!
//! Bad input always gets a 4xx, with the UID2 status JSON (the one exception is the official
//! plain-text `Unauthorized` of the v1 identity map, buckets and key routes); 5xx are kept for the operator's own trouble
//! (no active key, store unreachable), never for what a client sent.

pub mod batch;
mod body;
mod cstg;
mod identity_map;
mod input;
mod keys;
mod legacy;
mod ops;
mod path;
pub mod server;
mod timed_stream;
mod token;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;
use uid2_proto::wire::{ResponseStatus, StatusOnly};

use body::BodyBudget;
pub use body::{
    BODY_BUDGET_BYTES, LimitedBody, MAX_BODY_BYTES, MAX_PUBLIC_BODY_BYTES,
    PUBLIC_BODY_BUDGET_BYTES, PublicBody,
};

use crate::Operator;
use crate::snapshot::Snapshot;

/// An error answer, never encrypted: plain JSON `{"status", "message"}`, or for the few legacy
/// routes whose official answer it is, a plain-text reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: StatusCode,
    body: ErrorBody,
    /// `Retry-After` (seconds), for answers that a retry may turn into a success.
    retry_after_s: Option<u32>,
}

/// `Retry-After` of a 503: the store's circuit breaker retries within 250 ms to 4 s, so a client
/// waiting this long usually meets a store that answers again, without piling up retries.
pub const UNAVAILABLE_RETRY_AFTER_S: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorBody {
    Status {
        status: ResponseStatus,
        message: Option<String>,
    },
    Text(&'static str),
}

impl ApiError {
    /// An error with an HTTP code, a status and a message.
    pub fn new(code: StatusCode, status: ResponseStatus, message: impl Into<String>) -> Self {
        Self {
            code,
            body: ErrorBody::Status {
                status,
                message: Some(message.into()),
            },
            retry_after_s: None,
        }
    }

    /// 400 `client_error`.
    pub fn client_error(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::ClientError,
            message,
        )
    }

    /// 429 `client_error` with `Retry-After: 1`: the client has as many requests under way as it
    /// may; one more is worth sending once one of them is answered.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ResponseStatus::ClientError,
                message,
            )
        }
    }

    /// 401 `{"status":"unauthorized"}`, exactly as the official operator answers.
    pub fn unauthorized() -> Self {
        Self {
            code: StatusCode::UNAUTHORIZED,
            body: ErrorBody::Status {
                status: ResponseStatus::Unauthorized,
                message: None,
            },
            retry_after_s: None,
        }
    }

    /// 401 with the text `Unauthorized`: what the official legacy routes registered with
    /// `auth.handle` (the v1 identity map, buckets and keys) answer, through Vert.x's failure
    /// handler.
    pub fn unauthorized_text() -> Self {
        Self {
            code: StatusCode::UNAUTHORIZED,
            body: ErrorBody::Text("Unauthorized"),
            retry_after_s: None,
        }
    }

    /// 503 `unknown` with `Retry-After` ([`UNAVAILABLE_RETRY_AFTER_S`]): the operator cannot
    /// serve now (the store is unreachable, say); retrying may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(UNAVAILABLE_RETRY_AFTER_S),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseStatus::Unknown,
                message,
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (content_type, body) = match self.body {
            ErrorBody::Status { status, message } => (
                "application/json",
                serde_json::to_vec(&StatusOnly { status, message })
                    .expect("status JSON serialises"),
            ),
            ErrorBody::Text(text) => ("text/plain", text.as_bytes().to_vec()),
        };
        let mut response =
            (self.code, [(header::CONTENT_TYPE, content_type)], body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The JSON of every 200 answer: `{"status": …, "body": …}`, or `{"status": …}` without a body
/// (`optout`, `insufficient_user_consent`).
pub(crate) fn answer_json<T: Serialize>(status: ResponseStatus, body: Option<&T>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Answer<'a, T> {
        status: ResponseStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<&'a T>,
    }
    serde_json::to_vec(&Answer { status, body }).expect("answers serialise")
}

/// Request headers a page may send cross-origin, as the official operator allows them.
const CORS_ALLOWED_HEADERS: &str = "X-UID2-Client-Version, Content-Type, \
     Access-Control-Request-Method, Access-Control-Allow-Credentials, \
     Access-Control-Allow-Origin, Access-Control-Allow-Headers";

/// The same, plus `Authorization`: only validate lets a page send an API key, so a browser can
/// never be made to call generate, map or the key endpoints with one.
const CORS_ALLOWED_HEADERS_WITH_AUTH: &str = "X-UID2-Client-Version, Content-Type, \
     Access-Control-Request-Method, Access-Control-Allow-Credentials, \
     Access-Control-Allow-Origin, Access-Control-Allow-Headers, Authorization";

/// CORS on every response: any origin is echoed (as upstream); preflights are answered here.
async fn cors(req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allow_origin = origin.unwrap_or_else(|| HeaderValue::from_static("*"));
    let mut response = if req.method() == Method::OPTIONS {
        let allowed_headers = if req.uri().path() == "/v2/token/validate" {
            CORS_ALLOWED_HEADERS_WITH_AUTH
        } else {
            CORS_ALLOWED_HEADERS
        };
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(allowed_headers),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ResponseStatus::ClientError,
        "Unknown path",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ResponseStatus::ClientError,
        "Method not allowed",
    )
}

/// The bearer key of a request, if any.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    crate::clients::bearer_key(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Whether a refresh caller counts as authenticated: it sent any known key, even a disabled
/// one (the official `handleWithOptionalAuth`). Unauthenticated callers (browsers) get
/// `{"status":"error"}` for every failure.
pub(crate) fn is_authenticated(snap: &Snapshot, headers: &HeaderMap) -> bool {
    api_key(headers).is_some_and(|k| snap.clients.find(k).is_some())
}

/// Whether the request body is raw bytes (`Content-Type: application/octet-stream`).
pub(crate) fn is_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// The load generator's reference route, served only when configured.
const BASELINE_PATH: &str = "/ops/baseline";

/// Where Prometheus scrapes the operator's metrics.
pub const METRICS_PATH: &str = "/metrics";

/// `/metrics` alone, for a listener of its own (an internal port, apart from the API's).
pub fn metrics_router(operator: Arc<Operator>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(ops::metrics))
        .fallback(not_found)
        .with_state(operator)
}

/// Every route and its handlers; the router and the metrics labels are both made from this.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<Operator>>)> {
    vec![
        ("/v2/token/generate", post(token::generate)),
        ("/v2/token/refresh", post(token::refresh)),
        ("/v2/token/validate", post(token::validate)),
        ("/v2/token/logout", post(token::logout)),
        ("/v2/token/client-generate", post(cstg::client_generate)),
        ("/v2/identity/map", post(identity_map::map_v2)),
        ("/v3/identity/map", post(identity_map::map_v3)),
        ("/v2/identity/buckets", post(identity_map::buckets)),
        ("/v2/optout/status", post(identity_map::optout_status)),
        ("/v2/key/sharing", post(keys::sharing)),
        ("/v2/key/bidstream", post(keys::bidstream)),
        ("/v2/key/latest", post(keys::latest)),
        ("/v1/token/generate", get(legacy::generate)),
        ("/v1/token/refresh", get(legacy::refresh)),
        ("/v1/token/validate", get(legacy::validate)),
        (
            "/v1/identity/map",
            get(legacy::map_one).post(legacy::map_many),
        ),
        ("/v1/identity/buckets", get(legacy::buckets)),
        ("/v1/key/latest", get(legacy::key_latest)),
        ("/ops/healthcheck", get(ops::healthcheck)),
        (BASELINE_PATH, post(ops::baseline)),
        (METRICS_PATH, get(ops::metrics)),
        ("/static/js/{file}", get(ops::static_js)),
    ]
}

/// Every route path, as metrics label requests (besides [`crate::metrics::UNMATCHED`]).
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// Counts every request by route and status, and times it; requests no route matched (the
/// fallback) are counted as [`crate::metrics::UNMATCHED`].
async fn record_metrics(State(op): State<Arc<Operator>>, req: Request, next: Next) -> Response {
    let route = op.request_metrics.route_of(
        req.extensions()
            .get::<MatchedPath>()
            .map_or(crate::metrics::UNMATCHED, MatchedPath::as_str),
    );
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    op.request_metrics
        .record_for(route, response.status().as_u16(), started.elapsed());
    response
}

/// Builds the router of `operator`.
pub fn router(operator: Arc<Operator>) -> Router {
    api_router(operator, true)
}

/// [`router`], with `/metrics` or without it (when [`metrics_router`] serves it elsewhere).
pub fn api_router(operator: Arc<Operator>, with_metrics: bool) -> Router {
    let baseline = operator.config().enable_baseline_route;
    let legacy = operator.config().legacy_api;
    let app = routes()
        .into_iter()
        .filter(|(path, _)| baseline || *path != BASELINE_PATH)
        .filter(|(path, _)| legacy || !path.starts_with("/v1/"))
        .filter(|(path, _)| with_metrics || *path != METRICS_PATH)
        .fold(Router::new(), |app, (path, handlers)| {
            app.route(path, handlers)
        });
    // `layer`, not `route_layer`: the metrics must wrap the fallback too, so that requests for
    // unknown paths are counted.
    let app: Router = app
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            operator.clone(),
            enforce_request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            operator.clone(),
            record_metrics,
        ))
        .layer(axum::middleware::from_fn(cors))
        .layer(axum::Extension(BodyBudget::new(
            BODY_BUDGET_BYTES,
            PUBLIC_BODY_BUDGET_BYTES,
        )))
        .with_state(operator);
    // Paths are normalised before any route is matched, so this wraps the whole router
    // (a `layer` would run after the match).
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .map_request(path::normalize_request)
            .service(app),
    )
}

/// Answers a request that took longer than [`OperatorConfig::request_timeout`] with a 503 (inside
/// the metrics and CORS layers, so that the answer is counted and a browser can read it).
///
/// [`OperatorConfig::request_timeout`]: crate::OperatorConfig::request_timeout
async fn enforce_request_timeout(
    State(operator): State<Arc<Operator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let allowed = operator.config().request_timeout;
    let deadline = tokio::time::Instant::now() + allowed;
    // The body reader answers a body that has not arrived by then itself (a 408: the client's
    // doing); the margin lets its answer win over this one, which is for the server's slowness.
    req.extensions_mut().insert(RequestDeadline {
        at: deadline,
        allowed,
    });
    match tokio::time::timeout_at(deadline + BODY_DEADLINE_MARGIN, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable("request timed out").into_response(),
    }
}

/// When the request under way must have been answered ([`OperatorConfig::request_timeout`]
/// after it arrived).
///
/// [`OperatorConfig::request_timeout`]: crate::OperatorConfig::request_timeout
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestDeadline {
    /// The instant.
    pub(crate) at: tokio::time::Instant,
    /// The whole time a request is allowed.
    pub(crate) allowed: std::time::Duration,
}

/// How much later than [`RequestDeadline`] the router's own timeout fires.
const BODY_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

/// A 200 response with a body and content type.
pub(crate) fn ok(content_type: &'static str, body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.into(),
    )
        .into_response()
}
