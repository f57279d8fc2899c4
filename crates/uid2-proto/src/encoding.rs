//! The text encodings the protocol uses: base64 as Java writes and reads it, unpadded base64url
//! for v4 advertising tokens, and hex for pre-hashed input.
//!
//! Inbound base64 is decoded the way `java.util.Base64.getDecoder()` does, because that is what the
//! official operator accepts: strict alphabet, padding optional but correct when present, and
//! non-zero trailing bits tolerated (e.g. a 44-character hash ending in `t=`).
//!
//! Canonical text, which is everything an operator or SDK writes, goes through a SIMD codec
//! (tokens are encoded and decoded on every request, so this is measurable); only text the SIMD
//! codec rejects falls back to the lenient scalar decoder, so the accepted set is Java's.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const JAVA_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

const URL_SAFE_UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Text that is not valid in the encoding it was expected in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0} text")]
pub struct DecodeError(&'static str);

/// Standard base64 with padding, as `java.util.Base64.getEncoder()` writes it.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Appends standard padded base64 of `bytes` to `out`.
pub fn base64_encode_into(bytes: &[u8], out: &mut String) {
    base64_simd::STANDARD.encode_append(bytes, out);
}

/// Decodes standard base64 the way the official operator does (see the module comment).
pub fn base64_decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    let text = text.as_ref();
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(text) {
        return Ok(bytes);
    }
    check_padding(text)?;
    JAVA_STANDARD
        .decode(text)
        .map_err(|_| DecodeError("base64"))
}

/// Java accepts missing padding but, when `=` is present, only a whole final quantum.
fn check_padding(text: &[u8]) -> Result<(), DecodeError> {
    if text.last() == Some(&b'=') && !text.len().is_multiple_of(4) {
        return Err(DecodeError("base64"));
    }
    Ok(())
}

/// The SIMD fast path for canonical text; `None` sends the caller to the lenient decoder.
fn simd_decode_into(engine: &base64_simd::Base64, text: &[u8], out: &mut [u8]) -> Option<usize> {
    // The SIMD decoder panics on a short output buffer, so it only runs when the upper bound fits.
    if engine.estimated_decoded_length(text.len()) > out.len() {
        return None;
    }
    engine
        .decode(text, base64_simd::Out::from_slice(out))
        .ok()
        .map(|decoded| decoded.len())
}

/// Decodes standard base64 into `out`, returning the number of bytes written.
///
/// Fails (instead of panicking) when `out` is too small for the decoded bytes.
pub fn base64_decode_into(text: impl AsRef<[u8]>, out: &mut [u8]) -> Result<usize, DecodeError> {
    let text = text.as_ref();
    if let Some(n) = simd_decode_into(&base64_simd::STANDARD, text, out) {
        return Ok(n);
    }
    check_padding(text)?;
    JAVA_STANDARD
        .decode_slice(text, out)
        .map_err(|_| DecodeError("base64"))
}

/// Decodes standard base64 of exactly `N` bytes (a key, an IV), as the official operator decodes
/// base64 (see the module comment); any other length is an error.
pub fn base64_decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Result<[u8; N], DecodeError> {
    let mut out = [0u8; N];
    // The SIMD path wants room for its estimate (up to 2 bytes over N for padded text), so small
    // arrays are decoded through a wider buffer; `base64_decode_into` refuses text that decodes
    // to more than the buffer holds.
    let mut wide = [0u8; 64];
    let n = if N + 2 <= wide.len() {
        let n = base64_decode_into(text, &mut wide)?;
        if n == N {
            out.copy_from_slice(&wide[..N]);
        }
        n
    } else {
        base64_decode_into(text, &mut out)?
    };
    if n == N {
        Ok(out)
    } else {
        Err(DecodeError("base64"))
    }
}

/// URL-safe base64 without padding, as v4 advertising tokens are written.
pub fn base64url_encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Decodes URL-safe base64, padded or not.
pub fn base64url_decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_UNPADDED
        .decode(text)
        .map_err(|_| DecodeError("base64url"))
}

/// Decodes URL-safe base64 (padded or not) into `out`, returning the number of bytes written.
pub fn base64url_decode_into(text: impl AsRef<[u8]>, out: &mut [u8]) -> Result<usize, DecodeError> {
    let text = text.as_ref();
    if let Some(n) = simd_decode_into(&base64_simd::URL_SAFE_NO_PAD, text, out) {
        return Ok(n);
    }
    URL_SAFE_UNPADDED
        .decode_slice(text, out)
        .map_err(|_| DecodeError("base64url"))
}

/// Whether `text` decodes as URL-safe base64 (padded or not), without keeping the bytes: for
/// segments that must be well-formed but are never read, checked without allocating.
pub fn is_base64url(text: impl AsRef<[u8]>) -> bool {
    // Decoded a block at a time into a stack buffer. A block of whole 4-character quanta decodes
    // on its own exactly as it does within the text, except that padding is only valid at the
    // very end, so an `=` in any block but the last makes the text invalid.
    const BLOCK_CHARS: usize = 256;
    let mut scratch = [0u8; BLOCK_CHARS / 4 * 3];
    let mut blocks = text.as_ref().chunks(BLOCK_CHARS).peekable();
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        if (!last && block.contains(&b'='))
            || URL_SAFE_UNPADDED.decode_slice(block, &mut scratch).is_err()
        {
            return false;
        }
    }
    true
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Decodes hex of either case into exactly `N` bytes.
pub fn hex_decode<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return Err(DecodeError("hex"));
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(DecodeError("hex"))?;
        let lo = nibble(pair[1]).ok_or(DecodeError("hex"))?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_what_java_accepts() {
        // Unpadded and non-canonical trailing bits both decode, as with Base64.getDecoder().
        assert_eq!(base64_decode("QQ").unwrap(), b"A");
        assert_eq!(base64_decode("QQ==").unwrap(), b"A");
        assert_eq!(base64_decode("QR==").unwrap(), b"A");
        assert!(base64_decode("QQ=").is_err());
        assert!(base64_decode("Q-==").is_err());
        assert!(base64_decode("QQ== ").is_err());
    }

    #[test]
    fn base64url_round_trips_without_padding() {
        let bytes = [0xff, 0xe0, 0x88, 0xff, 0xee, 0x99, 0x99];
        assert_eq!(base64url_encode(&bytes), "_-CI_-6ZmQ");
        assert_eq!(base64url_decode("_-CI_-6ZmQ").unwrap(), bytes);
        assert_eq!(base64url_decode("_-CI_-6ZmQ==").unwrap(), bytes);
    }

    #[test]
    fn hex_is_case_insensitive_and_length_checked() {
        assert_eq!(hex_decode::<2>("aBcD").unwrap(), [0xab, 0xcd]);
        assert!(hex_decode::<2>("abc").is_err());
        assert!(hex_decode::<2>("abcg").is_err());
        assert_eq!(hex_encode(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn arrays_decode_only_at_their_exact_length() {
        let key = [7u8; 32];
        let text = base64_encode(&key);
        assert_eq!(base64_decode_array::<32>(&text), Ok(key));
        assert_eq!(
            base64_decode_array::<32>(text.trim_end_matches('=')),
            Ok(key)
        );
        assert!(base64_decode_array::<32>(base64_encode(&[7u8; 31])).is_err());
        assert!(base64_decode_array::<32>(base64_encode(&[7u8; 33])).is_err());
        assert!(base64_decode_array::<32>(base64_encode(&[7u8; 64])).is_err());
        assert!(base64_decode_array::<32>("not base64!").is_err());
        assert_eq!(base64_decode_array::<1>("QR=="), Ok([b'A']));
        assert_eq!(
            base64_decode_array::<12>(base64_encode(&[1u8; 12])),
            Ok([1u8; 12])
        );
    }

    #[test]
    fn base64url_validation_agrees_with_decoding() {
        // Every string of up to five characters over an alphabet with the awkward cases, alone
        // and behind a block boundary of the validator.
        let alphabet = ["A", "Q", "-", "_", "=", "+", "."];
        let mut texts = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.len() == texts.last().map_or(0, String::len))
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(longer);
        }
        for prefix in ["", &"AbC-".repeat(64), &"AbC-".repeat(63)] {
            for text in &texts {
                let text = format!("{prefix}{text}");
                assert_eq!(
                    is_base64url(&text),
                    base64url_decode(&text).is_ok(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn decode_into_a_short_buffer_fails_without_panicking() {
        let mut out = [0u8; 2];
        assert!(base64_decode_into("QUJDRA==", &mut out).is_err());
        assert!(base64url_decode_into("QUJDRA", &mut out).is_err());
    }
}
