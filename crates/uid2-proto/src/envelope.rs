//! The encrypted envelopes of the v2 API.
//!
//! - Request: `0x01 ‖ GCM(client_secret, timestamp u64 ‖ nonce(8) ‖ JSON)`, sent as base64 text or,
//!   with `Content-Type: application/octet-stream`, as raw bytes.
//! - Response (HTTP 200 only): `GCM(client_secret, timestamp u64 ‖ the request's nonce ‖ JSON)`.
//! - Refresh response: `GCM(refresh_response_key, JSON)`, no timestamp and no nonce.
//! - Refresh-token wrapper: what the v2 API calls `refresh_token`, a 388-character base64 text
//!   `scope u8 ‖ refresh_key_id u32 ‖ GCM(refresh_key, {"refresh_response_key","refresh_token"})`
//!   that carries the key with which `/v2/token/refresh` seals its answer.

use rand_core::CryptoRng;
use serde::Deserialize;

use crate::cipher::{GCM_IV_LEN, GCM_OVERHEAD, GcmKey};
use crate::encoding::{base64_decode, base64_decode_into, base64_encode, base64_encode_into};
use crate::identity::IdentityScope;
use crate::key::{Key, KeyLookup};
use crate::token::refresh::REFRESH_TOKEN_V3_CHARS;

/// The only request envelope version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Shortest valid request envelope: version, IV, tag, timestamp and nonce.
pub const MIN_REQUEST_BYTES: usize = 1 + GCM_OVERHEAD + 8 + 8;
/// Length of the refresh-token wrapper in characters; `/v2/token/refresh` recognises it by this.
pub const REFRESH_ENVELOPE_CHARS: usize = 388;

/// A request envelope that cannot be opened. Each variant maps to one of the official
/// operator's `client_error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not base64.
    #[error("body is not valid base64")]
    NotBase64,
    /// The body is empty.
    #[error("body is missing")]
    Empty,
    /// Fewer bytes than the smallest envelope.
    #[error("body too short")]
    TooShort,
    /// A version byte other than 1.
    #[error("invalid request envelope format version {0}, must be 1")]
    UnsupportedVersion(u8),
    /// GCM authentication failed: wrong client secret or tampered body.
    #[error("check encryption key (client secret)")]
    DecryptionFailed,
    /// The timestamp is outside the accepted window.
    #[error("request too old or client time drift")]
    StaleTimestamp,
    /// A response echoed a different nonce than the request sent.
    #[error("response nonce does not match the request")]
    NonceMismatch,
}

/// An opened request envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// Client timestamp (ms).
    pub timestamp_ms: i64,
    /// Nonce to echo in the response.
    pub nonce: [u8; 8],
    /// The request JSON bytes (empty for the key endpoints).
    pub payload: Vec<u8>,
}

/// Whether a request timestamp is acceptable at `now_ms`.
///
/// The official operator rejects when `abs(Duration.between(ts, now).toMinutes()) > 1`. Java's
/// `Duration` floors to whole seconds and `toMinutes` then truncates, so the window is
/// `-119 s ≤ now − ts < 120 s` at millisecond resolution (its docs say 60 s; the code decides).
pub fn timestamp_within_window(timestamp_ms: i64, now_ms: i64) -> bool {
    let Some(diff_ms) = now_ms.checked_sub(timestamp_ms) else {
        return false;
    };
    let minutes = diff_ms.div_euclid(1000) / 60;
    minutes.abs() <= 1
}

/// Opens a request envelope sent as base64 text.
pub fn open_request_base64(
    body: &[u8],
    client_secret: &GcmKey,
    now_ms: i64,
) -> Result<RequestEnvelope, EnvelopeError> {
    let bytes = base64_decode(body).map_err(|_| EnvelopeError::NotBase64)?;
    open_request(bytes, client_secret, now_ms)
}

/// Opens a request envelope given as raw bytes, checking in the official order: empty, length,
/// version, decryption, timestamp.
pub fn open_request(
    mut bytes: Vec<u8>,
    client_secret: &GcmKey,
    now_ms: i64,
) -> Result<RequestEnvelope, EnvelopeError> {
    if bytes.is_empty() {
        return Err(EnvelopeError::Empty);
    }
    if bytes.len() < MIN_REQUEST_BYTES {
        return Err(EnvelopeError::TooShort);
    }
    if bytes[0] != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(bytes[0]));
    }
    let plain_len = client_secret
        .open_in_place(&mut bytes[1..], &[])
        .map_err(|_| EnvelopeError::DecryptionFailed)?
        .len();
    let plain = &bytes[1 + GCM_IV_LEN..1 + GCM_IV_LEN + plain_len];
    let timestamp_ms = i64::from_be_bytes(plain[..8].try_into().expect("8 bytes"));
    if !timestamp_within_window(timestamp_ms, now_ms) {
        return Err(EnvelopeError::StaleTimestamp);
    }
    let nonce = plain[8..16].try_into().expect("8 bytes");
    let payload_start = 1 + GCM_IV_LEN + 16;
    bytes.copy_within(payload_start..payload_start + plain_len - 16, 0);
    bytes.truncate(plain_len - 16);
    Ok(RequestEnvelope {
        timestamp_ms,
        nonce,
        payload: bytes,
    })
}

/// Seals a request envelope (raw bytes; base64 them to send as text).
pub fn seal_request(
    client_secret: &GcmKey,
    timestamp_ms: i64,
    nonce: [u8; 8],
    payload: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + GCM_OVERHEAD + 16 + payload.len());
    out.push(ENVELOPE_VERSION);
    seal_stamped(client_secret, timestamp_ms, nonce, payload, rng, &mut out);
    out
}

/// Seals a response to a request with `nonce` (raw bytes; base64 them unless the request was binary).
pub fn seal_response(
    client_secret: &GcmKey,
    now_ms: i64,
    nonce: [u8; 8],
    json: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(GCM_OVERHEAD + 16 + json.len());
    seal_stamped(client_secret, now_ms, nonce, json, rng, &mut out);
    out
}

fn seal_stamped(
    key: &GcmKey,
    timestamp_ms: i64,
    nonce: [u8; 8],
    payload: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let mut iv = [0u8; GCM_IV_LEN];
    rng.fill_bytes(&mut iv);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0u8; 16]);
    key.seal_in_place(&mut out[start..], &[]);
}

/// An opened response envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEnvelope {
    /// Server timestamp (ms); SDKs ignore it.
    pub timestamp_ms: i64,
    /// The response JSON bytes.
    pub payload: Vec<u8>,
}

/// Opens a response envelope (raw bytes) and checks it echoes `nonce`.
pub fn open_response(
    client_secret: &GcmKey,
    bytes: &[u8],
    nonce: [u8; 8],
) -> Result<ResponseEnvelope, EnvelopeError> {
    let plain = client_secret
        .open(bytes, &[])
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    if plain.len() < 16 {
        return Err(EnvelopeError::TooShort);
    }
    if plain[8..16] != nonce {
        return Err(EnvelopeError::NonceMismatch);
    }
    Ok(ResponseEnvelope {
        timestamp_ms: i64::from_be_bytes(plain[..8].try_into().expect("8 bytes")),
        payload: plain[16..].to_vec(),
    })
}

/// Seals a `/v2/token/refresh` (or client-side generate) response: `GCM(key, JSON)`, raw bytes.
pub fn seal_bare_response(
    key: &[u8; 32],
    json: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<u8> {
    let mut iv = [0u8; GCM_IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut out = Vec::with_capacity(GCM_OVERHEAD + json.len());
    GcmKey::new(key).seal_into(iv, &[], json, &mut out);
    out
}

/// Opens a `/v2/token/refresh` (or client-side generate) response.
pub fn open_bare_response(key: &[u8; 32], bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    GcmKey::new(key)
        .open(bytes, &[])
        .map_err(|_| EnvelopeError::DecryptionFailed)
}

/// A refresh-token wrapper that cannot be opened, with the official operator's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshEnvelopeError {
    /// Not base64.
    #[error("body is not valid base64")]
    NotBase64,
    /// The refresh key named in the wrapper does not exist.
    #[error("generator of this token (key id {0}) does not exist")]
    UnknownKey(u32),
    /// GCM authentication failed.
    #[error("check encryption method and encryption key")]
    DecryptionFailed,
    /// The decrypted payload is not the expected JSON.
    #[error("payload is not valid json or missing required data")]
    BadPayload,
}

/// The contents of a refresh-token wrapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEnvelope {
    /// The scope byte (`0x00` UID2, `0x10` EUID); not checked by the operator.
    pub scope: IdentityScope,
    /// Id of the refresh key that sealed it.
    pub key_id: u32,
    /// Key with which the refresh response must be sealed.
    pub refresh_response_key: [u8; 32],
    /// The inner refresh token text.
    pub refresh_token: String,
}

#[derive(Deserialize)]
struct RefreshEnvelopeJson {
    refresh_response_key: String,
    refresh_token: String,
}

impl RefreshEnvelope {
    /// Seals the wrapper under `refresh_key` with a fresh IV.
    ///
    /// With a 168-character inner token (v3) the result is exactly
    /// [`REFRESH_ENVELOPE_CHARS`] long, which is how the operator recognises it.
    pub fn seal(&self, refresh_key: &Key, rng: &mut (impl CryptoRng + ?Sized)) -> String {
        debug_assert_eq!(self.refresh_token.len(), REFRESH_TOKEN_V3_CHARS);
        let mut json = String::with_capacity(260);
        json.push_str("{\"refresh_response_key\":\"");
        base64_encode_into(&self.refresh_response_key, &mut json);
        json.push_str("\",\"refresh_token\":");
        // The inner token is base64, but escape it properly in case a caller passes anything else.
        json.push_str(&serde_json::to_string(&self.refresh_token).expect("strings serialise"));
        json.push('}');

        let mut bytes = Vec::with_capacity(5 + GCM_OVERHEAD + json.len());
        bytes.push(self.scope.code() << 4);
        bytes.extend_from_slice(&refresh_key.id.to_be_bytes());
        let mut iv = [0u8; GCM_IV_LEN];
        rng.fill_bytes(&mut iv);
        refresh_key
            .gcm()
            .seal_into(iv, &[], json.as_bytes(), &mut bytes);
        base64_encode(&bytes)
    }

    /// Opens a wrapper, finding the refresh key by id.
    ///
    /// As for [`RefreshToken::decode`](crate::token::RefreshToken::decode), `keys` must hold the
    /// refresh keys only: a wrapper sealed under a key that bidders also hold proves nothing.
    pub fn open(text: &str, keys: &impl KeyLookup) -> Result<Self, RefreshEnvelopeError> {
        let mut bytes = base64_decode(text).map_err(|_| RefreshEnvelopeError::NotBase64)?;
        if bytes.len() < 5 + GCM_OVERHEAD {
            return Err(RefreshEnvelopeError::DecryptionFailed);
        }
        let scope = IdentityScope::from_code(bytes[0] >> 4);
        let key_id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let key = keys
            .key(key_id)
            .ok_or(RefreshEnvelopeError::UnknownKey(key_id))?;
        let plain = key
            .gcm()
            .open_in_place(&mut bytes[5..], &[])
            .map_err(|_| RefreshEnvelopeError::DecryptionFailed)?;
        let json: RefreshEnvelopeJson =
            serde_json::from_slice(plain).map_err(|_| RefreshEnvelopeError::BadPayload)?;
        let mut refresh_response_key = [0u8; 32];
        let mut decoded = [0u8; 33];
        match base64_decode_into(&json.refresh_response_key, &mut decoded) {
            Ok(32) => refresh_response_key.copy_from_slice(&decoded[..32]),
            _ => return Err(RefreshEnvelopeError::BadPayload),
        }
        Ok(Self {
            scope,
            key_id,
            refresh_response_key,
            refresh_token: json.refresh_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyRing;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn timestamp_window_is_the_java_one() {
        let now = 1_700_000_000_000;
        assert!(timestamp_within_window(now, now));
        assert!(timestamp_within_window(now - 119_999, now));
        assert!(!timestamp_within_window(now - 120_000, now));
        assert!(timestamp_within_window(now + 119_000, now));
        assert!(!timestamp_within_window(now + 119_001, now));
        assert!(!timestamp_within_window(i64::MIN, now));
        assert!(!timestamp_within_window(i64::MAX, -10));
    }

    #[test]
    fn request_round_trip_and_every_error() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = GcmKey::new(&[3u8; 32]);
        let now = 1_700_000_000_000;
        let sealed = seal_request(&key, now, [5u8; 8], b"{\"a\":1}", &mut rng);
        let opened = open_request(sealed.clone(), &key, now).unwrap();
        assert_eq!(opened.payload, b"{\"a\":1}");
        assert_eq!(opened.nonce, [5u8; 8]);
        assert_eq!(
            open_request_base64(base64_encode(&sealed).as_bytes(), &key, now).unwrap(),
            opened
        );

        assert_eq!(
            open_request_base64(b"%%%", &key, now),
            Err(EnvelopeError::NotBase64)
        );
        assert_eq!(open_request(vec![], &key, now), Err(EnvelopeError::Empty));
        assert_eq!(
            open_request(sealed[..44].to_vec(), &key, now),
            Err(EnvelopeError::TooShort)
        );
        let mut wrong_version = sealed.clone();
        wrong_version[0] = 2;
        assert_eq!(
            open_request(wrong_version, &key, now),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert_eq!(
            open_request(sealed.clone(), &GcmKey::new(&[4u8; 32]), now),
            Err(EnvelopeError::DecryptionFailed)
        );
        assert_eq!(
            open_request(sealed, &key, now + 120_000),
            Err(EnvelopeError::StaleTimestamp)
        );
    }

    #[test]
    fn response_checks_the_nonce() {
        let mut rng = StdRng::seed_from_u64(2);
        let key = GcmKey::new(&[3u8; 32]);
        let sealed = seal_response(&key, 42, [1u8; 8], b"{}", &mut rng);
        assert_eq!(
            open_response(&key, &sealed, [1u8; 8]).unwrap().payload,
            b"{}"
        );
        assert_eq!(
            open_response(&key, &sealed, [2u8; 8]),
            Err(EnvelopeError::NonceMismatch)
        );
    }

    #[test]
    fn refresh_wrapper_is_388_characters_and_opens() {
        let mut rng = StdRng::seed_from_u64(3);
        let refresh_key = Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [6u8; 32]);
        let ring = KeyRing::new([refresh_key.clone()]);
        let envelope = RefreshEnvelope {
            scope: IdentityScope::Uid2,
            key_id: 102,
            refresh_response_key: [8u8; 32],
            refresh_token: "A".repeat(REFRESH_TOKEN_V3_CHARS),
        };
        let text = envelope.seal(&refresh_key, &mut rng);
        assert_eq!(text.len(), REFRESH_ENVELOPE_CHARS);
        assert!(text.starts_with("AAAAAG"));
        assert_eq!(RefreshEnvelope::open(&text, &ring).unwrap(), envelope);
        assert_eq!(
            RefreshEnvelope::open(&text, &KeyRing::default()),
            Err(RefreshEnvelopeError::UnknownKey(102))
        );
        assert_eq!(
            RefreshEnvelope::open("!", &ring),
            Err(RefreshEnvelopeError::NotBase64)
        );
        let mut bytes = base64_decode(&text).unwrap();
        bytes[40] ^= 1;
        assert_eq!(
            RefreshEnvelope::open(&base64_encode(&bytes), &ring),
            Err(RefreshEnvelopeError::DecryptionFailed)
        );
    }
}
