//! Prometheus metrics: requests by route and status, latency histograms, snapshot and store
//! health, and the sizes of what the operator holds.
//!
//! Counters are plain atomics in a table fixed when the router is built, so recording a request
//! takes no lock and allocates nothing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// HTTP status codes counted individually; anything else is counted as `other`.
const STATUS_CODES: [u16; 11] = [200, 204, 400, 401, 403, 404, 405, 413, 429, 500, 503];
/// Latency histogram upper bounds, seconds.
const BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct RouteMetrics {
    by_status: [AtomicU64; STATUS_CODES.len() + 1],
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    sum_us: AtomicU64,
}

/// Request metrics of every route.
pub struct RequestMetrics {
    index: HashMap<&'static str, usize>,
    routes: Vec<(&'static str, RouteMetrics)>,
}

/// A route of [`RequestMetrics`], from [`RequestMetrics::route_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId(usize);

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestMetrics({} routes)", self.routes.len())
    }
}

impl RequestMetrics {
    /// Metrics for `routes` (plus [`UNMATCHED`]).
    pub fn new(routes: &[&'static str]) -> Self {
        let mut all: Vec<&'static str> = routes.to_vec();
        all.push(UNMATCHED);
        Self {
            index: all.iter().enumerate().map(|(i, r)| (*r, i)).collect(),
            routes: all
                .into_iter()
                .map(|r| (r, RouteMetrics::default()))
                .collect(),
        }
    }

    /// The counters of `route` ([`UNMATCHED`] if it is not one of the routes): looked up while
    /// the request still holds the matched path, so that nothing is copied to record it later.
    pub fn route_of(&self, route: &str) -> RouteId {
        RouteId(
            self.index
                .get(route)
                .or_else(|| self.index.get(UNMATCHED))
                .copied()
                .expect("unmatched exists"),
        )
    }

    /// Records one request of `route`.
    pub fn record_for(&self, route: RouteId, status: u16, elapsed: Duration) {
        let m = &self.routes[route.0].1;
        let slot = STATUS_CODES
            .iter()
            .position(|c| *c == status)
            .unwrap_or(STATUS_CODES.len());
        m.by_status[slot].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS_S.len());
        m.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        m.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests recorded for `route` with `status`.
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let Some(&i) = self.index.get(route) else {
            return 0;
        };
        let slot = STATUS_CODES
            .iter()
            .position(|c| *c == status)
            .unwrap_or(STATUS_CODES.len());
        self.routes[i].1.by_status[slot].load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP uid2_http_requests_total HTTP requests by route and status code.\n");
        out.push_str("# TYPE uid2_http_requests_total counter\n");
        for (route, m) in &self.routes {
            for (slot, counter) in m.by_status.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = STATUS_CODES
                    .get(slot)
                    .map(u16::to_string)
                    .unwrap_or_else(|| "other".into());
                let _ = writeln!(
                    out,
                    "uid2_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP uid2_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE uid2_http_request_duration_seconds histogram\n");
        for (route, m) in &self.routes {
            let counts: Vec<u64> = m
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, bound) in BUCKETS_S.iter().enumerate() {
                cumulative += counts[i];
                let _ = writeln!(
                    out,
                    "uid2_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "uid2_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}"
            );
            let sum = m.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "uid2_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "uid2_http_request_duration_seconds_count{{route=\"{route}\"}} {total}"
            );
        }
    }
}

/// Point-in-time values rendered with the request metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Seconds since the last sync pass that met no store error (`StoreHealth::last_success_ms`).
    pub store_sync_age_s: f64,
    /// Age of the data served: seconds since the snapshot was last known current with the store
    /// in every part (`Snapshot::synced_at_ms`). Stays near the sync interval on a healthy fleet,
    /// busy or idle; grows while any part (salts, say) cannot be reloaded.
    pub snapshot_age_s: f64,
    /// Whether the store answers: false once every access since some time failed as
    /// unavailable (`StoreHealth::unreachable_since_ms`); true while it answers, even with errors.
    pub store_reachable: bool,
    /// Store errors since start.
    pub store_errors_total: u64,
    /// Keys held.
    pub keys: usize,
    /// Salt buckets held.
    pub salt_buckets: usize,
    /// Opt-out entries held.
    pub optouts: usize,
    /// API clients held.
    pub clients: usize,
}

/// Renders everything in the Prometheus text format.
pub fn render(requests: &RequestMetrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(4096);
    requests.render(&mut out);
    let gauges: [(&str, &str, &str, f64); 8] = [
        (
            "uid2_store_sync_age_seconds",
            "gauge",
            "Seconds since the last store sync pass that met no error (the store was last fully synced).",
            g.store_sync_age_s,
        ),
        (
            "uid2_snapshot_age_seconds",
            "gauge",
            "Age of the data served: seconds since every part of the snapshot was last known current.",
            g.snapshot_age_s,
        ),
        (
            "uid2_store_reachable",
            "gauge",
            "0 while the store cannot be reached (every access fails as unavailable), else 1.",
            f64::from(u8::from(g.store_reachable)),
        ),
        (
            "uid2_store_errors_total",
            "counter",
            "Failed store operations since start.",
            g.store_errors_total as f64,
        ),
        ("uid2_keys", "gauge", "Encryption keys held.", g.keys as f64),
        (
            "uid2_salt_buckets",
            "gauge",
            "Salt buckets held.",
            g.salt_buckets as f64,
        ),
        (
            "uid2_optout_entries",
            "gauge",
            "Opt-out entries in the index.",
            g.optouts as f64,
        ),
        (
            "uid2_clients",
            "gauge",
            "API clients held.",
            g.clients as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders_prometheus_text() {
        let m = RequestMetrics::new(&["/v2/token/generate"]);
        m.record_for(
            m.route_of("/v2/token/generate"),
            200,
            Duration::from_micros(300),
        );
        m.record_for(
            m.route_of("/v2/token/generate"),
            200,
            Duration::from_millis(30),
        );
        m.record_for(
            m.route_of("/v2/token/generate"),
            418,
            Duration::from_millis(3),
        );
        m.record_for(m.route_of("/nope"), 404, Duration::from_millis(1));
        assert_eq!(m.count("/v2/token/generate", 200), 2);
        assert_eq!(m.count(UNMATCHED, 404), 1);
        let text = render(
            &m,
            &Gauges {
                keys: 4,
                store_reachable: true,
                ..Gauges::default()
            },
        );
        assert!(
            text.contains(
                "uid2_http_requests_total{route=\"/v2/token/generate\",status=\"200\"} 2"
            )
        );
        assert!(
            text.contains(
                "uid2_http_requests_total{route=\"/v2/token/generate\",status=\"other\"} 1"
            )
        );
        assert!(text.contains("uid2_http_request_duration_seconds_bucket{route=\"/v2/token/generate\",le=\"0.0005\"} 1"));
        assert!(text.contains(
            "uid2_http_request_duration_seconds_bucket{route=\"/v2/token/generate\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("uid2_keys 4"));
        assert!(text.contains("uid2_store_reachable 1"));
    }
}
