//! Reading identities out of a request's JSON object (or v1 query parameters): the one identity
//! of generate, validate and logout, the identity lists of the v2 map, and the EUID consent
//! string, with the official operator's answer to each kind of missing or mistyped field.

use serde_json::{Map, Value};
use uid2_proto::identity::{HashedIdentity, IdentityField};

use super::ApiError;

/// The answer to a request with none, or more than one, of the identity fields.
pub(crate) const MISSING_IDENTITY: &str = "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified";

/// Why a request's identity fields are unusable.
pub(crate) enum IdentityInputError {
    /// None, or more than one, of the four fields.
    Missing,
    /// The one field is not a valid email, phone or hash (or not a string).
    Invalid,
}

/// The one identity of a request object (`email`, `email_hash`, `phone` or `phone_hash`); a
/// `null` field counts as absent.
pub(crate) fn single_identity(
    fields: &Map<String, Value>,
) -> Result<HashedIdentity, IdentityInputError> {
    let mut present = IdentityField::ALL.into_iter().filter_map(|f| {
        fields
            .get(f.name())
            .filter(|v| !v.is_null())
            .map(|v| (f, v))
    });
    let (field, value) = present.next().ok_or(IdentityInputError::Missing)?;
    if present.next().is_some() {
        return Err(IdentityInputError::Missing);
    }
    let value = value.as_str().ok_or(IdentityInputError::Invalid)?;
    HashedIdentity::from_field(field, value).map_err(|_| IdentityInputError::Invalid)
}

/// The generate-style answer to an identity input error.
pub(crate) fn identity_error(e: IdentityInputError) -> ApiError {
    match e {
        IdentityInputError::Missing => ApiError::client_error(MISSING_IDENTITY),
        IdentityInputError::Invalid => ApiError::client_error("Invalid Identifier"),
    }
}

/// The one non-empty identity list of a v2 map request (`email`, `email_hash`, …). Keys present
/// with only empty lists map nothing (an empty email list); no key at all is a client error. A
/// `null` list counts as absent, as the official operator's `getJsonArray` reads it.
pub(crate) fn v2_map_input(
    fields: &Map<String, Value>,
) -> Result<(IdentityField, Vec<String>), ApiError> {
    map_input(fields, MISSING_IDENTITY)
}

/// [`v2_map_input`] for the legacy `POST /v1/identity/map`, which words a missing or doubled
/// list as the official v1 endpoint did (`getIdentityBulkInputV1`).
pub(crate) fn v1_map_input(
    fields: &Map<String, Value>,
) -> Result<(IdentityField, Vec<String>), ApiError> {
    map_input(
        fields,
        "Exactly one of [email, email_hash, phone, phone_hash] must be specified",
    )
}

fn map_input(
    fields: &Map<String, Value>,
    missing: &'static str,
) -> Result<(IdentityField, Vec<String>), ApiError> {
    let mut present = 0;
    let mut chosen: Option<(IdentityField, Vec<String>)> = None;
    for field in IdentityField::ALL {
        let Some(value) = fields.get(field.name()).filter(|v| !v.is_null()) else {
            continue;
        };
        present += 1;
        let list = value
            .as_array()
            .ok_or_else(|| ApiError::client_error(format!("{} must be an array", field.name())))?;
        let items: Vec<String> = list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ApiError::client_error(format!("{} must be an array of strings", field.name()))
            })?;
        if items.is_empty() {
            continue;
        }
        if chosen.is_some() {
            return Err(ApiError::client_error(missing));
        }
        chosen = Some((field, items));
    }
    match (present, chosen) {
        (0, _) => Err(ApiError::client_error(missing)),
        (_, Some(c)) => Ok(c),
        (_, None) => Ok((IdentityField::Email, Vec::new())),
    }
}

/// `tcf_consent_string` if the field was sent. A `null` or non-string value was sent but holds
/// no consent string, so it reads as empty (which no parser accepts), as in the official operator.
pub(crate) fn tcf_consent_string(fields: &Map<String, Value>) -> Option<&str> {
    fields
        .get("tcf_consent_string")
        .map(|v| v.as_str().unwrap_or_default())
}
