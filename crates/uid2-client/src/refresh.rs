//! Keeping keys current: the shared key slot of the bidstream and sharing clients, and the
//! background task that refreshes it.
//!
//! The slot is an [`ArcSwapOption`]: a refresh builds a whole new [`KeyContainer`] and swaps the
//! pointer, so readers never wait, never lock and always see one consistent answer. The
//! background task ([`AutoRefresh`]) calls the key endpoint on a Tokio interval; a failed refresh
//! keeps the previous keys (they stay usable until they expire, as in the official SDKs).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::error::Result;
use crate::keys::KeyContainer;
use crate::transport::Transport;

/// The shortest interval between background key refreshes.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

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
        let json = self.transport.call(self.path, &[], false).await?;
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
            // Never hammer the operator, and never hand tokio a zero period (it panics).
            let period = interval.max(MIN_REFRESH_INTERVAL);
            // Keys just loaded (a caller usually refreshes once before starting this) are not
            // fetched again at once: the first refresh comes when they are one period old.
            let loaded_at = source.loaded_at_ms.load(Ordering::Relaxed);
            let age =
                Duration::from_millis(crate::now_ms().saturating_sub(loaded_at).max(0) as u64);
            let first = tokio::time::Instant::now()
                + if loaded_at == 0 {
                    Duration::ZERO
                } else {
                    period.saturating_sub(age)
                };
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match source.refresh().await {
                    Ok(()) => {
                        task_stats.successes.fetch_add(1, Ordering::Relaxed);
                        task_stats
                            .last_success_ms
                            .store(crate::now_ms(), Ordering::Relaxed);
                    }
                    Err(e) => {
                        task_stats.failures.fetch_add(1, Ordering::Relaxed);
                        *task_stats
                            .last_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                }
            }
        });
        AutoRefresh { handle, stats }
    }
}

#[derive(Debug, Default)]
struct RefreshStats {
    successes: AtomicU64,
    failures: AtomicU64,
    last_success_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

/// A running background refresher. It stops when this handle is dropped or [`stop`]ped.
///
/// [`stop`]: AutoRefresh::stop
#[derive(Debug)]
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

    /// When the last refresh succeeded (Unix ms), if one has.
    pub fn last_success_ms(&self) -> Option<i64> {
        Some(self.stats.last_success_ms.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// The error of the last failed refresh, if any failed.
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
