//! An immutable, sorted run of opt-out entries with a directory on the leading key bits.
//!
//! Keys are uniformly random (prefixes of SHA-256 outputs), so a directory indexed by the top
//! `k` bits, with `k` chosen for about four entries per slot, finds any key with one directory
//! read and a scan of one or two cache lines. An entry is 16 bytes (12 key bytes, 4 bytes of
//! seconds) and the directory adds about one byte per entry. A run that holds one shard of a
//! larger index (every key starting with the same byte) indexes the bits after that byte.
//!
//! A run is a small value (two shared slices and two numbers), cheap to clone, so an index
//! keeps its runs inline in one array: a lookup then touches only the directory and the
//! entries, the two memory accesses it cannot avoid (in a virtual machine, each access to a
//! page not in the TLB costs as much again, so every pointer followed counts).

use std::sync::Arc;

/// Bytes of a key kept: 96 bits make a false match among 100 M entries a 1-in-10^20 event.
pub const KEY_LEN: usize = 12;

/// One entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C)]
pub struct Entry {
    /// Key prefix.
    pub key: [u8; KEY_LEN],
    /// Opt-out time, Unix seconds.
    pub secs: u32,
}

/// A sorted run.
#[derive(Debug, Clone, Default)]
pub struct SortedRun {
    entries: Arc<[Entry]>,
    /// `directory[p]` = index of the first entry whose directory bits are ≥ p; length 2^bits + 1.
    directory: Arc<[u32]>,
    /// Leading key bits every entry shares (0, or 8 in a shard), skipped by the directory.
    skip: u32,
    bits: u32,
}

/// The `bits` key bits after the first `skip`.
fn directory_slot(key: &[u8; KEY_LEN], skip: u32, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let head = u64::from_be_bytes(key[..8].try_into().expect("KEY_LEN ≥ 8"));
    ((head << skip) >> (64 - bits)) as usize
}

impl SortedRun {
    /// Sorts `entries` into a run; of a key given more than once, the earliest time is kept
    /// (the first opt-out is what "opted out since" means), as in every merge.
    pub fn build(entries: Vec<Entry>) -> Self {
        Self::build_skipping(entries, 0)
    }

    /// Like [`build`](Self::build), for entries that all share their first `skip` key bits.
    pub fn build_skipping(mut entries: Vec<Entry>, skip: u32) -> Self {
        entries.sort_unstable();
        // Sorted by (key, secs): the first of each key is the earliest.
        entries.dedup_by(|later, first| later.key == first.key);
        Self::from_sorted(entries, skip)
    }

    fn from_sorted(entries: Vec<Entry>, skip: u32) -> Self {
        let n = entries.len();
        // About four entries per directory slot, at most 2^28 slots.
        let bits = if n < 8 { 0 } else { ((n / 4).ilog2()).min(28) };
        let slots = 1usize << bits;
        let mut directory = Vec::with_capacity(slots + 1);
        let mut i = 0usize;
        for p in 0..slots {
            while i < n && directory_slot(&entries[i].key, skip, bits) < p {
                i += 1;
            }
            directory.push(i as u32);
        }
        directory.push(n as u32);
        Self {
            entries: entries.into(),
            directory: directory.into(),
            skip,
            bits,
        }
    }

    /// Merges `self` with the sorted, de-duplicated `more` into a new run (linear), keeping the
    /// earliest time of a key in both.
    pub fn merged_with_sorted(&self, more: &[Entry]) -> Self {
        let mut out: Vec<Entry> = Vec::with_capacity(self.entries.len() + more.len());
        let (mut a, mut b) = (self.entries.iter().peekable(), more.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => *a.next().expect("peeked"),
                (_, Some(_)) => *b.next().expect("peeked"),
                (Some(_), None) => *a.next().expect("peeked"),
                (None, None) => break,
            };
            // Equal keys come out earliest first.
            if out.last().is_none_or(|last| last.key != next.key) {
                out.push(next);
            }
        }
        Self::from_sorted(out, self.skip)
    }

    /// Merges `self` with unsorted `more` into a new run.
    pub fn merged_with(&self, more: Vec<Entry>) -> Self {
        let more = Self::build(more);
        self.merged_with_sorted(more.entries())
    }

    /// Whether `other` is this very run (a clone of it), not only equal to it.
    pub fn is_same(&self, other: &SortedRun) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
    }

    /// The entries of `self` that `other` does not hold (linear: both are sorted).
    pub fn without(&self, other: &SortedRun) -> Self {
        let mut rest = other.entries.iter().peekable();
        let kept = self
            .entries
            .iter()
            .filter(|e| {
                while rest.next_if(|o| o < e).is_some() {}
                rest.peek() != Some(e)
            })
            .copied()
            .collect();
        Self::from_sorted(kept, self.skip)
    }

    /// The time stored for `key`.
    pub fn get(&self, key: &[u8; KEY_LEN]) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let p = directory_slot(key, self.skip, self.bits);
        let (lo, hi) = (self.directory[p] as usize, self.directory[p + 1] as usize);
        let slot = &self.entries[lo..hi];
        if slot.len() <= 16 {
            slot.iter().find(|e| &e.key == key).map(|e| e.secs)
        } else {
            slot.binary_search_by(|e| e.key.cmp(key))
                .ok()
                .map(|i| slot[i].secs)
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the run is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.directory.len() * 4
    }

    /// Every entry, sorted.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> [u8; KEY_LEN] {
        // Spread keys over the whole space, as hashes are.
        let h = uid2_proto::cipher::sha256(&[&i.to_be_bytes()]);
        h[..KEY_LEN].try_into().unwrap()
    }

    #[test]
    fn finds_every_key_and_no_other() {
        for n in [0u32, 1, 7, 8, 100, 10_000] {
            let run = SortedRun::build(
                (0..n)
                    .map(|i| Entry {
                        key: key(i),
                        secs: i,
                    })
                    .collect(),
            );
            assert_eq!(run.len(), n as usize);
            for i in 0..n {
                assert_eq!(run.get(&key(i)), Some(i), "n={n} i={i}");
            }
            for i in n..n + 100 {
                assert_eq!(run.get(&key(i)), None);
            }
        }
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn a_shard_indexes_the_bits_after_its_shared_byte() {
        let entries: Vec<Entry> = (0..20_000u32)
            .map(|i| Entry {
                key: key(i),
                secs: i,
            })
            .filter(|e| e.key[0] == 0x5a)
            .collect();
        let n = entries.len();
        let shard = SortedRun::build_skipping(entries.clone(), 8);
        assert!(shard.bits > 0);
        // The directory spreads the shard's entries (indexing the shared byte would put them
        // all in one slot).
        let widest = shard
            .directory
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap();
        assert!(widest < 16, "{widest} entries in one slot of {n}");
        for e in &entries {
            assert_eq!(shard.get(&e.key), Some(e.secs));
        }
    }

    #[test]
    fn duplicates_keep_the_earliest_and_merges_agree_with_builds() {
        let run = SortedRun::build(vec![
            Entry {
                key: key(1),
                secs: 50,
            },
            Entry {
                key: key(1),
                secs: 20,
            },
        ]);
        assert_eq!(run.get(&key(1)), Some(20));
        let base = SortedRun::build(
            (0..1000)
                .map(|i| Entry {
                    key: key(i),
                    secs: 100,
                })
                .collect(),
        );
        let more: Vec<Entry> = (500..1500)
            .map(|i| Entry {
                key: key(i),
                secs: if i < 1000 { 10 } else { 200 },
            })
            .collect();
        let merged = base.merged_with(more.clone());
        assert_eq!(merged.len(), 1500);
        // Removing what was merged in leaves the base's own entries that `more` did not beat.
        let more_run = SortedRun::build(more.clone());
        let rest = merged.without(&more_run);
        assert_eq!(rest.len(), 500);
        assert_eq!(rest.get(&key(600)), None);
        assert_eq!(rest.get(&key(100)), Some(100));
        assert_eq!(merged.get(&key(600)), Some(10));
        assert_eq!(merged.get(&key(100)), Some(100));
        assert_eq!(merged.get(&key(1200)), Some(200));
        let mut all: Vec<Entry> = base.entries().to_vec();
        all.extend(more);
        assert_eq!(merged.entries(), SortedRun::build(all).entries());
    }
}
