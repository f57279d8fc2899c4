//! Client-side generation requests for the test operator's subscription: valid ones, and one of
//! each kind that passes the origin check and the key agreement's preconditions but is refused
//! after it, with the official operator's answer to each.

use uid2_operator::now_ms;
use uid2_proto::cstg::{decode_key_text, seal_request};
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::identity::HashedIdentity;
use uid2_proto::wire::CstgRequest;

use super::TestOperator;

/// The origin every site of the test operator accepts.
pub const ORIGIN: &str = "http://localhost:8080";

/// A request refused after the key agreement, and the answer the official operator gives it.
pub struct BadCstg {
    pub name: &'static str,
    pub body: Vec<u8>,
    pub http: u16,
    pub status: &'static str,
    pub message: &'static str,
}

impl TestOperator {
    /// The (only) CSTG subscription id and the operator's public key for it.
    pub async fn cstg_subscription(&self) -> (String, Vec<u8>) {
        let record = self
            .operator
            .store()
            .cstg_keypairs()
            .await
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        let public = decode_key_text(&record.public_key).unwrap();
        (record.subscription_id, public)
    }

    /// A CSTG request sealing `plaintext`, and the shared secret its answer is sealed with.
    pub async fn cstg_request(
        &self,
        plaintext: &[u8],
        app_name: Option<&str>,
    ) -> (CstgRequest, [u8; 32]) {
        let (subscription, public) = self.cstg_subscription().await;
        seal_request(
            &public,
            &subscription,
            now_ms(),
            app_name,
            plaintext,
            &mut rand::rng(),
        )
        .unwrap()
    }

    /// One CSTG request of each kind refused after the origin check.
    pub async fn bad_cstg_requests(&self) -> Vec<BadCstg> {
        let email_hash = HashedIdentity::from_email("cstg@example.com").unwrap().hash;
        let valid = format!(r#"{{"email_hash":"{email_hash}"}}"#);
        let (good, _) = self.cstg_request(valid.as_bytes(), None).await;
        let with = |edit: &dyn Fn(&mut CstgRequest)| {
            let mut r = good.clone();
            edit(&mut r);
            serde_json::to_vec(&r).unwrap()
        };
        let sealed = async |plaintext: &str| {
            serde_json::to_vec(&self.cstg_request(plaintext.as_bytes(), None).await.0).unwrap()
        };
        let client_error = |name, body, message| BadCstg {
            name,
            body,
            http: 400,
            status: "client_error",
            message,
        };
        vec![
            client_error(
                "public key not base64",
                with(&|r| r.public_key = "%%%".into()),
                "bad public key",
            ),
            client_error(
                "public key not a P-256 point",
                with(&|r| r.public_key = base64_encode(&[4u8; 91])),
                "bad public key",
            ),
            client_error(
                "iv of 5 bytes",
                with(&|r| r.iv = base64_encode(&[1u8; 5])),
                "bad iv",
            ),
            client_error("iv not base64", with(&|r| r.iv = "%%%".into()), "bad iv"),
            client_error(
                "tampered payload",
                with(&|r| {
                    let mut bytes = base64_decode(&r.payload).unwrap();
                    bytes[0] ^= 1;
                    r.payload = base64_encode(&bytes);
                }),
                "payload decryption failed",
            ),
            client_error(
                "payload under another timestamp",
                with(&|r| r.timestamp += 1),
                "payload decryption failed",
            ),
            client_error(
                "plaintext not JSON",
                sealed("not json").await,
                "encrypted payload contains invalid json",
            ),
            client_error(
                "plaintext a JSON array",
                sealed(r#"["a","b"]"#).await,
                "encrypted payload contains invalid json",
            ),
            client_error(
                "plaintext a JSON string",
                sealed(r#""email_hash""#).await,
                "encrypted payload contains invalid json",
            ),
            client_error(
                "no hash",
                sealed("{}").await,
                "please provide exactly one of: email_hash, phone_hash",
            ),
            client_error(
                "two hashes",
                sealed(&format!(
                    r#"{{"email_hash":"{email_hash}","phone_hash":"{email_hash}"}}"#
                ))
                .await,
                "please provide exactly one of: email_hash, phone_hash",
            ),
            client_error(
                "invalid hash",
                sealed(r#"{"email_hash":"short"}"#).await,
                "Invalid Identifier",
            ),
            client_error(
                "raw email instead of a hash",
                sealed(r#"{"email_hash":"cstg@example.com"}"#).await,
                "Invalid Identifier",
            ),
            BadCstg {
                name: "app name the site does not list",
                body: serde_json::to_vec(
                    &self
                        .cstg_request(valid.as_bytes(), Some("com.example.unknown"))
                        .await
                        .0,
                )
                .unwrap(),
                http: 403,
                status: "invalid_app_name",
                message: "unexpected app name",
            },
        ]
    }
}
