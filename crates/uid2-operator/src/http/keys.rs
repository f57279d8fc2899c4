//! `/v2/key/sharing`, `/v2/key/bidstream` and the legacy `/v2/key/latest` (and its plain
//! `/v1/key/latest` twin): the keys SDKs decrypt (and, for sharers, encrypt) tokens with.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uid2_proto::key::{Key, MASTER_KEYSET_ID, MASTER_KEYSET_ID_FOR_SDKS, REFRESH_KEYSET_ID};
use uid2_proto::wire::{KeyJson, KeysResponse, ResponseStatus, SiteData};
use uid2_store::Role;

use super::v2::V2Request;
use super::{ApiError, LimitedBody};
use crate::Operator;
use crate::clients::Client;
use crate::snapshot::Snapshot;

/// Keys a caller may hold: every master key, and keys of enabled keysets the caller's site owns,
/// is listed in, or (ID readers only) that list no sites at all. Refresh keys never leave.
fn accessible_keys<'a>(snap: &'a Snapshot, client: &Client) -> Vec<&'a Key> {
    let id_reader = client.roles.has(Role::IdReader);
    let mut keys: Vec<&Key> = snap
        .keys
        .ring
        .keys()
        .filter(|k| {
            let Some(keyset_id) = k.keyset_id else {
                return false;
            };
            if keyset_id == REFRESH_KEYSET_ID {
                return false;
            }
            if keyset_id == MASTER_KEYSET_ID {
                return true;
            }
            let Some(keyset) = snap.keys.keysets.get(&keyset_id) else {
                return false;
            };
            keyset.enabled
                && (keyset.site_id == client.site_id
                    || match &keyset.allowed_sites {
                        None => id_reader,
                        Some(sites) => sites.contains(&client.site_id),
                    })
        })
        .collect();
    keys.sort_by_key(|k| k.id);
    keys
}

fn key_json(k: &Key, keyset_id: Option<i32>) -> KeyJson {
    KeyJson {
        keyset_id,
        ..KeyJson::of(k)
    }
}

/// Domain (and, if configured, app) names of the sites whose keysets the keys belong to.
fn site_data(snap: &Snapshot, keys: &[&Key]) -> Vec<SiteData> {
    let site_ids: BTreeSet<i32> = keys.iter().map(|k| k.site_id).collect();
    site_ids
        .into_iter()
        .filter_map(|id| {
            let site = snap.sites.get(&id)?;
            let mut names: Vec<String> = site.domain_names.clone();
            if snap.config.provide_app_names {
                names.extend(site.app_names.iter().cloned());
            }
            names.sort();
            names.dedup();
            (!names.is_empty()).then_some(SiteData {
                id,
                domain_names: names,
            })
        })
        .collect()
}

/// `POST /v2/key/sharing`.
pub(super) async fn sharing(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::Sharer, Role::IdReader])?;
    let snap = &req.snap;
    let client = &req.client;
    let keys = accessible_keys(snap, client);
    let json_keys = keys
        .iter()
        .map(|k| {
            // Keyset ids are shown for the caller's own keys (it may encrypt with them) and the master keys.
            let keyset_id = match k.keyset_id {
                Some(MASTER_KEYSET_ID) => Some(MASTER_KEYSET_ID_FOR_SDKS),
                Some(id) if k.site_id == client.site_id => Some(id),
                _ => None,
            };
            key_json(k, keyset_id)
        })
        .collect();
    let config = &snap.config;
    let body = KeysResponse {
        caller_site_id: Some(client.site_id),
        master_keyset_id: Some(MASTER_KEYSET_ID_FOR_SDKS),
        default_keyset_id: snap.keys.default_keyset(client.site_id),
        token_expiry_seconds: Some(config.sharing_token_expiry.as_secs().to_string()),
        max_sharing_lifetime_seconds: client
            .roles
            .has(Role::Sharer)
            .then(|| config.advertised_max_sharing_lifetime_s() as i64),
        identity_scope: Some(config.identity_scope.as_str().to_owned()),
        allow_clock_skew_seconds: Some(config.allow_clock_skew.as_secs() as i64),
        site_data: Some(site_data(snap, &keys)),
        keys: json_keys,
        ..KeysResponse::default()
    };
    Ok(req.success(&body))
}

/// `POST /v2/key/bidstream`.
pub(super) async fn bidstream(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::IdReader])?;
    let snap = &req.snap;
    let keys = accessible_keys(snap, &req.client);
    let config = &snap.config;
    let body = KeysResponse {
        max_bidstream_lifetime_seconds: Some(config.advertised_max_bidstream_lifetime_s() as i64),
        identity_scope: Some(config.identity_scope.as_str().to_owned()),
        allow_clock_skew_seconds: Some(config.allow_clock_skew.as_secs() as i64),
        site_data: Some(site_data(snap, &keys)),
        keys: keys.iter().map(|k| key_json(k, None)).collect(),
        ..KeysResponse::default()
    };
    Ok(req.success(&body))
}

/// `POST /v2/key/latest` (legacy DSP endpoint): a bare array of keys with their site ids.
pub(super) async fn latest(
    State(op): State<Arc<Operator>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let req = V2Request::open(&op, &headers, &body, &[Role::IdReader])?;
    let keys = latest_keys(&req.snap, &req.client)?;
    Ok(req.success(&keys))
}

/// The answer of `/v2/key/latest` and `/v1/key/latest`: the caller's accessible keys with their
/// site ids; callers of the reserved sites (≤ 2) are refused as upstream refuses them.
pub(super) fn latest_keys(snap: &Snapshot, client: &Client) -> Result<Vec<KeyJson>, ApiError> {
    if client.site_id <= 2 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ResponseStatus::InvalidClient,
            format!("Unexpected client site id {}", client.site_id),
        ));
    }
    Ok(accessible_keys(snap, client)
        .iter()
        .map(|k| KeyJson {
            site_id: Some(k.site_id),
            ..key_json(k, None)
        })
        .collect())
}
