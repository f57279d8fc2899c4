//! An immutable, sorted run of opt-out entries with a directory on the leading key bits.
//!
//! Keys are uniformly random (prefixes of SHA-256 outputs), so a directory indexed by the top
//! `k` bits, with `k` chosen for about four entries per slot, finds any key with one directory
//! read and a scan of one or two cache lines. An entry is 16 bytes (12 key bytes, 4 bytes of
//! seconds) and the directory adds about one byte per entry.
//!
//! Runs hold the entries an index gained since its last compaction, and the batches that
//! bring them: they are small and merged often, so they are arrays that merge in one linear
//! pass. The large base of an index is in shards (the `shard` module) instead, which
//! cost one memory access a lookup where a run costs two (directory, then entries).

use std::sync::Arc;

/// Bytes of a key kept: 96 bits make a false match among 100 M entries a 1-in-10^20 event
/// (the base of an index keeps 72 of them: see the `shard` module).
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

/// A key being looked up, as two big-endian numbers (bytes 0..8 and 8..12), passed in
/// registers.
///
/// Not a byte array: a key copied byte-wise to the stack and read back in other widths (as a
/// lookup reads it) makes each read wait until the copy retires, which is after the previous
/// lookup's read of main memory; back-to-back lookups then stop overlapping (measured: three
/// times slower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Key bytes 0..8.
    pub head: u64,
    /// Key bytes 8..12.
    pub tail: u32,
}

impl Probe {
    /// The probe for `key`.
    #[inline]
    pub fn of(key: &[u8; KEY_LEN]) -> Self {
        Self {
            head: u64::from_be_bytes(key[..8].try_into().expect("KEY_LEN ≥ 8")),
            tail: u32::from_be_bytes(key[8..].try_into().expect("KEY_LEN = 12")),
        }
    }

    /// The key probed for.
    pub fn key(self) -> [u8; KEY_LEN] {
        let mut key = [0; KEY_LEN];
        key[..8].copy_from_slice(&self.head.to_be_bytes());
        key[8..].copy_from_slice(&self.tail.to_be_bytes());
        key
    }
}

/// A sorted run.
#[derive(Debug, Clone, Default)]
pub struct SortedRun {
    entries: Arc<[Entry]>,
    /// `directory[p]` = index of the first entry whose directory bits are ≥ p; length 2^bits + 1.
    directory: Arc<[u32]>,
    bits: u32,
}

/// The leading `bits` bits of a key whose first 8 bytes are `head`.
fn directory_slot(head: u64, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    (head >> (64 - bits)) as usize
}

impl SortedRun {
    /// Sorts `entries` into a run; of a key given more than once, the earliest time is kept
    /// (the first opt-out is what "opted out since" means), as in every merge.
    pub fn build(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable();
        // Sorted by (key, secs): the first of each key is the earliest.
        entries.dedup_by(|later, first| later.key == first.key);
        Self::from_sorted(entries)
    }

    fn from_sorted(entries: Vec<Entry>) -> Self {
        let n = entries.len();
        // About four entries per directory slot, at most 2^28 slots.
        let bits = if n < 8 { 0 } else { ((n / 4).ilog2()).min(28) };
        let slots = 1usize << bits;
        let mut directory = Vec::with_capacity(slots + 1);
        let mut i = 0usize;
        for p in 0..slots {
            while i < n && directory_slot(Probe::of(&entries[i].key).head, bits) < p {
                i += 1;
            }
            directory.push(i as u32);
        }
        directory.push(n as u32);
        Self {
            entries: entries.into(),
            directory: directory.into(),
            bits,
        }
    }

    /// Merges `self` with the sorted, de-duplicated `more` into a new run (linear), keeping the
    /// earliest time of a key in both.
    pub fn merged_with_sorted(&self, more: &[Entry]) -> Self {
        let mut out = merge_ascending(
            self.entries.iter().copied(),
            more.iter().copied(),
            self.entries.len() + more.len(),
        );
        // Equal keys come out earliest first.
        out.dedup_by(|later, first| later.key == first.key);
        Self::from_sorted(out)
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
        Self::from_sorted(kept)
    }

    /// The time stored for the key of `probe`.
    pub fn get(&self, probe: Probe) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let p = directory_slot(probe.head, self.bits);
        let (lo, hi) = (self.directory[p] as usize, self.directory[p + 1] as usize);
        let slot = &self.entries[lo..hi];
        if slot.len() <= 16 {
            slot.iter()
                .find(|e| Probe::of(&e.key) == probe)
                .map(|e| e.secs)
        } else {
            slot.binary_search_by(|e| {
                let k = Probe::of(&e.key);
                (k.head, k.tail).cmp(&(probe.head, probe.tail))
            })
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

/// The items of two ascending sequences as one ascending vector (of equal items, `a`'s first):
/// the linear step of every merge of runs and shards.
pub(super) fn merge_ascending<T: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    capacity: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(capacity);
    let (mut a, mut b) = (a.peekable(), b.peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (_, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
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
                assert_eq!(run.get(Probe::of(&key(i))), Some(i), "n={n} i={i}");
            }
            for i in n..n + 100 {
                assert_eq!(run.get(Probe::of(&key(i))), None);
            }
        }
        assert_eq!(std::mem::size_of::<Entry>(), 16);
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
        assert_eq!(run.get(Probe::of(&key(1))), Some(20));
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
        assert_eq!(rest.get(Probe::of(&key(600))), None);
        assert_eq!(rest.get(Probe::of(&key(100))), Some(100));
        assert_eq!(merged.get(Probe::of(&key(600))), Some(10));
        assert_eq!(merged.get(Probe::of(&key(100))), Some(100));
        assert_eq!(merged.get(Probe::of(&key(1200))), Some(200));
        let mut all: Vec<Entry> = base.entries().to_vec();
        all.extend(more);
        assert_eq!(merged.entries(), SortedRun::build(all).entries());
    }
}
