//! Administration against a store that others write at the same time, and the deployment
//! settings a store is fixed to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use uid2_operator::admin::{add_optout, add_site, ensure_initialized};
use uid2_operator::deployment::{GivenSettings, settle};
use uid2_operator::rotation::{KeyRotationPolicy, rotate_keys};
use uid2_operator::{Operator, OperatorConfig, now_ms};
use uid2_proto::identity::{HashedIdentity, IdentityScope};
use uid2_store::{SiteRecord, Store, StoreError};
use uid2_testkit::store::HookedStore;

fn site(id: i32) -> SiteRecord {
    SiteRecord {
        id,
        name: format!("site {id}"),
        enabled: true,
        domain_names: vec![],
        app_names: vec![],
        created_s: now_ms() / 1000,
    }
}

async fn store(config: &OperatorConfig) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = uid2_store::open(&format!("sqlite://{}/uid2.db", dir.path().display()))
        .await
        .unwrap();
    ensure_initialized(store.as_ref(), config, 64, now_ms(), &mut rand::rng())
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_site_added_while_keys_change_gets_its_keyset_and_key() {
    let (_dir, inner) = store(&OperatorConfig::default()).await;
    // Just before the site's keyset is written (once), other admins add the same site and
    // another one, and a rotation adds a key to every keyset: the store still gives each site
    // exactly one keyset, with ids no other write took.
    let raced = Arc::new(AtomicBool::new(false));
    let (other, flag) = (inner.clone(), raced.clone());
    let hooked = HookedStore::new(inner.clone(), move |op| {
        let race = op == "change_keys" && !flag.swap(true, Ordering::SeqCst);
        let other = other.clone();
        async move {
            if race {
                // Seeded: the thread's generator cannot be held across awaits of a hook.
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
                for id in [2001, 3001] {
                    add_site(other.as_ref(), site(id), now_ms(), &mut rng)
                        .await
                        .map_err(|e| StoreError::Rejected(e.to_string()))?;
                }
                rotate_keys(
                    other.as_ref(),
                    KeyRotationPolicy::default(),
                    now_ms(),
                    &mut rng,
                    None,
                )
                .await?;
            }
            Ok(())
        }
    });

    add_site(&hooked, site(2001), now_ms(), &mut rand::rng())
        .await
        .unwrap();
    assert!(raced.load(Ordering::SeqCst), "the race was run");

    let keysets = inner.keysets().await.unwrap();
    let keys = inner.keys().await.unwrap();
    for site_id in [2001, 3001] {
        let own: Vec<_> = keysets.iter().filter(|k| k.site_id == site_id).collect();
        assert_eq!(own.len(), 1, "site {site_id}: {keysets:?}");
        assert!(
            keys.iter().any(|k| k.keyset_id == own[0].id),
            "site {site_id} has a key"
        );
    }
    // Adding the site again changes no keys.
    let before = inner.generations().await.unwrap().keys;
    add_site(inner.as_ref(), site(2001), now_ms(), &mut rand::rng())
        .await
        .unwrap();
    assert_eq!(inner.generations().await.unwrap().keys, before);
}

#[tokio::test]
async fn settings_that_disagree_with_the_store_are_refused() {
    let v3 = OperatorConfig {
        v3_raw_uids: true,
        ..OperatorConfig::default()
    };
    let (_dir, store) = store(&v3).await;
    let identity = HashedIdentity::from_email("someone@example.com").unwrap();

    // An opt-out with a 32-byte raw UID would never be found by these operators (33 bytes):
    // settings that disagree with the store's do not settle, so nothing can be derived with them.
    match settle(
        store.clone(),
        &GivenSettings::all(OperatorConfig::default().raw_uid_settings()),
    )
    .await
    {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("v3 raw UIDs false was given, the store has true"),
                "{message}"
            );
        }
        Ok(settled) => panic!("{settled:?}"),
    }
    // Given nothing, the store's own settings are used.
    let settled = settle(store.clone(), &GivenSettings::default())
        .await
        .unwrap();
    assert_eq!(settled.settings(), v3.raw_uid_settings());
    let recorded = add_optout(&settled, &identity, now_ms()).await.unwrap();
    assert_eq!(recorded.advertising_id.map(|id| id.len()), Some(33));

    let euid = OperatorConfig {
        identity_scope: IdentityScope::Euid,
        ..v3.clone()
    };
    match settle(store.clone(), &GivenSettings::all(euid.raw_uid_settings())).await {
        Err(e) => assert!(
            e.to_string()
                .contains("identity scope EUID was given, the store has UID2"),
            "{e}"
        ),
        Ok(settled) => panic!("{settled:?}"),
    }
    let settled = settle(store, &GivenSettings::all(v3.raw_uid_settings()))
        .await
        .unwrap();
    Operator::load(settled, v3).await.unwrap();
}
