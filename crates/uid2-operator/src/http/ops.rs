//! Operations routes: health, the browser SDK, and the load generator's baseline.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
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

/// After this long without a complete sync pass (or four sync intervals, if longer), health
/// reports the snapshot as behind.
const STALE_AFTER_MS: i64 = 10_000;

/// `GET /ops/healthcheck`: `OK` while serving. A store outage does not fail the check (the
/// operator keeps serving from its snapshot, and a load balancer should keep sending traffic);
/// it is reported in the body, in the words of what is known: how long since the snapshot was
/// last fully synced, and whether the store cannot be reached at all (rather than answering
/// with errors, as for a salt table that does not load). `/metrics` says the same as
/// `uid2_store_sync_age_seconds` and `uid2_store_reachable`. Only past
/// [`OperatorConfig::max_staleness`], if set, does the check fail: 503, `STALE`.
///
/// [`OperatorConfig::max_staleness`]: crate::OperatorConfig::max_staleness
pub(super) async fn healthcheck(State(op): State<Arc<Operator>>) -> Response {
    let (status, text) = health_answer(op.store_health(), &op.config, now_ms());
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// The healthcheck's status and body at `now`.
fn health_answer(
    health: &crate::StoreHealth,
    config: &crate::OperatorConfig,
    now: i64,
) -> (StatusCode, String) {
    let behind_ms = now - health.last_success_ms();
    let sync_ms = i64::try_from(config.sync_interval.as_millis()).unwrap_or(i64::MAX);
    match config.max_staleness {
        Some(max) if behind_ms > i64::try_from(max.as_millis()).unwrap_or(i64::MAX) => {
            // A 503 always says why, even within the grace the OK answer gives a slow sync.
            let text = health_text(health, now, 0);
            let detail = text.strip_prefix("OK").unwrap_or(&text);
            (StatusCode::SERVICE_UNAVAILABLE, format!("STALE{detail}"))
        }
        _ => (
            StatusCode::OK,
            health_text(health, now, STALE_AFTER_MS.max(sync_ms.saturating_mul(4))),
        ),
    }
}

/// The healthcheck's body at `now`: `OK`, and what is wrong with the store once the data is
/// more than `grace_ms` behind.
fn health_text(health: &crate::StoreHealth, now: i64, grace_ms: i64) -> String {
    let behind_ms = now - health.last_success_ms();
    if behind_ms <= grace_ms {
        return "OK".to_owned();
    }
    let behind_s = behind_ms / 1000;
    match health.unreachable_since_ms() {
        Some(since) => format!(
            "OK\nstore: unreachable for {} s, not fully synced for {behind_s} s; serving from \
             the last snapshot\n",
            (now - since) / 1000
        ),
        None => format!(
            "OK\nstore: reachable, but not fully synced for {behind_s} s (reloading failed); \
             serving from the last snapshot\n"
        ),
    }
}

/// `GET /static/js/{file}`: the browser SDK.
pub(super) async fn static_js(file: Result<Path<String>, PathRejection>) -> Response {
    // A path that is not UTF-8 once decoded (`%ff`) names no file either: the same 404, not
    // axum's plain-text rejection.
    let file = file.map(|Path(file)| file).unwrap_or_default();
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
pub(super) async fn baseline(RawQuery(query): RawQuery, body: LimitedBody) -> Response {
    let size = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("size=")))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(body.bytes.len())
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
        store_reachable: health.unreachable_since_ms().is_none(),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http_body_util::BodyExt;
    use uid2_proto::salt::BucketSecret;
    use uid2_store::{Precondition, StoreError};
    use uid2_testkit::store::HookedStore;

    use super::*;
    use crate::OperatorConfig;

    async fn text(response: Response) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_says_unreachable_only_when_the_store_cannot_be_reached() {
        let dir = tempfile::tempdir().unwrap();
        let store = uid2_store::open(&format!("sqlite://{}/uid2.db", dir.path().display()))
            .await
            .unwrap();
        let config = OperatorConfig::default();
        crate::admin::ensure_initialized(store.as_ref(), &config, 64, now_ms(), &mut rand::rng())
            .await
            .unwrap();
        let (hooked, down) = HookedStore::with_outage(store.clone());
        let given = crate::deployment::GivenSettings::all(config.raw_uid_settings());
        let settled = crate::deployment::settle(Arc::new(hooked), &given)
            .await
            .unwrap();
        let op = Operator::load(settled, config).await.unwrap();
        assert_eq!(
            health_answer(op.store_health(), &op.config, now_ms()).1,
            "OK"
        );

        // The store cannot be reached: read 30 s on (rather than waiting), health says so.
        down.store(true, Ordering::SeqCst);
        assert!(matches!(
            op.sync_once().await,
            Err(crate::SyncError::Store(StoreError::Unavailable(_)))
        ));
        let later = now_ms() + 30_000;
        let health = health_answer(op.store_health(), &op.config, later).1;
        assert!(
            health.starts_with("OK\nstore: unreachable for 30 s, not fully synced for 30 s"),
            "{health}"
        );
        let gauges = text(metrics(State(op.clone())).await).await;
        assert!(gauges.contains("uid2_store_reachable 0"), "{gauges}");

        // It answers again, but the salts it holds do not load (a salt over 64 KiB): the
        // snapshot stays behind, and the store is not called unreachable.
        down.store(false, Ordering::SeqCst);
        let mut bad = store.salts().await.unwrap().unwrap().value;
        bad.buckets[0].current = BucketSecret::Salt("x".repeat(70_000));
        store
            .replace_salt_buckets(&bad, &Precondition::default())
            .await
            .unwrap();
        assert!(matches!(
            op.sync_once().await,
            Err(crate::SyncError::Store(StoreError::Corrupt(_)))
        ));
        let health = health_answer(op.store_health(), &op.config, now_ms() + 30_000).1;
        assert!(
            health.starts_with("OK\nstore: reachable, but not fully synced for 30 s"),
            "{health}"
        );
        assert!(!health.contains("unreachable"), "{health}");
        let gauges = text(metrics(State(op.clone())).await).await;
        assert!(gauges.contains("uid2_store_reachable 1"), "{gauges}");
        assert_eq!(op.store_health().consecutive_failures(), 2);

        // The check itself fails only past a configured staleness.
        let health = op.store_health();
        let (status, _) = health_answer(health, &op.config, now_ms() + 3_600_000);
        assert_eq!(status, StatusCode::OK, "no limit by default");
        let strict = OperatorConfig {
            max_staleness: Some(std::time::Duration::from_secs(60)),
            ..OperatorConfig::default()
        };
        assert_eq!(health_answer(health, &strict, now_ms()).0, StatusCode::OK);
        let (status, body) = health_answer(health, &strict, now_ms() + 61_000);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("STALE\nstore: reachable, but not fully synced for 6"),
            "{body}"
        );
        // A 503 says why even before the OK answer would (its 10 s grace).
        let quick = OperatorConfig {
            max_staleness: Some(std::time::Duration::from_secs(5)),
            ..OperatorConfig::default()
        };
        let (status, body) = health_answer(health, &quick, now_ms() + 6_000);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("STALE\nstore: reachable, but not fully"),
            "{body}"
        );
        // A long sync interval is not staleness: four of them pass before the body says so.
        let slow = OperatorConfig {
            sync_interval: std::time::Duration::from_secs(30),
            ..OperatorConfig::default()
        };
        assert_eq!(health_answer(health, &slow, now_ms() + 100_000).1, "OK");
        assert_ne!(health_answer(health, &slow, now_ms() + 130_000).1, "OK");
    }
}
