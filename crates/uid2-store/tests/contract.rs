//! The behaviour every backend must have, run against SQLite here (and against a real
//! PostgreSQL by the fleet tests).

use uid2_proto::salt::{BucketSecret, SaltBucket};
use uid2_store::*;

fn client(name: &str, lookup: u8) -> ClientRecord {
    ClientRecord {
        key_id: format!("UID2-C-L-10-{name}"),
        name: name.to_owned(),
        site_id: 10,
        roles: vec![Role::Generator, Role::Mapper],
        secret: [1; 32],
        lookup_hash: [lookup; 32],
        key_salt: "salt".into(),
        key_hash: "hash".into(),
        disabled: false,
        created_s: 1,
    }
}

fn initial() -> InitialState {
    InitialState {
        api_key_pepper: "pepper".into(),
        salts: SaltState {
            meta: SaltMeta {
                first_level_salt: "fls".into(),
                id_prefix: "b".into(),
                id_secret: "secret".into(),
            },
            buckets: (0..40_000u32)
                .map(|i| SaltBucket {
                    id: 1_000_000 + i,
                    last_updated_ms: i as i64,
                    refresh_from_ms: Some(7),
                    current: BucketSecret::Salt(format!("salt{i}")),
                    previous: None,
                })
                .collect(),
        },
        keysets: vec![KeysetRecord {
            id: -1,
            site_id: -1,
            name: "master".into(),
            allowed_sites: None,
            enabled: true,
            is_default: true,
            created_s: 1,
        }],
        keys: vec![KeyRecord {
            id: 1,
            keyset_id: -1,
            secret: [9; 32],
            created_s: 1,
            activates_s: 1,
            expires_s: 100,
        }],
        sites: vec![SiteRecord {
            id: 10,
            name: "site".into(),
            enabled: true,
            domain_names: vec!["example.com".into()],
            app_names: vec![],
            created_s: 1,
        }],
        clients: vec![client("first", 1)],
        cstg_keypairs: vec![],
    }
}

/// Exercises `store`, which must be fresh.
pub async fn exercise(store: &dyn Store) {
    assert!(!store.is_initialized().await.unwrap());
    let g0 = store.generations().await.unwrap();
    assert!(store.initialize(&initial()).await.unwrap());
    assert!(
        !store.initialize(&initial()).await.unwrap(),
        "second initialisation must be refused"
    );
    assert_eq!(
        store.meta("api_key_pepper").await.unwrap().as_deref(),
        Some("pepper")
    );

    let g1 = store.generations().await.unwrap();
    for kind in StateKind::ALL {
        assert!(
            g1.get(kind) > g0.get(kind) || kind == StateKind::Cstg,
            "{kind:?} not bumped"
        );
    }

    let salts = store.salts().await.unwrap().unwrap();
    assert_eq!(salts, initial().salts);

    // Clients: insert, conflict on duplicates, disable by name or key id.
    store.insert_client(&client("second", 2)).await.unwrap();
    assert!(matches!(
        store.insert_client(&client("second", 3)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.set_client_disabled("second", true).await.unwrap());
    assert!(!store.set_client_disabled("nobody", true).await.unwrap());
    let clients = store.clients().await.unwrap();
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().any(|c| c.name == "second" && c.disabled));
    assert!(store.generations().await.unwrap().clients > g1.clients);

    // Sites upsert.
    let mut site = initial().sites[0].clone();
    site.app_names = vec!["com.example".into()];
    store.upsert_site(&site).await.unwrap();
    assert_eq!(store.sites().await.unwrap(), vec![site]);

    // Keys.
    store
        .insert_keys(
            &[],
            &[KeyRecord {
                id: 2,
                keyset_id: -1,
                secret: [8; 32],
                created_s: 2,
                activates_s: 2,
                expires_s: 200,
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.keys().await.unwrap().len(), 2);
    store.delete_keys(&[1]).await.unwrap();
    assert_eq!(
        store
            .keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.id)
            .collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(store.keysets().await.unwrap()[0].allowed_sites, None);

    // Salts: buckets may change, the first-level salt may not.
    let mut rotated = salts.clone();
    rotated.buckets[5].current = BucketSecret::Salt("new".into());
    store.put_salt_buckets(&rotated).await.unwrap();
    assert_eq!(
        store.salts().await.unwrap().unwrap().buckets[5],
        rotated.buckets[5]
    );
    let mut bad = rotated.clone();
    bad.meta.first_level_salt = "other".into();
    assert!(matches!(
        store.put_salt_buckets(&bad).await,
        Err(StoreError::Conflict(_))
    ));

    // CSTG key pairs.
    let kp = CstgKeypairRecord {
        subscription_id: "sub".into(),
        site_id: 10,
        public_key: "UID2-X-L-abc".into(),
        private_key: "UID2-Y-L-def".into(),
        disabled: false,
        created_s: 3,
    };
    store.insert_cstg_keypair(&kp).await.unwrap();
    assert_eq!(store.cstg_keypairs().await.unwrap(), vec![kp]);

    // Periodic jobs are claimed once per period.
    assert!(store.try_claim("rotate", 1_000, 500).await.unwrap());
    assert!(!store.try_claim("rotate", 1_400, 500).await.unwrap());
    assert!(store.try_claim("other", 1_400, 500).await.unwrap());
    assert!(store.try_claim("rotate", 1_500, 500).await.unwrap());

    // Opt-outs: append-only, in order, paged.
    let mut seqs = Vec::new();
    for i in 0..5u8 {
        let r = store
            .append_optout([i; 32], Some(vec![i; 32]), 1000 + i64::from(i))
            .await
            .unwrap();
        seqs.push(r.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.generations().await.unwrap().optout_seq, seqs[4]);
    let page = store.optouts_after(seqs[1], 2).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![seqs[2], seqs[3]]
    );
    assert_eq!(page[0].first_level_hash, [2; 32]);
    assert_eq!(page[0].advertising_id.as_deref(), Some(&[2u8; 32][..]));
    assert_eq!(page[0].opted_out_at_ms, 1002);
}

#[tokio::test]
async fn sqlite_store_honours_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/uid2.db", dir.path().display());
    let store = open(&url).await.unwrap();
    exercise(store.as_ref()).await;
    // Reopening sees the same data (and does not migrate twice).
    drop(store);
    let again = open(&url).await.unwrap();
    assert_eq!(again.clients().await.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        open("mysql://x").await,
        Err(StoreError::BadUrl(_))
    ));
    assert!(matches!(open("").await, Err(StoreError::BadUrl(_))));
}

#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn postgres_store_honours_the_contract() {
    let cluster = uid2_testkit::pg::PgCluster::start().unwrap();
    let url = cluster.database("contract").unwrap();
    let store = open(&url).await.unwrap();
    assert!(store.describe().starts_with("postgres://127.0.0.1:"));
    exercise(store.as_ref()).await;
    // A second connection (another operator) migrates nothing and sees the same data.
    let again = open(&url).await.unwrap();
    assert_eq!(again.clients().await.unwrap().len(), 2);
    assert_eq!(
        again.generations().await.unwrap(),
        store.generations().await.unwrap()
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL server binaries; scripts/test.sh runs it"]
async fn postgres_outage_is_an_unavailable_error_and_recovery_is_automatic() {
    let cluster = uid2_testkit::pg::PgCluster::start().unwrap();
    let store = open(&cluster.url()).await.unwrap();
    store.initialize(&initial()).await.unwrap();
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
    // The next call reconnects by itself.
    let record = store.append_optout([1; 32], None, 1).await.unwrap();
    assert_eq!(store.optouts_after(0, 10).await.unwrap(), vec![record]);
}
