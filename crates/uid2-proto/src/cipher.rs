//! The AES constructions of the protocol, over aws-lc-rs.
//!
//! Every GCM box in UID2 is laid out `IV(12) ‖ ciphertext ‖ tag(16)` with a fresh random IV; the
//! legacy v2 token uses AES-256-CBC/PKCS#7 laid out `IV(16) ‖ ciphertext`; v4 raw UIDs use one
//! block of AES-256-CTR. [`GcmKey`] expands its key once, so a key held in a snapshot costs no key
//! schedule per call.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptingKey, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::digest;
use aws_lc_rs::iv::FixedLength;

/// Length of a GCM IV.
pub const GCM_IV_LEN: usize = 12;
/// Length of a GCM authentication tag.
pub const GCM_TAG_LEN: usize = 16;
/// Bytes a GCM box adds to its plaintext.
pub const GCM_OVERHEAD: usize = GCM_IV_LEN + GCM_TAG_LEN;
/// Length of a CBC IV.
pub const CBC_IV_LEN: usize = 16;

/// A box did not open: wrong key, tampered or truncated ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct OpenError;

/// An AES-256-GCM key, expanded once.
pub struct GcmKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcmKey(..)")
    }
}

impl GcmKey {
    /// Expands a 32-byte AES-256 key.
    pub fn new(secret: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, secret)
            .expect("a 32-byte key is always a valid AES-256-GCM key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Appends `IV ‖ GCM(plaintext) ‖ tag` to `out`.
    pub fn seal_into(&self, iv: [u8; GCM_IV_LEN], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(plaintext.len() + GCM_OVERHEAD);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0u8; GCM_TAG_LEN]);
        self.seal_in_place(&mut out[start..], aad);
    }

    /// Seals a box in place. `buf` must be laid out `IV ‖ plaintext ‖ 16 spare bytes`; the IV is
    /// read from its first 12 bytes and the tag written to its last 16.
    ///
    /// # Panics
    /// If `buf` is shorter than [`GCM_OVERHEAD`]: a caller bug, never input-dependent.
    pub fn seal_in_place(&self, buf: &mut [u8], aad: &[u8]) {
        assert!(buf.len() >= GCM_OVERHEAD, "GCM box buffer too short");
        let (iv, rest) = buf.split_at_mut(GCM_IV_LEN);
        let (body, tag_out) = rest.split_at_mut(rest.len() - GCM_TAG_LEN);
        let nonce = Nonce::assume_unique_for_key(iv.try_into().expect("12 bytes"));
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), body)
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        tag_out.copy_from_slice(tag.as_ref());
    }

    /// Opens `IV ‖ ciphertext ‖ tag` in place and returns the plaintext, which lies in
    /// `boxed[12 .. len - 16]`.
    pub fn open_in_place<'a>(
        &self,
        boxed: &'a mut [u8],
        aad: &[u8],
    ) -> Result<&'a mut [u8], OpenError> {
        if boxed.len() < GCM_OVERHEAD {
            return Err(OpenError);
        }
        let (iv, rest) = boxed.split_at_mut(GCM_IV_LEN);
        let nonce = Nonce::assume_unique_for_key(iv.try_into().expect("12 bytes"));
        self.key
            .open_in_place(nonce, Aad::from(aad), rest)
            .map_err(|_| OpenError)
    }

    /// Opens `IV ‖ ciphertext ‖ tag` into a new vector, leaving the input untouched.
    pub fn open(&self, boxed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut buf = boxed.to_vec();
        let len = self.open_in_place(&mut buf, aad)?.len();
        buf.copy_within(GCM_IV_LEN..GCM_IV_LEN + len, 0);
        buf.truncate(len);
        Ok(buf)
    }
}

/// An AES-256-CBC/PKCS#7 decryption key (legacy v2 tokens), expanded once.
pub struct CbcKey {
    key: PaddedBlockDecryptingKey,
}

impl std::fmt::Debug for CbcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CbcKey(..)")
    }
}

impl CbcKey {
    /// Expands a 32-byte AES-256 key.
    pub fn new(secret: &[u8; 32]) -> Self {
        let key = UnboundCipherKey::new(&AES_256, secret).expect("32-byte AES key");
        Self {
            key: PaddedBlockDecryptingKey::cbc_pkcs7(key).expect("CBC key"),
        }
    }

    /// Decrypts `IV(16) ‖ AES-256-CBC/PKCS#7 ciphertext` in place and returns the plaintext,
    /// without expanding the key again (and without allocating).
    pub fn open_in_place<'a>(&self, boxed: &'a mut [u8]) -> Result<&'a mut [u8], OpenError> {
        if boxed.len() < CBC_IV_LEN + 16 || !(boxed.len() - CBC_IV_LEN).is_multiple_of(16) {
            return Err(OpenError);
        }
        let (iv, body) = boxed.split_at_mut(CBC_IV_LEN);
        let iv: [u8; CBC_IV_LEN] = (&*iv).try_into().expect("16 bytes");
        self.key
            .decrypt(body, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| OpenError)
    }
}

/// Appends `IV(16) ‖ AES-256-CBC/PKCS#7(plaintext)` to `out`, as the legacy v2 token writer did.
pub fn cbc_seal_into(secret: &[u8; 32], iv: [u8; CBC_IV_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
    let key = UnboundCipherKey::new(&AES_256, secret).expect("32-byte AES key");
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(key).expect("CBC key");
    let mut body = plaintext.to_vec();
    key.less_safe_encrypt(&mut body, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("CBC encryption of an in-memory buffer cannot fail");
    out.extend_from_slice(&iv);
    out.extend_from_slice(&body);
}

/// Encrypts one 16-byte block with AES-256-CTR whose initial counter block is `counter`.
pub fn ctr_encrypt_block(secret: &[u8; 32], counter: [u8; 16], block: &mut [u8; 16]) {
    let key = UnboundCipherKey::new(&AES_256, secret).expect("32-byte AES key");
    let key = EncryptingKey::ctr(key).expect("CTR key");
    key.less_safe_encrypt(block, EncryptionContext::Iv128(FixedLength::from(counter)))
        .expect("CTR encryption of one block cannot fail");
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// SHA-512 of the concatenation of `parts`.
pub fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut ctx = digest::Context::new(&digest::SHA512);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-512 is 64 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper_detection() {
        let key = GcmKey::new(&[7u8; 32]);
        let mut boxed = Vec::new();
        key.seal_into([1u8; 12], b"aad", b"hello", &mut boxed);
        assert_eq!(boxed.len(), 5 + GCM_OVERHEAD);
        assert_eq!(key.open(&boxed, b"aad").unwrap(), b"hello");
        assert_eq!(key.open(&boxed, b"other"), Err(OpenError));
        let mut tampered = boxed.clone();
        tampered[14] ^= 1;
        assert_eq!(key.open(&tampered, b"aad"), Err(OpenError));
        assert_eq!(GcmKey::new(&[8u8; 32]).open(&boxed, b"aad"), Err(OpenError));
        assert_eq!(key.open(&boxed[..20], b"aad"), Err(OpenError));
    }

    #[test]
    fn cbc_round_trip_and_bad_lengths() {
        let secret = [9u8; 32];
        let mut boxed = Vec::new();
        cbc_seal_into(&secret, [3u8; 16], b"sixteen bytes!!!", &mut boxed);
        assert_eq!(boxed.len(), 16 + 32);
        let key = CbcKey::new(&secret);
        assert_eq!(
            key.open_in_place(&mut boxed.clone()).unwrap(),
            b"sixteen bytes!!!"
        );
        assert!(key.open_in_place(&mut boxed[..40].to_vec()).is_err());
        assert!(key.open_in_place(&mut [0u8; 10]).is_err());
        assert!(
            CbcKey::new(&[8u8; 32])
                .open_in_place(&mut boxed.clone())
                .is_err()
        );
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        assert_eq!(
            crate::encoding::hex_encode(&sha256(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
