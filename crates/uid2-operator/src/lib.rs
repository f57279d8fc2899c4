//! The UID2 operator service as a library.
//!
//! An [`Operator`] holds the current [`Snapshot`] behind an atomic pointer: request handlers load
//! it once and compute, never waiting on the store. A sync task polls the store's generation
//! counters and swaps in a new snapshot when something changed; opt-outs recorded through this
//! operator are written to the store first and applied to the local snapshot at once.
//!
//! - [`config`]: settings; [`snapshot`]: the in-memory state; [`clients`]: API-key auth;
//! - [`identity_service`]: mint, refresh, map; [`optout`]: the opt-out index;
//! - [`admin`]: creating clients, sites, keys, salts (used by the CLI and bootstrap);
//! - [`deployment`]: the settings fixed per store (identity scope, environment, v3 raw UIDs);
//! - [`domain_names`]: which domain a page's origin counts as, and what a site may list;
//! - [`http`]: the routes.

pub mod admin;
pub mod clients;
pub mod config;
pub mod deployment;
pub mod domain_names;
pub mod http;
pub mod identity_service;
pub mod metrics;
pub mod optout;
pub mod rotation;
pub mod snapshot;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use uid2_store::{OptOutRecord, Store, StoreError};

pub use config::OperatorConfig;
pub use snapshot::Snapshot;
pub use sync::SyncError;

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An operator that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no salts or keys yet.
    #[error(
        "the store is not initialised (run `uid2 init`, or `uid2 serve`, which initialises an empty store)"
    )]
    NotInitialized,
    /// Invalid settings.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Work run off the async runtime while loading failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// Health of the connection to the store, as the sync passes and opt-out writes meet it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    last_success_ms: AtomicI64,
    consecutive_failures: AtomicU64,
    errors_total: AtomicU64,
    /// Since when every store access has failed as unavailable (0: the store answers).
    unreachable_since_ms: AtomicI64,
}

impl StoreHealth {
    /// A sync pass that met no store error (the snapshot may still wait for salts being
    /// reloaded beside it: [`Snapshot::synced_at_ms`] says when it was last current in every part).
    fn success(&self, now: i64) {
        self.last_success_ms.store(now, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.unreachable_since_ms.store(0, Ordering::Relaxed);
    }

    /// A failed sync pass or write; `unreachable` when the store could not be reached at all
    /// ([`StoreError::Unavailable`]) rather than answering with an error (data that does not
    /// load, say).
    fn failure(&self, unreachable: bool, now: i64) {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        if unreachable {
            // Keeps the start of an outage that is already known.
            let _ = self.unreachable_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.unreachable_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// When a sync pass last met no store error (ms).
    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Ordering::Relaxed)
    }

    /// Failed sync passes and writes in a row.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Store errors since start.
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }

    /// Since when the store cannot be reached (ms): every access since then failed as
    /// unavailable. `None` while it answers, even with errors.
    pub fn unreachable_since_ms(&self) -> Option<i64> {
        Some(self.unreachable_since_ms.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }
}

/// A running operator's state.
pub struct Operator {
    snapshot: ArcSwap<Snapshot>,
    store: Arc<dyn Store>,
    config: Arc<OperatorConfig>,
    /// Serialises snapshot replacement (sync and local opt-outs), so no update is lost.
    writer: tokio::sync::Mutex<()>,
    /// One opt-out sync at a time (the loop and any caller of [`Operator::sync_once`]): a pass
    /// merges from the index it started with, so two at once could each miss the other's.
    optout_sync: tokio::sync::Mutex<()>,
    health: StoreHealth,
    batch: http::batch::BatchPool,
    request_metrics: metrics::RequestMetrics,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Loads the whole state from `store`. Raw UIDs are derived with the deployment settings
    /// the store records (see [`deployment`]): they replace those of `config`.
    pub async fn load(
        store: deployment::SettledStore,
        config: OperatorConfig,
    ) -> Result<Arc<Self>, OperatorError> {
        config.validate()?;
        let config = Arc::new(config.with_raw_uid_settings(store.settings()));
        let store = store.store().clone();
        // Before serving: rotations anywhere in the fleet then keep keys as long as the tokens
        // this operator issues can live.
        rotation::record_token_lifetime(store.as_ref(), &config).await?;
        let snapshot = sync::load_full(store.as_ref(), &config).await?;
        let health = StoreHealth::default();
        health.success(now_ms());
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            store,
            config,
            writer: tokio::sync::Mutex::new(()),
            optout_sync: tokio::sync::Mutex::new(()),
            health,
            batch: http::batch::BatchPool::new(),
            request_metrics: metrics::RequestMetrics::new(&http::route_paths()),
        }))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Settings.
    pub fn config(&self) -> &Arc<OperatorConfig> {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Request counters and latency histograms.
    pub fn request_metrics(&self) -> &metrics::RequestMetrics {
        &self.request_metrics
    }

    /// Store connection health.
    pub fn store_health(&self) -> &StoreHealth {
        &self.health
    }

    /// Reads what changed in the store and applies it, each kind on its own (opt-outs first).
    /// Returns whether the snapshot changed, or the first error (what succeeded is applied).
    pub async fn sync_once(&self) -> Result<bool, SyncError> {
        sync::sync_once(self, None).await
    }

    /// Polls the store every `sync_interval` until the process ends.
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        sync::spawn(self.clone())
    }

    /// Records an opt-out: durable in the store first, then applied to this operator's snapshot.
    pub async fn record_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        now_ms: i64,
    ) -> Result<OptOutRecord, StoreError> {
        let record = match self
            .store
            .append_optout(first_level_hash, advertising_id, now_ms)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.health
                    .failure(matches!(e, StoreError::Unavailable(_)), now_ms);
                return Err(e);
            }
        };
        sync::apply_local_optout(self, &record).await;
        Ok(record)
    }
}
