//! `uid2 serve`: initialise the store if empty (in a `uid2 init` child process), take the
//! deployment settings from the store, load the snapshot, serve HTTP, sync in the background,
//! stop cleanly on Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use uid2_operator::deployment::settle;
use uid2_operator::{Operator, http, now_ms};

use crate::settings::ServeSettings;

pub(crate) async fn run(settings: ServeSettings) -> Result<()> {
    let started = Instant::now();
    let url = &settings.common.store;
    let store = uid2_store::open(url)
        .await
        .with_context(|| format!("opening store {}", uid2_store::redact_url(url)))?;
    if !store.is_initialized().await? {
        initialize_in_child(&settings).await?;
    }
    let settled = settle(store.clone(), &settings.common.given)
        .await
        .context(crate::admin::SETTINGS_CONTEXT)?;
    // Loaded first: rotations must keep keys as long as this operator's tokens live, which
    // loading records in the store.
    let operator = Operator::load(settled, settings.operator).await?;
    crate::rotate::spawn_scheduler(store.clone(), settings.schedule);
    warn_if_keys_expire_soon(store.as_ref(), settings.schedule).await;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match settings.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at} for metrics"))?,
        ),
        None => None,
    };
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
    let metrics = match metrics_listener {
        Some(listener) => {
            announce(say!(
                "uid2 metrics on http://{}{}",
                listener.local_addr()?,
                http::METRICS_PATH
            ));
            let app = http::metrics_router(operator.clone());
            let limits = settings.limits;
            Some(tokio::spawn(http::server::serve(
                listener,
                app,
                limits,
                shutdown_signal(),
            )))
        }
        None => None,
    };
    // Tests and scripts wait for this exact line.
    announce(say!("uid2 operator listening on http://{addr}"));
    std::io::stdout().flush().ok();

    http::server::serve(
        listener,
        http::api_router(operator, metrics.is_none()),
        settings.limits,
        shutdown_signal(),
    )
    .await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Initialises the store by running `uid2 init` with the same settings, and waits for it. Only
/// the deployment settings given are passed on: if another operator initialises the store
/// first, those it chose are then checked against them, and the others taken as they are.
///
/// Bootstrapping holds a million salt buckets as owned records (the store takes them whole), and
/// an allocator keeps such memory mapped after it is freed: done in this process, it stayed in the
/// serving operator's idle RSS for good (245 MB against 107 MB after a restart). A child process
/// gives all of it back when it exits. It prints the demo credentials, once, to the same stdout.
async fn initialize_in_child(settings: &ServeSettings) -> Result<()> {
    let exe = std::env::current_exe().context("finding the uid2 executable")?;
    let common = &settings.common;
    let given = common.given;
    let mut init = tokio::process::Command::new(exe);
    // The URL goes by environment, not argv: other users can read a process's arguments,
    // and it may hold a password.
    init.env("UID2_STORE", &common.store)
        .arg("--salt-buckets")
        .arg(common.salt_buckets.to_string());
    if let Some(scope) = given.identity_scope {
        init.arg("--identity-scope").arg(scope.as_str());
    }
    if let Some(environment) = given.environment {
        init.arg("--environment").arg(environment.as_str());
    }
    if let Some(v3) = given.v3_raw_uids {
        init.arg("--v3-raw-uids").arg(v3.to_string());
    }
    let status = init
        .arg("init")
        .status()
        .await
        .context("running uid2 init")?;
    if !status.success() {
        bail!("initialising the store failed ({status})");
    }
    Ok(())
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

/// An announcement's failure (nobody reads standard output any more) is logged: serving is what
/// `serve` is for, and it goes on.
fn announce(printed: Result<()>) {
    if let Err(e) = printed {
        tracing::warn!("{e}");
    }
}
