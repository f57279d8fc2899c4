//! Inputs at the edges of the official operator's rules, answered as it answers them: `null`
//! identity lists, the date-time forms Java's parser takes, exact-string opt-out lookups, the
//! legacy v1 quirks, the refresh of an empty body and the headers a page may send cross-origin.

mod common;

use common::{Reply, TestOperator};
use serde_json::json;
use uid2_operator::OperatorConfig;

async fn operator() -> TestOperator {
    TestOperator::start(OperatorConfig::default()).await
}

fn client_error(reply: &Reply, message: &str) {
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"status": "client_error", "message": message})
    );
}

#[tokio::test]
async fn a_null_identity_list_counts_as_absent_in_the_v2_map() {
    let t = operator().await;
    let mapped = t
        .call(
            &t.mapper,
            "/v2/identity/map",
            json!({"email": null, "phone": ["+12345678901"]}),
        )
        .await
        .unwrap();
    let entries = mapped["body"]["mapped"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["identifier"], "+12345678901");

    let only_null = t
        .call(&t.mapper, "/v2/identity/map", json!({"email": null}))
        .await
        .unwrap_err();
    client_error(
        &only_null,
        "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified",
    );
}

#[tokio::test]
async fn the_v3_map_refuses_only_an_empty_payload() {
    let t = operator().await;
    let nulls = t
        .call(&t.mapper, "/v3/identity/map", json!({"email": null}))
        .await
        .unwrap();
    assert_eq!(
        nulls,
        json!({"status": "success", "body": {"email": [], "email_hash": [], "phone": [], "phone_hash": []}})
    );
    let empty = t
        .call(&t.mapper, "/v3/identity/map", json!({}))
        .await
        .unwrap_err();
    client_error(
        &empty,
        "Required Parameter Missing: one or more of [email, email_hash, phone, phone_hash] must be specified",
    );
}

#[tokio::test]
async fn buckets_read_since_timestamp_as_java_does() {
    let t = operator().await;
    for since in ["2000-01-01t00:00:00", "2000-01-01T00:00:00."] {
        let answer = t
            .call(
                &t.mapper,
                "/v2/identity/buckets",
                json!({ "since_timestamp": since }),
            )
            .await
            .unwrap_or_else(|e| panic!("{since}: {e:?}"));
        // Every bucket of the test store was written after 2000.
        assert_eq!(answer["body"].as_array().unwrap().len(), 64, "{since}");
    }
    for since in [
        json!(1_654_088_400),
        json!(true),
        json!("2000-01-01T00:00."),
    ] {
        let refused = t
            .call(
                &t.mapper,
                "/v2/identity/buckets",
                json!({ "since_timestamp": since }),
            )
            .await
            .unwrap_err();
        client_error(&refused, "invalid date, must conform to ISO 8601");
    }
    let missing = t
        .call(
            &t.mapper,
            "/v2/identity/buckets",
            json!({"since_timestamp": null}),
        )
        .await
        .unwrap_err();
    client_error(&missing, "missing parameter since_timestamp");
}

#[tokio::test]
async fn optout_status_matches_the_raw_uid_text_exactly() {
    let t = operator().await;
    let email = "leaving@example.com";
    let mapped = t
        .call(&t.mapper, "/v2/identity/map", json!({ "email": [email] }))
        .await
        .unwrap();
    let raw_uid = mapped["body"]["mapped"][0]["advertising_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.opt_out(json!({ "email": email })).await;

    // 33 bytes are 44 base64 characters with no padding, so the variants are of the alphabet.
    let url_safe = raw_uid.replace('+', "-").replace('/', "_");
    let status = t
        .call(
            &t.mapper,
            "/v2/optout/status",
            json!({ "advertising_ids": [raw_uid, url_safe] }),
        )
        .await
        .unwrap();
    let listed = status["body"]["opted_out"].as_array().unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|o| o["advertising_id"].as_str().unwrap())
        .collect();
    if url_safe == raw_uid {
        assert_eq!(ids, [raw_uid.as_str(), url_safe.as_str()]);
    } else {
        assert_eq!(
            ids,
            [raw_uid.as_str()],
            "only the text as the operator writes it"
        );
    }
    assert!(listed[0]["opted_out_since"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn an_opt_out_status_request_of_the_wrong_shape_says_what_is_wrong() {
    let t = operator().await;
    for payload in [
        json!({ "advertising_ids": ["AAAA", 5] }),
        json!({ "advertising_ids": "AAAA" }),
        json!({ "advertising_ids": [null] }),
    ] {
        let reply = t
            .call(&t.mapper, "/v2/optout/status", payload)
            .await
            .unwrap_err();
        client_error(
            &reply,
            "Invalid payload in body: advertising_ids must be an array of strings",
        );
    }
}

#[tokio::test]
async fn an_empty_or_binary_refresh_body_is_an_invalid_token() {
    let t = operator().await;
    let auth = format!("Bearer {}", t.publisher.api_key);
    for body in [Vec::new(), b"  \n".to_vec(), vec![0xff, 0xfe, b'A']] {
        let with_key = t
            .send(
                "POST",
                "/v2/token/refresh",
                &[("Authorization", &auth)],
                body.clone(),
            )
            .await;
        assert_eq!(with_key.status, 400, "{body:?}");
        assert_eq!(
            with_key.json(),
            json!({"status": "invalid_token", "message": "Invalid Token presented"})
        );
        let from_a_browser = t.send("POST", "/v2/token/refresh", &[], body.clone()).await;
        assert_eq!(from_a_browser.status, 400, "{body:?}");
        assert_eq!(
            from_a_browser.json(),
            json!({"status": "error", "message": "Error refreshing token"})
        );
    }
}

#[tokio::test]
async fn v1_refresh_of_a_wrapper_that_does_not_open_is_a_client_error() {
    let t = operator().await;
    // 388 characters: the v2 wrapper's length, so it is opened as one; key id 0 is unknown.
    let wrapper = "A".repeat(388);
    let reply = t
        .send(
            "GET",
            &format!("/v1/token/refresh?refresh_token={wrapper}"),
            &[],
            Vec::new(),
        )
        .await;
    client_error(
        &reply,
        "Invalid key: Generator of this token (Key ID: 0) does not exist.",
    );
}

#[tokio::test]
async fn v1_validate_answers_false_for_a_missing_or_junk_token() {
    let t = operator().await;
    let auth = format!("Bearer {}", t.publisher.api_key);
    let generated = t
        .send(
            "GET",
            "/v1/token/generate?email=validate@example.com",
            &[("Authorization", &auth)],
            Vec::new(),
        )
        .await
        .json();
    let token = generated["body"]["advertising_token"].as_str().unwrap();
    for (query, expected) in [
        (
            format!(
                "token={}&email=validate@example.com",
                common::percent_encode(token)
            ),
            true,
        ),
        ("token=junk&email=validate@example.com".to_owned(), false),
        ("email=validate@example.com".to_owned(), false),
        (
            format!(
                "token={}&email=someone@example.com",
                common::percent_encode(token)
            ),
            false,
        ),
    ] {
        let reply = t
            .send(
                "GET",
                &format!("/v1/token/validate?{query}"),
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(reply.status, 200, "{query}: {reply:?}");
        assert_eq!(
            reply.json(),
            json!({"status": "success", "body": expected}),
            "{query}"
        );
    }
    // The identity is still required.
    let no_identity = t
        .send("GET", "/v1/token/validate?token=junk", &[], Vec::new())
        .await;
    assert_eq!(no_identity.status, 400);
}

#[tokio::test]
async fn a_repeated_v1_query_parameter_keeps_its_first_value() {
    let t = operator().await;
    let auth = format!("Bearer {}", t.mapper.api_key);
    let reply = t
        .send(
            "GET",
            "/v1/identity/map?email=first@example.com&email=second@example.com",
            &[("Authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["body"]["identifier"], "first@example.com");
}

/// The v1 batch map words a missing or doubled identity list as the official v1 endpoint
/// (`getIdentityBulkInputV1`) did, without the v2 endpoints' "Required Parameter Missing".
#[tokio::test]
async fn the_v1_batch_map_words_a_missing_list_as_upstream_v1() {
    let t = operator().await;
    let auth = format!("Bearer {}", t.mapper.api_key);
    for body in [
        "",
        "{}",
        r#"{"email": ["a@example.com"], "phone": ["+12345678901"]}"#,
    ] {
        let reply = t
            .send(
                "POST",
                "/v1/identity/map",
                &[("Authorization", &auth)],
                body.as_bytes().to_vec(),
            )
            .await;
        client_error(
            &reply,
            "Exactly one of [email, email_hash, phone, phone_hash] must be specified",
        );
    }
}

#[tokio::test]
async fn only_validate_lets_a_page_send_an_api_key() {
    let t = operator().await;
    let preflight = |path: &'static str| {
        let t = &t;
        async move {
            let reply = t
                .send(
                    "OPTIONS",
                    path,
                    &[
                        ("Origin", "https://publisher.example"),
                        ("Access-Control-Request-Method", "POST"),
                        ("Access-Control-Request-Headers", "authorization"),
                    ],
                    Vec::new(),
                )
                .await;
            assert_eq!(reply.status, 204);
            assert_eq!(
                reply.headers["access-control-allow-origin"],
                "https://publisher.example"
            );
            let allowed: Vec<String> = reply.headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            for always in ["content-type", "x-uid2-client-version"] {
                assert!(allowed.iter().any(|h| h == always), "{path}: {allowed:?}");
            }
            allowed.iter().any(|h| h == "authorization")
        }
    };
    assert!(preflight("/v2/token/validate").await);
    for path in [
        "/v2/token/generate",
        "/v2/token/refresh",
        "/v2/token/client-generate",
        "/v2/identity/map",
        "/v2/key/bidstream",
    ] {
        assert!(!preflight(path).await, "{path} allows Authorization");
    }
}
