//! Token decryption and sharing encryption over a [`KeyContainer`], with the statuses and the
//! order of checks of the official Java SDK (`Uid2Encryption`):
//!
//! 1. no keys yet → [`DecryptionStatus::NotInitialized`]; every key expired →
//!    [`DecryptionStatus::KeysNotSynced`];
//! 2. fewer than four characters or an undecodable header → [`DecryptionStatus::InvalidPayload`];
//!    a version byte other than 2, 112 (v3), 128 (v4) → [`DecryptionStatus::VersionNotSupported`];
//! 3. v3/v4 only: the header's scope differs from the keys' `identity_scope` →
//!    [`DecryptionStatus::InvalidIdentityScope`];
//! 4. master key unknown → [`DecryptionStatus::NotAuthorizedForMasterKey`]; site key unknown →
//!    [`DecryptionStatus::NotAuthorizedForKey`]; a layer that does not decrypt or parse →
//!    [`DecryptionStatus::InvalidPayload`];
//! 5. `now > expires` → [`DecryptionStatus::ExpiredToken`];
//! 6. bidstream only, client-side generated tokens (privacy bit `0x2`): the caller's domain or
//!    app name must be listed for the token's site in `site_data` →
//!    [`DecryptionStatus::DomainNameCheckFailed`];
//! 7. `expires − created` longer than `max_bidstream_lifetime_seconds` (bidstream) or
//!    `max_sharing_lifetime_seconds` (sharing), or `created` more than
//!    `allow_clock_skew_seconds` after now → [`DecryptionStatus::InvalidTokenLifetime`] (v2
//!    tokens carry no creation time: now stands in for it).
//!
//! Decryption takes no lock and allocates nothing: the token is decoded into a stack buffer by
//! `uid2-proto` and the raw UID is returned by value.

use uid2_proto::identity::{IdentityScope, IdentityType};
use uid2_proto::key::Key;
use uid2_proto::salt::RawUid;
use uid2_proto::token::{
    AdvertisingToken, DecodedAdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits,
    PublisherIdentity, TokenError, TokenPrefix, TokenVersion, advertising,
};

use crate::keys::KeyContainer;

/// The outcome of a decryption, named as in the official SDKs. Not an error type: a bad token
/// in the bid stream is data, and `Success` is one of the outcomes. The official SDKs have added
/// statuses over time, and so may this one: a `match` needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecryptionStatus {
    /// Decrypted; the raw UID is in the response.
    Success,
    /// The master key of the token is not among the keys (an old token whose key was retired,
    /// or a caller no longer entitled to master keys).
    NotAuthorizedForMasterKey,
    /// The site key of the token is not among the keys (the publisher does not share with the
    /// caller).
    NotAuthorizedForKey,
    /// No keys were ever loaded: call `refresh` first.
    NotInitialized,
    /// Not a token: bad base64, wrong length, or a layer that does not decrypt.
    InvalidPayload,
    /// The token has expired.
    ExpiredToken,
    /// Every key has expired: the keys have not been refreshed for too long.
    KeysNotSynced,
    /// A token version this SDK does not know.
    VersionNotSupported,
    /// A UID2 token given to an EUID client or the reverse.
    InvalidIdentityScope,
    /// A client-side generated token whose site does not list the given domain or app name.
    DomainNameCheckFailed,
    /// The token lives longer than the service allows, or was created too far in the future.
    InvalidTokenLifetime,
}

impl DecryptionStatus {
    /// The status's name in the official SDKs (`EXPIRED_TOKEN`, …), for logs and metrics that
    /// must read the same whichever SDK decrypted.
    pub fn official_name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::NotAuthorizedForMasterKey => "NOT_AUTHORIZED_FOR_MASTER_KEY",
            Self::NotAuthorizedForKey => "NOT_AUTHORIZED_FOR_KEY",
            Self::NotInitialized => "NOT_INITIALIZED",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::ExpiredToken => "EXPIRED_TOKEN",
            Self::KeysNotSynced => "KEYS_NOT_SYNCED",
            Self::VersionNotSupported => "VERSION_NOT_SUPPORTED",
            Self::InvalidIdentityScope => "INVALID_IDENTITY_SCOPE",
            Self::DomainNameCheckFailed => "DOMAIN_NAME_CHECK_FAILED",
            Self::InvalidTokenLifetime => "INVALID_TOKEN_LIFETIME",
        }
    }

    /// A short description, as the official SDKs word it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NotAuthorizedForMasterKey => "not authorized for master key",
            Self::NotAuthorizedForKey => "not authorized for key",
            Self::NotInitialized => "keys not initialized",
            Self::InvalidPayload => "invalid payload",
            Self::ExpiredToken => "token expired",
            Self::KeysNotSynced => {
                "no keys available or all keys have expired; refresh the latest keys"
            }
            Self::VersionNotSupported => "token version not supported",
            Self::InvalidIdentityScope => "invalid identity scope",
            Self::DomainNameCheckFailed => "domain name check failed",
            Self::InvalidTokenLifetime => "invalid token lifetime",
        }
    }
}

impl std::fmt::Display for DecryptionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decryption found out. On success every field is set; on a failure after the token
/// was opened (expired, domain, lifetime) everything but the raw UID is set; on earlier
/// failures only `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptionResponse {
    /// The outcome.
    pub status: DecryptionStatus,
    /// The raw UID (success only).
    pub raw_uid: Option<RawUid>,
    /// When the identity was first established (ms).
    pub established_ms: Option<i64>,
    /// The site (publisher or sharer) the token was minted for.
    pub site_id: Option<i32>,
    /// The site owning the key of the token's inner layer, when the key answer names it.
    pub site_key_site_id: Option<i32>,
    /// Email or phone (v3 and v4 tokens; v2 tokens do not say).
    pub identity_type: Option<IdentityType>,
    /// UID2 or EUID.
    pub identity_scope: Option<IdentityScope>,
    /// The token version.
    pub advertising_token_version: Option<TokenVersion>,
    /// Whether the token was generated client-side (privacy bit `0x2`).
    pub is_client_side_generated: bool,
    /// When the token expires (ms).
    pub expiry_ms: Option<i64>,
}

impl DecryptionResponse {
    /// A response with only a status.
    pub const fn error(status: DecryptionStatus) -> Self {
        Self {
            status,
            raw_uid: None,
            established_ms: None,
            site_id: None,
            site_key_site_id: None,
            identity_type: None,
            identity_scope: None,
            advertising_token_version: None,
            is_client_side_generated: false,
            expiry_ms: None,
        }
    }

    /// Whether the token was decrypted.
    pub fn is_success(&self) -> bool {
        self.status == DecryptionStatus::Success
    }

    /// The raw UID as the official SDKs return it: standard base64 (44 characters).
    pub fn uid(&self) -> Option<String> {
        self.raw_uid.map(|u| u.to_base64())
    }
}

/// The outcome of a sharing encryption, named as in the official SDKs (more may come: a `match`
/// needs a `_` arm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionStatus {
    /// No keys were ever loaded: call `refresh` first.
    #[error("keys not initialized")]
    NotInitialized,
    /// Every key has expired.
    #[error("keys not synced")]
    KeysNotSynced,
    /// No active master key among the keys.
    #[error("not authorized for master key")]
    NotAuthorizedForMasterKey,
    /// No active key in the caller's default keyset (or no caller site).
    #[error("not authorized for key")]
    NotAuthorizedForKey,
    /// The raw UID is not base64 of 32 or 33 bytes.
    #[error("encryption failure")]
    EncryptionFailure,
}

impl EncryptionStatus {
    /// The status's name in the official SDKs (`KEYS_NOT_SYNCED`, …).
    pub fn official_name(self) -> &'static str {
        match self {
            Self::NotInitialized => "NOT_INITIALIZED",
            Self::KeysNotSynced => "KEYS_NOT_SYNCED",
            Self::NotAuthorizedForMasterKey => "NOT_AUTHORIZED_FOR_MASTER_KEY",
            Self::NotAuthorizedForKey => "NOT_AUTHORIZED_FOR_KEY",
            Self::EncryptionFailure => "ENCRYPTION_FAILURE",
        }
    }
}

/// Which rules a decryption follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientType {
    /// SSPs and DSPs: domain check, `max_bidstream_lifetime_seconds`.
    Bidstream,
    /// Sharers: no domain check, `max_sharing_lifetime_seconds`.
    Sharing,
}

fn status_of(e: TokenError) -> DecryptionStatus {
    match e {
        TokenError::UnsupportedVersion => DecryptionStatus::VersionNotSupported,
        TokenError::UnknownMasterKey(_) => DecryptionStatus::NotAuthorizedForMasterKey,
        TokenError::UnknownSiteKey(_) => DecryptionStatus::NotAuthorizedForKey,
        TokenError::Malformed
        | TokenError::DecryptionFailed
        | TokenError::IdentityMismatch
        | TokenError::Expired { .. } => DecryptionStatus::InvalidPayload,
    }
}

/// The status of a token that did not decode. The Java SDK checks the identity scope of a v3/v4
/// header before anything else, so a wrong scope wins over every later failure; checking it here,
/// off the success path, gives the same answers.
fn early_failure(keys: &KeyContainer, token: &str, e: TokenError) -> DecryptionStatus {
    if let Ok(prefix) = TokenPrefix::read(token)
        && let Some(identity) = prefix.identity
        && identity.scope != keys.identity_scope()
    {
        return DecryptionStatus::InvalidIdentityScope;
    }
    status_of(e)
}

/// Decrypts `token` with `keys` at `now_ms`.
pub(crate) fn decrypt(
    keys: Option<&KeyContainer>,
    token: &str,
    domain_or_app_name: Option<&str>,
    client: ClientType,
    now_ms: i64,
) -> DecryptionResponse {
    let Some(keys) = keys else {
        return DecryptionResponse::error(DecryptionStatus::NotInitialized);
    };
    if !keys.is_valid(now_ms) {
        return DecryptionResponse::error(DecryptionStatus::KeysNotSynced);
    }
    // Expiry is checked below, after both layers, in the Java SDK's order.
    let decoded = match advertising::decode(token, keys.ring(), i64::MIN) {
        Ok(t) => t,
        Err(e) => return DecryptionResponse::error(early_failure(keys, token, e)),
    };
    if let DecodedAdvertisingToken::V3OrV4(t) = &decoded
        && t.identity.scope != keys.identity_scope()
    {
        return DecryptionResponse::error(DecryptionStatus::InvalidIdentityScope);
    }
    let site_key_site_id = keys
        .key(decoded.site_key_id())
        .map(|k| k.site_id)
        .filter(|&s| s != -1);
    let (identity_type, identity_scope, created_ms) = match &decoded {
        DecodedAdvertisingToken::V2(_) => (None, keys.identity_scope(), None),
        DecodedAdvertisingToken::V3OrV4(t) => (
            Some(t.identity.identity_type),
            t.identity.scope,
            Some(t.created_ms),
        ),
    };
    let privacy_bits = decoded.privacy_bits();
    let site_id = decoded.site_id();
    let expires_ms = decoded.expires_ms();
    let mut response = DecryptionResponse {
        status: DecryptionStatus::Success,
        raw_uid: None,
        established_ms: Some(decoded.established_ms()),
        site_id: Some(site_id),
        site_key_site_id,
        identity_type,
        identity_scope: Some(identity_scope),
        advertising_token_version: Some(decoded.version()),
        is_client_side_generated: privacy_bits.is_client_side_generated(),
        expiry_ms: Some(expires_ms),
    };
    response.status = if now_ms > expires_ms {
        DecryptionStatus::ExpiredToken
    } else if client == ClientType::Bidstream
        && privacy_bits.is_client_side_generated()
        && !keys.is_domain_or_app_name_allowed_for_site(site_id, domain_or_app_name)
    {
        DecryptionStatus::DomainNameCheckFailed
    } else if !has_valid_lifetime(
        keys,
        client,
        created_ms.unwrap_or(now_ms),
        expires_ms,
        now_ms,
    ) {
        DecryptionStatus::InvalidTokenLifetime
    } else {
        response.raw_uid = Some(*decoded.raw_uid());
        DecryptionStatus::Success
    };
    response
}

/// `expires − created ≤ max lifetime` and `created − now ≤ allowed clock skew`, in milliseconds.
fn has_valid_lifetime(
    keys: &KeyContainer,
    client: ClientType,
    created_ms: i64,
    expires_ms: i64,
    now_ms: i64,
) -> bool {
    let max_s = match client {
        ClientType::Bidstream => keys.max_bidstream_lifetime_seconds(),
        ClientType::Sharing => keys.max_sharing_lifetime_seconds(),
    };
    let lifetime_ms = i128::from(expires_ms) - i128::from(created_ms);
    if lifetime_ms > i128::from(max_s) * 1000 {
        return false;
    }
    i128::from(created_ms) - i128::from(now_ms)
        <= i128::from(keys.allow_clock_skew_seconds()) * 1000
}

/// Encrypts a raw UID (base64) into a v4 sharing token: master key = active key of the master
/// keyset, site key = active key of `keyset_id` (`None`: the caller's default keyset), site id =
/// the caller's site, expiry = now + `token_expiry_seconds`, privacy bits 0, as the SDKs' token
/// generator writes.
pub(crate) fn encrypt(
    keys: Option<&KeyContainer>,
    raw_uid: &str,
    keyset_id: Option<i32>,
    now_ms: i64,
) -> Result<String, EncryptionStatus> {
    let keys = keys.ok_or(EncryptionStatus::NotInitialized)?;
    if !keys.is_valid(now_ms) {
        return Err(EncryptionStatus::KeysNotSynced);
    }
    let master: &Key = keys
        .master_key(now_ms)
        .ok_or(EncryptionStatus::NotAuthorizedForMasterKey)?;
    let site: &Key = match keyset_id {
        None => keys.default_key(now_ms),
        Some(keyset_id) => keys.active_keyset_key(keyset_id, now_ms),
    }
    .ok_or(EncryptionStatus::NotAuthorizedForKey)?;
    let site_id = keys
        .caller_site_id()
        .ok_or(EncryptionStatus::NotAuthorizedForKey)?;
    let uid = RawUid::parse_base64(raw_uid).ok_or(EncryptionStatus::EncryptionFailure)?;
    // A 33-byte raw UID (v3 or v4) carries its identity type in its first byte; a 32-byte one
    // (v2) does not say, and is written as email. (The SDKs' generator guesses from the first
    // base64 character, `B`/`F` meaning phone, which is right for v3 raw UIDs only.)
    let identity_type = uid
        .identity_codes()
        .map_or(IdentityType::Email, |codes| codes.identity_type());
    let token = AdvertisingToken {
        version: TokenVersion::V4,
        identity: IdentityHeader {
            scope: keys.identity_scope(),
            identity_type,
        },
        master_key_id: master.id,
        expires_ms: now_ms.saturating_add(keys.token_expiry_seconds().saturating_mul(1000)),
        created_ms: now_ms,
        operator: OperatorIdentity::default(),
        site_key_id: site.id,
        publisher: PublisherIdentity::for_site(site_id),
        privacy_bits: PrivacyBits(0),
        established_ms: now_ms,
        refreshed_ms: now_ms,
        raw_uid: uid,
    };
    Ok(token.encode(master, site, &mut rand::rng()))
}
