//! An immutable, sorted run of opt-out entries with a directory on the leading key bits.
//!
//! Keys are uniformly random (prefixes of SHA-256 outputs), so a directory indexed by the top
//! `k` bits, with `k` chosen for about four entries per slot, finds any key with one directory
//! read and a scan of one or two cache lines. An entry is 16 bytes (12 key bytes, 4 bytes of
//! seconds) and the directory adds about one byte per entry.

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

/// Which time to keep when a key appears more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first opt-out (what "opted out since" means).
    Earliest,
}

/// A sorted run.
#[derive(Debug, Default)]
pub struct SortedRun {
    entries: Vec<Entry>,
    /// `directory[p]` = index of the first entry whose top `bits` bits are ≥ p; length 2^bits + 1.
    directory: Vec<u32>,
    bits: u32,
}

fn top_bits(key: &[u8; KEY_LEN], bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let head = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    (head >> (32 - bits)) as usize
}

impl SortedRun {
    /// Sorts and de-duplicates `entries` into a run.
    pub fn build(mut entries: Vec<Entry>, keep: Keep) -> Self {
        entries.sort_unstable();
        match keep {
            // Sorted by (key, secs): the first of each key is the earliest.
            Keep::Earliest => entries.dedup_by(|later, first| later.key == first.key),
        }
        Self::from_sorted(entries)
    }

    fn from_sorted(mut entries: Vec<Entry>) -> Self {
        entries.shrink_to_fit();
        let n = entries.len();
        // About four entries per directory slot, at most 2^28 slots.
        let bits = if n < 8 { 0 } else { ((n / 4).ilog2()).min(28) };
        let slots = 1usize << bits;
        let mut directory = Vec::with_capacity(slots + 1);
        let mut i = 0usize;
        for p in 0..slots {
            while i < n && top_bits(&entries[i].key, bits) < p {
                i += 1;
            }
            directory.push(i as u32);
        }
        directory.push(n as u32);
        Self {
            entries,
            directory,
            bits,
        }
    }

    /// Merges `self` with unsorted `more` into a new run.
    pub fn merged_with(&self, mut more: Vec<Entry>, keep: Keep) -> Self {
        more.sort_unstable();
        let mut out: Vec<Entry> = Vec::with_capacity(self.entries.len() + more.len());
        let (mut a, mut b) = (self.entries.iter().peekable(), more.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if **x <= *y => *a.next().expect("peeked"),
                (Some(_), Some(_)) | (None, Some(_)) => b.next().expect("peeked"),
                (Some(_), None) => *a.next().expect("peeked"),
                (None, None) => break,
            };
            match (keep, out.last()) {
                (Keep::Earliest, Some(last)) if last.key == next.key => {}
                _ => out.push(next),
            }
        }
        Self::from_sorted(out)
    }

    /// The time stored for `key`.
    pub fn get(&self, key: &[u8; KEY_LEN]) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let p = top_bits(key, self.bits);
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
        self.entries.capacity() * std::mem::size_of::<Entry>() + self.directory.capacity() * 4
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
                Keep::Earliest,
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
    fn duplicates_keep_the_earliest_and_merges_agree_with_builds() {
        let run = SortedRun::build(
            vec![
                Entry {
                    key: key(1),
                    secs: 50,
                },
                Entry {
                    key: key(1),
                    secs: 20,
                },
            ],
            Keep::Earliest,
        );
        assert_eq!(run.get(&key(1)), Some(20));
        let base = SortedRun::build(
            (0..1000)
                .map(|i| Entry {
                    key: key(i),
                    secs: 100,
                })
                .collect(),
            Keep::Earliest,
        );
        let more: Vec<Entry> = (500..1500)
            .map(|i| Entry {
                key: key(i),
                secs: if i < 1000 { 10 } else { 200 },
            })
            .collect();
        let merged = base.merged_with(more.clone(), Keep::Earliest);
        assert_eq!(merged.len(), 1500);
        assert_eq!(merged.get(&key(600)), Some(10));
        assert_eq!(merged.get(&key(100)), Some(100));
        assert_eq!(merged.get(&key(1200)), Some(200));
        let mut all: Vec<Entry> = base.entries().to_vec();
        all.extend(more);
        assert_eq!(
            merged.entries(),
            SortedRun::build(all, Keep::Earliest).entries()
        );
    }
}
