//! What both opt-out index benches measure with.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Mean time of `f` over every query, the median of three passes.
pub(crate) fn per_query<T>(queries: &[T], mut f: impl FnMut(&T)) -> Duration {
    let mut passes: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            for q in queries {
                f(black_box(q));
            }
            started.elapsed() / queries.len() as u32
        })
        .collect();
    passes.sort();
    passes[1]
}
