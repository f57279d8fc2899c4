//! Identities: email normalisation, phone validation, identity hashes and pre-hashed input.
//!
//! Normalisation follows the official operator's code (`InputUtil`), not its documentation, so
//! that an email maps to the same identity hash, and therefore the same raw UID, as upstream.

use std::fmt;

use crate::cipher::sha256;
use crate::encoding::{base64_decode, base64_encode_into, hex_decode};

/// Email or phone: the kind of directly identifying information (DII) behind a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityType {
    /// An email address (type 0).
    Email = 0,
    /// A phone number in E.164 form (type 1).
    Phone = 1,
}

impl IdentityType {
    /// The 2-bit code used in header bytes.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type for a 2-bit code; codes other than 0 read as phone, as the SDKs read them.
    pub fn from_code(code: u8) -> Self {
        if code == 0 { Self::Email } else { Self::Phone }
    }
}

/// UID2 or EUID: which identity space an operator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityScope {
    /// Unified ID 2.0 (scope 0).
    Uid2 = 0,
    /// European Unified ID (scope 1).
    Euid = 1,
}

impl IdentityScope {
    /// The 1-bit code used in header bytes.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The scope for a 1-bit code.
    pub fn from_code(code: u8) -> Self {
        if code & 1 == 0 {
            Self::Uid2
        } else {
            Self::Euid
        }
    }

    /// The name used in JSON (`"UID2"` / `"EUID"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uid2 => "UID2",
            Self::Euid => "EUID",
        }
    }
}

/// Scope and identity type as a byte carries them, `scope << 4 | type << 2`: the header byte of
/// tokens and the first byte of v3 and v4 raw UIDs.
///
/// The codes are kept as written (a type code of 2 or 3 stays 2 or 3, although it reads as phone)
/// so that two bytes can be compared exactly, as the official operator compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityCodes {
    /// The 1-bit scope code (bit 4).
    pub scope: u8,
    /// The 2-bit identity type code (bits 2 and 3).
    pub identity_type: u8,
}

impl IdentityCodes {
    /// The codes of a header or raw-UID byte; the other bits are ignored.
    pub fn from_byte(b: u8) -> Self {
        Self {
            scope: (b & 0x10) >> 4,
            identity_type: (b & 0x0c) >> 2,
        }
    }

    /// The codes of a scope and type.
    pub fn of(scope: IdentityScope, identity_type: IdentityType) -> Self {
        Self {
            scope: scope.code(),
            identity_type: identity_type.code(),
        }
    }

    /// The scope.
    pub fn scope(self) -> IdentityScope {
        IdentityScope::from_code(self.scope)
    }

    /// The identity type, as the SDKs read it (any non-zero code is phone).
    pub fn identity_type(self) -> IdentityType {
        IdentityType::from_code(self.identity_type)
    }
}

/// Input that is not a valid email, phone number or identity hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The email address does not normalise (no `@`, two `@`, empty local part or domain).
    #[error("invalid email address")]
    InvalidEmail,
    /// The phone number is not `+` followed by 10 to 15 ASCII digits.
    #[error("phone number is not normalised (E.164: + and 10 to 15 digits)")]
    InvalidPhone,
    /// A hash that is neither 44 characters of base64 nor 64 hex digits.
    #[error("identity hash must be 44 characters of base64 or 64 hex digits")]
    InvalidHash,
}

/// Normalises an email address exactly as the official operator does.
///
/// Before the first `@` every space is dropped; only ASCII `A–Z` are lower-cased; after the `@`
/// trailing spaces go and interior ones stay; for exactly `gmail.com` the local part loses its
/// dots and everything from the first `+`. Returns `None` for a second `@`, an empty local part
/// or an empty domain.
pub fn normalize_email(email: &str) -> Option<String> {
    let (local, domain) = email.split_once('@')?;
    // After the `@` only trailing spaces go (other whitespace is an ordinary character).
    let domain = domain.trim_end_matches(' ');
    if domain.is_empty() || domain.contains('@') {
        return None;
    }
    let mut out = String::with_capacity(email.len());
    if domain.eq_ignore_ascii_case("gmail.com") {
        let kept = local.split('+').next().unwrap_or_default();
        out.extend(
            kept.chars()
                .filter(|&c| c != ' ' && c != '.')
                .map(|c| c.to_ascii_lowercase()),
        );
    } else {
        out.extend(
            local
                .chars()
                .filter(|&c| c != ' ')
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    if out.is_empty() {
        return None;
    }
    out.push('@');
    out.extend(domain.chars().map(|c| c.to_ascii_lowercase()));
    Some(out)
}

/// Whether `phone` is already in the E.164 form the protocol requires: `+` then 10 to 15 ASCII
/// digits and nothing else. Phone numbers are never normalised.
pub fn is_normalized_phone(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (10..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The identity hash as the protocol carries it: the 44-character base64 text of a SHA-256.
///
/// It is kept as text because the first-level hash is computed over this text: always the
/// canonical spelling of a 32-byte digest (see [`IdentityHash::parse`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityHash([u8; 44]);

impl IdentityHash {
    /// SHA-256 of an already-normalised email or phone number.
    pub fn of_normalized(normalized: &str) -> Self {
        let digest = sha256(&[normalized.as_bytes()]);
        Self::from_digest(&digest)
    }

    /// The hash whose SHA-256 digest is `digest`.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let mut text = String::with_capacity(44);
        base64_encode_into(digest, &mut text);
        let mut out = [0u8; 44];
        out.copy_from_slice(text.as_bytes());
        Self(out)
    }

    /// Parses pre-hashed input: 44 base64 characters or 64 hex digits of either case, either way
    /// a 32-byte SHA-256 digest, kept in its canonical base64 spelling.
    ///
    /// Stricter than the official operator, which keeps any 44 characters its lenient decoder
    /// accepts as sent (31 or 33 bytes, or unused low bits set): there the same digest spelled
    /// another way (`…kA=` and `…kB=`, or `…k=` made `…kA`) has another first-level hash, and so
    /// escapes its owner's opt-out. A SHA-256 digest has one canonical spelling, which is what
    /// every SDK sends, so only such respellings are refused.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        match text.len() {
            44 => {
                let digest: [u8; 32] = base64_decode(text)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or(IdentityError::InvalidHash)?;
                Ok(Self::from_digest(&digest))
            }
            64 => {
                let digest = hex_decode::<32>(text).map_err(|_| IdentityError::InvalidHash)?;
                Ok(Self::from_digest(&digest))
            }
            _ => Err(IdentityError::InvalidHash),
        }
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("identity hashes are ASCII")
    }

    /// The base64 text as bytes.
    pub fn as_bytes(&self) -> &[u8; 44] {
        &self.0
    }
}

impl fmt::Debug for IdentityHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityHash({})", self.as_str())
    }
}

impl fmt::Display for IdentityHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hashed identity of a known type: what every endpoint works from once input is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashedIdentity {
    /// Email or phone.
    pub identity_type: IdentityType,
    /// The identity hash.
    pub hash: IdentityHash,
}

impl HashedIdentity {
    /// Normalises and hashes an email address.
    pub fn from_email(email: &str) -> Result<Self, IdentityError> {
        let normalized = normalize_email(email).ok_or(IdentityError::InvalidEmail)?;
        Ok(Self {
            identity_type: IdentityType::Email,
            hash: IdentityHash::of_normalized(&normalized),
        })
    }

    /// Validates and hashes a phone number.
    pub fn from_phone(phone: &str) -> Result<Self, IdentityError> {
        if !is_normalized_phone(phone) {
            return Err(IdentityError::InvalidPhone);
        }
        Ok(Self {
            identity_type: IdentityType::Phone,
            hash: IdentityHash::of_normalized(phone),
        })
    }

    /// Accepts a pre-hashed identity of the given type.
    pub fn from_hash(identity_type: IdentityType, hash: &str) -> Result<Self, IdentityError> {
        Ok(Self {
            identity_type,
            hash: IdentityHash::parse(hash)?,
        })
    }

    /// Parses one of the four request fields (`email`, `email_hash`, `phone`, `phone_hash`).
    pub fn from_field(field: IdentityField, value: &str) -> Result<Self, IdentityError> {
        match field {
            IdentityField::Email => Self::from_email(value),
            IdentityField::EmailHash => Self::from_hash(IdentityType::Email, value),
            IdentityField::Phone => Self::from_phone(value),
            IdentityField::PhoneHash => Self::from_hash(IdentityType::Phone, value),
        }
    }
}

/// The four ways a request names an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// `email`: a raw email address, normalised by the operator.
    Email,
    /// `email_hash`: the base64 (or hex) SHA-256 of a normalised email.
    EmailHash,
    /// `phone`: an E.164 phone number.
    Phone,
    /// `phone_hash`: the base64 (or hex) SHA-256 of a phone number.
    PhoneHash,
}

impl IdentityField {
    /// All four, in the order the protocol lists them.
    pub const ALL: [IdentityField; 4] =
        [Self::Email, Self::EmailHash, Self::Phone, Self::PhoneHash];

    /// The JSON field name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::EmailHash => "email_hash",
            Self::Phone => "phone",
            Self::PhoneHash => "phone_hash",
        }
    }

    /// The identity type the field carries.
    pub fn identity_type(self) -> IdentityType {
        match self {
            Self::Email | Self::EmailHash => IdentityType::Email,
            Self::Phone | Self::PhoneHash => IdentityType::Phone,
        }
    }

    /// The field for a JSON name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_normalisation_table() {
        let cases = [
            ("a b@x.com", Some("ab@x.com")),
            (" a b @x.com", Some("ab@x.com")),
            ("a@ b.com", Some("a@ b.com")),
            ("a@b .com ", Some("a@b .com")),
            ("a@b.com\t", Some("a@b.com\t")),
            ("ÄB@x.com", Some("Äb@x.com")),
            ("a..b@x.com", Some("a..b@x.com")),
            ("A.B+C@gmail.com", Some("ab@gmail.com")),
            ("A.B+C@googlemail.com", Some("a.b+c@googlemail.com")),
            ("a+b.c@gmail.com", Some("a@gmail.com")),
            ("+foo@x.com", Some("+foo@x.com")),
            ("a.b@gmail.com.", Some("a.b@gmail.com.")),
            ("+foo@gmail.com", None),
            (".@gmail.com", None),
            ("a@b@c.com", None),
            ("a@", None),
            ("@b", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_email(input).as_deref(),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn hashed_input_forms() {
        let b64 = "lz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTs=";
        assert_eq!(IdentityHash::parse(b64).unwrap().as_str(), b64);
        let hex = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        assert_eq!(IdentityHash::parse(hex).unwrap().as_str(), b64);
        assert_eq!(
            IdentityHash::parse(&hex.to_uppercase()).unwrap().as_str(),
            b64
        );
        // The digest spelled with unused low bits set is the same digest: one first-level hash,
        // so an opt-out of one spelling covers the other.
        assert_eq!(
            IdentityHash::parse("lz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTt=")
                .unwrap()
                .as_str(),
            b64
        );
        for bad in [
            // 44 characters that decode to 31 or 33 bytes: no SHA-256 digest, and a way to
            // respell one (the official operator accepts them).
            "lz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgT==",
            "lz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTsA",
            "lz3+Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTs",
            "lz3-Rj7IV4X1+Vr1ujkG7tstkxwk5pgkqJ6mXbpOgTs=",
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e698a4a89ea65dba4e813",
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e698a4a89ea65dba4e813g",
            "",
        ] {
            assert_eq!(
                IdentityHash::parse(bad),
                Err(IdentityError::InvalidHash),
                "{bad}"
            );
        }
    }

    #[test]
    fn field_names_round_trip() {
        for field in IdentityField::ALL {
            assert_eq!(IdentityField::from_name(field.name()), Some(field));
        }
        assert_eq!(IdentityField::from_name("emails"), None);
    }
}
