//! The publisher's opt-out call: `POST /v2/token/logout` with an API key of role `OPTOUT`.
//!
//! The Rust SDK (`uid2-client`) has no client for this endpoint, so this module speaks the v2
//! envelope for it with `uid2-proto`, exactly as `uid2-client` does for the other endpoints:
//! `base64(0x01 ‖ GCM(secret, timestamp ‖ nonce ‖ JSON))` with `Authorization: Bearer <key>`,
//! the answer opened with the same secret and checked for the nonce. Only the email's hash
//! leaves the publisher.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{open_response, seal_request};
use uid2_proto::identity::HashedIdentity;

/// Records opt-outs at the operator for a publisher.
pub(crate) struct OptoutClient {
    url: String,
    api_key: String,
    secret: GcmKey,
    http: reqwest::Client,
}

impl std::fmt::Debug for OptoutClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptoutClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl OptoutClient {
    /// A client for the operator at `base_url`, with an API key of role `OPTOUT` and its secret.
    pub(crate) fn new(base_url: &str, api_key: &str, secret_b64: &str) -> Result<Self> {
        let secret: [u8; 32] = base64_decode(secret_b64)
            .ok()
            .and_then(|s| s.try_into().ok())
            .context("the opt-out client secret must be base64 of 32 bytes")?;
        Ok(Self {
            url: format!("{}/v2/token/logout", base_url.trim_end_matches('/')),
            api_key: api_key.to_owned(),
            secret: GcmKey::new(&secret),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Opts the user with `email` out of UID2. Returns once the operator has made it durable.
    pub(crate) async fn opt_out_email(&self, email: &str) -> Result<()> {
        let identity = HashedIdentity::from_email(email).context("not a valid email address")?;
        let json = serde_json::json!({ "email_hash": identity.hash.as_str() }).to_string();
        let nonce: [u8; 8] = rand::random();
        let sealed = seal_request(
            &self.secret,
            uid2_operator::now_ms(),
            nonce,
            json.as_bytes(),
            &mut rand::rng(),
        );
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(base64_encode(&sealed))
            .send()
            .await
            .context("calling /v2/token/logout")?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("/v2/token/logout answered HTTP {status}: {body}");
        }
        let raw = base64_decode(body.trim()).context("the logout answer is not base64")?;
        let answer = open_response(&self.secret, &raw, nonce)?;
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
        if answer["status"] != "success" || answer["body"]["optout"] != "OK" {
            bail!("/v2/token/logout answered {answer}");
        }
        Ok(())
    }
}
