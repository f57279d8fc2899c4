//! The in-memory opt-out index: first-level hash → time of opt-out, and raw UID → time for
//! `/v2/optout/status`.
//!
//! Each of the two is a keyed index (the `keyed` module): a sharded base, a run of recent entries and a tiny run
//! of this operator's own opt-outs since the last sync pass. A request handler only copies the
//! tiny run ([`OptOutIndex::with_local`]); a sync pass folds what it read into the recent run
//! ([`OptOutIndex::with_batch`], off the async runtime); a background compaction (see
//! [`Compaction`]) folds the recent run into the base, one group of shards at a time. Values
//! are immutable, so a request reads whatever index its snapshot holds without any lock.

mod keyed;
mod shard;
pub mod sorted_run;

use std::ops::Range;

use keyed::{Keyed, SHARDS};
use shard::Shard;
use sorted_run::{Entry, KEY_LEN, Probe, SortedRun};
use uid2_proto::cipher::sha256;
use uid2_proto::salt::FirstLevelHash;
use uid2_store::OptOutRecord;

/// Recent entries past which a compaction is due: appending copies the recent run, which at
/// this size takes well under a millisecond, and a compaction rewrites the base once per this
/// many opt-outs.
pub const RECENT_CAP: usize = 65_536;
/// A compaction rewrites the base in this many steps (and needs this fraction of its memory).
pub const COMPACTION_STEPS: usize = 16;

/// The opt-out index of a snapshot.
#[derive(Debug, Default, Clone)]
pub struct OptOutIndex {
    by_first_level_hash: Keyed,
    by_raw_uid: Keyed,
    last_seq: i64,
}

/// The key of a first-level hash: its leading bytes, borrowed (a lookup reads them where
/// they are; see [`Probe`]).
fn flh_key(flh: &[u8; 32]) -> &[u8; KEY_LEN] {
    flh[..KEY_LEN].try_into().expect("KEY_LEN ≤ 32")
}

/// Bytes of a raw UID that are uniformly distributed in every kind: a SHA-256 output in v2
/// (bytes 0..32) and v3 (1..33), the IV digest and the ciphertext in v4 (4..32). Taking them as
/// the key saves hashing the raw UID on every lookup.
const RAW_UID_KEY_BYTES: std::ops::Range<usize> = 16..16 + KEY_LEN;

fn raw_uid_key(raw_uid: &[u8]) -> [u8; KEY_LEN] {
    raw_uid_probe(raw_uid).key()
}

fn raw_uid_probe(raw_uid: &[u8]) -> Probe {
    match raw_uid.get(RAW_UID_KEY_BYTES) {
        Some(bytes) => Probe::of(bytes.try_into().expect("a KEY_LEN range")),
        // Not a raw UID (too short): hashed, so it still gets a well-spread key.
        None => Probe::of(
            sha256(&[raw_uid])[..KEY_LEN]
                .try_into()
                .expect("KEY_LEN ≤ 32"),
        ),
    }
}

fn secs(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, i64::from(u32::MAX)) as u32
}

/// Collects the 16-byte entries of pages of records (never the records themselves, which are
/// several times larger), for an index at start-up or a batch to append.
#[derive(Debug, Default)]
pub struct OptOutIndexBuilder {
    by_flh: Vec<Entry>,
    by_uid: Vec<Entry>,
    last_seq: i64,
}

impl OptOutIndexBuilder {
    /// Adds a page of records.
    pub fn add(&mut self, records: &[OptOutRecord]) {
        for r in records {
            let secs = secs(r.opted_out_at_ms);
            self.by_flh.push(Entry {
                key: *flh_key(&r.first_level_hash),
                secs,
            });
            if let Some(id) = &r.advertising_id {
                self.by_uid.push(Entry {
                    key: raw_uid_key(id),
                    secs,
                });
            }
            self.last_seq = self.last_seq.max(r.seq);
        }
    }

    /// Records added.
    pub fn len(&self) -> usize {
        self.by_flh.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.by_flh.is_empty()
    }

    /// The index.
    pub fn finish(self) -> OptOutIndex {
        OptOutIndex {
            by_first_level_hash: Keyed::from_unsorted(self.by_flh),
            by_raw_uid: Keyed::from_unsorted(self.by_uid),
            last_seq: self.last_seq,
        }
    }

    /// The records as one sorted batch to append with [`OptOutIndex::with_batch`].
    pub fn finish_batch(self) -> OptOutBatch {
        OptOutBatch {
            by_flh: SortedRun::build(self.by_flh),
            by_uid: SortedRun::build(self.by_uid),
            last_seq: self.last_seq,
        }
    }
}

/// Opt-outs sorted for appending (sorting is the costly part; do it before taking any lock).
#[derive(Debug, Default)]
pub struct OptOutBatch {
    by_flh: SortedRun,
    by_uid: SortedRun,
    last_seq: i64,
}

impl OptOutBatch {
    /// A batch of `records`.
    pub fn new(records: &[OptOutRecord]) -> Self {
        let mut builder = OptOutIndexBuilder::default();
        builder.add(records);
        builder.finish_batch()
    }

    /// Entries (distinct first-level hashes).
    pub fn len(&self) -> usize {
        self.by_flh.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.by_flh.is_empty()
    }

    /// The highest sequence number in the batch.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }
}

/// A compaction in progress: the recent runs being folded into the base.
#[derive(Debug, Clone)]
pub struct Compaction {
    by_flh: SortedRun,
    by_uid: SortedRun,
}

/// Shards rewritten by one step of a compaction.
#[derive(Debug)]
pub struct CompactedShards {
    by_flh: Vec<(usize, Shard)>,
    by_uid: Vec<(usize, Shard)>,
}

fn step_shards(step: usize) -> Range<usize> {
    let per_step = SHARDS.div_ceil(COMPACTION_STEPS);
    (step * per_step).min(SHARDS)..((step + 1) * per_step).min(SHARDS)
}

impl Compaction {
    /// Step `step` (of [`COMPACTION_STEPS`]): merges this compaction's entries into one group of
    /// `index`'s shards. Linear in the group's size: run it off the async runtime.
    pub fn merge_step(&self, index: &OptOutIndex, step: usize) -> CompactedShards {
        let shards = step_shards(step);
        CompactedShards {
            by_flh: index
                .by_first_level_hash
                .merge_shards(&self.by_flh, shards.clone()),
            by_uid: index.by_raw_uid.merge_shards(&self.by_uid, shards),
        }
    }
}

impl OptOutIndex {
    /// Builds an index of `records` in one pass.
    pub fn build(records: &[OptOutRecord]) -> Self {
        let mut builder = OptOutIndexBuilder::default();
        builder.add(records);
        builder.finish()
    }

    /// A new index with `records` read from the store appended, advancing the sync cursor;
    /// records at or below [`last_seq`](Self::last_seq) (already read) are skipped.
    pub fn appended(&self, records: &[OptOutRecord]) -> Self {
        let fresh: Vec<OptOutRecord> = records
            .iter()
            .filter(|r| r.seq > self.last_seq)
            .cloned()
            .collect();
        self.with_batch(&OptOutBatch::new(&fresh))
    }

    /// A new index with a batch read from the store appended, and this operator's own recent
    /// opt-outs with it, advancing the sync cursor to the batch's last sequence number. Copies
    /// the recent runs: run it off the async runtime.
    pub fn with_batch(&self, batch: &OptOutBatch) -> Self {
        Self {
            by_first_level_hash: self.by_first_level_hash.with_recent(&batch.by_flh),
            by_raw_uid: self.by_raw_uid.with_recent(&batch.by_uid),
            last_seq: self.last_seq.max(batch.last_seq),
        }
    }

    /// `merged`, an index [`with_batch`](Self::with_batch) made from `base`, carried over onto
    /// `self`, the index `base` has become meanwhile: a sync pass merges without holding the
    /// snapshot lock, so logouts may have added local opt-outs and a compaction may have moved
    /// recent entries into the base. Keeps both. Cheap (a few clones) unless a compaction
    /// finished in between: then linear in the recent run, which a compaction keeps small.
    pub fn rebased(&self, base: &OptOutIndex, merged: &OptOutIndex) -> Self {
        Self {
            by_first_level_hash: self
                .by_first_level_hash
                .rebased(&base.by_first_level_hash, &merged.by_first_level_hash),
            by_raw_uid: self
                .by_raw_uid
                .rebased(&base.by_raw_uid, &merged.by_raw_uid),
            last_seq: self.last_seq.max(merged.last_seq),
        }
    }

    /// A new index with opt-outs this operator just wrote applied at once, without moving the sync
    /// cursor: other operators may have written lower sequence numbers this one has not read yet,
    /// and the next sync must still fetch them. (It fetches these again too; re-applying is harmless.)
    ///
    /// Copies only the local runs, which the next sync pass empties: cheap enough for a request.
    pub fn with_local(&self, records: &[OptOutRecord]) -> Self {
        let batch = OptOutBatch::new(records);
        Self {
            by_first_level_hash: self.by_first_level_hash.with_local(&batch.by_flh),
            by_raw_uid: self.by_raw_uid.with_local(&batch.by_uid),
            last_seq: self.last_seq,
        }
    }

    /// A compaction of the recent entries, if enough have accumulated.
    pub fn compaction(&self) -> Option<Compaction> {
        let (flh, uid) = (self.by_first_level_hash.recent(), self.by_raw_uid.recent());
        (flh.len().max(uid.len()) >= RECENT_CAP).then(|| Compaction {
            by_flh: flh.clone(),
            by_uid: uid.clone(),
        })
    }

    /// A new index with the shards of one compaction step.
    pub fn with_compacted_shards(&self, step: &CompactedShards) -> Self {
        Self {
            by_first_level_hash: self.by_first_level_hash.with_shards(&step.by_flh),
            by_raw_uid: self.by_raw_uid.with_shards(&step.by_uid),
            last_seq: self.last_seq,
        }
    }

    /// A new index without the compacted entries in its recent runs (after every step).
    pub fn compacted(&self, compaction: &Compaction) -> Self {
        Self {
            by_first_level_hash: self.by_first_level_hash.without_recent(&compaction.by_flh),
            by_raw_uid: self.by_raw_uid.without_recent(&compaction.by_uid),
            last_seq: self.last_seq,
        }
    }

    /// Entries in the recent runs (both indexes), waiting for a compaction.
    pub fn recent_len(&self) -> usize {
        self.by_first_level_hash.recent().len() + self.by_raw_uid.recent().len()
    }

    /// Entries in the local runs (both indexes), waiting for a sync pass.
    pub fn local_len(&self) -> usize {
        self.by_first_level_hash.local().len() + self.by_raw_uid.local().len()
    }

    /// When the identity opted out (ms, second precision), if it did.
    #[inline]
    pub fn opted_out_at_ms(&self, flh: &FirstLevelHash) -> Option<i64> {
        self.by_first_level_hash
            .get(Probe::of(flh_key(&flh.0)))
            .map(|s| i64::from(s) * 1000)
    }

    /// When the raw UID opted out (ms, second precision), for `/v2/optout/status`.
    pub fn raw_uid_opted_out_at_ms(&self, raw_uid: &[u8]) -> Option<i64> {
        self.by_raw_uid
            .get(raw_uid_probe(raw_uid))
            .map(|s| i64::from(s) * 1000)
    }

    /// The highest sequence number applied.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Distinct identities opted out (approximately: recent entries may repeat base ones).
    pub fn len(&self) -> usize {
        self.by_first_level_hash.len()
    }

    /// Whether nobody opted out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by both indexes.
    pub fn heap_bytes(&self) -> usize {
        self.by_first_level_hash.heap_bytes() + self.by_raw_uid.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, i: u8, at_ms: i64) -> OptOutRecord {
        OptOutRecord {
            seq,
            first_level_hash: sha256(&[&[i]]),
            advertising_id: Some(vec![i; 32]),
            opted_out_at_ms: at_ms,
        }
    }

    fn numbered(seq: i64) -> OptOutRecord {
        let flh = sha256(&[&seq.to_be_bytes()]);
        OptOutRecord {
            seq,
            first_level_hash: flh,
            advertising_id: Some(sha256(&[&flh]).to_vec()),
            opted_out_at_ms: seq * 1000,
        }
    }

    #[test]
    fn appends_are_visible_and_idempotent() {
        let index = OptOutIndex::build(&[record(1, 1, 5_000)]);
        let flh = |i: u8| FirstLevelHash(sha256(&[&[i]]));
        assert_eq!(index.opted_out_at_ms(&flh(1)), Some(5_000));
        assert_eq!(index.opted_out_at_ms(&flh(2)), None);

        let next = index.appended(&[record(2, 2, 7_999), record(3, 1, 1_000)]);
        assert_eq!(next.opted_out_at_ms(&flh(2)), Some(7_000));
        // The earliest opt-out time wins.
        assert_eq!(next.opted_out_at_ms(&flh(1)), Some(1_000));
        assert_eq!(next.raw_uid_opted_out_at_ms(&[2; 32]), Some(7_000));
        assert_eq!(next.last_seq(), 3);
        // Re-applying what was applied changes nothing; the old value is untouched.
        let again = next.appended(&[record(2, 2, 1)]);
        assert_eq!(again.opted_out_at_ms(&flh(2)), Some(7_000));
        assert_eq!(index.opted_out_at_ms(&flh(2)), None);
    }

    #[test]
    fn a_million_entries_fit_in_40_bytes_each() {
        let mut builder = OptOutIndexBuilder::default();
        for page in 0..10i64 {
            let records: Vec<OptOutRecord> = (0..100_000i64)
                .map(|i| numbered(page * 100_000 + i + 1))
                .collect();
            builder.add(&records);
        }
        let index = builder.finish();
        assert_eq!(index.len(), 1_000_000);
        assert_eq!(index.last_seq(), 1_000_000);
        let per_entry = index.heap_bytes() as f64 / index.len() as f64;
        assert!(
            per_entry <= 40.0,
            "{per_entry} bytes per entry (both indexes)"
        );
        let r = numbered(777_777);
        assert_eq!(
            index.opted_out_at_ms(&FirstLevelHash(r.first_level_hash)),
            Some(777_777_000)
        );
        assert_eq!(
            index.raw_uid_opted_out_at_ms(r.advertising_id.as_ref().unwrap()),
            Some(777_777_000)
        );
    }

    #[test]
    fn local_writes_do_not_move_the_sync_cursor() {
        // This operator wrote seq 5; another operator's seq 4 committed but is not read yet.
        let index = OptOutIndex::build(&[record(3, 3, 1_000)]).with_local(&[record(5, 5, 2_000)]);
        let flh = |i: u8| FirstLevelHash(sha256(&[&[i]]));
        assert_eq!(index.opted_out_at_ms(&flh(5)), Some(2_000));
        assert_eq!(index.raw_uid_opted_out_at_ms(&[5; 32]), Some(2_000));
        assert_eq!(index.last_seq(), 3);
        assert_eq!((index.local_len(), index.recent_len()), (2, 0));
        // The sync pass reads both, and folds the local run into the recent one.
        let synced = index.appended(&[record(4, 4, 1_500), record(5, 5, 2_000)]);
        assert_eq!(synced.opted_out_at_ms(&flh(4)), Some(1_000));
        assert_eq!(synced.opted_out_at_ms(&flh(5)), Some(2_000));
        assert_eq!(synced.last_seq(), 5);
        assert_eq!((synced.local_len(), synced.recent_len()), (0, 4));
    }

    #[test]
    fn a_compaction_folds_recent_entries_into_the_base() {
        let base: Vec<OptOutRecord> = (1..=100_000).map(numbered).collect();
        let mut index = OptOutIndex::build(&base);
        assert_eq!(index.recent_len(), 0);
        assert!(index.compaction().is_none());
        // One sync batch, appended once.
        let batch: Vec<OptOutRecord> = (100_001..=100_000 + RECENT_CAP as i64)
            .map(numbered)
            .collect();
        index = index.with_batch(&OptOutBatch::new(&batch));
        assert_eq!(index.recent_len(), 2 * RECENT_CAP);
        let compaction = index.compaction().expect("due");
        // Appends go on while the compaction runs, step by step.
        index = index.with_local(&[numbered(900_000)]);
        for step in 0..COMPACTION_STEPS {
            let shards = compaction.merge_step(&index, step);
            index = index.with_compacted_shards(&shards);
        }
        index = index.compacted(&compaction);
        assert_eq!(index.recent_len(), 0);
        assert_eq!(
            index.local_len(),
            2,
            "only the append made during the compaction"
        );
        assert_eq!(index.len(), 100_000 + RECENT_CAP + 1);
        for r in base
            .iter()
            .chain(&batch)
            .step_by(997)
            .chain([&numbered(900_000)])
        {
            assert_eq!(
                index.opted_out_at_ms(&FirstLevelHash(r.first_level_hash)),
                Some(r.opted_out_at_ms)
            );
            assert_eq!(
                index.raw_uid_opted_out_at_ms(r.advertising_id.as_ref().unwrap()),
                Some(r.opted_out_at_ms)
            );
        }
        assert_eq!(index.last_seq(), 100_000 + RECENT_CAP as i64);
    }
}
