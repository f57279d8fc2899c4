//! The legacy v1 endpoints: plain JSON answers equal to their v2 forms, opt-outs respected,
//! refusals in upstream's shapes, and the whole surface gone when the legacy API is off.

mod common;

use common::TestOperator;
use uid2_operator::OperatorConfig;
use uid2_operator::admin::NewClient;

#[tokio::test]
async fn the_legacy_api_respects_opt_outs_and_can_be_turned_off() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    t.opt_out(serde_json::json!({"email": "gone@example.com"}))
        .await;
    for (client, path) in [
        (&t.publisher, "/v1/token/generate"),
        (&t.mapper, "/v1/identity/map"),
    ] {
        let auth = format!("Bearer {}", client.api_key);
        let reply = t
            .send(
                "GET",
                &format!("{path}?email=gone%40example.com"),
                &[("Authorization", &auth)],
                vec![],
            )
            .await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(
            reply.json(),
            serde_json::json!({"status": "optout"}),
            "{path}"
        );
    }

    let v2_only = TestOperator::start(OperatorConfig {
        legacy_api: false,
        ..OperatorConfig::default()
    })
    .await;
    let auth = format!("Bearer {}", v2_only.publisher.api_key);
    for path in [
        "/v1/token/generate?email=a%40example.com",
        "/v1/token/refresh?refresh_token=x",
        "/v1/token/validate?token=x&email=a%40example.com",
        "/v1/identity/map?email=a%40example.com",
        "/v1/identity/buckets?since_timestamp=2020-01-01T00%3A00%3A00",
        "/v1/key/latest",
    ] {
        let reply = v2_only
            .send("GET", path, &[("Authorization", &auth)], vec![])
            .await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    let v2 = v2_only
        .call(
            &v2_only.publisher,
            "/v2/token/generate",
            serde_json::json!({"email": "a@example.com"}),
        )
        .await
        .unwrap();
    assert_eq!(v2["status"], "success");
}

#[tokio::test]
async fn v1_map_buckets_and_keys_refuse_keys_in_plain_text() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let generator = format!("Bearer {}", t.publisher.api_key);
    for (method, path, body) in [
        ("GET", "/v1/identity/map?email=a@example.com", ""),
        ("POST", "/v1/identity/map", r#"{"email":["a@example.com"]}"#),
        (
            "GET",
            "/v1/identity/buckets?since_timestamp=2020-01-01T00:00:00",
            "",
        ),
        ("GET", "/v1/key/latest", ""),
    ] {
        for headers in [vec![], vec![("Authorization", generator.as_str())]] {
            let reply = t.send(method, path, &headers, body.into()).await;
            assert_eq!(
                (
                    reply.status,
                    reply.content_type.as_str(),
                    reply.body.as_slice()
                ),
                (401, "text/plain", &b"Unauthorized"[..]),
                "{method} {path}"
            );
        }
    }
    // The other legacy routes keep the JSON answer.
    let v1_generate = t
        .send("GET", "/v1/token/generate?email=a@example.com", &[], vec![])
        .await;
    assert_eq!(v1_generate.body, br#"{"status":"unauthorized"}"#);
}

/// `/v1/identity/buckets` and `/v1/key/latest` answer in plain JSON exactly what their v2 forms
/// answer inside the envelope, and refuse a missing or malformed `since_timestamp` as v2 does.
#[tokio::test]
async fn v1_buckets_and_keys_answer_what_v2_answers() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let v1 = async |client: &NewClient, path: &str| {
        let auth = format!("Bearer {}", client.api_key);
        t.send("GET", path, &[("Authorization", &auth)], vec![])
            .await
    };

    for (since, buckets) in [("1970-01-01T00:00:00", 64), ("2999-01-01T00:00:00", 0)] {
        let plain = v1(
            &t.mapper,
            &format!(
                "/v1/identity/buckets?since_timestamp={}",
                since.replace(':', "%3A")
            ),
        )
        .await;
        assert_eq!(
            (plain.status, plain.content_type.as_str()),
            (200, "application/json")
        );
        let plain = plain.json();
        assert_eq!(plain["body"].as_array().unwrap().len(), buckets, "{since}");
        let sealed = t
            .call(
                &t.mapper,
                "/v2/identity/buckets",
                serde_json::json!({"since_timestamp": since}),
            )
            .await
            .unwrap();
        assert_eq!(plain, sealed, "since {since}");
    }
    for (query, message) in [
        ("", "missing parameter since_timestamp"),
        (
            "?since_timestamp=yesterday",
            "invalid date, must conform to ISO 8601",
        ),
    ] {
        let refused = v1(&t.mapper, &format!("/v1/identity/buckets{query}")).await;
        assert_eq!(refused.status, 400, "{query}");
        assert_eq!(
            refused.json(),
            serde_json::json!({"status": "client_error", "message": message})
        );
    }

    let plain = v1(&t.dsp, "/v1/key/latest").await;
    assert_eq!(plain.status, 200);
    let plain = plain.json();
    let keys = plain["body"].as_array().unwrap();
    assert!(
        keys.iter().any(|k| k["site_id"] == 2001),
        "the reader's own keys are listed: {keys:?}"
    );
    let sealed = t
        .call(&t.dsp, "/v2/key/latest", serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(plain, sealed);
}
