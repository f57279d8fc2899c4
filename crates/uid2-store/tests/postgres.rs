//! The store contract (see `common`) and the fleet's failure modes, against a real PostgreSQL
//! started by the test (`uid2_testkit::pg`). Run by `scripts/test.sh` (`--include-ignored`).

mod common;

use std::time::{Duration, Instant};

use uid2_store::*;
use uid2_testkit::pg::PgCluster;

#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn postgres_store_honours_the_contract() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("contract").unwrap();
    // An empty database is not set up by a command that only uses existing stores.
    assert!(open_existing(&url).await.unwrap().is_none());
    let store = open(&url).await.unwrap();
    assert!(open_existing(&url).await.unwrap().is_some());
    assert!(store.describe().starts_with("postgres://127.0.0.1:"));
    common::exercise(store.as_ref()).await;
    // PostgreSQL has its own backup tools; the store says so instead of writing a file.
    let refused = store
        .back_up(std::path::Path::new("/nonexistent/backup.db"))
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Rejected(m)) if m.contains("pg_dump")),
        "{refused:?}"
    );
    // A second connection (another operator) migrates nothing and sees the same data.
    let again = open(&url).await.unwrap();
    assert_eq!(again.clients().await.unwrap().len(), 3);
    assert_eq!(
        again.generations().await.unwrap(),
        store.generations().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn operators_starting_together_on_an_empty_database_initialise_it_once() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("first_start").unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let store = open(&url).await.unwrap();
                store.initialize(&common::initial()).await.unwrap()
            })
        })
        .collect();
    let mut initialised = 0;
    for t in tasks {
        initialised += usize::from(t.await.unwrap());
    }
    assert_eq!(initialised, 1, "exactly one operator initialises the store");
    let store = open(&url).await.unwrap();
    assert_eq!(store.clients().await.unwrap().len(), 1);
    assert_eq!(store.keys().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn postgres_store_initialised_before_settings_were_recorded_adopts_them_once() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("adopt").unwrap();
    let adopters = common::stores(&url, 6).await;
    adopters[0].initialize(&common::initial()).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(common::FORGET_RAW_UID_SETTINGS)
        .await
        .unwrap();
    common::an_old_store_adopts_settings_once(adopters).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn parallel_writers_on_postgres_keep_the_ordering_guarantee() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("ordering").unwrap();
    // Eight stores, each with its own connections, as eight operators would be.
    let writers = common::stores(&url, 8).await;
    writers[0].initialize(&common::initial()).await.unwrap();
    common::concurrent_key_changes_all_apply(writers.clone()).await;
    let reader = open(&url).await.unwrap();
    common::optouts_become_visible_in_order(writers, reader, 250).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn postgres_outage_is_an_unavailable_error_and_recovery_is_automatic() {
    let cluster = PgCluster::start().unwrap();
    let store = open(&cluster.url()).await.unwrap();
    store.initialize(&common::initial()).await.unwrap();
    cluster.stop().unwrap();
    assert!(matches!(
        store.generations().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.append_optout([1; 32], None, 1).await,
        Err(StoreError::Unavailable(_))
    ));
    cluster.restart().unwrap();
    // The next calls reconnect by themselves (once the breaker's short backoff has passed).
    let record = eventually(|| store.append_optout([1; 32], None, 1)).await;
    assert_eq!(store.optouts_after(0, 10).await.unwrap(), vec![record]);
}

/// The database hangs (every process stopped): opt-out writes, several at once, are refused
/// with the retryable error within the call deadline (5 s; 6 s allowed), later calls fail at
/// once instead of queueing, and everything recovers when the database runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn a_hung_database_refuses_writes_within_the_deadline_and_recovers() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("hang").unwrap();
    let store = open(&url).await.unwrap();
    store.initialize(&common::initial()).await.unwrap();
    // Warm the pool: idle connections to a paused server hang rather than fail.
    for i in 0..4u8 {
        store.append_optout([i; 32], None, 1).await.unwrap();
    }

    cluster.pause().unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..6u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let outcome = store.append_optout([100 + i; 32], None, 2).await;
                (outcome, began.elapsed())
            })
        })
        .collect();
    let mut elapsed = Vec::new();
    for t in tasks {
        let (outcome, took) = t.await.unwrap();
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
        elapsed.push(took);
    }
    println!("6 concurrent opt-out writes on a hung database refused after {elapsed:?}");
    assert!(
        elapsed.iter().all(|t| *t <= Duration::from_secs(6)),
        "each refusal within 6 s: {elapsed:?}"
    );
    // While the breaker is open, calls are refused without trying the database (the message
    // says so), so nothing queues behind the hung connections.
    match store.generations().await {
        Err(StoreError::Unavailable(message)) => assert!(
            message.contains("next attempt in") || message.contains("reconnecting"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60));

    cluster.resume().unwrap();
    let record = eventually(|| store.append_optout([200; 32], None, 3)).await;
    let all = store.optouts_after(0, 100).await.unwrap();
    assert_eq!(all.last(), Some(&record));
    assert!(
        all.iter().all(|r| r.opted_out_at_ms != 2),
        "refused writes were not made"
    );
}

/// The advisory lock key the store takes for every opt-out append.
const OPT_OUT_LOCK: i64 = 0x5549_4432_0003;

/// Another session holds the opt-out lock for long (an operator that froze mid-write): opt-out
/// writes, more at once than there are connections, are refused as busy within the call
/// deadline, the store still counts as reachable
/// (reads answer at once, no circuit breaker opens), and once the holder lets go writes go
/// through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn a_lock_held_too_long_makes_writes_busy_not_the_store_unreachable() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("busy").unwrap();
    let store = open(&url).await.unwrap();
    store.initialize(&common::initial()).await.unwrap();

    let (mut holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let held = holder.transaction().await.unwrap();
    held.execute("SELECT pg_advisory_xact_lock($1)", &[&OPT_OUT_LOCK])
        .await
        .unwrap();

    // More writers at once than the store has connections: each is refused as busy, within
    // its call's deadline (5 s; 6 s allowed), none as unreachable.
    let writers: Vec<_> = (0..10u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let outcome = store.append_optout([i; 32], None, 1).await;
                (outcome, began.elapsed())
            })
        })
        .collect();
    for writer in writers {
        let (outcome, took) = writer.await.unwrap();
        assert!(matches!(outcome, Err(StoreError::Busy(_))), "{outcome:?}");
        assert!(took < Duration::from_secs(6), "refused after {took:?}");
    }
    // Reachable: reads answer at once, not "reconnecting".
    store.generations().await.unwrap();
    assert!(store.optouts_after(0, 10).await.unwrap().is_empty());

    held.rollback().await.unwrap();
    let record = store.append_optout([9; 32], None, 2).await.unwrap();
    assert_eq!(store.optouts_after(0, 10).await.unwrap(), vec![record]);
}

/// A database set to `synchronous_commit = off` (commits acknowledged before their WAL is on
/// disk) still gets durable opt-outs: each write raises the setting for its own transaction.
/// A trigger records what the writing transaction itself runs with.
#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn writes_are_durable_on_a_database_that_commits_asynchronously() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.database("async_commit").unwrap();
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("ALTER DATABASE async_commit SET synchronous_commit = off")
        .await
        .unwrap();
    let store = open(&url).await.unwrap();
    store.initialize(&common::initial()).await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE commit_modes (mode TEXT NOT NULL);
             CREATE FUNCTION record_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO commit_modes VALUES (current_setting('synchronous_commit'));
               RETURN NEW;
             END $$;
             CREATE TRIGGER record_commit_mode AFTER INSERT ON optouts
               FOR EACH ROW EXECUTE FUNCTION record_commit_mode();",
        )
        .await
        .unwrap();
    // What a session of this database runs with unless told otherwise.
    let (fresh, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let default: String = fresh
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, "off");

    store.append_optout([7; 32], None, 1).await.unwrap();
    let modes: Vec<String> = admin
        .query("SELECT mode FROM commit_modes", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(modes, ["local"]);
}

/// Retries `call` until it succeeds (at most 30 s).
async fn eventually<T, F: Future<Output = Result<T>>>(mut call: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return value,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    }
}

/// A database that takes TLS connections only, its certificate for `localhost` from a private
/// CA: every mode that encrypts connects (the checking ones only with the CA given, and
/// `verify-full` only by the certificate's name), `disable` is turned away by the server, and
/// no refusal shows the password.
#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn tls_is_used_and_checked_as_the_url_asks() {
    let cluster = PgCluster::start_tls_only().unwrap();
    let ca = cluster.ca_file().display().to_string();
    let port = cluster
        .url()
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let by_ip = |params: &str| format!("postgres://postgres:pw@127.0.0.1:{port}/postgres?{params}");
    let by_name = |params: &str| cluster.localhost_url(params);

    let connects = [
        by_name(""), // prefer: TLS, as the server offers it
        by_name("sslmode=require"),
        by_name(&format!("sslmode=verify-full&sslrootcert={ca}")),
        by_name(&format!("sslmode=verify-ca&sslrootcert={ca}")),
        // verify-ca does not care which name the certificate is for.
        by_ip(&format!("sslmode=verify-ca&sslrootcert={ca}")),
        // require with a root certificate checks the chain, as libpq does.
        by_name(&format!("sslmode=require&sslrootcert={ca}")),
    ];
    for url in &connects {
        let store = open(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        store.generations().await.unwrap();
    }

    let refused = [
        // The server takes no plain connection.
        (by_name("sslmode=disable"), "no encryption"),
        // Not the name the certificate is for.
        (
            by_ip(&format!("sslmode=verify-full&sslrootcert={ca}")),
            "not valid for name",
        ),
        // The private CA is not among the system's roots.
        (by_name("sslmode=verify-full"), "UnknownIssuer"),
    ];
    for (url, why) in &refused {
        let Err(e) = open(url).await else {
            panic!("{url} connected");
        };
        let message = e.to_string();
        assert!(message.contains(why), "{url}: {message}");
        assert!(!message.contains(":pw@"), "{message}");
    }
    let Err(e) = open(&by_name("sslmode=allow")).await else {
        panic!("sslmode=allow accepted");
    };
    assert!(matches!(e, StoreError::BadUrl(_)), "{e}");
}
