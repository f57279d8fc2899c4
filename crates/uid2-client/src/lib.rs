//! The UID2 client SDK for Rust.
//!
//! One client per role, each speaking the operator's v2 API exactly as the official SDKs do: the
//! same requests, envelopes and statuses, and the checks of the Java SDK (the Python SDK leaves
//! out the domain check of client-side generated tokens), so it works against any UID2 operator,
//! this project's or the official one.
//!
//! - [`PublisherClient`]: generate an identity from an email or phone number, refresh it.
//! - [`BidstreamClient`]: decrypt advertising tokens in bid requests (SSPs, DSPs).
//! - [`SharingClient`]: encrypt raw UIDs into sharing tokens and decrypt them (sharers).
//! - [`IdentityMapClient`]: map emails and phone numbers to raw UIDs (advertisers).
//! - [`OptOutClient`]: record a user's opt-out, and ask which raw UIDs have opted out.
//!
//! All cryptography is `uid2-proto`'s (aws-lc-rs). Decryption is synchronous, lock-free and
//! allocation-free: keys are swapped in atomically by [`BidstreamClient::refresh`] or by the
//! background task of [`BidstreamClient::start_auto_refresh`].
//!
//! A publisher:
//!
//! ```no_run
//! # async fn run() -> Result<(), uid2_client::Error> {
//! use uid2_client::{PublisherClient, TokenGenerateInput, TokenGenerateResponse};
//!
//! let client = PublisherClient::new("https://prod.uidapi.com", "API key", "c2VjcmV0...")?;
//! match client.generate_token(&TokenGenerateInput::from_email("user@example.com")).await? {
//!     TokenGenerateResponse::Success(identity) => println!("{}", identity.advertising_token),
//!     TokenGenerateResponse::OptOut => println!("opted out: no token"),
//!     TokenGenerateResponse::InsufficientUserConsent => println!("no consent"),
//! }
//! # Ok(()) }
//! ```
//!
//! An SSP:
//!
//! ```no_run
//! # async fn run(token: &str) -> Result<(), uid2_client::Error> {
//! use std::time::Duration;
//! use uid2_client::BidstreamClient;
//!
//! let client = BidstreamClient::new("https://prod.uidapi.com", "API key", "c2VjcmV0...")?;
//! client.refresh().await?;
//! // Keep the handle for as long as you decrypt: dropping it stops the refresher.
//! let refresher = client.start_auto_refresh(Duration::from_secs(3600));
//! let result = client.decrypt_token_into_raw_uid(token, Some("publisher.example"));
//! if let Some(raw_uid) = result.raw_uid {
//!     println!("raw UID {raw_uid}");
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod bidstream;
mod decrypt;
mod error;
pub mod identity_map;
pub mod keys;
mod optout;
mod publisher;
mod refresh;
mod sharing;
mod transport;

pub use bidstream::BidstreamClient;
pub use decrypt::{DecryptionResponse, DecryptionStatus, EncryptionStatus};
pub use error::{Error, Result};
pub use identity_map::{
    IdentityBucket, IdentityMapClient, IdentityMapInput, IdentityMapResponse, IdentityMapV3Input,
    IdentityMapV3Response, MappedIdentity, MappedIdentityV3, UnmappedIdentity,
    UnmappedIdentityReason, UnmappedIdentityV3, read_buckets_answer,
};
pub use keys::KeyContainer;
pub use optout::{MAX_OPTOUT_STATUS_IDS, OptOutClient};
pub use publisher::{
    IdentityTokens, PublisherClient, TokenGenerateInput, TokenGenerateResponse,
    TokenRefreshResponse,
};
pub use refresh::AutoRefresh;
pub use sharing::SharingClient;
pub use uid2_proto::identity::{IdentityScope, IdentityType};
pub use uid2_proto::salt::RawUid;
pub use uid2_proto::token::TokenVersion;

/// The current time in Unix milliseconds (the clock every client reads).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
