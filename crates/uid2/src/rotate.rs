//! `uid2 keys …`, `uid2 salts …`, and the rotation scheduler of `uid2 serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use uid2_operator::now_ms;
use uid2_operator::rotation::{KeyRotationPolicy, rotate_keys, rotate_salts};
use uid2_store::Store;

use crate::admin::open_store;
use crate::settings::GlobalArgs;

/// `uid2 keys …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Lists keysets and keys (never secrets).
    List,
    /// Adds a new key to every keyset (active after the lead time) and removes long-superseded ones.
    Rotate {
        /// Seconds before the new keys are used, so every operator and SDK holds them first.
        #[arg(long, default_value_t = 3600)]
        activation_lead: u64,
    },
}

/// `uid2 salts …`
#[derive(Debug, Subcommand)]
pub(crate) enum SaltsCommand {
    /// Gives a fraction of the salt buckets new salts (their raw UIDs change).
    Rotate {
        /// Fraction of buckets, e.g. 0.05.
        #[arg(long)]
        fraction: f64,
    },
}

pub(crate) async fn keys(global: &GlobalArgs, command: KeysCommand) -> Result<()> {
    let store = open_store(global, &global.admin_config()?).await?;
    match command {
        KeysCommand::List => {
            let keys = store.keys().await?;
            for ks in store.keysets().await? {
                println!(
                    "keyset {:>4} site {:>5} {:<20} {}{}",
                    ks.id,
                    ks.site_id,
                    ks.name,
                    if ks.enabled { "enabled" } else { "disabled" },
                    if ks.is_default { ", default" } else { "" }
                );
                for k in keys.iter().filter(|k| k.keyset_id == ks.id) {
                    println!(
                        "  key {:>6}  activates {}  expires {}",
                        k.id, k.activates_s, k.expires_s
                    );
                }
            }
        }
        KeysCommand::Rotate { activation_lead } => {
            let policy = KeyRotationPolicy {
                activation_lead: Duration::from_secs(activation_lead),
                ..KeyRotationPolicy::default()
            };
            let r = rotate_keys(store.as_ref(), policy, now_ms(), &mut rand::rng()).await?;
            println!(
                "created keys {:?} (active in {activation_lead} s); removed {:?}",
                r.created, r.removed
            );
        }
    }
    Ok(())
}

pub(crate) async fn salts(global: &GlobalArgs, command: SaltsCommand) -> Result<()> {
    let store = open_store(global, &global.admin_config()?).await?;
    let SaltsCommand::Rotate { fraction } = command;
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("--fraction must be in (0, 1], not {fraction}");
    }
    let rotated = rotate_salts(store.as_ref(), fraction, now_ms(), &mut rand::rng()).await?;
    println!("rotated {} salt buckets", rotated.len());
    Ok(())
}

/// When the scheduler rotates (zero periods disable a job).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Schedule {
    pub keys_every: Duration,
    pub key_activation_lead: Duration,
    pub salts_every: Duration,
    pub salt_fraction: f64,
}

/// Runs due rotations once a minute. In a fleet every operator runs the scheduler, and the store
/// lets exactly one of them claim each period.
pub(crate) fn spawn_scheduler(store: Arc<dyn Store>, schedule: Schedule) {
    if schedule.keys_every.is_zero() && schedule.salts_every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = run_due(store.as_ref(), schedule).await {
                tracing::warn!(error = %e, "scheduled rotation failed; will retry");
            }
        }
    });
}

async fn run_due(store: &dyn Store, schedule: Schedule) -> Result<()> {
    let now = now_ms();
    // The thread-local generator cannot be held across awaits of a spawned task; seed one that can.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    if !schedule.keys_every.is_zero()
        && store
            .try_claim("rotate-keys", now, schedule.keys_every.as_millis() as i64)
            .await?
    {
        let policy = KeyRotationPolicy {
            activation_lead: schedule.key_activation_lead,
            ..KeyRotationPolicy::default()
        };
        let r = rotate_keys(store, policy, now, &mut rng).await?;
        tracing::info!(created = ?r.created, removed = ?r.removed, "rotated keys");
    }
    if !schedule.salts_every.is_zero()
        && store
            .try_claim("rotate-salts", now, schedule.salts_every.as_millis() as i64)
            .await?
    {
        let rotated = rotate_salts(store, schedule.salt_fraction, now, &mut rng).await?;
        tracing::info!(buckets = rotated.len(), "rotated salts");
    }
    Ok(())
}
