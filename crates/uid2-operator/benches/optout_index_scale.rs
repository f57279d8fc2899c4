//! The opt-out index at the size issue 6 names: 100 M opt-outs (`UID2_OPTOUT_SCALE_ENTRIES` to
//! change), each with a raw UID, so both indexes hold 100 M entries.
//!
//! The 10 M bench (`optout_index`) holds every record in memory to time loads and appends with
//! criterion; 100 M records would need ~12 GB before the index exists, so this one streams the
//! records page by page from a seeded generator, as the store does at start-up, and times only
//! the index's own work. It prints load time, lookup times (hits and misses, by first-level hash
//! and by raw UID), bytes per entry, the process's peak resident memory, and a
//! `HashMap<[u8; 32], u32>` of the first-level hashes built and queried in the same run as the
//! baseline. Run it with `cargo bench -p uid2-operator --bench optout_index_scale` (about two
//! minutes and 14 GB of memory at 100 M).

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::per_query;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uid2_operator::optout::{OptOutIndex, OptOutIndexBuilder};
use uid2_proto::salt::FirstLevelHash;
use uid2_store::OptOutRecord;

/// Records per store page at start-up (as the sync task reads them).
const PAGE: usize = 50_000;
/// Lookups per measurement: far more than the caches hold.
const QUERIES: usize = 1 << 20;

fn entries() -> usize {
    std::env::var("UID2_OPTOUT_SCALE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000)
}

/// The synthetic store: pages of random records, the same ones for the same seed.
struct Pages {
    rng: StdRng,
    left: usize,
    next_seq: i64,
}

impl Pages {
    fn new(n: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(42),
            left: n,
            next_seq: 1,
        }
    }

    /// Fills `page` with the next page of records; false when none are left.
    fn next_into(&mut self, page: &mut Vec<OptOutRecord>) -> bool {
        page.clear();
        let len = self.left.min(PAGE);
        self.left -= len;
        for _ in 0..len {
            let mut flh = [0u8; 32];
            self.rng.fill_bytes(&mut flh);
            let mut uid = vec![0u8; 33];
            self.rng.fill_bytes(&mut uid);
            page.push(OptOutRecord {
                seq: self.next_seq,
                first_level_hash: flh,
                advertising_id: Some(uid),
                opted_out_at_ms: 1_700_000_000_000 + self.next_seq,
            });
            self.next_seq += 1;
        }
        len > 0
    }
}

/// Keys known to be in the index, sampled evenly while it loads.
#[derive(Default)]
struct Hits {
    flh: Vec<FirstLevelHash>,
    raw_uid: Vec<[u8; 33]>,
}

impl Hits {
    fn sample(&mut self, page: &[OptOutRecord], every: usize) {
        for r in page.iter().step_by(every) {
            self.flh.push(FirstLevelHash(r.first_level_hash));
            let uid = r.advertising_id.as_deref().expect("every record has one");
            self.raw_uid.push(uid.try_into().expect("33 bytes"));
        }
    }
}

/// Builds the index from the synthetic store, timing only the index's work.
fn load(n: usize, hits: &mut Hits) -> (OptOutIndex, Duration) {
    let every = (n / QUERIES).max(1);
    let mut pages = Pages::new(n);
    let mut page = Vec::with_capacity(PAGE);
    let mut builder = OptOutIndexBuilder::default();
    let mut spent = Duration::ZERO;
    while pages.next_into(&mut page) {
        hits.sample(&page, every);
        let started = Instant::now();
        builder.add(&page);
        spent += started.elapsed();
    }
    let started = Instant::now();
    let index = builder.finish();
    (index, spent + started.elapsed())
}

/// The baseline: the first-level hashes of the same records in a `HashMap`.
fn load_baseline(n: usize) -> (HashMap<[u8; 32], u32>, Duration) {
    let mut pages = Pages::new(n);
    let mut page = Vec::with_capacity(PAGE);
    let mut map = HashMap::with_capacity(n);
    let mut spent = Duration::ZERO;
    while pages.next_into(&mut page) {
        let started = Instant::now();
        map.extend(
            page.iter()
                .map(|r| (r.first_level_hash, (r.opted_out_at_ms / 1000) as u32)),
        );
        spent += started.elapsed();
    }
    (map, spent)
}

fn random_queries<const N: usize>(rng: &mut StdRng) -> Vec<[u8; N]> {
    (0..QUERIES)
        .map(|_| {
            let mut q = [0u8; N];
            rng.fill_bytes(&mut q);
            q
        })
        .collect()
}

/// The process's peak resident memory in MiB (Linux), for sizing a host.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` passes nothing and only
    // wants to know that the target builds and runs, so it gets a small index.
    let n = if std::env::args().any(|a| a == "--bench") {
        entries()
    } else {
        100_000
    };
    let mut hits = Hits::default();
    let (index, load_time) = load(n, &mut hits);
    assert_eq!(index.len(), n, "every synthetic opt-out is in the index");
    let bytes_per_entry = index.heap_bytes() as f64 / n as f64;
    let peak_after_load = peak_rss_mib();

    let mut rng = StdRng::seed_from_u64(7);
    let flh_misses: Vec<FirstLevelHash> = random_queries::<32>(&mut rng)
        .into_iter()
        .map(FirstLevelHash)
        .collect();
    let uid_misses = random_queries::<33>(&mut rng);
    let found = hits
        .flh
        .iter()
        .filter(|q| index.opted_out_at_ms(q).is_some())
        .count();
    assert_eq!(found, hits.flh.len(), "every sampled opt-out is found");

    let lookup = [
        per_query(&hits.flh, |q| {
            black_box(index.opted_out_at_ms(q));
        }),
        per_query(&flh_misses, |q| {
            black_box(index.opted_out_at_ms(q));
        }),
        per_query(&hits.raw_uid, |q| {
            black_box(index.raw_uid_opted_out_at_ms(q));
        }),
        per_query(&uid_misses, |q| {
            black_box(index.raw_uid_opted_out_at_ms(q));
        }),
    ];
    let index_bytes = index.heap_bytes();
    drop(index);

    let (baseline, baseline_load) = load_baseline(n);
    let baseline_lookup = [
        per_query(&hits.flh, |q| {
            black_box(baseline.get(&q.0));
        }),
        per_query(&flh_misses, |q| {
            black_box(baseline.get(&q.0));
        }),
    ];
    // hashbrown: one control byte per slot, buckets of (key, value) at 7/8 load at most.
    let baseline_bytes = baseline.capacity() * (32 + 4 + 1);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "\noptout_index_scale summary: {n} opt-outs, each in both indexes (first-level hash, raw UID)\n  \
         load time:       {:.2} s  (baseline HashMap of the first-level hashes alone: {:.2} s)\n  \
         lookup time:     {} ns by first-level hash ({} ns miss), {} ns by raw UID ({} ns miss)\n                   \
         baseline HashMap: {} ns hit, {} ns miss; index/baseline {:.2}× hit, {:.2}× miss\n  \
         bytes per entry: {bytes_per_entry:.1} B for both indexes together ({:.2} GiB; goal ≤ 40 B); \
         the baseline for one index: {:.1} B\n  \
         peak resident memory after loading the index: {} MiB",
        load_time.as_secs_f64(),
        baseline_load.as_secs_f64(),
        lookup[0].as_nanos(),
        lookup[1].as_nanos(),
        lookup[2].as_nanos(),
        lookup[3].as_nanos(),
        baseline_lookup[0].as_nanos(),
        baseline_lookup[1].as_nanos(),
        ratio(lookup[0], baseline_lookup[0]),
        ratio(lookup[1], baseline_lookup[1]),
        index_bytes as f64 / (1u64 << 30) as f64,
        baseline_bytes as f64 / n as f64,
        peak_after_load.map_or_else(|| "unknown".into(), |m| m.to_string()),
    );
}
