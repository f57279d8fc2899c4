//! The UID2 operator, in process: opens the store (bootstrapping it on first start, as
//! `uid2 serve` does), makes sure the demo's participants exist, loads the snapshot, keeps it in
//! sync with the store, and serves `uid2_operator::http::router`, the very routes `uid2 serve`
//! serves (the browser SDK at `/static/js/uid2-sdk.js` included).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use uid2_operator::admin::ensure_initialized;
use uid2_operator::deployment::{GivenSettings, settle};
use uid2_operator::http::server::ConnectionLimits;
use uid2_operator::{Operator, OperatorConfig, now_ms};

use crate::setup::{self, DemoCredentials};

/// A loaded operator and the credentials of the demo's participants.
pub(crate) struct DemoOperator {
    /// The operator's state (snapshot, store, config).
    pub(crate) operator: Arc<Operator>,
    /// Keys and secrets of the publisher, SSP and advertiser clients.
    pub(crate) credentials: DemoCredentials,
}

/// Opens `store_url`, bootstraps it if empty (with `salt_buckets` buckets), creates the demo's
/// participants (credentials kept at `credentials_path`) and loads the operator.
pub(crate) async fn load(
    store_url: &str,
    salt_buckets: usize,
    credentials_path: &Path,
    config: OperatorConfig,
) -> Result<DemoOperator> {
    config.validate()?;
    let store = uid2_store::open(store_url)
        .await
        .with_context(|| format!("opening store {}", uid2_store::redact_url(store_url)))?;
    if ensure_initialized(
        store.as_ref(),
        &config,
        salt_buckets,
        now_ms(),
        &mut rand::rng(),
    )
    .await?
    .is_some()
    {
        tracing::info!(store = %store.describe(), salt_buckets, "initialised a new store");
    }
    let credentials = setup::ensure(store.as_ref(), &config, credentials_path, now_ms()).await?;
    let given = GivenSettings::all(config.raw_uid_settings());
    let settled = settle(store, &given).await?;
    let operator = Operator::load(settled, config).await?;
    Ok(DemoOperator {
        operator,
        credentials,
    })
}

/// Serves the operator on `listener` until the process ends, syncing with the store meanwhile.
pub(crate) async fn serve(operator: Arc<Operator>, listener: TcpListener) -> Result<()> {
    let _sync = operator.spawn_sync();
    uid2_operator::http::server::serve(
        listener,
        uid2_operator::http::router(operator),
        ConnectionLimits::default(),
        std::future::pending(),
    )
    .await;
    Ok(())
}
