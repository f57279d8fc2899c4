//! Client-side token generation after the origin check: each way a request can fail once the
//! operator holds the client's public key gets the official operator's status and message, and a
//! mobile app listed for the site generates tokens without an `Origin`.

mod common;

use common::TestOperator;
use common::cstg::ORIGIN;
use uid2_operator::{OperatorConfig, now_ms};
use uid2_proto::encoding::base64_decode;
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;
use uid2_store::SiteRecord;

#[tokio::test]
async fn errors_after_the_key_agreement_match_the_official_operator() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let mut failures = Vec::new();
    for bad in t.bad_cstg_requests().await {
        let reply = t
            .send(
                "POST",
                "/v2/token/client-generate",
                &[("Origin", ORIGIN)],
                bad.body,
            )
            .await;
        let json = reply.json();
        let got = (
            reply.status,
            json["status"].as_str().unwrap_or_default(),
            json["message"].as_str().unwrap_or_default(),
        );
        if got != (bad.http, bad.status, bad.message) {
            failures.push(format!("{}: got {got:?}", bad.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_listed_app_generates_without_an_origin() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let snap = t.operator.snapshot();
    let site_id = snap.cstg.values().next().unwrap().site_id;
    let mut site: SiteRecord = snap.sites.get(&site_id).unwrap().clone();
    site.app_names = vec!["com.example.app".into()];
    t.operator.store().upsert_site(&site).await.unwrap();
    t.operator.sync_once().await.unwrap();

    let hash = HashedIdentity::from_email("app@example.com").unwrap().hash;
    let payload = format!(r#"{{"email_hash":"{hash}"}}"#);
    // App names match case-insensitively, as upstream.
    for app in ["com.example.app", "COM.Example.App"] {
        let (request, shared) = t.cstg_request(payload.as_bytes(), Some(app)).await;
        let reply = t
            .send(
                "POST",
                "/v2/token/client-generate",
                &[],
                serde_json::to_vec(&request).unwrap(),
            )
            .await;
        assert_eq!(reply.status, 200, "{app}: {reply:?}");
        let json: serde_json::Value = serde_json::from_slice(
            &open_bare_response(&shared, &base64_decode(&reply.body).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(json["status"], "success", "{app}");
        assert!(json["body"]["identity_expires"].as_i64().unwrap() > now_ms());
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_invalid_json() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let subscription = t.operator.snapshot().cstg.keys().next().unwrap().clone();
    let object = format!(
        r#"{{"payload":"a","iv":"b","public_key":"c","timestamp":1,"subscription_id":"{subscription}"}}"#
    );
    // The same fields as an array (serde's other form of a struct) and other JSON values.
    let array = format!(r#"["a","b","c",1,"{subscription}"]"#);
    for body in [array.as_str(), "[]", "5", "\"text\""] {
        let reply = t
            .send(
                "POST",
                "/v2/token/client-generate",
                &[("Origin", ORIGIN)],
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(
            reply.json()["message"],
            "json payload is not valid",
            "{body}"
        );
    }
    // The object form gets past parsing (and fails later, on its junk fields).
    let reply = t
        .send(
            "POST",
            "/v2/token/client-generate",
            &[("Origin", ORIGIN)],
            object.into_bytes(),
        )
        .await;
    assert_ne!(reply.json()["message"], "json payload is not valid");
}
