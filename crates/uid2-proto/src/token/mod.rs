//! Tokens: advertising tokens (decode v2/v3/v4, encode v3/v4) and refresh tokens (v3, and v2
//! decode), plus the pieces both carry: the identity header byte, privacy bits and the operator
//! and publisher identities.
//!
//! The operator issues v4 advertising tokens and v3 refresh tokens; everything older is decoded
//! only, because tokens minted by older operators are still in circulation.

pub mod advertising;
pub mod refresh;

pub use advertising::{AdvertisingToken, AdvertisingTokenV2, DecodedAdvertisingToken};
pub use refresh::RefreshToken;

use crate::codec::{Reader, Writer};
use crate::identity::{IdentityCodes, IdentityScope, IdentityType};

/// Token format versions (the version byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenVersion {
    /// Legacy AES-CBC token (first byte 2).
    V2 = 2,
    /// AES-GCM token in standard base64 (version byte 112).
    V3 = 112,
    /// AES-GCM token in unpadded base64url (version byte 128): what operators issue today.
    V4 = 128,
}

/// A token that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not valid token text or bytes: bad base64, truncated, wrong lengths.
    #[error("malformed token")]
    Malformed,
    /// A version byte this implementation does not know.
    #[error("unsupported token version")]
    UnsupportedVersion,
    /// The key that encrypted the outer layer is not known (for refresh tokens: the refresh key).
    #[error("unknown master key {0}")]
    UnknownMasterKey(u32),
    /// The key that encrypted the inner (site) layer is not known.
    #[error("unknown site key {0}")]
    UnknownSiteKey(u32),
    /// A layer did not authenticate: wrong key or tampered token.
    #[error("token does not decrypt")]
    DecryptionFailed,
    /// The token expired before `now`.
    #[error("token expired at {expires_ms}")]
    Expired {
        /// When it expired (ms).
        expires_ms: i64,
    },
    /// The identity scope/type inside the token disagrees with its header byte.
    #[error("identity scope/type mismatch")]
    IdentityMismatch,
}

/// The identity header byte: `(scope << 4) | (type << 2) | 3`.
///
/// Decoders ignore the low two bits (the Java SDK's test tokens have them clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityHeader {
    /// UID2 or EUID.
    pub scope: IdentityScope,
    /// Email or phone.
    pub identity_type: IdentityType,
}

impl IdentityHeader {
    /// The header byte.
    pub fn to_byte(self) -> u8 {
        (self.scope.code() << 4) | (self.identity_type.code() << 2) | 3
    }

    /// Reads a header byte.
    pub fn from_byte(b: u8) -> Self {
        let codes = IdentityCodes::from_byte(b);
        Self {
            scope: codes.scope(),
            identity_type: codes.identity_type(),
        }
    }

    /// The codes of the header byte.
    pub fn codes(self) -> IdentityCodes {
        IdentityCodes::of(self.scope, self.identity_type)
    }
}

/// The privacy bits of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PrivacyBits(pub u32);

impl PrivacyBits {
    /// Bit 0, set on every token generated since the bits were introduced.
    pub const LEGACY: u32 = 1;
    /// Bit 1: generated client-side (CSTG); SDKs check the page domain of such tokens.
    pub const CLIENT_SIDE_GENERATED: u32 = 1 << 1;
    /// Bit 2: historic CSTG opt-out marker.
    pub const CSTG_OPTOUT: u32 = 1 << 2;

    /// What `/v2/token/generate` writes.
    pub const SERVER_SIDE: PrivacyBits = PrivacyBits(Self::LEGACY);
    /// What `/v2/token/client-generate` writes.
    pub const CLIENT_SIDE: PrivacyBits = PrivacyBits(Self::LEGACY | Self::CLIENT_SIDE_GENERATED);

    /// Whether the token was generated client-side.
    pub fn is_client_side_generated(self) -> bool {
        self.0 & Self::CLIENT_SIDE_GENERATED != 0
    }
}

/// Which operator minted a token (13 bytes in the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperatorIdentity {
    /// Operator site id (0 for every public operator).
    pub site_id: i32,
    /// Operator type (1 = service).
    pub operator_type: u8,
    /// Operator version (0).
    pub version: i32,
    /// Operator key id (0).
    pub key_id: i32,
}

impl Default for OperatorIdentity {
    /// What every official operator writes: `(0, Service, 0, 0)`.
    fn default() -> Self {
        Self {
            site_id: 0,
            operator_type: 1,
            version: 0,
            key_id: 0,
        }
    }
}

impl OperatorIdentity {
    const LEN: usize = 13;

    fn write(&self, w: &mut Writer<'_>) {
        w.i32(self.site_id)
            .u8(self.operator_type)
            .i32(self.version)
            .i32(self.key_id);
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            site_id: r.i32()?,
            operator_type: r.u8()?,
            version: r.i32()?,
            key_id: r.i32()?,
        })
    }
}

/// Which publisher a token was minted for (16 bytes in the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PublisherIdentity {
    /// The publisher's site id.
    pub site_id: i32,
    /// Publisher id (0).
    pub publisher_id: i64,
    /// Client key id (0).
    pub client_key_id: i32,
}

impl PublisherIdentity {
    const LEN: usize = 16;

    /// A publisher identity for `site_id`, as operators write it.
    pub fn for_site(site_id: i32) -> Self {
        Self {
            site_id,
            publisher_id: 0,
            client_key_id: 0,
        }
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.i32(self.site_id)
            .i64(self.publisher_id)
            .i32(self.client_key_id);
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            site_id: r.i32()?,
            publisher_id: r.i64()?,
            client_key_id: r.i32()?,
        })
    }
}

/// What the first bytes of a token say without any key: its version, its header and the id of
/// the key of its outer layer. `uid2 token inspect` shows it, and the SDK reads it to name the
/// failure of a token that did not decode (a wrong identity scope wins over every later check);
/// decoders read the same bytes themselves on the way to the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPrefix {
    /// The token version.
    pub version: TokenVersion,
    /// Scope and identity type (v3 and v4 only: v2 tokens have no header byte).
    pub identity: Option<IdentityHeader>,
    /// Id of the key of the outer layer: the master key of an advertising token, the refresh
    /// key of a v3 refresh token.
    pub key_id: u32,
}

impl TokenPrefix {
    /// Reads the prefix of an advertising token (v2, v3, v4) or of a v3 refresh token from its
    /// first eight characters.
    pub fn read(text: &str) -> Result<Self, TokenError> {
        let first = sniff_prefix(text)?;
        let head = text.get(..8).ok_or(TokenError::Malformed)?;
        let mut bytes = [0u8; 6];
        let n = if head.contains(['-', '_']) {
            crate::encoding::base64url_decode_into(head, &mut bytes)
        } else {
            crate::encoding::base64_decode_into(head, &mut bytes)
        }
        .map_err(|_| TokenError::Malformed)?;
        if n != bytes.len() {
            return Err(TokenError::Malformed);
        }
        let key_id_at =
            |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if first[0] == 2 {
            return Ok(Self {
                version: TokenVersion::V2,
                identity: None,
                key_id: key_id_at(1),
            });
        }
        let version = match first[1] {
            112 => TokenVersion::V3,
            128 => TokenVersion::V4,
            _ => return Err(TokenError::UnsupportedVersion),
        };
        Ok(Self {
            version,
            identity: Some(IdentityHeader::from_byte(first[0])),
            key_id: key_id_at(2),
        })
    }
}

/// Reads the first three bytes of a token from its first four characters, choosing base64url
/// when they contain `-` or `_`, as every official decoder does.
///
/// Four characters without padding are exactly three bytes, so this is a plain table lookup (the
/// same acceptance as decoding them with the base64 decoders: any character outside the chosen
/// alphabet, padding included, is malformed).
pub(crate) fn sniff_prefix(text: &str) -> Result<[u8; 3], TokenError> {
    let head: &[u8; 4] = text
        .as_bytes()
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(TokenError::Malformed)?;
    let url = head.iter().any(|&c| c == b'-' || c == b'_');
    let mut v = 0u32;
    for &c in head {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' if !url => 62,
            b'/' if !url => 63,
            b'-' if url => 62,
            b'_' if url => 63,
            _ => return Err(TokenError::Malformed),
        };
        v = (v << 6) | u32::from(sextet);
    }
    let [_, a, b, c] = v.to_be_bytes();
    Ok([a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_read_without_keys() {
        use crate::encoding::{base64_encode, base64url_encode};
        let v4 = base64url_encode(&[0x13, 128, 0, 0, 0x30, 0x39, 0xff, 0xfe]);
        assert_eq!(
            TokenPrefix::read(&v4),
            Ok(TokenPrefix {
                version: TokenVersion::V4,
                identity: Some(IdentityHeader {
                    scope: IdentityScope::Euid,
                    identity_type: IdentityType::Email,
                }),
                key_id: 12_345,
            })
        );
        let v3 = base64_encode(&[0x07, 112, 0, 0, 0, 7, 1, 2, 3]);
        let read = TokenPrefix::read(&v3).unwrap();
        assert_eq!(read.version, TokenVersion::V3);
        assert_eq!(read.identity.unwrap().identity_type, IdentityType::Phone);
        assert_eq!(read.key_id, 7);
        let v2 = base64_encode(&[2, 0, 0, 1, 0, 9, 9, 9, 9]);
        assert_eq!(
            TokenPrefix::read(&v2),
            Ok(TokenPrefix {
                version: TokenVersion::V2,
                identity: None,
                key_id: 256,
            })
        );
        let unknown = base64_encode(&[3, 99, 0, 0, 0, 1]);
        assert_eq!(
            TokenPrefix::read(&unknown),
            Err(TokenError::UnsupportedVersion)
        );
        for bad in ["", "A4AA", "A4AAAA", "A4AA!AAA", "é4AAAAAA"] {
            assert_eq!(TokenPrefix::read(bad), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn header_bytes_give_the_familiar_prefixes() {
        let cases = [
            (IdentityScope::Uid2, IdentityType::Email, 0x03),
            (IdentityScope::Uid2, IdentityType::Phone, 0x07),
            (IdentityScope::Euid, IdentityType::Email, 0x13),
            (IdentityScope::Euid, IdentityType::Phone, 0x17),
        ];
        for (scope, identity_type, byte) in cases {
            let header = IdentityHeader {
                scope,
                identity_type,
            };
            assert_eq!(header.to_byte(), byte);
            assert_eq!(IdentityHeader::from_byte(byte), header);
            assert_eq!(IdentityHeader::from_byte(byte & !3), header);
        }
    }

    #[test]
    fn sniffing_needs_four_characters() {
        assert_eq!(sniff_prefix("AIA"), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("A4AA").unwrap()[1], 128);
        assert_eq!(sniff_prefix("A3AA").unwrap()[1], 112);
        assert_eq!(sniff_prefix("é"), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("éAA"), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("AA=="), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("A-+A"), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("A/_A"), Err(TokenError::Malformed));
        assert_eq!(sniff_prefix("_-CI").unwrap(), [0xff, 0xe0, 0x88]);
        assert_eq!(sniff_prefix("/+CI").unwrap(), [0xff, 0xe0, 0x88]);
        // Every 4-character prefix decodes as the general base64 decoders decode it.
        for text in [
            "AIAA", "A4AA", "Ag==", "AgAA", "zz9_", "+/+/", "-_-_", "Ah+B", "a-b_",
        ] {
            let mut out = [0u8; 3];
            let general = if text.contains(['-', '_']) {
                crate::encoding::base64url_decode_into(text, &mut out)
            } else {
                crate::encoding::base64_decode_into(text, &mut out)
            };
            match general {
                Ok(3) => assert_eq!(sniff_prefix(text), Ok(out), "{text}"),
                _ => assert_eq!(sniff_prefix(text), Err(TokenError::Malformed), "{text}"),
            }
        }
    }
}
