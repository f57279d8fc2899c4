//! A bounded pool for batch work (identity map, buckets, opt-out status).
//!
//! A 10,000-identity map is tens of milliseconds of CPU. Run on the async workers it would hold
//! one of them that long and delay every token generate queued behind it (the official operator
//! blocks its event loop this way). Here batches run on blocking threads, at most one per core
//! at a time, and at most two at a time per client, so one busy mapper cannot take every core.
//!
//! A batch returns its finished HTTP response: answers can be tens of megabytes of JSON (all
//! buckets since an old date), and serialising, sealing and encoding them is batch work too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::Response;
use tokio::sync::Semaphore;

use super::ApiError;

/// Batches one client may run at once.
const PER_CLIENT: usize = 2;

/// The pool.
#[derive(Debug)]
pub struct BatchPool {
    global: Arc<Semaphore>,
    per_client: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for BatchPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchPool {
    /// A pool sized to the machine.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            global: Arc::new(Semaphore::new(cores)),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `work` for `client` on the pool; `work` answers the request, sealed and encoded.
    pub async fn run(
        &self,
        client: &str,
        work: impl FnOnce() -> Response + Send + 'static,
    ) -> Result<Response, ApiError> {
        let client_permits = {
            let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(client.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_CLIENT)))
                .clone()
        };
        let busy = || ApiError::unavailable("batch pool closed");
        let _client = client_permits.acquire_owned().await.map_err(|_| busy())?;
        let _core = self
            .global
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| ApiError::unavailable("batch work failed"))
    }
}
