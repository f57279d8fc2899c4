//! Rotations in a fleet on PostgreSQL: through the CLI they reach every operator, changing only
//! what they rotate; concurrent ones all apply; scheduled ones happen once per period across
//! the fleet.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uid2_operator::now_ms;
use uid2_operator::rotation::{SaltFraction, SaltPick, rotate_salts};
use uid2_proto::wire::datetime::format_local_date_time;
use uid2_testkit::pg::PgCluster;

use super::support::{self, Api, add_client, cli};
use super::{fleet, fleet_with};

/// Maps `emails` on `url`: email → (raw UID, bucket id).
async fn map(
    api: &Api,
    url: &str,
    mapper: &support::ClientCreds,
    emails: &[String],
) -> HashMap<String, (String, String)> {
    let reply = api
        .call(url, mapper, "/v2/identity/map", &json!({ "email": emails }))
        .await;
    uid2_testkit::answers::mapped_identities(&reply.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn admin_changes_and_rotations_reach_every_operator() {
    let f = fleet(Arc::new(PgCluster::start().unwrap()), "admin");
    let api = Api::default();
    // A client added through the CLI works on both operators within a second.
    let mapper = add_client(&f.store, "mapper", 1001, "mapper");
    let started = Instant::now();
    for url in [&f.a.url, &f.b.url] {
        loop {
            let answer = api
                .call(
                    url,
                    &mapper,
                    "/v2/identity/map",
                    &json!({ "email": ["x@example.com"] }),
                )
                .await;
            if answer.http == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "client not seen after 1 s: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A salt rotation of 10 % through the CLI changes the raw UIDs of exactly the identities in
    // rotated buckets, on both operators.
    let emails: Vec<String> = (0..300).map(|i| format!("rot-{i}@example.com")).collect();
    let before = map(&api, &f.a.url, &mapper, &emails).await;
    let since = format_local_date_time(now_ms() - 1);
    let printed = cli(
        &f.store,
        &["salts", "rotate", "--fraction", "0.1", "--include-not-due"],
    );
    // 10 % of the buckets, rounded up.
    let tenth = support::SALT_BUCKETS.div_ceil(10);
    assert!(
        printed.contains(&format!("rotated {tenth} salt buckets")),
        "{printed}"
    );
    for url in [&f.a.url, &f.b.url] {
        let started = Instant::now();
        let rotated: BTreeSet<String> = loop {
            let buckets = api
                .call(
                    url,
                    &mapper,
                    "/v2/identity/buckets",
                    &json!({ "since_timestamp": since }),
                )
                .await;
            let reported: BTreeSet<String> = buckets.json["body"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|b| b["bucket_id"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if !reported.is_empty() {
                break reported;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "rotation not seen on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(rotated.len(), tenth, "{url}");
        let after = map(&api, url, &mapper, &emails).await;
        let mut changed = 0;
        for email in &emails {
            let ((old_uid, bucket), (new_uid, _)) = (&before[email], &after[email]);
            if rotated.contains(bucket) {
                assert_ne!(old_uid, new_uid, "{email} in a rotated bucket, on {url}");
                changed += 1;
            } else {
                assert_eq!(
                    old_uid, new_uid,
                    "{email} not in a rotated bucket, on {url}"
                );
            }
        }
        assert!(changed > 0 && changed < emails.len(), "{changed}");
    }
}

/// Two rotations at once on one database (two CLI processes, or two operators) both apply:
/// key ids never collide, and neither salt rotation overwrites the other's buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn concurrent_rotations_on_postgres_all_apply() {
    let f = fleet(Arc::new(PgCluster::start().unwrap()), "concurrent");
    let count_keys = || {
        cli(&f.store, &["keys", "list"])
            .lines()
            .filter(|l| l.trim_start().starts_with("key "))
            .count()
    };
    let keys_before = count_keys();
    let keysets = cli(&f.store, &["keys", "list"])
        .lines()
        .filter(|l| l.starts_with("keyset") && l.contains(" enabled"))
        .count();
    let rotations: Vec<_> = (0..2)
        .map(|_| {
            let store = f.store.clone();
            std::thread::spawn(move || cli(&store, &["keys", "rotate"]))
        })
        .collect();
    for r in rotations {
        let printed = r.join().unwrap();
        assert!(printed.contains("created keys"), "{printed}");
    }
    assert_eq!(count_keys(), keys_before + 2 * keysets);

    // Salts: two rotations of 10 % from two connections at once.
    let store = uid2_store::open(&f.store).await.unwrap();
    let before = store.salts().await.unwrap().unwrap();
    let rotations: Vec<_> = (0..2)
        .map(|_| {
            let url = f.store.clone();
            tokio::spawn(async move {
                let store = uid2_store::open(&url).await.unwrap();
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
                rotate_salts(
                    store.as_ref(),
                    SaltFraction::new(0.1).unwrap(),
                    SaltPick::Any,
                    now_ms(),
                    &mut rng,
                    None,
                )
                .await
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    let mut rotated = BTreeSet::new();
    for r in rotations {
        let ids = r.await.unwrap();
        assert_eq!(ids.len(), support::SALT_BUCKETS.div_ceil(10));
        rotated.extend(ids);
    }
    let after = store.salts().await.unwrap().unwrap();
    assert_eq!(after.generation, before.generation + 2);
    let changed: BTreeSet<u32> = before
        .value
        .buckets
        .iter()
        .zip(&after.value.buckets)
        .filter(|(b, a)| b.current != a.current)
        .map(|(b, _)| b.id)
        .collect();
    assert_eq!(changed, rotated, "both rotations' buckets are rotated");
}

/// Both operators run the scheduler with short periods: across the two, each period gets one
/// rotation of each kind, never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn scheduled_rotations_happen_once_per_period_across_the_fleet() {
    let (keys_every, salts_every) = (3_i64, 2_i64);
    let f = fleet_with(
        Arc::new(PgCluster::start().unwrap()),
        "scheduler",
        &[
            "--rotate-keys-every",
            &keys_every.to_string(),
            "--key-activation-lead",
            "0",
            "--rotate-salts-every",
            &salts_every.to_string(),
            "--salt-rotation-fraction",
            "0.01",
        ],
    );
    // Polled until enough periods have passed to see each job run repeatedly.
    let store = uid2_store::open(&f.store).await.unwrap();
    let started = Instant::now();
    let (salt_runs, key_runs) = loop {
        let runs = rotation_runs(store.as_ref()).await;
        if runs.0.len() >= 3 && runs.1.len() >= 2 {
            break runs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "too few rotations: salts {:?}, keys {:?}",
            runs.0,
            runs.1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    drop((f.a, f.b));

    let mut times: Vec<i64> = salt_runs.keys().copied().collect();
    times.sort();
    println!("salt rotations at {times:?} (ms), buckets {salt_runs:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= salts_every * 1000,
            "two salt rotations within one period: {times:?}"
        );
    }
    let mut times: Vec<i64> = key_runs.keys().copied().collect();
    times.sort();
    println!("key rotations at {times:?} (s), keys {key_runs:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= keys_every,
            "two key rotations within one period: {times:?}"
        );
    }
    let per_run: BTreeSet<usize> = key_runs.values().copied().collect();
    assert_eq!(per_run.len(), 1, "every rotation adds one key per keyset");
}

/// The scheduler's rotations so far: salt rotations by the time they stamped on the buckets
/// they rotated (those with a previous salt; fewer than rotated if a later rotation took some
/// again), and key rotations by the creation time of their keys (one per enabled keyset; with
/// no lead they activate when created, while the keys set up before are back-dated).
async fn rotation_runs(
    store: &dyn uid2_store::Store,
) -> (HashMap<i64, usize>, HashMap<i64, usize>) {
    let mut salt_runs: HashMap<i64, usize> = HashMap::new();
    for b in store.salts().await.unwrap().unwrap().value.buckets {
        if b.previous.is_some() {
            *salt_runs.entry(b.last_updated_ms).or_default() += 1;
        }
    }
    let mut key_runs: HashMap<i64, usize> = HashMap::new();
    for k in store.keys().await.unwrap() {
        if k.activates_s == k.created_s {
            *key_runs.entry(k.created_s).or_default() += 1;
        }
    }
    (salt_runs, key_runs)
}
