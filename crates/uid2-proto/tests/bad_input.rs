//! Truncated, garbled, wrong-key, unknown-version and expired tokens give typed errors.

use rand::SeedableRng;
use rand::rngs::StdRng;
use uid2_proto::encoding::{base64_decode, base64_encode, base64url_decode, base64url_encode};
use uid2_proto::identity::{IdentityScope, IdentityType};
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::salt::{FirstLevelHash, RawUid};
use uid2_proto::token::{
    AdvertisingToken, AdvertisingTokenV2, DecodedAdvertisingToken, IdentityHeader,
    OperatorIdentity, PrivacyBits, PublisherIdentity, RefreshToken, TokenError, TokenVersion,
    advertising,
};

const NOW: i64 = 1_700_000_000_000;

fn keys() -> (Key, Key, Key) {
    (
        Key::new(101, -1, Some(-1), 0, 0, i64::MAX, [1; 32]),
        Key::new(104, 123, Some(501), 0, 0, i64::MAX, [4; 32]),
        Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [2; 32]),
    )
}

fn token(version: TokenVersion, raw_uid_len: usize) -> AdvertisingToken {
    AdvertisingToken {
        version,
        identity: IdentityHeader {
            scope: IdentityScope::Uid2,
            identity_type: IdentityType::Email,
        },
        master_key_id: 101,
        expires_ms: NOW + 3_600_000,
        created_ms: NOW,
        operator: OperatorIdentity::default(),
        site_key_id: 104,
        publisher: PublisherIdentity::for_site(123),
        privacy_bits: PrivacyBits::SERVER_SIDE,
        established_ms: NOW - 1000,
        refreshed_ms: NOW,
        raw_uid: RawUid::from_slice(&vec![0u8; raw_uid_len]).unwrap(),
    }
}

#[test]
fn v3_and_v4_round_trip_with_both_raw_uid_sizes() {
    let (master, site, _) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let mut rng = StdRng::seed_from_u64(1);
    for version in [TokenVersion::V3, TokenVersion::V4] {
        for len in [32, 33] {
            let t = token(version, len);
            let text = t.encode(&master, &site, &mut rng);
            assert_eq!(
                text.len(),
                if version == TokenVersion::V4 {
                    218 + len - 32
                } else {
                    220
                }
            );
            assert!(text.starts_with(if version == TokenVersion::V4 {
                "A4"
            } else {
                "A3"
            }));
            assert_eq!(
                advertising::decode(&text, &ring, NOW).unwrap(),
                DecodedAdvertisingToken::V3OrV4(t)
            );
        }
    }
}

#[test]
fn v4_in_standard_base64_also_decodes() {
    let (master, site, _) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let mut rng = StdRng::seed_from_u64(2);
    let text = token(TokenVersion::V4, 32).encode(&master, &site, &mut rng);
    let standard = base64_encode(&base64url_decode(&text).unwrap());
    assert_eq!(
        advertising::decode(&standard, &ring, NOW).unwrap(),
        advertising::decode(&text, &ring, NOW).unwrap()
    );
}

#[test]
fn advertising_token_errors_are_typed() {
    let (master, site, _) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let mut rng = StdRng::seed_from_u64(3);
    let text = token(TokenVersion::V4, 32).encode(&master, &site, &mut rng);

    // Truncated, at every length.
    for cut in 0..text.len() {
        let err = advertising::decode(&text[..cut], &ring, NOW).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed | TokenError::DecryptionFailed),
            "cut {cut}: {err:?}"
        );
    }
    // Garbled: every byte flipped somewhere after the key id fails authentication.
    let bytes = base64url_decode(&text).unwrap();
    for i in 6..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        let err = advertising::decode(&base64url_encode(&b), &ring, NOW).unwrap_err();
        assert_eq!(err, TokenError::DecryptionFailed, "byte {i}");
    }
    // Not base64 at all.
    assert_eq!(
        advertising::decode("A4%%%%%%%%", &ring, NOW),
        Err(TokenError::Malformed)
    );
    // Unknown version byte.
    let mut b = bytes.clone();
    b[1] = 99;
    assert_eq!(
        advertising::decode(&base64url_encode(&b), &ring, NOW),
        Err(TokenError::UnsupportedVersion)
    );
    // Missing keys and wrong secrets.
    assert_eq!(
        advertising::decode(&text, &KeyRing::new([site.clone()]), NOW),
        Err(TokenError::UnknownMasterKey(101))
    );
    assert_eq!(
        advertising::decode(&text, &KeyRing::new([master.clone()]), NOW),
        Err(TokenError::UnknownSiteKey(104))
    );
    // Cut short under a master key the caller lacks: the missing key is what is reported,
    // as the official SDKs look the key up before checking the length.
    let cut = base64url_encode(&bytes[..60]);
    assert_eq!(
        advertising::decode(&cut, &KeyRing::new([site.clone()]), NOW),
        Err(TokenError::UnknownMasterKey(101))
    );
    assert_eq!(
        advertising::decode(&cut, &ring, NOW),
        Err(TokenError::Malformed)
    );
    let wrong_master = Key::new(101, -1, Some(-1), 0, 0, i64::MAX, [9; 32]);
    assert_eq!(
        advertising::decode(&text, &KeyRing::new([wrong_master, site.clone()]), NOW),
        Err(TokenError::DecryptionFailed)
    );
    // Expired: reported before the site key is even looked up.
    assert_eq!(
        advertising::decode(&text, &KeyRing::new([master.clone()]), NOW + 3_600_001),
        Err(TokenError::Expired {
            expires_ms: NOW + 3_600_000
        })
    );
}

#[test]
fn header_and_raw_uid_must_agree() {
    let (master, site, _) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let mut t = token(TokenVersion::V4, 33);
    // A phone raw UID (type bits 01) in a token whose header says email.
    let mut uid = [0u8; 33];
    uid[0] = 0x04;
    t.raw_uid = RawUid::from_slice(&uid).unwrap();
    let text = t.encode_with_ivs(&master, &site, [0; 12], [0; 12]);
    // Decoding leaves the check to the caller (the SDKs skip it; the operator makes it).
    let decoded = advertising::decode(&text, &ring, NOW).unwrap();
    assert_eq!(decoded.raw_uid().as_bytes(), &uid);
    assert_eq!(
        decoded.check_raw_uid_identity(),
        Err(TokenError::IdentityMismatch)
    );
    assert_eq!(
        advertising::decode_checked(&text, &ring, NOW),
        Err(TokenError::IdentityMismatch)
    );
    uid[0] = 0x00;
    t.raw_uid = RawUid::from_slice(&uid).unwrap();
    let text = t.encode_with_ivs(&master, &site, [0; 12], [0; 12]);
    assert_eq!(
        advertising::decode(&text, &ring, NOW)
            .unwrap()
            .check_raw_uid_identity(),
        Ok(())
    );
    assert!(advertising::decode_checked(&text, &ring, NOW).is_ok());
    // Codes are compared as written: type code 3 reads as phone but is not the header's 1.
    t.identity.identity_type = IdentityType::Phone;
    uid[0] = 0x0c;
    t.raw_uid = RawUid::from_slice(&uid).unwrap();
    let text = t.encode_with_ivs(&master, &site, [0; 12], [0; 12]);
    assert_eq!(
        advertising::decode_checked(&text, &ring, NOW),
        Err(TokenError::IdentityMismatch)
    );
    uid[0] = 0x04;
    t.raw_uid = RawUid::from_slice(&uid).unwrap();
    let text = t.encode_with_ivs(&master, &site, [0; 12], [0; 12]);
    assert!(advertising::decode_checked(&text, &ring, NOW).is_ok());
}

#[test]
fn v2_tokens_decode_and_fail_cleanly() {
    let (master, site, _) = keys();
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let v2 = AdvertisingTokenV2 {
        master_key_id: 101,
        expires_ms: NOW + 1000,
        site_key_id: 104,
        site_id: 123,
        raw_uid: RawUid::from_slice(&[7u8; 32]).unwrap(),
        privacy_bits: PrivacyBits(0),
        established_ms: NOW - 5,
    };
    let text = v2.encode_with_ivs(&master, &site, [1; 16], [2; 16]);
    assert!(text.starts_with("Ag"));
    assert_eq!(
        advertising::decode(&text, &ring, NOW).unwrap(),
        DecodedAdvertisingToken::V2(v2.clone())
    );
    assert_eq!(
        advertising::decode(&text, &ring, NOW + 1001),
        Err(TokenError::Expired {
            expires_ms: NOW + 1000
        })
    );
    let bytes = base64_decode(&text).unwrap();
    for cut in [5, 20, 21, 40, bytes.len() - 1] {
        let err = advertising::decode(&base64_encode(&bytes[..cut]), &ring, NOW).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed | TokenError::DecryptionFailed),
            "cut {cut}: {err:?}"
        );
    }
}

#[test]
fn refresh_tokens_survive_every_truncation_and_flip() {
    let (_, _, refresh_key) = keys();
    let ring = KeyRing::new([refresh_key.clone()]);
    let t = RefreshToken {
        version: TokenVersion::V3,
        identity: IdentityHeader {
            scope: IdentityScope::Euid,
            identity_type: IdentityType::Email,
        },
        key_id: 102,
        expires_ms: NOW,
        created_ms: NOW,
        operator: OperatorIdentity::default(),
        publisher: PublisherIdentity::for_site(5),
        privacy_bits: PrivacyBits::SERVER_SIDE,
        established_ms: NOW,
        first_level_hash: FirstLevelHash([3; 32]),
    };
    let text = t.encode_v3_with_iv(&refresh_key, [0; 12]);
    assert!(text.starts_with("E3"));
    let unpadded = text.trim_end_matches('=');
    // Dropping only the padding leaves the same bytes, which Java's decoder accepts too.
    assert_eq!(RefreshToken::decode(unpadded, &ring).unwrap(), t);
    for cut in 0..unpadded.len() {
        assert!(
            RefreshToken::decode(&text[..cut], &ring).is_err(),
            "cut {cut}"
        );
    }
    let bytes = base64_decode(&text).unwrap();
    for i in 6..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 1;
        assert_eq!(
            RefreshToken::decode(&base64_encode(&b), &ring),
            Err(TokenError::DecryptionFailed)
        );
    }
}
