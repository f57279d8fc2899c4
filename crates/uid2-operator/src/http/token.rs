//! `/v2/token/generate`, `/v2/token/refresh`, `/v2/token/validate`, `/v2/token/logout`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::{
    REFRESH_ENVELOPE_CHARS, RefreshEnvelope, RefreshEnvelopeError, seal_bare_response,
};
use uid2_proto::identity::HashedIdentity;
use uid2_proto::token::advertising;
use uid2_proto::wire::{LogoutResponse, ResponseStatus};
use uid2_store::Role;

use super::input::{identity_error, single_identity, tcf_consent_string};
use super::v2::V2Request;
use super::{ApiError, LimitedBody, PublicBody, answer_json, is_authenticated, is_binary, ok};
use crate::identity_service::{
    self, GenerateOutcome, GeneratePolicy, RefreshForm, RefreshKeys, RefreshOutcome, UserConsent,
};
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

/// `POST /v2/token/generate`.
pub(super) async fn generate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Generator])?;
    let fields = req.fields();
    let identity = single_identity(fields).map_err(identity_error)?;
    // As upstream: the identity is validated first, then (EUID only) the consent string.
    match identity_service::user_consent(&req.snap, tcf_consent_string(fields)) {
        UserConsent::Sufficient => {}
        UserConsent::Insufficient => {
            return Ok(req.reply::<()>(ResponseStatus::InsufficientUserConsent, None));
        }
        UserConsent::Invalid => return Err(ApiError::client_error("User consent is invalid")),
    }
    let outcome = identity_service::generate(
        &req.snap,
        now_ms(),
        &mut rand::rng(),
        req.client.site_id,
        &identity,
        GeneratePolicy::SERVER_SIDE,
    )
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(match outcome {
        GenerateOutcome::Generated(tokens) => req.success(&tokens),
        GenerateOutcome::OptOut => req.reply::<()>(ResponseStatus::Optout, None),
    })
}

/// The answer to a refresh that did not produce tokens, by caller kind (browsers get `error`).
pub(crate) fn refresh_failure(outcome: &RefreshOutcome, authenticated: bool) -> ApiError {
    match (outcome, authenticated) {
        (_, false) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::Error,
            "Error refreshing token",
        ),
        (RefreshOutcome::Expired, true) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::ExpiredToken,
            "Expired Token presented",
        ),
        (RefreshOutcome::NoActiveKey, true) => {
            ApiError::unavailable("No active encryption key available")
        }
        (_, true) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::InvalidToken,
            "Invalid Token presented",
        ),
    }
}

/// The JSON answer of a refresh that produced one (new tokens or `optout`).
fn refresh_json(outcome: &RefreshOutcome) -> Option<Vec<u8>> {
    match outcome {
        RefreshOutcome::Refreshed(tokens) => {
            Some(answer_json(ResponseStatus::Success, Some(tokens)))
        }
        RefreshOutcome::OptOut => Some(answer_json::<()>(ResponseStatus::Optout, None)),
        _ => None,
    }
}

/// `POST /v2/token/refresh`: the body is the refresh token; no API key is needed.
pub(super) async fn refresh(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    PublicBody(body): PublicBody,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let authenticated = is_authenticated(&snap, &headers);
    // As upstream: an empty body, or one that is not even text, is an invalid refresh token,
    // not a malformed request.
    let text = match std::str::from_utf8(&body).map(str::trim) {
        Ok(text) if !text.is_empty() => text,
        _ => return Err(refresh_failure(&RefreshOutcome::Invalid, authenticated)),
    };
    let now = now_ms();
    let mut rng = rand::rng();

    if text.len() != REFRESH_ENVELOPE_CHARS {
        // A bare refresh token (as v1 handed out): answered in plain JSON.
        let outcome = identity_service::refresh(&snap, now, &mut rng, text, RefreshForm::Wrapped);
        return match refresh_json(&outcome) {
            Some(json) => Ok(ok("application/json", json)),
            None => Err(refresh_failure(&outcome, authenticated)),
        };
    }

    let envelope =
        RefreshEnvelope::open(text, &RefreshKeys::of(&snap)).map_err(refresh_envelope_error)?;
    let outcome = identity_service::refresh(
        &snap,
        now,
        &mut rng,
        &envelope.refresh_token,
        RefreshForm::Wrapped,
    );
    let json = refresh_json(&outcome).ok_or_else(|| refresh_failure(&outcome, authenticated))?;
    let sealed = seal_bare_response(&envelope.refresh_response_key, &json, &mut rng);
    Ok(if is_binary(&headers) {
        ok("application/octet-stream", sealed)
    } else {
        ok("text/plain", base64_encode(&sealed))
    })
}

/// The answer to a 388-character refresh-token wrapper that does not open (whoever calls).
pub(crate) fn refresh_envelope_error(e: RefreshEnvelopeError) -> ApiError {
    ApiError::client_error(match e {
        RefreshEnvelopeError::NotBase64 => "Invalid body: Body is not valid base64.".to_owned(),
        RefreshEnvelopeError::UnknownKey(id) => {
            format!("Invalid key: Generator of this token (Key ID: {id}) does not exist.")
        }
        RefreshEnvelopeError::DecryptionFailed => {
            "Invalid data: Check encryption method and encryption key.".to_owned()
        }
        RefreshEnvelopeError::BadPayload => {
            "Invalid format: Payload is not valid json or missing required data.".to_owned()
        }
    })
}

/// `POST /v2/token/validate`: does this advertising token carry this identity?
pub(super) async fn validate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Generator])?;
    let fields = req.fields();
    let identity = single_identity(fields).map_err(identity_error)?;
    let token = fields
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: token"))?;
    let matches = validate_token(&req.snap, Some(req.client.site_id), token, &identity)?;
    Ok(req.success(&matches))
}

/// Whether `token` carries `identity`'s current raw UID. With `site_id`, the token must have been
/// minted for that site (the caller's); without (v1, which has no caller), for any known site.
pub(crate) fn validate_token(
    snap: &Snapshot,
    site_id: Option<i32>,
    token: &str,
    identity: &HashedIdentity,
) -> Result<bool, ApiError> {
    let decoded = advertising::decode_checked(token, &snap.keys.ring, i64::MIN)
        .map_err(|_| ApiError::client_error("Invalid token"))?;
    let owner = snap.keys.key_owner_site(decoded.site_key_id());
    if owner.is_none() || site_id.is_some_and(|site| owner != Some(site)) {
        return Err(ApiError::client_error("Unauthorised to validate token"));
    }
    let mapped = identity_service::map_ignoring_optout(snap, identity);
    Ok(&mapped.raw_uid == decoded.raw_uid())
}

/// `POST /v2/token/logout`: records an opt-out (OPTOUT role, the opt-out portal).
pub(super) async fn logout(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Optout])?;
    let identity = single_identity(req.fields()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::InvalidToken,
            "Invalid Token presented",
        )
    })?;
    let mapped = identity_service::map_ignoring_optout(&req.snap, &identity);
    op.record_optout(
        mapped.first_level_hash.0,
        Some(mapped.raw_uid.as_bytes().to_vec()),
        now_ms(),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "opt-out not recorded");
        ApiError::unavailable("The opt-out could not be stored; retry later")
    })?;
    Ok(req.success(&LogoutResponse {
        optout: "OK".into(),
    }))
}
