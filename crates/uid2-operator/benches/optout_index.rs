//! The opt-out index at production scale: 10 M synthetic entries (`UID2_OPTOUT_BENCH_ENTRIES` to
//! change). Load time, lookup time (hits and misses) and bytes per entry, next to a plain
//! `HashMap<[u8; 32], u32>` of the same entries measured in the same run.
//! Goals: load ≤ 3 s, lookup ≤ 200 ns, ≤ 40 B per entry.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use uid2_operator::optout::OptOutIndexBuilder;
use uid2_proto::salt::FirstLevelHash;
use uid2_store::OptOutRecord;

/// Queries cycle through this many random keys: far more than the caches hold, so lookups pay
/// the memory latency a production index would.
const QUERIES: usize = 1 << 20;

fn entries() -> usize {
    std::env::var("UID2_OPTOUT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn records(n: usize) -> Vec<OptOutRecord> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..n)
        .map(|i| {
            let mut flh = [0u8; 32];
            rng.fill_bytes(&mut flh);
            let mut uid = vec![0u8; 32];
            rng.fill_bytes(&mut uid);
            OptOutRecord {
                seq: i as i64 + 1,
                first_level_hash: flh,
                advertising_id: Some(uid),
                opted_out_at_ms: 1_700_000_000_000 + i as i64,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = entries();
    let records = records(n);
    let mut g = c.benchmark_group("optout_index");
    g.sample_size(10).measurement_time(Duration::from_secs(25));
    g.bench_function("load", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let mut builder = OptOutIndexBuilder::default();
                // As at start-up: pages of 50,000 records from the store.
                for page in records.chunks(50_000) {
                    builder.add(page);
                }
                black_box(builder.finish());
                total += started.elapsed();
            }
            total
        })
    });
    g.finish();

    let mut builder = OptOutIndexBuilder::default();
    for page in records.chunks(50_000) {
        builder.add(page);
    }
    let index = builder.finish();
    let baseline: HashMap<[u8; 32], u32> = records
        .iter()
        .map(|r| (r.first_level_hash, (r.opted_out_at_ms / 1000) as u32))
        .collect();

    let mut rng = StdRng::seed_from_u64(7);
    let hits: Vec<FirstLevelHash> = (0..QUERIES)
        .map(|_| FirstLevelHash(records[rng.random_range(0..n)].first_level_hash))
        .collect();
    let misses: Vec<FirstLevelHash> = (0..QUERIES)
        .map(|_| {
            let mut h = [0u8; 32];
            rng.fill_bytes(&mut h);
            FirstLevelHash(h)
        })
        .collect();

    let mut g = c.benchmark_group("optout_index");
    for (name, queries) in [("lookup_hit", &hits), ("lookup_miss", &misses)] {
        let mut i = 0;
        g.bench_function(name, |b| {
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
    g.finish();

    // hashbrown: one control byte per slot, buckets of (key, value) at 7/8 load at most.
    let baseline_bytes = baseline.capacity() * (32 + 4 + 1);
    println!(
        "optout_index: {n} entries; index {:.1} B/entry (first-level hash index and raw-UID status index together), \
         baseline HashMap<[u8;32],u32> {:.1} B/entry (first-level hash only)",
        index.heap_bytes() as f64 / n as f64,
        baseline_bytes as f64 / n as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
