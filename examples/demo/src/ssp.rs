//! The SSP: a small server that receives ad requests carrying an advertising token and decrypts
//! the token with the keys of `/v2/key/bidstream` (`uid2_client::BidstreamClient`, refreshed in
//! the background), answering the raw UID and the publisher's site id.
//!
//! Browsers post ad requests straight to it (as Prebid.js does to a real SSP), so every answer
//! carries CORS headers and preflights are answered.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};
use uid2_client::{BidstreamClient, IdentityType};

/// The SSP's state: the key-holding client.
#[derive(Debug, Clone)]
pub(crate) struct Ssp {
    client: BidstreamClient,
}

impl Ssp {
    /// An SSP decrypting with `client` (whose keys are refreshed elsewhere).
    pub(crate) fn new(client: BidstreamClient) -> Self {
        Self { client }
    }

    /// The SSP's routes: `POST /bid` and `GET /` (what it knows).
    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/bid", post(bid))
            .route("/", get(status))
            // Pages on any origin post ad requests here.
            .layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::mirror_request())
                    .allow_methods([Method::GET, Method::POST])
                    .allow_headers([header::CONTENT_TYPE]),
            )
            .with_state(Arc::new(self))
    }
}

/// An ad request as the demo page sends it.
#[derive(Debug, Deserialize)]
struct BidRequest {
    /// The user's advertising token.
    advertising_token: String,
    /// The page's domain (checked against the site's domains for client-side tokens).
    #[serde(default)]
    domain: Option<String>,
}

/// What the SSP learned from the token.
#[derive(Debug, Serialize)]
struct BidAnswer {
    /// Whether the token was decrypted.
    decrypted: bool,
    /// The decryption status, as the SDKs name it (`success`, `token expired`, …).
    status: &'static str,
    /// The raw UID (base64) the token carries.
    raw_uid: Option<String>,
    /// The site the token was generated for.
    site_id: Option<i32>,
    /// `email` or `phone`.
    identity_type: Option<&'static str>,
    /// Whether the token was generated in the browser.
    client_side_generated: bool,
    /// When the user's identity was first established (Unix ms).
    established_ms: Option<i64>,
    /// When the token expires (Unix ms).
    expires_ms: Option<i64>,
}

/// `POST /bid`: decrypts the ad request's token.
async fn bid(State(ssp): State<Arc<Ssp>>, Json(request): Json<BidRequest>) -> Json<BidAnswer> {
    let result = ssp
        .client
        .decrypt_token_into_raw_uid(request.advertising_token.trim(), request.domain.as_deref());
    Json(BidAnswer {
        decrypted: result.is_success(),
        status: result.status.as_str(),
        raw_uid: result.uid(),
        site_id: result.site_id,
        identity_type: result.identity_type.map(|t| match t {
            IdentityType::Email => "email",
            IdentityType::Phone => "phone",
        }),
        client_side_generated: result.is_client_side_generated,
        established_ms: result.established_ms,
        expires_ms: result.expiry_ms,
    })
}

/// What the SSP knows: how many keys it holds.
#[derive(Debug, Serialize)]
struct SspStatus {
    /// Always "Demo SSP".
    name: &'static str,
    /// The route ad requests go to.
    bid_route: &'static str,
    /// Keys loaded from `/v2/key/bidstream`.
    keys: usize,
}

/// `GET /`: what the SSP knows.
async fn status(State(ssp): State<Arc<Ssp>>) -> Json<SspStatus> {
    Json(SspStatus {
        name: "Demo SSP",
        bid_route: "POST /bid {\"advertising_token\", \"domain\"}",
        keys: ssp.client.keys().map_or(0, |k| k.len()),
    })
}
