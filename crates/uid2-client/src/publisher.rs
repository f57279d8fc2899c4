//! [`PublisherClient`]: what publishers use to turn a signed-in user's email or phone number
//! into a UID2 identity (`/v2/token/generate`) and to keep it fresh (`/v2/token/refresh`).
//!
//! Emails and phone numbers are normalised and hashed here before they are sent, as the
//! official SDKs do; only the hash leaves the process.

use std::sync::Arc;

use uid2_proto::encoding::{base64_decode, base64_decode_array};
use uid2_proto::envelope::open_bare_response;
use uid2_proto::identity::HashedIdentity;

use crate::error::{Error, Result};
use crate::transport::{Answer, Transport};

/// The tokens of one identity, as `/v2/token/generate` and `/v2/token/refresh` return them
/// (the protocol's own type). Keep it in the user's session (e.g. as
/// [`to_json_string`](IdentityTokens::to_json_string)) and refresh it when
/// [`is_due_for_refresh`](IdentityTokens::is_due_for_refresh).
pub use uid2_proto::wire::IdentityTokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Email,
    Phone,
}

/// What the input's value is, and so what is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputForm {
    /// A raw email or phone number, normalised and hashed here (the default).
    Raw,
    /// A raw email or phone number sent as it is ([`TokenGenerateInput::do_not_hash`]).
    RawUnhashed,
    /// Already the base64 SHA-256 of a normalised identity.
    Hashed,
}

/// The identity to generate a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGenerateInput {
    kind: InputKind,
    form: InputForm,
    value: String,
    tcf_consent_string: Option<String>,
}

impl TokenGenerateInput {
    fn new(kind: InputKind, form: InputForm, value: &str) -> Self {
        Self {
            kind,
            form,
            value: value.to_owned(),
            tcf_consent_string: None,
        }
    }

    /// A raw email address (normalised and hashed before sending).
    pub fn from_email(email: &str) -> Self {
        Self::new(InputKind::Email, InputForm::Raw, email)
    }

    /// A phone number in E.164 form (hashed before sending).
    pub fn from_phone(phone: &str) -> Self {
        Self::new(InputKind::Phone, InputForm::Raw, phone)
    }

    /// The base64 SHA-256 of a normalised email.
    pub fn from_hashed_email(hash: &str) -> Self {
        Self::new(InputKind::Email, InputForm::Hashed, hash)
    }

    /// The base64 SHA-256 of a phone number.
    pub fn from_hashed_phone(hash: &str) -> Self {
        Self::new(InputKind::Phone, InputForm::Hashed, hash)
    }

    /// Sends a raw email or phone number as it is, leaving normalisation to the service (an
    /// input given as a hash stays one).
    pub fn do_not_hash(mut self) -> Self {
        if self.form == InputForm::Raw {
            self.form = InputForm::RawUnhashed;
        }
        self
    }

    /// EUID: the user's TCF consent string.
    pub fn with_transparency_and_consent_string(mut self, tcf: &str) -> Self {
        self.tcf_consent_string = Some(tcf.to_owned());
        self
    }

    /// The request JSON; invalid emails and phone numbers are refused here.
    pub fn to_json(&self) -> Result<String> {
        let invalid = |e: uid2_proto::identity::IdentityError| Error::InvalidInput(e.to_string());
        let (field, value) = match (self.kind, self.form) {
            (InputKind::Email, InputForm::Hashed) => ("email_hash", self.value.clone()),
            (InputKind::Phone, InputForm::Hashed) => ("phone_hash", self.value.clone()),
            (InputKind::Email, InputForm::Raw) => {
                let id = HashedIdentity::from_email(&self.value).map_err(invalid)?;
                ("email_hash", id.hash.as_str().to_owned())
            }
            (InputKind::Phone, InputForm::Raw) => {
                let id = HashedIdentity::from_phone(&self.value).map_err(invalid)?;
                ("phone_hash", id.hash.as_str().to_owned())
            }
            (InputKind::Email, InputForm::RawUnhashed) => ("email", self.value.clone()),
            (InputKind::Phone, InputForm::RawUnhashed) => ("phone", self.value.clone()),
        };
        let mut json = serde_json::Map::new();
        json.insert(field.into(), value.into());
        if let Some(tcf) = &self.tcf_consent_string {
            json.insert("tcf_consent_string".into(), tcf.clone().into());
        }
        Ok(serde_json::Value::Object(json).to_string())
    }
}

/// What `/v2/token/generate` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenGenerateResponse {
    /// A new identity.
    Success(IdentityTokens),
    /// The user has opted out: no identity, and none must be used for them.
    OptOut,
    /// EUID: the TCF consent string lacks the consent UID2 needs.
    InsufficientUserConsent,
}

/// What `/v2/token/refresh` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefreshResponse {
    /// The refreshed identity; replace the old one with it.
    Success(IdentityTokens),
    /// The user has opted out since: drop the identity.
    OptOut,
}

/// Generates and refreshes identities for a publisher (an API key with role `GENERATOR`).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct PublisherClient {
    transport: Arc<Transport>,
}

impl PublisherClient {
    /// A client for `base_url` (e.g. `https://prod.uidapi.com`) with an API key and its client
    /// secret (base64).
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

    /// Generates an identity. An opted-out user gives [`TokenGenerateResponse::OptOut`]; HTTP
    /// errors (bad key, invalid identifier) give [`Error::Api`].
    pub async fn generate_token(
        &self,
        input: &TokenGenerateInput,
    ) -> Result<TokenGenerateResponse> {
        let json = input.to_json()?;
        let answer = self
            .transport
            .call("/v2/token/generate", json.as_bytes(), false)
            .await?;
        let answer = Answer::parse(&answer)?;
        if answer.is("optout") {
            Ok(TokenGenerateResponse::OptOut)
        } else if answer.is("insufficient_user_consent") {
            Ok(TokenGenerateResponse::InsufficientUserConsent)
        } else {
            answer
                .into_success_body()
                .map(TokenGenerateResponse::Success)
        }
    }

    /// Refreshes an identity: posts its refresh token to `/v2/token/refresh` and opens the answer
    /// with its `refresh_response_key`. An expired or unknown refresh token gives
    /// [`Error::Api`] with status `expired_token` or `invalid_token`.
    ///
    /// As in the official Java and Python SDKs, a refreshed identity that is already expired or
    /// no longer refreshable by this machine's clock is refused
    /// ([`Error::MalformedResponse`], "invalid identity in token refresh response"): handing it
    /// on would only fail later, in the browser or the bid stream.
    pub async fn refresh_token(&self, identity: &IdentityTokens) -> Result<TokenRefreshResponse> {
        let key: [u8; 32] = identity
            .refresh_response_key
            .as_deref()
            .and_then(|key| base64_decode_array(key).ok())
            .ok_or_else(|| {
                Error::InvalidInput("the identity has no 32-byte refresh_response_key".into())
            })?;
        let body = self
            .transport
            .post_text("/v2/token/refresh", &identity.refresh_token)
            .await?;
        let sealed = base64_decode(body.trim_ascii())
            .map_err(|_| Error::malformed("the refresh answer is not base64"))?;
        let json = open_bare_response(&key, &sealed)?;
        refresh_answer(&json, crate::now_ms())
    }
}

/// The outcome of a decrypted refresh answer, its identity checked against `now_ms`.
fn refresh_answer(json: &[u8], now_ms: i64) -> Result<TokenRefreshResponse> {
    let answer = Answer::parse(json)?;
    if answer.is("optout") {
        return Ok(TokenRefreshResponse::OptOut);
    }
    let identity: IdentityTokens = answer.into_success_body()?;
    if identity.is_expired(now_ms) || !identity.is_refreshable(now_ms) {
        return Err(Error::malformed(
            "invalid identity in token refresh response: already expired or not refreshable by \
             this machine's clock",
        ));
    }
    Ok(TokenRefreshResponse::Success(identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refreshed_identity_must_be_usable_by_this_clock() {
        let now = 1_700_000_000_000;
        let answer = |expires: i64, refresh_expires: i64| {
            format!(
                r#"{{"status":"success","body":{{"advertising_token":"A4","refresh_token":"R",
                "identity_expires":{expires},"refresh_expires":{refresh_expires},
                "refresh_from":{now},"refresh_response_key":"k"}}}}"#
            )
        };
        let hour = 3_600_000;
        assert!(matches!(
            refresh_answer(answer(now + hour, now + 2 * hour).as_bytes(), now),
            Ok(TokenRefreshResponse::Success(id)) if id.identity_expires == now + hour
        ));
        for (expires, refresh_expires) in [(now - 1, now + hour), (now + hour, now - 1)] {
            let refused = refresh_answer(answer(expires, refresh_expires).as_bytes(), now);
            assert!(
                matches!(&refused, Err(Error::MalformedResponse(m)) if m.contains("invalid identity")),
                "{refused:?}"
            );
        }
        assert!(matches!(
            refresh_answer(br#"{"status":"optout"}"#, now),
            Ok(TokenRefreshResponse::OptOut)
        ));
    }

    #[test]
    fn generate_inputs_hash_like_the_official_sdks() {
        let json = TokenGenerateInput::from_email("   USER@EXAMPLE.COM   ")
            .to_json()
            .unwrap();
        assert_eq!(
            json,
            r#"{"email_hash":"tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="}"#
        );
        let json = TokenGenerateInput::from_phone("+12345678901")
            .to_json()
            .unwrap();
        assert_eq!(
            json,
            r#"{"phone_hash":"EObwtHBUqDNZR33LNSMdtt5cafsYFuGmuY4ZLenlue4="}"#
        );
        let json = TokenGenerateInput::from_hashed_email("abc")
            .with_transparency_and_consent_string("CP")
            .to_json()
            .unwrap();
        assert_eq!(json, r#"{"email_hash":"abc","tcf_consent_string":"CP"}"#);
        let json = TokenGenerateInput::from_email("A@b.com")
            .do_not_hash()
            .to_json()
            .unwrap();
        assert_eq!(json, r#"{"email":"A@b.com"}"#);
        let json = TokenGenerateInput::from_hashed_phone("abc")
            .do_not_hash()
            .to_json()
            .unwrap();
        assert_eq!(json, r#"{"phone_hash":"abc"}"#, "a hash stays a hash");
        assert!(
            TokenGenerateInput::from_email("not an email")
                .to_json()
                .is_err()
        );
        assert!(
            TokenGenerateInput::from_phone("555-1234")
                .to_json()
                .is_err()
        );
    }
}
