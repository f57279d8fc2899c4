//! The one error type of the SDK's network calls.
//!
//! Decryption and sharing encryption never return this type: like the official SDKs they report
//! a status ([`crate::DecryptionStatus`], [`crate::EncryptionStatus`]), because a bad token in the
//! bid stream is data, not a failure of the caller.

use uid2_proto::envelope::EnvelopeError;

/// A call to the UID2 service that did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client secret is not base64 of 32 bytes.
    #[error("the client secret must be base64 of 32 bytes")]
    InvalidSecret,
    /// The input was refused before anything was sent (an invalid email, phone or hash).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The request did not complete (connection, timeout, TLS). Its text carries the whole
    /// cause (`… error sending request …: connection refused`), as reqwest's own text alone
    /// does not say why.
    #[error("HTTP request failed: {}", with_causes(.0))]
    Http(reqwest::Error),
    /// The service answered with an HTTP error; `status` is the UID2 status string of the body
    /// (`client_error`, `unauthorized`, `invalid_token`, `expired_token`, …) when it had one.
    #[error("UID2 service answered HTTP {http_status} ({status}){}", colon_then(.message))]
    Api {
        /// HTTP status code.
        http_status: u16,
        /// The `status` field of the JSON body, or empty when the body had none.
        status: String,
        /// The `message` field of the JSON body, or the body text.
        message: String,
    },
    /// The answer could not be opened with the client secret (or refresh response key), or did
    /// not echo the request's nonce.
    #[error("response envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The answer was larger than any honest answer (the limit in bytes).
    #[error("response larger than {0} bytes")]
    ResponseTooLarge(usize),
    /// The decrypted answer is not the JSON the endpoint defines.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
    /// A decrypted answer with a `status` the endpoint never gives on HTTP 200.
    #[error("unexpected response status {0:?}")]
    UnexpectedStatus(String),
}

impl Error {
    /// The UID2 status string of an [`Error::Api`] (e.g. `"expired_token"`), if any.
    pub fn api_status(&self) -> Option<&str> {
        match self {
            Self::Api { status, .. } if !status.is_empty() => Some(status),
            _ => None,
        }
    }

    pub(crate) fn malformed(what: impl std::fmt::Display) -> Self {
        Self::MalformedResponse(what.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `": message"`, or nothing for an empty message (a 401 has none).
fn colon_then(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

/// An error's text followed by each of its causes', `: `-separated, each once.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
