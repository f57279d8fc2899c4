//! One keyed index of opt-out times, in three levels: a base split into 256 [`Shard`]s by the
//! key's first byte; a run of recent entries; and a tiny run of the opt-outs this operator recorded
//! since the last sync pass.
//!
//! Each level costs its size to rewrite, so each is rewritten where that is affordable: a
//! request handler adds its opt-out to the tiny local run; a sync pass (off the async runtime)
//! adds what it read, and the local run, to the recent run; a compaction in the background
//! folds the recent run into the base one group of shards at a time, publishing each step, so
//! it needs extra memory for one group, never a second copy of the whole base. An entry may be
//! in several levels at once (until a level is emptied), which lookups tolerate: the earliest
//! time wins.

use std::ops::Range;
use std::sync::Arc;

use super::shard::Shard;
use super::sorted_run::{Entry, Probe, SortedRun};

/// Shards of the base: one per value of a key's first byte.
pub(super) const SHARDS: usize = 256;

/// A keyed index.
#[derive(Debug, Clone)]
pub(super) struct Keyed {
    /// Inline, in one allocation: finding a key's shard touches no page but this one.
    shards: Arc<[Shard]>,
    recent: SortedRun,
    local: SortedRun,
}

impl Default for Keyed {
    fn default() -> Self {
        Self::from_unsorted(Vec::new())
    }
}

/// The range of the sorted `entries` whose keys start with `shard`.
fn shard_range(entries: &[Entry], shard: usize) -> Range<usize> {
    let start = entries.partition_point(|e| usize::from(e.key[0]) < shard);
    let end = entries.partition_point(|e| usize::from(e.key[0]) <= shard);
    start..end
}

impl Keyed {
    /// Builds an index of `entries` (any order, duplicates allowed) with an empty recent run.
    pub(super) fn from_unsorted(entries: Vec<Entry>) -> Self {
        // Counted first so that each shard is allocated once, at its final size.
        let mut counts = [0usize; SHARDS];
        for e in &entries {
            counts[usize::from(e.key[0])] += 1;
        }
        let mut by_shard: Vec<Vec<Entry>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for e in entries {
            by_shard[usize::from(e.key[0])].push(e);
        }
        Self {
            shards: by_shard.into_iter().map(Shard::build).collect(),
            recent: SortedRun::default(),
            local: SortedRun::default(),
        }
    }

    /// The earliest time stored for the key of `probe`.
    pub(super) fn get(&self, probe: Probe) -> Option<u32> {
        let base = self.shards[(probe.head >> 56) as usize].get(probe);
        // Lookups run back to back overlap their memory accesses; every instruction on this
        // path costs some of that overlap, so the common case (nothing recent) returns early.
        if self.recent.is_empty() && self.local.is_empty() {
            return base;
        }
        let earliest = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest(
            base,
            earliest(self.recent.get(probe), self.local.get(probe)),
        )
    }

    /// A new index with the sorted `batch` added to the local run (a copy of the local run).
    pub(super) fn with_local(&self, batch: &SortedRun) -> Self {
        Self {
            local: self.local.merged_with_sorted(batch.entries()),
            ..self.clone()
        }
    }

    /// A new index with the sorted `batch` and the local run added to the recent run, and the
    /// local run emptied (a copy of the recent run).
    pub(super) fn with_recent(&self, batch: &SortedRun) -> Self {
        if batch.is_empty() && self.local.is_empty() {
            return self.clone();
        }
        let added = batch.merged_with_sorted(self.local.entries());
        Self {
            shards: self.shards.clone(),
            recent: self.recent.merged_with_sorted(added.entries()),
            local: SortedRun::default(),
        }
    }

    /// `merged` ([`with_recent`](Self::with_recent) of `base`) carried over onto `self`, which
    /// `base` has become meanwhile: `self`'s shards; `merged`'s recent run less what a compaction
    /// took out of `base`'s; and the local entries `self` gained since `base` (the ones `base`
    /// had are in `merged`'s recent run).
    pub(super) fn rebased(&self, base: &Keyed, merged: &Keyed) -> Self {
        let recent = if self.recent.is_same(&base.recent) {
            merged.recent.clone()
        } else {
            merged.recent.without(&base.recent.without(&self.recent))
        };
        let local = if self.local.is_same(&base.local) {
            SortedRun::default()
        } else {
            self.local.without(&base.local)
        };
        Self {
            shards: self.shards.clone(),
            recent,
            local,
        }
    }

    /// The local run.
    pub(super) fn local(&self) -> &SortedRun {
        &self.local
    }

    /// The recent run.
    pub(super) fn recent(&self) -> &SortedRun {
        &self.recent
    }

    /// The shards of `shards` with `from`'s entries merged in (the expensive, linear part of a
    /// compaction; run it off the async runtime).
    pub(super) fn merge_shards(
        &self,
        from: &SortedRun,
        shards: Range<usize>,
    ) -> Vec<(usize, Shard)> {
        shards
            .map(|s| {
                let slice = &from.entries()[shard_range(from.entries(), s)];
                let merged = if slice.is_empty() {
                    self.shards[s].clone()
                } else {
                    self.shards[s].merged_with_sorted(slice)
                };
                (s, merged)
            })
            .collect()
    }

    /// A new index with `replaced` shards.
    pub(super) fn with_shards(&self, replaced: &[(usize, Shard)]) -> Self {
        let mut shards: Vec<Shard> = self.shards.to_vec();
        for (s, run) in replaced {
            shards[*s] = run.clone();
        }
        Self {
            shards: shards.into(),
            ..self.clone()
        }
    }

    /// A new index whose recent run no longer holds `compacted` (now in the shards).
    pub(super) fn without_recent(&self, compacted: &SortedRun) -> Self {
        Self {
            recent: self.recent.without(compacted),
            ..self.clone()
        }
    }

    /// Entries held (a key in several levels counts several times).
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum::<usize>() + self.recent.len() + self.local.len()
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.heap_bytes() + std::mem::size_of::<Shard>())
            .sum::<usize>()
            + self.recent.heap_bytes()
            + self.local.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optout::sorted_run::KEY_LEN;

    fn entry(i: u32, secs: u32) -> Entry {
        let h = uid2_proto::cipher::sha256(&[&i.to_be_bytes()]);
        Entry {
            key: h[..KEY_LEN].try_into().unwrap(),
            secs,
        }
    }

    #[test]
    fn compaction_in_steps_keeps_every_entry_visible() {
        let index = Keyed::from_unsorted((0..5_000).map(|i| entry(i, 100)).collect());
        let batch = SortedRun::build((4_000..9_000).map(|i| entry(i, 50)).collect());
        let mut index = index.with_recent(&batch);
        let check = |index: &Keyed| {
            for i in (0..9_000).step_by(7) {
                let expected = if i < 4_000 { 100 } else { 50 };
                assert_eq!(
                    index.get(Probe::of(&entry(i, 0).key)),
                    Some(expected),
                    "{i}"
                );
            }
            assert_eq!(index.get(Probe::of(&entry(10_000, 0).key)), None);
        };
        check(&index);
        // Appends while the compaction runs: one by this operator, then a sync pass folding it
        // (and another one) into the recent run.
        let compacting = index.recent().clone();
        index = index.with_local(&SortedRun::build(vec![entry(20_000, 7)]));
        assert_eq!(index.get(Probe::of(&entry(20_000, 0).key)), Some(7));
        assert_eq!(index.local().len(), 1);
        index = index.with_recent(&SortedRun::build(vec![entry(20_001, 8)]));
        assert_eq!(index.local().len(), 0);
        for group in (0..SHARDS).step_by(64) {
            let merged = index.merge_shards(&compacting, group..group + 64);
            index = index.with_shards(&merged);
            check(&index);
        }
        index = index.without_recent(&compacting);
        check(&index);
        assert_eq!(index.recent().len(), 2, "only the late appends stay recent");
        assert_eq!(index.get(Probe::of(&entry(20_000, 0).key)), Some(7));
        assert_eq!(index.get(Probe::of(&entry(20_001, 0).key)), Some(8));
        assert_eq!(index.len(), 9_002);
    }

    #[test]
    fn a_merge_rebased_onto_a_compaction_and_new_local_entries_keeps_both() {
        let run = |range: std::ops::Range<u32>, secs| {
            SortedRun::build(range.map(|i| entry(i, secs)).collect())
        };
        // The base: shards, a recent run about to be compacted, one local entry.
        let base = Keyed::from_unsorted((0..1_000).map(|i| entry(i, 100)).collect())
            .with_recent(&run(1_000..2_000, 90))
            .with_local(&run(5_000..5_001, 80));
        // A sync pass merges a batch from `base`, off the lock...
        let merged = base.with_recent(&run(3_000..3_100, 70));
        // ...while a compaction moves the recent run into the shards and a logout adds locally.
        let compacting = base.recent().clone();
        let mut now = base.with_shards(&base.merge_shards(&compacting, 0..SHARDS));
        now = now.without_recent(&compacting);
        now = now.with_local(&run(6_000..6_001, 60));

        let rebased = now.rebased(&base, &merged);
        for (range, secs) in [
            (0..1_000, 100),
            (1_000..2_000, 90),
            (3_000..3_100, 70),
            (5_000..5_001, 80),
            (6_000..6_001, 60),
        ] {
            for i in range {
                assert_eq!(rebased.get(Probe::of(&entry(i, 0).key)), Some(secs), "{i}");
            }
        }
        assert_eq!(rebased.get(Probe::of(&entry(7_000, 0).key)), None);
        // The compacted entries are not kept twice; only the logout since `base` stays local.
        assert_eq!(rebased.recent().len(), 101);
        assert_eq!(rebased.local().len(), 1);
        // With nothing in between, the merge is taken as it is.
        let plain = base.rebased(&base, &merged);
        assert_eq!(plain.recent().len(), merged.recent().len());
        assert!(plain.local().is_empty());
    }
}
