//! The legacy v1 endpoints the 2021 publisher guide used: plain JSON (no envelope), Bearer auth,
//! identities as query parameters; the v1 identity map, buckets and key routes answer a refused
//! key with the plain text `Unauthorized`, as upstream. Unlike upstream, `/v1/token/generate` and the
//! single-identity `GET /v1/identity/map` respect opt-outs (`{"status":"optout"}`): upstream
//! they handed out tokens and raw UIDs of users who had opted out. Served unless
//! [`OperatorConfig::legacy_api`](crate::OperatorConfig::legacy_api) is off.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};
use uid2_proto::envelope::{REFRESH_ENVELOPE_CHARS, RefreshEnvelope};
use uid2_proto::identity::IdentityField;
use uid2_proto::wire::{MappedIdentityV2, ResponseStatus};
use uid2_store::Role;

use super::identity_map::{map_v2_list, rotated_buckets, since_timestamp_ms};
use super::input::{identity_error, single_identity, v1_map_input};
use super::keys::latest_keys;
use super::token::{refresh_envelope_error, refresh_failure, validate_token};
use super::{ApiError, LimitedBody, answer_json, api_key, is_authenticated, ok};
use crate::clients::Client;
use crate::identity_service::{
    self, GenerateOutcome, GeneratePolicy, RefreshForm, RefreshKeys, RefreshOutcome,
};
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query parameters; a repeated one keeps its first value, as the v1 operator read
/// `queryParam(name).get(0)`.
fn params(query: QueryPairs) -> Result<Map<String, Value>, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::client_error(format!("Invalid query string: {e}")))?;
    let mut fields = Map::new();
    for (k, v) in pairs {
        fields.entry(k).or_insert(Value::String(v));
    }
    Ok(fields)
}

/// A 200 plain-JSON answer.
fn answer<T: Serialize>(status: ResponseStatus, body: Option<&T>) -> Response {
    ok("application/json", answer_json(status, body))
}

fn success<T: Serialize>(body: &T) -> Response {
    answer(ResponseStatus::Success, Some(body))
}

/// The enabled client holding the request's key with `role`, or `refused`.
fn authorize(
    snap: &Snapshot,
    headers: &HeaderMap,
    role: Role,
    refused: fn() -> ApiError,
) -> Result<Arc<Client>, ApiError> {
    api_key(headers)
        .and_then(|k| snap.clients.authorize(k, &[role]))
        .cloned()
        .ok_or_else(refused)
}

/// `GET /v1/token/generate?email=…` (or `email_hash`, `phone`, `phone_hash`).
pub(super) async fn generate(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let client = authorize(&snap, &headers, Role::Generator, ApiError::unauthorized)?;
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
        GenerateOutcome::Generated(tokens) => success(&tokens),
        GenerateOutcome::OptOut => answer::<()>(ResponseStatus::Optout, None),
    })
}

/// `GET /v1/token/refresh?refresh_token=…`: the bare token (a v2 wrapper is unwrapped too).
pub(super) async fn refresh(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let authenticated = is_authenticated(&snap, &headers);
    let token = params(query)?
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: refresh_token"))?;
    let inner = if token.len() == REFRESH_ENVELOPE_CHARS {
        RefreshEnvelope::open(&token, &RefreshKeys::of(&snap))
            .map(|e| e.refresh_token)
            .map_err(refresh_envelope_error)?
    } else {
        token
    };
    match identity_service::refresh(&snap, now_ms(), &mut rand::rng(), &inner, RefreshForm::Bare) {
        RefreshOutcome::Refreshed(tokens) => Ok(success(&tokens)),
        RefreshOutcome::OptOut => Ok(answer::<()>(ResponseStatus::Optout, None)),
        other => Err(refresh_failure(&other, authenticated)),
    }
}

/// `GET /v1/token/validate?token=…&email=…`: true only for the test identities, as v1 did. Past
/// the identity check every answer is a 200: a missing or undecryptable token is `false`, as
/// the v1 operator caught every token error and answered `false`.
pub(super) async fn validate(
    State(op): State<Arc<Operator>>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let fields = params(query)?;
    let identity = single_identity(&fields).map_err(identity_error)?;
    let flh = snap.salts.first_level_hash(&identity);
    let valid = snap
        .salts
        .special
        .is_validate_identity(identity.identity_type, &flh)
        && fields
            .get("token")
            .and_then(Value::as_str)
            .is_some_and(|token| validate_token(&snap, None, token, &identity).unwrap_or(false));
    Ok(success(&valid))
}

/// `GET /v1/identity/map?email=…`: one identity; `optout` for one that opted out.
pub(super) async fn map_one(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    authorize(&snap, &headers, Role::Mapper, ApiError::unauthorized_text)?;
    let fields = params(query)?;
    let identity = single_identity(&fields).map_err(identity_error)?;
    let identifier = IdentityField::ALL
        .iter()
        .find_map(|f| fields.get(f.name()).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let Some(mapped) = identity_service::map(&snap, &identity) else {
        return Ok(answer::<()>(ResponseStatus::Optout, None));
    };
    Ok(success(&MappedIdentityV2 {
        identifier,
        advertising_id: mapped.raw_uid.to_base64(),
        bucket_id: snap.salts.bucket_id(mapped.bucket_id),
    }))
}

/// `POST /v1/identity/map`: a plain-JSON v2 map request, mapped and answered on the batch pool.
pub(super) async fn map_many(
    State(op): State<Arc<Operator>>,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let LimitedBody { bytes, client } = body;
    if !client.roles.has_any(&[Role::Mapper]) {
        return Err(ApiError::unauthorized_text());
    }
    let fields: Map<String, Value> = if bytes.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|_| ApiError::client_error("Invalid JSON body"))?
    };
    let (field, items) = v1_map_input(&fields)?;
    op.batch
        .run(&client.key_id, move || {
            success(&map_v2_list(&snap, field, items))
        })
        .await
}

/// `GET /v1/identity/buckets?since_timestamp=…`: the buckets rotated since a UTC date-time.
pub(super) async fn buckets(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let client = authorize(&snap, &headers, Role::Mapper, ApiError::unauthorized_text)?;
    let since_ms = since_timestamp_ms(params(query)?.get("since_timestamp"))?;
    op.batch
        .run(&client.key_id, move || {
            success(&rotated_buckets(&snap, since_ms))
        })
        .await
}

/// `GET /v1/key/latest`: the keys of `/v2/key/latest`, as plain JSON.
pub(super) async fn key_latest(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snap = op.snapshot();
    let client = authorize(&snap, &headers, Role::IdReader, ApiError::unauthorized_text)?;
    Ok(success(&latest_keys(&snap, &client)?))
}
