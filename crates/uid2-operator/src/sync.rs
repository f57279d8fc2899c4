//! Loading snapshots from the store: everything at start-up, then only what changed.

use std::sync::Arc;

use uid2_store::{Generations, StateKind, Store, StoreError};

use crate::clients::ClientIndex;
use crate::config::OperatorConfig;
use crate::optout::{OptOutIndex, OptOutIndexBuilder};
use crate::snapshot::{KeyState, Salts, Snapshot, build_cstg};
use crate::{OperatorError, now_ms};

/// Opt-outs fetched per store round trip.
const OPTOUT_PAGE: usize = 50_000;

async fn load_clients(store: &dyn Store) -> Result<Arc<ClientIndex>, StoreError> {
    let pepper = store
        .meta("api_key_pepper")
        .await?
        .ok_or_else(|| StoreError::Corrupt("no api_key_pepper".into()))?;
    Ok(Arc::new(ClientIndex::new(pepper, &store.clients().await?)))
}

async fn load_keys(store: &dyn Store) -> Result<Arc<KeyState>, StoreError> {
    Ok(Arc::new(KeyState::new(
        &store.keysets().await?,
        &store.keys().await?,
    )))
}

async fn load_salts(store: &dyn Store) -> Result<Option<Arc<Salts>>, StoreError> {
    Ok(store
        .salt_table()
        .await?
        .map(|(meta, table)| Arc::new(Salts::new(&meta, table))))
}

async fn load_sites(store: &dyn Store) -> Result<Arc<crate::snapshot::SiteIndex>, StoreError> {
    Ok(Arc::new(
        store
            .sites()
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect(),
    ))
}

async fn load_cstg(store: &dyn Store) -> Result<Arc<crate::snapshot::CstgIndex>, StoreError> {
    Ok(Arc::new(build_cstg(&store.cstg_keypairs().await?)))
}

async fn new_optouts(
    store: &dyn Store,
    base: &OptOutIndex,
    upto: i64,
) -> Result<OptOutIndex, StoreError> {
    let mut index = base.clone();
    while index.last_seq() < upto {
        let page = store.optouts_after(index.last_seq(), OPTOUT_PAGE).await?;
        if page.is_empty() {
            break;
        }
        index = index.appended(&page);
    }
    Ok(index)
}

/// Loads a complete snapshot.
pub(crate) async fn load_full(
    store: &dyn Store,
    config: &Arc<OperatorConfig>,
) -> Result<Snapshot, OperatorError> {
    let generations = store.generations().await?;
    let salts = load_salts(store)
        .await?
        .ok_or(OperatorError::NotInitialized)?;
    let mut optouts = OptOutIndexBuilder::default();
    let mut after = 0;
    loop {
        let page = store.optouts_after(after, OPTOUT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        optouts.add(&page);
    }
    Ok(Snapshot {
        config: config.clone(),
        clients: load_clients(store).await?,
        keys: load_keys(store).await?,
        salts,
        sites: load_sites(store).await?,
        cstg: load_cstg(store).await?,
        optouts: Arc::new(optouts.finish()),
        generations,
        synced_at_ms: now_ms(),
    })
}

/// A new snapshot if anything changed since `current`, else `None`.
pub(crate) async fn refresh(
    store: &dyn Store,
    current: &Snapshot,
) -> Result<Option<Snapshot>, StoreError> {
    let g: Generations = store.generations().await?;
    let changed = |kind: StateKind| g.get(kind) != current.generations.get(kind);
    let optouts_changed = g.optout_seq > current.optouts.last_seq();
    if !StateKind::ALL.into_iter().any(changed) && !optouts_changed {
        return Ok(None);
    }
    let salts = if changed(StateKind::Salts) {
        load_salts(store)
            .await?
            .unwrap_or_else(|| current.salts.clone())
    } else {
        current.salts.clone()
    };
    Ok(Some(Snapshot {
        config: current.config.clone(),
        clients: if changed(StateKind::Clients) {
            load_clients(store).await?
        } else {
            current.clients.clone()
        },
        keys: if changed(StateKind::Keys) {
            load_keys(store).await?
        } else {
            current.keys.clone()
        },
        salts,
        sites: if changed(StateKind::Sites) {
            load_sites(store).await?
        } else {
            current.sites.clone()
        },
        cstg: if changed(StateKind::Cstg) {
            load_cstg(store).await?
        } else {
            current.cstg.clone()
        },
        optouts: if optouts_changed {
            Arc::new(new_optouts(store, &current.optouts, g.optout_seq).await?)
        } else {
            current.optouts.clone()
        },
        generations: g,
        synced_at_ms: now_ms(),
    }))
}

/// `current` with a new opt-out index.
pub(crate) fn with_optouts(current: &Snapshot, optouts: Arc<OptOutIndex>) -> Snapshot {
    Snapshot {
        config: current.config.clone(),
        clients: current.clients.clone(),
        keys: current.keys.clone(),
        salts: current.salts.clone(),
        sites: current.sites.clone(),
        cstg: current.cstg.clone(),
        optouts,
        generations: current.generations,
        synced_at_ms: current.synced_at_ms,
    }
}
