//! The bad-input matrix: every endpoint, every kind of bad input, each must be answered with a
//! 4xx and the UID2 status JSON, never a 5xx and never a panic.

mod common;

use common::TestOperator;
use uid2_operator::{OperatorConfig, now_ms};
use uid2_proto::encoding::{base64_decode, base64_encode};

struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn case(
    name: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    headers: Vec<(String, String)>,
    body: impl Into<Vec<u8>>,
) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers,
        body: body.into(),
    }
}

fn bearer(key: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {key}"))]
}

/// Envelope endpoints with the client that may call them and payloads of the wrong kind.
fn envelope_endpoints(
    t: &TestOperator,
) -> Vec<(
    &'static str,
    &uid2_operator::admin::NewClient,
    Vec<&'static str>,
)> {
    let bad_identity = vec![
        r#"{}"#,
        r#"{"email": 5}"#,
        r#"{"email": ["a@b.com"]}"#,
        r#"{"email": "not an email"}"#,
        r#"{"email": "a@b@c.com"}"#,
        r#"{"phone": "555-555-5555"}"#,
        r#"{"phone": "+1234567890123456"}"#,
        r#"{"email_hash": "short"}"#,
        r#"{"phone_hash": "zz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTs"}"#,
        r#"{"email": "a@b.com", "phone": "+12345678901"}"#,
        r#"{"email": null}"#,
    ];
    let mut validate = bad_identity.clone();
    validate.extend([
        r#"{"email": "a@b.com"}"#,
        r#"{"email": "a@b.com", "token": 5}"#,
        r#"{"email": "a@b.com", "token": "junk"}"#,
        r#"{"email": "a@b.com", "token": "AIAAAACkOqJj9VoxXJNnuX3v-ymceRf8"}"#,
    ]);
    vec![
        ("/v2/token/generate", &t.publisher, bad_identity.clone()),
        ("/v2/token/validate", &t.publisher, validate),
        ("/v2/token/logout", &t.optout, bad_identity),
        (
            "/v2/identity/map",
            &t.mapper,
            vec![
                r#"{}"#,
                r#"{"email": "a@b.com"}"#,
                r#"{"email": [1, 2]}"#,
                r#"{"email": [null]}"#,
                r#"{"email": ["a@b.com"], "phone": ["+12345678901"]}"#,
                r#"{"email": {"a": 1}}"#,
            ],
        ),
        (
            "/v3/identity/map",
            &t.mapper,
            vec![
                r#"{}"#,
                r#"{"email": "a@b.com"}"#,
                r#"{"email": [null]}"#,
                r#"{"email": ["a"], "link_id": "x"}"#,
                r#"{"email_hash": [5]}"#,
            ],
        ),
        (
            "/v2/identity/buckets",
            &t.mapper,
            vec![
                r#"{}"#,
                r#"{"since_timestamp": 5}"#,
                r#"{"since_timestamp": "yesterday"}"#,
                r#"{"since_timestamp": "2022-13-01T00:00:00"}"#,
            ],
        ),
        (
            "/v2/optout/status",
            &t.mapper,
            vec![
                r#"{}"#,
                r#"{"advertising_ids": "x"}"#,
                r#"{"advertising_ids": [1]}"#,
            ],
        ),
        ("/v2/key/sharing", &t.sharer, vec![]),
        ("/v2/key/bidstream", &t.dsp, vec![]),
        ("/v2/key/latest", &t.dsp, vec![]),
    ]
}

async fn cases(t: &TestOperator) -> Vec<Case> {
    let mut out = Vec::new();
    let now = now_ms();
    for (path, client, bad_payloads) in envelope_endpoints(t) {
        let auth = bearer(&client.api_key);
        out.push(case("no auth", "POST", path, vec![], "x"));
        out.push(case(
            "unknown key",
            "POST",
            path,
            bearer("UID2-C-L-1-abcdef.nope"),
            "x",
        ));
        out.push(case(
            "non-bearer auth",
            "POST",
            path,
            vec![("Authorization".into(), format!("Basic {}", client.api_key))],
            "x",
        ));
        out.push(case(
            "wrong role",
            "POST",
            path,
            bearer(&if path == "/v2/token/logout" {
                t.publisher.api_key.clone()
            } else {
                t.optout.api_key.clone()
            }),
            "x",
        ));
        out.push(case("empty body", "POST", path, auth.clone(), ""));
        out.push(case(
            "bad base64",
            "POST",
            path,
            auth.clone(),
            "%%%not base64%%%",
        ));
        out.push(case(
            "unencrypted json",
            "POST",
            path,
            auth.clone(),
            r#"{"email":"a@b.com"}"#,
        ));
        out.push(case(
            "short envelope",
            "POST",
            path,
            auth.clone(),
            base64_encode(&[1u8; 20]),
        ));
        let (good, _) = TestOperator::seal(client, br#"{"email":"a@b.com"}"#, now);
        let raw = base64_decode(&good).unwrap();
        let mut wrong_version = raw.clone();
        wrong_version[0] = 7;
        out.push(case(
            "wrong version byte",
            "POST",
            path,
            auth.clone(),
            base64_encode(&wrong_version),
        ));
        out.push(case(
            "truncated ciphertext",
            "POST",
            path,
            auth.clone(),
            base64_encode(&raw[..raw.len() - 5]),
        ));
        let mut flipped = raw.clone();
        flipped[30] ^= 1;
        out.push(case(
            "tampered ciphertext",
            "POST",
            path,
            auth.clone(),
            base64_encode(&flipped),
        ));
        out.push(case(
            "binary garbage",
            "POST",
            path,
            [
                auth.clone(),
                vec![("Content-Type".into(), "application/octet-stream".into())],
            ]
            .concat(),
            vec![0xffu8; 100],
        ));
        let (stale, _) = TestOperator::seal(client, b"{}", now - 121_000);
        out.push(case("stale timestamp", "POST", path, auth.clone(), stale));
        let (future, _) = TestOperator::seal(client, b"{}", now + 121_000);
        out.push(case("future timestamp", "POST", path, auth.clone(), future));
        let other = if client.api_key == t.mapper.api_key {
            &t.dsp
        } else {
            &t.mapper
        };
        let (wrong_secret, _) = TestOperator::seal(other, b"{}", now);
        out.push(case(
            "wrong secret",
            "POST",
            path,
            auth.clone(),
            wrong_secret,
        ));
        out.push(case(
            "oversized body",
            "POST",
            path,
            auth.clone(),
            vec![b'A'; (1 << 20) + 1],
        ));
        for payload in ["not json", "[1,2]", "\"str\"", "{\"unterminated\": "] {
            let (body, _) = TestOperator::seal(client, payload.as_bytes(), now);
            out.push(case(
                format!("payload {payload:?}"),
                "POST",
                path,
                auth.clone(),
                body,
            ));
        }
        for payload in bad_payloads {
            let (body, _) = TestOperator::seal(client, payload.as_bytes(), now);
            out.push(case(
                format!("payload {payload}"),
                "POST",
                path,
                auth.clone(),
                body,
            ));
        }
    }
    // Too many ids for /v2/optout/status.
    let ids: Vec<String> = (0..5001).map(|_| base64_encode(&[1u8; 32])).collect();
    let (body, _) = TestOperator::seal(
        &t.mapper,
        serde_json::json!({ "advertising_ids": ids })
            .to_string()
            .as_bytes(),
        now,
    );
    out.push(case(
        "5001 ids",
        "POST",
        "/v2/optout/status",
        bearer(&t.mapper.api_key),
        body,
    ));

    // Refresh: junk of every shape, with and without a key.
    for auth in [vec![], bearer(&t.publisher.api_key)] {
        for (name, body) in [
            ("empty", String::new()),
            ("junk", "junk".to_owned()),
            ("168 As", "A".repeat(168)),
            ("388 As", "A".repeat(388)),
            ("388 not base64", "%".repeat(388)),
            ("388 unknown key", base64_encode(&[0u8; 291])),
            (
                "bad utf-8",
                String::from_utf8_lossy(&[0xff, 0xfe]).into_owned(),
            ),
        ] {
            out.push(case(
                format!("refresh {name}"),
                "POST",
                "/v2/token/refresh",
                auth.clone(),
                body,
            ));
        }
        out.push(case(
            "refresh oversized",
            "POST",
            "/v2/token/refresh",
            auth.clone(),
            vec![b'A'; (1 << 20) + 1],
        ));
    }
    out.push(case(
        "refresh raw bytes",
        "POST",
        "/v2/token/refresh",
        vec![],
        vec![0xffu8, 0, 1],
    ));
    // Refresh tokens forged under keys bidders hold, and wrappers that open but hold junk.
    for bad in t.bad_refresh_tokens() {
        for auth in [vec![], bearer(&t.publisher.api_key)] {
            out.push(case(
                format!("refresh {}", bad.name),
                "POST",
                "/v2/token/refresh",
                auth,
                bad.token.clone(),
            ));
        }
        out.push(case(
            format!("v1 refresh {}", bad.name),
            "GET",
            format!(
                "/v1/token/refresh?refresh_token={}",
                common::percent_encode(&bad.token)
            ),
            vec![],
            "",
        ));
    }

    // Client-side generation.
    let origin = vec![("Origin".into(), "http://localhost:8080".into())];
    for (name, body) in [
        ("empty", ""),
        ("not json", "nope"),
        ("array", "[]"),
        (
            "wrong types",
            r#"{"payload": 5, "iv": [], "public_key": {}, "timestamp": "x", "subscription_id": 1}"#,
        ),
        (
            "unknown subscription",
            r#"{"payload":"a","iv":"b","public_key":"c","timestamp":1,"subscription_id":"nope"}"#,
        ),
    ] {
        out.push(case(
            format!("cstg {name}"),
            "POST",
            "/v2/token/client-generate",
            origin.clone(),
            body,
        ));
    }
    // Client-side generation refused after the origin check and the key agreement.
    for bad in t.bad_cstg_requests().await {
        out.push(case(
            format!("cstg {}", bad.name),
            "POST",
            "/v2/token/client-generate",
            origin.clone(),
            bad.body,
        ));
    }
    // Legacy v1.
    let gen_auth = bearer(&t.publisher.api_key);
    for query in [
        "",
        "?email=",
        "?email=a@b@c",
        "?email=a@b.com&phone=%2B12345678901",
        "?phone=123",
        "?email_hash=zzz",
        "?%zz=1",
    ] {
        out.push(case(
            format!("v1 generate {query}"),
            "GET",
            format!("/v1/token/generate{query}"),
            gen_auth.clone(),
            "",
        ));
    }
    out.push(case(
        "v1 generate no auth",
        "GET",
        "/v1/token/generate?email=a@b.com",
        vec![],
        "",
    ));
    for query in ["", "?refresh_token=junk", "?refresh_token="] {
        out.push(case(
            format!("v1 refresh {query}"),
            "GET",
            format!("/v1/token/refresh{query}"),
            vec![],
            "",
        ));
    }
    // Without an identity; a missing or junk token with one is `false`, as v1 answered it
    // (upstream_edges.rs).
    for query in ["", "?token=junk", "?token=junk&email=not-an-email"] {
        out.push(case(
            format!("v1 validate {query}"),
            "GET",
            format!("/v1/token/validate{query}"),
            vec![],
            "",
        ));
    }
    let map_auth = bearer(&t.mapper.api_key);
    out.push(case(
        "v1 map get none",
        "GET",
        "/v1/identity/map",
        map_auth.clone(),
        "",
    ));
    out.push(case(
        "v1 map post junk",
        "POST",
        "/v1/identity/map",
        map_auth.clone(),
        "junk",
    ));
    out.push(case(
        "v1 map post wrong type",
        "POST",
        "/v1/identity/map",
        map_auth.clone(),
        r#"{"email": "x"}"#,
    ));
    for query in [
        "",
        "?since_timestamp=",
        "?since_timestamp=1700000000",
        "?since_timestamp=2024-13-01T00:00:00",
        "?since_timestamp=%ff",
    ] {
        out.push(case(
            format!("v1 buckets {query}"),
            "GET",
            format!("/v1/identity/buckets{query}"),
            map_auth.clone(),
            "",
        ));
    }
    out.push(case("unknown path", "POST", "/v2/nothing", vec![], ""));
    out.push(case(
        "wrong method",
        "GET",
        "/v2/token/generate",
        vec![],
        "",
    ));
    out.push(case(
        "unknown static file",
        "GET",
        "/static/js/other.js",
        vec![],
        "",
    ));
    out.push(case(
        "static file name not UTF-8",
        "GET",
        "/static/js/%ff",
        vec![],
        "",
    ));
    out
}

#[tokio::test]
async fn every_bad_input_gets_a_4xx_with_the_status_json() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let cases = cases(&t).await;
    assert!(cases.len() > 250, "matrix has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = t.send(c.method, &c.path, &headers, c.body.clone()).await;
        let json: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
        let status_text = json
            .as_ref()
            .and_then(|j| j["status"].as_str())
            .map(str::to_owned);
        if !(400..500).contains(&reply.status)
            || !reply.content_type.starts_with("application/json")
            || status_text.is_none()
        {
            failures.push(format!(
                "{} {} [{}]: HTTP {} {} {}",
                c.method,
                c.path,
                c.name,
                reply.status,
                reply.content_type,
                String::from_utf8_lossy(&reply.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // And the operator still serves.
    let ok = t.send("GET", "/ops/healthcheck", &[], vec![]).await;
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"OK"[..]));
}

#[tokio::test]
async fn specific_statuses_match_the_official_operator() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let unauthorized = t
        .send("POST", "/v2/token/generate", &[], b"x".to_vec())
        .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.body, br#"{"status":"unauthorized"}"#);

    let junk = t
        .send("POST", "/v2/token/refresh", &[], b"junk".to_vec())
        .await;
    assert_eq!(
        (junk.status, junk.json()["status"].as_str()),
        (400, Some("error"))
    );
    let auth = format!("Bearer {}", t.publisher.api_key);
    let junk = t
        .send(
            "POST",
            "/v2/token/refresh",
            &[("Authorization", &auth)],
            b"junk".to_vec(),
        )
        .await;
    assert_eq!(
        (junk.status, junk.json()["status"].as_str()),
        (400, Some("invalid_token"))
    );

    let big = t
        .send(
            "POST",
            "/v2/token/generate",
            &[("Authorization", &auth)],
            vec![b'A'; (1 << 20) + 1],
        )
        .await;
    assert_eq!(big.status, 413);

    let missing = t
        .call(&t.publisher, "/v2/token/generate", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json()["message"],
        "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified"
    );
    let invalid = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({"email": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        invalid.json(),
        serde_json::json!({"status": "client_error", "message": "Invalid Identifier"})
    );

    let stale = {
        let (body, _) = TestOperator::seal(&t.publisher, b"{}", now_ms() - 200_000);
        t.send(
            "POST",
            "/v2/token/generate",
            &[("Authorization", &auth)],
            body,
        )
        .await
    };
    assert_eq!(
        stale.json()["message"],
        "Invalid timestamp: Request too old or client time drift."
    );

    let cstg = t
        .send("POST", "/v2/token/client-generate", &[("Origin", "http://evil.example")],
            format!(r#"{{"payload":"a","iv":"b","public_key":"c","timestamp":1,"subscription_id":"{}"}}"#,
                t.operator.snapshot().cstg.keys().next().unwrap()).into_bytes())
        .await;
    assert_eq!(
        (cstg.status, cstg.json()["status"].as_str()),
        (403, Some("invalid_http_origin"))
    );
}
