//! Keeping the snapshot current: loading it whole at start-up, then applying what changed in the
//! store.
//!
//! Each kind of change is applied on its own, opt-outs first, so a part that keeps failing (a
//! salt table that will not load) never holds back the others. Store reads and index merges
//! happen without the snapshot lock, which is taken only to publish. In the sync loop, work that
//! can take long (reloading a million salt buckets, folding recent opt-outs into the index) runs
//! beside the loop, so opt-outs keep arriving every sync interval meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use uid2_store::{Generations, StateKind, Store, StoreError};

use crate::clients::ClientIndex;
use crate::config::OperatorConfig;
use crate::optout::OptOutIndexBuilder;
use crate::snapshot::{CstgIndex, KeyState, Salts, SiteIndex, Snapshot, build_cstg};
use crate::{Operator, OperatorError, now_ms};

mod optouts;

pub(crate) use optouts::apply_local_optout;
use optouts::{compact, sync_optouts};

/// Opt-outs fetched per store round trip.
const OPTOUT_PAGE: usize = 50_000;

/// Why a sync pass (or loading the snapshot) was incomplete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Work run off the async runtime (building or merging the opt-out index, loading salts)
    /// failed. Not the store's fault, so not counted against its health; the next pass retries.
    #[error("{what} failed: {reason}")]
    Task {
        /// The work.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// Maps the failure of the work `what` (a panic in it) to a [`SyncError`].
fn task_failed(what: &'static str) -> impl FnOnce(JoinError) -> SyncError {
    move |e| SyncError::Task {
        what,
        reason: e.to_string(),
    }
}

async fn load_clients(store: &dyn Store) -> Result<Arc<ClientIndex>, StoreError> {
    let pepper = store
        .meta("api_key_pepper")
        .await?
        .ok_or_else(|| StoreError::Corrupt("no api_key_pepper".into()))?;
    // Every client's key was hashed with it: an empty one would lock every client out.
    if pepper.is_empty() {
        return Err(StoreError::Corrupt("empty api_key_pepper".into()));
    }
    Ok(Arc::new(ClientIndex::new(pepper, &store.clients().await?)))
}

async fn load_keys(store: &dyn Store) -> Result<Arc<KeyState>, StoreError> {
    Ok(Arc::new(KeyState::new(
        &store.keysets().await?,
        &store.keys().await?,
    )))
}

async fn load_salts(store: &dyn Store) -> Result<Option<Arc<Salts>>, StoreError> {
    match store.salt_table().await? {
        None => Ok(None),
        // Every identity maps to a bucket: an empty table would fail every request.
        Some((_, table)) if table.is_empty() => {
            Err(StoreError::Corrupt("the salt table has no buckets".into()))
        }
        Some((meta, table)) => Ok(Some(Arc::new(Salts::new(&meta, table)))),
    }
}

async fn load_sites(store: &dyn Store) -> Result<Arc<SiteIndex>, StoreError> {
    Ok(Arc::new(
        store
            .sites()
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect(),
    ))
}

async fn load_cstg(store: &dyn Store) -> Result<Arc<CstgIndex>, StoreError> {
    Ok(Arc::new(build_cstg(&store.cstg_keypairs().await?)))
}

/// Reads the opt-outs after `after`, up to `upto` at least, page by page, keeping only their
/// index entries.
async fn fetch_optouts(
    store: &dyn Store,
    after: i64,
    upto: i64,
) -> Result<OptOutIndexBuilder, StoreError> {
    let (mut builder, mut cursor) = (OptOutIndexBuilder::default(), after);
    while cursor < upto {
        let page = store.optouts_after(cursor, OPTOUT_PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        builder.add(&page);
    }
    Ok(builder)
}

/// Loads a complete snapshot.
pub(crate) async fn load_full(
    store: &dyn Store,
    config: &Arc<OperatorConfig>,
) -> Result<Snapshot, OperatorError> {
    let started = now_ms();
    let generations = store.generations().await?;
    let salts = load_salts(store)
        .await?
        .ok_or(OperatorError::NotInitialized)?;
    let optouts = fetch_optouts(store, 0, generations.optout_seq).await?;
    let optouts = tokio::task::spawn_blocking(move || optouts.finish())
        .await
        .map_err(task_failed("building the opt-out index"))?;
    Ok(Snapshot {
        config: config.clone(),
        clients: load_clients(store).await?,
        keys: load_keys(store).await?,
        salts,
        sites: load_sites(store).await?,
        cstg: load_cstg(store).await?,
        optouts: Arc::new(optouts),
        generations,
        synced_at_ms: started,
    })
}

/// Replaces the snapshot with `change` of the current one. Serialised with every other
/// replacement (local opt-outs, compaction, sync), so none is lost; `change` must be cheap, as
/// a logout waits for it.
async fn publish(op: &Operator, change: impl FnOnce(&Snapshot) -> Snapshot) {
    let _guard = op.writer.lock().await;
    let current = op.snapshot();
    op.snapshot.store(Arc::new(change(&current)));
}

/// Parts of the snapshot reloaded in one pass, each with the generation it reflects.
#[derive(Default)]
struct Reloaded {
    clients: Option<(i64, Arc<ClientIndex>)>,
    keys: Option<(i64, Arc<KeyState>)>,
    sites: Option<(i64, Arc<SiteIndex>)>,
    cstg: Option<(i64, Arc<CstgIndex>)>,
    salts: Option<(i64, Arc<Salts>)>,
}

impl Reloaded {
    fn is_empty(&self) -> bool {
        self.clients.is_none()
            && self.keys.is_none()
            && self.sites.is_none()
            && self.cstg.is_none()
            && self.salts.is_none()
    }

    /// `snap` with the reloaded parts that are newer than its own.
    fn apply(self, snap: &Snapshot) -> Snapshot {
        fn take<T>(
            part: Option<(i64, T)>,
            kind: StateKind,
            generations: &mut Generations,
            keep: T,
        ) -> T {
            match part {
                Some((g, value)) if g > generations.get(kind) => {
                    generations.set(kind, g);
                    value
                }
                _ => keep,
            }
        }
        let mut g = snap.generations;
        Snapshot {
            clients: take(
                self.clients,
                StateKind::Clients,
                &mut g,
                snap.clients.clone(),
            ),
            keys: take(self.keys, StateKind::Keys, &mut g, snap.keys.clone()),
            sites: take(self.sites, StateKind::Sites, &mut g, snap.sites.clone()),
            cstg: take(self.cstg, StateKind::Cstg, &mut g, snap.cstg.clone()),
            salts: take(self.salts, StateKind::Salts, &mut g, snap.salts.clone()),
            generations: g,
            ..snap.clone()
        }
    }
}

/// Salts loaded from the store, with the generation they are at least as new as (`None`: the
/// store has none).
type LoadedSalts = Result<(i64, Option<Arc<Salts>>), SyncError>;

/// Work the sync loop runs beside itself.
#[derive(Default)]
pub(crate) struct Background {
    salts: Option<JoinHandle<LoadedSalts>>,
    compaction: Option<JoinHandle<()>>,
}

impl Background {
    /// The result of the salt reload an earlier pass started, once it is done: salts at least as
    /// new as the generation that pass wanted, which may be older than `wanted` if the salts
    /// changed again meanwhile (the caller compares). Else `None`, and a reload of generation
    /// `wanted` is started if none runs.
    async fn salts(&mut self, store: &Arc<dyn Store>, wanted: i64) -> Option<LoadedSalts> {
        match self.salts.take() {
            Some(job) if job.is_finished() => Some(
                job.await
                    .map_err(task_failed("reloading salts"))
                    .and_then(|loaded| loaded),
            ),
            Some(running) => {
                self.salts = Some(running);
                None
            }
            None => {
                let store = store.clone();
                // The generation is read before the table, so the table is at least this new.
                self.salts = Some(tokio::spawn(async move {
                    Ok((wanted, load_salts(store.as_ref()).await?))
                }));
                None
            }
        }
    }

    /// Starts folding recent opt-outs into the index if enough accumulated and no fold runs.
    fn compact_if_due(&mut self, op: &Arc<Operator>) {
        if self.compaction.as_ref().is_some_and(|j| !j.is_finished())
            || op.snapshot().optouts.compaction().is_none()
        {
            return;
        }
        self.compaction = Some(tokio::spawn(compact(op.clone())));
    }
}

/// One sync pass: reads the generations, then applies new opt-outs, then every other kind that
/// changed, each on its own. With `background`, salts reload beside the loop; without, inline.
///
/// Returns whether the snapshot changed, or the first error (what succeeded is applied anyway).
/// When every part is current, the snapshot's `synced_at_ms` becomes the start of this pass.
/// Store errors count against the store's health; a pass that met none clears it.
pub(crate) async fn sync_once(
    op: &Operator,
    background: Option<&mut Background>,
) -> Result<bool, SyncError> {
    let started = now_ms();
    let store = op.store.as_ref();
    let g = match store.generations().await {
        Ok(g) => g,
        Err(e) => {
            op.health
                .failure(matches!(e, StoreError::Unavailable(_)), now_ms());
            return Err(e.into());
        }
    };
    let mut first_error: Option<SyncError> = None;
    // Whether the store failed, and whether it could not be reached at all (as opposed to
    // answering with an error).
    let (mut store_failed, mut unreachable) = (false, false);
    let mut fail = |e: SyncError, what: &str| {
        // The loop reports the first error, and a failing store once, not per part per tick.
        tracing::debug!(error = %e, "reloading {what} failed; serving the previous ones");
        if let SyncError::Store(e) = &e {
            store_failed = true;
            unreachable |= matches!(e, StoreError::Unavailable(_));
        }
        first_error.get_or_insert(e);
    };
    let mut changed = match sync_optouts(op, g.optout_seq).await {
        Ok(changed) => changed,
        Err(e) => {
            fail(e, "opt-outs");
            false
        }
    };

    let current = op.snapshot();
    let stale = |kind: StateKind| g.get(kind) > current.generations.get(kind);
    let mut reloaded = Reloaded::default();
    if stale(StateKind::Clients) {
        match load_clients(store).await {
            Ok(v) => reloaded.clients = Some((g.clients, v)),
            Err(e) => fail(e.into(), "clients"),
        }
    }
    if stale(StateKind::Keys) {
        match load_keys(store).await {
            Ok(v) => reloaded.keys = Some((g.keys, v)),
            Err(e) => fail(e.into(), "keys"),
        }
    }
    if stale(StateKind::Sites) {
        match load_sites(store).await {
            Ok(v) => reloaded.sites = Some((g.sites, v)),
            Err(e) => fail(e.into(), "sites"),
        }
    }
    if stale(StateKind::Cstg) {
        match load_cstg(store).await {
            Ok(v) => reloaded.cstg = Some((g.cstg, v)),
            Err(e) => fail(e.into(), "CSTG key pairs"),
        }
    }
    let mut salts_pending = false;
    if stale(StateKind::Salts) {
        let loaded = match background {
            Some(bg) => bg.salts(&op.store, g.salts).await,
            None => Some(
                load_salts(store)
                    .await
                    .map(|s| (g.salts, s))
                    .map_err(SyncError::from),
            ),
        };
        match loaded {
            Some(Ok((generation, Some(salts)))) => {
                salts_pending = generation < g.salts;
                reloaded.salts = Some((generation, salts));
            }
            Some(Ok((_, None))) => fail(
                StoreError::Corrupt("the salts vanished".into()).into(),
                "salts",
            ),
            Some(Err(e)) => fail(e, "salts"),
            None => salts_pending = true,
        }
    }

    let current_now = first_error.is_none() && !salts_pending;
    if !reloaded.is_empty() || current_now {
        changed |= !reloaded.is_empty();
        publish(op, |snap| {
            let mut next = reloaded.apply(snap);
            if current_now {
                next.synced_at_ms = started;
            }
            next
        })
        .await;
    }
    if store_failed {
        op.health.failure(unreachable, now_ms());
    } else {
        op.health.success(now_ms());
    }
    match first_error {
        None => Ok(changed),
        Some(e) => Err(e),
    }
}

/// Polls the store every sync interval until the process ends.
pub(crate) fn spawn(op: Arc<Operator>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut background = Background::default();
        let mut failures = FailureLog::default();
        let mut tick = tokio::time::interval(op.config.sync_interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = tokio::time::Instant::now();
            match sync_once(&op, Some(&mut background)).await {
                Ok(_) => failures.succeeded(now),
                Err(e) => failures.failed(&e, now),
            };
            background.compact_if_due(&op);
        }
    })
}

/// How often a sync that keeps failing is reported again.
const FAILURE_REMINDER: Duration = Duration::from_secs(30);

/// What the sync loop logs of failures: the first at once, a changed error at once, then a
/// reminder every [`FAILURE_REMINDER`] while they last, and the recovery: an outage of the store
/// is a few lines, not one per poll (four a second at the default interval).
#[derive(Debug, Default)]
struct FailureLog {
    /// Since when syncs fail, how many have, when it was last said, and what.
    ongoing: Option<Ongoing>,
}

#[derive(Debug)]
struct Ongoing {
    since: tokio::time::Instant,
    failures: u64,
    said_at: tokio::time::Instant,
    said: String,
}

impl FailureLog {
    /// Records a failed sync; returns whether it was logged.
    fn failed(&mut self, e: &SyncError, now: tokio::time::Instant) -> bool {
        let text = e.to_string();
        let say = match &mut self.ongoing {
            None => {
                self.ongoing = Some(Ongoing {
                    since: now,
                    failures: 1,
                    said_at: now,
                    said: text.clone(),
                });
                true
            }
            Some(o) => {
                o.failures += 1;
                let due = o.said != text || now.duration_since(o.said_at) >= FAILURE_REMINDER;
                if due {
                    o.said_at = now;
                    o.said.clone_from(&text);
                }
                due
            }
        };
        if say {
            let o = self.ongoing.as_ref().expect("set above");
            tracing::warn!(
                error = %text,
                failed_syncs = o.failures,
                failing_for_s = now.duration_since(o.since).as_secs(),
                "store sync incomplete; serving from the last snapshot"
            );
        }
        say
    }

    /// Records a successful sync; returns whether it ended a run of failures (and said so).
    fn succeeded(&mut self, now: tokio::time::Instant) -> bool {
        let Some(o) = self.ongoing.take() else {
            return false;
        };
        tracing::info!(
            failed_syncs = o.failures,
            failed_for_s = now.duration_since(o.since).as_secs(),
            "store sync recovered"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use uid2_proto::salt::{BucketSecret, FirstLevelHash};
    use uid2_store::Precondition;

    use super::*;
    use crate::optout::{OptOutBatch, RECENT_CAP};

    pub(super) async fn operator() -> (tempfile::TempDir, Arc<Operator>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/uid2.db", dir.path().display());
        let store = uid2_store::open(&url).await.unwrap();
        let config = OperatorConfig::default();
        crate::admin::ensure_initialized(store.as_ref(), &config, 64, now_ms(), &mut rand::rng())
            .await
            .unwrap();
        let given = crate::deployment::GivenSettings::all(config.raw_uid_settings());
        let settled = crate::deployment::settle(store, &given).await.unwrap();
        (dir, Operator::load(settled, config).await.unwrap())
    }

    #[test]
    fn a_failing_store_is_reported_once_then_every_reminder_and_at_recovery() {
        let mut log = FailureLog::default();
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let down = SyncError::Store(StoreError::Unavailable("connection refused".into()));
        assert!(log.failed(&down, at(0)), "the first failure");
        // Four polls a second for a minute: two reminders.
        let said: usize = (1..240).filter(|i| log.failed(&down, at(i * 250))).count();
        assert_eq!(said, 1, "one reminder by 59.75 s");
        assert!(log.failed(&down, at(60_000)), "the second reminder");
        let other = SyncError::Store(StoreError::Busy("lock timeout".into()));
        assert!(
            log.failed(&other, at(60_250)),
            "a different error is said at once"
        );
        assert!(log.succeeded(at(60_500)), "the recovery");
        assert!(!log.succeeded(at(60_750)));
        assert!(log.failed(&down, at(61_000)), "a new outage");
    }

    #[tokio::test]
    async fn an_idle_sync_still_refreshes_the_data_age() {
        let (_dir, op) = operator().await;
        let before = now_ms();
        // Nothing changed in the store, yet the data is now known current.
        assert!(!op.sync_once().await.unwrap());
        assert!(op.snapshot().synced_at_ms >= before);
        assert_eq!(op.store_health().consecutive_failures(), 0);
    }

    #[tokio::test]
    async fn opt_outs_arrive_while_the_salt_table_fails_to_load() {
        let (_dir, op) = operator().await;
        let store = op.store().clone();
        let synced = op.snapshot().synced_at_ms;
        // Salts the store accepts but the operator cannot load (a salt over 64 KiB).
        let good = store.salts().await.unwrap().unwrap().value;
        let mut bad = good.clone();
        bad.buckets[0].current = BucketSecret::Salt("x".repeat(70_000));
        store
            .replace_salt_buckets(&bad, &Precondition::default())
            .await
            .unwrap();
        // Another operator records an opt-out.
        let flh = [7u8; 32];
        store.append_optout(flh, None, 5_000).await.unwrap();

        assert!(matches!(
            op.sync_once().await,
            Err(crate::SyncError::Store(StoreError::Corrupt(_)))
        ));
        let snap = op.snapshot();
        assert_eq!(
            snap.optouts.opted_out_at_ms(&FirstLevelHash(flh)),
            Some(5_000),
            "opt-outs are applied although the salts failed"
        );
        assert!(
            snap.generations.salts < store.generations().await.unwrap().salts,
            "the salts stay due for a retry"
        );
        assert_eq!(snap.synced_at_ms, synced, "the data is not current");
        assert_eq!(op.store_health().consecutive_failures(), 1);

        // Once the salts load again, the next pass applies them.
        store
            .replace_salt_buckets(&good, &Precondition::default())
            .await
            .unwrap();
        assert!(op.sync_once().await.unwrap());
        let snap = op.snapshot();
        assert_eq!(
            snap.generations.salts,
            store.generations().await.unwrap().salts
        );
        assert!(snap.synced_at_ms > synced);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compaction_empties_the_recent_runs_and_loses_nothing() {
        let (_dir, op) = operator().await;
        let records: Vec<uid2_store::OptOutRecord> = (1..=RECENT_CAP as i64 + 5)
            .map(|seq| uid2_store::OptOutRecord {
                seq,
                first_level_hash: uid2_proto::cipher::sha256(&[&seq.to_be_bytes()]),
                advertising_id: None,
                opted_out_at_ms: seq * 1000,
            })
            .collect();
        let batch = OptOutBatch::new(&records);
        publish(&op, |snap| Snapshot {
            optouts: Arc::new(snap.optouts.with_batch(&batch)),
            ..snap.clone()
        })
        .await;
        let mut background = Background::default();
        background.compact_if_due(&op);
        background.compaction.take().expect("due").await.unwrap();
        let snap = op.snapshot();
        assert_eq!(snap.optouts.recent_len(), 0);
        for r in records.iter().step_by(1_001) {
            assert_eq!(
                snap.optouts
                    .opted_out_at_ms(&FirstLevelHash(r.first_level_hash)),
                Some(r.opted_out_at_ms)
            );
        }
        // Nothing more to do.
        background.compact_if_due(&op);
        assert!(background.compaction.is_none());
    }
}
