//! The immutable in-memory state requests are served from.
//!
//! A [`Snapshot`] is built from the store at start-up and replaced whole by the sync task when the
//! store changes; parts that did not change are shared between consecutive snapshots by `Arc`.
//! AES keys are expanded and derived values (special identities, bucket-id encoder) computed here,
//! once, never per request.

use std::collections::HashMap;
use std::sync::Arc;

use uid2_proto::cstg::{CstgKeyPair, decode_key_text};
use uid2_proto::identity::{HashedIdentity, IdentityScope, IdentityType};
use uid2_proto::key::{
    FALLBACK_PUBLISHER_KEYSET_ID, Key, KeyRing, Keyset, MASTER_KEYSET_ID, REFRESH_KEYSET_ID,
};
use uid2_proto::salt::{BucketIdEncoder, FirstLevelHash, SaltTable};
use uid2_store::{CstgKeypairRecord, Generations, KeyRecord, KeysetRecord, SaltMeta, SiteRecord};

use crate::clients::ClientIndex;
use crate::config::OperatorConfig;
use crate::optout::OptOutIndex;

/// Keys and keysets, with the lookups token minting needs.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Every key.
    pub ring: KeyRing,
    /// Keysets by id.
    pub keysets: HashMap<i32, Keyset>,
    default_keyset_by_site: HashMap<i32, i32>,
}

impl KeyState {
    /// Builds the key state.
    pub fn new(keysets: &[KeysetRecord], keys: &[KeyRecord]) -> Self {
        let keysets: HashMap<i32, Keyset> = keysets
            .iter()
            .map(|k| {
                (
                    k.id,
                    Keyset {
                        id: k.id,
                        site_id: k.site_id,
                        name: k.name.clone(),
                        allowed_sites: k.allowed_sites.clone(),
                        created_s: k.created_s,
                        enabled: k.enabled,
                        is_default: k.is_default,
                    },
                )
            })
            .collect();
        let default_keyset_by_site = keysets
            .values()
            .filter(|k| k.enabled && k.is_default)
            .map(|k| (k.site_id, k.id))
            .collect();
        let ring = KeyRing::new(keys.iter().filter_map(|k| {
            let keyset = keysets.get(&k.keyset_id)?;
            Some(Key::new(
                k.id,
                keyset.site_id,
                Some(k.keyset_id),
                k.created_s,
                k.activates_s,
                k.expires_s,
                k.secret,
            ))
        }));
        Self {
            ring,
            keysets,
            default_keyset_by_site,
        }
    }

    /// The master key (outer layer of advertising tokens) at `now_s`.
    pub fn master_key(&self, now_s: i64) -> Option<&Key> {
        self.ring.active_key(MASTER_KEYSET_ID, now_s)
    }

    /// The refresh key at `now_s`.
    pub fn refresh_key(&self, now_s: i64) -> Option<&Key> {
        self.ring.active_key(REFRESH_KEYSET_ID, now_s)
    }

    /// The site's default keyset, if it has an enabled one.
    pub fn default_keyset(&self, site_id: i32) -> Option<i32> {
        self.default_keyset_by_site.get(&site_id).copied()
    }

    /// The key that encrypts the inner layer of tokens for `site_id`: the active key of the
    /// site's default keyset, else of the fallback publisher keyset.
    pub fn site_key(&self, site_id: i32, now_s: i64) -> Option<&Key> {
        self.default_keyset(site_id)
            .and_then(|k| self.ring.active_key(k, now_s))
            .or_else(|| self.ring.active_key(FALLBACK_PUBLISHER_KEYSET_ID, now_s))
    }

    /// The site owning a key (through its keyset).
    pub fn key_owner_site(&self, key_id: u32) -> Option<i32> {
        let keyset = self.ring.key(key_id)?.keyset_id?;
        self.keysets.get(&keyset).map(|k| k.site_id)
    }
}

/// The test identities of the official operator, matched on the first-level hash.
#[derive(Debug, Default)]
pub struct SpecialIdentities {
    always_opted_out: Vec<(IdentityType, FirstLevelHash)>,
    opted_out_on_refresh: Vec<(IdentityType, FirstLevelHash)>,
    never_opted_out: Vec<(IdentityType, FirstLevelHash)>,
}

impl SpecialIdentities {
    /// The test identities under the store's first-level salt.
    pub fn new(first_level_salt: &str) -> Self {
        let hashes = |list: &[&str]| {
            list.iter()
                .map(|v| {
                    let id = if v.starts_with('+') {
                        HashedIdentity::from_phone(v)
                    } else {
                        HashedIdentity::from_email(v)
                    }
                    .expect("special identities are valid");
                    (
                        id.identity_type,
                        FirstLevelHash::compute(&id, first_level_salt),
                    )
                })
                .collect()
        };
        Self {
            always_opted_out: hashes(&["optout@example.com", "+00000000000"]),
            opted_out_on_refresh: hashes(&["refresh-optout@example.com", "+00000000002"]),
            never_opted_out: hashes(&["validate@example.com", "+12345678901"]),
        }
    }

    fn is_in(
        list: &[(IdentityType, FirstLevelHash)],
        t: IdentityType,
        flh: &FirstLevelHash,
    ) -> bool {
        list.iter().any(|(lt, lh)| *lt == t && lh == flh)
    }

    /// Whether this is `validate@example.com` or `+12345678901`, the identities v1 validated.
    pub fn is_validate_identity(&self, t: IdentityType, flh: &FirstLevelHash) -> bool {
        Self::is_in(&self.never_opted_out, t, flh)
    }
}

/// Salts and everything derived from them.
#[derive(Debug)]
pub struct Salts {
    /// The first-level salt.
    pub first_level_salt: String,
    /// Bucket id strings.
    pub bucket_ids: BucketIdEncoder,
    /// The buckets.
    pub table: SaltTable,
    /// Test identities.
    pub special: SpecialIdentities,
}

impl Salts {
    /// Builds the salt state.
    pub fn new(meta: &SaltMeta, table: SaltTable) -> Self {
        Self {
            first_level_salt: meta.first_level_salt.clone(),
            bucket_ids: BucketIdEncoder::new(&meta.id_prefix, &meta.id_secret),
            table,
            special: SpecialIdentities::new(&meta.first_level_salt),
        }
    }

    /// The first-level hash of an identity.
    pub fn first_level_hash(&self, identity: &HashedIdentity) -> FirstLevelHash {
        FirstLevelHash::compute(identity, &self.first_level_salt)
    }

    /// The `bucket_id` string of the bucket with numeric id `id`, as identity map reports it.
    pub fn bucket_id(&self, id: u32) -> String {
        self.bucket_ids.encode(id)
    }
}

/// A CSTG subscription.
#[derive(Debug)]
pub struct CstgSubscription {
    /// The site tokens are generated for.
    pub site_id: i32,
    /// The operator's key pair.
    pub keypair: CstgKeyPair,
    /// Disabled subscriptions answer 401.
    pub disabled: bool,
}

/// CSTG subscriptions by id.
pub type CstgIndex = HashMap<String, CstgSubscription>;

/// Builds the CSTG index, skipping (and logging) key pairs that do not parse.
pub fn build_cstg(records: &[CstgKeypairRecord]) -> CstgIndex {
    records
        .iter()
        .filter_map(|r| {
            let keypair = decode_key_text(&r.private_key).and_then(|der| CstgKeyPair::from_pkcs8_der(&der).ok());
            match keypair {
                Some(keypair) => Some((
                    r.subscription_id.clone(),
                    CstgSubscription {
                        site_id: r.site_id,
                        keypair,
                        disabled: r.disabled,
                    },
                )),
                None => {
                    tracing::warn!(subscription = %r.subscription_id, "skipping a CSTG key pair that does not parse");
                    None
                }
            }
        })
        .collect()
}

/// Sites by id.
pub type SiteIndex = HashMap<i32, SiteRecord>;

/// Everything a request needs, immutable (cloning copies pointers, not the data).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Settings.
    pub config: Arc<OperatorConfig>,
    /// API clients.
    pub clients: Arc<ClientIndex>,
    /// Keys.
    pub keys: Arc<KeyState>,
    /// Salts.
    pub salts: Arc<Salts>,
    /// Sites.
    pub sites: Arc<SiteIndex>,
    /// CSTG subscriptions.
    pub cstg: Arc<CstgIndex>,
    /// Opt-outs.
    pub optouts: Arc<OptOutIndex>,
    /// The store generations this snapshot reflects.
    pub generations: Generations,
    /// How fresh the data is (ms): every part of this snapshot was current with the store as
    /// of this time, the start of the last sync pass that found nothing it could not apply.
    /// Advanced by every such pass, even when nothing changed.
    pub synced_at_ms: i64,
}

/// The outcome of the opt-out check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutCheck {
    /// Generate (and map): the always-opted-out test identities, then the index; the
    /// refresh-optout and validate test identities are never opted out here.
    Generate,
    /// Refresh: the refresh-optout test identities are opted out too.
    Refresh,
}

impl Snapshot {
    /// Whether the identity is opted out, special test identities included.
    pub fn is_opted_out(
        &self,
        identity_type: IdentityType,
        flh: &FirstLevelHash,
        check: OptOutCheck,
    ) -> bool {
        // The order of the official `getGlobalOptOutResult`: the refresh-optout identities answer
        // "opted out" on refresh and "not opted out" everywhere else, before the index is read.
        let special = &self.salts.special;
        let refresh_optout =
            SpecialIdentities::is_in(&special.opted_out_on_refresh, identity_type, flh);
        if check == OptOutCheck::Refresh && refresh_optout {
            return true;
        }
        if refresh_optout || SpecialIdentities::is_in(&special.never_opted_out, identity_type, flh)
        {
            return false;
        }
        if SpecialIdentities::is_in(&special.always_opted_out, identity_type, flh) {
            return true;
        }
        self.optouts.opted_out_at_ms(flh).is_some()
    }

    /// The operator's identity scope.
    pub fn scope(&self) -> IdentityScope {
        self.config.identity_scope
    }
}
