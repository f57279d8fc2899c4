//! Encryption keys, keysets and the key ring.
//!
//! Keys are found by id when decrypting (the id travels in the token) and by "active key of
//! keyset K at time T" when encrypting: the most recently activated key with `activates ≤ T`
//! that has not expired. Key times are Unix **seconds**, as in every store file and API response.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use crate::cipher::{CbcKey, GcmKey};

/// Keyset of the master keys (outer layer of advertising tokens).
pub const MASTER_KEYSET_ID: i32 = -1;
/// Keyset of the refresh keys (refresh tokens and their wrapper).
pub const REFRESH_KEYSET_ID: i32 = -2;
/// Keyset used for publishers that have no keyset of their own.
pub const FALLBACK_PUBLISHER_KEYSET_ID: i32 = 2;
/// How `/v2/key/sharing` names the master keyset to SDKs.
pub const MASTER_KEYSET_ID_FOR_SDKS: i32 = 9_999_999;
/// Site id owning the master keyset.
pub const MASTER_SITE_ID: i32 = -1;
/// Site id owning the refresh keyset.
pub const REFRESH_SITE_ID: i32 = -2;
/// Site id owning the fallback publisher keyset.
pub const FALLBACK_PUBLISHER_SITE_ID: i32 = 2;

/// One encryption key, with its AES key schedule expanded once.
#[derive(Clone)]
pub struct Key {
    /// Globally unique key id (written into tokens).
    pub id: u32,
    /// The site the key belongs to (through its keyset).
    pub site_id: i32,
    /// The keyset, when known (SDKs receive some keys without one).
    pub keyset_id: Option<i32>,
    /// Creation time (s).
    pub created_s: i64,
    /// Activation time (s).
    pub activates_s: i64,
    /// Expiry time (s).
    pub expires_s: i64,
    secret: [u8; 32],
    gcm: Arc<GcmKey>,
    /// The CBC key of legacy v2 tokens, expanded on first use.
    cbc: Arc<OnceLock<CbcKey>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("site_id", &self.site_id)
            .field("keyset_id", &self.keyset_id)
            .field("activates_s", &self.activates_s)
            .field("expires_s", &self.expires_s)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.site_id == other.site_id
            && self.keyset_id == other.keyset_id
            && self.created_s == other.created_s
            && self.activates_s == other.activates_s
            && self.expires_s == other.expires_s
            && self.secret == other.secret
    }
}

impl Key {
    /// A key from its fields; the AES key is expanded here.
    pub fn new(
        id: u32,
        site_id: i32,
        keyset_id: Option<i32>,
        created_s: i64,
        activates_s: i64,
        expires_s: i64,
        secret: [u8; 32],
    ) -> Self {
        Self {
            id,
            site_id,
            keyset_id,
            created_s,
            activates_s,
            expires_s,
            gcm: Arc::new(GcmKey::new(&secret)),
            cbc: Arc::new(OnceLock::new()),
            secret,
        }
    }

    /// The 32-byte secret.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The expanded AES-256-GCM key.
    pub fn gcm(&self) -> &GcmKey {
        &self.gcm
    }

    /// The expanded AES-256-CBC key (legacy v2 tokens), expanded on first use.
    pub fn cbc(&self) -> &CbcKey {
        self.cbc.get_or_init(|| CbcKey::new(&self.secret))
    }

    /// Whether the key is active at `now_s`: `activates ≤ now < expires`.
    pub fn is_active(&self, now_s: i64) -> bool {
        self.activates_s <= now_s && now_s < self.expires_s
    }
}

/// A keyset: a group of keys owned by one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    /// Keyset id.
    pub id: i32,
    /// Owning site.
    pub site_id: i32,
    /// Human name.
    pub name: String,
    /// Sites allowed to decrypt; `None` = no list (readable by every ID reader).
    pub allowed_sites: Option<Vec<i32>>,
    /// Creation time (s).
    pub created_s: i64,
    /// Disabled keysets are given to nobody.
    pub enabled: bool,
    /// The site's default keyset (the one its tokens are encrypted with).
    pub is_default: bool,
}

/// Looks keys up by id: what token decoders need.
pub trait KeyLookup {
    /// The key with this id, if known.
    fn key(&self, id: u32) -> Option<&Key>;
}

/// Hashes small integer ids with one multiplication. Key ids are dense integers and the map is
/// built once and only read, so SipHash's flooding resistance buys nothing here, while its cost
/// is paid twice on every token decode.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u32(n as u32);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Every key an operator or SDK holds, indexed by id and by keyset.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_id: IdMap<u32, Key>,
    /// Key ids of each keyset, sorted by activation time.
    by_keyset: IdMap<i32, Vec<u32>>,
    latest_expires_s: Option<i64>,
}

impl KeyLookup for KeyRing {
    fn key(&self, id: u32) -> Option<&Key> {
        KeyRing::key(self, id)
    }
}

impl KeyRing {
    /// A ring of `keys`. A later key with an id already seen replaces the earlier one.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Self {
        let mut by_id = IdMap::default();
        for key in keys {
            by_id.insert(key.id, key);
        }
        let mut by_keyset: IdMap<i32, Vec<u32>> = IdMap::default();
        for key in by_id.values() {
            if let Some(keyset) = key.keyset_id {
                by_keyset.entry(keyset).or_default().push(key.id);
            }
        }
        for ids in by_keyset.values_mut() {
            ids.sort_by_key(|id| (by_id[id].activates_s, *id));
        }
        let latest_expires_s = by_id.values().map(|k| k.expires_s).max();
        Self {
            by_id,
            by_keyset,
            latest_expires_s,
        }
    }

    /// The key with this id.
    pub fn key(&self, id: u32) -> Option<&Key> {
        self.by_id.get(&id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_id.values()
    }

    /// The keys of a keyset, oldest activation first.
    pub fn keyset_keys(&self, keyset_id: i32) -> impl Iterator<Item = &Key> {
        self.by_keyset
            .get(&keyset_id)
            .into_iter()
            .flatten()
            .map(|id| &self.by_id[id])
    }

    /// The active key of a keyset at `now_s`: the most recently activated key with
    /// `activates ≤ now` that has not expired, walking back past expired ones.
    pub fn active_key(&self, keyset_id: i32, now_s: i64) -> Option<&Key> {
        let ids = self.by_keyset.get(&keyset_id)?;
        let upper = ids.partition_point(|id| self.by_id[id].activates_s <= now_s);
        ids[..upper]
            .iter()
            .rev()
            .map(|id| &self.by_id[id])
            .find(|k| k.is_active(now_s))
    }

    /// The latest expiry of any key (s); SDKs call their keys stale once it has passed.
    pub fn latest_expires_s(&self) -> Option<i64> {
        self.latest_expires_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, keyset: i32, activates: i64, expires: i64) -> Key {
        Key::new(id, 1, Some(keyset), 0, activates, expires, [id as u8; 32])
    }

    #[test]
    fn active_key_is_the_newest_activated_unexpired_one() {
        let ring = KeyRing::new([
            key(1, 7, 100, 1000),
            key(2, 7, 200, 300),
            key(3, 7, 500, 2000),
            key(4, 8, 0, 10_000),
        ]);
        assert_eq!(ring.active_key(7, 50), None);
        assert_eq!(ring.active_key(7, 150).map(|k| k.id), Some(1));
        assert_eq!(ring.active_key(7, 250).map(|k| k.id), Some(2));
        // Key 2 expired at 300: walk back to key 1.
        assert_eq!(ring.active_key(7, 350).map(|k| k.id), Some(1));
        assert_eq!(ring.active_key(7, 500).map(|k| k.id), Some(3));
        assert_eq!(ring.active_key(7, 2000), None);
        assert_eq!(ring.active_key(9, 500), None);
        assert_eq!(ring.key(4).map(|k| k.keyset_id), Some(Some(8)));
        assert_eq!(ring.latest_expires_s(), Some(10_000));
        assert_eq!(
            ring.keyset_keys(7).map(|k| k.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
