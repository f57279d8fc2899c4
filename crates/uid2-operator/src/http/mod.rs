//! The operator's HTTP surface: every v2 endpoint, the legacy v1 ones, client-side generation,
//! ops routes and the browser SDK, with CORS on every response.
//!
//! Bad input always gets the UID2 status JSON with a 4xx code; 5xx are kept for the operator's
//! own trouble (no active key, store unreachable), never for what a client sent.

pub mod batch;
mod cstg;
mod identity_map;
mod keys;
mod legacy;
mod ops;
mod token;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use uid2_proto::wire::{ResponseStatus, StatusOnly};

use crate::Operator;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// An error answer: plain JSON `{"status", "message"}`, never encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: StatusCode,
    status: ResponseStatus,
    message: Option<String>,
}

impl ApiError {
    /// An error with an HTTP code, a status and a message.
    pub fn new(code: StatusCode, status: ResponseStatus, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: Some(message.into()),
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

    /// 401 `{"status":"unauthorized"}`, exactly as the official operator answers.
    pub fn unauthorized() -> Self {
        Self {
            code: StatusCode::UNAUTHORIZED,
            status: ResponseStatus::Unauthorized,
            message: None,
        }
    }

    /// 503 `unknown`: the operator cannot serve now; retrying may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ResponseStatus::Unknown,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&StatusOnly {
            status: self.status,
            message: self.message,
        })
        .expect("status JSON serialises");
        (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// The request body, read up to [`MAX_BODY_BYTES`] (more is a 413 with the status JSON).
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ResponseStatus::ClientError,
                format!("Request body larger than {MAX_BODY_BYTES} bytes"),
            )
        };
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            && len.parse::<usize>().is_ok_and(|n| n > MAX_BODY_BYTES)
        {
            return Err(too_large());
        }
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map(LimitedBody)
            .map_err(|e| {
                if is_length_limit(&e) {
                    too_large()
                } else {
                    ApiError::client_error(format!("Invalid body: {e}"))
                }
            })
    }
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

/// CORS on every response: any origin is echoed (as upstream); preflights are answered here.
async fn cors(req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allow_origin = origin.unwrap_or_else(|| HeaderValue::from_static("*"));
    let mut response = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, X-UID2-Client-Version, Authorization"),
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

/// Whether the request body is raw bytes (`Content-Type: application/octet-stream`).
pub(crate) fn is_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// Every route, as metrics label them.
pub const ROUTES: &[&str] = &[
    "/v2/token/generate",
    "/v2/token/refresh",
    "/v2/token/validate",
    "/v2/token/logout",
    "/v2/token/client-generate",
    "/v2/identity/map",
    "/v3/identity/map",
    "/v2/identity/buckets",
    "/v2/optout/status",
    "/v2/key/sharing",
    "/v2/key/bidstream",
    "/v2/key/latest",
    "/v1/token/generate",
    "/v1/token/refresh",
    "/v1/token/validate",
    "/v1/identity/map",
    "/ops/healthcheck",
    "/ops/baseline",
    "/metrics",
    "/static/js/{file}",
];

/// Counts every request by route and status, and times it.
async fn record_metrics(State(op): State<Arc<Operator>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| crate::metrics::UNMATCHED.to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    op.request_metrics
        .record(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Builds the router of `operator`.
pub fn router(operator: Arc<Operator>) -> Router {
    let mut app = Router::new()
        .route("/v2/token/generate", post(token::generate))
        .route("/v2/token/refresh", post(token::refresh))
        .route("/v2/token/validate", post(token::validate))
        .route("/v2/token/logout", post(token::logout))
        .route("/v2/token/client-generate", post(cstg::client_generate))
        .route("/v2/identity/map", post(identity_map::map_v2))
        .route("/v3/identity/map", post(identity_map::map_v3))
        .route("/v2/identity/buckets", post(identity_map::buckets))
        .route("/v2/optout/status", post(identity_map::optout_status))
        .route("/v2/key/sharing", post(keys::sharing))
        .route("/v2/key/bidstream", post(keys::bidstream))
        .route("/v2/key/latest", post(keys::latest))
        .route("/v1/token/generate", get(legacy::generate))
        .route("/v1/token/refresh", get(legacy::refresh))
        .route("/v1/token/validate", get(legacy::validate))
        .route(
            "/v1/identity/map",
            get(legacy::map_one).post(legacy::map_many),
        )
        .route("/ops/healthcheck", get(ops::healthcheck))
        .route("/metrics", get(ops::metrics))
        .route("/static/js/{file}", get(ops::static_js));
    if operator.config().enable_baseline_route {
        app = app.route("/ops/baseline", post(ops::baseline));
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            operator.clone(),
            record_metrics,
        ))
        .layer(axum::middleware::from_fn(cors))
        .with_state(operator)
}

/// A 200 response with a body and content type.
pub(crate) fn ok(content_type: &'static str, body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.into(),
    )
        .into_response()
}
