//! Fleet mode against a real PostgreSQL (started by the test in a temporary directory): two
//! `uid2 serve` processes on one database. Run by `scripts/test.sh` (`--include-ignored`).
//! Opt-out propagation and outages are here; rotations in `fleet/rotations.rs`.

mod support;

#[path = "fleet/rotations.rs"]
mod rotations;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Answer, Api, OperatorProcess, add_client, cli};
use tokio::sync::Mutex;
use uid2_testkit::pg::PgCluster;

struct Fleet {
    cluster: Arc<PgCluster>,
    store: String,
    a: OperatorProcess,
    b: OperatorProcess,
    publisher: support::ClientCreds,
    optout: support::ClientCreds,
}

fn fleet(cluster: Arc<PgCluster>, db: &str) -> Fleet {
    fleet_with(cluster, db, &[])
}

/// A store with a publisher site and clients, and two operators serving it with `serve_args`.
fn fleet_with(cluster: Arc<PgCluster>, db: &str, serve_args: &[&str]) -> Fleet {
    let store = cluster.database(db).unwrap();
    support::init(&store);
    cli(
        &store,
        &[
            "site",
            "add",
            "--id",
            "1001",
            "--name",
            "Publisher",
            "--domain",
            "localhost",
        ],
    );
    let publisher = add_client(&store, "publisher", 1001, "generator");
    let optout = add_client(&store, "optout", 1001, "optout");
    let a = OperatorProcess::start(&store, serve_args);
    let b = OperatorProcess::start(&store, serve_args);
    Fleet {
        cluster,
        store,
        a,
        b,
        publisher,
        optout,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Checks a refused opt-out: 503 with the UID2 status JSON and a `Retry-After` (2 s, within
/// the store breaker's 0.25–4 s backoff).
fn assert_retryable_refusal(reply: &Answer) {
    assert_eq!(reply.http, 503, "{reply:?}");
    assert_eq!(reply.json["status"], "unknown", "{reply:?}");
    assert!(reply.json["message"].is_string(), "{reply:?}");
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("2"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn an_optout_on_one_operator_reaches_the_other_within_a_second() {
    let f = fleet(Arc::new(PgCluster::start().unwrap()), "propagation");
    let api = Api::default();
    const OPTOUTS: usize = 1000;
    const PARALLEL: usize = 25;
    let next = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(Vec::with_capacity(OPTOUTS)));
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let (api, next, delays) = (api.clone(), next.clone(), delays.clone());
        let (a, b) = (f.a.url.clone(), f.b.url.clone());
        let (publisher, optout) = (f.publisher.clone(), f.optout.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i as usize >= OPTOUTS {
                    break;
                }
                let email = format!("propagation-{i}@example.com");
                // Spread the opt-outs over the sync period, as real ones are, instead of letting
                // the parallel tasks fall into step with B's polling.
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 300)).await;
                // B knows the identity before the opt-out, as a publisher's refresh would.
                let before = api
                    .call(
                        &b,
                        &publisher,
                        "/v2/token/generate",
                        &json!({ "email": email }),
                    )
                    .await;
                assert_eq!(before.json["status"], "success");
                let identity = before.json["body"].clone();
                let logout = api
                    .call(&a, &optout, "/v2/token/logout", &json!({ "email": email }))
                    .await;
                assert_eq!(logout.http, 200, "{logout:?}");
                let acknowledged = Instant::now();
                loop {
                    let refreshed = api.refresh(&b, &identity).await;
                    if refreshed.json["status"] == "optout" {
                        break;
                    }
                    assert_eq!(refreshed.json["status"], "success");
                    assert!(
                        acknowledged.elapsed() < Duration::from_secs(10),
                        "opt-out never reached B"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                delays.lock().await.push(acknowledged.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut delays = delays.lock().await.clone();
    delays.sort();
    let (p50, p99, max) = (
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1],
    );
    println!(
        "opt-out propagation A→B over {} opt-outs: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        delays.len()
    );
    assert_eq!(delays.len(), OPTOUTS);
    assert!(p99 <= Duration::from_secs(1), "p99 {p99:?}");
}

#[derive(Default)]
struct Tally {
    token_ok: AtomicU64,
    token_failed: AtomicU64,
    optout_acknowledged: Mutex<Vec<String>>,
    optout_refused_503: AtomicU64,
    optout_other: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn a_store_outage_loses_nothing_and_never_fails_tokens() {
    let outage = Duration::from_secs(
        std::env::var("UID2_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let cluster = Arc::new(PgCluster::start().unwrap());
    let f = fleet(cluster.clone(), "outage");
    let api = Api::default();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Token load on both operators: generate, then refresh what was generated.
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let (api, tally, stop) = (api.clone(), tally.clone(), stop.clone());
        let urls = [f.a.url.clone(), f.b.url.clone()];
        let publisher = f.publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = &urls[(n % 2) as usize];
                let email = format!("load-{worker}-{n}@example.com");
                let generated = api
                    .call(
                        url,
                        &publisher,
                        "/v2/token/generate",
                        &json!({ "email": email }),
                    )
                    .await;
                let ok = generated.http == 200 && generated.json["status"] == "success" && {
                    let other = &urls[((n + 1) % 2) as usize];
                    let refreshed = api.refresh(other, &generated.json["body"]).await;
                    refreshed.http == 200 && refreshed.json["status"] == "success"
                };
                let counter = if ok {
                    &tally.token_ok
                } else {
                    &tally.token_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // Opt-outs, alternating operators.
    {
        let (api, tally, stop) = (api.clone(), tally.clone(), stop.clone());
        let urls = [f.a.url.clone(), f.b.url.clone()];
        let optout = f.optout.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let email = format!("outage-optout-{n}@example.com");
                let reply = api
                    .call(
                        &urls[(n % 2) as usize],
                        &optout,
                        "/v2/token/logout",
                        &json!({ "email": email }),
                    )
                    .await;
                match reply.http {
                    200 => tally.optout_acknowledged.lock().await.push(email),
                    // A refusal is the UID2 status JSON, so SDKs can tell it apart.
                    503 if reply.json["status"] == "unknown" => {
                        tally.optout_refused_503.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => tally
                        .optout_other
                        .lock()
                        .await
                        .push(format!("{email}: {reply:?}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.stop().unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(12).min(outage)).await;
    // While the store is down, both operators say so and keep serving.
    let health = api.get_text(&format!("{}/ops/healthcheck", f.a.url)).await;
    assert!(
        health.starts_with("OK\nstore: unreachable for "),
        "{health}"
    );
    assert!(health.contains("not fully synced for "), "{health}");
    let metrics = api.get_text(&format!("{}/metrics", f.b.url)).await;
    assert!(metrics.contains("uid2_store_reachable 0"), "{metrics}");
    let refused = api
        .call(
            &f.a.url,
            &f.optout,
            "/v2/token/logout",
            &json!({ "email": "refused@example.com" }),
        )
        .await;
    assert_retryable_refusal(&refused);
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    cluster.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let acknowledged = tally.optout_acknowledged.lock().await.clone();
    let refused = tally.optout_refused_503.load(Ordering::Relaxed);
    let (ok, failed) = (
        tally.token_ok.load(Ordering::Relaxed),
        tally.token_failed.load(Ordering::Relaxed),
    );
    println!(
        "outage of {outage:?}: {ok} generate+refresh pairs succeeded, {failed} failed; \
         {} opt-outs acknowledged, {refused} refused with 503",
        acknowledged.len()
    );
    assert_eq!(
        failed, 0,
        "token traffic must not fail during a store outage"
    );
    assert!(ok > 100);
    assert!(refused > 0, "opt-outs during the outage must be refused");
    assert!(
        tally.optout_other.lock().await.is_empty(),
        "{:?}",
        tally.optout_other.lock().await
    );

    // Every acknowledged opt-out is on both operators once they have synced.
    for url in [&f.a.url, &f.b.url] {
        let recovering = Instant::now();
        loop {
            let health = api.get_text(&format!("{url}/ops/healthcheck")).await;
            if health == "OK" {
                break;
            }
            assert!(
                recovering.elapsed() < Duration::from_secs(20),
                "the operator does not recover by itself: {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for email in &acknowledged {
        for url in [&f.a.url, &f.b.url] {
            let answer = api
                .call(
                    url,
                    &f.publisher,
                    "/v2/token/generate",
                    &json!({ "email": email }),
                )
                .await;
            assert_eq!(
                answer.json["status"], "optout",
                "{email} acknowledged but not opted out on {url}"
            );
        }
    }
}

/// The database hangs (its processes stopped, as a frozen host would be): opt-outs sent at once
/// are each refused within 6 s instead of queueing behind one another, tokens keep flowing, and
/// opt-outs are accepted again once the database runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn a_hung_database_refuses_optouts_within_seconds() {
    let f = fleet(Arc::new(PgCluster::start().unwrap()), "hung");
    let api = Api::default();
    f.cluster.pause().unwrap();
    let logouts: Vec<_> = (0..6)
        .map(|i| {
            let (url, optout, api) = (f.a.url.clone(), f.optout.clone(), api.clone());
            tokio::spawn(async move {
                let sent = Instant::now();
                let email = json!({ "email": format!("hung-{i}@example.com") });
                let reply = api.call(&url, &optout, "/v2/token/logout", &email).await;
                (reply, sent.elapsed())
            })
        })
        .collect();
    let mut took = Vec::new();
    for l in logouts {
        let (reply, elapsed) = l.await.unwrap();
        assert_retryable_refusal(&reply);
        took.push(elapsed);
    }
    println!("6 concurrent opt-outs on a hung database refused after {took:?}");
    assert!(
        took.iter().all(|t| *t <= Duration::from_secs(6)),
        "each refused within 6 s: {took:?}"
    );
    let generated = api
        .call(
            &f.b.url,
            &f.publisher,
            "/v2/token/generate",
            &json!({ "email": "still-served@example.com" }),
        )
        .await;
    assert_eq!(generated.json["status"], "success");

    f.cluster.resume().unwrap();
    let started = Instant::now();
    loop {
        let reply = api
            .call(
                &f.a.url,
                &f.optout,
                "/v2/token/logout",
                &json!({ "email": "after@example.com" }),
            )
            .await;
        if reply.http == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
