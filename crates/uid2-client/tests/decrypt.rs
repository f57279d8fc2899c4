//! Every decryption status of the official SDKs, for every token version, scope and identity
//! type, with tokens minted by `uid2-proto` (the operator's encoder). Sharing: `sharing.rs`.

mod common;

use common::*;
use serde_json::json;
use uid2_client::{
    BidstreamClient, DecryptionStatus, IdentityScope, IdentityType, SharingClient, TokenVersion,
};
use uid2_proto::encoding::{base64_encode, base64url_decode, base64url_encode};
use uid2_proto::key::Key;

fn default_bidstream(scope: IdentityScope) -> BidstreamClient {
    bidstream(&bidstream_json(
        &[master(), site()],
        scope_name(scope),
        3 * 86_400 + 10,
        NO_SITE_DATA,
    ))
}

#[test]
fn every_version_scope_and_type_decrypts() {
    for case in all_cases() {
        let token = case.token(&master(), &site());
        let client = default_bidstream(case.scope);
        let r = client.decrypt_token_into_raw_uid_at(&token, None, NOW);
        let what = format!(
            "{:?} {:?} {:?}",
            case.version, case.scope, case.identity_type
        );
        assert_eq!(r.status, DecryptionStatus::Success, "{what}");
        assert_eq!(r.uid().as_deref(), Some(case.raw_uid), "{what}");
        assert_eq!(r.site_id, Some(SITE_ID));
        assert_eq!(r.site_key_site_id, None, "bidstream keys carry no site id");
        assert_eq!(r.established_ms, Some(case.established_ms));
        assert_eq!(r.expiry_ms, Some(case.expires_ms));
        assert_eq!(r.advertising_token_version, Some(case.version));
        assert_eq!(r.identity_scope, Some(case.scope));
        assert!(!r.is_client_side_generated);
        if case.version == TokenVersion::V2 {
            assert_eq!(r.identity_type, None);
        } else {
            assert_eq!(r.identity_type, Some(case.identity_type), "{what}");
        }

        // The same token through a sharing client.
        let sharing = sharing(&sharing_json(
            &[master(), site()],
            scope_name(case.scope),
            30 * 86_400 + 10,
        ));
        let r = sharing.decrypt_token_into_raw_uid_at(&token, NOW);
        assert_eq!(r.status, DecryptionStatus::Success, "{what}");
        assert_eq!(r.uid().as_deref(), Some(case.raw_uid));
        assert_eq!(r.site_key_site_id, Some(SITE_ID));
    }
}

#[test]
fn v4_tokens_in_standard_base64_are_accepted() {
    let token = Mint::default().token(&master(), &site());
    let standard = base64_encode(&base64url_decode(&token).unwrap());
    let r =
        default_bidstream(IdentityScope::Uid2).decrypt_token_into_raw_uid_at(&standard, None, NOW);
    assert_eq!(r.status, DecryptionStatus::Success);
    assert_eq!(r.uid().as_deref(), Some(UID2_EMAIL));
}

#[test]
fn no_keys_and_stale_keys() {
    let token = Mint::default().token(&master(), &site());
    let fresh = BidstreamClient::new("http://127.0.0.1:9", "key", SECRET).unwrap();
    assert_eq!(
        fresh
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::NotInitialized
    );
    let unloaded = SharingClient::new("http://127.0.0.1:9", "key", SECRET).unwrap();
    assert_eq!(
        unloaded.decrypt_token_into_raw_uid_at(&token, NOW).status,
        DecryptionStatus::NotInitialized
    );

    // Keys that expired an hour ago: nothing can be trusted any more.
    let expired = |k: Key| {
        Key::new(
            k.id,
            k.site_id,
            k.keyset_id,
            0,
            0,
            (NOW - HOUR) / 1000,
            *k.secret(),
        )
    };
    let client = bidstream(&bidstream_json(
        &[expired(master()), expired(site())],
        "UID2",
        i64::MAX,
        NO_SITE_DATA,
    ));
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::KeysNotSynced
    );
    // One key still valid is enough.
    let client = bidstream(&bidstream_json(
        &[expired(master()), site()],
        "UID2",
        i64::MAX,
        NO_SITE_DATA,
    ));
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::Success
    );
}

#[test]
fn missing_master_or_site_key() {
    for case in all_cases() {
        let token = case.token(&master(), &site());
        let scope = scope_name(case.scope);
        let only_site = bidstream(&bidstream_json(&[site()], scope, i64::MAX, NO_SITE_DATA));
        assert_eq!(
            only_site
                .decrypt_token_into_raw_uid_at(&token, None, NOW)
                .status,
            DecryptionStatus::NotAuthorizedForMasterKey
        );
        let only_master = bidstream(&bidstream_json(&[master()], scope, i64::MAX, NO_SITE_DATA));
        let r = only_master.decrypt_token_into_raw_uid_at(&token, None, NOW);
        assert_eq!(r.status, DecryptionStatus::NotAuthorizedForKey);
        assert_eq!(r.raw_uid, None);
        // Java's order: a missing site key is reported before expiry.
        let late = only_master.decrypt_token_into_raw_uid_at(&token, None, case.expires_ms + 1);
        assert_eq!(late.status, DecryptionStatus::NotAuthorizedForKey);
    }
}

#[test]
fn invalid_payloads_and_versions() {
    let client = default_bidstream(IdentityScope::Uid2);
    let token = Mint::default().token(&master(), &site());
    let bytes = base64url_decode(&token).unwrap();
    let check = |t: &str, expected: DecryptionStatus| {
        assert_eq!(
            client.decrypt_token_into_raw_uid_at(t, None, NOW).status,
            expected,
            "{t:?}"
        );
    };
    check("", DecryptionStatus::InvalidPayload);
    check("A4A", DecryptionStatus::InvalidPayload);
    check("!!!!!!!!", DecryptionStatus::InvalidPayload);
    check("é€€€€", DecryptionStatus::InvalidPayload);
    // Truncated by one byte, as the Java SDK's invalidPayload test does.
    check(
        &base64url_encode(&bytes[..bytes.len() - 1]),
        DecryptionStatus::InvalidPayload,
    );
    check(&token[..40], DecryptionStatus::InvalidPayload);
    // A flipped bit in either layer.
    for i in [20, bytes.len() - 20] {
        let mut tampered = bytes.clone();
        tampered[i] ^= 1;
        check(
            &base64url_encode(&tampered),
            DecryptionStatus::InvalidPayload,
        );
    }
    // Keys with the right ids but other secrets.
    let wrong = |k: Key| Key::new(k.id, k.site_id, k.keyset_id, 0, 0, k.expires_s, [9; 32]);
    let other = bidstream(&bidstream_json(
        &[wrong(master()), site()],
        "UID2",
        i64::MAX,
        NO_SITE_DATA,
    ));
    assert_eq!(
        other
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::InvalidPayload
    );
    let v2 = Mint {
        version: TokenVersion::V2,
        raw_uid: UID_V2,
        ..Mint::default()
    }
    .token(&master(), &site());
    let other = bidstream(&bidstream_json(
        &[master(), wrong(site())],
        "UID2",
        i64::MAX,
        NO_SITE_DATA,
    ));
    assert_eq!(
        other.decrypt_token_into_raw_uid_at(&v2, None, NOW).status,
        DecryptionStatus::InvalidPayload
    );
    // Unknown version bytes.
    let mut unknown = bytes.clone();
    unknown[1] = 0x55;
    check(
        &base64url_encode(&unknown),
        DecryptionStatus::VersionNotSupported,
    );
    check("AAAAAAAA", DecryptionStatus::VersionNotSupported);
}

#[test]
fn identity_scope_must_match_the_keys() {
    for version in [TokenVersion::V3, TokenVersion::V4] {
        let euid = Mint {
            version,
            scope: IdentityScope::Euid,
            raw_uid: EUID_EMAIL,
            ..Mint::default()
        }
        .token(&master(), &site());
        let r =
            default_bidstream(IdentityScope::Uid2).decrypt_token_into_raw_uid_at(&euid, None, NOW);
        assert_eq!(r.status, DecryptionStatus::InvalidIdentityScope);
        let uid2 = Mint {
            version,
            ..Mint::default()
        }
        .token(&master(), &site());
        let r =
            default_bidstream(IdentityScope::Euid).decrypt_token_into_raw_uid_at(&uid2, None, NOW);
        assert_eq!(r.status, DecryptionStatus::InvalidIdentityScope);
    }
}

#[test]
fn expiry_is_checked_to_the_millisecond() {
    for case in all_cases() {
        let token = case.token(&master(), &site());
        let client = default_bidstream(case.scope);
        let at_expiry = client.decrypt_token_into_raw_uid_at(&token, None, case.expires_ms);
        assert_eq!(at_expiry.status, DecryptionStatus::Success);
        let r = client.decrypt_token_into_raw_uid_at(&token, None, case.expires_ms + 1);
        assert_eq!(r.status, DecryptionStatus::ExpiredToken);
        assert_eq!(r.raw_uid, None);
        assert_eq!(r.expiry_ms, Some(case.expires_ms));
        assert_eq!(r.site_id, Some(SITE_ID));
        assert_eq!(r.established_ms, Some(case.established_ms));
    }
}

#[test]
fn token_lifetimes_are_bounded() {
    let max_s = 3 * 86_400;
    let client = bidstream(&bidstream_json(
        &[master(), site()],
        "UID2",
        max_s,
        NO_SITE_DATA,
    ));
    for version in [TokenVersion::V3, TokenVersion::V4] {
        let at = |created_ms: i64, expires_ms: i64| {
            let token = Mint {
                version,
                created_ms,
                expires_ms,
                ..Mint::default()
            }
            .token(&master(), &site());
            client
                .decrypt_token_into_raw_uid_at(&token, None, NOW)
                .status
        };
        // expires − created exactly at the limit passes, one millisecond more does not, even
        // when little of it remains.
        assert_eq!(
            at(NOW - DAY, NOW - DAY + max_s * 1000),
            DecryptionStatus::Success
        );
        assert_eq!(
            at(NOW - DAY, NOW - DAY + max_s * 1000 + 1),
            DecryptionStatus::InvalidTokenLifetime
        );
        // Created in the future: 30 minutes of skew are tolerated, not more.
        assert_eq!(at(NOW + 30 * 60_000, NOW + HOUR), DecryptionStatus::Success);
        assert_eq!(
            at(NOW + 30 * 60_000 + 1, NOW + HOUR),
            DecryptionStatus::InvalidTokenLifetime
        );
        let token = Mint {
            version,
            created_ms: NOW + 31 * 60_000,
            ..Mint::default()
        }
        .token(&master(), &site());
        let r = client.decrypt_token_into_raw_uid_at(&token, None, NOW);
        assert_eq!(r.status, DecryptionStatus::InvalidTokenLifetime);
        assert_eq!(r.raw_uid, None);
        assert_eq!(r.identity_type, Some(IdentityType::Email));
        assert_eq!(r.advertising_token_version, Some(version));
    }
    // v2 has no creation time: the remaining lifetime counts.
    let v2 = |expires_ms: i64| {
        Mint {
            version: TokenVersion::V2,
            raw_uid: UID_V2,
            expires_ms,
            ..Mint::default()
        }
        .token(&master(), &site())
    };
    let long = v2(NOW + max_s * 1000 + 60_000);
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&long, None, NOW)
            .status,
        DecryptionStatus::InvalidTokenLifetime
    );
    // …so the same token is fine two minutes later.
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&long, None, NOW + 120_000)
            .status,
        DecryptionStatus::Success
    );

    // Sharing clients use max_sharing_lifetime_seconds, bidstream ones ignore it.
    let token = Mint {
        created_ms: NOW,
        expires_ms: NOW + 10 * DAY,
        ..Mint::default()
    }
    .token(&master(), &site());
    let short_sharing = sharing(&sharing_json(&[master(), site()], "UID2", 5 * 86_400));
    assert_eq!(
        short_sharing
            .decrypt_token_into_raw_uid_at(&token, NOW)
            .status,
        DecryptionStatus::InvalidTokenLifetime
    );
    let long_sharing = sharing(&sharing_json(&[master(), site()], "UID2", 30 * 86_400));
    assert_eq!(
        long_sharing
            .decrypt_token_into_raw_uid_at(&token, NOW)
            .status,
        DecryptionStatus::Success
    );
    // Without a limit in the answer, any lifetime passes (as in the SDKs).
    let unlimited =
        bidstream(&json!({"body": {"keys": [key_json(&master()), key_json(&site())]}}).to_string());
    let forever = Mint {
        created_ms: NOW,
        expires_ms: NOW + 3650 * DAY,
        ..Mint::default()
    }
    .token(&master(), &site());
    assert_eq!(
        unlimited
            .decrypt_token_into_raw_uid_at(&forever, None, NOW)
            .status,
        DecryptionStatus::Success
    );
}

#[test]
fn client_side_generated_tokens_need_a_listed_domain() {
    let site_data = json!([
        {"id": SITE_ID, "domain_names": ["example.com", "com.example.app"]},
        {"id": 7, "domain_names": ["other.org"]},
    ]);
    let client = bidstream(&bidstream_json(
        &[master(), site()],
        "UID2",
        3 * 86_400,
        site_data,
    ));
    for version in [TokenVersion::V2, TokenVersion::V3, TokenVersion::V4] {
        let raw_uid = if version == TokenVersion::V2 {
            UID_V2
        } else {
            UID2_EMAIL
        };
        // Privacy bits 3: the legacy bit and the client-side bit, as /v2/token/client-generate writes.
        let cstg = Mint {
            version,
            raw_uid,
            privacy_bits: 3,
            ..Mint::default()
        }
        .token(&master(), &site());
        let ok = client.decrypt_token_into_raw_uid_at(&cstg, Some("example.com"), NOW);
        assert_eq!(ok.status, DecryptionStatus::Success, "{version:?}");
        assert!(ok.is_client_side_generated);
        assert_eq!(ok.uid().as_deref(), Some(raw_uid));
        // App names are listed with domains; case does not matter.
        for name in ["com.example.app", "EXAMPLE.COM"] {
            assert_eq!(
                client
                    .decrypt_token_into_raw_uid_at(&cstg, Some(name), NOW)
                    .status,
                DecryptionStatus::Success
            );
        }
        for name in [Some("other.org"), Some("sub.example.com"), Some(""), None] {
            let r = client.decrypt_token_into_raw_uid_at(&cstg, name, NOW);
            assert_eq!(
                r.status,
                DecryptionStatus::DomainNameCheckFailed,
                "{version:?} {name:?}"
            );
            assert_eq!(r.raw_uid, None);
            assert!(r.is_client_side_generated);
            assert_eq!(r.site_id, Some(SITE_ID));
        }
        // A server-side token is never domain-checked.
        let server = Mint {
            version,
            raw_uid,
            ..Mint::default()
        }
        .token(&master(), &site());
        assert_eq!(
            client
                .decrypt_token_into_raw_uid_at(&server, Some("other.org"), NOW)
                .status,
            DecryptionStatus::Success
        );
        // Sharing clients do not check domains.
        let sharer = sharing(&sharing_json(&[master(), site()], "UID2", 30 * 86_400));
        let r = sharer.decrypt_token_into_raw_uid_at(&cstg, NOW);
        assert_eq!(r.status, DecryptionStatus::Success);
        assert!(r.is_client_side_generated);
        // Expiry is reported before the domain check.
        assert_eq!(
            client
                .decrypt_token_into_raw_uid_at(&cstg, None, NOW + 2 * HOUR)
                .status,
            DecryptionStatus::ExpiredToken
        );
    }
    // A site missing from site_data (or no site_data at all) allows no domain.
    let no_site_data = bidstream(&bidstream_json(
        &[master(), site()],
        "UID2",
        3 * 86_400,
        NO_SITE_DATA,
    ));
    let cstg = Mint {
        privacy_bits: 3,
        ..Mint::default()
    }
    .token(&master(), &site());
    assert_eq!(
        no_site_data
            .decrypt_token_into_raw_uid_at(&cstg, Some("example.com"), NOW)
            .status,
        DecryptionStatus::DomainNameCheckFailed
    );
    // The domain check comes before the lifetime check.
    let long = Mint {
        privacy_bits: 3,
        created_ms: NOW,
        expires_ms: NOW + 10 * DAY,
        ..Mint::default()
    }
    .token(&master(), &site());
    let site_data = json!([{"id": SITE_ID, "domain_names": ["example.com"]}]);
    let client = bidstream(&bidstream_json(
        &[master(), site()],
        "UID2",
        3 * 86_400,
        site_data,
    ));
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&long, Some("nope.com"), NOW)
            .status,
        DecryptionStatus::DomainNameCheckFailed
    );
    assert_eq!(
        client
            .decrypt_token_into_raw_uid_at(&long, Some("example.com"), NOW)
            .status,
        DecryptionStatus::InvalidTokenLifetime
    );
}

#[test]
fn a_refresh_swaps_keys_for_every_clone() {
    let client = default_bidstream(IdentityScope::Uid2);
    let clone = client.clone();
    let other_site = Key::new(200, 1234, Some(5), 0, 0, (NOW + DAY) / 1000, [5; 32]);
    let token = Mint {
        site_id: 1234,
        ..Mint::default()
    }
    .token(&master(), &other_site);
    assert_eq!(
        clone
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::NotAuthorizedForKey
    );
    client
        .refresh_json(&bidstream_json(
            &[master(), other_site],
            "UID2",
            i64::MAX,
            NO_SITE_DATA,
        ))
        .unwrap();
    assert_eq!(
        clone
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::Success
    );
    assert_eq!(clone.keys().unwrap().len(), 2);
    // A bad answer is refused and the keys in use stay.
    assert!(
        client
            .refresh_json(r#"{"body":{"keys":[{"id":1}]}}"#)
            .is_err()
    );
    assert!(client.refresh_json(r#"{"status":"unauthorized"}"#).is_err());
    assert_eq!(
        clone
            .decrypt_token_into_raw_uid_at(&token, None, NOW)
            .status,
        DecryptionStatus::Success
    );
}
