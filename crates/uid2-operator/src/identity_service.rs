//! What the operator does with an identity, independent of HTTP: mint an identity (advertising
//! token + refresh token), refresh one, map one to its raw UID, and decide whether an EUID consent
//! string allows it. Pure functions of a snapshot, the time and a random source.

use uid2_proto::CryptoRng;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::RefreshEnvelope;
use uid2_proto::identity::{HashedIdentity, IdentityScope, IdentityType};
use uid2_proto::key::{Key, KeyLookup, KeyRing, REFRESH_KEYSET_ID};
use uid2_proto::salt::{FirstLevelHash, RawUid};
use uid2_proto::tcf::{TcString, TcfError};
use uid2_proto::token::{
    AdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity,
    RefreshToken, TokenVersion,
};
use uid2_proto::wire::IdentityTokens;

use crate::snapshot::{OptOutCheck, Snapshot};

/// Tokens minted before this instant (2021-03-08T17:00:00Z) are answered `optout` on refresh,
/// as upstream does.
pub const DEPRECATED_ESTABLISHED_BEFORE_MS: i64 = 1_615_222_800_000;

/// No key is active for a keyset that minting needs: an operator problem, not bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("No active encryption key available")]
pub struct NoActiveKey;

/// How the refresh token is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshForm {
    /// The v2 API: the 388-character wrapper carrying a fresh `refresh_response_key`.
    Wrapped,
    /// The v1 API: the bare refresh token, no response key.
    Bare,
}

/// Who and what a new identity is minted for.
#[derive(Debug, Clone, Copy)]
pub struct MintRequest {
    /// The publisher site.
    pub site_id: i32,
    /// Email or phone.
    pub identity_type: IdentityType,
    /// First-level hash of the identity.
    pub first_level_hash: FirstLevelHash,
    /// When the identity was first established (ms).
    pub established_ms: i64,
    /// Privacy bits.
    pub privacy_bits: PrivacyBits,
}

/// Mints an advertising token and a refresh token.
pub fn mint(
    snap: &Snapshot,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
    req: MintRequest,
    form: RefreshForm,
) -> Result<IdentityTokens, NoActiveKey> {
    let config = &snap.config;
    let now_s = now_ms.div_euclid(1000);
    let master = snap.keys.master_key(now_s).ok_or(NoActiveKey)?;
    let site_key = snap.keys.site_key(req.site_id, now_s).ok_or(NoActiveKey)?;
    let refresh_key = snap.keys.refresh_key(now_s).ok_or(NoActiveKey)?;

    let identity = IdentityHeader {
        scope: snap.scope(),
        identity_type: req.identity_type,
    };
    let identity_expires = now_ms + config.identity_token_expires_after.as_millis() as i64;
    let refresh_expires = now_ms + config.refresh_token_expires_after.as_millis() as i64;
    let refresh_from = now_ms + config.refresh_identity_token_after.as_millis() as i64;
    let raw_uid = snap.salts.table.raw_uid(
        &req.first_level_hash,
        req.identity_type,
        config.raw_uid_settings(),
    );
    let publisher = PublisherIdentity::for_site(req.site_id);

    let advertising_token = AdvertisingToken {
        version: TokenVersion::V4,
        identity,
        master_key_id: master.id,
        expires_ms: identity_expires,
        created_ms: now_ms,
        operator: OperatorIdentity::default(),
        site_key_id: site_key.id,
        publisher,
        privacy_bits: req.privacy_bits,
        established_ms: req.established_ms,
        refreshed_ms: now_ms,
        raw_uid,
    }
    .encode(master, site_key, rng);

    let inner = RefreshToken {
        version: TokenVersion::V3,
        identity,
        key_id: refresh_key.id,
        expires_ms: refresh_expires,
        created_ms: now_ms,
        operator: OperatorIdentity::default(),
        publisher,
        privacy_bits: req.privacy_bits,
        established_ms: req.established_ms,
        first_level_hash: req.first_level_hash,
    }
    .encode_v3(refresh_key, rng);

    let (refresh_token, refresh_response_key) = match form {
        RefreshForm::Bare => (inner, None),
        RefreshForm::Wrapped => {
            let mut response_key = [0u8; 32];
            rng.fill_bytes(&mut response_key);
            let wrapper = RefreshEnvelope {
                scope: snap.scope(),
                key_id: refresh_key.id,
                refresh_response_key: response_key,
                refresh_token: inner,
            }
            .seal(refresh_key, rng);
            (wrapper, Some(base64_encode(&response_key)))
        }
    };
    Ok(IdentityTokens {
        advertising_token,
        refresh_token,
        identity_expires,
        refresh_expires,
        refresh_from,
        refresh_response_key,
    })
}

/// The result of a generate call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateOutcome {
    /// A new identity.
    Generated(IdentityTokens),
    /// The user opted out.
    OptOut,
}

/// How an endpoint generates identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratePolicy {
    /// Privacy bits written into the tokens.
    pub privacy_bits: PrivacyBits,
    /// How the refresh token is handed out.
    pub form: RefreshForm,
}

impl GeneratePolicy {
    /// `/v2/token/generate`.
    pub const SERVER_SIDE: Self = Self {
        privacy_bits: PrivacyBits::SERVER_SIDE,
        form: RefreshForm::Wrapped,
    };
    /// `/v2/token/client-generate`.
    pub const CLIENT_SIDE: Self = Self {
        privacy_bits: PrivacyBits::CLIENT_SIDE,
        form: RefreshForm::Wrapped,
    };
    /// `/v1/token/generate`.
    pub const LEGACY_V1: Self = Self {
        privacy_bits: PrivacyBits::SERVER_SIDE,
        form: RefreshForm::Bare,
    };
}

/// Generates an identity for a publisher site; `OptOut` for an identity that opted out, on
/// every endpoint. (The official v1 generate never checked: any generator key could mint a
/// token, good for days in the bid stream, for a user who had opted out.)
pub fn generate(
    snap: &Snapshot,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
    site_id: i32,
    identity: &HashedIdentity,
    policy: GeneratePolicy,
) -> Result<GenerateOutcome, NoActiveKey> {
    let flh = snap.salts.first_level_hash(identity);
    if snap.is_opted_out(identity.identity_type, &flh, OptOutCheck::Generate) {
        return Ok(GenerateOutcome::OptOut);
    }
    let req = MintRequest {
        site_id,
        identity_type: identity.identity_type,
        first_level_hash: flh,
        established_ms: now_ms,
        privacy_bits: policy.privacy_bits,
    };
    mint(snap, now_ms, rng, req, policy.form).map(GenerateOutcome::Generated)
}

/// The result of a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new identity.
    Refreshed(IdentityTokens),
    /// Opted out (or an identity too old to refresh).
    OptOut,
    /// Not a refresh token of this operator.
    Invalid,
    /// Past `refresh_expires`.
    Expired,
    /// The operator has no active key.
    NoActiveKey,
}

/// The refresh keys (keyset −2) of a key ring, as the only keys refresh tokens and their
/// wrappers are opened with.
///
/// A refresh token that opens is trusted as this operator's: it names the site, the identity and
/// when it was established. Master keys go to every bidder and site keys to sharers, so a lookup
/// over the whole ring would let any of them forge refresh tokens and obtain genuine tokens for
/// any site. A key of another keyset is answered exactly as an unknown key.
#[derive(Debug, Clone, Copy)]
pub struct RefreshKeys<'a>(&'a KeyRing);

impl<'a> RefreshKeys<'a> {
    /// The refresh keys of `snap`.
    pub fn of(snap: &'a Snapshot) -> Self {
        Self(&snap.keys.ring)
    }
}

impl KeyLookup for RefreshKeys<'_> {
    fn key(&self, id: u32) -> Option<&Key> {
        self.0
            .key(id)
            .filter(|k| k.keyset_id == Some(REFRESH_KEYSET_ID))
    }
}

/// Refreshes from an inner refresh token (v3, or v2 from older operators).
pub fn refresh(
    snap: &Snapshot,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
    inner_token: &str,
    form: RefreshForm,
) -> RefreshOutcome {
    let Ok(token) = RefreshToken::decode(inner_token, &RefreshKeys::of(snap)) else {
        return RefreshOutcome::Invalid;
    };
    if token.identity.scope != snap.scope() {
        return RefreshOutcome::Invalid;
    }
    if token.established_ms < DEPRECATED_ESTABLISHED_BEFORE_MS {
        return RefreshOutcome::OptOut;
    }
    if token.is_expired(now_ms) {
        return RefreshOutcome::Expired;
    }
    if snap.is_opted_out(
        token.identity.identity_type,
        &token.first_level_hash,
        OptOutCheck::Refresh,
    ) {
        return RefreshOutcome::OptOut;
    }
    let req = MintRequest {
        site_id: token.publisher.site_id,
        identity_type: token.identity.identity_type,
        first_level_hash: token.first_level_hash,
        established_ms: token.established_ms,
        privacy_bits: token.privacy_bits,
    };
    match mint(snap, now_ms, rng, req, form) {
        Ok(tokens) => RefreshOutcome::Refreshed(tokens),
        Err(NoActiveKey) => RefreshOutcome::NoActiveKey,
    }
}

/// An identity mapped to its current raw UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// First-level hash.
    pub first_level_hash: FirstLevelHash,
    /// The numeric id of its salt bucket.
    pub bucket_id: u32,
    /// Current raw UID.
    pub raw_uid: RawUid,
}

/// Identities [`map_many`] works through at once.
const MAP_CHUNK: usize = 16;

/// [`map`] over many identities, in order. Mapping is a few hashes and three reads of main
/// memory (the opt-out index, the salt bucket, its secret), each a cache miss of about 100 ns
/// that, between hashes, stalls the core. So each chunk goes in passes: its first-level
/// hashes; its opt-out lookups, then its salt buckets and secrets ([`SaltTable::touch_many`]),
/// in loops that only read, whose misses the core overlaps; then its raw UIDs, from the cache.
///
/// [`SaltTable::touch_many`]: uid2_proto::salt::table::SaltTable::touch_many
pub fn map_many(snap: &Snapshot, identities: &[HashedIdentity]) -> Vec<Option<Mapped>> {
    let table = &snap.salts.table;
    let mut out = Vec::with_capacity(identities.len());
    let mut flhs = [FirstLevelHash([0; 32]); MAP_CHUNK];
    let mut opted_out = [false; MAP_CHUNK];
    for chunk in identities.chunks(MAP_CHUNK) {
        for (flh, identity) in flhs.iter_mut().zip(chunk) {
            *flh = snap.salts.first_level_hash(identity);
        }
        for ((flh, identity), opted_out) in flhs.iter().zip(chunk).zip(&mut opted_out) {
            *opted_out = snap.is_opted_out(identity.identity_type, flh, OptOutCheck::Generate);
        }
        table.touch_many(&flhs[..chunk.len()]);
        for ((flh, identity), &opted_out) in flhs.iter().zip(chunk).zip(&opted_out) {
            out.push((!opted_out).then(|| mapped(snap, *flh, identity.identity_type)));
        }
    }
    out
}

/// Maps an identity; `None` when it is opted out.
pub fn map(snap: &Snapshot, identity: &HashedIdentity) -> Option<Mapped> {
    let mapped = map_ignoring_optout(snap, identity);
    let opted_out = snap.is_opted_out(
        identity.identity_type,
        &mapped.first_level_hash,
        OptOutCheck::Generate,
    );
    (!opted_out).then_some(mapped)
}

/// Maps an identity whether or not it opted out: for validating a token against it, and for
/// recording its opt-out. Never for handing its raw UID out.
pub fn map_ignoring_optout(snap: &Snapshot, identity: &HashedIdentity) -> Mapped {
    mapped(
        snap,
        snap.salts.first_level_hash(identity),
        identity.identity_type,
    )
}

/// The mapping of the identity whose first-level hash is `flh`.
fn mapped(snap: &Snapshot, flh: FirstLevelHash, identity_type: IdentityType) -> Mapped {
    let table = &snap.salts.table;
    Mapped {
        first_level_hash: flh,
        bucket_id: table.bucket_id(table.bucket_index(&flh)),
        raw_uid: table.raw_uid(&flh, identity_type, snap.config.raw_uid_settings()),
    }
}

/// What an EUID generate request's TCF consent string allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserConsent {
    /// Generate (also: UID2, or no consent string sent).
    Sufficient,
    /// 200 `insufficient_user_consent`.
    Insufficient,
    /// 400 `User consent is invalid`.
    Invalid,
}

/// Checks `tcf_consent_string` as the official operator does: only in EUID scope and only when
/// the field was sent (an empty string is sent, and invalid); the configured vendor (21) needs
/// purposes 1, 2, 3, 4, 7 and 10 by consent or legitimate interest, and precise geolocation.
pub fn user_consent(snap: &Snapshot, tcf_consent_string: Option<&str>) -> UserConsent {
    let Some(text) = tcf_consent_string else {
        return UserConsent::Sufficient;
    };
    if snap.scope() != IdentityScope::Euid {
        return UserConsent::Sufficient;
    }
    match TcString::parse(text) {
        Ok(tc) if tc.allows_euid(snap.config.tcf_vendor_id) => UserConsent::Sufficient,
        Ok(_) => UserConsent::Insufficient,
        // The official decoder reads TCF v1 strings too; they hold no special-feature opt-ins,
        // so they can never grant consent.
        Err(TcfError::UnsupportedVersion(1)) => UserConsent::Insufficient,
        Err(_) => UserConsent::Invalid,
    }
}
