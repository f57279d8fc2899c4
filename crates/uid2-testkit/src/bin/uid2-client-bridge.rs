//! `uid2-client-bridge`: reads one JSON command from stdin, runs it through the Rust client SDK
//! (`uid2-client`), writes one JSON answer to stdout. The Python conformance tests use it to
//! check the SDK's statuses and fields on tokens minted by the official Python SDK.
//!
//! Commands (`{"op": …, …}`):
//! - `decrypt` {kind: "bidstream"|"sharing", keys_json, token, domain?, now_ms?} → {status, uid,
//!   site_id, site_key_site_id, established_ms, identity_type, identity_scope, version,
//!   is_client_side_generated, expiry_ms}; `keys_json` is the decrypted key-endpoint answer
//!   (`{"body": …}`), or null for a client that never loaded keys. `status` is the Python SDK's
//!   `DecryptionStatus` member name.
//! - `encrypt` {keys_json, raw_uid, now_ms?} → {token} or {status}
//! - `batch` {commands: [...]} → {results: [...]}

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use uid2_client::{BidstreamClient, DecryptionResponse, IdentityType, SharingClient};

const SECRET: &str = "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=";

fn main() -> Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let command: Value = serde_json::from_str(&input).context("command is not JSON")?;
    println!("{}", run(&command)?);
    Ok(())
}

fn run(c: &Value) -> Result<Value> {
    match c["op"].as_str().ok_or_else(|| anyhow!("missing op"))? {
        "decrypt" => decrypt(c),
        "encrypt" => encrypt(c),
        "batch" => {
            let commands = c["commands"]
                .as_array()
                .ok_or_else(|| anyhow!("missing commands"))?;
            let results = commands.iter().map(run).collect::<Result<Vec<_>>>()?;
            Ok(json!({ "results": results }))
        }
        other => bail!("unknown op {other}"),
    }
}

fn now_ms(c: &Value) -> i64 {
    c["now_ms"].as_i64().unwrap_or_else(uid2_client::now_ms)
}

fn answer(r: &DecryptionResponse) -> Value {
    json!({
        "status": r.status.official_name(),
        "uid": r.uid(),
        "site_id": r.site_id,
        "site_key_site_id": r.site_key_site_id,
        "established_ms": r.established_ms,
        "identity_type": r.identity_type.map(|t| match t {
            IdentityType::Email => "email",
            IdentityType::Phone => "phone",
        }),
        "identity_scope": r.identity_scope.map(|s| s.as_str()),
        "version": r.advertising_token_version.map(|v| match v {
            uid2_client::TokenVersion::V2 => 2,
            uid2_client::TokenVersion::V3 => 3,
            uid2_client::TokenVersion::V4 => 4,
        }),
        "is_client_side_generated": r.is_client_side_generated,
        "expiry_ms": r.expiry_ms,
    })
}

fn decrypt(c: &Value) -> Result<Value> {
    let token = c["token"]
        .as_str()
        .ok_or_else(|| anyhow!("missing token"))?;
    let keys = c["keys_json"].as_str();
    let now = now_ms(c);
    let r = match c["kind"].as_str() {
        Some("bidstream") => {
            bidstream(keys)?.decrypt_token_into_raw_uid_at(token, c["domain"].as_str(), now)
        }
        Some("sharing") => sharing(keys)?.decrypt_token_into_raw_uid_at(token, now),
        other => bail!("unknown kind {other:?}"),
    };
    Ok(answer(&r))
}

fn bidstream(keys: Option<&str>) -> Result<BidstreamClient> {
    let client = BidstreamClient::new("http://127.0.0.1:9", "key", SECRET)?;
    if let Some(keys) = keys {
        client.refresh_json(keys)?;
    }
    Ok(client)
}

fn sharing(keys: Option<&str>) -> Result<SharingClient> {
    let client = SharingClient::new("http://127.0.0.1:9", "key", SECRET)?;
    if let Some(keys) = keys {
        client.refresh_json(keys)?;
    }
    Ok(client)
}

fn encrypt(c: &Value) -> Result<Value> {
    let raw_uid = c["raw_uid"]
        .as_str()
        .ok_or_else(|| anyhow!("missing raw_uid"))?;
    match sharing(c["keys_json"].as_str())?.encrypt_raw_uid_into_token_at(raw_uid, now_ms(c)) {
        Ok(token) => Ok(json!({ "token": token })),
        Err(status) => Ok(json!({ "status": status.official_name() })),
    }
}
