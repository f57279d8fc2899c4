//! `uid2 keys …`, `uid2 salts …`, and the rotation scheduler of `uid2 serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use uid2_operator::now_ms;
use uid2_operator::rotation::{
    DEFAULT_ACTIVATION_LEAD, KeyRotationPolicy, MAX_POLICY_SECS, RETENTION_MARGIN, SaltFraction,
    SaltPick, key_retention, rotate_keys, rotate_salts,
};
use uid2_proto::wire::datetime::format_local_date_time;
use uid2_store::{Claim, Store};

use crate::admin::open_store;
use crate::settings::GlobalArgs;

/// `uid2 keys …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Lists keysets and keys (never secrets).
    List {
        /// Print JSON: keysets, each with its keys (times in seconds since the epoch).
        #[arg(long)]
        json: bool,
    },
    /// Adds a new key to every keyset (active after the lead time) and removes long-superseded ones.
    Rotate {
        /// Seconds before the new keys are used, so every operator and SDK holds them first.
        #[arg(long, default_value_t = DEFAULT_ACTIVATION_LEAD.as_secs(),
              value_parser = clap::value_parser!(u64).range(..=MAX_POLICY_SECS))]
        activation_lead: u64,
        /// Seconds a superseded key is kept after its successor activates (at least the longest
        /// token lifetime; at most a century). Default: the longest token lifetime any operator
        /// on this store issues (they record it when they start), at least the production 30
        /// days, plus one day.
        #[arg(long, value_parser = clap::value_parser!(u64).range(..=MAX_POLICY_SECS))]
        retention: Option<u64>,
    },
}

/// `uid2 salts …`
#[derive(Debug, Subcommand)]
pub(crate) enum SaltsCommand {
    /// Gives a fraction of the salt buckets new salts (their raw UIDs change).
    Rotate {
        /// Fraction of buckets, more than 0 and at most 1, e.g. 0.05.
        #[arg(long)]
        fraction: SaltFraction,
        /// Also rotate buckets whose `refresh_from` has not come yet, if fewer are due than
        /// asked for. `/v3/identity/map` told advertisers their raw UIDs stay until then: use
        /// it only for a rotation that cannot wait.
        #[arg(long)]
        include_not_due: bool,
    },
}

/// A seedable generator: the thread-local one cannot be held across awaits of a spawned task.
fn task_rng() -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng())
}

fn days(d: Duration) -> f64 {
    d.as_secs_f64() / 86_400.0
}

pub(crate) async fn keys(global: &GlobalArgs, command: KeysCommand) -> Result<()> {
    let store = open_store(global).await?.settled.store().clone();
    match command {
        KeysCommand::List { json } => {
            let keys = store.keys().await?;
            let keysets = store.keysets().await?;
            // The key each keyset encrypts with now, chosen as the operator chooses it.
            let state = uid2_operator::snapshot::KeyState::new(&keysets, &keys);
            let now_s = now_ms() / 1000;
            let utc = |s: i64| {
                let text = format_local_date_time(s.saturating_mul(1000));
                format!("{}Z", text.strip_suffix(".000").unwrap_or(&text))
            };
            let key_state = |in_use: Option<u32>, k: &uid2_store::KeyRecord| {
                if in_use == Some(k.id) {
                    "in use"
                } else if k.activates_s > now_s {
                    "pending"
                } else if k.expires_s <= now_s {
                    "expired"
                } else {
                    "superseded"
                }
            };
            if json {
                let list: Vec<serde_json::Value> = keysets
                    .iter()
                    .map(|ks| {
                        let in_use = state.ring.active_key(ks.id, now_s).map(|k| k.id);
                        serde_json::json!({
                            "id": ks.id,
                            "site_id": ks.site_id,
                            "name": ks.name,
                            "enabled": ks.enabled,
                            "default": ks.is_default,
                            "keys": keys
                                .iter()
                                .filter(|k| k.keyset_id == ks.id)
                                .map(|k| serde_json::json!({
                                    "id": k.id,
                                    "created": k.created_s,
                                    "activates": k.activates_s,
                                    "expires": k.expires_s,
                                    "state": key_state(in_use, k),
                                }))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                return say!("{}", serde_json::Value::Array(list));
            }
            for ks in keysets {
                say!(
                    "keyset {:>4} site {:>5} {:<20} {}{}",
                    ks.id,
                    ks.site_id,
                    ks.name,
                    if ks.enabled { "enabled" } else { "disabled" },
                    if ks.is_default { ", default" } else { "" }
                )?;
                let in_use = state.ring.active_key(ks.id, now_s).map(|k| k.id);
                for k in keys.iter().filter(|k| k.keyset_id == ks.id) {
                    let state = key_state(in_use, k);
                    say!(
                        "  key {:>6}  activates {}  expires {}  {state}",
                        k.id,
                        utc(k.activates_s),
                        utc(k.expires_s)
                    )?;
                }
            }
        }
        KeysCommand::Rotate {
            activation_lead,
            retention,
        } => {
            let needed = key_retention(store.as_ref()).await?;
            let (retention, why) = match retention {
                Some(s) => {
                    let lifetime = needed.saturating_sub(RETENTION_MARGIN);
                    if Duration::from_secs(s) < lifetime {
                        bail!(
                            "--retention {s} would remove keys that still protect live tokens: \
                             the operators on this store issue tokens that live {} s; keep keys \
                             at least that long",
                            lifetime.as_secs()
                        );
                    }
                    (Duration::from_secs(s), "--retention".to_owned())
                }
                None => (
                    needed,
                    format!(
                        "the longest token lifetime the operators recorded, plus {} h; \
                         --retention to choose",
                        RETENTION_MARGIN.as_secs() / 3_600
                    ),
                ),
            };
            let policy = KeyRotationPolicy {
                activation_lead: Duration::from_secs(activation_lead),
                retention,
            };
            let r = rotate_keys(store.as_ref(), policy, now_ms(), &mut task_rng(), None)
                .await?
                .expect("an unclaimed rotation always writes");
            say!(
                "created keys {:?} (active in {activation_lead} s); removed {:?}; superseded keys \
                 are kept {:.1} days after their successor activates ({why})",
                r.created,
                r.removed,
                days(retention)
            )?;
        }
    }
    Ok(())
}

pub(crate) async fn salts(global: &GlobalArgs, command: SaltsCommand) -> Result<()> {
    let store = open_store(global).await?.settled.store().clone();
    let SaltsCommand::Rotate {
        fraction,
        include_not_due,
    } = command;
    let pick = if include_not_due {
        SaltPick::Any
    } else {
        SaltPick::Due
    };
    let rotated = rotate_salts(
        store.as_ref(),
        fraction,
        pick,
        now_ms(),
        &mut task_rng(),
        None,
    )
    .await?
    .expect("an unclaimed rotation always answers");
    match pick {
        SaltPick::Due => say!(
            "rotated {} salt buckets (only buckets due for rotation; --include-not-due for \
             others too)",
            rotated.len()
        )?,
        SaltPick::Any => say!("rotated {} salt buckets", rotated.len())?,
    }
    Ok(())
}

/// When the scheduler rotates (zero periods disable a job).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Schedule {
    pub keys_every: Duration,
    pub key_activation_lead: Duration,
    pub salts_every: Duration,
    pub salt_fraction: SaltFraction,
}

impl Schedule {
    /// How often due rotations are checked: a quarter of the shortest period, so a period is
    /// never overrun by much, and at most once a minute.
    fn check_every(&self) -> Duration {
        [self.keys_every, self.salts_every]
            .into_iter()
            .filter(|p| !p.is_zero())
            .min()
            .map_or(Duration::from_secs(60), |p| p / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

/// Runs due rotations. In a fleet every operator runs the scheduler; each rotation's write
/// claims its period, so exactly one operator rotates per period, and a rotation that fails
/// leaves the period unclaimed for the next check to retry.
pub(crate) fn spawn_scheduler(store: Arc<dyn Store>, schedule: Schedule) {
    if schedule.keys_every.is_zero() && schedule.salts_every.is_zero() {
        return;
    }
    let every = schedule.check_every();
    tokio::spawn(async move {
        // The first check waits one interval: a rotation right at start-up would add keys on
        // every restart of an operator whose periods are longer than its uptime.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_due(store.as_ref(), schedule, now_ms()).await {
                tracing::warn!(error = %e, "scheduled rotation failed; will retry");
            }
        }
    });
}

/// Runs the rotations due at `now` (each job on its own: one failing does not stop the other).
async fn run_due(store: &dyn Store, schedule: Schedule, now: i64) -> Result<()> {
    let mut rng = task_rng();
    let claim = |job: &str, period: Duration| Claim {
        job: job.to_owned(),
        now_ms: now,
        period_ms: period.as_millis() as i64,
    };
    let mut failed = Vec::new();
    if !schedule.keys_every.is_zero() {
        let rotated = async {
            let policy = KeyRotationPolicy {
                activation_lead: schedule.key_activation_lead,
                retention: key_retention(store).await?,
            };
            let claim = claim("rotate-keys", schedule.keys_every);
            rotate_keys(store, policy, now, &mut rng, Some(claim)).await
        }
        .await;
        match rotated {
            Ok(Some(r)) => {
                tracing::info!(created = ?r.created, removed = ?r.removed, "rotated keys")
            }
            Ok(None) => {}
            Err(e) => failed.push(format!("keys: {e}")),
        }
    }
    if !schedule.salts_every.is_zero() {
        let claim = claim("rotate-salts", schedule.salts_every);
        let fraction = schedule.salt_fraction;
        match rotate_salts(store, fraction, SaltPick::Due, now, &mut rng, Some(claim)).await {
            Ok(Some(buckets)) => tracing::info!(buckets = buckets.len(), "rotated salts"),
            Ok(None) => {}
            Err(e) => failed.push(format!("salts: {e}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use uid2_operator::OperatorConfig;
    use uid2_operator::admin::ensure_initialized;

    use super::*;

    /// Buckets rotated at `t`.
    async fn rotated_at(store: &dyn Store, t: i64) -> usize {
        let salts = store.salts().await.unwrap().unwrap().value;
        salts
            .buckets
            .iter()
            .filter(|b| b.last_updated_ms == t)
            .count()
    }

    #[tokio::test]
    async fn a_failed_rotation_does_not_use_up_its_period() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/uid2.db", dir.path().display());
        let store = uid2_store::open(&url).await.unwrap();
        let schedule = Schedule {
            salts_every: Duration::from_secs(3_600),
            salt_fraction: SaltFraction::new(0.25).unwrap(),
            ..Schedule::default()
        };
        let now = now_ms();
        // No salts yet: the rotation fails, and its period stays free.
        assert!(run_due(store.as_ref(), schedule, now).await.is_err());
        assert_eq!(store.last_claim_ms("rotate-salts").await.unwrap(), None);

        // Set up a month ago, so that every bucket is due for rotation.
        ensure_initialized(
            store.as_ref(),
            &OperatorConfig::default(),
            64,
            now - 31 * 86_400_000,
            &mut rand::rng(),
        )
        .await
        .unwrap();
        // The next check, in the same period, rotates.
        run_due(store.as_ref(), schedule, now + 1_000)
            .await
            .unwrap();
        assert_eq!(
            store.last_claim_ms("rotate-salts").await.unwrap(),
            Some(now + 1_000)
        );
        assert_eq!(rotated_at(store.as_ref(), now + 1_000).await, 16);
        // Within the period nothing more happens; after it, the next rotation does.
        run_due(store.as_ref(), schedule, now + 2_000)
            .await
            .unwrap();
        assert_eq!(rotated_at(store.as_ref(), now + 2_000).await, 0);
        run_due(store.as_ref(), schedule, now + 3_601_000)
            .await
            .unwrap();
        assert_eq!(rotated_at(store.as_ref(), now + 3_601_000).await, 16);
    }

    #[test]
    fn short_periods_are_checked_often_long_ones_once_a_minute() {
        let every = |keys: u64, salts: u64| {
            Schedule {
                keys_every: Duration::from_secs(keys),
                salts_every: Duration::from_secs(salts),
                ..Schedule::default()
            }
            .check_every()
        };
        assert_eq!(every(2, 0), Duration::from_millis(500));
        assert_eq!(every(86_400, 8), Duration::from_secs(2));
        assert_eq!(every(86_400, 86_400), Duration::from_secs(60));
    }
}
