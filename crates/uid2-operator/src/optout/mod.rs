//! The in-memory opt-out index: first-level hash → time of opt-out, and raw UID → time for
//! `/v2/optout/status`.
//!
//! Each index is a large immutable [`SortedRun`] plus a small run of recent appends. New opt-outs
//! are appended by building a new recent run (its size is capped), never by rebuilding the large
//! one; once the recent run passes its cap it is merged into the large run, a linear pass. Values
//! are immutable, so a request reads whatever index its snapshot holds without any lock.

pub mod sorted_run;

use std::sync::Arc;

use sorted_run::{Entry, KEY_LEN, Keep, SortedRun};
use uid2_proto::cipher::sha256;
use uid2_proto::salt::FirstLevelHash;
use uid2_store::OptOutRecord;

/// Recent entries kept apart before a merge: copying this many per append stays well under a
/// millisecond, and a merge into 100 M entries happens once per this many opt-outs.
const RECENT_CAP: usize = 65_536;

/// One keyed index (base + recent).
#[derive(Debug, Default, Clone)]
struct TwoLevel {
    base: Arc<SortedRun>,
    recent: Arc<SortedRun>,
}

impl TwoLevel {
    fn get(&self, key: &[u8; KEY_LEN]) -> Option<u32> {
        match (self.recent.get(key), self.base.get(key)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn appended(&self, new: Vec<Entry>) -> Self {
        if new.is_empty() {
            return self.clone();
        }
        if self.recent.len() + new.len() > RECENT_CAP {
            let mut all = self.recent.entries().to_vec();
            all.extend(new);
            return Self {
                base: Arc::new(self.base.merged_with(all, Keep::Earliest)),
                recent: Arc::default(),
            };
        }
        Self {
            base: self.base.clone(),
            recent: Arc::new(self.recent.merged_with(new, Keep::Earliest)),
        }
    }

    fn len(&self) -> usize {
        self.base.len() + self.recent.len()
    }

    fn heap_bytes(&self) -> usize {
        self.base.heap_bytes() + self.recent.heap_bytes()
    }
}

/// The opt-out index of a snapshot.
#[derive(Debug, Default, Clone)]
pub struct OptOutIndex {
    by_first_level_hash: TwoLevel,
    by_raw_uid: TwoLevel,
    last_seq: i64,
}

fn flh_key(flh: &[u8; 32]) -> [u8; KEY_LEN] {
    flh[..KEY_LEN].try_into().expect("KEY_LEN ≤ 32")
}

/// Raw UIDs of the v3/v4 kinds start with structured bytes, so they are hashed to a uniform key.
fn raw_uid_key(raw_uid: &[u8]) -> [u8; KEY_LEN] {
    sha256(&[raw_uid])[..KEY_LEN]
        .try_into()
        .expect("KEY_LEN ≤ 32")
}

fn secs(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, i64::from(u32::MAX)) as u32
}

fn entries(records: &[OptOutRecord]) -> (Vec<Entry>, Vec<Entry>) {
    let by_flh = records
        .iter()
        .map(|r| Entry {
            key: flh_key(&r.first_level_hash),
            secs: secs(r.opted_out_at_ms),
        })
        .collect();
    let by_uid = records
        .iter()
        .filter_map(|r| {
            r.advertising_id.as_ref().map(|id| Entry {
                key: raw_uid_key(id),
                secs: secs(r.opted_out_at_ms),
            })
        })
        .collect();
    (by_flh, by_uid)
}

/// Builds an index from pages of records at start-up, holding only the 16-byte entries (not the
/// records) until one sort at the end.
#[derive(Debug, Default)]
pub struct OptOutIndexBuilder {
    by_flh: Vec<Entry>,
    by_uid: Vec<Entry>,
    last_seq: i64,
}

impl OptOutIndexBuilder {
    /// Adds a page of records.
    pub fn add(&mut self, records: &[OptOutRecord]) {
        let (by_flh, by_uid) = entries(records);
        self.by_flh.extend(by_flh);
        self.by_uid.extend(by_uid);
        self.last_seq = records.iter().map(|r| r.seq).fold(self.last_seq, i64::max);
    }

    /// The index.
    pub fn finish(self) -> OptOutIndex {
        OptOutIndex {
            by_first_level_hash: TwoLevel {
                base: Arc::new(SortedRun::build(self.by_flh, Keep::Earliest)),
                recent: Arc::default(),
            },
            by_raw_uid: TwoLevel {
                base: Arc::new(SortedRun::build(self.by_uid, Keep::Earliest)),
                recent: Arc::default(),
            },
            last_seq: self.last_seq,
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
        let last_seq = fresh.iter().map(|r| r.seq).max().unwrap_or(self.last_seq);
        Self {
            last_seq,
            ..self.with_entries(&fresh)
        }
    }

    /// A new index with opt-outs this operator just wrote applied at once, without moving the sync
    /// cursor: other operators may have written lower sequence numbers this one has not read yet,
    /// and the next sync must still fetch them. (It fetches these again too; re-applying is harmless.)
    pub fn with_local(&self, records: &[OptOutRecord]) -> Self {
        self.with_entries(records)
    }

    fn with_entries(&self, records: &[OptOutRecord]) -> Self {
        if records.is_empty() {
            return self.clone();
        }
        let (by_flh, by_uid) = entries(records);
        Self {
            by_first_level_hash: self.by_first_level_hash.appended(by_flh),
            by_raw_uid: self.by_raw_uid.appended(by_uid),
            last_seq: self.last_seq,
        }
    }

    /// When the identity opted out (ms, second precision), if it did.
    pub fn opted_out_at_ms(&self, flh: &FirstLevelHash) -> Option<i64> {
        self.by_first_level_hash
            .get(&flh_key(&flh.0))
            .map(|s| i64::from(s) * 1000)
    }

    /// When the raw UID opted out (ms, second precision), for `/v2/optout/status`.
    pub fn raw_uid_opted_out_at_ms(&self, raw_uid: &[u8]) -> Option<i64> {
        self.by_raw_uid
            .get(&raw_uid_key(raw_uid))
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
                .map(|i| {
                    let seq = page * 100_000 + i + 1;
                    let flh = sha256(&[&seq.to_be_bytes()]);
                    OptOutRecord {
                        seq,
                        first_level_hash: flh,
                        advertising_id: Some(sha256(&[&flh]).to_vec()),
                        opted_out_at_ms: seq * 1000,
                    }
                })
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
        let flh = sha256(&[&777_777i64.to_be_bytes()]);
        assert_eq!(
            index.opted_out_at_ms(&FirstLevelHash(flh)),
            Some(777_777_000)
        );
        assert_eq!(
            index.raw_uid_opted_out_at_ms(&sha256(&[&flh])),
            Some(777_777_000)
        );
    }

    #[test]
    fn local_writes_do_not_move_the_sync_cursor() {
        // This operator wrote seq 5; another operator's seq 4 committed but is not read yet.
        let index = OptOutIndex::build(&[record(3, 3, 1_000)]).with_local(&[record(5, 5, 2_000)]);
        let flh = |i: u8| FirstLevelHash(sha256(&[&[i]]));
        assert_eq!(index.opted_out_at_ms(&flh(5)), Some(2_000));
        assert_eq!(index.last_seq(), 3);
        let synced = index.appended(&[record(4, 4, 1_500), record(5, 5, 2_000)]);
        assert_eq!(synced.opted_out_at_ms(&flh(4)), Some(1_000));
        assert_eq!(synced.last_seq(), 5);
    }

    #[test]
    fn recent_entries_merge_into_the_base_past_the_cap() {
        let mut index = OptOutIndex::default();
        let batch: Vec<OptOutRecord> = (1..=(RECENT_CAP as i64 + 10))
            .map(|seq| OptOutRecord {
                seq,
                first_level_hash: sha256(&[&seq.to_be_bytes()]),
                advertising_id: None,
                opted_out_at_ms: seq * 1000,
            })
            .collect();
        for chunk in batch.chunks(10_000) {
            index = index.appended(chunk);
        }
        assert!(!index.by_first_level_hash.base.is_empty());
        assert!(index.by_first_level_hash.recent.len() < RECENT_CAP);
        for r in batch.iter().step_by(997) {
            assert_eq!(
                index.opted_out_at_ms(&FirstLevelHash(r.first_level_hash)),
                Some(r.opted_out_at_ms)
            );
        }
    }
}
