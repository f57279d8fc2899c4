//! Advertising tokens: what publishers send in the bid stream and SSPs/DSPs decrypt.
//!
//! v3/v4 layout (v4 in unpadded base64url, v3 in base64):
//! `header ‖ version ‖ master_key_id u32 ‖ GCM(master, M)` with
//! `M = expires u64 ‖ created u64 ‖ operator(13) ‖ site_key_id u32 ‖ GCM(site_key, S)` and
//! `S = site_id u32 ‖ publisher_id u64 ‖ client_key_id u32 ‖ privacy u32 ‖ established u64 ‖
//! refreshed u64 ‖ raw UID (32 or 33)`.
//!
//! v2 (decode only): `2 ‖ master_key_id u32 ‖ CBC(master, expires u64 ‖ site_key_id u32 ‖
//! CBC(site_key, site_id u32 ‖ n u32 ‖ base64 raw UID (n bytes) ‖ privacy u32 ‖ established u64))`.

use super::{
    IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity, TokenError, TokenVersion,
    sniff_prefix,
};
use crate::cipher::{GCM_IV_LEN, GCM_OVERHEAD, GCM_TAG_LEN};
use crate::codec::{Reader, Writer};
use crate::encoding::{base64_decode_into, base64_encode, base64url_decode_into, base64url_encode};
use crate::identity::{IdentityScope, IdentityType};
use crate::key::{Key, KeyLookup};
use crate::salt::RawUid;
use rand_core::CryptoRng;

/// Plaintext of the site layer without the raw UID.
const SITE_FIXED_LEN: usize = 4 + 8 + 4 + 4 + 8 + 8;
/// Plaintext of the master layer before the site box.
const MASTER_FIXED_LEN: usize = 8 + 8 + OperatorIdentity::LEN + 4;
/// Longest token accepted: a v4 token is 164 bytes, a v2 one about 133.
const MAX_TOKEN_BYTES: usize = 384;

/// A v3/v4 advertising token: every field of both encrypted layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisingToken {
    /// v3 or v4.
    pub version: TokenVersion,
    /// Scope and identity type of the header byte.
    pub identity: IdentityHeader,
    /// Id of the master key of the outer layer.
    pub master_key_id: u32,
    /// Expiry (ms), equal to `identity_expires` in the generate response.
    pub expires_ms: i64,
    /// When this token was created (ms).
    pub created_ms: i64,
    /// The operator that minted it.
    pub operator: OperatorIdentity,
    /// Id of the site key of the inner layer.
    pub site_key_id: u32,
    /// The publisher it was minted for.
    pub publisher: PublisherIdentity,
    /// Privacy bits.
    pub privacy_bits: PrivacyBits,
    /// When the identity was first established (ms), carried across refreshes.
    pub established_ms: i64,
    /// When the identity was last refreshed (ms).
    pub refreshed_ms: i64,
    /// The raw UID.
    pub raw_uid: RawUid,
}

/// A legacy v2 advertising token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisingTokenV2 {
    /// Id of the master key.
    pub master_key_id: u32,
    /// Expiry (ms).
    pub expires_ms: i64,
    /// Id of the site key.
    pub site_key_id: u32,
    /// The publisher's site id.
    pub site_id: i32,
    /// The raw UID (carried as base64 text inside the token).
    pub raw_uid: RawUid,
    /// Privacy bits.
    pub privacy_bits: PrivacyBits,
    /// When the identity was established (ms).
    pub established_ms: i64,
}

/// An advertising token of any version, as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedAdvertisingToken {
    /// Legacy CBC token.
    V2(AdvertisingTokenV2),
    /// v3 or v4 GCM token.
    V3OrV4(AdvertisingToken),
}

impl DecodedAdvertisingToken {
    /// The token version.
    pub fn version(&self) -> TokenVersion {
        match self {
            Self::V2(_) => TokenVersion::V2,
            Self::V3OrV4(t) => t.version,
        }
    }

    /// The raw UID.
    pub fn raw_uid(&self) -> &RawUid {
        match self {
            Self::V2(t) => &t.raw_uid,
            Self::V3OrV4(t) => &t.raw_uid,
        }
    }

    /// The publisher's site id.
    pub fn site_id(&self) -> i32 {
        match self {
            Self::V2(t) => t.site_id,
            Self::V3OrV4(t) => t.publisher.site_id,
        }
    }

    /// Id of the site key of the inner layer.
    pub fn site_key_id(&self) -> u32 {
        match self {
            Self::V2(t) => t.site_key_id,
            Self::V3OrV4(t) => t.site_key_id,
        }
    }

    /// Expiry (ms).
    pub fn expires_ms(&self) -> i64 {
        match self {
            Self::V2(t) => t.expires_ms,
            Self::V3OrV4(t) => t.expires_ms,
        }
    }

    /// Creation time (ms); v2 tokens do not carry one.
    pub fn created_ms(&self) -> Option<i64> {
        match self {
            Self::V2(_) => None,
            Self::V3OrV4(t) => Some(t.created_ms),
        }
    }

    /// When the identity was established (ms).
    pub fn established_ms(&self) -> i64 {
        match self {
            Self::V2(t) => t.established_ms,
            Self::V3OrV4(t) => t.established_ms,
        }
    }

    /// Scope and identity type (v2 tokens are UID2 email tokens).
    pub fn identity(&self) -> IdentityHeader {
        match self {
            Self::V2(_) => IdentityHeader {
                scope: IdentityScope::Uid2,
                identity_type: IdentityType::Email,
            },
            Self::V3OrV4(t) => t.identity,
        }
    }

    /// Privacy bits.
    pub fn privacy_bits(&self) -> PrivacyBits {
        match self {
            Self::V2(t) => t.privacy_bits,
            Self::V3OrV4(t) => t.privacy_bits,
        }
    }

    /// [`AdvertisingToken::check_raw_uid_identity`]; v2 tokens have no header to disagree with.
    pub fn check_raw_uid_identity(&self) -> Result<(), TokenError> {
        match self {
            Self::V2(_) => Ok(()),
            Self::V3OrV4(t) => t.check_raw_uid_identity(),
        }
    }
}

impl AdvertisingToken {
    /// A 33-byte raw UID (v3 or v4) repeats scope and type in its first byte: the official
    /// operator refuses tokens where they disagree with the header byte, so ours does too. The
    /// SDKs do not check it (their sharing-token generator guesses the type from the raw UID's
    /// first character, which v4 raw UIDs defeat), so [`decode`] leaves it to the caller.
    pub fn check_raw_uid_identity(&self) -> Result<(), TokenError> {
        match self.raw_uid.identity_codes() {
            Some(codes) if codes != self.identity.codes() => Err(TokenError::IdentityMismatch),
            _ => Ok(()),
        }
    }

    /// Length in bytes of the encoded token.
    pub fn encoded_len(&self) -> usize {
        let site_box = SITE_FIXED_LEN + self.raw_uid.as_bytes().len() + GCM_OVERHEAD;
        6 + GCM_OVERHEAD + MASTER_FIXED_LEN + site_box
    }

    /// Encodes the token under `master` (outer layer) and `site` (inner layer) with fresh IVs
    /// from `rng`, as base64url (v4) or base64 (v3) according to `self.version`.
    ///
    /// The key ids written are those of `master` and `site`, whatever `self` says.
    pub fn encode(&self, master: &Key, site: &Key, rng: &mut (impl CryptoRng + ?Sized)) -> String {
        let mut iv_master = [0u8; GCM_IV_LEN];
        let mut iv_site = [0u8; GCM_IV_LEN];
        rng.fill_bytes(&mut iv_master);
        rng.fill_bytes(&mut iv_site);
        self.encode_with_ivs(master, site, iv_master, iv_site)
    }

    /// [`encode`](Self::encode) with the IVs given, for reproducible output.
    pub fn encode_with_ivs(
        &self,
        master: &Key,
        site: &Key,
        iv_master: [u8; 12],
        iv_site: [u8; 12],
    ) -> String {
        let mut buf =
            [0u8; 6 + GCM_OVERHEAD + MASTER_FIXED_LEN + SITE_FIXED_LEN + 33 + GCM_OVERHEAD];
        let len = self.encoded_len();
        let buf = &mut buf[..len];
        let uid = self.raw_uid.as_bytes();

        // Site layer, sealed in its final place.
        let site_start = 6 + GCM_IV_LEN + MASTER_FIXED_LEN;
        let site_end = len - GCM_TAG_LEN;
        {
            let mut w = Writer::new(&mut buf[site_start..site_end]);
            w.put(&iv_site);
            self.publisher.write(&mut w);
            w.u32(self.privacy_bits.0)
                .i64(self.established_ms)
                .i64(self.refreshed_ms)
                .put(uid);
        }
        site.gcm()
            .seal_in_place(&mut buf[site_start..site_end], &[]);

        // Master layer around it.
        {
            let mut w = Writer::new(buf);
            w.u8(self.identity.to_byte())
                .u8(self.version as u8)
                .u32(master.id)
                .put(&iv_master)
                .i64(self.expires_ms)
                .i64(self.created_ms);
            self.operator.write(&mut w);
            w.u32(site.id);
            debug_assert_eq!(w.position(), site_start);
        }
        master.gcm().seal_in_place(&mut buf[6..], &[]);

        match self.version {
            TokenVersion::V4 => base64url_encode(buf),
            _ => base64_encode(buf),
        }
    }
}

/// Decodes an advertising token of any version with keys found by id.
///
/// Checks happen in the order the official Python SDK reports them: unknown master key, then
/// expiry (`expires < now_ms`; pass `i64::MIN` to skip, as callers following the Java SDK's order
/// do), then unknown site key, then the inner layer. Whether a 33-byte raw UID agrees with the
/// header is not checked here: see [`AdvertisingToken::check_raw_uid_identity`].
pub fn decode(
    text: &str,
    keys: &impl KeyLookup,
    now_ms: i64,
) -> Result<DecodedAdvertisingToken, TokenError> {
    let prefix = sniff_prefix(text)?;
    let mut buf = [0u8; MAX_TOKEN_BYTES];
    if prefix[0] == 2 {
        let n = base64_decode_into(text, &mut buf).map_err(|_| TokenError::Malformed)?;
        return decode_v2(&mut buf[..n], keys, now_ms).map(DecodedAdvertisingToken::V2);
    }
    let version = match prefix[1] {
        112 => TokenVersion::V3,
        128 => TokenVersion::V4,
        _ => return Err(TokenError::UnsupportedVersion),
    };
    // v4 is base64url, but the SDKs also accept it in standard base64.
    let n = match version {
        TokenVersion::V4 => {
            base64url_decode_into(text, &mut buf).or_else(|_| base64_decode_into(text, &mut buf))
        }
        _ => base64_decode_into(text, &mut buf),
    }
    .map_err(|_| TokenError::Malformed)?;
    decode_v3_or_v4(version, &mut buf[..n], keys, now_ms).map(DecodedAdvertisingToken::V3OrV4)
}

/// [`decode`], then [`DecodedAdvertisingToken::check_raw_uid_identity`]: what an operator
/// accepts (validate, the legacy endpoints), as the official operator checks both.
pub fn decode_checked(
    text: &str,
    keys: &impl KeyLookup,
    now_ms: i64,
) -> Result<DecodedAdvertisingToken, TokenError> {
    let token = decode(text, keys, now_ms)?;
    token.check_raw_uid_identity()?;
    Ok(token)
}

fn decode_v3_or_v4(
    version: TokenVersion,
    bytes: &mut [u8],
    keys: &impl KeyLookup,
    now_ms: i64,
) -> Result<AdvertisingToken, TokenError> {
    if bytes.len() < 6 {
        return Err(TokenError::Malformed);
    }
    // The master key is looked up before the length is checked, as the official SDKs do: a
    // token cut short under a key the caller lacks is reported as the key it lacks.
    let (head, master_box) = bytes.split_at_mut(6);
    let identity = IdentityHeader::from_byte(head[0]);
    let master_key_id = u32::from_be_bytes(head[2..6].try_into().expect("4 bytes"));
    let master = keys
        .key(master_key_id)
        .ok_or(TokenError::UnknownMasterKey(master_key_id))?;
    if master_box.len() < GCM_OVERHEAD + MASTER_FIXED_LEN + GCM_OVERHEAD + SITE_FIXED_LEN + 32 {
        return Err(TokenError::Malformed);
    }
    let master_plain = master
        .gcm()
        .open_in_place(master_box, &[])
        .map_err(|_| TokenError::DecryptionFailed)?;

    let (fixed, site_box) = master_plain.split_at_mut(MASTER_FIXED_LEN);
    let mut r = Reader::new(fixed);
    let expires_ms = r.i64().ok_or(TokenError::Malformed)?;
    let created_ms = r.i64().ok_or(TokenError::Malformed)?;
    let operator = OperatorIdentity::read(&mut r).ok_or(TokenError::Malformed)?;
    let site_key_id = r.u32().ok_or(TokenError::Malformed)?;
    if expires_ms < now_ms {
        return Err(TokenError::Expired { expires_ms });
    }
    let site = keys
        .key(site_key_id)
        .ok_or(TokenError::UnknownSiteKey(site_key_id))?;
    let site_plain = site
        .gcm()
        .open_in_place(site_box, &[])
        .map_err(|_| TokenError::DecryptionFailed)?;

    let mut r = Reader::new(site_plain);
    let publisher = PublisherIdentity::read(&mut r).ok_or(TokenError::Malformed)?;
    let privacy_bits = PrivacyBits(r.u32().ok_or(TokenError::Malformed)?);
    let established_ms = r.i64().ok_or(TokenError::Malformed)?;
    let refreshed_ms = r.i64().ok_or(TokenError::Malformed)?;
    let raw_uid = RawUid::from_slice(r.rest()).ok_or(TokenError::Malformed)?;

    Ok(AdvertisingToken {
        version,
        identity,
        master_key_id,
        expires_ms,
        created_ms,
        operator,
        site_key_id,
        publisher,
        privacy_bits,
        established_ms,
        refreshed_ms,
        raw_uid,
    })
}

fn decode_v2(
    bytes: &mut [u8],
    keys: &impl KeyLookup,
    now_ms: i64,
) -> Result<AdvertisingTokenV2, TokenError> {
    if bytes.len() < 5 {
        return Err(TokenError::Malformed);
    }
    let (head, master_box) = bytes.split_at_mut(5);
    let master_key_id = u32::from_be_bytes(head[1..5].try_into().expect("4 bytes"));
    let master = keys
        .key(master_key_id)
        .ok_or(TokenError::UnknownMasterKey(master_key_id))?;
    let master_plain = master
        .cbc()
        .open_in_place(master_box)
        .map_err(|_| TokenError::DecryptionFailed)?;
    let mut r = Reader::new(master_plain);
    let expires_ms = r.i64().ok_or(TokenError::Malformed)?;
    let site_key_id = r.u32().ok_or(TokenError::Malformed)?;
    let site_box_len = r.rest().len();
    if expires_ms < now_ms {
        return Err(TokenError::Expired { expires_ms });
    }
    let site = keys
        .key(site_key_id)
        .ok_or(TokenError::UnknownSiteKey(site_key_id))?;
    let site_box = &mut master_plain[12..12 + site_box_len];
    let site_plain = site
        .cbc()
        .open_in_place(site_box)
        .map_err(|_| TokenError::DecryptionFailed)?;
    let mut r = Reader::new(site_plain);
    let site_id = r.i32().ok_or(TokenError::Malformed)?;
    let id_len = r.u32().ok_or(TokenError::Malformed)? as usize;
    let id_text = r.take(id_len).ok_or(TokenError::Malformed)?;
    let raw_uid = std::str::from_utf8(id_text)
        .ok()
        .and_then(RawUid::parse_base64)
        .ok_or(TokenError::Malformed)?;
    let privacy_bits = PrivacyBits(r.u32().ok_or(TokenError::Malformed)?);
    let established_ms = r.i64().ok_or(TokenError::Malformed)?;
    Ok(AdvertisingTokenV2 {
        master_key_id,
        expires_ms,
        site_key_id,
        site_id,
        raw_uid,
        privacy_bits,
        established_ms,
    })
}

impl AdvertisingTokenV2 {
    /// Encodes a legacy v2 token (nothing issues these any more; kept so tests and fuzz seeds
    /// can produce them without an old operator).
    pub fn encode_with_ivs(
        &self,
        master: &Key,
        site: &Key,
        iv_master: [u8; 16],
        iv_site: [u8; 16],
    ) -> String {
        let uid = self.raw_uid.to_base64();
        let mut site_plain = Vec::with_capacity(20 + uid.len());
        site_plain.extend_from_slice(&self.site_id.to_be_bytes());
        site_plain.extend_from_slice(&(uid.len() as u32).to_be_bytes());
        site_plain.extend_from_slice(uid.as_bytes());
        site_plain.extend_from_slice(&self.privacy_bits.0.to_be_bytes());
        site_plain.extend_from_slice(&self.established_ms.to_be_bytes());

        let mut master_plain = Vec::with_capacity(128);
        master_plain.extend_from_slice(&self.expires_ms.to_be_bytes());
        master_plain.extend_from_slice(&site.id.to_be_bytes());
        crate::cipher::cbc_seal_into(site.secret(), iv_site, &site_plain, &mut master_plain);

        let mut token = vec![2u8];
        token.extend_from_slice(&master.id.to_be_bytes());
        crate::cipher::cbc_seal_into(master.secret(), iv_master, &master_plain, &mut token);
        base64_encode(&token)
    }
}
