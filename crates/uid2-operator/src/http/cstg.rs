//! `POST /v2/token/client-generate`: client-side token generation from a browser or app.
//!
//! No API key: the publisher's subscription id names the operator key pair, and the origin (or
//! app name) must belong to the publisher's site. The answer is sealed with the ECDH secret.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use uid2_proto::cstg::{CstgError, open_payload};
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::seal_bare_response;
use uid2_proto::identity::{HashedIdentity, IdentityType};
use uid2_proto::wire::{CstgPayload, CstgRequest, ResponseStatus};
use uid2_store::SiteRecord;

use super::{ApiError, PublicBody, answer_json, ok};
use crate::domain_names::registrable_domain;
use crate::identity_service::{self, GenerateOutcome, GeneratePolicy};
use crate::{Operator, now_ms};

/// The host of an `Origin` header value (`http[s]://host[:port]`), lower-cased. A browser
/// sends nothing else for a web page: other schemes and user info are refused outright.
fn origin_host(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}", v6.split(']').next()?)
    } else {
        authority.split(':').next()?.to_owned()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a page at `origin` may generate tokens for `site`: the registrable domain of its
/// host must be one of the site's domain names, exactly. So any subdomain of a listed
/// registrable domain passes, while a listed subdomain (`www.example.com`) or a listed public
/// suffix (`co.uk`) never matches anything, as upstream. IP-address origins never pass.
pub(crate) fn origin_allowed(site: &SiteRecord, origin: &str) -> bool {
    let Some(host) = origin_host(origin) else {
        return false;
    };
    if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return false;
    }
    let Some(domain) = registrable_domain(&host) else {
        return false;
    };
    site.domain_names
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
}

fn forbidden(status: ResponseStatus, message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, status, message)
}

/// `POST /v2/token/client-generate`.
pub(super) async fn client_generate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    PublicBody(body): PublicBody,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::client_error(
            "json payload expected but not found",
        ));
    }
    // The official operator reads a JSON object; serde would take an array for a struct too.
    let is_object = body.trim_ascii_start().first() == Some(&b'{');
    let request: CstgRequest = serde_json::from_slice(&body)
        .ok()
        .filter(|_| is_object)
        .ok_or_else(|| ApiError::client_error("json payload is not valid"))?;
    let snap = op.snapshot();
    let subscription = snap
        .cstg
        .get(&request.subscription_id)
        .ok_or_else(|| ApiError::client_error("bad subscription_id"))?;
    if subscription.disabled {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ResponseStatus::Unauthorized,
            "Unauthorized",
        ));
    }

    if snap.config.cstg_domain_check {
        let site = snap.sites.get(&subscription.site_id);
        match &request.app_name {
            Some(app) => {
                let allowed =
                    site.is_some_and(|s| s.app_names.iter().any(|a| a.eq_ignore_ascii_case(app)));
                if !allowed {
                    return Err(forbidden(
                        ResponseStatus::InvalidAppName,
                        "unexpected app name",
                    ));
                }
            }
            None => {
                let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
                let allowed = site.zip(origin).is_some_and(|(s, o)| origin_allowed(s, o));
                if !allowed {
                    return Err(forbidden(
                        ResponseStatus::InvalidHttpOrigin,
                        "unexpected http origin",
                    ));
                }
            }
        }
    }

    if request.payload.is_empty() || request.iv.is_empty() || request.public_key.is_empty() {
        return Err(ApiError::client_error(
            "required parameters: payload, iv, public_key",
        ));
    }
    let client_public =
        base64_decode(&request.public_key).map_err(|_| ApiError::client_error("bad public key"))?;
    let shared = subscription
        .keypair
        .shared_secret(&client_public)
        .map_err(|_| ApiError::client_error("bad public key"))?;
    let plain = open_payload(&shared, &request).map_err(|e| {
        ApiError::client_error(match e {
            CstgError::BadIv => "bad iv",
            CstgError::BadPublicKey | CstgError::BadPrivateKey => "bad public key",
            CstgError::DecryptionFailed => "payload decryption failed",
        })
    })?;
    let payload: CstgPayload = serde_json::from_slice(&plain)
        .map_err(|_| ApiError::client_error("encrypted payload contains invalid json"))?;
    let identity = match (payload.email_hash, payload.phone_hash) {
        (Some(h), None) => HashedIdentity::from_hash(IdentityType::Email, &h),
        (None, Some(h)) => HashedIdentity::from_hash(IdentityType::Phone, &h),
        _ => {
            return Err(ApiError::client_error(
                "please provide exactly one of: email_hash, phone_hash",
            ));
        }
    }
    .map_err(|_| ApiError::client_error("Invalid Identifier"))?;

    let mut rng = rand::rng();
    let outcome = identity_service::generate(
        &snap,
        now_ms(),
        &mut rng,
        subscription.site_id,
        &identity,
        GeneratePolicy::CLIENT_SIDE,
    )
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let json = match outcome {
        GenerateOutcome::Generated(tokens) => answer_json(ResponseStatus::Success, Some(&tokens)),
        GenerateOutcome::OptOut => answer_json::<()>(ResponseStatus::Optout, None),
    };
    Ok(ok(
        "text/plain",
        base64_encode(&seal_bare_response(&shared, &json, &mut rng)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(domains: &[&str]) -> SiteRecord {
        SiteRecord {
            id: 5,
            name: "s".into(),
            enabled: true,
            domain_names: domains.iter().map(|d| d.to_string()).collect(),
            app_names: vec![],
            created_s: 0,
        }
    }

    #[test]
    fn origins_match_listed_registrable_domains() {
        let s = site(&["example.com", "localhost"]);
        assert!(origin_allowed(&s, "https://example.com"));
        assert!(origin_allowed(&s, "https://www.Example.com:8443"));
        assert!(origin_allowed(&s, "https://a.b.example.com/path?q"));
        assert!(origin_allowed(&s, "http://localhost:8080"));
        assert!(origin_allowed(&s, "http://app.localhost"));
        assert!(!origin_allowed(&s, "http://a.app.localhost"));
        assert!(!origin_allowed(&s, "https://badexample.com"));
        assert!(!origin_allowed(&s, "https://example.com.evil.org"));
        assert!(!origin_allowed(&s, "http://127.0.0.1:8080"));
        assert!(!origin_allowed(&s, "http://[::1]:8080"));
        assert!(!origin_allowed(&s, "null"));
        assert!(!origin_allowed(&s, ""));
        assert!(!origin_allowed(&site(&["127.0.0.1"]), "http://127.0.0.1"));
        // Only what a browser sends for a web page: http(s), no user info.
        assert!(!origin_allowed(&s, "file://localhost"));
        assert!(!origin_allowed(&s, "chrome-extension://localhost"));
        assert!(!origin_allowed(&s, "://localhost"));
        assert!(!origin_allowed(&s, "https://user@example.com"));
        assert!(origin_allowed(&s, "HTTPS://example.com"));
    }

    #[test]
    fn listed_subdomains_and_public_suffixes_match_nothing() {
        // The official check compares the origin's registrable domain with the list.
        let s = site(&["co.uk", "www.example.com", "github.io"]);
        assert!(!origin_allowed(&s, "https://attacker.co.uk"));
        assert!(!origin_allowed(&s, "https://www.example.com"));
        assert!(!origin_allowed(&s, "https://someone.github.io"));
        // Private suffixes count: a github.io page's registrable domain is its own name.
        assert!(origin_allowed(
            &site(&["someone.github.io"]),
            "https://someone.github.io"
        ));
        assert!(!origin_allowed(
            &site(&["someone.github.io"]),
            "https://other.github.io"
        ));
        assert!(origin_allowed(
            &site(&["example.co.uk"]),
            "https://shop.example.co.uk"
        ));
        // A name under no known public suffix has no registrable domain.
        assert!(!origin_allowed(
            &site(&["example.invalidtld"]),
            "https://example.invalidtld"
        ));
    }
}
