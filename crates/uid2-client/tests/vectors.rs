//! The official cross-platform v4 token (`vectors.json`, public test data of the official SDKs,
//! shared with `uid2-proto`'s tests) decrypts with both clients to the expected raw UID and site.

mod common;

use serde_json::{Value, json};
use uid2_client::{BidstreamClient, DecryptionStatus, IdentityType, SharingClient, TokenVersion};

const SECRET: &str = "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=";

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../uid2-proto/tests/data/vectors.json")).unwrap()
}

fn keys_body(v: &Value, extra: Value) -> String {
    let key = |k: &Value, keyset: i64| {
        json!({
            "id": k["id"], "keyset_id": keyset, "created": 1_609_459_200, "activates": 1_609_459_200,
            "expires": 4_102_444_800i64, "secret": k["secret_b64"],
        })
    };
    let mut body = json!({
        "caller_site_id": 9000, "master_keyset_id": 9_999_999, "default_keyset_id": 99_999,
        "identity_scope": "UID2",
        "keys": [key(&v["keys"]["master"], 9_999_999), key(&v["keys"]["site"], 99_999)],
    });
    for (k, val) in extra.as_object().unwrap() {
        body[k] = val.clone();
    }
    json!({ "status": "success", "body": body }).to_string()
}

#[test]
fn cross_platform_v4_token_decrypts_to_the_expected_uid_and_site() {
    let v = vectors();
    let vector = &v["cross_platform_v4_token"];
    let token = vector["token"].as_str().unwrap();
    let d = &vector["decoded"];
    let now = d["generated_ms"].as_i64().unwrap() + 3_600_000;

    let bidstream = BidstreamClient::new("http://127.0.0.1:9", "k", SECRET).unwrap();
    bidstream.refresh_json(&keys_body(&v, json!({}))).unwrap();
    let r = bidstream.decrypt_token_into_raw_uid_at(token, None, now);
    assert_eq!(r.status, DecryptionStatus::Success);
    assert_eq!(r.uid().as_deref(), d["raw_uid_b64"].as_str());
    assert_eq!(r.site_id, Some(d["site_id"].as_i64().unwrap() as i32));
    assert_eq!(r.established_ms, d["established_ms"].as_i64());
    assert_eq!(r.expiry_ms, d["expires_ms"].as_i64());
    assert_eq!(r.advertising_token_version, Some(TokenVersion::V4));
    assert_eq!(r.identity_type, Some(IdentityType::Email));
    assert!(!r.is_client_side_generated);

    let sharing = SharingClient::new("http://127.0.0.1:9", "k", SECRET).unwrap();
    sharing.refresh_json(&keys_body(&v, json!({}))).unwrap();
    let r = sharing.decrypt_token_into_raw_uid_at(token, now);
    assert_eq!(r.uid().as_deref(), d["raw_uid_b64"].as_str());
    assert_eq!(r.site_key_site_id, None);

    // The vector lives twenty years: a production bidstream limit (3 days + 10 s) refuses it.
    bidstream
        .refresh_json(&keys_body(
            &v,
            json!({"max_bidstream_lifetime_seconds": 259_210}),
        ))
        .unwrap();
    assert_eq!(
        bidstream
            .decrypt_token_into_raw_uid_at(token, None, now)
            .status,
        DecryptionStatus::InvalidTokenLifetime
    );
    // After its expiry it is expired.
    bidstream.refresh_json(&keys_body(&v, json!({}))).unwrap();
    assert_eq!(
        bidstream
            .decrypt_token_into_raw_uid_at(token, None, d["expires_ms"].as_i64().unwrap() + 1)
            .status,
        DecryptionStatus::ExpiredToken
    );
    // An EUID client refuses a UID2 token.
    bidstream
        .refresh_json(&keys_body(&v, json!({"identity_scope": "EUID"})))
        .unwrap();
    assert_eq!(
        bidstream
            .decrypt_token_into_raw_uid_at(token, None, now)
            .status,
        DecryptionStatus::InvalidIdentityScope
    );
}
