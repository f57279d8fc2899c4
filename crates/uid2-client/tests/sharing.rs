//! Sharing: raw UIDs of every version encrypted into sharing tokens and decrypted again, the
//! encryption statuses, and the key choice (active master key, caller's default keyset).

mod common;

use common::*;
use uid2_client::{
    DecryptionStatus, EncryptionStatus, IdentityScope, IdentityType, SharingClient, TokenVersion,
};
use uid2_proto::key::Key;

#[test]
fn sharing_encrypt_then_decrypt() {
    let sharer = sharing(&sharing_json(&[master(), site()], "UID2", 30 * 86_400 + 10));
    for raw_uid in [UID2_EMAIL, UID2_PHONE, UID_V2] {
        let token = sharer.encrypt_raw_uid_into_token_at(raw_uid, NOW).unwrap();
        assert!(
            token.starts_with(if raw_uid == UID2_PHONE { "B4" } else { "A4" }),
            "{token}"
        );
        let r = sharer.decrypt_token_into_raw_uid_at(&token, NOW);
        assert_eq!(r.status, DecryptionStatus::Success);
        assert_eq!(r.uid().as_deref(), Some(raw_uid));
        assert_eq!(r.site_id, Some(SITE_ID));
        assert_eq!(r.expiry_ms, Some(NOW + 2_592_000_000));
        assert_eq!(r.established_ms, Some(NOW));
        assert_eq!(r.advertising_token_version, Some(TokenVersion::V4));
        // Read with the operator's decoder: master key 164 outside, site key 165 inside.
        let decoded = uid2_proto::token::advertising::decode(
            &token,
            &uid2_proto::key::KeyRing::new([master(), site()]),
            NOW,
        )
        .unwrap();
        assert_eq!(decoded.site_key_id(), 165);
        assert_eq!(decoded.privacy_bits().0, 0);
    }
    // Expiry = now + token_expiry_seconds: past it the token is expired.
    let token = sharer
        .encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW)
        .unwrap();
    assert_eq!(
        sharer
            .decrypt_token_into_raw_uid_at(&token, NOW + 2_592_000_001)
            .status,
        DecryptionStatus::ExpiredToken
    );
    // EUID sharers mint EUID tokens.
    let euid = sharing(&sharing_json(&[master(), site()], "EUID", 30 * 86_400 + 10));
    let token = euid.encrypt_raw_uid_into_token_at(EUID_EMAIL, NOW).unwrap();
    assert!(token.starts_with("E4"));
    assert_eq!(
        euid.decrypt_token_into_raw_uid_at(&token, NOW)
            .identity_scope,
        Some(IdentityScope::Euid)
    );
}

#[test]
fn sharing_encrypt_statuses() {
    let unloaded = SharingClient::new("http://127.0.0.1:9", "key", SECRET).unwrap();
    assert_eq!(
        unloaded.encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW),
        Err(EncryptionStatus::NotInitialized)
    );
    let sharer = sharing(&sharing_json(&[master(), site()], "UID2", i64::MAX));
    assert_eq!(
        sharer.encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW + 400 * DAY),
        Err(EncryptionStatus::KeysNotSynced)
    );
    assert_eq!(
        sharer.encrypt_raw_uid_into_token_at("not base64", NOW),
        Err(EncryptionStatus::EncryptionFailure)
    );
    assert_eq!(
        sharer.encrypt_raw_uid_into_token_at("AAAA", NOW),
        Err(EncryptionStatus::EncryptionFailure)
    );
    let no_master = sharing(&sharing_json(&[site()], "UID2", i64::MAX));
    assert_eq!(
        no_master.encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW),
        Err(EncryptionStatus::NotAuthorizedForMasterKey)
    );
    let no_site = sharing(&sharing_json(&[master()], "UID2", i64::MAX));
    assert_eq!(
        no_site.encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW),
        Err(EncryptionStatus::NotAuthorizedForKey)
    );
    // A site key not yet active is not used; the older active one is.
    let newer = Key::new(
        166,
        SITE_ID,
        Some(SITE_KEYSET),
        0,
        (NOW + HOUR) / 1000,
        (NOW + DAY) / 1000,
        [3; 32],
    );
    let sharer = sharing(&sharing_json(
        &[master(), site(), newer.clone()],
        "UID2",
        i64::MAX,
    ));
    let token = sharer
        .encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW)
        .unwrap();
    let ring = uid2_proto::key::KeyRing::new([master(), site(), newer]);
    let at = |now| {
        uid2_proto::token::advertising::decode(&token, &ring, now)
            .unwrap()
            .site_key_id()
    };
    assert_eq!(at(NOW), 165);
    let token = sharer
        .encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW + 2 * HOUR)
        .unwrap();
    assert_eq!(
        uid2_proto::token::advertising::decode(&token, &ring, NOW)
            .unwrap()
            .site_key_id(),
        166
    );
    // A bidstream answer (no master keyset, no caller) cannot encrypt.
    let from_bidstream = sharing(&bidstream_json(
        &[master(), site()],
        "UID2",
        i64::MAX,
        NO_SITE_DATA,
    ));
    assert_eq!(
        from_bidstream.encrypt_raw_uid_into_token_at(UID2_EMAIL, NOW),
        Err(EncryptionStatus::NotAuthorizedForMasterKey)
    );
}

#[test]
fn v4_raw_uids_keep_their_identity_type() {
    // The official generator guesses phone from a leading B/F, which v4 raw UIDs (p/t) defeat;
    // whatever header a sharer wrote, the raw UID must come back as it went in.
    for scope in [IdentityScope::Uid2, IdentityScope::Euid] {
        let sharer = sharing(&sharing_json(
            &[master(), site()],
            scope_name(scope),
            30 * 86_400 + 10,
        ));
        for identity_type in [IdentityType::Email, IdentityType::Phone] {
            let raw_uid = raw_uid_v4(scope, identity_type, 0x5a);
            let expected_prefix = match (scope, identity_type) {
                (IdentityScope::Uid2, IdentityType::Email) => 'o',
                (IdentityScope::Uid2, IdentityType::Phone) => 'p',
                (IdentityScope::Euid, IdentityType::Email) => 's',
                (IdentityScope::Euid, IdentityType::Phone) => 't',
            };
            assert!(raw_uid.starts_with(expected_prefix), "{raw_uid}");
            let token = sharer.encrypt_raw_uid_into_token_at(&raw_uid, NOW).unwrap();
            let r = sharer.decrypt_token_into_raw_uid_at(&token, NOW);
            assert_eq!(r.status, DecryptionStatus::Success, "{raw_uid}");
            assert_eq!(r.uid().as_deref(), Some(raw_uid.as_str()));
            assert_eq!(r.identity_type, Some(identity_type), "{raw_uid}");
            assert_eq!(r.identity_scope, Some(scope));
        }
    }
    // A token whose header disagrees with its raw UID (as the official generator writes for a
    // v4 phone raw UID) still decrypts, as in the official SDKs.
    let mint = Mint {
        raw_uid: raw_uid_v4(IdentityScope::Uid2, IdentityType::Phone, 7).leak(),
        identity_type: IdentityType::Email,
        ..Mint::default()
    };
    let token = mint.token(&master(), &site());
    let sharer = sharing(&sharing_json(&[master(), site()], "UID2", 30 * 86_400 + 10));
    let r = sharer.decrypt_token_into_raw_uid_at(&token, NOW);
    assert_eq!(r.status, DecryptionStatus::Success);
    assert_eq!(r.uid().as_deref(), Some(mint.raw_uid));
}

#[test]
fn sharing_encrypt_with_a_chosen_keyset() {
    // A keyset another site shares with the caller: its key is used instead of the default's.
    let shared = Key::new(170, 4321, Some(77_777), 0, 0, (NOW + DAY) / 1000, [7; 32]);
    let sharer = sharing(&sharing_json(
        &[master(), site(), shared.clone()],
        "UID2",
        i64::MAX,
    ));
    let token = sharer
        .encrypt_raw_uid_into_token_with_keyset_at(UID2_EMAIL, 77_777, NOW)
        .unwrap();
    let ring = uid2_proto::key::KeyRing::new([master(), site(), shared]);
    let decoded = uid2_proto::token::advertising::decode(&token, &ring, NOW).unwrap();
    assert_eq!(decoded.site_key_id(), 170);
    assert_eq!(
        decoded.site_id(),
        SITE_ID,
        "still minted for the caller's site"
    );
    let r = sharer.decrypt_token_into_raw_uid_at(&token, NOW);
    assert_eq!(r.status, DecryptionStatus::Success);
    assert_eq!(r.uid().as_deref(), Some(UID2_EMAIL));
    // The default keyset, named: the same key as no choice at all.
    let named = sharer
        .encrypt_raw_uid_into_token_with_keyset_at(UID2_EMAIL, SITE_KEYSET, NOW)
        .unwrap();
    let decoded = uid2_proto::token::advertising::decode(&named, &ring, NOW).unwrap();
    assert_eq!(decoded.site_key_id(), 165);
    // A keyset the caller holds no active key of.
    assert_eq!(
        sharer.encrypt_raw_uid_into_token_with_keyset_at(UID2_EMAIL, 12_345, NOW),
        Err(EncryptionStatus::NotAuthorizedForKey)
    );
}
