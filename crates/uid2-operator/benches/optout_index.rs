//! The opt-out index at production scale: 10 M synthetic opt-outs (`UID2_OPTOUT_BENCH_ENTRIES`
//! to change), each with a raw UID, so both indexes (first-level hash, raw UID) hold 10 M entries.
//!
//! Measured: load time (building the index from pages of store records, as at start-up), lookup
//! time (hits and misses, by first-level hash and by raw UID, next to a plain
//! `HashMap<[u8; 32], u32>` of the same entries in the same run), bytes per entry, the cost of
//! appending (one local opt-out; one sync batch) and of a compaction (folding a full recent run
//! into the base). Goals: load ≤ 3 s, lookup ≤ 200 ns, ≤ 40 B per entry; the three figures are
//! printed together at the end.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::per_query;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use uid2_operator::optout::{
    COMPACTION_STEPS, OptOutBatch, OptOutIndex, OptOutIndexBuilder, RECENT_CAP,
};
use uid2_proto::salt::FirstLevelHash;
use uid2_store::OptOutRecord;

/// Queries cycle through this many random keys: far more than the caches hold, so lookups pay
/// the memory latency a production index would.
const QUERIES: usize = 1 << 20;
/// Records per store page at start-up (as the sync task reads them).
const PAGE: usize = 50_000;

fn entries() -> usize {
    std::env::var("UID2_OPTOUT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn record(rng: &mut StdRng, seq: i64) -> OptOutRecord {
    let mut flh = [0u8; 32];
    rng.fill_bytes(&mut flh);
    let mut uid = vec![0u8; 33];
    rng.fill_bytes(&mut uid);
    OptOutRecord {
        seq,
        first_level_hash: flh,
        advertising_id: Some(uid),
        opted_out_at_ms: 1_700_000_000_000 + seq,
    }
}

fn synthetic(n: usize, seed: u64, first_seq: i64) -> Vec<OptOutRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| record(&mut rng, first_seq + i as i64))
        .collect()
}

fn load(records: &[OptOutRecord]) -> OptOutIndex {
    let mut builder = OptOutIndexBuilder::default();
    for page in records.chunks(PAGE) {
        builder.add(page);
    }
    builder.finish()
}

fn compact(index: &OptOutIndex) -> OptOutIndex {
    let compaction = index.compaction().expect("a full recent run");
    let mut index = index.clone();
    for step in 0..COMPACTION_STEPS {
        let shards = compaction.merge_step(&index, step);
        index = index.with_compacted_shards(&shards);
    }
    index.compacted(&compaction)
}

fn bench(c: &mut Criterion) {
    let n = entries();
    let records = synthetic(n, 42, 1);

    let mut loads: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            black_box(load(&records));
            started.elapsed()
        })
        .collect();
    loads.sort();
    let load_time = loads[1];
    let index = load(&records);
    let bytes_per_entry = index.heap_bytes() as f64 / n as f64;

    let mut rng = StdRng::seed_from_u64(7);
    let flh_hits: Vec<FirstLevelHash> = (0..QUERIES)
        .map(|_| FirstLevelHash(records[rng.random_range(0..n)].first_level_hash))
        .collect();
    let flh_misses: Vec<FirstLevelHash> = (0..QUERIES)
        .map(|_| {
            let mut h = [0u8; 32];
            rng.fill_bytes(&mut h);
            FirstLevelHash(h)
        })
        .collect();
    // Inline arrays, as a request holds its raw UIDs: a query is not a pointer to chase.
    let uid_hits: Vec<[u8; 33]> = (0..QUERIES)
        .map(|_| {
            let uid = records[rng.random_range(0..n)].advertising_id.as_deref();
            uid.unwrap().try_into().unwrap()
        })
        .collect();
    let uid_misses: Vec<[u8; 33]> = (0..QUERIES)
        .map(|_| {
            let mut uid = [0u8; 33];
            rng.fill_bytes(&mut uid);
            uid
        })
        .collect();
    let baseline: HashMap<[u8; 32], u32> = records
        .iter()
        .map(|r| (r.first_level_hash, (r.opted_out_at_ms / 1000) as u32))
        .collect();

    let mut g = c.benchmark_group("optout_index");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("load", |b| b.iter(|| black_box(load(&records))));
    g.finish();

    let mut g = c.benchmark_group("optout_index");
    for (name, queries) in [("flh_hit", &flh_hits), ("flh_miss", &flh_misses)] {
        let mut i = 0;
        g.bench_function(format!("lookup_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & (QUERIES - 1);
                black_box(index.opted_out_at_ms(black_box(&queries[i])))
            })
        });
        let mut i = 0;
        g.bench_function(format!("baseline_hashmap_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & (QUERIES - 1);
                black_box(baseline.get(black_box(&queries[i].0)))
            })
        });
    }
    for (name, queries) in [("raw_uid_hit", &uid_hits), ("raw_uid_miss", &uid_misses)] {
        let mut i = 0;
        g.bench_function(format!("lookup_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & (QUERIES - 1);
                black_box(index.raw_uid_opted_out_at_ms(black_box(&queries[i])))
            })
        });
    }

    // Between compactions the recent run holds up to RECENT_CAP entries and every lookup
    // reads it too: a half-full one is the typical state of an operator that sees opt-outs.
    let half_full = index.with_batch(&OptOutBatch::new(&synthetic(RECENT_CAP / 2, 9, 1 << 40)));
    let mut i = 0;
    g.bench_function("lookup_flh_hit_with_half_full_recent_run", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            black_box(half_full.opted_out_at_ms(black_box(&flh_hits[i])))
        })
    });

    // Appends: one opt-out into a half-full recent run (what a logout does), and one sync
    // batch of 1,000 (what the sync task does every interval under load).
    let local = synthetic(1, 10, 1 << 41);
    g.bench_function("append_local_optout", |b| {
        b.iter(|| black_box(half_full.with_local(black_box(&local))))
    });
    let sync_batch = synthetic(1_000, 11, 1 << 42);
    g.bench_function("append_sync_batch_1000", |b| {
        b.iter(|| black_box(half_full.with_batch(&OptOutBatch::new(black_box(&sync_batch)))))
    });
    g.finish();

    // A compaction folds a full recent run into the whole base (in the operator: off the async
    // runtime, in 16 steps published one by one).
    let full = index.with_batch(&OptOutBatch::new(&synthetic(RECENT_CAP, 12, 1 << 43)));
    let mut g = c.benchmark_group("optout_index");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("compaction_of_a_full_recent_run", |b| {
        b.iter(|| black_box(compact(&full)))
    });
    g.finish();

    let lookup = [
        per_query(&flh_hits, |q| {
            black_box(index.opted_out_at_ms(q));
        }),
        per_query(&flh_misses, |q| {
            black_box(index.opted_out_at_ms(q));
        }),
        per_query(&uid_hits, |q| {
            black_box(index.raw_uid_opted_out_at_ms(q));
        }),
        per_query(&uid_misses, |q| {
            black_box(index.raw_uid_opted_out_at_ms(q));
        }),
        per_query(&flh_hits, |q| {
            black_box(half_full.opted_out_at_ms(q));
        }),
    ];
    let started = Instant::now();
    black_box(compact(&full));
    let compaction = started.elapsed();
    // hashbrown: one control byte per slot, buckets of (key, value) at 7/8 load at most.
    let baseline_bytes = baseline.capacity() * (32 + 4 + 1);
    println!(
        "\noptout_index summary: {n} opt-outs, each in both indexes (first-level hash, raw UID)\n  \
         load time:      {:.2} s  (median of 3; goal ≤ 3 s)\n  \
         lookup time:    {} ns by first-level hash ({} ns miss), {} ns by raw UID ({} ns miss)  \
         (goal ≤ 200 ns)\n                  \
         {} ns by first-level hash with a half-full recent run ({} entries; the usual state \
         between compactions)\n  \
         bytes per entry: {bytes_per_entry:.1} B for both indexes together  (goal ≤ 40 B; \
         a HashMap<[u8;32],u32> of the first-level hashes alone: {:.1} B)\n  \
         compaction of {RECENT_CAP} recent opt-outs into the base: {:.0} ms (off the request path)",
        load_time.as_secs_f64(),
        lookup[0].as_nanos(),
        lookup[1].as_nanos(),
        lookup[2].as_nanos(),
        lookup[3].as_nanos(),
        lookup[4].as_nanos(),
        RECENT_CAP / 2,
        baseline_bytes as f64 / n as f64,
        compaction.as_secs_f64() * 1000.0,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
