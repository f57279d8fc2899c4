//! Protocol operations next to the bare primitives they are built from, measured in one run so
//! that `scripts/bench-report.py` can report each operation as a ratio to its primitives.
//!
//! Operations: v4 token encode and decode, request-envelope open + response seal, email
//! normalise + hash, raw UID derivation (first-level hash + bucket + raw UID).
//! Primitives: one AES-256-GCM seal or open (aws-lc-rs, in place) and one SHA-256, at the sizes
//! the operations use.

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::{open_request, seal_request, seal_response};
use uid2_proto::identity::{HashedIdentity, IdentityScope, IdentityType};
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::salt::{
    BucketSecret, FirstLevelHash, RawUid, RawUidSettings, SaltBucket, SaltTable,
};
use uid2_proto::token::{
    AdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity,
    TokenVersion, advertising,
};

/// Plaintext sizes inside a v4 token with a 32-byte raw UID.
const SITE_LAYER: usize = 68;
const MASTER_LAYER: usize = 33 + 12 + SITE_LAYER + 16;
/// A generate request and its response, as the Python SDK sends them.
const REQUEST_JSON: &[u8] = br#"{"email_hash":"tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="}"#;
const RESPONSE_JSON_LEN: usize = 900;
const EMAIL: &str = "  Jane.Saoirse+UID2@Example.com ";

fn gcm_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap())
}

fn primitives(c: &mut Criterion) {
    let key = gcm_key();
    let mut g = c.benchmark_group("primitive");
    for (name, len) in [
        ("gcm_seal_site_layer", SITE_LAYER),
        ("gcm_seal_master_layer", MASTER_LAYER),
        ("gcm_seal_request", 16 + REQUEST_JSON.len()),
        ("gcm_seal_response", 16 + RESPONSE_JSON_LEN),
    ] {
        let mut buf = vec![0u8; len];
        g.bench_function(name, |b| {
            b.iter(|| {
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::empty(),
                        black_box(&mut buf),
                    )
                    .unwrap();
                let _ = black_box(tag);
            })
        });
    }
    for (name, len) in [
        ("gcm_open_site_layer", SITE_LAYER),
        ("gcm_open_master_layer", MASTER_LAYER),
        ("gcm_open_request", 16 + REQUEST_JSON.len()),
    ] {
        let mut sealed = vec![0u8; len];
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::empty(),
                &mut sealed,
            )
            .unwrap();
        sealed.extend_from_slice(tag.as_ref());
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |buf| {
                    black_box(
                        key.open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::empty(), buf)
                            .unwrap(),
                    );
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    for (name, len) in [("sha256_email", EMAIL.trim().len()), ("sha256_88", 88)] {
        let data = vec![b'a'; len];
        g.bench_function(name, |b| {
            b.iter(|| black_box(digest::digest(&digest::SHA256, black_box(&data))))
        });
    }
    g.finish();
}

fn keys() -> (Key, Key) {
    (
        Key::new(101, -1, Some(-1), 0, 0, i64::MAX, [1; 32]),
        Key::new(104, 123, Some(501), 0, 0, i64::MAX, [4; 32]),
    )
}

fn sample_token() -> AdvertisingToken {
    AdvertisingToken {
        version: TokenVersion::V4,
        identity: IdentityHeader {
            scope: IdentityScope::Uid2,
            identity_type: IdentityType::Email,
        },
        master_key_id: 101,
        expires_ms: 1_700_003_600_000,
        created_ms: 1_700_000_000_000,
        operator: OperatorIdentity::default(),
        site_key_id: 104,
        publisher: PublisherIdentity::for_site(123),
        privacy_bits: PrivacyBits::SERVER_SIDE,
        established_ms: 1_700_000_000_000,
        refreshed_ms: 1_700_000_000_000,
        raw_uid: RawUid::from_slice(&[9u8; 32]).unwrap(),
    }
}

fn operations(c: &mut Criterion) {
    let (master, site) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let token = sample_token();
    let mut rng = StdRng::seed_from_u64(1);
    let text = token.encode(&master, &site, &mut rng);

    let mut g = c.benchmark_group("operation");
    g.bench_function("token_encode_v4", |b| {
        b.iter(|| black_box(token.encode(&master, &site, &mut rng)))
    });
    g.bench_function("token_decode_v4", |b| {
        b.iter(|| black_box(advertising::decode(black_box(&text), &ring, 0).unwrap()))
    });

    let client_secret = GcmKey::new(&[3u8; 32]);
    let now = 1_700_000_000_000;
    let request = seal_request(&client_secret, now, [5; 8], REQUEST_JSON, &mut rng);
    let response_json = vec![b'x'; RESPONSE_JSON_LEN];
    g.bench_function("envelope_open_and_seal", |b| {
        b.iter_batched(
            || request.clone(),
            |req| {
                let opened = open_request(req, &client_secret, now).unwrap();
                black_box(seal_response(
                    &client_secret,
                    now,
                    opened.nonce,
                    &response_json,
                    &mut rng,
                ))
            },
            criterion::BatchSize::SmallInput,
        )
    });

    g.bench_function("email_normalise_and_hash", |b| {
        b.iter(|| black_box(HashedIdentity::from_email(black_box(EMAIL)).unwrap()))
    });

    let buckets: Vec<SaltBucket> = (0..1024u32)
        .map(|i| SaltBucket {
            id: i,
            last_updated_ms: 0,
            refresh_from_ms: None,
            current: BucketSecret::Salt(base64_encode(&[i as u8; 32])),
            previous: None,
        })
        .collect();
    let table = SaltTable::new(&buckets).unwrap();
    let identity = HashedIdentity::from_email("user@example.com").unwrap();
    let first_level = base64_encode(&[1u8; 32]);
    g.bench_function("raw_uid_derivation", |b| {
        b.iter(|| {
            let flh = FirstLevelHash::compute(black_box(&identity), &first_level);
            black_box(table.raw_uid(&flh, IdentityType::Email, RawUidSettings::default()))
        })
    });
    g.finish();
}

criterion_group!(benches, primitives, operations);
criterion_main!(benches);
