//! The store contract (see `common`) run against SQLite; `postgres.rs` runs it against a real
//! PostgreSQL.

mod common;

use uid2_store::*;

/// An SQLite store in `dir`, initialised: its file and its URL.
async fn initialised_store(dir: &tempfile::TempDir) -> (std::path::PathBuf, String) {
    let path = dir.path().join("uid2.db");
    let url = format!("sqlite://{}", path.display());
    open(&url)
        .await
        .unwrap()
        .initialize(&common::initial())
        .await
        .unwrap();
    (path, url)
}

#[tokio::test]
async fn sqlite_store_honours_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/uid2.db", dir.path().display());
    let store = open(&url).await.unwrap();
    common::exercise(store.as_ref()).await;
    // Reopening sees the same data (and does not migrate twice).
    drop(store);
    let again = open(&url).await.unwrap();
    assert_eq!(again.clients().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_in_parallel_keep_the_ordering_guarantee() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/uid2.db", dir.path().display());
    let stores = common::stores(&url, 4).await;
    stores[0].initialize(&common::initial()).await.unwrap();
    common::concurrent_key_changes_all_apply(stores.clone()).await;
    common::optouts_become_visible_in_order(stores.clone(), stores[0].clone(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_initialised_before_settings_were_recorded_adopts_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = initialised_store(&dir).await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(common::FORGET_RAW_UID_SETTINGS, [])
        .unwrap();
    let stores = common::stores(&url, 4).await;
    common::an_old_store_adopts_settings_once(stores).await;
}

#[tokio::test]
async fn opening_an_existing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo/uid2.db");
    let url = |path: &std::path::Path| format!("sqlite://{}", path.display());
    assert!(open_existing(&url(&missing)).await.unwrap().is_none());
    assert!(!dir.path().join("typo").exists(), "a directory was created");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(open_existing(&url(&empty)).await.unwrap().is_none());
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    // Another application's database: left without this schema.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute("CREATE TABLE notes (body TEXT)", [])
        .unwrap();
    assert!(open_existing(&url(&foreign)).await.unwrap().is_none());
    let tables: i64 = rusqlite::Connection::open(&foreign)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "the schema was created in another database");

    // A store with the schema opens, initialised or not.
    let store_path = dir.path().join("uid2.db");
    open(&url(&store_path)).await.unwrap();
    let existing = open_existing(&url(&store_path))
        .await
        .unwrap()
        .expect("opens");
    assert!(!existing.is_initialized().await.unwrap());
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        open("mysql://x").await,
        Err(StoreError::BadUrl(_))
    ));
    assert!(matches!(open("").await, Err(StoreError::BadUrl(_))));
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().display();
    for url in [
        format!("sqlite:{here}/a.db"),
        format!("sqlite://{here}/b.db?mode=rwc"),
    ] {
        assert!(
            matches!(open(&url).await, Err(StoreError::BadUrl(_))),
            "{url}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused URL created a file"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("nested");
    let path = nested.join("uid2.db");
    let store = open(&format!("sqlite://{}", path.display())).await.unwrap();
    // A write, so that the write-ahead log exists too.
    store.initialize(&common::initial()).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&nested), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = nested.join("uid2.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
}

/// Damage to a store's file is refused as corrupt, never acted on: a bucket count of
/// trillions (which once made the loader reserve terabytes and abort the process), an empty
/// first-level salt (every raw UID would silently change), a schema from a newer binary that
/// did not say older ones may use it.
#[tokio::test]
async fn a_damaged_sqlite_store_is_refused_not_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = initialised_store(&dir).await;
    let damage = |sql: &str| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    };

    damage("UPDATE salt_meta SET bucket_count = 999999999999");
    let store = open(&url).await.unwrap();
    assert!(
        matches!(store.salt_table().await, Err(StoreError::Corrupt(m)) if m.contains("999999999999")),
        "bucket count"
    );
    assert!(matches!(store.salts().await, Err(StoreError::Corrupt(_))));

    damage("UPDATE salt_meta SET bucket_count = 4, first_level_salt = ''");
    let refused = store.salt_table().await;
    assert!(
        matches!(&refused, Err(StoreError::Corrupt(m)) if m.contains("first-level salt")),
        "{refused:?}"
    );
    drop(store);

    damage("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)");
    let refused = open(&url).await.map(|_| ());
    assert!(
        matches!(&refused, Err(StoreError::Rejected(m)) if m.contains("version 99")),
        "{refused:?}"
    );
    // Unless the newer binary said binaries knowing this one's versions may still use it.
    damage("INSERT INTO store_meta (name, value) VALUES ('schema_min_reader', '2')");
    assert!(open(&url).await.is_ok());
}
