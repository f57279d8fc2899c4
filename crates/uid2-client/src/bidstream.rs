//! [`BidstreamClient`]: what SSPs and DSPs use to decrypt advertising tokens from bid requests
//! with the keys of `/v2/key/bidstream`.

use std::sync::Arc;
use std::time::Duration;

use crate::decrypt::{ClientType, DecryptionResponse, decrypt};
use crate::error::Result;
use crate::keys::KeyContainer;
use crate::refresh::{AutoRefresh, KeySource};
use crate::transport::Transport;

/// Decrypts advertising tokens in the bid stream.
///
/// Cheap to clone: clones share the keys. [`decrypt_token_into_raw_uid`] takes no lock, never
/// waits for a refresh and allocates nothing.
///
/// [`decrypt_token_into_raw_uid`]: BidstreamClient::decrypt_token_into_raw_uid
#[derive(Debug, Clone)]
pub struct BidstreamClient {
    source: Arc<KeySource>,
}

impl BidstreamClient {
    /// The path of the key endpoint.
    pub const KEYS_PATH: &'static str = "/v2/key/bidstream";

    /// A client for `base_url` (e.g. `https://prod.uidapi.com`) with an API key of role
    /// `ID_READER` and its client secret (base64). No request is made until [`refresh`].
    ///
    /// [`refresh`]: BidstreamClient::refresh
    pub fn new(base_url: &str, api_key: &str, secret_b64: &str) -> Result<Self> {
        Self::with_http_client(base_url, api_key, secret_b64, None)
    }

    /// As [`new`](Self::new), with your own `reqwest` client (timeouts, proxies, TLS roots;
    /// `None`: the default one). Yours replaces the default 30 s timeout: give it one, or a
    /// call may wait as long as the network lets it.
    pub fn with_http_client(
        base_url: &str,
        api_key: &str,
        secret_b64: &str,
        http: Option<reqwest::Client>,
    ) -> Result<Self> {
        let transport = Transport::new(base_url, api_key, secret_b64, http)?;
        Ok(Self {
            source: Arc::new(KeySource::new(transport, Self::KEYS_PATH)),
        })
    }

    /// Fetches the current keys from `/v2/key/bidstream` and swaps them in. On error the
    /// previous keys stay in use.
    pub async fn refresh(&self) -> Result<()> {
        self.source.refresh().await
    }

    /// Loads keys from a decrypted `/v2/key/bidstream` answer (`{"body": {…}}`), as the official
    /// SDKs' `refreshJson`.
    pub fn refresh_json(&self, json: &str) -> Result<()> {
        self.source.refresh_json(json.as_bytes())
    }

    /// Refreshes the keys every `interval` in a Tokio task until the returned handle is dropped.
    /// The first refresh comes once the keys held are `interval` old (at once if there are
    /// none). An hour is a common interval; the keys of an answer stay valid for much
    /// longer. Intervals under a second are taken as one second, over a day as a day. A failed
    /// refresh keeps the keys held and is retried after 2 s, 4 s, 8 s… (never later than the
    /// interval).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start_auto_refresh(&self, interval: Duration) -> AutoRefresh {
        self.source.start_auto_refresh(interval)
    }

    /// The keys in use, if any were loaded.
    pub fn keys(&self) -> Option<Arc<KeyContainer>> {
        self.source.keys()
    }

    /// Decrypts an advertising token from a bid request. `domain_or_app_name` is the site domain
    /// or app name of the bid request; it is checked for client-side generated tokens only, as
    /// the Java SDK checks it: equal (ASCII case aside) to a name the token's site lists in
    /// `site_data`, so pass the host the site registered (`example.com`, not
    /// `https://www.example.com/page`).
    pub fn decrypt_token_into_raw_uid(
        &self,
        token: &str,
        domain_or_app_name: Option<&str>,
    ) -> DecryptionResponse {
        self.decrypt_token_into_raw_uid_at(token, domain_or_app_name, crate::now_ms())
    }

    /// [`decrypt_token_into_raw_uid`](Self::decrypt_token_into_raw_uid) at a given time (Unix
    /// ms), for tests and replays.
    pub fn decrypt_token_into_raw_uid_at(
        &self,
        token: &str,
        domain_or_app_name: Option<&str>,
        now_ms: i64,
    ) -> DecryptionResponse {
        self.source.with_keys(|keys| {
            decrypt(
                keys,
                token,
                domain_or_app_name,
                ClientType::Bidstream,
                now_ms,
            )
        })
    }
}
