//! Every vector of the official SDKs' and operator's public test data (`tests/data/vectors.json`,
//! copied from the shared fixtures) and the operator's local fixture salts (Appendix A of the
//! operator reference), checked against this crate.

use serde_json::Value;
use uid2_proto::encoding::{base64_decode, base64url_decode, base64url_encode, hex_decode};
use uid2_proto::identity::{
    HashedIdentity, IdentityHash, IdentityScope, IdentityType, is_normalized_phone, normalize_email,
};
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::salt::{
    BucketIdEncoder, Environment, FirstLevelHash, RawUidSettings, SaltTable, parse_salt_file,
};
use uid2_proto::token::{DecodedAdvertisingToken, TokenVersion, advertising};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/vectors.json")).expect("vectors.json parses")
}

fn key_from(v: &Value, keyset: i32) -> Key {
    let secret: [u8; 32] = base64_decode(v["secret_b64"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    Key::new(
        v["id"].as_u64().unwrap() as u32,
        v["site_id"].as_i64().unwrap() as i32,
        Some(keyset),
        0,
        0,
        i64::MAX,
        secret,
    )
}

#[test]
fn email_normalisation_and_hashes() {
    let v = vectors();
    for case in v["email_normalisation"].as_array().unwrap() {
        let input = case[0].as_str().unwrap();
        let expected_normalised = case[1].as_str();
        let expected_hash = case[2].as_str().unwrap();
        let normalised = normalize_email(input);
        if let Some(expected) = expected_normalised {
            assert_eq!(
                normalised.as_deref(),
                Some(expected),
                "normalising {input:?}"
            );
            assert_eq!(
                HashedIdentity::from_email(input).unwrap().hash.as_str(),
                expected_hash
            );
        } else {
            // Emoji cases: the vector gives the hash of the (unchanged) input.
            assert_eq!(normalised.as_deref(), Some(input), "normalising {input:?}");
            assert_eq!(IdentityHash::of_normalized(input).as_str(), expected_hash);
        }
    }
}

#[test]
fn invalid_emails_are_rejected() {
    for input in vectors()["invalid_emails"].as_array().unwrap() {
        let input = input.as_str().unwrap();
        assert_eq!(normalize_email(input), None, "{input:?} should be invalid");
        assert!(HashedIdentity::from_email(input).is_err());
    }
}

#[test]
fn phones_valid_invalid_and_hashed() {
    let v = vectors();
    for p in v["phones"]["valid"].as_array().unwrap() {
        assert!(is_normalized_phone(p.as_str().unwrap()), "{p}");
    }
    for p in v["phones"]["invalid"].as_array().unwrap() {
        assert!(!is_normalized_phone(p.as_str().unwrap()), "{p}");
        assert!(HashedIdentity::from_phone(p.as_str().unwrap()).is_err());
    }
    for pair in v["phones"]["hashes"].as_array().unwrap() {
        let identity = HashedIdentity::from_phone(pair[0].as_str().unwrap()).unwrap();
        assert_eq!(identity.identity_type, IdentityType::Phone);
        assert_eq!(identity.hash.as_str(), pair[1].as_str().unwrap());
    }
}

#[test]
fn bucket_index_and_raw_uids_with_the_2021_salts() {
    let v = vectors();
    let salts = &v["salts_2021"];
    let first_level = salts["first_level_salt"].as_str().unwrap();
    let buckets = parse_salt_file(include_str!("data/reference-salts-2021.txt")).unwrap();
    let table = SaltTable::new(&buckets).unwrap();
    assert_eq!(table.len(), 8);

    for case in v["email_to_raw_uid"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let identity = if input.starts_with('+') {
            HashedIdentity::from_phone(input).unwrap()
        } else {
            HashedIdentity::from_email(input).unwrap()
        };
        assert_eq!(
            identity.hash.as_str(),
            case["identity_hash_b64"].as_str().unwrap()
        );
        let flh = FirstLevelHash::compute(&identity, first_level);
        assert_eq!(
            flh.to_base64(),
            case["first_level_hash_b64"].as_str().unwrap()
        );
        assert_eq!(
            table.bucket_index(&flh) as u64,
            case["bucket"].as_u64().unwrap(),
            "{input}"
        );

        let v2 = table.raw_uid(&flh, identity.identity_type, RawUidSettings::default());
        assert_eq!(v2.to_base64(), case["raw_uid_v2_b64"].as_str().unwrap());

        let v3 = RawUidSettings {
            v3_from_salts: true,
            ..RawUidSettings::default()
        };
        assert_eq!(
            table.raw_uid(&flh, identity.identity_type, v3).to_base64(),
            case["raw_uid_v3_b64"].as_str().unwrap()
        );
        if let Some(euid) = case["raw_uid_v3_euid_b64"].as_str() {
            let settings = RawUidSettings {
                scope: IdentityScope::Euid,
                ..v3
            };
            assert_eq!(
                table
                    .raw_uid(&flh, identity.identity_type, settings)
                    .to_base64(),
                euid
            );
        }
    }
}

#[test]
fn cross_platform_v4_token_decodes_field_by_field() {
    let v = vectors();
    let master = key_from(&v["keys"]["master"], -1);
    let site = key_from(&v["keys"]["site"], 9000);
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let t = &v["cross_platform_v4_token"];
    let text = t["token"].as_str().unwrap();
    let d = &t["decoded"];
    assert_eq!(
        base64url_decode(text).unwrap().len() as u64,
        d["bytes"].as_u64().unwrap()
    );

    let decoded = advertising::decode(text, &ring, 0).unwrap();
    let DecodedAdvertisingToken::V3OrV4(token) = &decoded else {
        panic!("expected a v4 token")
    };
    assert_eq!(token.version, TokenVersion::V4);
    assert_eq!(
        base64url_decode(text).unwrap()[0],
        d["header_byte"].as_u64().unwrap() as u8
    );
    assert_eq!(
        token.master_key_id as u64,
        d["master_key_id"].as_u64().unwrap()
    );
    assert_eq!(token.expires_ms, d["expires_ms"].as_i64().unwrap());
    assert_eq!(token.created_ms, d["generated_ms"].as_i64().unwrap());
    assert_eq!(
        token.operator.site_id as i64,
        d["operator_site_id"].as_i64().unwrap()
    );
    assert_eq!(
        token.operator.operator_type as i64,
        d["operator_type"].as_i64().unwrap()
    );
    assert_eq!(
        token.operator.version as i64,
        d["operator_version"].as_i64().unwrap()
    );
    assert_eq!(
        token.operator.key_id as i64,
        d["operator_key_id"].as_i64().unwrap()
    );
    assert_eq!(token.site_key_id as u64, d["site_key_id"].as_u64().unwrap());
    assert_eq!(
        token.publisher.site_id as i64,
        d["site_id"].as_i64().unwrap()
    );
    assert_eq!(
        token.publisher.publisher_id,
        d["publisher_id"].as_i64().unwrap()
    );
    assert_eq!(
        token.publisher.client_key_id as i64,
        d["client_key_id"].as_i64().unwrap()
    );
    assert_eq!(
        token.privacy_bits.0 as i64,
        d["privacy_bits"].as_i64().unwrap()
    );
    assert_eq!(token.established_ms, d["established_ms"].as_i64().unwrap());
    assert_eq!(token.refreshed_ms, d["refreshed_ms"].as_i64().unwrap());
    assert_eq!(
        token.raw_uid.to_base64(),
        d["raw_uid_b64"].as_str().unwrap()
    );
    assert_eq!(token.identity.scope, IdentityScope::Uid2);
    assert_eq!(token.identity.identity_type, IdentityType::Email);

    // Re-encoding the decoded fields gives a token of the same length that decodes the same.
    let again = token.encode_with_ivs(&master, &site, [1; 12], [2; 12]);
    assert_eq!(again.len(), text.len());
    assert_eq!(advertising::decode(&again, &ring, 0).unwrap(), decoded);
    // The vector expires in 2042: at a later "now" it is expired.
    assert!(matches!(
        advertising::decode(text, &ring, token.expires_ms + 1),
        Err(uid2_proto::token::TokenError::Expired { .. })
    ));
}

#[test]
fn base64url_vectors() {
    for pair in vectors()["base64url"].as_array().unwrap() {
        let bytes = hex_decode::<16>(&format!("{:0<32}", pair[0].as_str().unwrap()));
        let hex = pair[0].as_str().unwrap();
        let raw = &bytes.unwrap()[..hex.len() / 2];
        assert_eq!(base64url_encode(raw), pair[1].as_str().unwrap());
        assert_eq!(base64url_decode(pair[1].as_str().unwrap()).unwrap(), raw);
    }
}

/// The operator's local fixture salts (5 buckets: v2 salts, v4 key material, previous values),
/// reconstructed in `tests/data/operator-fixture-salts.txt`, against the values the operator's
/// own Java code computed (operator reference, Appendix A).
#[test]
fn operator_fixture_salts_give_the_reference_raw_uids() {
    const FIRST_LEVEL: &str = "fOGY/aRE44peL23i+cE9MkJrzmEeNZZziNZBfq7qqk8=";
    // 2026-11-25T00:00Z: every bucket's previous value is still reported, no refresh_from has passed.
    const NOW_MS: i64 = 1_795_564_800_000;
    let buckets = parse_salt_file(include_str!("data/operator-fixture-salts.txt")).unwrap();
    let table = SaltTable::new(&buckets).unwrap();
    let settings = RawUidSettings {
        environment: Environment::Test,
        ..RawUidSettings::default()
    };
    let ids = BucketIdEncoder::new("b", "HF6Qz42HBbVHINxhh191dB09BCuTWyBkNtrNicO4ZCw=");

    // (input, bucket id, u, p, r seconds)
    let cases: [(&str, &str, &str, Option<&str>, i64); 8] = [
        (
            "test@example.com",
            "bKaoveQoPR",
            "yCevINTMQ+BMfihNbXjrDLbm/FF+JvBan5YqmToByik=",
            Some("FMANUZGpDBWBumQek13r1nlngsF6+d1HDbagl9TLn50="),
            1814140800,
        ),
        (
            "user@example.com",
            "bv3WM92zaA",
            "ICALImfE94kkoCsBn79kNqDk485MeuvZ3bHUdsmPcKIf",
            Some("IB6EghawhupR9Vfx/F7ZQpRvgKuhgF4mEYv1YV9RtSve"),
            1806364800,
        ),
        (
            "validate@example.com",
            "bl5yy6kr58",
            "IB6Eg1OCF+lh69mH6vlFu2tQ0lCF8KihEihbuo4zz7j7",
            None,
            1803772800,
        ),
        (
            "refresh-optout@example.com",
            "bKaoveQoPR",
            "Ufp4cGiB7Xm57oGHzvCbp7OEB621dDGFUB+CBhpNU5g=",
            Some("Nb8Zl+oFsM8VLlmrOvgVrlgv43Yd8zprhJETQl3wZjI="),
            1814140800,
        ),
        (
            "a@b.com",
            "b1aZVGl7aB",
            "rrjytNpFgxV3/q6gXqyF8NT3zzUeRUS7DdL817FgFsg=",
            None,
            1812844800,
        ),
        (
            "e@f.com",
            "be58Mjz13q",
            "IB6EhHSY4LFCUUqBwL2qyzJ6RG8RTnMmKfoF/NKjKwpU",
            Some("Ov6MmivKzHIKNw7UHWSKsNNvTya6nKl6mtp1XVWPZt4="),
            1819324800,
        ),
        (
            "+12345678901",
            "bv3WM92zaA",
            "JCALIn2jvn98OvQPhijCPNLUHrq2SB09ftuzecdG7Vv7",
            Some("JB6EgkYDFpSB0mPL1P1irkxnHvGn0qi0ENrDEt7r6o8D"),
            1806364800,
        ),
        (
            "+00000000002",
            "bv3WM92zaA",
            "JCALIqsavX3K23LC+yRnzErN3WJH/gy+dSl453Xwj0Y1",
            Some("JB6Egp4FMkQC+QXt0jklDiV9vUQ+K6aSJW20p+n9TMFA"),
            1806364800,
        ),
    ];
    for (input, bucket_id, u, p, r) in cases {
        let identity = if input.starts_with('+') {
            HashedIdentity::from_phone(input).unwrap()
        } else {
            HashedIdentity::from_email(input).unwrap()
        };
        let flh = FirstLevelHash::compute(&identity, FIRST_LEVEL);
        let bucket = table.bucket(table.bucket_index(&flh));
        assert_eq!(ids.encode(bucket.id), bucket_id, "{input}");
        assert_eq!(
            table
                .raw_uid(&flh, identity.identity_type, settings)
                .to_base64(),
            u,
            "{input}"
        );
        assert_eq!(
            table
                .previous_raw_uid(&flh, identity.identity_type, settings, NOW_MS)
                .map(|p| p.to_base64())
                .as_deref(),
            p,
            "{input}"
        );
        assert_eq!(table.refresh_from_ms(&flh, NOW_MS) / 1000, r, "{input}");
    }

    // optout@example.com lands in bucket 1000001 and would map to this raw UID.
    let optout = FirstLevelHash::compute(
        &HashedIdentity::from_email("optout@example.com").unwrap(),
        FIRST_LEVEL,
    );
    assert_eq!(
        table
            .raw_uid(&optout, IdentityType::Email, settings)
            .to_base64(),
        "oZNV3Tlviq0HxoHvbClj4b+vNbiDJOR250MwY99X1NM="
    );
    // test@example.com as a v3 raw UID.
    let test = FirstLevelHash::compute(
        &HashedIdentity::from_email("test@example.com").unwrap(),
        FIRST_LEVEL,
    );
    let v3 = RawUidSettings {
        v3_from_salts: true,
        ..settings
    };
    assert_eq!(
        table.raw_uid(&test, IdentityType::Email, v3).to_base64(),
        "AMgnryDUzEPgTH4oTW146wy25vxRfibwWp+WKpk6Acop"
    );
}
