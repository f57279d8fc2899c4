//! `/v2/identity/map`, `/v3/identity/map`, `/v2/identity/buckets` and `/v2/optout/status`:
//! the batch endpoints, run on the [`BatchPool`](super::batch::BatchPool) (their v1 forms in
//! [`legacy`](super::legacy) share the mapping and the bucket listing).
//!
//! The mapping and the answer run on the pool: a 10,000-identity map or a buckets answer over a
//! million buckets (tens of megabytes of JSON) is computed, serialised, sealed and
//! base64-encoded there, never on the async workers that serve token generation. Opening and
//! parsing the request stays on the async worker, as for every endpoint: the 1 MiB body limit
//! bounds it to a few milliseconds.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use uid2_proto::identity::{HashedIdentity, IdentityField};
use uid2_proto::salt::RawUid;
use uid2_proto::wire::datetime::{format_local_date_time, parse_local_date_time};
use uid2_proto::wire::{
    BucketEntry, IdentityMapV2Response, IdentityMapV3Entry, IdentityMapV3Request,
    IdentityMapV3Response, MappedIdentityV2, OptedOut, OptoutStatusRequest, OptoutStatusResponse,
    UnmappedIdentityV2,
};
use uid2_store::Role;

use super::input::v2_map_input;
use super::v2::V2Request;
use super::{ApiError, LimitedBody};
use crate::identity_service::{self, Mapped};
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

const REASON_OPTOUT: &str = "optout";
const REASON_INVALID: &str = "invalid identifier";

/// Each item of a list, in order: `None` if it is no valid identity, else the identity and its
/// mapping (`None` if opted out). The valid ones are mapped together
/// ([`identity_service::map_many`]).
fn map_list<'a>(
    snap: &Snapshot,
    field: IdentityField,
    items: impl Iterator<Item = &'a str>,
) -> Vec<Option<(HashedIdentity, Option<Mapped>)>> {
    let parsed: Vec<Option<HashedIdentity>> = items
        .map(|item| HashedIdentity::from_field(field, item).ok())
        .collect();
    let valid: Vec<HashedIdentity> = parsed.iter().flatten().copied().collect();
    let mut mapped = identity_service::map_many(snap, &valid).into_iter();
    parsed
        .into_iter()
        .map(|p| p.map(|identity| (identity, mapped.next().expect("one per valid identity"))))
        .collect()
}

/// Maps a v2 list, opt-outs respected (`unmapped` with reason `optout`), input order kept.
pub(crate) fn map_v2_list(
    snap: &Snapshot,
    field: IdentityField,
    items: Vec<String>,
) -> IdentityMapV2Response {
    let mut out = IdentityMapV2Response::default();
    let results = map_list(snap, field, items.iter().map(String::as_str));
    for (identifier, result) in items.into_iter().zip(results) {
        let Some((_, result)) = result else {
            out.unmapped.push(UnmappedIdentityV2 {
                identifier,
                reason: REASON_INVALID.into(),
            });
            continue;
        };
        match result {
            Some(m) => out.mapped.push(MappedIdentityV2 {
                identifier,
                advertising_id: m.raw_uid.to_base64(),
                bucket_id: snap.salts.bucket_id(m.bucket_id),
            }),
            None => out.unmapped.push(UnmappedIdentityV2 {
                identifier,
                reason: REASON_OPTOUT.into(),
            }),
        }
    }
    out
}

/// `POST /v2/identity/map`.
pub(super) async fn map_v2(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Mapper])?;
    let (field, items) = v2_map_input(req.fields())?;
    let snap = req.snap.clone();
    let replier = req.replier();
    op.batch
        .run(&req.client.key_id, move || {
            replier.success(&map_v2_list(&snap, field, items))
        })
        .await
}

fn map_v3_list(
    snap: &Snapshot,
    field: IdentityField,
    items: &[String],
    now: i64,
) -> Vec<IdentityMapV3Entry> {
    let settings = snap.config.raw_uid_settings();
    map_list(snap, field, items.iter().map(String::as_str))
        .into_iter()
        .map(|result| {
            let Some((identity, result)) = result else {
                return IdentityMapV3Entry::Unmapped {
                    e: REASON_INVALID.into(),
                };
            };
            match result {
                None => IdentityMapV3Entry::Unmapped {
                    e: REASON_OPTOUT.into(),
                },
                Some(m) => {
                    let table = &snap.salts.table;
                    IdentityMapV3Entry::Mapped {
                        u: m.raw_uid.to_base64(),
                        p: table
                            .previous_raw_uid(
                                &m.first_level_hash,
                                identity.identity_type,
                                settings,
                                now,
                            )
                            .map(|p| p.to_base64()),
                        r: table.refresh_from_ms(&m.first_level_hash, now) / 1000,
                    }
                }
            }
        })
        .collect()
}

/// `POST /v3/identity/map`.
pub(super) async fn map_v3(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let mut req = V2Request::open(&op, &headers, &body, &[Role::Mapper])?;
    // Only an empty payload is refused here, as the official operator checks its JSON object
    // before binding it: `{"email": null}` binds to four empty lists and maps nothing.
    if req.fields().is_empty() {
        return Err(ApiError::client_error(
            "Required Parameter Missing: one or more of [email, email_hash, phone, phone_hash] must be specified",
        ));
    }
    let input: IdentityMapV3Request = req
        .take(|_| "Incorrect request format".to_owned())?
        .unwrap_or_default();
    let snap = req.snap.clone();
    let replier = req.replier();
    op.batch
        .run(&req.client.key_id, move || {
            let now = now_ms();
            let list = |f: IdentityField, v: &Option<Vec<String>>| {
                map_v3_list(&snap, f, v.as_deref().unwrap_or_default(), now)
            };
            replier.success(&IdentityMapV3Response {
                email: list(IdentityField::Email, &input.email),
                email_hash: list(IdentityField::EmailHash, &input.email_hash),
                phone: list(IdentityField::Phone, &input.phone),
                phone_hash: list(IdentityField::PhoneHash, &input.phone_hash),
            })
        })
        .await
}

/// `POST /v2/identity/buckets`: buckets rotated since a time.
pub(super) async fn buckets(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Mapper])?;
    let since_ms = since_timestamp_ms(req.fields().get("since_timestamp"))?;
    let snap = req.snap.clone();
    let replier = req.replier();
    op.batch
        .run(&req.client.key_id, move || {
            replier.success(&rotated_buckets(&snap, since_ms))
        })
        .await
}

/// The `since_timestamp` of a buckets request (a UTC ISO-8601 local date-time) in ms. Read as
/// upstream reads it (`getString`): any value that is not a date-time string, a number
/// included, is an invalid date rather than a malformed request.
pub(super) fn since_timestamp_ms(value: Option<&Value>) -> Result<i64, ApiError> {
    match value {
        None | Some(Value::Null) => {
            return Err(ApiError::client_error("missing parameter since_timestamp"));
        }
        Some(Value::String(since)) => parse_local_date_time(since),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::client_error("invalid date, must conform to ISO 8601"))
}

/// The buckets whose salt changed at or after `since_ms`, in bucket order.
pub(super) fn rotated_buckets(snap: &Snapshot, since_ms: i64) -> Vec<BucketEntry> {
    snap.salts
        .table
        .iter()
        .filter(|b| b.last_updated_ms >= since_ms)
        .map(|b| BucketEntry {
            bucket_id: snap.salts.bucket_ids.encode(b.id),
            last_updated: format_local_date_time(b.last_updated_ms),
        })
        .collect()
}

/// `POST /v2/optout/status`: which of these raw UIDs opted out, and when.
pub(super) async fn optout_status(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let mut req = V2Request::open(
        &op,
        &headers,
        &body,
        &[Role::Mapper, Role::Sharer, Role::IdReader],
    )?;
    let input: OptoutStatusRequest = req
        // The only field: anything that is not an array of strings is wrong in the same way
        // (serde's own wording would name Rust's types).
        .take(|_| {
            "Invalid payload in body: advertising_ids must be an array of strings".to_owned()
        })?
        .ok_or_else(|| ApiError::client_error("Invalid request body"))?;
    let ids = input
        .advertising_ids
        .ok_or_else(|| ApiError::client_error("Required Parameter Missing: advertising_ids"))?;
    if ids.len() > req.snap.config.optout_status_max_ids {
        return Err(ApiError::client_error("Request payload is too large"));
    }
    let snap = req.snap.clone();
    let replier = req.replier();
    op.batch
        .run(&req.client.key_id, move || {
            replier.success(&OptoutStatusResponse {
                opted_out: ids
                    .into_iter()
                    .filter_map(|id| {
                        // Upstream looks the text up as sent: only the canonical base64 of a
                        // raw UID (padded, standard alphabet) can match.
                        let raw = RawUid::parse_base64(&id).filter(|r| r.to_base64() == id)?;
                        let since = snap.optouts.raw_uid_opted_out_at_ms(raw.as_bytes())?;
                        Some(OptedOut {
                            advertising_id: id,
                            opted_out_since: since,
                        })
                    })
                    .collect(),
            })
        })
        .await
}
