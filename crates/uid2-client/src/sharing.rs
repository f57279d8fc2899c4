//! [`SharingClient`]: what sharers use to turn raw UIDs into sharing tokens and back, with the
//! keys of `/v2/key/sharing`.

use std::sync::Arc;
use std::time::Duration;

use crate::decrypt::{ClientType, DecryptionResponse, EncryptionStatus, decrypt, encrypt};
use crate::error::Result;
use crate::keys::KeyContainer;
use crate::refresh::{AutoRefresh, KeySource};
use crate::transport::Transport;

/// Encrypts raw UIDs into sharing tokens and decrypts sharing tokens.
///
/// Cheap to clone: clones share the keys. Decryption takes no lock and allocates nothing.
#[derive(Debug, Clone)]
pub struct SharingClient {
    source: Arc<KeySource>,
}

impl SharingClient {
    /// The path of the key endpoint.
    pub const KEYS_PATH: &'static str = "/v2/key/sharing";

    /// A client for `base_url` with an API key of role `SHARER` (or `ID_READER`) and its client
    /// secret (base64). No request is made until [`refresh`](Self::refresh).
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

    /// Fetches the current keys from `/v2/key/sharing` and swaps them in. On error the previous
    /// keys stay in use.
    pub async fn refresh(&self) -> Result<()> {
        self.source.refresh().await
    }

    /// Loads keys from a decrypted `/v2/key/sharing` answer (`{"body": {…}}`).
    pub fn refresh_json(&self, json: &str) -> Result<()> {
        self.source.refresh_json(json.as_bytes())
    }

    /// Refreshes the keys every `interval` in a Tokio task until the returned handle is dropped.
    /// The first refresh comes once the keys held are `interval` old (at once if there are
    /// none). Intervals under a second are taken as one second, over a day as a day. A failed
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

    /// Encrypts a raw UID (standard base64, as identity map returns it) into a v4 sharing token
    /// for the caller's site.
    pub fn encrypt_raw_uid_into_token(&self, raw_uid: &str) -> Result<String, EncryptionStatus> {
        self.encrypt_raw_uid_into_token_at(raw_uid, crate::now_ms())
    }

    /// [`encrypt_raw_uid_into_token`](Self::encrypt_raw_uid_into_token) at a given time.
    pub fn encrypt_raw_uid_into_token_at(
        &self,
        raw_uid: &str,
        now_ms: i64,
    ) -> Result<String, EncryptionStatus> {
        self.source
            .with_keys(|keys| encrypt(keys, raw_uid, None, now_ms))
    }

    /// Encrypts a raw UID under the active key of `keyset_id` (one of the caller's keysets, or
    /// one shared with it) rather than the default keyset, as the official SDKs'
    /// `encrypt_raw_uid_into_token(uid, keyset_id)`; `NotAuthorizedForKey` if it has no active
    /// key the caller holds.
    pub fn encrypt_raw_uid_into_token_with_keyset(
        &self,
        raw_uid: &str,
        keyset_id: i32,
    ) -> Result<String, EncryptionStatus> {
        self.encrypt_raw_uid_into_token_with_keyset_at(raw_uid, keyset_id, crate::now_ms())
    }

    /// [`encrypt_raw_uid_into_token_with_keyset`](Self::encrypt_raw_uid_into_token_with_keyset)
    /// at a given time.
    pub fn encrypt_raw_uid_into_token_with_keyset_at(
        &self,
        raw_uid: &str,
        keyset_id: i32,
        now_ms: i64,
    ) -> Result<String, EncryptionStatus> {
        self.source
            .with_keys(|keys| encrypt(keys, raw_uid, Some(keyset_id), now_ms))
    }

    /// Decrypts a sharing token.
    pub fn decrypt_token_into_raw_uid(&self, token: &str) -> DecryptionResponse {
        self.decrypt_token_into_raw_uid_at(token, crate::now_ms())
    }

    /// [`decrypt_token_into_raw_uid`](Self::decrypt_token_into_raw_uid) at a given time.
    pub fn decrypt_token_into_raw_uid_at(&self, token: &str, now_ms: i64) -> DecryptionResponse {
        self.source
            .with_keys(|keys| decrypt(keys, token, None, ClientType::Sharing, now_ms))
    }
}
