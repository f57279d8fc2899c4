//! `uid2-proto-bridge`: reads one JSON command from stdin, runs it through `uid2-proto`, writes
//! one JSON answer to stdout. Tests written against the official Python SDK use it to check
//! that tokens, key responses and envelopes cross between the two implementations.
//!
//! Commands (`{"op": …, …}`):
//! - `decode_token` {token, keys, now_ms} → decoded fields, or {error}
//! - `encode_token` {version: 3|4, keys, master_key_id, site_key_id, site_id, raw_uid,
//!   identity_scope, identity_type, expires_ms, created_ms, established_ms, privacy_bits} → {token}
//! - `keys_response` {kind: "sharing"|"bidstream", keys, caller_site_id, default_keyset_id, …}
//!   → the `{"status":"success","body":…}` JSON of the key endpoint
//! - `open_request` {secret, envelope, now_ms} → {timestamp_ms, nonce, payload}
//! - `seal_response` {secret, nonce, json, now_ms} → {response}
//! - `seal_refresh_response` {key, json} → {response}
//!
//! Keys are `{id, site_id, keyset_id, created, activates, expires, secret}` (secret in base64).

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{open_request_base64, seal_bare_response, seal_response};
use uid2_proto::identity::{IdentityScope, IdentityType};
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::salt::RawUid;
use uid2_proto::token::{
    AdvertisingToken, DecodedAdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits,
    PublisherIdentity, TokenVersion, advertising,
};
use uid2_proto::wire::{Envelope, KeyJson, KeysResponse, ResponseStatus, SiteData};

fn main() -> Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let command: Value = serde_json::from_str(&input).context("command is not JSON")?;
    let answer = run(&command)?;
    println!("{answer}");
    Ok(())
}

fn run(c: &Value) -> Result<Value> {
    match str_field(c, "op")? {
        "decode_token" => decode_token(c),
        "encode_token" => encode_token(c),
        "keys_response" => keys_response(c),
        "open_request" => open_request(c),
        "seal_response" => seal(c),
        "seal_refresh_response" => seal_refresh(c),
        other => bail!("unknown op {other}"),
    }
}

fn str_field<'a>(c: &'a Value, name: &str) -> Result<&'a str> {
    c[name]
        .as_str()
        .ok_or_else(|| anyhow!("missing string {name}"))
}

fn int_field(c: &Value, name: &str) -> Result<i64> {
    c[name]
        .as_i64()
        .ok_or_else(|| anyhow!("missing integer {name}"))
}

fn secret(text: &str) -> Result<[u8; 32]> {
    base64_decode(text)?
        .try_into()
        .map_err(|_| anyhow!("secret is not 32 bytes"))
}

fn parse_keys(c: &Value) -> Result<KeyRing> {
    let keys = c["keys"]
        .as_array()
        .ok_or_else(|| anyhow!("missing keys"))?;
    let mut out = Vec::new();
    for k in keys {
        out.push(Key::new(
            int_field(k, "id")? as u32,
            int_field(k, "site_id")? as i32,
            k["keyset_id"].as_i64().map(|v| v as i32),
            k["created"].as_i64().unwrap_or(0),
            k["activates"].as_i64().unwrap_or(0),
            k["expires"].as_i64().unwrap_or(i64::MAX / 1000),
            secret(str_field(k, "secret")?)?,
        ));
    }
    Ok(KeyRing::new(out))
}

fn decode_token(c: &Value) -> Result<Value> {
    let ring = parse_keys(c)?;
    let now = c["now_ms"].as_i64().unwrap_or(i64::MIN);
    let token = match advertising::decode(str_field(c, "token")?, &ring, now) {
        Ok(t) => t,
        Err(e) => return Ok(json!({ "error": format!("{e:?}") })),
    };
    let identity = token.identity();
    let mut out = json!({
        "version": token.version() as u8,
        "raw_uid": token.raw_uid().to_base64(),
        "site_id": token.site_id(),
        "site_key_id": token.site_key_id(),
        "expires_ms": token.expires_ms(),
        "created_ms": token.created_ms(),
        "established_ms": token.established_ms(),
        "privacy_bits": token.privacy_bits().0,
        "identity_scope": identity.scope.as_str(),
        "identity_type": identity.identity_type as u8,
    });
    if let DecodedAdvertisingToken::V3OrV4(t) = &token {
        out["master_key_id"] = json!(t.master_key_id);
        out["refreshed_ms"] = json!(t.refreshed_ms);
    }
    Ok(out)
}

fn encode_token(c: &Value) -> Result<Value> {
    let ring = parse_keys(c)?;
    let master = ring
        .key(int_field(c, "master_key_id")? as u32)
        .ok_or_else(|| anyhow!("no master key"))?;
    let site = ring
        .key(int_field(c, "site_key_id")? as u32)
        .ok_or_else(|| anyhow!("no site key"))?;
    let version = match int_field(c, "version")? {
        3 => TokenVersion::V3,
        4 => TokenVersion::V4,
        v => bail!("cannot encode version {v}"),
    };
    let scope = match c["identity_scope"].as_str().unwrap_or("UID2") {
        "EUID" => IdentityScope::Euid,
        _ => IdentityScope::Uid2,
    };
    let token = AdvertisingToken {
        version,
        identity: IdentityHeader {
            scope,
            identity_type: IdentityType::from_code(c["identity_type"].as_u64().unwrap_or(0) as u8),
        },
        master_key_id: master.id,
        expires_ms: int_field(c, "expires_ms")?,
        created_ms: int_field(c, "created_ms")?,
        operator: OperatorIdentity::default(),
        site_key_id: site.id,
        publisher: PublisherIdentity::for_site(int_field(c, "site_id")? as i32),
        privacy_bits: PrivacyBits(c["privacy_bits"].as_u64().unwrap_or(1) as u32),
        established_ms: int_field(c, "established_ms")?,
        refreshed_ms: int_field(c, "created_ms")?,
        raw_uid: RawUid::parse_base64(str_field(c, "raw_uid")?)
            .ok_or_else(|| anyhow!("bad raw uid"))?,
    };
    Ok(json!({ "token": token.encode(master, site, &mut rand::rng()) }))
}

fn keys_response(c: &Value) -> Result<Value> {
    let ring = parse_keys(c)?;
    let mut keys: Vec<KeyJson> = ring.keys().map(KeyJson::of).collect();
    keys.sort_by_key(|k| k.id);
    let site_data = c["site_data"].as_array().map(|sites| {
        sites
            .iter()
            .map(|s| SiteData {
                id: s["id"].as_i64().unwrap_or(0) as i32,
                domain_names: s["domain_names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect(),
            })
            .collect()
    });
    let mut body = KeysResponse {
        identity_scope: Some(c["identity_scope"].as_str().unwrap_or("UID2").to_owned()),
        allow_clock_skew_seconds: Some(1800),
        keys,
        site_data,
        ..KeysResponse::default()
    };
    match str_field(c, "kind")? {
        "sharing" => {
            body.caller_site_id = Some(int_field(c, "caller_site_id")? as i32);
            body.master_keyset_id = Some(uid2_proto::key::MASTER_KEYSET_ID_FOR_SDKS);
            body.default_keyset_id = c["default_keyset_id"].as_i64().map(|v| v as i32);
            body.token_expiry_seconds = Some("2592000".to_owned());
            body.max_sharing_lifetime_seconds = Some(2_592_000 + 10);
        }
        "bidstream" => {
            body.max_bidstream_lifetime_seconds = Some(
                c["max_bidstream_lifetime_seconds"]
                    .as_i64()
                    .unwrap_or(259_210),
            );
        }
        other => bail!("unknown kind {other}"),
    }
    Ok(serde_json::to_value(Envelope {
        status: ResponseStatus::Success,
        body,
    })?)
}

fn open_request(c: &Value) -> Result<Value> {
    let key = GcmKey::new(&secret(str_field(c, "secret")?)?);
    match open_request_base64(
        str_field(c, "envelope")?.as_bytes(),
        &key,
        int_field(c, "now_ms")?,
    ) {
        Ok(e) => Ok(json!({
            "timestamp_ms": e.timestamp_ms,
            "nonce": base64_encode(&e.nonce),
            "payload": String::from_utf8_lossy(&e.payload),
        })),
        Err(e) => Ok(json!({ "error": format!("{e:?}") })),
    }
}

fn seal(c: &Value) -> Result<Value> {
    let key = GcmKey::new(&secret(str_field(c, "secret")?)?);
    let nonce: [u8; 8] = base64_decode(str_field(c, "nonce")?)?
        .try_into()
        .map_err(|_| anyhow!("nonce is not 8 bytes"))?;
    let sealed = seal_response(
        &key,
        int_field(c, "now_ms")?,
        nonce,
        str_field(c, "json")?.as_bytes(),
        &mut rand::rng(),
    );
    Ok(json!({ "response": base64_encode(&sealed) }))
}

fn seal_refresh(c: &Value) -> Result<Value> {
    let key = secret(str_field(c, "key")?)?;
    let sealed = seal_bare_response(&key, str_field(c, "json")?.as_bytes(), &mut rand::rng());
    Ok(json!({ "response": base64_encode(&sealed) }))
}
