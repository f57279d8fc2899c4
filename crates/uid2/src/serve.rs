//! `uid2 serve`: bootstrap the store if empty, load the snapshot, serve HTTP, sync in the
//! background, stop cleanly on Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use uid2_operator::admin::ensure_initialized;
use uid2_operator::{Operator, http, now_ms};

use crate::settings::ServeSettings;

pub(crate) async fn run(settings: ServeSettings) -> Result<()> {
    let started = Instant::now();
    let store = uid2_store::open(&settings.store)
        .await
        .with_context(|| format!("opening store {}", settings.store))?;
    let created = ensure_initialized(
        store.as_ref(),
        &settings.operator,
        settings.salt_buckets,
        now_ms(),
        &mut rand::rng(),
    )
    .await?;
    if let Some(boot) = &created {
        print_bootstrap(boot, &settings);
    }

    crate::rotate::spawn_scheduler(store.clone(), settings.schedule);
    warn_if_keys_expire_soon(store.as_ref(), settings.schedule).await;
    let operator = Operator::load(store, settings.operator).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    operator.spawn_sync();
    let snapshot = operator.snapshot();
    tracing::info!(
        store = %operator.store().describe(),
        salt_buckets = snapshot.salts.table.len(),
        keys = snapshot.keys.ring.len(),
        clients = snapshot.clients.len(),
        optouts = snapshot.optouts.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "operator ready"
    );
    // Tests and scripts wait for this exact line.
    println!("uid2 operator listening on http://{addr}");
    std::io::stdout().flush().ok();

    axum::serve(listener, http::router(operator))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

fn print_bootstrap(boot: &uid2_operator::admin::Bootstrap, settings: &ServeSettings) {
    let c = &boot.demo_client;
    println!(
        "Initialised an empty store at {store} ({buckets} salt buckets).\n\
         Demo publisher client (site {site}, every role) - shown once, keep it:\n  \
         API key: {key}\n  secret:  {secret}\n\
         Client-side generation for site {site}: subscription id {sub}, public key\n  {public}",
        store = settings.store,
        buckets = settings.salt_buckets,
        site = c.record.site_id,
        key = c.api_key,
        secret = c.secret,
        sub = boot.demo_cstg.subscription_id,
        public = boot.demo_cstg.public_key,
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Without scheduled rotation, keys eventually expire and the operator stops minting: say so early.
async fn warn_if_keys_expire_soon(
    store: &dyn uid2_store::Store,
    schedule: crate::rotate::Schedule,
) {
    if !schedule.keys_every.is_zero() {
        return;
    }
    if let Ok(keys) = store.keys().await {
        let now_s = now_ms() / 1000;
        if let Some(latest) = keys.iter().map(|k| k.expires_s).max()
            && latest - now_s < 30 * 86_400
        {
            tracing::warn!(
                days_left = (latest - now_s) / 86_400,
                "keys expire soon: run `uid2 keys rotate` or serve with --rotate-keys-every"
            );
        }
    }
}
