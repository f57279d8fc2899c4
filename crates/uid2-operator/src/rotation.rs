//! Key and salt rotation, run by `uid2 keys rotate` / `uid2 salts rotate` or by the scheduler in
//! `uid2 serve` (one operator of a fleet per period: the rotation's write carries a [`Claim`],
//! so the period is used up only by a rotation that happened).
//!
//! Keys: every enabled keyset gets a new key that activates `activation_lead` from now, so every
//! operator and every SDK that refreshes its keys in the meantime holds it before the first token
//! is encrypted with it. An old key stays in the store (decryption finds keys by id) until every
//! token it can have protected has expired: it stops being used when its successor activates, so
//! it is removed `retention` after that. The new keys' ids are allocated by the store inside the
//! write, so concurrent rotations never collide.
//!
//! Salts: a fraction of the buckets get a new salt; the old one is kept as the previous salt (v3
//! identity map `p`), `last_updated` becomes now (so `/v2/identity/buckets` reports exactly those),
//! and previous salts older than 90 days are dropped. The write is a compare-and-swap on the salts
//! generation it read: a rotation that raced another one reads the new buckets and tries again,
//! so neither rotation's buckets are lost.

use std::collections::HashMap;
use std::time::Duration;

use uid2_proto::CryptoRng;
use uid2_proto::encoding::base64_encode;
use uid2_proto::salt::{BucketSecret, DAY_MS};
use uid2_store::{Claim, Conditional, KeyChange, KeyRecord, Precondition, Store, StoreError};

use crate::admin::new_key;
use crate::config::OperatorConfig;

/// The store setting holding the longest token lifetime any operator sharing the store issues.
pub const TOKEN_LIFETIME_SETTING: &str = "max_token_lifetime_s";
/// Kept beyond the longest token lifetime before a superseded key is removed.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(86_400);
/// Salt rotations that lost a race are retried this many times in all.
const SALT_ATTEMPTS: usize = 8;

/// How long the longest-lived token `config` issues or accepts can outlive the key protecting
/// it: advertising, refresh and sharing tokens, and the lifetimes bidders and sharers accept,
/// plus the clock skew tolerated.
pub fn longest_token_lifetime(config: &OperatorConfig) -> Duration {
    [
        config.identity_token_expires_after,
        config.refresh_token_expires_after,
        config.sharing_token_expiry,
        config.max_bidstream_lifetime.unwrap_or_default(),
        config.max_sharing_lifetime.unwrap_or_default(),
    ]
    .into_iter()
    .max()
    .unwrap_or_default()
        + config.allow_clock_skew
}

/// Records in the store that tokens issued under `config` may live this long, so that every
/// rotation (the CLI's included, which does not know the operators' settings) keeps keys long
/// enough. The setting only ever rises: tokens issued before a lifetime was shortened still live.
pub async fn record_token_lifetime(
    store: &dyn Store,
    config: &OperatorConfig,
) -> Result<Duration, StoreError> {
    let recorded = store
        .raise_setting(
            TOKEN_LIFETIME_SETTING,
            longest_token_lifetime(config).as_secs() as i64,
        )
        .await?;
    Ok(Duration::from_secs(recorded.max(0) as u64))
}

/// How long superseded keys must be kept: the longest token lifetime operators recorded (at
/// least that of the default settings), plus [`RETENTION_MARGIN`].
pub async fn key_retention(store: &dyn Store) -> Result<Duration, StoreError> {
    let recorded = store
        .meta(TOKEN_LIFETIME_SETTING)
        .await?
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    Ok(recorded.max(longest_token_lifetime(&OperatorConfig::default())) + RETENTION_MARGIN)
}

/// How long before use a rotated key is published unless told otherwise: an hour.
pub const DEFAULT_ACTIVATION_LEAD: Duration = Duration::from_secs(3_600);

/// The longest activation lead or retention a rotation honours, in seconds: a century, which is
/// "forever" for keys. Longer ones (`u64::MAX` meant as "keep them all") are taken as this
/// rather than overflowing key times.
pub const MAX_POLICY_SECS: u64 = 100 * 365 * 86_400;

fn policy_secs(d: Duration) -> i64 {
    d.as_secs().min(MAX_POLICY_SECS) as i64
}

/// How keys rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotationPolicy {
    /// How long before use a new key is published.
    pub activation_lead: Duration,
    /// How long a superseded key is kept: the longest lifetime of anything it protects (see
    /// [`key_retention`]).
    pub retention: Duration,
}

impl Default for KeyRotationPolicy {
    /// An hour's lead; the retention the default token lifetimes need.
    fn default() -> Self {
        Self {
            activation_lead: DEFAULT_ACTIVATION_LEAD,
            retention: longest_token_lifetime(&OperatorConfig::default()) + RETENTION_MARGIN,
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

/// Whether `claim` (if any) can still be won: checked before reading what a rotation rewrites,
/// which may be large. The write itself checks again.
async fn claim_is_due(store: &dyn Store, claim: Option<&Claim>) -> Result<bool, StoreError> {
    match claim {
        Some(c) => Ok(c.is_due(store.last_claim_ms(&c.job).await?)),
        None => Ok(true),
    }
}

/// Adds a key to every enabled keyset and removes keys superseded for longer than the retention,
/// in one transaction; with `claim`, only if the claim is won (`None` otherwise).
pub async fn rotate_keys(
    store: &dyn Store,
    policy: KeyRotationPolicy,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
    claim: Option<Claim>,
) -> Result<Option<KeyRotation>, StoreError> {
    if !claim_is_due(store, claim.as_ref()).await? {
        return Ok(None);
    }
    let now_s = now_ms / 1000;
    let keysets = store.keysets().await?;
    let keys = store.keys().await?;
    let activates = now_s + policy_secs(policy.activation_lead);
    let add = keysets
        .iter()
        .filter(|k| k.enabled)
        .map(|keyset| new_key(keyset.id, activates, now_s, rng))
        .collect();
    // Computed from a read outside the write: safe, because new keys always activate after
    // every key that can be superseded, so a concurrent rotation never changes this answer.
    let removed = superseded_keys(&keys, now_s, policy_secs(policy.retention));
    let change = KeyChange {
        add,
        remove: removed.clone(),
        site_keyset: None,
    };
    let pre = Precondition {
        generation: None,
        claim,
    };
    Ok(match store.change_keys(&change, &pre).await? {
        Conditional::Written(created) => Some(KeyRotation { created, removed }),
        Conditional::Unclaimed | Conditional::Stale => None,
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

/// The share of salt buckets a salt rotation gives new salts: in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Deserialize)]
#[serde(try_from = "f64")]
pub struct SaltFraction(f64);

/// A salt rotation fraction outside (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("a salt rotation fraction must be more than 0 and at most 1, not {0}")]
pub struct InvalidSaltFraction(pub f64);

impl SaltFraction {
    /// What the scheduler rotates unless told otherwise: 5 % of the buckets.
    pub const DEFAULT: Self = Self(0.05);

    /// `fraction`, if it is in (0, 1] (NaN is not).
    pub fn new(fraction: f64) -> Result<Self, InvalidSaltFraction> {
        if fraction > 0.0 && fraction <= 1.0 {
            Ok(Self(fraction))
        } else {
            Err(InvalidSaltFraction(fraction))
        }
    }

    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SaltFraction {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<f64> for SaltFraction {
    type Error = InvalidSaltFraction;

    fn try_from(fraction: f64) -> Result<Self, Self::Error> {
        Self::new(fraction)
    }
}

/// Parses a number, as flags and environment variables give it.
impl std::str::FromStr for SaltFraction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fraction: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        Self::new(fraction).map_err(|e| e.to_string())
    }
}

/// Which buckets a salt rotation may give a new salt.
///
/// `/v3/identity/map` tells advertisers, per identity, the time until which its raw UID stays
/// as it is (its bucket's `refresh_from`); a bucket rotated before then breaks that promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltPick {
    /// Only buckets whose `refresh_from` has come (as the official rotation): the scheduler's
    /// choice, and the CLI's unless told otherwise. Fewer buckets than asked for may be due.
    Due,
    /// Due buckets first, then any others: a rotation that cannot wait (a leaked salt file).
    Any,
}

/// Rotates `fraction` of the salt buckets (at least one, of those `pick` allows); returns the
/// rotated bucket ids (none if no bucket may be rotated yet), or `None` if `claim` was not won.
pub async fn rotate_salts(
    store: &dyn Store,
    fraction: SaltFraction,
    pick: SaltPick,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
    claim: Option<Claim>,
) -> Result<Option<Vec<u32>>, StoreError> {
    for _ in 0..SALT_ATTEMPTS {
        if !claim_is_due(store, claim.as_ref()).await? {
            return Ok(None);
        }
        let Some(read) = store.salts().await? else {
            return Err(StoreError::Rejected("no salts to rotate".into()));
        };
        let mut state = read.value;
        let rotated = rotate_buckets(&mut state.buckets, fraction, pick, now_ms, rng);
        if rotated.is_empty() {
            // Nothing due: nothing to write, and nothing for operators to reload; a scheduled
            // pass records its claim alone.
            return match &claim {
                None => Ok(Some(rotated)),
                Some(claim) => Ok(store.claim_unchanged_salts(claim).await?.then_some(rotated)),
            };
        }
        let pre = Precondition {
            generation: Some(read.generation),
            claim: claim.clone(),
        };
        match store.replace_salt_buckets(&state, &pre).await? {
            Conditional::Written(()) => return Ok(Some(rotated)),
            Conditional::Unclaimed => return Ok(None),
            // Another rotation (or bootstrap) wrote first: start again from what it wrote.
            Conditional::Stale => continue,
        }
    }
    Err(StoreError::Conflict(format!(
        "the salts changed {SALT_ATTEMPTS} times while rotating; try again"
    )))
}

/// Whether `bucket`'s promised `refresh_from` has come at `now_ms`.
fn is_due(bucket: &uid2_proto::salt::SaltBucket, now_ms: i64) -> bool {
    bucket.refresh_from_ms.is_none_or(|at| at <= now_ms)
}

/// Gives `fraction` of `buckets` (at least one, of those `pick` allows) a new salt; returns
/// their ids, sorted.
fn rotate_buckets(
    buckets: &mut [uid2_proto::salt::SaltBucket],
    fraction: SaltFraction,
    pick: SaltPick,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<u32> {
    let n = buckets.len();
    let wanted = ((n as f64 * fraction.get()).ceil() as usize).clamp(1, n.max(1));
    let (due, not_due): (Vec<usize>, Vec<usize>) =
        (0..n).partition(|&index| is_due(&buckets[index], now_ms));
    let mut order = shuffled_prefix(due, wanted, rng);
    if pick == SaltPick::Any && order.len() < wanted {
        let rest = wanted - order.len();
        order.extend(shuffled_prefix(not_due, rest, rng));
    }
    let mut rotated = Vec::with_capacity(order.len());
    for &index in &order {
        let bucket = &mut buckets[index];
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
    for bucket in buckets.iter_mut() {
        if bucket.previous.is_some()
            && !uid2_proto::salt::previous_uid_still_reported(bucket.last_updated_ms, now_ms)
        {
            bucket.previous = None;
        }
    }
    rotated.sort_unstable();
    rotated
}

/// `count` of `items` (all, if fewer) picked uniformly at random, by a partial Fisher-Yates
/// shuffle.
fn shuffled_prefix(
    mut items: Vec<usize>,
    count: usize,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<usize> {
    let n = items.len();
    let count = count.min(n);
    for i in 0..count {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(count);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(id: u32, refresh_from_ms: Option<i64>) -> uid2_proto::salt::SaltBucket {
        uid2_proto::salt::SaltBucket {
            id,
            last_updated_ms: 0,
            refresh_from_ms,
            current: BucketSecret::Salt(format!("salt-{id}")),
            previous: None,
        }
    }

    #[test]
    fn a_rotation_keeps_the_refresh_from_it_promised_unless_told_otherwise() {
        const NOW: i64 = 100 * DAY_MS;
        // Ids 0..10 came due (or never had a refresh_from); 10..40 are promised until later.
        let fresh = || -> Vec<_> {
            (0..40)
                .map(|id| match id {
                    0..5 => bucket(id, Some(NOW - DAY_MS)),
                    5..10 => bucket(id, None),
                    _ => bucket(id, Some(NOW + DAY_MS)),
                })
                .collect()
        };
        let half = SaltFraction::new(0.5).unwrap();
        let mut rng = rand::rng();

        let mut buckets = fresh();
        let rotated = rotate_buckets(&mut buckets, half, SaltPick::Due, NOW, &mut rng);
        assert_eq!(
            rotated,
            (0..10).collect::<Vec<_>>(),
            "every due bucket, no other"
        );
        for b in &buckets[10..] {
            assert_eq!(b.current, BucketSecret::Salt(format!("salt-{}", b.id)));
        }
        assert!(
            buckets[..10]
                .iter()
                .all(|b| b.refresh_from_ms == Some(NOW + 30 * DAY_MS))
        );
        // Now none is due: a second rotation changes nothing.
        assert!(rotate_buckets(&mut buckets, half, SaltPick::Due, NOW, &mut rng).is_empty());

        // Told it cannot wait: the due ones first, then others up to the fraction.
        let mut buckets = fresh();
        let rotated = rotate_buckets(&mut buckets, half, SaltPick::Any, NOW, &mut rng);
        assert_eq!(rotated.len(), 20);
        assert!((0..10).all(|id| rotated.contains(&id)));
        // Fewer wanted than due: a uniform pick among the due ones only.
        let mut buckets = fresh();
        let tenth = SaltFraction::new(0.1).unwrap();
        let rotated = rotate_buckets(&mut buckets, tenth, SaltPick::Any, NOW, &mut rng);
        assert_eq!(rotated.len(), 4);
        assert!(rotated.iter().all(|&id| id < 10), "{rotated:?}");
    }

    #[test]
    fn a_salt_fraction_is_more_than_zero_and_at_most_one() {
        for ok in ["1", "0.05", " 0.5 ", "1e-6"] {
            assert!(ok.parse::<SaltFraction>().is_ok(), "{ok}");
        }
        for refused in ["0", "-0.1", "1.01", "NaN", "inf", "", "five"] {
            assert!(refused.parse::<SaltFraction>().is_err(), "{refused}");
        }
        assert!(SaltFraction::new(f64::NAN).is_err());
        let from_file: Result<SaltFraction, _> = serde_json::from_str("2.0");
        assert!(from_file.is_err());
    }

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

    #[test]
    fn retention_covers_the_longest_configured_token_lifetime() {
        let default = OperatorConfig::default();
        // Refresh tokens (30 days) are the longest-lived by default.
        assert_eq!(
            longest_token_lifetime(&default),
            default.refresh_token_expires_after + default.allow_clock_skew
        );
        let long = OperatorConfig {
            refresh_token_expires_after: Duration::from_secs(400 * 86_400),
            ..OperatorConfig::default()
        };
        assert_eq!(
            longest_token_lifetime(&long),
            Duration::from_secs(400 * 86_400) + long.allow_clock_skew
        );
        let bidders = OperatorConfig {
            max_bidstream_lifetime: Some(Duration::from_secs(90 * 86_400)),
            ..OperatorConfig::default()
        };
        assert_eq!(
            longest_token_lifetime(&bidders),
            Duration::from_secs(90 * 86_400) + bidders.allow_clock_skew
        );
    }
}
