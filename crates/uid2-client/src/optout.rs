//! [`OptOutClient`]: recording a user's opt-out (`/v2/token/logout`, what a publisher's or an
//! opt-out portal's "opt out of UID2" button calls) and asking which raw UIDs have opted out
//! (`/v2/optout/status`, for advertisers and data providers holding raw UIDs).
//!
//! The official operator keeps `/v2/token/logout` for its own opt-out portal; a self-hosted
//! operator hands the `OPTOUT` role to whoever runs that button. As everywhere in this SDK,
//! emails and phone numbers are hashed before they leave the process.

use std::collections::HashMap;
use std::sync::Arc;

use uid2_proto::wire::{LogoutResponse, OptoutStatusRequest, OptoutStatusResponse};

use crate::error::{Error, Result};
use crate::publisher::TokenGenerateInput;
use crate::transport::{Answer, Transport};

/// The most raw UIDs one `/v2/optout/status` call may ask about.
pub const MAX_OPTOUT_STATUS_IDS: usize = 5_000;

/// Records opt-outs (an API key with role `OPTOUT`) and reads them back by raw UID (role
/// `MAPPER`, `SHARER` or `ID_READER`).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct OptOutClient {
    transport: Arc<Transport>,
}

impl OptOutClient {
    /// A client for `base_url` with an API key and its client secret (base64).
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
        Ok(Self {
            transport: Arc::new(Transport::new(base_url, api_key, secret_b64, http)?),
        })
    }

    /// Opts the identity out of UID2 (`/v2/token/logout`). Returns once the operator has
    /// acknowledged it, which it does only when the opt-out is durable; from then on generate
    /// answers `optout` and the identity's next refresh does too.
    pub async fn opt_out(&self, identity: &TokenGenerateInput) -> Result<()> {
        let json = identity.to_json()?;
        let answer = self
            .transport
            .call("/v2/token/logout", json.as_bytes(), false)
            .await?;
        let body: LogoutResponse = Answer::parse(&answer)?.into_success_body()?;
        if body.optout != "OK" {
            return Err(Error::malformed(format!(
                "logout answered optout {:?}",
                body.optout
            )));
        }
        Ok(())
    }

    /// Which of `raw_uids` (base64) have opted out, and since when (Unix ms): the answer of
    /// `/v2/optout/status`, keyed by raw UID. Raw UIDs that have not opted out are absent. At
    /// most [`MAX_OPTOUT_STATUS_IDS`] a call.
    pub async fn opted_out_since(
        &self,
        raw_uids: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<HashMap<String, i64>> {
        let request = OptoutStatusRequest {
            advertising_ids: Some(
                raw_uids
                    .into_iter()
                    .map(|id| id.as_ref().to_owned())
                    .collect(),
            ),
        };
        let count = request.advertising_ids.as_ref().map_or(0, Vec::len);
        if count > MAX_OPTOUT_STATUS_IDS {
            return Err(Error::InvalidInput(format!(
                "{count} raw UIDs: the service takes at most {MAX_OPTOUT_STATUS_IDS} a call"
            )));
        }
        let json = serde_json::to_string(&request).map_err(Error::malformed)?;
        let answer = self
            .transport
            .call("/v2/optout/status", json.as_bytes(), false)
            .await?;
        let body: OptoutStatusResponse = Answer::parse(&answer)?.into_success_body()?;
        Ok(body
            .opted_out
            .into_iter()
            .map(|o| (o.advertising_id, o.opted_out_since))
            .collect())
    }
}
