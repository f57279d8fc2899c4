//! Keeping keys current: the shared key slot of the bidstream and sharing clients, and the
//! background task that refreshes it.
//!
//! The slot is an [`ArcSwapOption`]: a refresh builds a whole new [`KeyContainer`] and swaps the
//! pointer, so readers never wait, never lock and always see one consistent answer. The
//! background task ([`AutoRefresh`]) calls the key endpoint once a period; a failed refresh
//! keeps the previous keys (they stay usable until they expire, as in the official SDKs) and is
//! retried sooner, after 2 s, then 4 s, and so on up to the period, so that one failure does not
//! leave the keys a whole period staler. An attempt that hangs (an HTTP client without a
//! timeout, an operator that never answers) is abandoned after a minute.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::error::Result;
use crate::keys::KeyContainer;
use crate::transport::{MAX_KEYS_ANSWER_BYTES, Transport};

/// The shortest interval between background key refreshes.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest: keys of an answer stay valid for days, and a longer period (`Duration::MAX`)
/// would overflow the clock.
pub(crate) const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(86_400);
/// The first retry after a failed refresh; each further one waits twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest a refresh attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// When the background refresher tries next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    period: Duration,
    /// The wait after the next failure.
    retry: Duration,
}

impl Schedule {
    fn new(interval: Duration) -> Self {
        let period = interval.clamp(MIN_REFRESH_INTERVAL, MAX_REFRESH_INTERVAL);
        Self {
            period,
            retry: FIRST_RETRY.min(period),
        }
    }

    /// The wait before the next attempt, after one that succeeded or not.
    fn after(&mut self, succeeded: bool) -> Duration {
        if succeeded {
            self.retry = FIRST_RETRY.min(self.period);
            self.period
        } else {
            let wait = self.retry;
            self.retry = (self.retry * 2).min(self.period);
            wait
        }
    }
}

/// A key endpoint and the keys it last answered.
#[derive(Debug)]
pub(crate) struct KeySource {
    transport: Transport,
    path: &'static str,
    keys: ArcSwapOption<KeyContainer>,
    /// When keys were last swapped in (Unix ms; 0: never).
    loaded_at_ms: AtomicI64,
}

impl KeySource {
    pub(crate) fn new(transport: Transport, path: &'static str) -> Self {
        Self {
            transport,
            path,
            keys: ArcSwapOption::empty(),
            loaded_at_ms: AtomicI64::new(0),
        }
    }

    /// Fetches the keys and swaps them in.
    pub(crate) async fn refresh(&self) -> Result<()> {
        let json = self
            .transport
            .call_limited(self.path, &[], false, MAX_KEYS_ANSWER_BYTES)
            .await?;
        self.refresh_json(&json)
    }

    /// Swaps in the keys of a decrypted key-endpoint answer.
    pub(crate) fn refresh_json(&self, json: &[u8]) -> Result<()> {
        let container = KeyContainer::from_json(json)?;
        self.keys.store(Some(Arc::new(container)));
        self.loaded_at_ms.store(crate::now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` on the current keys without locking (a hazard-pointer style load).
    #[inline]
    pub(crate) fn with_keys<R>(&self, f: impl FnOnce(Option<&KeyContainer>) -> R) -> R {
        let guard = self.keys.load();
        f(guard.as_deref())
    }

    /// The current keys.
    pub(crate) fn keys(&self) -> Option<Arc<KeyContainer>> {
        self.keys.load_full()
    }

    /// Starts the background refresher (at least [`MIN_REFRESH_INTERVAL`] apart).
    pub(crate) fn start_auto_refresh(self: &Arc<Self>, interval: Duration) -> AutoRefresh {
        let source = Arc::clone(self);
        let stats = Arc::new(RefreshStats::default());
        let task_stats = Arc::clone(&stats);
        let handle = tokio::spawn(async move {
            // Never hammer the operator, and never overflow the clock.
            let mut schedule = Schedule::new(interval);
            // Keys just loaded (a caller usually refreshes once before starting this) are not
            // fetched again at once: the first refresh comes when they are one period old.
            let loaded_at = source.loaded_at_ms.load(Ordering::Relaxed);
            let age =
                Duration::from_millis(crate::now_ms().saturating_sub(loaded_at).max(0) as u64);
            let mut wait = if loaded_at == 0 {
                Duration::ZERO
            } else {
                schedule.period.saturating_sub(age)
            };
            loop {
                tokio::time::sleep(wait).await;
                let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, source.refresh()).await {
                    Ok(outcome) => outcome.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "no answer from the key endpoint within {} s",
                        ATTEMPT_TIMEOUT.as_secs()
                    )),
                };
                let succeeded = outcome.is_ok();
                let mut last_error = task_stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(()) => {
                        task_stats.successes.fetch_add(1, Ordering::Relaxed);
                        task_stats.consecutive_failures.store(0, Ordering::Relaxed);
                        task_stats
                            .last_success_ms
                            .store(crate::now_ms(), Ordering::Relaxed);
                        *last_error = None;
                    }
                    Err(e) => {
                        task_stats.failures.fetch_add(1, Ordering::Relaxed);
                        task_stats
                            .consecutive_failures
                            .fetch_add(1, Ordering::Relaxed);
                        task_stats
                            .last_failure_ms
                            .store(crate::now_ms(), Ordering::Relaxed);
                        *last_error = Some(e);
                    }
                }
                drop(last_error);
                wait = schedule.after(succeeded);
            }
        });
        AutoRefresh { handle, stats }
    }
}

#[derive(Debug, Default)]
struct RefreshStats {
    successes: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU64,
    last_success_ms: AtomicI64,
    last_failure_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

/// A running background refresher. It stops when this handle is dropped or [`stop`]ped, so keep
/// it as long as the service runs (a field of your service, not a `_` binding in a setup
/// function): once stopped, the keys age until decryption answers `KeysNotSynced`.
///
/// For a health check: [`consecutive_failures`](Self::consecutive_failures) is 0 while refreshes
/// succeed, and [`last_success_ms`](Self::last_success_ms) says how old the keys are.
///
/// [`stop`]: AutoRefresh::stop
#[derive(Debug)]
#[must_use = "dropping the handle stops the refresher: keep it as long as the service runs"]
pub struct AutoRefresh {
    handle: tokio::task::JoinHandle<()>,
    stats: Arc<RefreshStats>,
}

impl AutoRefresh {
    /// Refreshes that succeeded so far.
    pub fn successes(&self) -> u64 {
        self.stats.successes.load(Ordering::Relaxed)
    }

    /// Refreshes that failed so far (the previous keys stayed in use).
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Refreshes that failed since the last one that succeeded (0 while they succeed).
    pub fn consecutive_failures(&self) -> u64 {
        self.stats.consecutive_failures.load(Ordering::Relaxed)
    }

    /// When the last refresh succeeded (Unix ms), if one has.
    pub fn last_success_ms(&self) -> Option<i64> {
        Some(self.stats.last_success_ms.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// When the last refresh failed (Unix ms), if one has.
    pub fn last_failure_ms(&self) -> Option<i64> {
        Some(self.stats.last_failure_ms.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// The error of the last refresh if it failed; `None` once a refresh succeeds again (as the
    /// official Python SDK's refresher keeps it).
    pub fn last_error(&self) -> Option<String> {
        self.stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the refresher.
    pub fn stop(self) {
        // Drop aborts the task.
    }
}

impl Drop for AutoRefresh {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_retried_sooner_and_sooner_less_up_to_the_period() {
        let mut schedule = Schedule::new(Duration::from_secs(60));
        let secs = |d: Duration| d.as_secs();
        let failing: Vec<u64> = (0..7).map(|_| secs(schedule.after(false))).collect();
        assert_eq!(failing, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(secs(schedule.after(true)), 60);
        // A success starts the retries over.
        assert_eq!(secs(schedule.after(false)), 2);
    }

    #[test]
    fn periods_are_kept_between_a_second_and_a_day() {
        assert_eq!(Schedule::new(Duration::ZERO).period, MIN_REFRESH_INTERVAL);
        assert_eq!(Schedule::new(Duration::MAX).period, MAX_REFRESH_INTERVAL);
        // A period under the first retry: retries are never slower than the period.
        let mut fast = Schedule::new(Duration::from_secs(1));
        assert_eq!(fast.after(false), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_longest_period_starts_a_refresher_that_keeps_running() {
        let secret = format!("{}=", "A".repeat(43));
        let transport = Transport::new("http://127.0.0.1:9", "key", &secret, None).unwrap();
        let source = Arc::new(KeySource::new(transport, "/v2/key/bidstream"));
        // As if keys had just been loaded: the first refresh is a (clamped) period away.
        source
            .loaded_at_ms
            .store(crate::now_ms(), Ordering::Relaxed);
        let refresher = source.start_auto_refresh(Duration::MAX);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!refresher.handle.is_finished(), "the refresher task ended");
    }
}
