//! Rotation: tokens from before a key rotation still decrypt and refresh; after a salt rotation
//! only the rotated buckets change raw UIDs, and the buckets endpoint reports exactly those.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::TestOperator;
use serde_json::json;
use uid2_operator::rotation::{KeyRotationPolicy, rotate_keys, rotate_salts};
use uid2_operator::{OperatorConfig, now_ms};
use uid2_proto::encoding::base64_decode;
use uid2_proto::envelope::open_bare_response;
use uid2_proto::token::advertising;
use uid2_proto::wire::datetime::format_local_date_time;

#[tokio::test]
async fn tokens_from_before_a_key_rotation_still_decrypt_and_refresh() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let before = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            json!({"email": "keys@example.com"}),
        )
        .await
        .unwrap();
    let old_token = before["body"]["advertising_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_master =
        match advertising::decode(&old_token, &t.operator.snapshot().keys.ring, 0).unwrap() {
            advertising::DecodedAdvertisingToken::V3OrV4(t) => t.master_key_id,
            other => panic!("{other:?}"),
        };

    let policy = KeyRotationPolicy {
        activation_lead: Duration::ZERO,
        ..KeyRotationPolicy::default()
    };
    // Back-date "now" by a second so the new keys are strictly active at the operator's now.
    let rotation = rotate_keys(
        t.operator.store().as_ref(),
        policy,
        now_ms() - 1000,
        &mut rand::rng(),
    )
    .await
    .unwrap();
    assert_eq!(
        rotation.created.len(),
        6,
        "master, refresh, fallback, demo site, publisher, dsp keysets: {rotation:?}"
    );
    assert!(
        rotation.removed.is_empty(),
        "nothing is old enough to remove"
    );
    assert!(t.operator.sync_once().await.unwrap());

    // The old token still decrypts with the keys a bidder receives now.
    let keys = t
        .call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
        .await
        .unwrap();
    let ids: HashSet<u64> = keys["body"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&u64::from(old_master)));
    let snap = t.operator.snapshot();
    assert!(advertising::decode(&old_token, &snap.keys.ring, now_ms()).is_ok());

    // The old refresh token refreshes, and the new identity uses the new keys.
    let refresh_token = before["body"]["refresh_token"].as_str().unwrap();
    let reply = t
        .send(
            "POST",
            "/v2/token/refresh",
            &[],
            refresh_token.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let key: [u8; 32] = base64_decode(before["body"]["refresh_response_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let refreshed: serde_json::Value = serde_json::from_slice(
        &open_bare_response(&key, &base64_decode(&reply.body).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(refreshed["status"], "success");
    let new_token = refreshed["body"]["advertising_token"].as_str().unwrap();
    match advertising::decode(new_token, &snap.keys.ring, now_ms()).unwrap() {
        advertising::DecodedAdvertisingToken::V3OrV4(t) => {
            assert!(
                rotation.created.contains(&t.master_key_id),
                "refreshed token uses the new master key"
            );
            assert!(
                rotation.created.contains(&t.site_key_id),
                "and the site's new key"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_salt_rotation_changes_only_the_rotated_buckets() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let emails: Vec<String> = (0..400).map(|i| format!("salt-{i}@example.com")).collect();
    let before = map_emails(&t, &emails).await;
    let started = now_ms();

    let rotated = rotate_salts(t.operator.store().as_ref(), 0.1, now_ms(), &mut rand::rng())
        .await
        .unwrap();
    assert_eq!(rotated.len(), 7, "10% of 64 buckets, rounded up");
    assert!(t.operator.sync_once().await.unwrap());
    let after = map_emails(&t, &emails).await;

    let snap = t.operator.snapshot();
    let rotated_ids: HashSet<String> = rotated
        .iter()
        .map(|id| snap.salts.bucket_ids.encode(*id))
        .collect();
    let mut changed = 0;
    for email in &emails {
        let (old_uid, bucket) = &before[email];
        let (new_uid, same_bucket) = &after[email];
        assert_eq!(bucket, same_bucket, "an identity never changes bucket");
        if rotated_ids.contains(bucket) {
            assert_ne!(old_uid, new_uid, "{email} is in a rotated bucket");
            changed += 1;
        } else {
            assert_eq!(old_uid, new_uid, "{email} is not in a rotated bucket");
        }
    }
    assert!(changed > 0 && changed < emails.len());

    // The buckets endpoint reports exactly the rotated buckets.
    let since = format_local_date_time(started - 1);
    let buckets = t
        .call(
            &t.mapper,
            "/v2/identity/buckets",
            json!({ "since_timestamp": since }),
        )
        .await
        .unwrap();
    let reported: HashSet<String> = buckets["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, rotated_ids);

    // v3 map reports the pre-rotation raw UID as `p` for rotated identities.
    let email = emails
        .iter()
        .find(|e| rotated_ids.contains(&before[*e].1))
        .unwrap();
    let v3 = t
        .call(&t.mapper, "/v3/identity/map", json!({ "email": [email] }))
        .await
        .unwrap();
    assert_eq!(
        v3["body"]["email"][0]["p"].as_str(),
        Some(before[email].0.as_str())
    );
    assert_eq!(
        v3["body"]["email"][0]["u"].as_str(),
        Some(after[email].0.as_str())
    );
}

async fn map_emails(t: &TestOperator, emails: &[String]) -> HashMap<String, (String, String)> {
    let reply = t
        .call(&t.mapper, "/v2/identity/map", json!({ "email": emails }))
        .await
        .unwrap();
    reply["body"]["mapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap().to_owned();
            (
                field("identifier"),
                (field("advertising_id"), field("bucket_id")),
            )
        })
        .collect()
}
