//! The `special_identities` block of the test vectors, through the operator's HTTP surface:
//! generate, refresh, v2 and v3 identity map, for raw, base64-hashed and hex-hashed input, before
//! and after an opt-out record exists for each identity (the official `getGlobalOptOutResult`
//! answers for these identities before it reads the opt-out store).

mod common;

use common::TestOperator;
use serde_json::{Value, json};
use uid2_operator::OperatorConfig;
use uid2_proto::encoding::{base64_decode, hex_encode};
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;

const VECTORS: &str = include_str!("../../uid2-proto/tests/data/vectors.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AlwaysOptedOut,
    OptedOutOnRefresh,
    NeverOptedOut,
}

/// Each special identity with its kind, from the vectors.
fn special_identities() -> Vec<(String, Kind)> {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let block = &v["special_identities"];
    [
        ("always_opted_out", Kind::AlwaysOptedOut),
        ("opted_out_on_refresh", Kind::OptedOutOnRefresh),
        ("never_opted_out", Kind::NeverOptedOut),
    ]
    .into_iter()
    .flat_map(|(name, kind)| {
        let list = block[name].as_array().unwrap();
        assert!(!list.is_empty(), "{name}");
        list.iter()
            .map(move |i| (i.as_str().unwrap().to_owned(), kind))
    })
    .collect()
}

/// The identity as each request field can carry it: raw, base64 hash, hex hash.
fn input_forms(identity: &str) -> [(&'static str, String); 3] {
    let phone = identity.starts_with('+');
    let hashed = if phone {
        HashedIdentity::from_phone(identity)
    } else {
        HashedIdentity::from_email(identity)
    }
    .unwrap();
    let b64 = hashed.hash.as_str().to_owned();
    let hex = hex_encode(&base64_decode(&b64).unwrap());
    let (raw_field, hash_field) = if phone {
        ("phone", "phone_hash")
    } else {
        ("email", "email_hash")
    };
    [
        (raw_field, identity.to_owned()),
        (hash_field, b64),
        (hash_field, hex),
    ]
}

/// Refreshes an identity as a browser would; returns the decrypted answer's status.
async fn refresh_status(t: &TestOperator, identity: &Value) -> String {
    let reply = t
        .send(
            "POST",
            "/v2/token/refresh",
            &[],
            identity["refresh_token"].as_str().unwrap().into(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let key: [u8; 32] = base64_decode(identity["refresh_response_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let json: Value = serde_json::from_slice(
        &open_bare_response(&key, &base64_decode(&reply.body).unwrap()).unwrap(),
    )
    .unwrap();
    json["status"].as_str().unwrap().to_owned()
}

/// Generate, refresh and both maps for one input form, against what `kind` must answer.
async fn check(t: &TestOperator, kind: Kind, field: &str, value: &str) {
    let what = format!("{kind:?} {field}={value}");
    let generated = t
        .call(&t.publisher, "/v2/token/generate", json!({ field: value }))
        .await
        .unwrap();
    if kind == Kind::AlwaysOptedOut {
        assert_eq!(generated, json!({"status": "optout"}), "{what}");
        // The v1 generate too (upstream's minted tokens for it, refused at refresh).
        let auth = format!("Bearer {}", t.publisher.api_key);
        let v1 = t
            .send(
                "GET",
                &format!(
                    "/v1/token/generate?{field}={}",
                    common::percent_encode(value).replace('@', "%40")
                ),
                &[("Authorization", &auth)],
                vec![],
            )
            .await;
        assert_eq!(v1.status, 200, "{what}: {v1:?}");
        assert_eq!(v1.json(), json!({"status": "optout"}), "{what}");
    } else {
        assert_eq!(generated["status"], "success", "{what}");
        let expected = if kind == Kind::OptedOutOnRefresh {
            "optout"
        } else {
            "success"
        };
        assert_eq!(
            refresh_status(t, &generated["body"]).await,
            expected,
            "{what}"
        );
    }

    let v2 = t
        .call(&t.mapper, "/v2/identity/map", json!({ field: [value] }))
        .await
        .unwrap();
    let v3 = t
        .call(&t.mapper, "/v3/identity/map", json!({ field: [value] }))
        .await
        .unwrap();
    if kind == Kind::AlwaysOptedOut {
        assert_eq!(
            v2["body"]["unmapped"],
            json!([{"identifier": value, "reason": "optout"}]),
            "{what}"
        );
        assert_eq!(v3["body"][field], json!([{"e": "optout"}]), "{what}");
    } else {
        assert_eq!(v2["body"]["mapped"][0]["identifier"], value, "{what}");
        assert!(v2["body"].get("unmapped").is_none(), "{what}: {v2}");
        assert!(v3["body"][field][0]["u"].is_string(), "{what}: {v3}");
    }
}

#[tokio::test]
async fn special_identities_answer_as_the_official_operator_in_every_input_form() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let identities = special_identities();
    assert_eq!(identities.len(), 6);
    for (identity, kind) in &identities {
        for (field, value) in input_forms(identity) {
            check(&t, *kind, field, &value).await;
        }
    }

    // An opt-out record changes nothing for them: the official operator answers for these
    // identities before it reads the opt-out store.
    for (identity, _) in &identities {
        let (field, value) = input_forms(identity)[0].clone();
        let logout = t
            .call(&t.optout, "/v2/token/logout", json!({ field: value }))
            .await
            .unwrap();
        assert_eq!(logout["body"]["optout"], "OK");
    }
    for (identity, kind) in &identities {
        for (field, value) in input_forms(identity) {
            check(&t, *kind, field, &value).await;
        }
    }
}
