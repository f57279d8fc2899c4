//! `uid2 token …`: tools for humans debugging a token.
//!
//! - `inspect` is the operator's view: it opens an advertising token (any version) or a refresh
//!   token (the v2 API's wrapper, or a bare v3 token as v1 hands out) with the keys in the store
//!   and prints every field. Without the key it still prints what the first bytes say.
//! - `decrypt` is an SSP's or sharer's view: it fetches keys from an operator's
//!   `/v2/key/bidstream` (or `/v2/key/sharing`) with an API key, exactly as `uid2-client` does in
//!   a bidder, and prints the decryption status and fields.
//!
//! Both print JSON on stdout. Neither prints anything that identifies a person beyond what the
//! token carries (a raw UID or a first-level hash); for the v2 API's refresh token, inspect also
//! prints the `refresh_response_key` sealed inside it, which whoever holds that token was handed
//! beside it anyway.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use uid2_client::{BidstreamClient, DecryptionResponse, SharingClient};
use uid2_operator::now_ms;
use uid2_operator::snapshot::KeyState;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::{REFRESH_ENVELOPE_CHARS, RefreshEnvelope};
use uid2_proto::identity::IdentityType;
use uid2_proto::key::KeyRing;
use uid2_proto::token::{
    DecodedAdvertisingToken, IdentityHeader, OperatorIdentity, RefreshToken, TokenPrefix,
    TokenVersion, advertising,
};
use uid2_proto::wire::datetime::format_local_date_time;

use crate::admin::open_store;
use crate::settings::{ApiClientArgs, GlobalArgs};

/// `uid2 token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Opens a token with the keys in the store (`--store`) and prints every field.
    Inspect {
        /// An advertising token, or a refresh token as generate/refresh returned it.
        token: String,
    },
    /// Decrypts an advertising token as an SSP does, with keys fetched from an operator.
    Decrypt(DecryptArgs),
}

/// `uid2 token decrypt`
#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// The advertising token.
    token: String,
    /// The operator and an API key (role id_reader, or sharer with `--sharing`).
    #[command(flatten)]
    api: ApiClientArgs,
    /// The bid request's site domain or app name (checked for client-side generated tokens).
    #[arg(long)]
    domain: Option<String>,
    /// Use `/v2/key/sharing` and the sharing checks instead of the bidstream ones.
    #[arg(long)]
    sharing: bool,
}

/// Runs a token command; the process exits with status 1 when the token did not open, after
/// printing what could be read, so that scripts can tell.
pub(crate) async fn run(global: &GlobalArgs, command: TokenCommand) -> Result<()> {
    let report = match command {
        TokenCommand::Inspect { token } => inspect(global, token.trim()).await?,
        TokenCommand::Decrypt(args) => decrypt(&args).await?,
    };
    say!("{}", serde_json::to_string_pretty(&report)?)?;
    let opened = report.get("error").is_none()
        && report
            .get("status")
            .is_none_or(|status| status == "success");
    if !opened {
        std::process::exit(1);
    }
    Ok(())
}

/// The keys of the store named by `--store`, opened as the admin commands open it (a missing or
/// uninitialised store is an error, and nothing is created).
async fn store_keys(global: &GlobalArgs) -> Result<KeyRing> {
    let store = open_store(global).await?.settled.store().clone();
    let (keysets, keys) = (store.keysets().await?, store.keys().await?);
    Ok(KeyState::new(&keysets, &keys).ring)
}

async fn inspect(global: &GlobalArgs, text: &str) -> Result<Value> {
    let ring = match store_keys(global).await {
        Ok(ring) => ring,
        // What the token says without its keys is still worth printing (exit status 1).
        Err(e) => return Ok(unopened(text, format!("{e:#}; only the prefix is shown")).into()),
    };
    let now = now_ms();
    let advertising_error = match advertising::decode(text, &ring, i64::MIN) {
        Ok(token) => return Ok(advertising_report(&token, now).into()),
        Err(e) => e,
    };
    if text.len() == REFRESH_ENVELOPE_CHARS
        && let Ok(envelope) = RefreshEnvelope::open(text, &ring)
    {
        let mut report = match RefreshToken::decode(&envelope.refresh_token, &ring) {
            Ok(token) => refresh_report(&token, now),
            Err(e) => unopened(&envelope.refresh_token, e.to_string()),
        };
        report.insert("kind".into(), "refresh_token (v2 API wrapper)".into());
        report.insert("wrapper_key_id".into(), envelope.key_id.into());
        report.insert(
            "refresh_response_key".into(),
            base64_encode(&envelope.refresh_response_key).into(),
        );
        return Ok(report.into());
    }
    if let Ok(token) = RefreshToken::decode(text, &ring) {
        return Ok(refresh_report(&token, now).into());
    }
    Ok(unopened(text, advertising_error.to_string()).into())
}

/// What a token that could not be opened still says.
fn unopened(text: &str, error: String) -> Map<String, Value> {
    let mut report = Map::new();
    match TokenPrefix::read(text) {
        Ok(prefix) => {
            report.insert("version".into(), version_name(prefix.version).into());
            if let Some(identity) = prefix.identity {
                insert_identity(&mut report, identity);
            }
            report.insert("outer_key_id".into(), prefix.key_id.into());
        }
        Err(e) => {
            report.insert("prefix".into(), format!("unreadable: {e}").into());
        }
    }
    report.insert("error".into(), error.into());
    report
}

fn advertising_report(token: &DecodedAdvertisingToken, now_ms: i64) -> Map<String, Value> {
    let mut report = Map::new();
    report.insert("kind".into(), "advertising_token".into());
    report.insert("version".into(), version_name(token.version()).into());
    match token {
        DecodedAdvertisingToken::V2(t) => {
            report.insert("master_key_id".into(), t.master_key_id.into());
        }
        DecodedAdvertisingToken::V3OrV4(t) => {
            insert_identity(&mut report, t.identity);
            report.insert("master_key_id".into(), t.master_key_id.into());
            report.insert("operator".into(), operator_json(&t.operator));
            report.insert("publisher_id".into(), t.publisher.publisher_id.into());
            report.insert("client_key_id".into(), t.publisher.client_key_id.into());
            report.insert("created".into(), time_json(t.created_ms));
            report.insert("refreshed".into(), time_json(t.refreshed_ms));
        }
    }
    report.insert("site_key_id".into(), token.site_key_id().into());
    report.insert("site_id".into(), token.site_id().into());
    let privacy = token.privacy_bits();
    report.insert("privacy_bits".into(), privacy.0.into());
    report.insert(
        "client_side_generated".into(),
        privacy.is_client_side_generated().into(),
    );
    report.insert("established".into(), time_json(token.established_ms()));
    report.insert("expires".into(), time_json(token.expires_ms()));
    report.insert("expired".into(), (token.expires_ms() < now_ms).into());
    report.insert("raw_uid".into(), token.raw_uid().to_base64().into());
    report
}

fn refresh_report(token: &RefreshToken, now_ms: i64) -> Map<String, Value> {
    let mut report = Map::new();
    report.insert("kind".into(), "refresh_token".into());
    report.insert("version".into(), version_name(token.version).into());
    insert_identity(&mut report, token.identity);
    report.insert("refresh_key_id".into(), token.key_id.into());
    report.insert("operator".into(), operator_json(&token.operator));
    report.insert("site_id".into(), token.publisher.site_id.into());
    report.insert("privacy_bits".into(), token.privacy_bits.0.into());
    report.insert(
        "client_side_generated".into(),
        token.privacy_bits.is_client_side_generated().into(),
    );
    report.insert("created".into(), time_json(token.created_ms));
    report.insert("established".into(), time_json(token.established_ms));
    report.insert("expires".into(), time_json(token.expires_ms));
    report.insert("expired".into(), token.is_expired(now_ms).into());
    report.insert(
        "first_level_hash".into(),
        base64_encode(&token.first_level_hash.0).into(),
    );
    report
}

async fn decrypt(args: &DecryptArgs) -> Result<Value> {
    let response = if args.sharing {
        let client = SharingClient::new(&args.api.url, &args.api.key, &args.api.secret)?;
        client.refresh().await.context("fetching /v2/key/sharing")?;
        client.decrypt_token_into_raw_uid(args.token.trim())
    } else {
        let client = BidstreamClient::new(&args.api.url, &args.api.key, &args.api.secret)?;
        client
            .refresh()
            .await
            .context("fetching /v2/key/bidstream")?;
        client.decrypt_token_into_raw_uid(args.token.trim(), args.domain.as_deref())
    };
    Ok(decryption_json(&response))
}

fn decryption_json(r: &DecryptionResponse) -> Value {
    let mut report = Map::new();
    report.insert("status".into(), r.status.to_string().into());
    if let Some(raw_uid) = &r.raw_uid {
        report.insert("raw_uid".into(), raw_uid.to_base64().into());
    }
    if let Some(version) = r.advertising_token_version {
        report.insert("version".into(), version_name(version).into());
    }
    if let (Some(scope), Some(identity_type)) = (r.identity_scope, r.identity_type) {
        insert_identity(
            &mut report,
            IdentityHeader {
                scope,
                identity_type,
            },
        );
    }
    if let Some(site_id) = r.site_id {
        report.insert("site_id".into(), site_id.into());
    }
    if let Some(site) = r.site_key_site_id {
        report.insert("site_key_site_id".into(), site.into());
    }
    if r.advertising_token_version.is_some() {
        report.insert(
            "client_side_generated".into(),
            r.is_client_side_generated.into(),
        );
    }
    if let Some(ms) = r.established_ms {
        report.insert("established".into(), time_json(ms));
    }
    if let Some(ms) = r.expiry_ms {
        report.insert("expires".into(), time_json(ms));
    }
    report.into()
}

fn insert_identity(report: &mut Map<String, Value>, identity: IdentityHeader) {
    report.insert("identity_scope".into(), identity.scope.as_str().into());
    report.insert(
        "identity_type".into(),
        match identity.identity_type {
            IdentityType::Email => "email",
            IdentityType::Phone => "phone",
        }
        .into(),
    );
}

fn version_name(version: TokenVersion) -> &'static str {
    match version {
        TokenVersion::V2 => "v2",
        TokenVersion::V3 => "v3",
        TokenVersion::V4 => "v4",
    }
}

fn operator_json(operator: &OperatorIdentity) -> Value {
    json!({
        "site_id": operator.site_id,
        "type": operator.operator_type,
        "version": operator.version,
        "key_id": operator.key_id,
    })
}

/// A time as both Unix ms and UTC text, so a human can read it and a script can compare it.
fn time_json(ms: i64) -> Value {
    json!({ "ms": ms, "utc": format!("{}Z", format_local_date_time(ms)) })
}
