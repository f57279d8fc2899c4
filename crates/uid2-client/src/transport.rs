//! The HTTP side shared by every client: base URL, API key, client secret, and the v2 envelope
//! round trip (`POST` of `base64(0x01 ‖ GCM(secret, timestamp ‖ nonce ‖ JSON))` with
//! `Authorization: Bearer <API key>`, answer opened with the same secret and checked for the
//! nonce), exactly as the official SDKs do it.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_decode_array, base64_encode};
use uid2_proto::envelope::{open_response, seal_request};

use crate::error::{Error, Result};

/// What the SDK sends as `X-UID2-Client-Version`.
pub(crate) const CLIENT_VERSION: &str = concat!("uid2-client-rust-", env!("CARGO_PKG_VERSION"));
/// The content type of binary envelopes (request and response).
const BINARY: &str = "application/octet-stream";
/// Default time limit of one request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Decodes a client secret (base64 of 32 bytes).
pub(crate) fn decode_secret(secret_b64: &str) -> Result<[u8; 32]> {
    base64_decode_array(secret_b64.trim()).map_err(|_| Error::InvalidSecret)
}

/// Base URL, credentials and an HTTP client.
pub(crate) struct Transport {
    base_url: String,
    bearer: HeaderValue,
    secret: GcmKey,
    http: reqwest::Client,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `{"status": …, "body": …}` as the SDKs first read a decrypted answer: the status, and the
/// body left unread until the status says what it should be, so that another status is reported
/// as such whatever its body.
#[derive(Deserialize)]
pub(crate) struct Answer<'a> {
    /// The status; the key endpoints' answers may omit it (as the official SDKs'
    /// `refreshJson` allows), every other answer has it.
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

impl<'a> Answer<'a> {
    /// Parses a decrypted answer.
    pub(crate) fn parse(json: &'a [u8]) -> Result<Self> {
        serde_json::from_slice(json).map_err(Error::malformed)
    }

    /// Whether the status is `status`.
    pub(crate) fn is(&self, status: &str) -> bool {
        self.status.as_deref() == Some(status)
    }

    /// The body of a `success` answer; any other status, or none, is an error.
    pub(crate) fn into_success_body<T: DeserializeOwned>(self) -> Result<T> {
        match self.status.as_deref() {
            Some("success") => self.into_body(),
            Some(other) => Err(Error::UnexpectedStatus(other.to_owned())),
            None => Err(Error::malformed("the answer has no status")),
        }
    }

    /// The body of an answer whose status is `success` or absent (a key endpoint's).
    pub(crate) fn into_body_unless_failed<T: DeserializeOwned>(self) -> Result<T> {
        match self.status.as_deref() {
            Some(other) if other != "success" => Err(Error::UnexpectedStatus(other.to_owned())),
            _ => self.into_body(),
        }
    }

    fn into_body<T: DeserializeOwned>(self) -> Result<T> {
        let body = self
            .body
            .ok_or_else(|| Error::malformed("the answer has no body"))?;
        serde_json::from_str(body.get()).map_err(Error::malformed)
    }
}

impl Transport {
    /// A transport for `base_url` (e.g. `https://prod.uidapi.com`), the API key and the client
    /// secret (base64). `http` replaces the default client (30 s timeout), timeout included.
    pub(crate) fn new(
        base_url: &str,
        api_key: &str,
        secret_b64: &str,
        http: Option<reqwest::Client>,
    ) -> Result<Self> {
        let secret = decode_secret(secret_b64)?;
        // Checked now, not at the first request: a base URL without its scheme would otherwise
        // fail every call with reqwest's bare "builder error".
        let base_url = base_url.trim().trim_end_matches('/');
        match reqwest::Url::parse(base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(Error::InvalidInput(format!(
                    "the base URL {base_url:?} is not an http:// or https:// URL \
                     (e.g. https://prod.uidapi.com)"
                )));
            }
        }
        let bearer = HeaderValue::from_str(&format!("Bearer {}", api_key.trim()))
            .map_err(|_| Error::InvalidInput("the API key is not a valid header value".into()))?;
        let http = match http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(DEFAULT_TIMEOUT)
                .build()?,
        };
        Ok(Self {
            base_url: base_url.to_owned(),
            bearer,
            secret: GcmKey::new(&secret),
            http,
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{}", self.base_url, path))
            .header(AUTHORIZATION, self.bearer.clone())
            .header("X-UID2-Client-Version", CLIENT_VERSION)
    }

    /// Sends `payload` (JSON, or nothing for the key endpoints) in a v2 envelope and returns the
    /// decrypted answer, of at most [`MAX_ANSWER_BYTES`]. `binary` sends and expects raw bytes
    /// (`application/octet-stream`), as the v3 identity map client does; otherwise base64 text.
    pub(crate) async fn call(&self, path: &str, payload: &[u8], binary: bool) -> Result<Vec<u8>> {
        self.call_limited(path, payload, binary, MAX_ANSWER_BYTES)
            .await
    }

    /// [`call`](Self::call) for an endpoint whose answers have a limit of their own
    /// ([`MAX_KEYS_ANSWER_BYTES`], [`MAX_BUCKETS_ANSWER_BYTES`]).
    pub(crate) async fn call_limited(
        &self,
        path: &str,
        payload: &[u8],
        binary: bool,
        max_answer_bytes: usize,
    ) -> Result<Vec<u8>> {
        let nonce: [u8; 8] = rand::random();
        let sealed = seal_request(
            &self.secret,
            crate::now_ms(),
            nonce,
            payload,
            &mut rand::rng(),
        );
        let request = if binary {
            self.post(path).header(CONTENT_TYPE, BINARY).body(sealed)
        } else {
            self.post(path)
                .header(CONTENT_TYPE, "text/plain")
                .body(base64_encode(&sealed))
        };
        let (body, binary_answer) = send(request, max_answer_bytes).await?;
        let raw = if binary_answer {
            body
        } else {
            base64_decode(body.trim_ascii())
                .map_err(|_| Error::malformed("the answer is neither binary nor base64"))?
        };
        Ok(open_response(&self.secret, &raw, nonce)?.payload)
    }

    /// Posts `text` as it is (the refresh endpoint takes the refresh token in clear) and returns
    /// the answer's bytes.
    pub(crate) async fn post_text(&self, path: &str, text: &str) -> Result<Vec<u8>> {
        let request = self
            .post(path)
            .header(CONTENT_TYPE, "text/plain")
            .body(text.to_owned());
        Ok(send(request, MAX_ANSWER_BYTES).await?.0)
    }
}

/// Sends a request; returns the body of an HTTP 200 and whether it was binary, or the error the
/// body describes.
async fn send(request: reqwest::RequestBuilder, max_bytes: usize) -> Result<(Vec<u8>, bool)> {
    let response = request.send().await?;
    let http_status = response.status().as_u16();
    let binary = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(BINARY.as_bytes()));
    let body = read_capped(response, max_bytes).await?;
    if http_status != 200 {
        return Err(api_error(http_status, &body));
    }
    Ok((body, binary))
}

/// The largest answer read from most endpoints: a misconfigured or hostile endpoint must not
/// exhaust memory. The largest honest answer, an identity map of a 1 MiB request, is a few MiB.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The largest key answer read. Thousands of keys take a few MiB; every key of an answer is set
/// up for decryption at once, so a huge answer would cost many times its size in memory.
pub(crate) const MAX_KEYS_ANSWER_BYTES: usize = 16 << 20;
/// The largest salt-bucket answer read: every bucket since an old date is about 95 MB for the
/// 1,048,576 buckets of production.
pub(crate) const MAX_BUCKETS_ANSWER_BYTES: usize = 256 << 20;
/// How much of a non-JSON error body an [`Error::Api`] keeps.
const MAX_ERROR_MESSAGE_CHARS: usize = 512;

async fn read_capped(mut response: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>> {
    let too_large = || Error::ResponseTooLarge(max_bytes);
    let expected = response.content_length().unwrap_or(0);
    if expected > max_bytes as u64 {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(expected as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn api_error(http_status: u16, body: &[u8]) -> Error {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        status: String,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => Error::Api {
            http_status,
            status: e.status,
            message: e.message.unwrap_or_default(),
        },
        Err(_) => Error::Api {
            http_status,
            status: String::new(),
            message: String::from_utf8_lossy(body)
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_32_bytes_of_base64() {
        assert!(decode_secret("ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=").is_ok());
        assert!(matches!(decode_secret("AAAA"), Err(Error::InvalidSecret)));
        assert!(matches!(
            decode_secret("not base64!"),
            Err(Error::InvalidSecret)
        ));
    }

    #[test]
    fn error_bodies_keep_the_uid2_status() {
        let e = api_error(
            400,
            br#"{"status":"expired_token","message":"Expired Token presented"}"#,
        );
        assert_eq!(e.api_status(), Some("expired_token"));
        assert!(e.to_string().contains("Expired Token presented"));
        let e = api_error(500, b"Internal Server Error");
        assert_eq!(e.api_status(), None);
        assert!(e.to_string().contains("HTTP 500"));
        let e = api_error(502, "x".repeat(1 << 20).as_bytes());
        assert!(e.to_string().len() < MAX_ERROR_MESSAGE_CHARS + 100);
    }

    #[test]
    fn answers_distinguish_success_from_other_statuses() {
        let ok = Answer::parse(br#"{"status":"success","body":5}"#).unwrap();
        assert_eq!(ok.into_success_body::<u32>().unwrap(), 5);
        let optout = Answer::parse(br#"{"status":"optout","body":"not a number"}"#).unwrap();
        assert!(optout.is("optout"));
        assert!(matches!(
            optout.into_success_body::<u32>(),
            Err(Error::UnexpectedStatus(s)) if s == "optout"
        ));
        let no_status = Answer::parse(br#"{"body":5}"#).unwrap();
        assert!(matches!(
            no_status.into_success_body::<u32>(),
            Err(Error::MalformedResponse(_))
        ));
        let key_answer = Answer::parse(br#"{"body":5}"#).unwrap();
        assert_eq!(key_answer.into_body_unless_failed::<u32>().unwrap(), 5);
        assert!(Answer::parse(b"[1, 2, 3]").is_err());
    }
}
