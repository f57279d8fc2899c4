//! Test helpers: key-endpoint answers as JSON, and tokens minted with `uid2-proto` (the
//! operator's own encoder) for every version, scope, type and privacy bit.

#![allow(dead_code, unreachable_pub)]

use serde_json::{Value, json};
use uid2_client::{
    BidstreamClient, IdentityScope, IdentityType, RawUid, SharingClient, TokenVersion,
};
use uid2_proto::encoding::base64_encode;
use uid2_proto::key::Key;
use uid2_proto::token::{
    AdvertisingToken, AdvertisingTokenV2, IdentityHeader, OperatorIdentity, PrivacyBits,
    PublisherIdentity,
};

pub const NOW: i64 = 1_700_000_000_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;
pub const SITE_ID: i32 = 9000;
pub const MASTER_KEYSET: i32 = 9_999_999;
pub const SITE_KEYSET: i32 = 99_999;

/// Raw UIDs: v2 (32 bytes) and v3 (33 bytes) for each scope and type.
pub const UID_V2: &str = "ywsvDNINiZOVSsfkHpLpSJzXzhr6Jx9Z/4Q0+lsEUvM=";
pub const UID2_EMAIL: &str = "AKCoNGWPYng/whjBIwANJHKvvGlGyzARtDIAk95FlJyb";
pub const UID2_PHONE: &str = "BEOGxroPLdcY7LrSiwjY52+X05V0ryELpJmoWAyXiwbZ";
pub const EUID_EMAIL: &str = "EKCoNGWPYng/whjBIwANJHKvvGlGyzARtDIAk95FlJyb";
pub const EUID_PHONE: &str = "FEOGxroPLdcY7LrSiwjY52+X05V0ryELpJmoWAyXiwbZ";

pub fn master() -> Key {
    Key::new(
        164,
        -1,
        Some(MASTER_KEYSET),
        0,
        0,
        (NOW + 365 * DAY) / 1000,
        [1; 32],
    )
}

pub fn site() -> Key {
    Key::new(
        165,
        SITE_ID,
        Some(SITE_KEYSET),
        0,
        0,
        (NOW + 365 * DAY) / 1000,
        [2; 32],
    )
}

pub fn key_json(k: &Key) -> Value {
    json!({
        "id": k.id, "site_id": k.site_id, "keyset_id": k.keyset_id, "created": k.created_s,
        "activates": k.activates_s, "expires": k.expires_s, "secret": base64_encode(k.secret()),
    })
}

/// A `/v2/key/bidstream` answer.
pub fn bidstream_json(keys: &[Key], scope: &str, max_lifetime_s: i64, site_data: Value) -> String {
    json!({"status": "success", "body": {
        "max_bidstream_lifetime_seconds": max_lifetime_s,
        "identity_scope": scope,
        "allow_clock_skew_seconds": 1800,
        "keys": keys.iter().map(|k| {
            let mut j = key_json(k);
            let o = j.as_object_mut().unwrap();
            o.remove("keyset_id");
            o.remove("site_id");
            j
        }).collect::<Vec<_>>(),
        "site_data": site_data,
    }})
    .to_string()
}

/// A `/v2/key/sharing` answer for the caller `SITE_ID`.
pub fn sharing_json(keys: &[Key], scope: &str, max_lifetime_s: i64) -> String {
    json!({"status": "success", "body": {
        "caller_site_id": SITE_ID,
        "master_keyset_id": MASTER_KEYSET,
        "default_keyset_id": SITE_KEYSET,
        "token_expiry_seconds": "2592000",
        "max_sharing_lifetime_seconds": max_lifetime_s,
        "identity_scope": scope,
        "allow_clock_skew_seconds": 1800,
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
    }})
    .to_string()
}

/// What a token is minted with.
#[derive(Clone)]
pub struct Mint {
    pub version: TokenVersion,
    pub scope: IdentityScope,
    pub identity_type: IdentityType,
    pub raw_uid: &'static str,
    pub privacy_bits: u32,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub established_ms: i64,
    pub site_id: i32,
}

impl Default for Mint {
    fn default() -> Self {
        Self {
            version: TokenVersion::V4,
            scope: IdentityScope::Uid2,
            identity_type: IdentityType::Email,
            raw_uid: UID2_EMAIL,
            privacy_bits: 1,
            created_ms: NOW - HOUR,
            expires_ms: NOW + HOUR,
            established_ms: NOW - 10 * DAY,
            site_id: SITE_ID,
        }
    }
}

impl Mint {
    pub fn token(&self, master: &Key, site: &Key) -> String {
        let raw_uid = RawUid::parse_base64(self.raw_uid).unwrap();
        match self.version {
            TokenVersion::V2 => AdvertisingTokenV2 {
                master_key_id: master.id,
                expires_ms: self.expires_ms,
                site_key_id: site.id,
                site_id: self.site_id,
                raw_uid,
                privacy_bits: PrivacyBits(self.privacy_bits),
                established_ms: self.established_ms,
            }
            .encode_with_ivs(master, site, rand::random(), rand::random()),
            version => AdvertisingToken {
                version,
                identity: IdentityHeader {
                    scope: self.scope,
                    identity_type: self.identity_type,
                },
                master_key_id: master.id,
                expires_ms: self.expires_ms,
                created_ms: self.created_ms,
                operator: OperatorIdentity::default(),
                site_key_id: site.id,
                publisher: PublisherIdentity::for_site(self.site_id),
                privacy_bits: PrivacyBits(self.privacy_bits),
                established_ms: self.established_ms,
                refreshed_ms: self.created_ms,
                raw_uid,
            }
            .encode(master, site, &mut rand::rng()),
        }
    }
}

/// Every version × scope × type the SDKs decode (v2 tokens only ever held UID2 emails).
pub fn all_cases() -> Vec<Mint> {
    let mut cases = vec![Mint {
        version: TokenVersion::V2,
        raw_uid: UID_V2,
        ..Mint::default()
    }];
    for version in [TokenVersion::V3, TokenVersion::V4] {
        for (scope, identity_type, raw_uid) in [
            (IdentityScope::Uid2, IdentityType::Email, UID2_EMAIL),
            (IdentityScope::Uid2, IdentityType::Phone, UID2_PHONE),
            (IdentityScope::Euid, IdentityType::Email, EUID_EMAIL),
            (IdentityScope::Euid, IdentityType::Phone, EUID_PHONE),
            (IdentityScope::Uid2, IdentityType::Email, UID_V2),
        ] {
            cases.push(Mint {
                version,
                scope,
                identity_type,
                raw_uid,
                ..Mint::default()
            });
        }
    }
    cases
}

pub fn scope_name(scope: IdentityScope) -> &'static str {
    scope.as_str()
}

/// A client secret the tests never send anywhere (the clients are loaded with `refresh_json`).
pub const SECRET: &str = "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=";
/// A bidstream answer without `site_data`.
pub const NO_SITE_DATA: Value = Value::Null;

/// A bidstream client loaded with `json`.
pub fn bidstream(json: &str) -> BidstreamClient {
    let client = BidstreamClient::new("http://127.0.0.1:9", "key", SECRET).unwrap();
    client.refresh_json(json).unwrap();
    client
}

/// A sharing client loaded with `json`.
pub fn sharing(json: &str) -> SharingClient {
    let client = SharingClient::new("http://127.0.0.1:9", "key", SECRET).unwrap();
    client.refresh_json(json).unwrap();
    client
}

/// A v4 raw UID (base64): the meta byte `(env << 6) | (1 << 5) | (scope << 4) | (type << 2)`
/// (production environment) and 32 bytes of `fill`, the shape the operator derives from
/// key-material salt buckets. Its first character is `o` (UID2 email), `p` (UID2 phone), `s`
/// (EUID email) or `t` (EUID phone).
pub fn raw_uid_v4(scope: IdentityScope, identity_type: IdentityType, fill: u8) -> String {
    let meta = (2 << 6) | (1 << 5) | (scope.code() << 4) | (identity_type.code() << 2);
    let mut bytes = vec![meta];
    bytes.extend_from_slice(&[fill; 32]);
    base64_encode(&bytes)
}
