//! PostgreSQL connections: a small pool, one deadline per call, and a circuit breaker.
//!
//! An operator must refuse an opt-out within seconds when the database hangs, never queue it
//! behind a connection that will not answer. So one deadline covers everything a call waits
//! for: a free connection, connecting, and (for ordinary calls) the operation itself. A
//! connection that timed out or broke is discarded, never reused. After such a failure the
//! breaker opens: calls fail at once until a backoff has passed, then a single call probes the
//! database while the others keep failing fast; its success closes the breaker. A few
//! connections let the sync task and opt-out writes proceed side by side.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conn::pg_err;
use crate::{Result, StoreError};

/// Connections per store (per operator process).
const POOL_SIZE: usize = 4;
/// The longest a call waits for a connection, connects and (for [`Limit::Call`]) runs.
pub(super) const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// First wait after a failure before the database is tried again; doubled on each failed probe.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// How long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// Everything within [`CALL_DEADLINE`].
    Call,
    /// Getting a connection within [`CALL_DEADLINE`], then each statement within its own limit:
    /// for work whose size grows with the data (a million salt buckets).
    PerStatement,
}

/// A pool of connections to one database.
pub(super) struct Pool {
    config: tokio_postgres::Config,
    /// Protects every connection as the URL's `sslmode` asks (see [`super::tls`]).
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Client>>,
    slots: Semaphore,
    breaker: Breaker,
}

fn timed_out(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "PostgreSQL: {what} took longer than {} s",
        CALL_DEADLINE.as_secs()
    ))
}

impl Pool {
    pub(super) fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> Self {
        Self {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(POOL_SIZE),
            breaker: Breaker::default(),
        }
    }

    /// Runs `work` on a pooled connection within `limit`.
    pub(super) async fn run<T>(
        &self,
        limit: Limit,
        work: impl AsyncFnOnce(&mut Client, Instant) -> Result<T>,
    ) -> Result<T> {
        let admission = self.breaker.admit()?;
        let deadline = Instant::now() + CALL_DEADLINE;
        let result = match limit {
            Limit::Call => {
                tokio::time::timeout_at(deadline, self.run_on_connection(deadline, work))
                    .await
                    .unwrap_or_else(|_| Err(timed_out("the call")))
            }
            Limit::PerStatement => self.run_on_connection(deadline, work).await,
        };
        match &result {
            // Only an unanswered or broken connection says the database is unreachable; a
            // refused statement (a conflict) is an answer.
            Err(StoreError::Unavailable(reason)) => {
                if admission.failed(reason) {
                    // Idle connections may hang the same way: connect afresh on recovery.
                    self.lock_idle().clear();
                }
            }
            _ => admission.succeeded(),
        }
        result
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run_on_connection<T>(
        &self,
        deadline: Instant,
        work: impl AsyncFnOnce(&mut Client, Instant) -> Result<T>,
    ) -> Result<T> {
        // Calls waiting for a lock give their connection back before their deadline (see
        // `write_settings`), so a connection that stays taken this long is one that does not
        // answer.
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| timed_out("waiting for a free connection"))?
            .expect("the semaphore is never closed");
        let reused = std::iter::from_fn(|| self.lock_idle().pop()).find(|c| !c.is_closed());
        let mut client = match reused {
            Some(client) => client,
            None => tokio::time::timeout_at(deadline, self.connect())
                .await
                .map_err(|_| timed_out("connecting"))??,
        };
        let result = work(&mut client, deadline).await;
        // A connection whose call failed to get an answer may be mid-statement: drop it.
        if !matches!(result, Err(StoreError::Unavailable(_))) && !client.is_closed() {
            self.lock_idle().push(client);
        }
        result
    }

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(pg_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// The circuit breaker.
#[derive(Debug, Default)]
struct Breaker {
    open: Mutex<Option<Open>>,
}

/// An open breaker: the database failed and is not tried before `retry_at`.
#[derive(Debug)]
struct Open {
    retry_at: Instant,
    backoff: Duration,
    /// A call is probing the database now.
    probing: bool,
    reason: String,
}

/// Permission to make one call.
struct Admission<'a> {
    breaker: &'a Breaker,
    /// This call is the probe of an open breaker.
    probe: bool,
    settled: bool,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(&self) -> Result<Admission<'_>> {
        let mut open = self.lock();
        let probe = match open.as_mut() {
            None => false,
            Some(o) if o.probing => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL unreachable ({}); reconnecting",
                    o.reason
                )));
            }
            Some(o) if Instant::now() < o.retry_at => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL unreachable ({}); next attempt in {} ms",
                    o.reason,
                    (o.retry_at - Instant::now()).as_millis()
                )));
            }
            Some(o) => {
                o.probing = true;
                true
            }
        };
        Ok(Admission {
            breaker: self,
            probe,
            settled: false,
        })
    }
}

impl Admission<'_> {
    fn succeeded(mut self) {
        self.settled = true;
        *self.breaker.lock() = None;
    }

    /// Records a failure; returns whether it opened (or kept open) the breaker anew.
    fn failed(mut self, reason: &str) -> bool {
        self.settled = true;
        let mut open = self.breaker.lock();
        let now = Instant::now();
        match open.as_mut() {
            None => {
                *open = Some(Open {
                    retry_at: now + BACKOFF_MIN,
                    backoff: BACKOFF_MIN,
                    probing: false,
                    reason: reason.to_owned(),
                });
                true
            }
            Some(o) if self.probe => {
                o.backoff = (o.backoff * 2).min(BACKOFF_MAX);
                o.retry_at = now + o.backoff;
                o.probing = false;
                o.reason = reason.to_owned();
                true
            }
            // A call admitted before the breaker opened: the failure is already recorded.
            Some(_) => false,
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        // A probe abandoned half-way (its caller went away) must not leave the breaker waiting
        // for an answer that never comes: let the next call probe.
        if self.probe
            && !self.settled
            && let Some(o) = self.breaker.lock().as_mut()
        {
            o.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_breaker_fails_fast_then_lets_one_probe_through() {
        let breaker = Breaker::default();
        assert!(breaker.admit().unwrap().failed("down"));
        // Open: refused at once, until the backoff has passed.
        assert!(breaker.admit().is_err());
        tokio::time::advance(BACKOFF_MIN).await;
        let probe = breaker.admit().unwrap();
        assert!(probe.probe);
        // While one call probes, the others are refused.
        let refused = breaker.admit().err().unwrap().to_string();
        assert!(refused.contains("reconnecting"), "{refused}");
        // A failed probe doubles the backoff.
        assert!(probe.failed("still down"));
        tokio::time::advance(BACKOFF_MIN).await;
        assert!(breaker.admit().is_err());
        tokio::time::advance(BACKOFF_MIN).await;
        // An abandoned probe lets the next call probe; a successful one closes the breaker.
        drop(breaker.admit().unwrap());
        breaker.admit().unwrap().succeeded();
        let normal = breaker.admit().unwrap();
        assert!(!normal.probe);
        normal.succeeded();
    }
}
