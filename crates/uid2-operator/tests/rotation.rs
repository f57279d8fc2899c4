//! Rotation: tokens from before a key rotation still decrypt and refresh; new keys are published
//! before they are used; after a salt rotation only the rotated buckets change raw UIDs, and the
//! buckets endpoint reports exactly those; concurrent rotations all apply.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::TestOperator;
use serde_json::json;
use uid2_operator::identity_service::{self, GenerateOutcome, GeneratePolicy};
use uid2_operator::rotation::{
    KeyRotationPolicy, RETENTION_MARGIN, SaltFraction, SaltPick, key_retention, rotate_keys,
    rotate_salts,
};
use uid2_operator::{OperatorConfig, Snapshot, now_ms};
use uid2_proto::encoding::base64_decode;
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;
use uid2_proto::token::advertising;
use uid2_proto::wire::datetime::format_local_date_time;

/// A generator a spawned task can hold across awaits (the thread-local one cannot).
fn sendable_rng() -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng())
}

/// The ids of the keys `/v2/key/bidstream` gives the DSP.
async fn bidstream_key_ids(t: &TestOperator) -> HashSet<u32> {
    let keys = t
        .call(&t.dsp, "/v2/key/bidstream", serde_json::Value::Null)
        .await
        .unwrap();
    keys["body"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| u32::try_from(k["id"].as_u64().unwrap()).unwrap())
        .collect()
}

/// The (master, site) key ids of a token generated for the publisher at `at_ms`.
fn keys_of_token_at(snap: &Snapshot, site_id: i32, at_ms: i64) -> (u32, u32) {
    let identity = HashedIdentity::from_email("lead@example.com").unwrap();
    let tokens = match identity_service::generate(
        snap,
        at_ms,
        &mut rand::rng(),
        site_id,
        &identity,
        GeneratePolicy::SERVER_SIDE,
    )
    .unwrap()
    {
        GenerateOutcome::Generated(tokens) => tokens,
        GenerateOutcome::OptOut => panic!("not opted out"),
    };
    match advertising::decode(&tokens.advertising_token, &snap.keys.ring, at_ms).unwrap() {
        advertising::DecodedAdvertisingToken::V3OrV4(t) => (t.master_key_id, t.site_key_id),
        other => panic!("{other:?}"),
    }
}

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
        None,
    )
    .await
    .unwrap()
    .expect("no claim to lose");
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
    assert!(bidstream_key_ids(&t).await.contains(&old_master));
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

    let rotated = rotate_salts(
        t.operator.store().as_ref(),
        SaltFraction::new(0.1).unwrap(),
        SaltPick::Any,
        now_ms(),
        &mut rand::rng(),
        None,
    )
    .await
    .unwrap()
    .expect("no claim to lose");
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

#[tokio::test]
async fn new_keys_are_published_an_hour_before_tokens_use_them() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let site = t.publisher.record.site_id;
    let now = now_ms();
    let (old_master, old_site) = keys_of_token_at(&t.operator.snapshot(), site, now);
    let policy = KeyRotationPolicy::default();
    assert_eq!(policy.activation_lead, Duration::from_secs(3_600));
    let rotation = rotate_keys(
        t.operator.store().as_ref(),
        policy,
        now,
        &mut rand::rng(),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(t.operator.sync_once().await.unwrap());

    // Bidders receive the new keys at once, ahead of their use.
    let listed = bidstream_key_ids(&t).await;
    let snap = t.operator.snapshot();
    let new_master = *rotation
        .created
        .iter()
        .find(|id| snap.keys.ring.key(**id).unwrap().keyset_id == Some(-1))
        .unwrap();
    assert!(
        listed.contains(&new_master),
        "{listed:?} lacks {new_master}"
    );
    assert!(listed.contains(&old_master));

    // Tokens minted now, over HTTP too, still use the old keys...
    assert_eq!(
        keys_of_token_at(&snap, site, now_ms()),
        (old_master, old_site)
    );
    let minted = t
        .call(
            &t.publisher,
            "/v2/token/generate",
            json!({"email": "lead@example.com"}),
        )
        .await
        .unwrap();
    match advertising::decode(
        minted["body"]["advertising_token"].as_str().unwrap(),
        &snap.keys.ring,
        now_ms(),
    )
    .unwrap()
    {
        advertising::DecodedAdvertisingToken::V3OrV4(t) => {
            assert_eq!((t.master_key_id, t.site_key_id), (old_master, old_site))
        }
        other => panic!("{other:?}"),
    }
    // ...until the new ones activate, an hour later.
    let activation = now + 3_600_000;
    assert_eq!(
        keys_of_token_at(&snap, site, activation - 2_000),
        (old_master, old_site)
    );
    let (master, site_key) = keys_of_token_at(&snap, site, activation + 1_000);
    assert_eq!(master, new_master);
    assert!(rotation.created.contains(&site_key));
}

#[tokio::test]
async fn keys_are_kept_as_long_as_the_longest_configured_token_lifetime() {
    // An operator issuing refresh tokens that live 400 days records that in the store...
    let config = OperatorConfig {
        refresh_token_expires_after: Duration::from_secs(400 * 86_400),
        ..OperatorConfig::default()
    };
    let skew = config.allow_clock_skew;
    let t = TestOperator::start(config).await;
    let store = t.operator.store().clone();
    let retention = key_retention(store.as_ref()).await.unwrap();
    assert_eq!(
        retention,
        Duration::from_secs(400 * 86_400) + skew + RETENTION_MARGIN
    );
    // ...so a rotation 300 days after a key was superseded (more than the old fixed 31 days)
    // keeps it, and one after 402 days removes it.
    let now = now_ms();
    let policy = KeyRotationPolicy {
        activation_lead: Duration::ZERO,
        retention,
    };
    let first = rotate_keys(store.as_ref(), policy, now, &mut rand::rng(), None)
        .await
        .unwrap()
        .unwrap();
    let day_ms = 86_400_000;
    let later = rotate_keys(
        store.as_ref(),
        policy,
        now + 300 * day_ms,
        &mut rand::rng(),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(later.removed.is_empty(), "{later:?}");
    let last = rotate_keys(
        store.as_ref(),
        policy,
        now + 402 * day_ms,
        &mut rand::rng(),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(last.removed.len(), first.created.len(), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_all_apply() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let store = t.operator.store().clone();
    // Salts: two rotations of 10 % at once; each one's buckets keep the salt it gave them.
    let before = store.salts().await.unwrap().unwrap();
    let rotations: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                rotate_salts(
                    store.as_ref(),
                    SaltFraction::new(0.1).unwrap(),
                    SaltPick::Any,
                    now_ms(),
                    &mut sendable_rng(),
                    None,
                )
                .await
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    let mut rotated = HashSet::new();
    for r in rotations {
        rotated.extend(r.await.unwrap());
    }
    let after = store.salts().await.unwrap().unwrap();
    assert_eq!(after.generation, before.generation + 2, "two writes");
    let changed: HashSet<u32> = before
        .value
        .buckets
        .iter()
        .zip(&after.value.buckets)
        .filter(|(b, a)| b.current != a.current)
        .map(|(b, _)| b.id)
        .collect();
    assert_eq!(changed, rotated, "both rotations' buckets are rotated");
    for bucket in &after.value.buckets {
        assert_eq!(bucket.previous.is_some(), rotated.contains(&bucket.id));
    }

    // Keys: three rotations at once each add a key to every keyset, with distinct ids.
    let keys_before = store.keys().await.unwrap().len();
    let rotations: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                rotate_keys(
                    store.as_ref(),
                    KeyRotationPolicy::default(),
                    now_ms(),
                    &mut sendable_rng(),
                    None,
                )
                .await
                .unwrap()
                .unwrap()
                .created
            })
        })
        .collect();
    let mut created = HashSet::new();
    for r in rotations {
        let ids = r.await.unwrap();
        assert_eq!(ids.len(), 6);
        created.extend(ids);
    }
    assert_eq!(created.len(), 18);
    assert_eq!(store.keys().await.unwrap().len(), keys_before + 18);
}

async fn map_emails(t: &TestOperator, emails: &[String]) -> HashMap<String, (String, String)> {
    let reply = t
        .call(&t.mapper, "/v2/identity/map", json!({ "email": emails }))
        .await
        .unwrap();
    uid2_testkit::answers::mapped_identities(&reply)
}

/// A scheduled salt rotation rotates the buckets that are due; a pass that finds none due
/// takes its period without rewriting the salts (operators have nothing to reload).
#[tokio::test]
async fn a_scheduled_salt_rotation_with_nothing_due_only_takes_its_period() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    let store = t.operator.store().clone();
    // One scheduled pass at `now_ms` (every bucket due may be rotated), with a 1 s period.
    let scheduled = async |now_ms: i64| {
        let claim = uid2_store::Claim {
            job: "rotate-salts".into(),
            now_ms,
            period_ms: 1_000,
        };
        let all = SaltFraction::new(1.0).unwrap();
        rotate_salts(
            store.as_ref(),
            all,
            SaltPick::Due,
            now_ms,
            &mut rand::rng(),
            Some(claim),
        )
        .await
        .unwrap()
    };
    let now = now_ms();
    // A new store has a thirtieth of its buckets due on its first day (64 buckets: 3).
    let rotated = scheduled(now).await.expect("the first claim is won");
    assert_eq!(rotated.len(), 3, "{rotated:?}");
    let generation = store.generations().await.unwrap().salts;

    let next = now + 2_000;
    let nothing = scheduled(next)
        .await
        .expect("the next period's claim is won");
    assert!(nothing.is_empty());
    assert_eq!(
        store.generations().await.unwrap().salts,
        generation,
        "salts not rewritten"
    );
    assert_eq!(
        store.last_claim_ms("rotate-salts").await.unwrap(),
        Some(next)
    );
    // Within that period, the job is not run again.
    assert_eq!(scheduled(next + 500).await, None);
}
