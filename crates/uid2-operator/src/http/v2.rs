//! The v2 envelope around a request: authenticate the API key, check the role, open the
//! envelope (base64 text or raw bytes), parse the JSON payload once, and seal the answer with
//! the same client secret and nonce.

use std::sync::{Arc, LazyLock};

use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{EnvelopeError, open_request, seal_response};
use uid2_proto::wire::ResponseStatus;
use uid2_store::Role;

use super::{ApiError, LimitedBody, answer_json, is_binary, ok};
use crate::clients::Client;
use crate::snapshot::Snapshot;
use crate::{Operator, now_ms};

const ENCRYPTION_HINT: &str = " See https://unifiedid.com/docs/getting-started/gs-encryption-decryption for details on the request envelope format.";
const UNENCRYPTED_JSON: &str = "Invalid body: The request body is unencrypted JSON. It must be an encrypted request envelope. See https://unifiedid.com/docs/getting-started/gs-encryption-decryption#encryption-and-decryption-code-examples for encryption and decryption code examples.";

/// An authenticated, decrypted v2 request.
pub(crate) struct V2Request {
    /// The snapshot this request is served from.
    pub snap: Arc<Snapshot>,
    /// The caller.
    pub client: Arc<Client>,
    /// The decrypted JSON object; `None` when the envelope carried no payload.
    pub payload: Option<Map<String, Value>>,
    replier: Replier,
}

/// Seals answers for one request: the caller's secret, the request's nonce, and whether it came
/// as raw bytes. Owned and `Send`, so batch work can seal its answer on the pool.
#[derive(Clone)]
pub(crate) struct Replier {
    client: Arc<Client>,
    nonce: [u8; 8],
    binary: bool,
}

impl Replier {
    /// Seals `{"status": status, "body": body}` (no `body` when `None`) for the caller.
    pub(crate) fn reply<T: Serialize>(&self, status: ResponseStatus, body: Option<&T>) -> Response {
        let sealed = seal_response(
            &self.client.secret,
            now_ms(),
            self.nonce,
            &answer_json(status, body),
            &mut rand::rng(),
        );
        if self.binary {
            ok("application/octet-stream", sealed)
        } else {
            ok("text/plain", base64_encode(&sealed))
        }
    }

    /// Seals a success with `body`.
    pub(crate) fn success<T: Serialize>(&self, body: &T) -> Response {
        self.reply(ResponseStatus::Success, Some(body))
    }
}

fn looks_like_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body).is_ok()
}

fn envelope_error(e: EnvelopeError, body: &[u8]) -> ApiError {
    let unencrypted = || looks_like_json_object(body);
    let message = match e {
        EnvelopeError::NotBase64 if unencrypted() => UNENCRYPTED_JSON.to_owned(),
        EnvelopeError::NotBase64 => {
            format!("Invalid body: Body is not valid base64.{ENCRYPTION_HINT}")
        }
        EnvelopeError::Empty => "Invalid body: Body is missing.".to_owned(),
        EnvelopeError::TooShort | EnvelopeError::UnsupportedVersion(_) if unencrypted() => {
            UNENCRYPTED_JSON.to_owned()
        }
        EnvelopeError::TooShort => {
            format!("Invalid body: Body too short. Check encryption method.{ENCRYPTION_HINT}")
        }
        EnvelopeError::UnsupportedVersion(v) => {
            format!(
                "Invalid body: Invalid request envelope format version: received {v}, must be 1.{ENCRYPTION_HINT}"
            )
        }
        EnvelopeError::DecryptionFailed => {
            format!("Invalid body: Check encryption key (ClientSecret).{ENCRYPTION_HINT}")
        }
        EnvelopeError::StaleTimestamp => {
            "Invalid timestamp: Request too old or client time drift.".to_owned()
        }
        EnvelopeError::NonceMismatch => "Invalid body".to_owned(),
    };
    ApiError::client_error(message)
}

/// A request with no payload reads as an empty object.
static NO_FIELDS: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl V2Request {
    /// Authorises (the body's client must have any of `roles`) and opens the envelope of a
    /// request.
    pub(crate) fn open(
        operator: &Operator,
        headers: &HeaderMap,
        body: &LimitedBody,
        roles: &[Role],
    ) -> Result<Self, ApiError> {
        let snap = operator.snapshot();
        let client = Some(&body.client)
            .filter(|client| client.roles.has_any(roles))
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        let body = &body.bytes[..];
        let now = now_ms();
        let (opened, binary) = if is_binary(headers) {
            match open_request(body.to_vec(), &client.secret, now) {
                Ok(e) => (e, true),
                // A "binary" body that is really base64 text is accepted, and answered as text.
                Err(binary_err) => match base64_decode(body) {
                    Ok(bytes) => (
                        open_request(bytes, &client.secret, now)
                            .map_err(|e| envelope_error(e, body))?,
                        false,
                    ),
                    Err(_) => return Err(envelope_error(binary_err, body)),
                },
            }
        } else {
            let bytes =
                base64_decode(body).map_err(|_| envelope_error(EnvelopeError::NotBase64, body))?;
            (
                open_request(bytes, &client.secret, now).map_err(|e| envelope_error(e, body))?,
                false,
            )
        };
        // Parsed here, once; handlers read the object or convert it to their request type.
        let payload = if opened.payload.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&opened.payload).map_err(|_| {
                ApiError::client_error("Invalid payload in body: Data is not valid json string.")
            })?)
        };
        Ok(Self {
            snap,
            replier: Replier {
                client: client.clone(),
                nonce: opened.nonce,
                binary,
            },
            client,
            payload,
        })
    }

    /// The payload's fields (none when there is no payload).
    pub(crate) fn fields(&self) -> &Map<String, Value> {
        self.payload.as_ref().unwrap_or(&NO_FIELDS)
    }

    /// Takes the payload as `T` (`None` when there is none); a payload of the wrong shape is a
    /// client error with `message`.
    pub(crate) fn take<T: DeserializeOwned>(
        &mut self,
        message: impl FnOnce(serde_json::Error) -> String,
    ) -> Result<Option<T>, ApiError> {
        self.payload
            .take()
            .map(|fields| serde_json::from_value(Value::Object(fields)))
            .transpose()
            .map_err(|e| ApiError::client_error(message(e)))
    }

    /// What seals this request's answers, for work that answers off the async workers.
    pub(crate) fn replier(&self) -> Replier {
        self.replier.clone()
    }

    /// Seals `{"status": status, "body": body}` for the caller.
    pub(crate) fn reply<T: Serialize>(&self, status: ResponseStatus, body: Option<&T>) -> Response {
        self.replier.reply(status, body)
    }

    /// Seals a success with `body`.
    pub(crate) fn success<T: Serialize>(&self, body: &T) -> Response {
        self.replier.success(body)
    }
}
