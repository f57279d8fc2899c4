//! The v2 envelope around a request: authenticate the API key, check the role, open the
//! envelope (base64 text or raw bytes), and seal the answer with the same client secret and nonce.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{EnvelopeError, open_request, seal_response};
use uid2_proto::wire::ResponseStatus;
use uid2_store::Role;

use super::{ApiError, api_key, is_binary, ok};
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
    nonce: [u8; 8],
    /// The decrypted JSON bytes (empty when none was sent).
    pub payload: Vec<u8>,
    binary: bool,
}

fn looks_like_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).is_ok()
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

impl V2Request {
    /// Authenticates (any of `roles`) and opens the envelope of a request.
    pub(crate) fn open(
        operator: &Operator,
        headers: &HeaderMap,
        body: &[u8],
        roles: &[Role],
    ) -> Result<Self, ApiError> {
        let snap = operator.snapshot();
        let client = api_key(headers)
            .and_then(|key| snap.clients.authorize(key, roles))
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
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
        if !opened.payload.is_empty() && !looks_like_json_object(&opened.payload) {
            return Err(ApiError::client_error(
                "Invalid payload in body: Data is not valid json string.",
            ));
        }
        Ok(Self {
            snap,
            client,
            nonce: opened.nonce,
            payload: opened.payload,
            binary,
        })
    }

    /// Parses the payload as `T`; a payload of the wrong shape is a client error.
    pub(crate) fn json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.payload.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| ApiError::client_error(format!("Invalid payload in body: {e}")))
    }

    /// The payload as a JSON object (empty when there is none).
    pub(crate) fn object(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_slice(&self.payload).unwrap_or_default()
    }

    /// Seals `{"status": status, "body": body}` for the caller.
    pub(crate) fn reply<T: Serialize>(&self, status: ResponseStatus, body: Option<T>) -> Response {
        #[derive(Serialize)]
        struct Reply<T> {
            status: ResponseStatus,
            #[serde(skip_serializing_if = "Option::is_none")]
            body: Option<T>,
        }
        let json = serde_json::to_vec(&Reply { status, body }).expect("responses serialise");
        let sealed = seal_response(
            &self.client.secret,
            now_ms(),
            self.nonce,
            &json,
            &mut rand::rng(),
        );
        if self.binary {
            ok("application/octet-stream", sealed)
        } else {
            ok("text/plain", base64_encode(&sealed))
        }
    }

    /// Seals a success with `body`.
    pub(crate) fn success<T: Serialize>(&self, body: T) -> Response {
        self.reply(ResponseStatus::Success, Some(body))
    }
}
