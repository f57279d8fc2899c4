//! Refresh tokens, as the operator issues them today (v3) and as older operators did (v2).
//!
//! v3 (124 bytes, 168 characters of base64): `header ‖ 112 ‖ refresh_key_id u32 ‖
//! GCM(refresh_key, R)` with `R = expires u64 ‖ created u64 ‖ operator(13) ‖ publisher(16) ‖
//! privacy u32 ‖ established u64 ‖ header u8 ‖ first-level hash (32)`.
//! A refresh token carries the first-level hash, not the raw UID, so that a refresh re-derives
//! the raw UID with the salts of the day.
//!
//! v2 (decode only): `2 ‖ created u64 ‖ expires u64 ‖ valid_till u64 ‖ key_id u32 ‖
//! CBC(key, site_id u32 ‖ n u32 ‖ base64 first-level hash ‖ privacy u32 ‖ established u64)`;
//! its expiry is `valid_till`.

use super::{
    IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity, TokenError, TokenVersion,
};
use crate::cipher::{GCM_IV_LEN, GCM_OVERHEAD};
use crate::codec::{Reader, Writer};
use crate::encoding::{base64_decode_array, base64_decode_into, base64_encode};
use crate::identity::{IdentityScope, IdentityType};
use crate::key::{Key, KeyLookup};
use crate::salt::FirstLevelHash;
use rand_core::CryptoRng;

const PAYLOAD_LEN: usize = 8 + 8 + OperatorIdentity::LEN + PublisherIdentity::LEN + 4 + 8 + 1 + 32;
/// Length of an encoded v3 refresh token in bytes.
pub const REFRESH_TOKEN_V3_BYTES: usize = 6 + GCM_OVERHEAD + PAYLOAD_LEN;
/// Length of an encoded v3 refresh token in base64 characters.
pub const REFRESH_TOKEN_V3_CHARS: usize = REFRESH_TOKEN_V3_BYTES.div_ceil(3) * 4;

/// A decoded refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// v2 or v3.
    pub version: TokenVersion,
    /// Scope and identity type.
    pub identity: IdentityHeader,
    /// Id of the refresh key that encrypted it.
    pub key_id: u32,
    /// Expiry (ms), equal to `refresh_expires` in the response that issued it.
    pub expires_ms: i64,
    /// Creation time (ms).
    pub created_ms: i64,
    /// The operator that minted it.
    pub operator: OperatorIdentity,
    /// The publisher it was minted for; refreshes keep minting for this site.
    pub publisher: PublisherIdentity,
    /// Privacy bits, carried into refreshed tokens.
    pub privacy_bits: PrivacyBits,
    /// When the identity was first established (ms).
    pub established_ms: i64,
    /// The first-level hash of the identity.
    pub first_level_hash: FirstLevelHash,
}

impl RefreshToken {
    /// Encodes as a v3 refresh token under `refresh_key` with a fresh IV from `rng`.
    ///
    /// The key id written is `refresh_key.id`, whatever `self.key_id` says.
    pub fn encode_v3(&self, refresh_key: &Key, rng: &mut (impl CryptoRng + ?Sized)) -> String {
        let mut iv = [0u8; GCM_IV_LEN];
        rng.fill_bytes(&mut iv);
        self.encode_v3_with_iv(refresh_key, iv)
    }

    /// [`encode_v3`](Self::encode_v3) with the IV given.
    pub fn encode_v3_with_iv(&self, refresh_key: &Key, iv: [u8; GCM_IV_LEN]) -> String {
        let mut buf = [0u8; REFRESH_TOKEN_V3_BYTES];
        {
            let mut w = Writer::new(&mut buf);
            w.u8(self.identity.to_byte())
                .u8(TokenVersion::V3 as u8)
                .u32(refresh_key.id)
                .put(&iv)
                .i64(self.expires_ms)
                .i64(self.created_ms);
            self.operator.write(&mut w);
            self.publisher.write(&mut w);
            w.u32(self.privacy_bits.0)
                .i64(self.established_ms)
                .u8(self.identity.to_byte())
                .put(&self.first_level_hash.0);
        }
        refresh_key.gcm().seal_in_place(&mut buf[6..], &[]);
        base64_encode(&buf)
    }

    /// Decodes a v3 or v2 refresh token, finding the key by id. Expiry is not checked here:
    /// see [`is_expired`](Self::is_expired).
    ///
    /// A token that opens is trusted as minted by whoever holds its key, so an operator must pass
    /// a lookup of its refresh keys only (keyset −2): master and site keys are handed to bidders
    /// and sharers, who could otherwise forge refresh tokens for any site.
    pub fn decode(text: &str, keys: &impl KeyLookup) -> Result<Self, TokenError> {
        let mut buf = [0u8; 256];
        let n = base64_decode_into(text, &mut buf).map_err(|_| TokenError::Malformed)?;
        let bytes = &mut buf[..n];
        if bytes.len() >= 2 && bytes[1] == TokenVersion::V3 as u8 {
            decode_v3(bytes, keys)
        } else if bytes.first() == Some(&2) {
            decode_v2(bytes, keys)
        } else if bytes.len() < 2 {
            Err(TokenError::Malformed)
        } else {
            Err(TokenError::UnsupportedVersion)
        }
    }

    /// Whether the token has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_ms < now_ms
    }
}

fn decode_v3(bytes: &mut [u8], keys: &impl KeyLookup) -> Result<RefreshToken, TokenError> {
    if bytes.len() != REFRESH_TOKEN_V3_BYTES {
        return Err(TokenError::Malformed);
    }
    let (head, boxed) = bytes.split_at_mut(6);
    let identity = IdentityHeader::from_byte(head[0]);
    let key_id = u32::from_be_bytes(head[2..6].try_into().expect("4 bytes"));
    let key = keys
        .key(key_id)
        .ok_or(TokenError::UnknownMasterKey(key_id))?;
    let plain = key
        .gcm()
        .open_in_place(boxed, &[])
        .map_err(|_| TokenError::DecryptionFailed)?;
    let mut r = Reader::new(plain);
    let expires_ms = r.i64().ok_or(TokenError::Malformed)?;
    let created_ms = r.i64().ok_or(TokenError::Malformed)?;
    let operator = OperatorIdentity::read(&mut r).ok_or(TokenError::Malformed)?;
    let publisher = PublisherIdentity::read(&mut r).ok_or(TokenError::Malformed)?;
    let privacy_bits = PrivacyBits(r.u32().ok_or(TokenError::Malformed)?);
    let established_ms = r.i64().ok_or(TokenError::Malformed)?;
    let inner = IdentityHeader::from_byte(r.u8().ok_or(TokenError::Malformed)?);
    let first_level_hash = FirstLevelHash(r.array().ok_or(TokenError::Malformed)?);
    if inner != identity {
        return Err(TokenError::IdentityMismatch);
    }
    Ok(RefreshToken {
        version: TokenVersion::V3,
        identity,
        key_id,
        expires_ms,
        created_ms,
        operator,
        publisher,
        privacy_bits,
        established_ms,
        first_level_hash,
    })
}

fn decode_v2(bytes: &mut [u8], keys: &impl KeyLookup) -> Result<RefreshToken, TokenError> {
    let (head, boxed) = bytes.split_at_mut(bytes.len().min(1 + 8 + 8 + 8 + 4));
    let mut r = Reader::new(head);
    r.u8().ok_or(TokenError::Malformed)?;
    let created_ms = r.i64().ok_or(TokenError::Malformed)?;
    let _expires_ms = r.i64().ok_or(TokenError::Malformed)?;
    let valid_till_ms = r.i64().ok_or(TokenError::Malformed)?;
    let key_id = r.u32().ok_or(TokenError::Malformed)?;
    let key = keys
        .key(key_id)
        .ok_or(TokenError::UnknownMasterKey(key_id))?;
    let plain = key
        .cbc()
        .open_in_place(boxed)
        .map_err(|_| TokenError::DecryptionFailed)?;
    let mut r = Reader::new(plain);
    let site_id = r.i32().ok_or(TokenError::Malformed)?;
    let n = r.u32().ok_or(TokenError::Malformed)? as usize;
    let flh_text = r.take(n).ok_or(TokenError::Malformed)?;
    let first_level_hash =
        FirstLevelHash(base64_decode_array(flh_text).map_err(|_| TokenError::Malformed)?);
    let privacy_bits = PrivacyBits(r.u32().ok_or(TokenError::Malformed)?);
    let established_ms = r.i64().ok_or(TokenError::Malformed)?;
    Ok(RefreshToken {
        version: TokenVersion::V2,
        identity: IdentityHeader {
            scope: IdentityScope::Uid2,
            identity_type: IdentityType::Email,
        },
        key_id,
        expires_ms: valid_till_ms,
        created_ms,
        operator: OperatorIdentity::default(),
        publisher: PublisherIdentity::for_site(site_id),
        privacy_bits,
        established_ms,
        first_level_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyRing;

    fn sample() -> RefreshToken {
        RefreshToken {
            version: TokenVersion::V3,
            identity: IdentityHeader {
                scope: IdentityScope::Uid2,
                identity_type: IdentityType::Phone,
            },
            key_id: 102,
            expires_ms: 2_000_000,
            created_ms: 1_000_000,
            operator: OperatorIdentity::default(),
            publisher: PublisherIdentity::for_site(124),
            privacy_bits: PrivacyBits::CLIENT_SIDE,
            established_ms: 900_000,
            first_level_hash: FirstLevelHash([7u8; 32]),
        }
    }

    #[test]
    fn v3_round_trip_is_168_characters() {
        let key = Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [1u8; 32]);
        let ring = KeyRing::new([key.clone()]);
        let text = sample().encode_v3_with_iv(&key, [9u8; 12]);
        assert_eq!(text.len(), 168);
        assert_eq!(REFRESH_TOKEN_V3_CHARS, 168);
        assert!(text.starts_with("B3"));
        assert_eq!(RefreshToken::decode(&text, &ring).unwrap(), sample());
        assert!(sample().is_expired(2_000_001));
        assert!(!sample().is_expired(2_000_000));
    }

    #[test]
    fn v2_tokens_decode_with_the_expanded_cbc_key() {
        let key = Key::new(7, -2, Some(-2), 0, 0, i64::MAX, [5u8; 32]);
        let flh = base64_encode(&[9u8; 32]);
        let mut plain = Vec::new();
        plain.extend_from_slice(&124i32.to_be_bytes());
        plain.extend_from_slice(&(flh.len() as u32).to_be_bytes());
        plain.extend_from_slice(flh.as_bytes());
        plain.extend_from_slice(&PrivacyBits::LEGACY.to_be_bytes());
        plain.extend_from_slice(&900_000i64.to_be_bytes());
        let mut token = vec![2u8];
        for t in [1_000_000i64, 1_500_000, 2_000_000] {
            token.extend_from_slice(&t.to_be_bytes());
        }
        token.extend_from_slice(&7u32.to_be_bytes());
        crate::cipher::cbc_seal_into(key.secret(), [3u8; 16], &plain, &mut token);
        let ring = KeyRing::new([key]);
        let decoded = RefreshToken::decode(&base64_encode(&token), &ring).unwrap();
        assert_eq!(decoded.version, TokenVersion::V2);
        assert_eq!(decoded.expires_ms, 2_000_000);
        assert_eq!(decoded.publisher.site_id, 124);
        assert_eq!(decoded.first_level_hash, FirstLevelHash([9u8; 32]));
        assert_eq!(decoded.established_ms, 900_000);
        let other = KeyRing::new([Key::new(7, -2, Some(-2), 0, 0, i64::MAX, [6u8; 32])]);
        assert_eq!(
            RefreshToken::decode(&base64_encode(&token), &other),
            Err(TokenError::DecryptionFailed)
        );
    }

    #[test]
    fn bad_refresh_tokens_give_typed_errors() {
        let key = Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [1u8; 32]);
        let text = sample().encode_v3_with_iv(&key, [9u8; 12]);
        let ring = KeyRing::new([key.clone()]);
        let empty = KeyRing::default();
        assert_eq!(
            RefreshToken::decode(&text, &empty),
            Err(TokenError::UnknownMasterKey(102))
        );
        let other = KeyRing::new([Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [2u8; 32])]);
        assert_eq!(
            RefreshToken::decode(&text, &other),
            Err(TokenError::DecryptionFailed)
        );
        assert_eq!(
            RefreshToken::decode(&text[..100], &ring),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            RefreshToken::decode("!!!!", &ring),
            Err(TokenError::Malformed)
        );
        assert_eq!(RefreshToken::decode("", &ring), Err(TokenError::Malformed));
        assert_eq!(
            RefreshToken::decode("AAAA", &ring),
            Err(TokenError::UnsupportedVersion)
        );
        // A v2-looking token too short for its header.
        assert_eq!(
            RefreshToken::decode("AgAA", &ring),
            Err(TokenError::Malformed)
        );
    }
}
