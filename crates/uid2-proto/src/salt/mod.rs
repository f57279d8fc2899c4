//! Salt buckets and raw UID derivation.
//!
//! An identity hash is salted once with the operator-wide first-level salt (giving the
//! first-level hash, on which opt-outs and refresh tokens are keyed), then with the salt of the
//! bucket that hash falls into (giving the raw UID). Buckets rotate one at a time, so raw UIDs
//! change gradually.
//!
//! - [`file`] reads and writes the official salt-file formats;
//! - [`table`] holds a million buckets compactly in memory;
//! - [`bucket_id`] names buckets the way `/v2/identity/map` and `/v2/identity/buckets` report them.

pub mod bucket_id;
pub mod file;
mod hashids;
pub mod table;

use std::fmt;

use crate::cipher::{ctr_encrypt_block, sha256};
use crate::encoding::{base64_decode_into, base64_encode, base64_encode_into};
use crate::identity::{HashedIdentity, IdentityCodes, IdentityScope, IdentityType};

pub use bucket_id::BucketIdEncoder;
pub use file::{SaltFileError, parse_salt_file, write_salt_file};
pub use table::{BucketView, SaltTable, SaltTableError, SecretView};

/// The number of salt buckets in production.
pub const PRODUCTION_BUCKET_COUNT: usize = 1 << 20;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// How long after a rotation the previous raw UID is still reported.
pub const PREVIOUS_UID_DAYS: i64 = 90;

/// SHA-256(identity hash text ‖ first-level salt): the key of opt-outs and refresh tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FirstLevelHash(pub [u8; 32]);

impl FirstLevelHash {
    /// Salts an identity hash with the operator's first-level salt.
    pub fn compute(identity: &HashedIdentity, first_level_salt: &str) -> Self {
        Self(sha256(&[
            identity.hash.as_bytes(),
            first_level_salt.as_bytes(),
        ]))
    }

    /// The 20-bit value from which the bucket index is taken.
    pub fn bucket_value(&self) -> usize {
        let h = &self.0;
        (usize::from(h[0]) << 12) | (usize::from(h[1]) << 4) | usize::from(h[2] & 0x0f)
    }

    /// The index of the salt bucket this hash falls into among `bucket_count` buckets.
    ///
    /// # Panics
    /// If `bucket_count` is zero.
    pub fn bucket_index(&self, bucket_count: usize) -> usize {
        let value = self.bucket_value();
        if bucket_count == PRODUCTION_BUCKET_COUNT {
            value
        } else {
            value % bucket_count
        }
    }

    /// Standard base64 of the hash.
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }
}

impl fmt::Debug for FirstLevelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstLevelHash({})", self.to_base64())
    }
}

/// A raw UID: 32 bytes (v2) or 33 bytes (v3 and v4), carried as 44 characters of base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawUid {
    bytes: [u8; 33],
    len: u8,
}

impl RawUid {
    /// A raw UID from 32 or 33 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 && bytes.len() != 33 {
            return None;
        }
        let mut out = [0u8; 33];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            bytes: out,
            len: bytes.len() as u8,
        })
    }

    /// Parses the 44-character base64 form.
    pub fn parse_base64(text: &str) -> Option<Self> {
        let mut buf = [0u8; 34];
        let n = base64_decode_into(text, &mut buf).ok()?;
        Self::from_slice(&buf[..n])
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The scope and identity type a 33-byte raw UID (v3, v4) carries in its first byte; a
    /// 32-byte (v2) raw UID carries none.
    pub fn identity_codes(&self) -> Option<IdentityCodes> {
        (self.len == 33).then(|| IdentityCodes::from_byte(self.bytes[0]))
    }

    /// Standard base64, as every API carries raw UIDs.
    pub fn to_base64(&self) -> String {
        let mut out = String::with_capacity(44);
        base64_encode_into(self.as_bytes(), &mut out);
        out
    }
}

impl fmt::Debug for RawUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawUid({})", self.to_base64())
    }
}

impl fmt::Display for RawUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// The deployment environment, encoded in v4 raw UIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Local and test deployments (0).
    Test = 0,
    /// Integration (1).
    Integ = 1,
    /// Production (2).
    Prod = 2,
}

impl Environment {
    /// Parses `test`, `integ` or `prod`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "test" | "local" => Some(Self::Test),
            "integ" => Some(Self::Integ),
            "prod" => Some(Self::Prod),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Integ => "integ",
            Self::Prod => "prod",
        }
    }
}

/// The key material of a bucket that derives v4 raw UIDs instead of hashing with a salt.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketKey {
    /// Key id (the low 24 bits are written into the raw UID).
    pub id: u32,
    /// The key as text; its UTF-8 bytes (exactly 32) are the AES-256 key.
    pub key: String,
    /// The key salt, used as text to derive the IV.
    pub salt: String,
}

impl fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketKey({}, ..)", self.id)
    }
}

/// What a bucket derives raw UIDs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketSecret {
    /// A salt string: v2 (or v3) raw UIDs.
    Salt(String),
    /// Key material: v4 raw UIDs.
    Key(BucketKey),
}

/// One salt bucket, as stored and as written in salt files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltBucket {
    /// The bucket id (hashed into `bucket_id` strings).
    pub id: u32,
    /// When the bucket last rotated (ms).
    pub last_updated_ms: i64,
    /// When clients should map again (ms), if set.
    pub refresh_from_ms: Option<i64>,
    /// The current secret.
    pub current: BucketSecret,
    /// The secret before the last rotation, if kept.
    pub previous: Option<BucketSecret>,
}

impl BucketSecret {
    /// The secret, borrowed.
    pub fn view(&self) -> SecretView<'_> {
        match self {
            Self::Salt(salt) => SecretView::Salt(salt),
            Self::Key(k) => SecretView::Key {
                id: k.id,
                key: &k.key,
                salt: &k.salt,
            },
        }
    }
}

impl SaltBucket {
    /// The bucket, borrowed.
    pub fn view(&self) -> BucketView<'_> {
        BucketView {
            id: self.id,
            last_updated_ms: self.last_updated_ms,
            refresh_from_ms: self.refresh_from_ms,
            current: self.current.view(),
            previous: self.previous.as_ref().map(BucketSecret::view),
        }
    }
}

/// How an operator turns buckets into raw UIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawUidSettings {
    /// UID2 or EUID.
    pub scope: IdentityScope,
    /// Environment bits of v4 raw UIDs.
    pub environment: Environment,
    /// Emit 33-byte v3 raw UIDs from salt buckets instead of 32-byte v2 ones
    /// (the official `identity_v3` switch, off by default).
    pub v3_from_salts: bool,
}

impl Default for RawUidSettings {
    fn default() -> Self {
        Self {
            scope: IdentityScope::Uid2,
            environment: Environment::Test,
            v3_from_salts: false,
        }
    }
}

/// A raw UID derivation that cannot run because the bucket's key material is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bucket key material must be a 32-byte key")]
pub struct BucketKeyError;

/// Derives the raw UID of `flh` under `secret`.
pub fn derive_raw_uid(
    flh: &FirstLevelHash,
    secret: &BucketSecret,
    identity_type: IdentityType,
    settings: RawUidSettings,
) -> Result<RawUid, BucketKeyError> {
    match secret {
        BucketSecret::Salt(salt) => Ok(salted_raw_uid(flh, salt, identity_type, settings)),
        BucketSecret::Key(key) => raw_uid_v4(
            flh,
            key.id,
            key.key.as_bytes(),
            key.salt.as_bytes(),
            identity_type,
            settings,
        ),
    }
}

/// v2 (32-byte) or, with `v3_from_salts`, v3 (prefix byte + the same 32 bytes) raw UID.
pub fn salted_raw_uid(
    flh: &FirstLevelHash,
    salt: &str,
    identity_type: IdentityType,
    settings: RawUidSettings,
) -> RawUid {
    let mut flh_b64 = [0u8; 44];
    base64_encode_slice(&flh.0, &mut flh_b64);
    let digest = sha256(&[&flh_b64, salt.as_bytes()]);
    if settings.v3_from_salts {
        let mut bytes = [0u8; 33];
        bytes[0] = (settings.scope.code() << 4) | (identity_type.code() << 2);
        bytes[1..].copy_from_slice(&digest);
        RawUid { bytes, len: 33 }
    } else {
        let mut bytes = [0u8; 33];
        bytes[..32].copy_from_slice(&digest);
        RawUid { bytes, len: 32 }
    }
}

/// The encrypted v4 raw UID of a key-material bucket:
/// `meta ‖ key id (3) ‖ IV (12) ‖ AES-256-CTR(key, last 16 bytes of the FLH) ‖ xor checksum`.
pub fn raw_uid_v4(
    flh: &FirstLevelHash,
    key_id: u32,
    key: &[u8],
    key_salt: &[u8],
    identity_type: IdentityType,
    settings: RawUidSettings,
) -> Result<RawUid, BucketKeyError> {
    let key: &[u8; 32] = key.try_into().map_err(|_| BucketKeyError)?;
    let meta = ((settings.environment as u8) << 6)
        | (1 << 5)
        | (settings.scope.code() << 4)
        | (identity_type.code() << 2);
    let kid = key_id.to_be_bytes();
    let kid3 = [kid[1], kid[2], kid[3]];
    let mut secret_half = [0u8; 16];
    secret_half.copy_from_slice(&flh.0[16..]);
    let iv_digest = sha256(&[key_salt, &secret_half, &[meta], &kid3]);

    let mut counter = [0u8; 16];
    counter[..12].copy_from_slice(&iv_digest[..12]);
    ctr_encrypt_block(key, counter, &mut secret_half);

    let mut bytes = [0u8; 33];
    bytes[0] = meta;
    bytes[1..4].copy_from_slice(&kid3);
    bytes[4..16].copy_from_slice(&iv_digest[..12]);
    bytes[16..32].copy_from_slice(&secret_half);
    bytes[32] = bytes[..32].iter().fold(0, |acc, b| acc ^ b);
    Ok(RawUid { bytes, len: 33 })
}

/// The `refresh_from` reported for a bucket: its own if still ahead, else the next UTC midnight.
pub fn refresh_from_ms(bucket_refresh_from_ms: Option<i64>, now_ms: i64) -> i64 {
    match bucket_refresh_from_ms {
        Some(at) if at >= now_ms => at,
        _ => (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS,
    }
}

/// Whether a bucket last rotated at `last_updated_ms` still reports its previous raw UID.
pub fn previous_uid_still_reported(last_updated_ms: i64, now_ms: i64) -> bool {
    // Saturating: both times come from a salt file, which may hold anything.
    now_ms.saturating_sub(last_updated_ms) / DAY_MS < PREVIOUS_UID_DAYS
}

fn base64_encode_slice(bytes: &[u8; 32], out: &mut [u8; 44]) {
    let _ = base64_simd::STANDARD.encode(bytes, base64_simd::Out::from_slice(out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HashedIdentity;

    const FIXTURE_FIRST_LEVEL: &str = "fOGY/aRE44peL23i+cE9MkJrzmEeNZZziNZBfq7qqk8=";

    fn flh(email: &str) -> FirstLevelHash {
        FirstLevelHash::compute(
            &HashedIdentity::from_email(email).unwrap(),
            FIXTURE_FIRST_LEVEL,
        )
    }

    #[test]
    fn operator_fixture_first_level_hashes_and_index_values() {
        let test = flh("test@example.com");
        assert_eq!(
            test.to_base64(),
            "RNzyiMMy106hy8MpBOsHBe+ZZkQR8IbUAG/IC2OrNr4="
        );
        assert_eq!(test.bucket_value(), 282050);
        assert_eq!(test.bucket_index(5), 0);
        assert_eq!(flh("user@example.com").bucket_value(), 724412);
        assert_eq!(flh("validate@example.com").bucket_value(), 85323);
        assert_eq!(test.bucket_index(PRODUCTION_BUCKET_COUNT), 282050);
    }

    #[test]
    fn v4_raw_uid_matches_the_operator_fixture() {
        let settings = RawUidSettings::default();
        // Bucket 1000002 of the operator's fixture salts: key id 2100002.
        let key = b"key12345key12345key12345key12340";
        let user = flh("user@example.com");
        let uid = raw_uid_v4(
            &user,
            2100002,
            key,
            fixture_key_salt(0).as_bytes(),
            IdentityType::Email,
            settings,
        )
        .unwrap();
        assert_eq!(
            uid.to_base64(),
            "ICALImfE94kkoCsBn79kNqDk485MeuvZ3bHUdsmPcKIf"
        );
        let prod = RawUidSettings {
            environment: Environment::Prod,
            ..settings
        };
        let uid = raw_uid_v4(
            &user,
            2100002,
            key,
            fixture_key_salt(0).as_bytes(),
            IdentityType::Email,
            prod,
        )
        .unwrap();
        assert_eq!(
            uid.to_base64(),
            "oCALIk9Go8jllKhaHfSacXMIAz+c8DzvcFs4HM+OVjCa"
        );
        assert!(raw_uid_v4(&user, 1, b"short", b"s", IdentityType::Email, settings).is_err());
    }

    fn fixture_key_salt(last_digit: u8) -> String {
        format!("salt1234salt1234salt1234salt123{last_digit}")
    }

    #[test]
    fn refresh_from_and_previous_window() {
        assert_eq!(refresh_from_ms(Some(5 * DAY_MS), DAY_MS), 5 * DAY_MS);
        assert_eq!(refresh_from_ms(Some(DAY_MS), DAY_MS + 1), 2 * DAY_MS);
        assert_eq!(refresh_from_ms(None, 3 * DAY_MS), 4 * DAY_MS);
        assert!(previous_uid_still_reported(0, 89 * DAY_MS + DAY_MS - 1));
        assert!(!previous_uid_still_reported(0, 90 * DAY_MS));
        assert!(previous_uid_still_reported(10 * DAY_MS, 0));
        assert!(!previous_uid_still_reported(i64::MIN, 0));
        assert!(previous_uid_still_reported(i64::MAX, i64::MIN));
    }

    #[test]
    fn raw_uid_base64_round_trip() {
        let uid = RawUid::from_slice(&[5u8; 33]).unwrap();
        assert_eq!(RawUid::parse_base64(&uid.to_base64()), Some(uid));
        assert_eq!(RawUid::from_slice(&[0u8; 31]), None);
        assert_eq!(RawUid::parse_base64("not base64"), None);
    }

    #[test]
    fn v3_and_v4_raw_uids_carry_their_scope_and_type() {
        let flh = flh("user@example.com");
        let settings = RawUidSettings {
            scope: IdentityScope::Euid,
            environment: Environment::Prod,
            v3_from_salts: true,
        };
        let v3 = salted_raw_uid(&flh, "salt", IdentityType::Phone, settings);
        let v4 = raw_uid_v4(&flh, 7, &[1u8; 32], b"s", IdentityType::Phone, settings).unwrap();
        for uid in [v3, v4] {
            let codes = uid.identity_codes().unwrap();
            assert_eq!(
                codes,
                IdentityCodes::of(IdentityScope::Euid, IdentityType::Phone)
            );
            assert_eq!(codes.identity_type(), IdentityType::Phone);
            assert_eq!(codes.scope(), IdentityScope::Euid);
        }
        let v2 = RawUidSettings {
            v3_from_salts: false,
            ..settings
        };
        assert_eq!(
            salted_raw_uid(&flh, "salt", IdentityType::Phone, v2).identity_codes(),
            None
        );
    }
}
