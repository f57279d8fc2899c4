//! The SDK-facing endpoints answer however an SDK spells their paths (a base URL with a
//! trailing slash makes `//v2/…`), as the official operator does, through the whole router:
//! the answer, CORS and metrics see the route; the operator's own routes answer only their
//! exact paths, and routes that are off stay off under every spelling.

mod common;

use common::TestOperator;
use uid2_operator::OperatorConfig;
use uid2_operator::metrics::UNMATCHED;

#[tokio::test]
async fn sdk_paths_route_however_they_are_spelled() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let spellings = [
        "//v2/token/generate",
        "/v2/token/generate/",
        "/v2//token/generate",
        "/v2/token/%67enerate",
        "/v2/./x/../token/generate",
    ];
    for path in spellings {
        let answer = t
            .call(
                &t.publisher,
                path,
                serde_json::json!({"email": "paths@example.com"}),
            )
            .await
            .unwrap_or_else(|reply| panic!("{path}: {reply:?}"));
        assert_eq!(answer["status"], "success", "{path}");
    }
    let metrics = t.operator.request_metrics();
    assert_eq!(
        metrics.count("/v2/token/generate", 200),
        spellings.len() as u64
    );
    assert_eq!(metrics.count(UNMATCHED, 404), 0);

    // The preflight of a spelled-out path gets that route's CORS answer (validate alone lets a
    // page send an API key).
    let preflight = t
        .send(
            "OPTIONS",
            "/v2/token/validate/",
            &[
                ("Origin", "https://www.example.com"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            vec![],
        )
        .await;
    let allowed = preflight
        .headers
        .get("access-control-allow-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(allowed.contains("authorization"), "{preflight:?}");
}

#[tokio::test]
async fn own_routes_and_routes_turned_off_answer_no_other_spelling() {
    let t = TestOperator::start(OperatorConfig {
        legacy_api: false,
        ..OperatorConfig::default()
    })
    .await;
    assert_eq!(t.send("GET", "/metrics", &[], vec![]).await.status, 200);
    assert_eq!(
        t.send("GET", "/ops/healthcheck", &[], vec![]).await.status,
        200
    );
    for path in [
        "//metrics",
        "/metrics/",
        "/%6detrics",
        "/v2/../metrics",
        "//ops/healthcheck",
        "/ops/healthcheck/",
        "//v1/token/generate?email=a%40example.com",
        "/v1/token/generate/?email=a%40example.com",
    ] {
        let reply = t.send("GET", path, &[], vec![]).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(reply.json()["status"], "client_error", "{path}");
    }
}
