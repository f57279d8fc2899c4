//! The UID2 protocol as values.
//!
//! This crate speaks the Unified ID 2.0 wire protocol byte for byte as the official operator and
//! SDKs do, and nothing else: it opens no socket, reads no clock and no disk, and draws no
//! randomness of its own. Time is passed in as Unix milliseconds (`now_ms`) and randomness as a
//! [`rand_core::CryptoRng`], so every function is deterministic under test and the same code
//! serves the operator, the client SDK, the CLI and the fuzzers.
//!
//! One module per concept:
//! - [`identity`]: email/phone normalisation, identity hashes, hashed input, identity type and scope.
//! - [`salt`]: salt buckets, the first-level hash, raw UIDs (v2, v3, v4), bucket ids.
//! - [`key`]: encryption keys, keysets and the [`key::KeyRing`].
//! - [`token`]: advertising tokens (v2/v3/v4) and refresh tokens.
//! - [`envelope`]: the v2 request/response envelope, the refresh response and the refresh-token wrapper.
//! - [`cstg`]: client-side token generation (ECDH P-256 + AES-GCM).
//! - [`wire`]: the JSON shapes of every operator request and response.
//! - [`tcf`]: TCF v2 consent strings (EUID's `tcf_consent_string`).
//! - [`encoding`] and [`cipher`]: the base64 flavours and AES constructions those modules share.

pub mod cipher;
mod codec;
pub mod cstg;
pub mod encoding;
pub mod envelope;
pub mod identity;
pub mod key;
pub mod salt;
pub mod tcf;
pub mod token;
pub mod wire;

pub use rand_core::CryptoRng;
