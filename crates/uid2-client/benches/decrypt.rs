//! `BidstreamClient` decryption of a v4 token with warm keys, on one thread and on two (reported
//! as wall time per decryption, i.e. throughput), next to the primitive it is built from,
//! measured in the same run: one AES-256-GCM open (aws-lc-rs `LessSafeKey::open_in_place`) of a
//! box as large as the token's bytes. `scripts/bench-report.py` prints the ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use uid2_client::{BidstreamClient, DecryptionStatus, IdentityScope, IdentityType, RawUid};
use uid2_proto::encoding::{base64_encode, base64url_decode};
use uid2_proto::key::Key;
use uid2_proto::token::{
    AdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity,
    TokenVersion,
};

const NOW: i64 = 1_700_000_000_000;

fn key_json(k: &Key) -> String {
    format!(
        r#"{{"id":{},"created":0,"activates":0,"expires":{},"secret":"{}"}}"#,
        k.id,
        k.expires_s,
        base64_encode(k.secret())
    )
}

/// A client with warm keys (a master key, the token's site key and 50 other sites' keys, as a
/// DSP holds them) and a v4 token as the operator mints it.
fn setup() -> (BidstreamClient, String) {
    let expires_s = NOW / 1000 + 86_400;
    let master = Key::new(1, -1, None, 0, 0, expires_s, [1; 32]);
    let site = Key::new(2, 1001, None, 0, 0, expires_s, [2; 32]);
    let mut keys = vec![key_json(&master), key_json(&site)];
    for i in 0..50u8 {
        keys.push(key_json(&Key::new(
            100 + u32::from(i),
            2000 + i32::from(i),
            None,
            0,
            0,
            expires_s,
            [i; 32],
        )));
    }
    let json = format!(
        r#"{{"body":{{"max_bidstream_lifetime_seconds":259210,"identity_scope":"UID2",
            "allow_clock_skew_seconds":1800,"keys":[{}],
            "site_data":[{{"id":1001,"domain_names":["example.com"]}}]}}}}"#,
        keys.join(",")
    );
    let client =
        BidstreamClient::new("http://127.0.0.1:9", "key", &base64_encode(&[0; 32])).unwrap();
    client.refresh_json(&json).unwrap();
    let token = AdvertisingToken {
        version: TokenVersion::V4,
        identity: IdentityHeader {
            scope: IdentityScope::Uid2,
            identity_type: IdentityType::Email,
        },
        master_key_id: master.id,
        expires_ms: NOW + 3 * 86_400_000,
        created_ms: NOW,
        operator: OperatorIdentity::default(),
        site_key_id: site.id,
        publisher: PublisherIdentity::for_site(1001),
        privacy_bits: PrivacyBits::SERVER_SIDE,
        established_ms: NOW - 86_400_000,
        refreshed_ms: NOW,
        raw_uid: RawUid::from_slice(&[0x00; 33]).unwrap(),
    }
    .encode(&master, &site, &mut rand::rng());
    (client, token)
}

fn decrypt(c: &mut Criterion) {
    let (client, token) = setup();
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::Success
    );
    let mut g = c.benchmark_group("client");
    g.bench_function("decrypt_v4_1_thread", |b| {
        b.iter(|| black_box(client.decrypt_token_into_raw_uid_at(black_box(&token), None, NOW)))
    });
    g.bench_function("decrypt_v4_2_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(2);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..per_thread {
                            black_box(client.decrypt_token_into_raw_uid_at(
                                black_box(&token),
                                None,
                                NOW,
                            ));
                        }
                    });
                }
            });
            // Wall time per decryption across both threads.
            let elapsed = start.elapsed();
            Duration::from_secs_f64(elapsed.as_secs_f64() * iters as f64 / (2 * per_thread) as f64)
        })
    });
    g.finish();

    // The primitive: one GCM open of a box (IV ‖ ciphertext ‖ tag) as long as the token's bytes.
    let token_len = base64url_decode(&token).unwrap().len();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut sealed = vec![0u8; token_len - 12 - 16];
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([1; 12]),
            Aad::empty(),
            &mut sealed,
        )
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    let mut g = c.benchmark_group("client_primitive");
    g.bench_function("gcm_open_token_size", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| {
                black_box(
                    key.open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::empty(), buf)
                        .unwrap(),
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
