//! The behaviour every backend must have, as functions the SQLite and PostgreSQL test files run
//! against their own stores.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use uid2_proto::identity::IdentityScope;
use uid2_proto::salt::{BucketSecret, Environment, RawUidSettings, SaltBucket};
use uid2_store::*;

/// `n` stores opened on `url`, each with its own connections, as `n` operators would have.
pub async fn stores(url: &str, n: usize) -> Vec<Arc<dyn Store>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(open(url).await.unwrap());
    }
    out
}

pub fn client(name: &str, lookup: u8) -> ClientRecord {
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

pub fn initial() -> InitialState {
    InitialState {
        api_key_pepper: "pepper".into(),
        // Not the defaults, so that a backend answering defaults is caught.
        raw_uids: RawUidSettings {
            scope: IdentityScope::Euid,
            environment: Environment::Prod,
            v3_from_salts: true,
        },
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

pub fn new_key(keyset_id: i32, secret: u8) -> NewKey {
    NewKey {
        keyset_id,
        secret: [secret; 32],
        created_s: 2,
        activates_s: 2,
        expires_s: 200,
    }
}

fn claim(job: &str, now_ms: i64) -> Precondition {
    Precondition {
        generation: None,
        claim: Some(Claim {
            job: job.into(),
            now_ms,
            period_ms: 500,
        }),
    }
}

/// Exercises `store`, which must be fresh.
pub async fn exercise(store: &dyn Store) {
    assert!(!store.is_initialized().await.unwrap());
    assert_eq!(store.raw_uid_settings().await.unwrap(), None);
    assert!(
        matches!(
            store
                .adopt_raw_uid_settings(&RawUidSettings::default())
                .await,
            Err(StoreError::Rejected(_))
        ),
        "an uninitialised store adopts nothing: initialising records the settings"
    );
    let g0 = store.generations().await.unwrap();
    // A salt table without buckets is refused: no identity could be mapped with it.
    let no_buckets = InitialState {
        salts: SaltState {
            buckets: vec![],
            ..initial().salts
        },
        ..initial()
    };
    assert!(matches!(
        store.initialize(&no_buckets).await,
        Err(StoreError::Rejected(_))
    ));
    assert!(!store.is_initialized().await.unwrap());
    // A key with an id above the next one a change would allocate.
    let mut state = initial();
    state.keys.push(KeyRecord {
        id: 7,
        keyset_id: -1,
        secret: [8; 32],
        created_s: 2,
        activates_s: 2,
        expires_s: 200,
    });
    assert!(store.initialize(&state).await.unwrap());
    assert!(
        !store.initialize(&initial()).await.unwrap(),
        "second initialisation must be refused"
    );
    assert_eq!(
        store.meta("api_key_pepper").await.unwrap().as_deref(),
        Some("pepper")
    );
    // The raw UID settings are recorded with the rest, and adopting others changes nothing.
    assert_eq!(
        store.raw_uid_settings().await.unwrap(),
        Some(initial().raw_uids)
    );
    assert_eq!(
        store
            .adopt_raw_uid_settings(&RawUidSettings::default())
            .await
            .unwrap(),
        initial().raw_uids
    );
    assert_eq!(
        store.raw_uid_settings().await.unwrap(),
        Some(initial().raw_uids)
    );

    let g1 = store.generations().await.unwrap();
    for kind in StateKind::ALL {
        assert!(
            g1.get(kind) > g0.get(kind) || kind == StateKind::Cstg,
            "{kind:?} not bumped"
        );
    }

    let salts = store.salts().await.unwrap().unwrap();
    assert_eq!(salts.value, initial().salts);
    assert_eq!(salts.generation, g1.salts);

    // Clients: insert, conflict on duplicates (with the database's own words), disable.
    store.insert_client(&client("second", 2)).await.unwrap();
    match store.insert_client(&client("second", 3)).await {
        Err(StoreError::Conflict(message)) => {
            assert!(
                message.contains("second")
                    || message.contains("UNIQUE")
                    || message.contains("unique"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(store.set_client_disabled("second", true).await.unwrap());
    assert!(!store.set_client_disabled("nobody", true).await.unwrap());
    let clients = store.clients().await.unwrap();
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().any(|c| c.name == "second" && c.disabled));
    // A client named after another's key id: the key id names exactly one client.
    let mut impostor = client("impostor", 4);
    impostor.name = "UID2-C-L-10-second".into();
    store.insert_client(&impostor).await.unwrap();
    assert!(
        store
            .set_client_disabled("UID2-C-L-10-second", false)
            .await
            .unwrap()
    );
    let clients = store.clients().await.unwrap();
    assert!(clients.iter().any(|c| c.name == "second" && !c.disabled));
    assert!(
        clients
            .iter()
            .any(|c| c.key_id == "UID2-C-L-10-impostor" && !c.disabled)
    );
    store
        .set_client_disabled("UID2-C-L-10-second", true)
        .await
        .unwrap();
    let clients = store.clients().await.unwrap();
    assert!(clients.iter().any(|c| c.name == "second" && c.disabled));
    assert!(
        clients
            .iter()
            .any(|c| c.key_id == "UID2-C-L-10-impostor" && !c.disabled),
        "only the client with that key id"
    );
    // By name, when no key id matches.
    assert!(
        store
            .set_client_disabled("UID2-C-L-10-second", false)
            .await
            .unwrap()
    );
    assert!(store.set_client_disabled("second", true).await.unwrap());
    assert!(store.generations().await.unwrap().clients > g1.clients);

    // Rekey: new key material under the same name, site, roles and state; the old key id is
    // gone, and a key id no client has (or a lookup hash another client holds) changes nothing.
    let g2 = store.generations().await.unwrap().clients;
    let second = async || {
        let clients = store.clients().await.unwrap();
        clients.into_iter().find(|c| c.name == "second").unwrap()
    };
    let old = second().await;
    let mut fresh = client("second-rekeyed", 5);
    fresh.secret = [7; 32];
    fresh.key_salt = "salt2".into();
    fresh.key_hash = "hash2".into();
    assert!(store.rekey_client(&old.key_id, &fresh).await.unwrap());
    assert!(store.generations().await.unwrap().clients > g2);
    let rekeyed = second().await;
    assert_eq!(
        rekeyed,
        ClientRecord {
            key_id: fresh.key_id.clone(),
            secret: fresh.secret,
            lookup_hash: fresh.lookup_hash,
            key_salt: fresh.key_salt.clone(),
            key_hash: fresh.key_hash.clone(),
            ..old.clone()
        }
    );
    assert!(!store.rekey_client(&old.key_id, &fresh).await.unwrap());
    let g3 = store.generations().await.unwrap().clients;
    assert!(matches!(
        store
            .rekey_client(&rekeyed.key_id, &client("other", 4))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.generations().await.unwrap().clients, g3);
    assert_eq!(store.clients().await.unwrap().len(), 3);

    // Sites upsert.
    let mut site = initial().sites[0].clone();
    site.app_names = vec!["com.example".into()];
    store.upsert_site(&site).await.unwrap();
    assert_eq!(store.sites().await.unwrap(), vec![site]);

    // Keys: a change allocates ids above every one in use (7, from initialisation) and removes.
    let change = KeyChange {
        add: vec![new_key(-1, 5), new_key(-1, 6)],
        remove: vec![1],
        ..KeyChange::default()
    };
    let g = store.generations().await.unwrap().keys;
    assert_eq!(
        store
            .change_keys(&change, &Precondition::default())
            .await
            .unwrap(),
        Conditional::Written(vec![8, 9])
    );
    let keys = store.keys().await.unwrap();
    assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), vec![7, 8, 9]);
    assert_eq!(keys[1].secret, [5; 32]);
    assert!(store.generations().await.unwrap().keys > g);
    assert_eq!(store.keysets().await.unwrap()[0].allowed_sites, None);
    // A key change conditioned on the generation it read fails once that moved.
    let stale = Precondition {
        generation: Some(g),
        claim: None,
    };
    assert_eq!(
        store.change_keys(&change, &stale).await.unwrap(),
        Conditional::Stale
    );
    assert_eq!(store.keys().await.unwrap().len(), 3, "nothing written");

    // A site's keyset: created with the next keyset id above the reserved ones and a key with
    // the next key id, once; asked again, nothing is written and the generation stays.
    let site_keyset = KeyChange {
        site_keyset: Some(SiteKeyset {
            keyset: KeysetRecord {
                id: 0,
                site_id: 10,
                name: "site".into(),
                allowed_sites: None,
                enabled: true,
                is_default: true,
                created_s: 3,
            },
            key: NewKey {
                keyset_id: 0,
                secret: [4; 32],
                created_s: 3,
                activates_s: 3,
                expires_s: 300,
            },
        }),
        ..KeyChange::default()
    };
    assert_eq!(
        store
            .change_keys(&site_keyset, &Precondition::default())
            .await
            .unwrap(),
        Conditional::Written(vec![10])
    );
    let keysets = store.keysets().await.unwrap();
    let own: Vec<_> = keysets.iter().filter(|k| k.site_id == 10).collect();
    assert_eq!(own.len(), 1, "{keysets:?}");
    assert_eq!((own[0].id, own[0].is_default), (3, true));
    let key = store.keys().await.unwrap().pop().unwrap();
    assert_eq!(
        (key.id, key.keyset_id, key.secret, key.expires_s),
        (10, 3, [4; 32], 300)
    );
    let g = store.generations().await.unwrap().keys;
    assert_eq!(
        store
            .change_keys(&site_keyset, &Precondition::default())
            .await
            .unwrap(),
        Conditional::Written(vec![])
    );
    assert_eq!(store.keysets().await.unwrap(), keysets);
    assert_eq!(store.generations().await.unwrap().keys, g);

    // Salts: a write conditioned on the generation it read succeeds once, the same write from
    // the same read is then stale; the first-level salt may never change.
    let mut rotated = salts.value.clone();
    rotated.buckets[5].current = BucketSecret::Salt("new".into());
    let from_read = Precondition {
        generation: Some(salts.generation),
        claim: None,
    };
    assert_eq!(
        store
            .replace_salt_buckets(&rotated, &from_read)
            .await
            .unwrap(),
        Conditional::Written(())
    );
    let after = store.salts().await.unwrap().unwrap();
    assert_eq!(after.value.buckets[5], rotated.buckets[5]);
    assert!(after.generation > salts.generation);
    let mut again = salts.value.clone();
    again.buckets[6].current = BucketSecret::Salt("lost".into());
    assert_eq!(
        store
            .replace_salt_buckets(&again, &from_read)
            .await
            .unwrap(),
        Conditional::Stale
    );
    assert_eq!(store.salts().await.unwrap().unwrap(), after);
    let mut bad = rotated.clone();
    bad.meta.first_level_salt = "other".into();
    assert!(matches!(
        store
            .replace_salt_buckets(&bad, &Precondition::default())
            .await,
        Err(StoreError::Conflict(_))
    ));
    let empty = SaltState {
        buckets: vec![],
        ..rotated.clone()
    };
    assert!(matches!(
        store
            .replace_salt_buckets(&empty, &Precondition::default())
            .await,
        Err(StoreError::Rejected(_))
    ));
    let (meta, table) = store.salt_table().await.unwrap().unwrap();
    assert_eq!(meta, initial().salts.meta);
    assert_eq!(table.len(), 40_000);

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

    // Periodic jobs are claimed by the write they accompany, once per period; a write that
    // fails does not consume its claim.
    assert_eq!(store.last_claim_ms("rotate").await.unwrap(), None);
    assert!(matches!(
        store
            .replace_salt_buckets(&bad, &claim("rotate", 1_000))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.last_claim_ms("rotate").await.unwrap(), None);
    assert_eq!(
        store
            .replace_salt_buckets(&rotated, &claim("rotate", 1_000))
            .await
            .unwrap(),
        Conditional::Written(())
    );
    assert_eq!(store.last_claim_ms("rotate").await.unwrap(), Some(1_000));
    assert_eq!(
        store
            .replace_salt_buckets(&rotated, &claim("rotate", 1_400))
            .await
            .unwrap(),
        Conditional::Unclaimed
    );
    assert_eq!(
        store
            .change_keys(&KeyChange::default(), &claim("other", 1_400))
            .await
            .unwrap(),
        Conditional::Written(vec![])
    );
    assert_eq!(
        store
            .replace_salt_buckets(&rotated, &claim("rotate", 1_500))
            .await
            .unwrap(),
        Conditional::Written(())
    );

    // Numeric settings only ever rise.
    assert_eq!(store.raise_setting("lifetime", 10).await.unwrap(), 10);
    assert_eq!(store.raise_setting("lifetime", 5).await.unwrap(), 10);
    assert_eq!(store.raise_setting("lifetime", 20).await.unwrap(), 20);

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

/// Makes an initialised store look like one initialised before raw UID settings were recorded
/// (the schema is the same; only these rows are new).
pub const FORGET_RAW_UID_SETTINGS: &str =
    "DELETE FROM store_meta WHERE name IN ('identity_scope', 'environment', 'v3_raw_uids')";

/// `stores` share one initialised store without recorded raw UID settings (see
/// [`FORGET_RAW_UID_SETTINGS`]): adopting different settings from each at once records exactly
/// one of them, which every adopter is told, once.
pub async fn an_old_store_adopts_settings_once(stores: Vec<Arc<dyn Store>>) {
    assert_eq!(stores[0].raw_uid_settings().await.unwrap(), None);
    let offers: Vec<RawUidSettings> = (0..stores.len())
        .map(|i| RawUidSettings {
            scope: if i % 2 == 0 {
                IdentityScope::Uid2
            } else {
                IdentityScope::Euid
            },
            environment: [Environment::Test, Environment::Integ, Environment::Prod][i % 3],
            v3_from_salts: i % 4 < 2,
        })
        .collect();
    let tasks: Vec<_> = stores
        .iter()
        .zip(&offers)
        .map(|(store, offer)| {
            let (store, offer) = (store.clone(), *offer);
            tokio::spawn(async move { store.adopt_raw_uid_settings(&offer).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let recorded = answers[0];
    assert!(
        answers.iter().all(|a| *a == recorded),
        "adopters disagree: {answers:?}"
    );
    assert!(offers.contains(&recorded));
    for store in &stores {
        assert_eq!(store.raw_uid_settings().await.unwrap(), Some(recorded));
    }
    // Once recorded, they stay.
    let other = offers.iter().find(|o| **o != recorded).unwrap();
    assert_eq!(
        stores[0].adopt_raw_uid_settings(other).await.unwrap(),
        recorded
    );
}

/// The ordering guarantee of [`Store::generations`]: `writers` append opt-outs in parallel
/// (each store its own connection, as operators are) while a poller on `reader` does what the
/// sync task does; every appended sequence number must reach the poller.
pub async fn optouts_become_visible_in_order(
    writers: Vec<Arc<dyn Store>>,
    reader: Arc<dyn Store>,
    per_writer: usize,
) {
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (reader, done) = (reader.clone(), done.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0i64, BTreeSet::new());
            loop {
                let finished = done.load(Ordering::SeqCst);
                let upto = reader.generations().await.unwrap().optout_seq;
                while cursor < upto {
                    let page = reader.optouts_after(cursor, 1_000).await.unwrap();
                    let Some(last) = page.last() else { break };
                    cursor = last.seq;
                    seen.extend(page.iter().map(|r| r.seq));
                }
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (w, store) in writers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let flh = [(w * 31 + i % 251) as u8; 32];
                seqs.push(store.append_optout(flh, None, i as i64).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut appended = BTreeSet::new();
    for t in tasks {
        appended.extend(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    let skipped: Vec<_> = appended.difference(&seen).collect();
    assert!(
        skipped.is_empty(),
        "the poller skipped {} of {} opt-outs (committed below its cursor): {:?}",
        skipped.len(),
        appended.len(),
        &skipped[..skipped.len().min(10)]
    );
}

/// Key changes from several processes at once each get their own ids, and all apply.
pub async fn concurrent_key_changes_all_apply(stores: Vec<Arc<dyn Store>>) {
    let before = stores[0].keys().await.unwrap().len();
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let change = KeyChange {
                add: vec![new_key(-1, i as u8), new_key(-1, i as u8)],
                ..KeyChange::default()
            };
            match store
                .change_keys(&change, &Precondition::default())
                .await
                .unwrap()
            {
                Conditional::Written(ids) => ids,
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), stores.len() * 2, "every change got distinct ids");
    assert_eq!(
        stores[0].keys().await.unwrap().len(),
        before + stores.len() * 2
    );
}
