//! Refresh tokens open under refresh keys only. A bidder holds the master keys and a sharer its
//! site's keys; a refresh token or wrapper sealed under one of those must be answered exactly as
//! junk is, never refreshed into genuine tokens.

mod common;

use common::{TestOperator, percent_encode};
use uid2_operator::OperatorConfig;

#[tokio::test]
async fn tokens_under_master_or_site_keys_are_answered_as_junk() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let auth = format!("Bearer {}", t.publisher.api_key);
    for bad in t.bad_refresh_tokens() {
        for headers in [vec![], vec![("Authorization", auth.as_str())]] {
            let forged = t
                .send(
                    "POST",
                    "/v2/token/refresh",
                    &headers,
                    bad.token.clone().into(),
                )
                .await;
            let junk = t
                .send(
                    "POST",
                    "/v2/token/refresh",
                    &headers,
                    bad.junk.clone().into(),
                )
                .await;
            assert_eq!(forged.status, 400, "{}: {forged:?}", bad.name);
            assert_eq!(
                (forged.status, forged.json()),
                (junk.status, junk.json()),
                "{} (authenticated: {})",
                bad.name,
                !headers.is_empty()
            );
            let status = forged.json()["status"].as_str().unwrap().to_owned();
            let message = forged.json()["message"].as_str().unwrap().to_owned();
            if bad.name.starts_with("wrapper under") {
                // The wrapper names a key that is not a refresh key: as if it did not exist.
                assert_eq!(status, "client_error", "{}", bad.name);
                assert!(
                    message.starts_with("Invalid key: Generator of this token"),
                    "{}: {message}",
                    bad.name
                );
            } else if headers.is_empty() {
                assert_eq!(status, "error", "{}", bad.name);
            } else {
                assert_eq!(
                    (status.as_str(), message.as_str()),
                    ("invalid_token", "Invalid Token presented"),
                    "{}",
                    bad.name
                );
            }
        }
        let v1 = |token: &str| format!("/v1/token/refresh?refresh_token={}", percent_encode(token));
        let forged = t.send("GET", &v1(&bad.token), &[], vec![]).await;
        let junk = t.send("GET", &v1(&bad.junk), &[], vec![]).await;
        assert_eq!(forged.status, 400, "v1 {}: {forged:?}", bad.name);
        assert_eq!(
            (forged.status, forged.json()),
            (junk.status, junk.json()),
            "v1 {}",
            bad.name
        );
    }
}

#[tokio::test]
async fn the_same_token_under_the_refresh_key_refreshes() {
    // The control: the forged tokens above fail because of their key, not their contents.
    let t = TestOperator::start(OperatorConfig::default()).await;
    let snap = t.operator.snapshot();
    let refresh = snap
        .keys
        .refresh_key(uid2_operator::now_ms() / 1000)
        .unwrap()
        .clone();
    let inner = t.refresh_token_under(&refresh, "forged@example.com");
    let wrapped = t.wrap_under(&refresh, inner.clone());
    let bare = t
        .send("POST", "/v2/token/refresh", &[], inner.into_bytes())
        .await;
    assert_eq!(bare.status, 200, "{bare:?}");
    assert_eq!(bare.json()["status"], "success");
    let sealed = t
        .send("POST", "/v2/token/refresh", &[], wrapped.into_bytes())
        .await;
    assert_eq!(sealed.status, 200, "{sealed:?}");
}
