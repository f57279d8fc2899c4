//! The key endpoints' bodies (`/v2/key/sharing`, `/v2/key/bidstream`): written exactly as the
//! official operator writes them, read as leniently as the official SDKs read them.

use serde::{Deserialize, Deserializer, Serialize};

/// A key as `/v2/key/sharing` and `/v2/key/bidstream` hand it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyJson {
    /// Key id.
    pub id: u32,
    /// Creation (s).
    pub created: i64,
    /// Activation (s).
    pub activates: i64,
    /// Expiry (s).
    pub expires: i64,
    /// Base64 of the 32-byte secret.
    pub secret: String,
    /// Owning site (`/v2/key/latest` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<i32>,
    /// Keyset (sharing: the caller's own keys and the master keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyset_id: Option<i32>,
}

impl KeyJson {
    /// `key` as the key endpoints hand it out, with its keyset and without its site.
    pub fn of(key: &crate::key::Key) -> Self {
        Self {
            id: key.id,
            created: key.created_s,
            activates: key.activates_s,
            expires: key.expires_s,
            secret: crate::encoding::base64_encode(key.secret()),
            site_id: None,
            keyset_id: key.keyset_id,
        }
    }
}

/// Domain names (and app names) of a site, for checking client-side generated tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteData {
    /// Site id.
    pub id: i32,
    /// Sorted domain (and app) names.
    #[serde(default)]
    pub domain_names: Vec<String>,
}

/// The body of `/v2/key/sharing` and `/v2/key/bidstream`; each fills the fields it defines.
///
/// Written exactly as the official operator writes it; read as leniently as the official SDKs
/// read it (numbers may come as numeric strings, missing lists are empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysResponse {
    /// Sharing: the caller's site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_site_id: Option<i32>,
    /// Sharing: always 9999999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_keyset_id: Option<i32>,
    /// Sharing: the caller site's default keyset, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_keyset_id: Option<i32>,
    /// Sharing: lifetime of sharing tokens, a **string** in the official operator.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_string"
    )]
    pub token_expiry_seconds: Option<String>,
    /// Sharing (SHARER callers): longest accepted sharing-token lifetime.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub max_sharing_lifetime_seconds: Option<i64>,
    /// Bidstream: longest accepted advertising-token lifetime.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub max_bidstream_lifetime_seconds: Option<i64>,
    /// `"UID2"` or `"EUID"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_scope: Option<String>,
    /// Clock skew SDKs tolerate on token creation times.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub allow_clock_skew_seconds: Option<i64>,
    /// The keys, sorted by id. Required: an answer without them is refused (and the keys a
    /// client holds kept), as the official SDKs refuse it, rather than read as "no keys".
    pub keys: Vec<KeyJson>,
    /// Domains of sites with client-side generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_data: Option<Vec<SiteData>>,
}

impl KeysResponse {
    /// `token_expiry_seconds` as a number (the operator writes it as a string); `None` when
    /// absent or not a number.
    pub fn token_expiry_seconds(&self) -> Option<i64> {
        self.token_expiry_seconds.as_deref()?.trim().parse().ok()
    }
}

/// A number or a numeric string, as official operators have written these fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(i64),
    String(String),
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<NumberOrString>::deserialize(d)?.map(|v| match v {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s,
    }))
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<NumberOrString>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrString::Number(n)) => Ok(Some(n)),
        Some(NumberOrString::String(s)) => {
            s.trim().parse().map(Some).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_seconds_reads_as_string_or_number() {
        let a: KeysResponse =
            serde_json::from_str(r#"{"keys":[],"token_expiry_seconds":"2592000"}"#).unwrap();
        let b: KeysResponse =
            serde_json::from_str(r#"{"keys":[],"token_expiry_seconds":2592000}"#).unwrap();
        assert_eq!(a.token_expiry_seconds.as_deref(), Some("2592000"));
        assert_eq!(a, b);
        assert_eq!(a.token_expiry_seconds(), Some(2_592_000));
        let lenient: KeysResponse = serde_json::from_str(
            r#"{"max_bidstream_lifetime_seconds":"259200","allow_clock_skew_seconds":1800,"keys":[]}"#,
        )
        .unwrap();
        assert_eq!(lenient.max_bidstream_lifetime_seconds, Some(259_200));
        assert_eq!(lenient.allow_clock_skew_seconds, Some(1_800));
        assert!(lenient.keys.is_empty());
        assert!(
            serde_json::from_str::<KeysResponse>(
                r#"{"allow_clock_skew_seconds":"soon","keys":[]}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<KeysResponse>(r#"{"caller_site_id":1}"#).is_err());
    }
}
