//! Operations routes: health, the browser SDK, and the load generator's baseline.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, LimitedBody, ok};
use crate::{Operator, now_ms};

/// The browser SDK, built into the binary.
const SDK_JS: &str = include_str!("../../../../sdk/js/uid2-sdk.js");

/// Names the SDK is served under: the current one, and those of the official builds that
/// publishers' script tags already reference (this SDK keeps their API).
const SDK_NAMES: &[&str] = &["uid2-sdk.js", "uid2-sdk-1.0.0.js", "uid2-sdk-2.0.0.js"];

/// After this long without reading the store, health reports the snapshot as stale.
const STALE_AFTER_MS: i64 = 10_000;

/// `GET /ops/healthcheck`: `OK` while serving. A store outage does not fail the check (the
/// operator keeps serving from its snapshot, and a load balancer should keep sending traffic);
/// it is reported in the body.
pub(super) async fn healthcheck(State(op): State<Arc<Operator>>) -> Response {
    let age_ms = now_ms() - op.store_health().last_success_ms();
    let body = if age_ms > STALE_AFTER_MS {
        format!(
            "OK\nstore: unreachable for {} s, serving from the last snapshot\n",
            age_ms / 1000
        )
    } else {
        "OK".to_owned()
    };
    ok("text/plain", body)
}

/// `GET /static/js/{file}`: the browser SDK.
pub(super) async fn static_js(Path(file): Path<String>) -> Response {
    let versioned = format!("uid2-sdk-{}.js", env!("CARGO_PKG_VERSION"));
    if SDK_NAMES.contains(&file.as_str()) || file == versioned {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "application/javascript; charset=utf-8",
                ),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            SDK_JS,
        )
            .into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            uid2_proto::wire::ResponseStatus::ClientError,
            "Unknown file",
        )
        .into_response()
    }
}

/// `POST /ops/baseline?size=N`: reads the body and answers `N` bytes with no UID2 work, so the
/// load generator can measure the HTTP stack alone in the same run as a real endpoint.
pub(super) async fn baseline(
    RawQuery(query): RawQuery,
    LimitedBody(body): LimitedBody,
) -> Response {
    let size = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("size=")))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(body.len())
        .min(1 << 20);
    ok("text/plain", vec![b'x'; size])
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(op): State<Arc<Operator>>) -> Response {
    let snap = op.snapshot();
    let now = now_ms();
    let health = op.store_health();
    let gauges = crate::metrics::Gauges {
        store_sync_age_s: (now - health.last_success_ms()) as f64 / 1000.0,
        snapshot_age_s: (now - snap.synced_at_ms) as f64 / 1000.0,
        store_reachable: health.consecutive_failures() == 0,
        store_errors_total: health.errors_total(),
        keys: snap.keys.ring.len(),
        salt_buckets: snap.salts.table.len(),
        optouts: snap.optouts.len(),
        clients: snap.clients.len(),
    };
    ok(
        "text/plain; version=0.0.4",
        crate::metrics::render(&op.request_metrics, &gauges),
    )
}
