//! The legacy v1 endpoints the 2021 publisher guide used: plain JSON (no envelope), Bearer auth,
//! identities as query parameters. As upstream, `/v1/token/generate` and the single-identity
//! `GET /v1/identity/map` do not check opt-outs (the opt-out shows at refresh).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};
use uid2_proto::envelope::{REFRESH_ENVELOPE_CHARS, RefreshEnvelope};
use uid2_proto::wire::{Envelope, MappedIdentityV2, ResponseStatus, StatusOnly};
use uid2_store::Role;

use super::identity_map::{map_v2_list, v2_map_input};
use super::token::{identity_error, refresh_failure, single_identity, validate_token};
use super::{ApiError, LimitedBody, api_key, ok};
use crate::clients::Client;
use crate::identity_service::{self, GenerateOutcome, GeneratePolicy, RefreshForm, RefreshOutcome};
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(query: QueryPairs) -> Result<Map<String, Value>, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::client_error(format!("Invalid query string: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

fn json<T: Serialize>(value: &T) -> Response {
    ok(
        "application/json",
        serde_json::to_vec(value).expect("responses serialise"),
    )
}

fn success<T: Serialize>(body: T) -> Response {
    json(&Envelope {
        status: ResponseStatus::Success,
        body,
    })
}

fn optout() -> Response {
    json(&StatusOnly {
        status: ResponseStatus::Optout,
        message: None,
    })
}

fn authorize(snap: &Snapshot, headers: &HeaderMap, role: Role) -> Result<Arc<Client>, ApiError> {
    api_key(headers)
        .and_then(|k| snap.clients.authorize(k, &[role]))
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

/// `GET /v1/token/generate?email=…` (or `email_hash`, `phone`, `phone_hash`).
pub(super) async fn generate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let client = authorize(&snap, &headers, Role::Generator)?;
    let identity = single_identity(&params(query)?).map_err(identity_error)?;
    let outcome = identity_service::generate(
        &snap,
        now_ms(),
        &mut rand::rng(),
        client.site_id,
        &identity,
        GeneratePolicy::LEGACY_V1,
    )
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(match outcome {
        GenerateOutcome::Generated(tokens) => success(tokens),
        GenerateOutcome::OptOut => optout(),
    })
}

/// `GET /v1/token/refresh?refresh_token=…`: the bare token (a v2 wrapper is unwrapped too).
pub(super) async fn refresh(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let authenticated = api_key(&headers).is_some_and(|k| snap.clients.find(k).is_some());
    let token = params(query)?
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: refresh_token"))?;
    let inner = if token.len() == REFRESH_ENVELOPE_CHARS {
        RefreshEnvelope::open(&token, &snap.keys.ring)
            .map(|e| e.refresh_token)
            .map_err(|_| refresh_failure(&RefreshOutcome::Invalid, authenticated))?
    } else {
        token
    };
    match identity_service::refresh(&snap, now_ms(), &mut rand::rng(), &inner, RefreshForm::Bare) {
        RefreshOutcome::Refreshed(tokens) => Ok(success(tokens)),
        RefreshOutcome::OptOut => Ok(optout()),
        other => Err(refresh_failure(&other, authenticated)),
    }
}

/// `GET /v1/token/validate?token=…&email=…`: true only for the test identities, as v1 did.
pub(super) async fn validate(
    State(op): State<Arc<Operator>>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let fields = params(query)?;
    let identity = single_identity(&fields).map_err(identity_error)?;
    let token = fields
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: token"))?;
    let flh = snap.salts.first_level_hash(&identity);
    if !snap
        .salts
        .special
        .is_validate_identity(identity.identity_type, &flh)
    {
        return Ok(success(false));
    }
    let decoded = uid2_proto::token::advertising::decode(token, &snap.keys.ring, i64::MIN)
        .and_then(|t| t.check_raw_uid_identity().map(|()| t))
        .map_err(|_| ApiError::client_error("Invalid token"))?;
    let site = snap
        .keys
        .key_owner_site(decoded.site_key_id())
        .unwrap_or_default();
    Ok(success(validate_token(&snap, site, token, &identity)?))
}

/// `GET /v1/identity/map?email=…`: one identity, no opt-out check.
pub(super) async fn map_one(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    authorize(&snap, &headers, Role::Mapper)?;
    let fields = params(query)?;
    let identity = single_identity(&fields).map_err(identity_error)?;
    let identifier = ["email", "email_hash", "phone", "phone_hash"]
        .iter()
        .find_map(|f| fields.get(*f).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let mapped = identity_service::map(&snap, &identity, false)
        .expect("mapping without the opt-out check succeeds");
    Ok(success(MappedIdentityV2 {
        identifier,
        advertising_id: mapped.raw_uid.to_base64(),
        bucket_id: snap
            .salts
            .bucket_ids
            .encode(snap.salts.table.bucket(mapped.bucket_index).id),
    }))
}

/// `POST /v1/identity/map`: a plain-JSON v2 map request.
pub(super) async fn map_many(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let client = authorize(&snap, &headers, Role::Mapper)?;
    let fields: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::client_error("Invalid JSON body"))?
    };
    let (field, items) = v2_map_input(&fields)?;
    let result = op
        .batch
        .run(&client.key_id, move || map_v2_list(&snap, field, items))
        .await?;
    Ok(success(result))
}
