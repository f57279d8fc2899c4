//! `/v2/token/generate`, `/v2/token/refresh`, `/v2/token/validate`, `/v2/token/logout`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::{
    REFRESH_ENVELOPE_CHARS, RefreshEnvelope, RefreshEnvelopeError, seal_bare_response,
};
use uid2_proto::identity::{HashedIdentity, IdentityField};
use uid2_proto::token::advertising;
use uid2_proto::wire::{Envelope, LogoutResponse, ResponseStatus, StatusOnly};
use uid2_store::Role;

use super::v2::V2Request;
use super::{ApiError, LimitedBody, api_key, is_binary, ok};
use crate::identity_service::{self, GenerateOutcome, GeneratePolicy, RefreshForm, RefreshOutcome};
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

const MISSING_IDENTITY: &str = "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified";

/// Why a request's identity fields are unusable.
pub(crate) enum IdentityInputError {
    /// None, or more than one, of the four fields.
    Missing,
    /// The one field is not a valid email, phone or hash.
    Invalid,
}

/// The one identity of a request object (`email`, `email_hash`, `phone` or `phone_hash`).
pub(crate) fn single_identity(
    fields: &Map<String, Value>,
) -> Result<HashedIdentity, IdentityInputError> {
    let mut present = IdentityField::ALL.into_iter().filter_map(|f| {
        fields
            .get(f.name())
            .filter(|v| !v.is_null())
            .map(|v| (f, v))
    });
    let (field, value) = present.next().ok_or(IdentityInputError::Missing)?;
    if present.next().is_some() {
        return Err(IdentityInputError::Missing);
    }
    let value = value.as_str().ok_or(IdentityInputError::Invalid)?;
    HashedIdentity::from_field(field, value).map_err(|_| IdentityInputError::Invalid)
}

/// The generate-style answer to an identity input error.
pub(crate) fn identity_error(e: IdentityInputError) -> ApiError {
    match e {
        IdentityInputError::Missing => ApiError::client_error(MISSING_IDENTITY),
        IdentityInputError::Invalid => ApiError::client_error("Invalid Identifier"),
    }
}

/// `POST /v2/token/generate`.
pub(super) async fn generate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Generator])?;
    let identity = single_identity(&req.object()).map_err(identity_error)?;
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
        GenerateOutcome::Generated(tokens) => req.success(tokens),
        GenerateOutcome::OptOut => req.reply::<()>(ResponseStatus::Optout, None),
    })
}

/// Whether a refresh caller counts as authenticated: any known key, even a disabled one.
fn is_authenticated(snap: &Snapshot, headers: &HeaderMap) -> bool {
    api_key(headers).is_some_and(|k| snap.clients.find(k).is_some())
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

fn refresh_json(outcome: &RefreshOutcome) -> Option<Vec<u8>> {
    let json = match outcome {
        RefreshOutcome::Refreshed(tokens) => serde_json::to_vec(&Envelope {
            status: ResponseStatus::Success,
            body: tokens,
        }),
        RefreshOutcome::OptOut => serde_json::to_vec(&StatusOnly {
            status: ResponseStatus::Optout,
            message: None,
        }),
        _ => return None,
    };
    Some(json.expect("responses serialise"))
}

/// `POST /v2/token/refresh`: the body is the refresh token; no API key is needed.
pub(super) async fn refresh(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let authenticated = is_authenticated(&snap, &headers);
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::client_error("Invalid body: the refresh token is not text"))?
        .trim();
    if text.is_empty() {
        return Err(ApiError::client_error(
            "Required Parameter Missing: refresh_token",
        ));
    }
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

    let envelope = RefreshEnvelope::open(text, &snap.keys.ring).map_err(|e| {
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
    })?;
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

/// `POST /v2/token/validate`: does this advertising token carry this identity?
pub(super) async fn validate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Generator])?;
    let fields = req.object();
    let identity = single_identity(&fields).map_err(identity_error)?;
    let token = fields
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: token"))?;
    let matches = validate_token(&req.snap, req.client.site_id, token, &identity)?;
    Ok(req.success(matches))
}

/// Whether `token` (minted for `site_id`) carries `identity`'s current raw UID.
pub(crate) fn validate_token(
    snap: &Snapshot,
    site_id: i32,
    token: &str,
    identity: &HashedIdentity,
) -> Result<bool, ApiError> {
    let decoded = advertising::decode(token, &snap.keys.ring, i64::MIN)
        .and_then(|t| t.check_raw_uid_identity().map(|()| t))
        .map_err(|_| ApiError::client_error("Invalid token"))?;
    if snap.keys.key_owner_site(decoded.site_key_id()) != Some(site_id) {
        return Err(ApiError::client_error("Unauthorised to validate token"));
    }
    let mapped = identity_service::map(snap, identity, false)
        .expect("mapping without the opt-out check succeeds");
    Ok(&mapped.raw_uid == decoded.raw_uid())
}

/// `POST /v2/token/logout`: records an opt-out (OPTOUT role, the opt-out portal).
pub(super) async fn logout(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Optout])?;
    let identity = single_identity(&req.object()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ResponseStatus::InvalidToken,
            "Invalid Token presented",
        )
    })?;
    let mapped = identity_service::map(&req.snap, &identity, false)
        .expect("mapping without the opt-out check succeeds");
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
    Ok(req.success(LogoutResponse {
        optout: "OK".into(),
    }))
}
