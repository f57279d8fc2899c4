//! The key container: one answer of `/v2/key/bidstream` or `/v2/key/sharing`, parsed once into
//! the structures decryption reads (keys by id and by keyset, expanded AES keys, the site
//! domain lists, the lifetime limits).
//!
//! A container is immutable; refreshing builds a new one and swaps it in atomically, so a
//! decryption in flight keeps using the container it started with.

use std::collections::HashMap;

use uid2_proto::encoding::base64_decode_array;
use uid2_proto::identity::IdentityScope;
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::wire::KeysResponse;

use crate::error::{Error, Result};
use crate::transport::Answer;

/// Sharing-token lifetime when the answer does not give one (30 days, as every SDK).
pub const DEFAULT_TOKEN_EXPIRY_SECONDS: i64 = 30 * 86_400;
/// Clock skew tolerated when the answer does not give one (30 minutes, as every SDK).
pub const DEFAULT_ALLOW_CLOCK_SKEW_SECONDS: i64 = 1_800;

/// Everything one key endpoint answered.
#[derive(Debug, Clone)]
pub struct KeyContainer {
    ring: KeyRing,
    identity_scope: IdentityScope,
    caller_site_id: Option<i32>,
    master_keyset_id: Option<i32>,
    default_keyset_id: Option<i32>,
    token_expiry_seconds: i64,
    max_bidstream_lifetime_seconds: i64,
    max_sharing_lifetime_seconds: i64,
    allow_clock_skew_seconds: i64,
    sites: HashMap<i32, Box<[Box<str>]>>,
    latest_expires_ms: Option<i64>,
}

impl KeyContainer {
    /// Parses a key endpoint's decrypted answer, `{"status": "success", "body": {…}}` (the
    /// `status` may be absent, as in the official SDKs' `refreshJson`).
    ///
    /// Missing fields take the official SDKs' defaults: scope UID2, no lifetime limit, 30 minutes
    /// of clock skew, 30-day sharing tokens.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        Self::from_body(Answer::parse(json)?.into_body_unless_failed()?)
    }

    fn from_body(body: KeysResponse) -> Result<Self> {
        let token_expiry_seconds = match &body.token_expiry_seconds {
            None => DEFAULT_TOKEN_EXPIRY_SECONDS,
            Some(text) => match body.token_expiry_seconds() {
                // As the Java SDK's KeyParser: zero means "not set", not tokens that expire
                // the moment they are made.
                Some(0) => DEFAULT_TOKEN_EXPIRY_SECONDS,
                Some(seconds) => seconds,
                None => {
                    return Err(Error::malformed(format!(
                        "token_expiry_seconds {text:?} is not a number"
                    )));
                }
            },
        };
        let mut keys = Vec::with_capacity(body.keys.len());
        for k in &body.keys {
            let secret = base64_decode_array::<32>(&k.secret)
                .map_err(|_| Error::malformed(format!("key {} has no 32-byte secret", k.id)))?;
            keys.push(Key::new(
                k.id,
                k.site_id.unwrap_or(-1),
                k.keyset_id,
                k.created,
                k.activates,
                k.expires,
                secret,
            ));
        }
        for key in &keys {
            // Expand the CBC schedule of legacy v2 tokens here, on the refreshing thread, so
            // that no decryption ever allocates.
            let _ = key.cbc();
        }
        let latest_expires_ms = keys.iter().map(|k| k.expires_s.saturating_mul(1000)).max();
        let sites = body
            .site_data
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let names: Vec<Box<str>> = s
                    .domain_names
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect();
                (s.id, names.into_boxed_slice())
            })
            .collect();
        Ok(Self {
            ring: KeyRing::new(keys),
            identity_scope: match body.identity_scope.as_deref() {
                Some("EUID") => IdentityScope::Euid,
                _ => IdentityScope::Uid2,
            },
            caller_site_id: body.caller_site_id,
            master_keyset_id: body.master_keyset_id,
            default_keyset_id: body.default_keyset_id,
            token_expiry_seconds,
            max_bidstream_lifetime_seconds: body.max_bidstream_lifetime_seconds.unwrap_or(i64::MAX),
            max_sharing_lifetime_seconds: body.max_sharing_lifetime_seconds.unwrap_or(i64::MAX),
            allow_clock_skew_seconds: body
                .allow_clock_skew_seconds
                .unwrap_or(DEFAULT_ALLOW_CLOCK_SKEW_SECONDS),
            sites,
            latest_expires_ms,
        })
    }

    /// Whether the keys can still be used at `now_ms`: some key expires after it. Otherwise
    /// decryption reports [`crate::DecryptionStatus::KeysNotSynced`].
    pub fn is_valid(&self, now_ms: i64) -> bool {
        self.latest_expires_ms.is_some_and(|e| now_ms < e)
    }

    /// The key with this id.
    pub fn key(&self, id: u32) -> Option<&Key> {
        self.ring.key(id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the answer held no key.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The keys, for token decoding.
    pub(crate) fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The active key of a keyset at `now_ms` (newest activated, not expired).
    pub fn active_keyset_key(&self, keyset_id: i32, now_ms: i64) -> Option<&Key> {
        self.ring.active_key(keyset_id, now_ms.div_euclid(1000))
    }

    /// The active master key (of `master_keyset_id`, which the operator reports as 9999999).
    pub fn master_key(&self, now_ms: i64) -> Option<&Key> {
        self.active_keyset_key(self.master_keyset_id?, now_ms)
    }

    /// The active key of the caller's default keyset.
    pub fn default_key(&self, now_ms: i64) -> Option<&Key> {
        self.active_keyset_key(self.default_keyset_id?, now_ms)
    }

    /// UID2 or EUID.
    pub fn identity_scope(&self) -> IdentityScope {
        self.identity_scope
    }

    /// The caller's site (sharing answers only).
    pub fn caller_site_id(&self) -> Option<i32> {
        self.caller_site_id
    }

    /// Lifetime of sharing tokens this caller mints, in seconds.
    pub fn token_expiry_seconds(&self) -> i64 {
        self.token_expiry_seconds
    }

    /// Longest advertising-token lifetime accepted in the bid stream, in seconds.
    pub fn max_bidstream_lifetime_seconds(&self) -> i64 {
        self.max_bidstream_lifetime_seconds
    }

    /// Longest sharing-token lifetime accepted, in seconds.
    pub fn max_sharing_lifetime_seconds(&self) -> i64 {
        self.max_sharing_lifetime_seconds
    }

    /// How far in the future a token's creation time may lie, in seconds.
    pub fn allow_clock_skew_seconds(&self) -> i64 {
        self.allow_clock_skew_seconds
    }

    /// Whether `name` is one of the domain (or app) names `site_data` lists for `site_id`,
    /// compared without regard to case. No name, or a site absent from `site_data`, is never
    /// allowed (as `KeyContainer.isDomainOrAppNameAllowedForSite` in the Java SDK).
    pub fn is_domain_or_app_name_allowed_for_site(&self, site_id: i32, name: Option<&str>) -> bool {
        let Some(name) = name else {
            return false;
        };
        self.sites
            .get(&site_id)
            .is_some_and(|names| names.iter().any(|n| equals_ignore_case(n, name)))
    }
}

/// Case-insensitive equality as Java's `String.equalsIgnoreCase` decides it for these names:
/// character by character, equal, or equal upper-cased, or equal lower-cased after upper-casing
/// (Java's simple, one-character case mappings). Allocates nothing.
fn equals_ignore_case(a: &str, b: &str) -> bool {
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    let mut x = a.chars();
    let mut y = b.chars();
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) => {
                let (u, v) = (simple_upper(c), simple_upper(d));
                if c != d && u != v && simple_lower(u) != simple_lower(v) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Java's `Character.toUpperCase`: a character whose full upper case is several characters
/// (`ß` → `SS`) has no simple mapping and stays as it is.
fn simple_upper(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Java's `Character.toLowerCase`. The one character whose full lower case is longer than one
/// (`İ` → `i` + combining dot) has the first of them as its simple mapping.
fn simple_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "o8HsvkwJ5Ulnrd0uui3GpukpwDapj+JLqb7qfN/GJKo=";

    fn parse(body: &str) -> Result<KeyContainer> {
        KeyContainer::from_json(format!(r#"{{"body":{body}}}"#).as_bytes())
    }

    #[test]
    fn sharing_answer_fields_and_active_keys() {
        let c = parse(&format!(
            r#"{{"caller_site_id":11,"master_keyset_id":1,"default_keyset_id":99999,
               "token_expiry_seconds":"1728000","identity_scope":"EUID",
               "keys":[{{"id":3,"keyset_id":99999,"created":1609459200,"activates":1609459210,"expires":1893456000,"secret":"{SECRET}"}},
                       {{"id":2,"keyset_id":1,"created":1609458200,"activates":1609459220,"expires":1893457000,"secret":"{SECRET}"}}]}}"#
        ))
        .unwrap();
        let now = 1_700_000_000_000;
        assert_eq!(c.caller_site_id(), Some(11));
        assert_eq!(c.token_expiry_seconds(), 1_728_000);
        assert_eq!(c.identity_scope(), IdentityScope::Euid);
        assert_eq!(c.master_key(now).map(|k| k.id), Some(2));
        assert_eq!(c.default_key(now).map(|k| k.id), Some(3));
        // Before key 3 activates (second precision, compared in milliseconds).
        assert_eq!(c.default_key(1_609_459_209_999).map(|k| k.id), None);
        assert_eq!(c.default_key(1_609_459_210_000).map(|k| k.id), Some(3));
        assert!(c.is_valid(1_893_456_999_999));
        assert!(!c.is_valid(1_893_457_000_000));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn another_status_is_reported_whatever_the_body() {
        for json in [
            r#"{"status":"unauthorized","body":"not keys"}"#,
            r#"{"status":"unauthorized"}"#,
        ] {
            match KeyContainer::from_json(json.as_bytes()) {
                Err(Error::UnexpectedStatus(s)) => assert_eq!(s, "unauthorized"),
                other => panic!("{json}: {other:?}"),
            }
        }
        for json in [r#"{"status":"success"}"#, r#"{"body":"keys"}"#, "[]"] {
            assert!(
                matches!(
                    KeyContainer::from_json(json.as_bytes()),
                    Err(Error::MalformedResponse(_))
                ),
                "{json}"
            );
        }
    }

    #[test]
    fn defaults_when_fields_are_missing_or_null() {
        let c = parse(r#"{"caller_site_id":11,"token_expiry_seconds":null,"keys":[]}"#).unwrap();
        assert_eq!(c.token_expiry_seconds(), DEFAULT_TOKEN_EXPIRY_SECONDS);
        assert_eq!(c.allow_clock_skew_seconds(), 1800);
        let zero = parse(r#"{"token_expiry_seconds":"0","keys":[]}"#).unwrap();
        assert_eq!(zero.token_expiry_seconds(), DEFAULT_TOKEN_EXPIRY_SECONDS);
        let set = parse(r#"{"token_expiry_seconds":"3600","keys":[]}"#).unwrap();
        assert_eq!(set.token_expiry_seconds(), 3600);
        assert_eq!(c.max_bidstream_lifetime_seconds(), i64::MAX);
        assert_eq!(c.identity_scope(), IdentityScope::Uid2);
        assert!(c.is_empty());
        // No key at all: never valid.
        assert!(!c.is_valid(0));
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(
            parse(r#"{"keys":[{"id":1,"created":0,"activates":0,"expires":1,"secret":"AAAA"}]}"#)
                .is_err()
        );
        assert!(parse(r#"{"keys":[{"id":"x"}]}"#).is_err());
        assert!(KeyContainer::from_json(br#"{"status":"error","body":{}}"#).is_err());
        assert!(KeyContainer::from_json(b"[1,2]").is_err());
        assert!(parse(r#"{"token_expiry_seconds":"soon","keys":[]}"#).is_err());
        // No `keys` at all is a broken answer, not an empty key set: refusing it keeps the
        // keys a client already holds, as the official SDKs do.
        assert!(parse(r#"{"caller_site_id":11}"#).is_err());
    }

    #[test]
    fn site_data_domain_checks() {
        let c = parse(
            r#"{"keys":[],"site_data":[{"id":9,"domain_names":["example.com"]},
                             {"id":100,"domain_names":["example.org","Example.net","Bücher.de"]}]}"#,
        )
        .unwrap();
        assert!(c.is_domain_or_app_name_allowed_for_site(9, Some("example.com")));
        assert!(c.is_domain_or_app_name_allowed_for_site(9, Some("EXAMPLE.com")));
        assert!(!c.is_domain_or_app_name_allowed_for_site(9, Some("example.org")));
        assert!(!c.is_domain_or_app_name_allowed_for_site(9, Some("sub.example.com")));
        assert!(!c.is_domain_or_app_name_allowed_for_site(9, None));
        assert!(c.is_domain_or_app_name_allowed_for_site(100, Some("example.NET")));
        assert!(c.is_domain_or_app_name_allowed_for_site(100, Some("BÜCHER.DE")));
        assert!(!c.is_domain_or_app_name_allowed_for_site(100, Some("example.com")));
        assert!(!c.is_domain_or_app_name_allowed_for_site(7, Some("example.com")));
        let empty = parse(r#"{"keys":[],"site_data":[]}"#).unwrap();
        assert!(!empty.is_domain_or_app_name_allowed_for_site(1, Some("example.com")));
    }

    #[test]
    fn case_folding_matches_java_for_simple_mappings() {
        assert!(equals_ignore_case("ABC", "abc"));
        assert!(equals_ignore_case("ÄÖÜ", "äöü"));
        assert!(!equals_ignore_case("abc", "abd"));
        assert!(!equals_ignore_case("abc", "abcd"));
        assert!(!equals_ignore_case("straße", "STRASSE"));
        // U+0130 upper-cases to itself and lower-cases (simply) to `i`, as in Java.
        assert!(equals_ignore_case("İstanbul.com", "istanbul.com"));
        assert!(equals_ignore_case("STRAẞE", "straße"));
        assert!(!equals_ignore_case("ß", "s"));
    }
}
