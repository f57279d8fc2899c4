//! Client-side token generation (CSTG): a browser or app asks for a token itself, without the
//! publisher's API key, by encrypting a hashed identity to the operator.
//!
//! The client makes an ephemeral P-256 key pair, derives the ECDH shared secret with the
//! operator's key pair of the publisher's subscription (the 32-byte X coordinate, used directly
//! as the AES-256-GCM key, no KDF), and encrypts `{"email_hash": …}` or `{"phone_hash": …}` with
//! AAD = the JSON text `[timestamp]` (or `[timestamp,"app_name"]`). The operator answers with
//! `GCM(shared secret, JSON)`. Public keys travel as base64 X.509 SubjectPublicKeyInfo; the
//! operator's is handed to publishers behind a 9-character prefix such as `UID2-X-L-`.

use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use rand_core::CryptoRng;

use crate::cipher::{GCM_IV_LEN, GCM_TAG_LEN, GcmKey};
use crate::encoding::{base64_decode, base64_encode};
use crate::wire::CstgRequest;

/// Length of the text prefix of CSTG keys (`UID2-X-L-`, `UID2-Y-P-`, …).
pub const KEY_PREFIX_LEN: usize = 9;

/// A CSTG input that cannot be processed, with the official operator's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CstgError {
    /// The public key is not base64 of a P-256 SubjectPublicKeyInfo.
    #[error("bad public key")]
    BadPublicKey,
    /// The IV is not base64 of 12 bytes.
    #[error("bad iv")]
    BadIv,
    /// The payload is not base64 or does not authenticate under the shared secret and AAD.
    #[error("payload decryption failed")]
    DecryptionFailed,
    /// A private key that is not a P-256 key in PKCS#8 (or a scalar out of range).
    #[error("bad private key")]
    BadPrivateKey,
}

/// A P-256 key pair: the operator's pair for one CSTG subscription, or a client's ephemeral one.
pub struct CstgKeyPair {
    private: PrivateKey,
    public_spki: Vec<u8>,
}

impl std::fmt::Debug for CstgKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CstgKeyPair({})", base64_encode(&self.public_spki))
    }
}

impl CstgKeyPair {
    /// Generates a key pair from `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        loop {
            let mut scalar = [0u8; 32];
            rng.fill_bytes(&mut scalar);
            // Scalars ≥ the group order (probability ≈ 2^-32) are rejected; draw again.
            if let Ok(pair) = Self::from_scalar(&scalar) {
                return pair;
            }
        }
    }

    /// A key pair from its private scalar (32 bytes, big-endian).
    pub fn from_scalar(scalar: &[u8; 32]) -> Result<Self, CstgError> {
        let private = PrivateKey::from_private_key(&ECDH_P256, scalar)
            .map_err(|_| CstgError::BadPrivateKey)?;
        Self::from_private(private)
    }

    /// A key pair from a PKCS#8 DER private key (the form after the `UID2-Y-?-` prefix).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CstgError> {
        let private = PrivateKey::from_private_key_der(&ECDH_P256, der)
            .map_err(|_| CstgError::BadPrivateKey)?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateKey) -> Result<Self, CstgError> {
        let public = private
            .compute_public_key()
            .map_err(|_| CstgError::BadPrivateKey)?;
        let spki: PublicKeyX509Der<'static> =
            public.as_der().map_err(|_| CstgError::BadPrivateKey)?;
        Ok(Self {
            public_spki: spki.as_ref().to_vec(),
            private,
        })
    }

    /// The private key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let der: Pkcs8V1Der<'static> = self.private.as_der().expect("P-256 keys serialise");
        der.as_ref().to_vec()
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_spki
    }

    /// The public key as publishers receive it: `prefix` (e.g. `UID2-X-L-`) + base64 SPKI.
    pub fn public_key_text(&self, prefix: &str) -> String {
        format!("{prefix}{}", base64_encode(&self.public_spki))
    }

    /// The private key in the store's text form: `prefix` (e.g. `UID2-Y-L-`) + base64 PKCS#8.
    pub fn private_key_text(&self, prefix: &str) -> String {
        format!("{prefix}{}", base64_encode(&self.to_pkcs8_der()))
    }

    /// The ECDH shared secret with a client public key given as SPKI DER.
    pub fn shared_secret(&self, client_public_spki: &[u8]) -> Result<[u8; 32], CstgError> {
        ecdh(&self.private, client_public_spki)
    }
}

fn ecdh(private: &PrivateKey, peer_spki: &[u8]) -> Result<[u8; 32], CstgError> {
    let peer = UnparsedPublicKey::new(&ECDH_P256, peer_spki);
    agreement::agree(private, peer, CstgError::BadPublicKey, |secret| {
        secret.try_into().map_err(|_| CstgError::BadPublicKey)
    })
}

/// Strips the 9-character prefix from a key's text form and decodes the base64 rest.
pub fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    base64_decode(text.get(KEY_PREFIX_LEN..)?).ok()
}

/// The AAD of a CSTG payload: `[timestamp]` or `[timestamp,"app_name"]`, compact JSON.
pub fn aad(timestamp_ms: i64, app_name: Option<&str>) -> String {
    match app_name {
        None => format!("[{timestamp_ms}]"),
        Some(name) => format!(
            "[{timestamp_ms},{}]",
            serde_json::to_string(name).expect("strings serialise")
        ),
    }
}

/// Opens the encrypted payload of a CSTG request (`iv` and `payload` as sent, base64) with the
/// shared secret. Returns the plaintext JSON bytes.
pub fn open_payload(shared: &[u8; 32], request: &CstgRequest) -> Result<Vec<u8>, CstgError> {
    let iv = base64_decode(&request.iv).map_err(|_| CstgError::BadIv)?;
    if iv.len() != GCM_IV_LEN {
        return Err(CstgError::BadIv);
    }
    let payload = base64_decode(&request.payload).map_err(|_| CstgError::DecryptionFailed)?;
    if payload.len() < GCM_TAG_LEN {
        return Err(CstgError::DecryptionFailed);
    }
    let mut boxed = iv;
    boxed.extend_from_slice(&payload);
    let aad = aad(request.timestamp, request.app_name.as_deref());
    GcmKey::new(shared)
        .open(&boxed, aad.as_bytes())
        .map_err(|_| CstgError::DecryptionFailed)
}

/// The client's side: builds a CSTG request for `plaintext_json` (e.g. `{"email_hash":"…"}`)
/// to the operator key `server_public_spki`, with an ephemeral key drawn from `rng`.
/// Returns the request and the shared secret that will open the response.
pub fn seal_request(
    server_public_spki: &[u8],
    subscription_id: &str,
    timestamp_ms: i64,
    app_name: Option<&str>,
    plaintext_json: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<(CstgRequest, [u8; 32]), CstgError> {
    let client = CstgKeyPair::generate(rng);
    let shared = client.shared_secret(server_public_spki)?;
    let mut iv = [0u8; GCM_IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut boxed = Vec::new();
    GcmKey::new(&shared).seal_into(
        iv,
        aad(timestamp_ms, app_name).as_bytes(),
        plaintext_json,
        &mut boxed,
    );
    let request = CstgRequest {
        payload: base64_encode(&boxed[GCM_IV_LEN..]),
        iv: base64_encode(&iv),
        public_key: base64_encode(client.public_key_der()),
        timestamp: timestamp_ms,
        subscription_id: subscription_id.to_owned(),
        app_name: app_name.map(str::to_owned),
    };
    Ok((request, shared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const FIXTURE_PUBLIC: &str = "UID2-X-L-MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtXJdTSZAYHvoRDWiehMHoWF1BNPuqLs5w2ZHiAZ1IJc7O4/z0ojPTB0V+KYX/wxQK0hxx6kxCvHj335eI/ZQsQ==";
    const FIXTURE_PRIVATE: &str = "UID2-Y-L-MEECAQAwEwYHKoZIzj0CAQYIKoZIzj0DAQcEJzAlAgEBBCC5kOSRVD+qhAZqf0L4LGbmAhdy5HpIptwXE72jxhwo6w==";

    #[test]
    fn the_official_fixture_key_pair_loads_and_matches() {
        let pair = CstgKeyPair::from_pkcs8_der(&decode_key_text(FIXTURE_PRIVATE).unwrap()).unwrap();
        assert_eq!(pair.public_key_text("UID2-X-L-"), FIXTURE_PUBLIC);
        let reloaded = CstgKeyPair::from_pkcs8_der(&pair.to_pkcs8_der()).unwrap();
        assert_eq!(reloaded.public_key_der(), pair.public_key_der());
    }

    #[test]
    fn request_round_trip_with_and_without_app_name() {
        let mut rng = StdRng::seed_from_u64(7);
        let server = CstgKeyPair::generate(&mut rng);
        for app in [None, Some("com.example.app")] {
            let (request, client_shared) = seal_request(
                server.public_key_der(),
                "sub",
                1_700_000_000_000,
                app,
                b"{\"email_hash\":\"x\"}",
                &mut rng,
            )
            .unwrap();
            let public = base64_decode(&request.public_key).unwrap();
            let shared = server.shared_secret(&public).unwrap();
            assert_eq!(shared, client_shared);
            assert_eq!(
                open_payload(&shared, &request).unwrap(),
                b"{\"email_hash\":\"x\"}"
            );
            let mut tampered = request.clone();
            tampered.timestamp += 1;
            assert_eq!(
                open_payload(&shared, &tampered),
                Err(CstgError::DecryptionFailed)
            );
        }
    }

    #[test]
    fn bad_inputs_give_typed_errors() {
        let mut rng = StdRng::seed_from_u64(8);
        let server = CstgKeyPair::generate(&mut rng);
        assert_eq!(
            server.shared_secret(b"not a key"),
            Err(CstgError::BadPublicKey)
        );
        assert_eq!(server.shared_secret(&[]), Err(CstgError::BadPublicKey));
        let (mut request, shared) =
            seal_request(server.public_key_der(), "s", 1, None, b"{}", &mut rng).unwrap();
        request.iv = base64_encode(&[0u8; 11]);
        assert_eq!(open_payload(&shared, &request), Err(CstgError::BadIv));
        request.iv = "***".into();
        assert_eq!(open_payload(&shared, &request), Err(CstgError::BadIv));
        assert_eq!(
            CstgKeyPair::from_pkcs8_der(b"junk").unwrap_err(),
            CstgError::BadPrivateKey
        );
        assert_eq!(aad(5, Some("a\"b")), "[5,\"a\\\"b\"]");
        assert_eq!(decode_key_text("short"), None);
    }
}
