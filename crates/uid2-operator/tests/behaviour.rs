//! Operator behaviour in process: store changes reach a running operator, opt-outs are durable
//! and immediate (or refused with a retryable 503) and cover every spelling of a hash, client-side generation works end to end, key
//! access follows the keyset rules.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::TestOperator;
use uid2_operator::{OperatorConfig, now_ms};
use uid2_proto::encoding::base64_decode;
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;
use uid2_proto::key::KeyRing;
use uid2_proto::token::advertising;
use uid2_store::Role;
use uid2_testkit::store::HookedStore;

#[tokio::test]
async fn a_disabled_client_is_refused_within_one_second() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    // The store write alone changes nothing: requests are answered from the snapshot, which
    // only a sync replaces.
    let store = t.operator.store();
    assert!(store.set_client_disabled("dsp", true).await.unwrap());
    assert!(
        t.call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
            .await
            .is_ok()
    );
    assert!(store.set_client_disabled("dsp", false).await.unwrap());
    t.operator.spawn_sync();
    assert!(
        t.call(&t.mapper, "/v2/key/bidstream", serde_json::Value::Null)
            .await
            .is_err(),
        "mapper has no ID_READER role"
    );
    assert!(
        t.call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
            .await
            .is_ok()
    );
    // Let the sync task take its first (immediate) tick, so the change below waits for a real one.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    assert!(
        t.operator
            .store()
            .set_client_disabled("dsp", true)
            .await
            .unwrap()
    );
    loop {
        match t
            .call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
            .await
        {
            Err(reply) if reply.status == 401 => break,
            _ if started.elapsed() > Duration::from_secs(1) => panic!("still accepted after 1 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn logout_is_durable_and_applied_at_once() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let email = "someone@example.com";
    let generated = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({ "email": email }),
        )
        .await
        .unwrap();
    assert_eq!(generated["status"], "success");

    let logout = t
        .call(
            &t.optout,
            "/v2/token/logout",
            serde_json::json!({ "email": email }),
        )
        .await
        .unwrap();
    assert_eq!(
        logout,
        serde_json::json!({"status": "success", "body": {"optout": "OK"}})
    );
    // Applied locally without waiting for a sync...
    let again = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({ "email": email }),
        )
        .await
        .unwrap();
    assert_eq!(again, serde_json::json!({"status": "optout"}));
    // ...and durable: it is in the store.
    let stored = t.operator.store().optouts_after(0, 10).await.unwrap();
    let flh = t
        .operator
        .snapshot()
        .salts
        .first_level_hash(&HashedIdentity::from_email(email).unwrap());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].first_level_hash, flh.0);
}

#[tokio::test]
async fn an_opt_out_covers_every_spelling_of_the_hash() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let hash = HashedIdentity::from_email("spelled@example.com")
        .unwrap()
        .hash
        .as_str()
        .to_owned();
    t.opt_out(serde_json::json!({ "email_hash": hash })).await;
    // The character before '=' carries two unused bits: setting one spells the same digest.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = alphabet
        .iter()
        .position(|&c| c == hash.as_bytes()[42])
        .unwrap();
    let respelled = format!("{}{}=", &hash[..42], alphabet[last | 1] as char);
    assert_ne!(respelled, hash);
    let generated = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({ "email_hash": respelled }),
        )
        .await
        .unwrap();
    assert_eq!(generated, serde_json::json!({"status": "optout"}));
    // The same digest with a byte appended (33 bytes, no padding) is no digest at all.
    let extended = format!("{}A", &hash[..43]);
    let refused = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({ "email_hash": extended }),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["message"], "Invalid Identifier");
}

#[tokio::test]
async fn a_long_map_answers_each_identity_as_a_map_of_it_alone() {
    // Long lists are mapped in chunks (identity_service::map_many): opt-outs, invalid input
    // and chunk edges must not shift any answer.
    let t = TestOperator::start(OperatorConfig::default()).await;
    let emails: Vec<String> = (0..37)
        .map(|i| {
            if i == 20 {
                "not an email".to_owned()
            } else {
                format!("listed{i}@example.com")
            }
        })
        .collect();
    for i in [0, 15, 16, 36] {
        t.opt_out(serde_json::json!({ "email": emails[i] })).await;
    }
    let all = t
        .call(
            &t.mapper,
            "/v3/identity/map",
            serde_json::json!({ "email": emails }),
        )
        .await
        .unwrap();
    let answers = all["body"]["email"].as_array().unwrap();
    assert_eq!(answers.len(), emails.len());
    for (email, answer) in emails.iter().zip(answers) {
        let alone = t
            .call(
                &t.mapper,
                "/v3/identity/map",
                serde_json::json!({ "email": [email] }),
            )
            .await
            .unwrap();
        assert_eq!(answer, &alone["body"]["email"][0], "{email}");
    }
    let reasons: Vec<Option<&str>> = answers.iter().map(|a| a["e"].as_str()).collect();
    for (i, reason) in reasons.iter().enumerate() {
        let expected = match i {
            0 | 15 | 16 | 36 => Some("optout"),
            20 => Some("invalid identifier"),
            _ => None,
        };
        assert_eq!(*reason, expected, "{i}");
    }
}

#[tokio::test]
async fn a_logout_the_store_cannot_take_is_a_503_that_says_when_to_retry() {
    let mut outage = None;
    let t = TestOperator::start_wrapped(OperatorConfig::default(), |store| {
        let (store, down) = HookedStore::with_outage(store);
        outage = Some(down);
        Arc::new(store)
    })
    .await;
    outage.unwrap().store(true, Ordering::SeqCst);
    let email = serde_json::json!({ "email": "refused@example.com" });
    let reply = t
        .call(&t.optout, "/v2/token/logout", email.clone())
        .await
        .unwrap_err();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.json()["status"], "unknown", "{reply:?}");
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("2"),
        "{:?}",
        reply.headers
    );
    // Not acknowledged, so not applied either: tokens are still generated for the identity.
    let generated = t
        .call(&t.publisher, "/v2/token/generate", email)
        .await
        .unwrap();
    assert_eq!(generated["status"], "success");
    // Client errors say nothing of retrying.
    let bad = t
        .call(&t.optout, "/v2/token/logout", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(bad.status, 400);
    assert!(bad.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn client_side_generation_end_to_end() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let snap = t.operator.snapshot();
    let site_id = snap.cstg.values().next().unwrap().site_id;
    let hash = HashedIdentity::from_email("cstg@example.com").unwrap().hash;
    let payload = format!(r#"{{"email_hash":"{hash}"}}"#);
    let (request, shared) = t.cstg_request(payload.as_bytes(), None).await;
    let body = serde_json::to_vec(&request).unwrap();

    let ok = t
        .send(
            "POST",
            "/v2/token/client-generate",
            &[("Origin", "http://localhost:3000")],
            body.clone(),
        )
        .await;
    assert_eq!(ok.status, 200);
    let json: serde_json::Value = serde_json::from_slice(
        &open_bare_response(&shared, &base64_decode(&ok.body).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(json["status"], "success");
    let token = json["body"]["advertising_token"].as_str().unwrap();
    let decoded = advertising::decode(token, &snap.keys.ring, 0).unwrap();
    assert!(decoded.privacy_bits().is_client_side_generated());
    assert_eq!(decoded.site_id(), site_id);

    let refused = t
        .send(
            "POST",
            "/v2/token/client-generate",
            &[("Origin", "http://127.0.0.1:3000")],
            body.clone(),
        )
        .await;
    assert_eq!(
        (refused.status, refused.json()["status"].as_str()),
        (403, Some("invalid_http_origin"))
    );
    let no_origin = t.send("POST", "/v2/token/client-generate", &[], body).await;
    assert_eq!(no_origin.status, 403);

    // An opted-out identity is answered `optout`, sealed the same way.
    let payload = format!(
        r#"{{"email_hash":"{}"}}"#,
        HashedIdentity::from_email("optout@example.com")
            .unwrap()
            .hash
    );
    let (request, shared) = t.cstg_request(payload.as_bytes(), None).await;
    let reply = t
        .send(
            "POST",
            "/v2/token/client-generate",
            &[("Origin", "http://localhost")],
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    let json: serde_json::Value = serde_json::from_slice(
        &open_bare_response(&shared, &base64_decode(&reply.body).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(json, serde_json::json!({"status": "optout"}));
}

#[tokio::test]
async fn keys_given_out_follow_keyset_access() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let snap = t.operator.snapshot();
    let bid = t
        .call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
        .await
        .unwrap();
    let ids: Vec<u64> = bid["body"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_u64().unwrap())
        .collect();
    let refresh = snap.keys.refresh_key(now_ms() / 1000).unwrap().id as u64;
    assert!(
        !ids.contains(&refresh),
        "refresh keys must never be handed out"
    );
    // An ID reader can read every open keyset: master, fallback, each site's.
    let site_key = snap.keys.site_key(1001, now_ms() / 1000).unwrap().id as u64;
    assert!(ids.contains(&site_key));

    // A token minted for the publisher decrypts with exactly those keys.
    let generated = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({"email": "x@example.com"}),
        )
        .await
        .unwrap();
    let token = generated["body"]["advertising_token"].as_str().unwrap();
    let ring = KeyRing::new(
        snap.keys
            .ring
            .keys()
            .filter(|k| ids.contains(&(k.id as u64)))
            .cloned(),
    );
    assert_eq!(
        advertising::decode(token, &ring, now_ms())
            .unwrap()
            .site_id(),
        1001
    );

    // A sharer without ID_READER only gets its own site's keys and the master keys.
    let sharing = t
        .call(&t.sharer, "/v2/key/sharing", serde_json::Value::Null)
        .await
        .unwrap();
    for key in sharing["body"]["keys"].as_array().unwrap() {
        let owner = snap
            .keys
            .key_owner_site(key["id"].as_u64().unwrap() as u32)
            .unwrap();
        assert!(
            owner == 1001 || owner == -1,
            "sharer got a key of site {owner}"
        );
    }
    assert!(
        t.operator
            .snapshot()
            .clients
            .authorize(&t.sharer.api_key, &[Role::Sharer])
            .is_some()
    );
}

#[tokio::test]
async fn validate_refuses_tokens_of_other_sites() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let generated = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            serde_json::json!({"email": "v@example.com"}),
        )
        .await
        .unwrap();
    let token = generated["body"]["advertising_token"].as_str().unwrap();
    let ok = t
        .call(
            &t.publisher,
            "/v2/token/validate",
            serde_json::json!({"token": token, "email": "v@example.com"}),
        )
        .await
        .unwrap();
    assert_eq!(ok["body"], true);
    // The demo client (site 999) cannot validate site 1001's token.
    let store = t.operator.store().clone();
    let demo = uid2_operator::admin::add_client(
        store.as_ref(),
        &OperatorConfig::default(),
        "other",
        999,
        vec![Role::Generator],
        now_ms(),
        &mut rand::rng(),
    )
    .await
    .unwrap();
    t.operator.sync_once().await.unwrap();
    let refused = t
        .call(
            &demo,
            "/v2/token/validate",
            serde_json::json!({"token": token, "email": "v@example.com"}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.json()["message"], "Unauthorised to validate token");
}

#[tokio::test]
async fn requests_for_unknown_paths_are_counted_as_unmatched() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let metrics = uid2_operator::metrics::UNMATCHED;
    assert_eq!(t.operator.request_metrics().count(metrics, 404), 0);
    let missing = t.send("GET", "/nope", &[], vec![]).await;
    assert_eq!(missing.status, 404);
    let wrong_method = t.send("GET", "/v2/token/generate", &[], vec![]).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(t.operator.request_metrics().count(metrics, 404), 1);
    assert_eq!(
        t.operator
            .request_metrics()
            .count("/v2/token/generate", 405),
        1
    );
    let text = String::from_utf8(t.send("GET", "/metrics", &[], vec![]).await.body).unwrap();
    assert!(
        text.contains(r#"uid2_http_requests_total{route="unmatched",status="404"} 1"#),
        "{text}"
    );
}

/// A page that gets an error must be able to read it: without CORS headers the browser hides
/// the answer and the SDK sees status 0. Every kind of refusal, from the router's own 404 to a
/// store outage, carries them for the page's origin.
#[tokio::test]
async fn every_error_answer_carries_cors_for_the_page() {
    const PAGE: &str = "https://elsewhere.example";
    let mut outage = None;
    let t = TestOperator::start_wrapped(OperatorConfig::default(), |store| {
        let (store, down) = HookedStore::with_outage(store);
        outage = Some(down);
        Arc::new(store)
    })
    .await;
    let email_hash = HashedIdentity::from_email("cors@example.com").unwrap().hash;
    let (cstg, _) = t
        .cstg_request(
            format!(r#"{{"email_hash":"{email_hash}"}}"#).as_bytes(),
            None,
        )
        .await;
    let optout_auth = format!("Bearer {}", t.optout.api_key);
    let (logout, _) = TestOperator::seal(&t.optout, br#"{"email":"cors@example.com"}"#, now_ms());
    // (expected status, method, path, headers besides Origin, body)
    type Case<'a> = (u16, &'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (400, "POST", "/v2/token/refresh", vec![], b"junk".to_vec()),
        (
            401,
            "POST",
            "/v2/token/generate",
            vec![("Authorization", "Bearer nobody")],
            b"x".to_vec(),
        ),
        (
            403,
            "POST",
            "/v2/token/client-generate",
            vec![],
            serde_json::to_vec(&cstg).unwrap(),
        ),
        (404, "GET", "/v2/no/such/endpoint", vec![], Vec::new()),
        (405, "DELETE", "/v2/token/refresh", vec![], Vec::new()),
        (
            413,
            "POST",
            "/v2/token/refresh",
            vec![],
            vec![b'A'; 2 * 1024 * 1024],
        ),
        (
            503,
            "POST",
            "/v2/token/logout",
            vec![("Authorization", optout_auth.as_str())],
            logout,
        ),
    ];
    outage.unwrap().store(true, Ordering::SeqCst);
    for (status, method, path, headers, body) in cases {
        let mut headers = headers;
        headers.push(("Origin", PAGE));
        let reply = t.send(method, path, &headers, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
        assert_eq!(
            reply
                .headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some(PAGE),
            "{method} {path}: {:?}",
            reply.headers
        );
        assert!(
            reply.json()["status"].is_string(),
            "{method} {path}: {reply:?}"
        );
    }
}

/// A request the server itself is too slow to answer within the request timeout (here a store
/// that takes seconds to write) gets a retryable 503, not a 408: the client did nothing wrong.
#[tokio::test]
async fn a_request_the_server_is_too_slow_for_is_a_retryable_503() {
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = slow.clone();
    let config = OperatorConfig {
        request_timeout: Duration::from_millis(500),
        ..OperatorConfig::default()
    };
    let t = TestOperator::start_wrapped(config, move |store| {
        Arc::new(HookedStore::new(store, move |op| {
            let stall = op == "append_optout" && slow.load(Ordering::SeqCst);
            async move {
                if stall {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Ok(())
            }
        }))
    })
    .await;
    switch.store(true, Ordering::SeqCst);
    let reply = t
        .call(
            &t.optout,
            "/v2/token/logout",
            serde_json::json!({ "email": "slow@example.com" }),
        )
        .await
        .unwrap_err();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "unknown", "message": "request timed out"})
    );
    assert!(reply.headers.contains_key("retry-after"));
}
