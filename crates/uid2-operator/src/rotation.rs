//! Key and salt rotation, run by `uid2 keys rotate` / `uid2 salts rotate` or by the scheduler in
//! `uid2 serve` (one operator of a fleet per period, through [`Store::try_claim`]).
//!
//! Keys: every enabled keyset gets a new key that activates `activation_lead` from now, so every
//! operator and every SDK that refreshes its keys in the meantime holds it before the first token
//! is encrypted with it. An old key stays in the store (decryption finds keys by id) until every
//! token it can have protected has expired: it stops being used when its successor activates, so
//! it is removed `retention` after that.
//!
//! Salts: a fraction of the buckets get a new salt; the old one is kept as the previous salt (v3
//! identity map `p`), `last_updated` becomes now (so `/v2/identity/buckets` reports exactly those),
//! and previous salts older than 90 days are dropped.

use std::collections::HashMap;
use std::time::Duration;

use uid2_proto::CryptoRng;
use uid2_proto::encoding::base64_encode;
use uid2_proto::salt::{BucketSecret, DAY_MS, PREVIOUS_UID_DAYS};
use uid2_store::{KeyRecord, Store, StoreError};

use crate::admin::make_key;

/// How keys rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotationPolicy {
    /// How long before use a new key is published.
    pub activation_lead: Duration,
    /// How long a superseded key is kept: the longest lifetime of anything it protects.
    pub retention: Duration,
}

impl Default for KeyRotationPolicy {
    fn default() -> Self {
        Self {
            activation_lead: Duration::from_secs(3_600),
            // Refresh tokens and sharing tokens live 30 days.
            retention: Duration::from_secs(31 * 86_400),
        }
    }
}

/// What a key rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRotation {
    /// New key ids.
    pub created: Vec<u32>,
    /// Removed key ids.
    pub removed: Vec<u32>,
}

/// Adds a key to every enabled keyset and removes keys superseded for longer than the retention.
pub async fn rotate_keys(
    store: &dyn Store,
    policy: KeyRotationPolicy,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<KeyRotation, StoreError> {
    let now_s = now_ms / 1000;
    let keysets = store.keysets().await?;
    let keys = store.keys().await?;
    let first_id = keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
    let activates = now_s + policy.activation_lead.as_secs() as i64;
    let created: Vec<KeyRecord> = (first_id..)
        .zip(keysets.iter().filter(|k| k.enabled))
        .map(|(id, keyset)| make_key(id, keyset.id, activates, now_s, rng))
        .collect();
    store.insert_keys(&[], &created).await?;

    let removed = superseded_keys(&keys, now_s, policy.retention.as_secs() as i64);
    if !removed.is_empty() {
        store.delete_keys(&removed).await?;
    }
    Ok(KeyRotation {
        created: created.iter().map(|k| k.id).collect(),
        removed,
    })
}

/// Keys whose successor in the same keyset activated more than `retention_s` ago.
fn superseded_keys(keys: &[KeyRecord], now_s: i64, retention_s: i64) -> Vec<u32> {
    let mut by_keyset: HashMap<i32, Vec<&KeyRecord>> = HashMap::new();
    for k in keys {
        by_keyset.entry(k.keyset_id).or_default().push(k);
    }
    let mut out = Vec::new();
    for list in by_keyset.values_mut() {
        list.sort_by_key(|k| (k.activates_s, k.id));
        for pair in list.windows(2) {
            let (old, successor) = (pair[0], pair[1]);
            if successor.activates_s <= now_s && now_s - successor.activates_s > retention_s {
                out.push(old.id);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Rotates `fraction` of the salt buckets (at least one); returns the rotated bucket ids.
pub async fn rotate_salts(
    store: &dyn Store,
    fraction: f64,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Vec<u32>, StoreError> {
    let Some(mut state) = store.salts().await? else {
        return Err(StoreError::Corrupt("no salts to rotate".into()));
    };
    let n = state.buckets.len();
    let count = ((n as f64 * fraction.clamp(0.0, 1.0)).ceil() as usize).clamp(1, n.max(1));
    // A partial Fisher-Yates shuffle picks `count` distinct buckets uniformly.
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..count {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut rotated = Vec::with_capacity(count);
    for &index in &order[..count] {
        let bucket = &mut state.buckets[index];
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        let old = std::mem::replace(
            &mut bucket.current,
            BucketSecret::Salt(base64_encode(&salt)),
        );
        bucket.previous = Some(old);
        bucket.last_updated_ms = now_ms;
        bucket.refresh_from_ms = Some(now_ms + 30 * DAY_MS);
        rotated.push(bucket.id);
    }
    for bucket in &mut state.buckets {
        if bucket.previous.is_some()
            && (now_ms - bucket.last_updated_ms) / DAY_MS >= PREVIOUS_UID_DAYS
        {
            bucket.previous = None;
        }
    }
    store.put_salt_buckets(&state).await?;
    rotated.sort_unstable();
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, keyset: i32, activates: i64) -> KeyRecord {
        KeyRecord {
            id,
            keyset_id: keyset,
            secret: [0; 32],
            created_s: 0,
            activates_s: activates,
            expires_s: activates + 1_000_000,
        }
    }

    #[test]
    fn only_keys_superseded_long_enough_are_removed() {
        let keys = [
            key(1, -1, 0),
            key(2, -1, 100),
            key(3, -1, 500),
            key(4, 7, 0),
            key(5, 7, 2_000),
        ];
        // At 700 with retention 300: key 1 (superseded at 100) goes; key 2 (superseded at 500) stays;
        // key 4's successor is not active yet, so it stays.
        assert_eq!(superseded_keys(&keys, 700, 300), vec![1]);
        assert_eq!(superseded_keys(&keys, 2_400, 300), vec![1, 2, 4]);
        assert!(superseded_keys(&keys, 0, 0).is_empty());
    }
}
