//! One shard of an index's base: every entry whose key starts with the same byte, in a table
//! of cache-line buckets that the key's next bits address directly.
//!
//! A sorted array needs a directory to find a key, and in a large index the directory and the
//! entries are two reads of main memory, one after the other. Here a key's home bucket is
//! computed from the key itself (keys are uniformly random: prefixes of SHA-256 outputs), so a
//! lookup reads one 64-byte bucket, and rarely the next one too.
//!
//! The table keeps its entries in key order: entry `i` goes to the first free slot at or after
//! its home bucket's first slot, never before the slot of entry `i - 1`. A bucket that
//! overflows spills into the next one, so each bucket's occupied slots are a prefix of it, a
//! lookup scans forward from its home bucket until it meets a larger key or a bucket with room
//! to spare, and reading the buckets in order gives the entries in key order (which is how a
//! compaction merges new entries in). Sized for 3.5 entries per 5-slot bucket, about one home
//! bucket in seven gets more than five keys and spills: 18.3 bytes per entry, against 17 for a
//! sorted array and its directory.
//!
//! A bucket keeps 64 bits of each key (the 8 bytes after the shard's byte), so the base tells
//! keys apart by 72 bits where the recent runs use 96: a key that did not opt out is taken for
//! one that did with odds of N / 2^72 per lookup (1 in 5×10^13 with N = 100 M opt-outs), and
//! two opt-outs equal in those bits share the earlier time. Both err towards treating someone
//! as opted out, and first-level hashes are salted, so nobody can aim for a collision.

use std::sync::Arc;

use super::sorted_run::{Entry, KEY_LEN, Probe, merge_ascending};

/// Slots in a bucket.
const SLOTS: usize = 5;

/// Entries per bucket the table is sized for, as a fraction: 7 / 2 = 3.5.
const FILL: (usize, usize) = (7, 2);

/// One cache line of entries.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Key bits 8..72 of each entry, as numbers (comparing them compares the keys), ascending.
    keys: [u64; SLOTS],
    /// Opt-out time of each entry, Unix seconds.
    secs: [u32; SLOTS],
    /// Occupied slots (a prefix).
    len: u32,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        keys: [0; SLOTS],
        secs: [0; SLOTS],
        len: 0,
    };
}

/// A key as a shard stores it: the 64 bits after the shard's byte.
fn stored_key(key: &[u8; KEY_LEN]) -> u64 {
    u64::from_be_bytes(key[1..9].try_into().expect("KEY_LEN ≥ 9"))
}

/// A shard of the base.
#[derive(Debug, Clone, Default)]
pub(super) struct Shard {
    buckets: Arc<[Bucket]>,
    /// Buckets that are some key's home (the ones after them only take spills).
    homes: u64,
    len: usize,
}

impl Shard {
    /// A shard of `entries`, which all share their first key byte (any order, duplicates
    /// allowed: of a key given more than once the earliest time is kept).
    pub(super) fn build(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable();
        let mut stored: Vec<(u64, u32)> = entries
            .iter()
            .map(|e| (stored_key(&e.key), e.secs))
            .collect();
        drop(entries);
        keep_earliest(&mut stored);
        Self::from_sorted(&stored)
    }

    /// `self` with the sorted, de-duplicated `more` (keys starting with this shard's byte)
    /// merged in; a key in both keeps its earliest time.
    pub(super) fn merged_with_sorted(&self, more: &[Entry]) -> Self {
        let mut out = merge_ascending(
            self.iter(),
            more.iter().map(|e| (stored_key(&e.key), e.secs)),
            self.len + more.len(),
        );
        keep_earliest(&mut out);
        Self::from_sorted(&out)
    }

    /// Lays out `stored` (ascending, no key twice).
    fn from_sorted(stored: &[(u64, u32)]) -> Self {
        let homes = stored.len().div_ceil(FILL.0) * FILL.1;
        let mut buckets = vec![Bucket::EMPTY; homes];
        let mut next_slot = 0usize;
        for &(key, secs) in stored {
            let slot = next_slot.max(home(key, homes as u64) * SLOTS);
            let b = slot / SLOTS;
            if b == buckets.len() {
                buckets.push(Bucket::EMPTY); // a spill past the last home bucket
            }
            let bucket = &mut buckets[b];
            bucket.keys[slot % SLOTS] = key;
            bucket.secs[slot % SLOTS] = secs;
            bucket.len += 1;
            next_slot = slot + 1;
        }
        Self {
            buckets: buckets.into(),
            homes: homes as u64,
            len: stored.len(),
        }
    }

    /// The time stored for the key of `probe` (whose first byte is this shard's).
    pub(super) fn get(&self, probe: Probe) -> Option<u32> {
        let key = (probe.head << 8) | u64::from(probe.tail >> 24);
        let mut b = home(key, self.homes);
        loop {
            let bucket = self.buckets.get(b)?;
            let len = bucket.len as usize;
            // An early exit, not a branch-free count of smaller keys: the branches go the
            // way the predictor expects often enough, and while they are speculated the next
            // lookups' reads of memory start (with a count, measured, each waits for the last).
            for i in 0..len {
                if bucket.keys[i] >= key {
                    return (bucket.keys[i] == key).then_some(bucket.secs[i]);
                }
            }
            if len < SLOTS {
                return None; // the key would be here: nothing spilled past this bucket
            }
            b += 1;
        }
    }

    /// Every entry as (stored key, seconds), ascending.
    fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| (0..b.len as usize).map(|i| (b.keys[i], b.secs[i])))
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }
}

/// The home bucket of `key` among `homes`: monotonic in the key, so the table stays sorted.
fn home(key: u64, homes: u64) -> usize {
    (((key >> 32) * homes) >> 32) as usize
}

/// De-duplicates the ascending `stored`, keeping the earliest time of a key.
fn keep_earliest(stored: &mut Vec<(u64, u32)>) {
    stored.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 = first.1.min(later.1);
        }
        same
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that all start with `byte`, spread as hashes are.
    fn keys_in_shard(byte: u8, n: usize) -> Vec<[u8; KEY_LEN]> {
        (0u32..)
            .map(|i| {
                let h = uid2_proto::cipher::sha256(&[&i.to_be_bytes()]);
                let mut key: [u8; KEY_LEN] = h[..KEY_LEN].try_into().unwrap();
                key[0] = byte;
                key
            })
            .take(n)
            .collect()
    }

    fn entries(keys: &[[u8; KEY_LEN]], secs: impl Fn(usize) -> u32) -> Vec<Entry> {
        keys.iter()
            .enumerate()
            .map(|(i, &key)| Entry { key, secs: secs(i) })
            .collect()
    }

    #[test]
    fn finds_every_key_and_no_other() {
        for n in [0, 1, 4, 5, 6, 100, 50_000] {
            let keys = keys_in_shard(0x5a, n + 100);
            let shard = Shard::build(entries(&keys[..n], |i| i as u32));
            assert_eq!(shard.len(), n);
            for (i, key) in keys[..n].iter().enumerate() {
                assert_eq!(shard.get(Probe::of(key)), Some(i as u32), "n={n} i={i}");
            }
            for key in &keys[n..] {
                assert_eq!(shard.get(Probe::of(key)), None);
            }
            // Sized for 3.5 entries a bucket; spills past the last home bucket are few.
            assert!(shard.buckets.len() <= (n.div_ceil(7) * 2) + 2, "n={n}");
        }
    }

    #[test]
    fn keys_crowded_into_one_bucket_spill_in_order() {
        // Not hashes: the keys share their first 9 bytes, so they all have one home bucket
        // and every lookup but the first few scans the spills.
        let key = |i: u32, fill: u8| {
            let mut key = [fill; KEY_LEN];
            key[0] = 7;
            key[5..9].copy_from_slice(&i.to_be_bytes());
            key
        };
        for fill in [0x00, 0x80, 0xff] {
            let keys: Vec<[u8; KEY_LEN]> = (0..200).map(|i| key(i * 2, fill)).collect();
            let mut shuffled = entries(&keys, |i| i as u32);
            shuffled.reverse();
            let shard = Shard::build(shuffled);
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(shard.get(Probe::of(k)), Some(i as u32), "fill={fill} i={i}");
                assert_eq!(shard.get(Probe::of(&key(i as u32 * 2 + 1, fill))), None);
            }
            let stored: Vec<u64> = shard.iter().map(|(k, _)| k).collect();
            assert!(stored.windows(2).all(|w| w[0] < w[1]), "fill={fill}");
        }
    }

    #[test]
    fn merges_keep_the_earliest_time_and_agree_with_builds() {
        let keys = keys_in_shard(0x01, 3_000);
        let base = Shard::build(entries(&keys[..2_000], |_| 100));
        // Sorted and de-duplicated, as a compaction passes them.
        let mut more = entries(&keys[1_000..], |i| if i < 1_000 { 10 } else { 200 });
        more.sort_unstable();
        let merged = base.merged_with_sorted(&more);
        assert_eq!(merged.len(), 3_000);
        assert_eq!(merged.get(Probe::of(&keys[500])), Some(100));
        assert_eq!(merged.get(Probe::of(&keys[1_500])), Some(10));
        assert_eq!(merged.get(Probe::of(&keys[2_500])), Some(200));
        let mut all = entries(&keys[..2_000], |_| 100);
        all.extend(more);
        let built = Shard::build(all);
        assert!(merged.iter().eq(built.iter()));
        // The earliest of a key given twice in one build wins too, whichever comes first.
        let twice = Shard::build(vec![
            Entry {
                key: keys[0],
                secs: 50,
            },
            Entry {
                key: keys[0],
                secs: 20,
            },
        ]);
        assert_eq!((twice.len(), twice.get(Probe::of(&keys[0]))), (1, Some(20)));
    }

    #[test]
    fn agrees_with_a_map_over_random_builds_and_merges() {
        use rand::rngs::StdRng;
        use rand::{Rng, RngExt, SeedableRng};
        use std::collections::BTreeMap;

        let mut rng = StdRng::seed_from_u64(6);
        // Keys from a small space of stored keys (so merges hit existing ones), some crowded
        // into few buckets, each with random tail bytes the shard does not keep.
        let key = |rng: &mut StdRng| {
            let mut key = [0u8; KEY_LEN];
            rng.fill_bytes(&mut key);
            key[0] = 0x33;
            let stored = if rng.random_bool(0.3) {
                rng.random_range(0..64u64) // crowded at the bottom of the key space
            } else {
                rng.random_range(0..4_000u64) << 50
            };
            key[1..9].copy_from_slice(&stored.to_be_bytes());
            key
        };
        for _ in 0..20 {
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let add = |model: &mut BTreeMap<u64, u32>, e: &Entry| {
                let secs = model.entry(stored_key(&e.key)).or_insert(e.secs);
                *secs = (*secs).min(e.secs);
            };
            let first: Vec<Entry> = (0..rng.random_range(0..3_000))
                .map(|_| Entry {
                    key: key(&mut rng),
                    secs: rng.random_range(0..1_000),
                })
                .collect();
            first.iter().for_each(|e| add(&mut model, e));
            let mut shard = Shard::build(first);
            for _ in 0..3 {
                let mut more: Vec<Entry> = (0..rng.random_range(0..1_000))
                    .map(|_| Entry {
                        key: key(&mut rng),
                        secs: rng.random_range(0..1_000),
                    })
                    .collect();
                more.sort_unstable();
                more.dedup_by(|later, first| later.key == first.key);
                more.iter().for_each(|e| add(&mut model, e));
                shard = shard.merged_with_sorted(&more);
            }
            assert_eq!(shard.len(), model.len());
            assert!(shard.iter().eq(model.iter().map(|(&k, &s)| (k, s))));
            for _ in 0..2_000 {
                let probe = key(&mut rng);
                assert_eq!(
                    shard.get(Probe::of(&probe)),
                    model.get(&stored_key(&probe)).copied()
                );
            }
        }
    }
}
