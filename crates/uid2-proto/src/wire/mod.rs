//! The JSON of every operator request and response, as the official SDKs write and read it.
//!
//! Request types are lenient where the official operator is (unknown fields ignored, except on
//! `/v3/identity/map`), and strict about types: a string where an array belongs is a client error,
//! never a crash. Response types serialise exactly the fields the SDKs look for.
//!
//! The identity fields of generate, validate, logout and the v2 map have no request type here:
//! the operator reads them from the JSON object, because which wrong type gets which answer
//! differs by endpoint (the official operator's quirks), and a serde type would flatten that.

pub mod datetime;
mod keys;

pub use keys::{KeyJson, KeysResponse, SiteData};

use serde::{Deserialize, Serialize};

/// The `status` of every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// HTTP 200 with a body.
    Success,
    /// HTTP 200: the identity has opted out.
    Optout,
    /// HTTP 200: EUID consent string lacks consent.
    InsufficientUserConsent,
    /// HTTP 400: bad input.
    ClientError,
    /// HTTP 400: undecodable token (authenticated callers).
    InvalidToken,
    /// HTTP 400: expired refresh token (authenticated callers).
    ExpiredToken,
    /// HTTP 400: refresh failure for an unauthenticated caller (browsers).
    Error,
    /// HTTP 401: unknown or disabled API key, or a role not granted.
    Unauthorized,
    /// HTTP 401: a client whose site cannot hold keys.
    InvalidClient,
    /// HTTP 403: CSTG from an origin not among the site's domains.
    InvalidHttpOrigin,
    /// HTTP 403: CSTG from an app not among the site's app names.
    InvalidAppName,
    /// HTTP 500/503: the operator cannot serve (never for bad input).
    Unknown,
}

impl ResponseStatus {
    /// The JSON string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Optout => "optout",
            Self::InsufficientUserConsent => "insufficient_user_consent",
            Self::ClientError => "client_error",
            Self::InvalidToken => "invalid_token",
            Self::ExpiredToken => "expired_token",
            Self::Error => "error",
            Self::Unauthorized => "unauthorized",
            Self::InvalidClient => "invalid_client",
            Self::InvalidHttpOrigin => "invalid_http_origin",
            Self::InvalidAppName => "invalid_app_name",
            Self::Unknown => "unknown",
        }
    }
}

/// `{"status": …, "body": …}`: every successful response (decrypted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The status.
    pub status: ResponseStatus,
    /// The body.
    pub body: T,
}

/// `{"status": …, "message": …}`: errors and bodiless answers such as `optout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusOnly {
    /// The status.
    pub status: ResponseStatus,
    /// A human-readable reason (absent on `optout` and on the auth 401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A response of unknown outcome, as SDKs first read it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnyResponse {
    /// The status.
    pub status: ResponseStatus,
    /// The body, when present.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// The message, when present.
    #[serde(default)]
    pub message: Option<String>,
}

/// The identity returned by generate, refresh and client-side generate: what a publisher keeps
/// in the user's session and hands to the browser SDK. Times are Unix **milliseconds**.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityTokens {
    /// The advertising token (v4) to put in bid requests.
    pub advertising_token: String,
    /// The refresh token (opaque): the 388-character wrapper in v2, the bare token in v1.
    pub refresh_token: String,
    /// When the advertising token expires (ms).
    pub identity_expires: i64,
    /// When the refresh token expires (ms).
    pub refresh_expires: i64,
    /// When to start refreshing (ms).
    pub refresh_from: i64,
    /// The key (base64, 32 bytes) that opens the answer of the next refresh; v2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_response_key: Option<String>,
}

impl IdentityTokens {
    /// Reads an identity saved with [`to_json_string`](Self::to_json_string) (or the `body` of
    /// a generate answer).
    pub fn from_json_str(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The identity as JSON, to keep in a session.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("identity tokens serialise")
    }

    /// Whether the advertising token has expired at `now_ms` (strictly after `identity_expires`).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms > self.identity_expires
    }

    /// Whether it is time to refresh at `now_ms`: past `refresh_from`, or expired.
    pub fn is_due_for_refresh(&self, now_ms: i64) -> bool {
        now_ms > self.refresh_from || self.is_expired(now_ms)
    }

    /// Whether the identity can still be refreshed at `now_ms`: the refresh token has not
    /// expired and there is one.
    pub fn is_refreshable(&self, now_ms: i64) -> bool {
        now_ms <= self.refresh_expires && !self.refresh_token.is_empty()
    }
}

/// The body of a successful `/v2/token/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutResponse {
    /// Always `"OK"`.
    pub optout: String,
}

/// A mapped identity of `/v2/identity/map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedIdentityV2 {
    /// The input exactly as sent.
    pub identifier: String,
    /// The raw UID (base64).
    pub advertising_id: String,
    /// The salt bucket id.
    pub bucket_id: String,
}

/// An identity `/v2/identity/map` could not map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedIdentityV2 {
    /// The input exactly as sent.
    pub identifier: String,
    /// `optout` or `invalid identifier`.
    pub reason: String,
}

/// The body of `/v2/identity/map`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMapV2Response {
    /// Mapped identities, in input order.
    #[serde(default)]
    pub mapped: Vec<MappedIdentityV2>,
    /// Unmapped identities, in input order (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<UnmappedIdentityV2>,
}

/// The request of `/v3/identity/map`: any of the four lists; unknown fields are an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapV3Request {
    /// Raw emails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Vec<String>>,
    /// Email hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<Vec<String>>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Vec<String>>,
    /// Phone hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_hash: Option<Vec<String>>,
}

/// One entry of a `/v3/identity/map` response list, positionally aligned with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdentityMapV3Entry {
    /// A mapped identity.
    Mapped {
        /// Current raw UID (base64).
        u: String,
        /// Previous raw UID (base64), or null; always present.
        p: Option<String>,
        /// Refresh-from, Unix **seconds**.
        r: i64,
    },
    /// An identity that could not be mapped.
    Unmapped {
        /// `optout` or `invalid identifier`.
        e: String,
    },
}

/// The body of `/v3/identity/map`: the operator always writes all four lists; a reader takes a
/// missing one as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMapV3Response {
    /// Results for `email`.
    #[serde(default)]
    pub email: Vec<IdentityMapV3Entry>,
    /// Results for `email_hash`.
    #[serde(default)]
    pub email_hash: Vec<IdentityMapV3Entry>,
    /// Results for `phone`.
    #[serde(default)]
    pub phone: Vec<IdentityMapV3Entry>,
    /// Results for `phone_hash`.
    #[serde(default)]
    pub phone_hash: Vec<IdentityMapV3Entry>,
}

/// The request of `/v2/identity/buckets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketsRequest {
    /// `YYYY-MM-DDTHH:MM:SS[.fraction]`, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_timestamp: Option<String>,
}

/// One entry of the `/v2/identity/buckets` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEntry {
    /// The salt bucket id.
    pub bucket_id: String,
    /// `yyyy-MM-ddTHH:mm:ss.SSS`, UTC.
    pub last_updated: String,
}

/// The request of `/v2/optout/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptoutStatusRequest {
    /// Raw UIDs (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertising_ids: Option<Vec<String>>,
}

/// An opted-out raw UID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptedOut {
    /// The raw UID as sent.
    pub advertising_id: String,
    /// When it opted out (ms, second precision).
    pub opted_out_since: i64,
}

/// The body of `/v2/optout/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptoutStatusResponse {
    /// Only the opted-out ones.
    pub opted_out: Vec<OptedOut>,
}

/// The request of `/v2/token/client-generate` (plain JSON, not an envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CstgRequest {
    /// Base64 of ciphertext ‖ tag.
    #[serde(default)]
    pub payload: String,
    /// Base64 of the 12-byte IV.
    #[serde(default)]
    pub iv: String,
    /// Base64 SPKI of the client's ephemeral P-256 key.
    #[serde(default)]
    pub public_key: String,
    /// Client time (ms); only used in the AAD.
    #[serde(default)]
    pub timestamp: i64,
    /// The publisher's CSTG subscription.
    #[serde(default)]
    pub subscription_id: String,
    /// Mobile apps: the app name (also in the AAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
}

/// The decrypted payload of a CSTG request.
///
/// Read only from a JSON object: serde's derive would also take an array of the field values
/// (`["hash", null]`), which the official operator refuses as invalid JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct CstgPayload {
    /// Email hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<String>,
    /// Phone hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_hash: Option<String>,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for CstgPayload {
    type Error = String;

    fn try_from(fields: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let hash = |name: &str| match fields.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(hash)) => Ok(Some(hash.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        };
        Ok(Self {
            email_hash: hash("email_hash")?,
            phone_hash: hash("phone_hash")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> IdentityTokens {
        IdentityTokens {
            advertising_token: "A4AAAA".into(),
            refresh_token: "R".into(),
            identity_expires: 2_000,
            refresh_expires: 3_000,
            refresh_from: 1_000,
            refresh_response_key: Some("k".into()),
        }
    }

    #[test]
    fn identity_times_are_compared_in_milliseconds() {
        let id = identity();
        assert!(!id.is_due_for_refresh(1_000));
        assert!(id.is_due_for_refresh(1_001));
        assert!(!id.is_expired(2_000));
        assert!(id.is_expired(2_001));
        assert!(id.is_refreshable(3_000));
        assert!(!id.is_refreshable(3_001));
        let no_refresh = IdentityTokens {
            refresh_token: String::new(),
            ..identity()
        };
        assert!(!no_refresh.is_refreshable(0));
        // Realistic millisecond values: one second before refresh_from is not due.
        let real = IdentityTokens {
            refresh_from: 1_700_000_000_000,
            identity_expires: 1_700_000_360_000,
            refresh_expires: 1_702_592_000_000,
            ..identity()
        };
        assert!(!real.is_due_for_refresh(1_699_999_999_000));
        assert!(real.is_due_for_refresh(1_700_000_000_001));
    }

    #[test]
    fn identity_json_round_trips() {
        let id = identity();
        let json = id.to_json_string();
        assert!(json.contains("\"refresh_response_key\":\"k\""));
        assert_eq!(IdentityTokens::from_json_str(&json).unwrap(), id);
        assert!(IdentityTokens::from_json_str("{}").is_err());
        // v1 identities have no refresh_response_key, and write none.
        let v1 = IdentityTokens {
            refresh_response_key: None,
            ..id
        };
        assert!(!v1.to_json_string().contains("refresh_response_key"));
    }

    #[test]
    fn v3_entries_serialise_with_null_previous() {
        let mapped = IdentityMapV3Entry::Mapped {
            u: "u".into(),
            p: None,
            r: 5,
        };
        assert_eq!(
            serde_json::to_string(&mapped).unwrap(),
            r#"{"u":"u","p":null,"r":5}"#
        );
        let unmapped = IdentityMapV3Entry::Unmapped { e: "optout".into() };
        assert_eq!(
            serde_json::to_string(&unmapped).unwrap(),
            r#"{"e":"optout"}"#
        );
        let back: IdentityMapV3Entry = serde_json::from_str(r#"{"u":"u","p":null,"r":5}"#).unwrap();
        assert_eq!(back, mapped);
    }

    #[test]
    fn v3_request_rejects_unknown_fields_and_wrong_types() {
        assert!(
            serde_json::from_str::<IdentityMapV3Request>(r#"{"email":["a"],"link_id":"x"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<IdentityMapV3Request>(r#"{"email":"a"}"#).is_err());
        assert!(serde_json::from_str::<IdentityMapV3Request>(r#"{"email":[null]}"#).is_err());
    }

    #[test]
    fn cstg_payloads_are_objects_of_strings() {
        let read = |json: &str| serde_json::from_str::<CstgPayload>(json);
        assert_eq!(
            read(r#"{"email_hash":"h","other":1}"#)
                .unwrap()
                .email_hash
                .as_deref(),
            Some("h")
        );
        assert_eq!(
            read(r#"{"phone_hash":null}"#).unwrap(),
            CstgPayload::default()
        );
        for bad in [r#"["h", null]"#, "[]", r#""h""#, r#"{"email_hash":5}"#] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_serialise_as_the_official_strings() {
        for status in [
            ResponseStatus::InvalidHttpOrigin,
            ResponseStatus::ClientError,
            ResponseStatus::Optout,
        ] {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
    }
}
