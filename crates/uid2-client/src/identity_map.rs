//! [`IdentityMapClient`]: what advertisers and data providers use to map emails and phone
//! numbers to raw UIDs: `/v2/identity/map`, `/v3/identity/map` (sent as a binary envelope, as
//! the official Python `IdentityMapV3Client` does) and `/v2/identity/buckets`.
//!
//! Inputs are normalised and hashed here; answers are keyed by the input exactly as given.

use std::collections::HashMap;
use std::sync::Arc;

use uid2_proto::identity::{HashedIdentity, IdentityError};
use uid2_proto::wire::datetime::format_local_date_time;
use uid2_proto::wire::{self, BucketEntry, BucketsRequest, IdentityMapV3Entry};

use crate::error::{Error, Result};
use crate::transport::{Answer, MAX_BUCKETS_ANSWER_BYTES, Transport};

// The errors never quote the input: an email address or phone number in an error message
// would end up in the caller's logs.
fn hash_email(email: &str) -> std::result::Result<String, IdentityError> {
    HashedIdentity::from_email(email).map(|h| h.hash.as_str().to_owned())
}

fn hash_phone(phone: &str) -> std::result::Result<String, IdentityError> {
    HashedIdentity::from_phone(phone).map(|h| h.hash.as_str().to_owned())
}

fn invalid(e: IdentityError) -> Error {
    Error::InvalidInput(e.to_string())
}

/// Remembers which inputs produced each hash, so answers can be keyed by input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct InputIndex {
    by_hash: HashMap<String, Vec<String>>,
}

impl InputIndex {
    fn add(&mut self, hash: &str, input: &str) {
        self.by_hash
            .entry(hash.to_owned())
            .or_default()
            .push(input.to_owned());
    }

    fn inputs<'a>(&'a self, hash: &'a str) -> impl Iterator<Item = &'a str> {
        let listed = self.by_hash.get(hash);
        let fallback = listed.is_none().then_some(hash);
        listed
            .into_iter()
            .flatten()
            .map(String::as_str)
            .chain(fallback)
    }
}

/// The identities of one `/v2/identity/map` call: all emails or all phone numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMapInput {
    field: &'static str,
    hashes: Vec<String>,
    index: InputIndex,
}

impl IdentityMapInput {
    fn hashed(field: &'static str, items: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut input = Self {
            field,
            hashes: Vec::new(),
            index: InputIndex::default(),
        };
        for item in items {
            input.hashes.push(item.as_ref().to_owned());
        }
        input
    }

    fn raw(
        field: &'static str,
        items: impl IntoIterator<Item = impl AsRef<str>>,
        hash: fn(&str) -> std::result::Result<String, IdentityError>,
    ) -> Result<Self> {
        let mut input = Self::hashed(field, std::iter::empty::<&str>());
        for (position, item) in items.into_iter().enumerate() {
            let h = hash(item.as_ref())
                .map_err(|e| Error::InvalidInput(format!("item {position}: {e}")))?;
            input.index.add(&h, item.as_ref());
            input.hashes.push(h);
        }
        Ok(input)
    }

    /// Raw email addresses; an invalid one fails the whole input.
    pub fn from_emails(emails: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self> {
        Self::raw("email_hash", emails, hash_email)
    }

    /// Phone numbers in E.164 form; an invalid one fails the whole input.
    pub fn from_phones(phones: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self> {
        Self::raw("phone_hash", phones, hash_phone)
    }

    /// Email hashes (base64 SHA-256 of normalised emails).
    pub fn from_hashed_emails(hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self::hashed("email_hash", hashes)
    }

    /// Phone hashes.
    pub fn from_hashed_phones(hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self::hashed("phone_hash", hashes)
    }

    fn to_json(&self) -> String {
        serde_json::json!({ self.field: self.hashes }).to_string()
    }

    /// Reads a decrypted `/v2/identity/map` answer to this input, keyed by input: what
    /// [`IdentityMapClient::generate_identity_map`] does once the envelope is opened, for
    /// callers that carry the envelope themselves.
    pub fn read_answer(&self, json: &[u8]) -> Result<IdentityMapResponse> {
        let body: wire::IdentityMapV2Response = Answer::parse(json)?.into_success_body()?;
        let mut out = IdentityMapResponse::default();
        for m in body.mapped {
            let identity = MappedIdentity {
                raw_uid: m.advertising_id,
                bucket_id: m.bucket_id,
            };
            for raw in self.index.inputs(&m.identifier) {
                out.mapped.insert(raw.to_owned(), identity.clone());
            }
        }
        for u in body.unmapped {
            for raw in self.index.inputs(&u.identifier) {
                out.unmapped.insert(
                    raw.to_owned(),
                    UnmappedIdentity {
                        reason: u.reason.clone(),
                    },
                );
            }
        }
        Ok(out)
    }
}

/// A mapped identity of `/v2/identity/map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedIdentity {
    /// The raw UID (base64), `advertising_id` in the answer.
    pub raw_uid: String,
    /// The salt bucket, to watch with [`IdentityMapClient::get_identity_buckets`].
    pub bucket_id: String,
}

/// An identity `/v2/identity/map` did not map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedIdentity {
    /// `optout` or `invalid identifier`.
    pub reason: String,
}

/// The answer of `/v2/identity/map`, keyed by input (email, phone number or hash as given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMapResponse {
    /// Mapped identities.
    pub mapped: HashMap<String, MappedIdentity>,
    /// Identities that were not mapped.
    pub unmapped: HashMap<String, UnmappedIdentity>,
}

/// Why `/v3/identity/map` did not map an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnmappedIdentityReason {
    /// The user opted out.
    OptOut,
    /// Not a valid email, phone number or hash.
    InvalidIdentifier,
    /// A reason this SDK does not know (see the raw reason).
    Unknown,
}

impl UnmappedIdentityReason {
    fn parse(reason: &str) -> Self {
        match reason {
            "optout" => Self::OptOut,
            "invalid identifier" => Self::InvalidIdentifier,
            _ => Self::Unknown,
        }
    }
}

/// A mapped identity of `/v3/identity/map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedIdentityV3 {
    /// The current raw UID (base64).
    pub current_raw_uid: String,
    /// The raw UID before the last salt rotation, for 90 days after it.
    pub previous_raw_uid: Option<String>,
    /// When to map this identity again (Unix ms; the service sends whole seconds).
    pub refresh_from_ms: i64,
}

/// An identity `/v3/identity/map` did not map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedIdentityV3 {
    /// The reason.
    pub reason: UnmappedIdentityReason,
    /// The reason as the service wrote it.
    pub raw_reason: String,
}

/// The identities of one `/v3/identity/map` call, emails and phone numbers mixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMapV3Input {
    email_hashes: Vec<String>,
    phone_hashes: Vec<String>,
    index: InputIndex,
}

impl IdentityMapV3Input {
    /// An empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raw email addresses.
    pub fn from_emails(emails: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self> {
        Self::new().with_emails(emails)
    }

    /// Phone numbers.
    pub fn from_phones(phones: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self> {
        Self::new().with_phones(phones)
    }

    /// Adds raw email addresses.
    pub fn with_emails(
        mut self,
        emails: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self> {
        for e in emails {
            self = self.with_email(e.as_ref())?;
        }
        Ok(self)
    }

    /// Adds phone numbers.
    pub fn with_phones(
        mut self,
        phones: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self> {
        for p in phones {
            self = self.with_phone(p.as_ref())?;
        }
        Ok(self)
    }

    /// Adds a raw email address.
    pub fn with_email(mut self, email: &str) -> Result<Self> {
        let h = hash_email(email).map_err(invalid)?;
        self.index.add(&h, email);
        self.email_hashes.push(h);
        Ok(self)
    }

    /// Adds a phone number.
    pub fn with_phone(mut self, phone: &str) -> Result<Self> {
        let h = hash_phone(phone).map_err(invalid)?;
        self.index.add(&h, phone);
        self.phone_hashes.push(h);
        Ok(self)
    }

    /// Email hashes (base64 SHA-256 of normalised emails).
    pub fn from_hashed_emails(hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self::new().with_hashed_emails(hashes)
    }

    /// Phone hashes (base64 SHA-256 of normalised phone numbers).
    pub fn from_hashed_phones(hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self::new().with_hashed_phones(hashes)
    }

    /// Adds email hashes.
    pub fn with_hashed_emails(self, hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        hashes
            .into_iter()
            .fold(self, |input, h| input.with_hashed_email(h.as_ref()))
    }

    /// Adds phone hashes.
    pub fn with_hashed_phones(self, hashes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        hashes
            .into_iter()
            .fold(self, |input, h| input.with_hashed_phone(h.as_ref()))
    }

    /// Adds an email hash.
    pub fn with_hashed_email(mut self, hash: &str) -> Self {
        self.index.add(hash, hash);
        self.email_hashes.push(hash.to_owned());
        self
    }

    /// Adds a phone hash.
    pub fn with_hashed_phone(mut self, hash: &str) -> Self {
        self.index.add(hash, hash);
        self.phone_hashes.push(hash.to_owned());
        self
    }

    fn to_json(&self) -> String {
        serde_json::json!({ "email_hash": self.email_hashes, "phone_hash": self.phone_hashes })
            .to_string()
    }

    /// Reads a decrypted `/v3/identity/map` answer to this input, keyed by input: what
    /// [`IdentityMapClient::generate_identity_map_v3`] does once the envelope is opened.
    pub fn read_answer(&self, json: &[u8]) -> Result<IdentityMapV3Response> {
        let body: wire::IdentityMapV3Response = Answer::parse(json)?.into_success_body()?;
        if body.email_hash.len() != self.email_hashes.len()
            || body.phone_hash.len() != self.phone_hashes.len()
        {
            return Err(Error::malformed(
                "identity map answered a different number of identities",
            ));
        }
        let mut out = IdentityMapV3Response::default();
        let pairs = self
            .email_hashes
            .iter()
            .zip(&body.email_hash)
            .chain(self.phone_hashes.iter().zip(&body.phone_hash));
        for (hash, entry) in pairs {
            let result = match entry {
                IdentityMapV3Entry::Mapped { u, p, r } => Ok(MappedIdentityV3 {
                    current_raw_uid: u.clone(),
                    previous_raw_uid: p.clone(),
                    refresh_from_ms: r.saturating_mul(1000),
                }),
                IdentityMapV3Entry::Unmapped { e } => Err(UnmappedIdentityV3 {
                    reason: UnmappedIdentityReason::parse(e),
                    raw_reason: e.clone(),
                }),
            };
            for raw in self.index.inputs(hash) {
                match &result {
                    Ok(m) => {
                        out.mapped.insert(raw.to_owned(), m.clone());
                    }
                    Err(u) => {
                        out.unmapped.insert(raw.to_owned(), u.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The answer of `/v3/identity/map`, keyed by input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMapV3Response {
    /// Mapped identities.
    pub mapped: HashMap<String, MappedIdentityV3>,
    /// Identities that were not mapped.
    pub unmapped: HashMap<String, UnmappedIdentityV3>,
}

/// A salt bucket that rotated since a given time: its `bucket_id` (as `/v2/identity/map`
/// reports it) and `last_updated` (`yyyy-MM-ddTHH:mm:ss.SSS`, UTC).
pub type IdentityBucket = BucketEntry;

/// Maps identities to raw UIDs (an API key with role `MAPPER`).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct IdentityMapClient {
    transport: Arc<Transport>,
}

impl IdentityMapClient {
    /// A client for `base_url` with an API key and its client secret (base64).
    pub fn new(base_url: &str, api_key: &str, secret_b64: &str) -> Result<Self> {
        Self::with_http_client(base_url, api_key, secret_b64, None)
    }

    /// As [`new`](Self::new), with your own `reqwest` client (timeouts, proxies, TLS roots;
    /// `None`: the default one). Yours replaces the default 30 s timeout: give it one, or a
    /// call may wait as long as the network lets it.
    pub fn with_http_client(
        base_url: &str,
        api_key: &str,
        secret_b64: &str,
        http: Option<reqwest::Client>,
    ) -> Result<Self> {
        Ok(Self {
            transport: Arc::new(Transport::new(base_url, api_key, secret_b64, http)?),
        })
    }

    /// Maps with `/v2/identity/map`.
    pub async fn generate_identity_map(
        &self,
        input: &IdentityMapInput,
    ) -> Result<IdentityMapResponse> {
        let json = self
            .transport
            .call("/v2/identity/map", input.to_json().as_bytes(), false)
            .await?;
        input.read_answer(&json)
    }

    /// Maps with `/v3/identity/map` (current and previous raw UID, refresh time), sending a
    /// binary envelope.
    pub async fn generate_identity_map_v3(
        &self,
        input: &IdentityMapV3Input,
    ) -> Result<IdentityMapV3Response> {
        let json = self
            .transport
            .call("/v3/identity/map", input.to_json().as_bytes(), true)
            .await?;
        input.read_answer(&json)
    }

    /// The salt buckets rotated at or after `since_ms` (Unix ms, sent as
    /// `YYYY-MM-DDTHH:MM:SS.sss` UTC): map their identities again.
    pub async fn get_identity_buckets(&self, since_ms: i64) -> Result<Vec<IdentityBucket>> {
        let payload = BucketsRequest {
            since_timestamp: Some(format_local_date_time(since_ms)),
        };
        let payload = serde_json::to_string(&payload).map_err(Error::malformed)?;
        let json = self
            .transport
            .call_limited(
                "/v2/identity/buckets",
                payload.as_bytes(),
                false,
                MAX_BUCKETS_ANSWER_BYTES,
            )
            .await?;
        read_buckets_answer(&json)
    }
}

/// Reads a decrypted `/v2/identity/buckets` answer: what
/// [`IdentityMapClient::get_identity_buckets`] does once the envelope is opened.
pub fn read_buckets_answer(json: &[u8]) -> Result<Vec<IdentityBucket>> {
    Answer::parse(json)?.into_success_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sent_as_given_in_order() {
        let input = IdentityMapV3Input::from_hashed_emails(["e1", "e2"])
            .with_hashed_phones(vec!["p1".to_owned()])
            .with_email("a@example.com")
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&input.to_json()).unwrap();
        let emails = json["email_hash"].as_array().unwrap();
        assert_eq!(
            (emails.len(), &emails[0], &emails[1]),
            (3, &"e1".into(), &"e2".into())
        );
        assert_eq!(json["phone_hash"], serde_json::json!(["p1"]));
        assert_eq!(
            IdentityMapV3Input::from_hashed_phones(["p"]).to_json(),
            r#"{"email_hash":[],"phone_hash":["p"]}"#
        );
    }

    #[test]
    fn an_invalid_input_is_reported_without_quoting_it() {
        let err = IdentityMapInput::from_emails(["a@example.com", "jane.doe-at-example.com"])
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        assert!(message.contains("item 1"), "{message}");
        assert!(!message.contains("jane"), "{message}");
        let err = IdentityMapV3Input::default()
            .with_phone("+1 555 0100 secret")
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn inputs_are_hashed_and_indexed() {
        let input =
            IdentityMapInput::from_emails(["USER@example.com", "user@example.com"]).unwrap();
        assert_eq!(input.hashes.len(), 2);
        assert_eq!(input.hashes[0], input.hashes[1]);
        let raws: Vec<&str> = input.index.inputs(&input.hashes[0]).collect();
        assert_eq!(raws, ["USER@example.com", "user@example.com"]);
        assert!(input.to_json().starts_with(r#"{"email_hash":["#));
        // Hashed inputs are their own keys.
        let hashed = IdentityMapInput::from_hashed_phones(["h1"]);
        assert_eq!(hashed.index.inputs("h1").collect::<Vec<_>>(), ["h1"]);
        assert!(IdentityMapInput::from_phones(["12345"]).is_err());

        let v3 = IdentityMapV3Input::from_emails(["a@example.com"])
            .unwrap()
            .with_phone("+12345678901")
            .unwrap()
            .with_hashed_email("h");
        assert_eq!(
            v3.to_json(),
            format!(
                r#"{{"email_hash":["{}","h"],"phone_hash":["EObwtHBUqDNZR33LNSMdtt5cafsYFuGmuY4ZLenlue4="]}}"#,
                v3.email_hashes[0]
            )
        );
        assert!(IdentityMapV3Input::new().with_email("nope").is_err());
    }
}
