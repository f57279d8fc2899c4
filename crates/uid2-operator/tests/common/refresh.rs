//! Refresh tokens an attacker could make: wrappers and inner tokens sealed under keys that are
//! not refresh keys (master keys go to every bidder, site keys to sharers), and wrappers that open
//! but hold junk; each with a junk token that must get exactly the same answer.

use uid2_operator::now_ms;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::RefreshEnvelope;
use uid2_proto::identity::{HashedIdentity, IdentityScope, IdentityType};
use uid2_proto::key::Key;
use uid2_proto::token::{
    IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity, RefreshToken, TokenVersion,
};

use super::TestOperator;

/// A forged or broken refresh token and a junk one the operator must answer alike.
pub struct BadRefresh {
    pub name: &'static str,
    pub token: String,
    pub junk: String,
}

/// A 388-character wrapper naming `key_id` whose ciphertext is random bytes.
fn junk_wrapper(key_id: u32) -> String {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&key_id.to_be_bytes());
    bytes.extend((0..286).map(|_| rand::random::<u8>()));
    base64_encode(&bytes)
}

impl TestOperator {
    /// An inner refresh token for `email`, minted for the publisher site, sealed under `key`.
    pub fn refresh_token_under(&self, key: &Key, email: &str) -> String {
        let snap = self.operator.snapshot();
        let now = now_ms();
        RefreshToken {
            version: TokenVersion::V3,
            identity: IdentityHeader {
                scope: IdentityScope::Uid2,
                identity_type: IdentityType::Email,
            },
            key_id: key.id,
            expires_ms: now + 3_600_000,
            created_ms: now,
            operator: OperatorIdentity::default(),
            publisher: PublisherIdentity::for_site(1001),
            privacy_bits: PrivacyBits::SERVER_SIDE,
            established_ms: now,
            first_level_hash: snap
                .salts
                .first_level_hash(&HashedIdentity::from_email(email).unwrap()),
        }
        .encode_v3(key, &mut rand::rng())
    }

    /// `inner` in a wrapper sealed under `key`.
    pub fn wrap_under(&self, key: &Key, inner: String) -> String {
        RefreshEnvelope {
            scope: IdentityScope::Uid2,
            key_id: key.id,
            refresh_response_key: rand::random(),
            refresh_token: inner,
        }
        .seal(key, &mut rand::rng())
    }

    /// Every kind of forged or broken refresh token, each with its junk twin.
    pub fn bad_refresh_tokens(&self) -> Vec<BadRefresh> {
        let snap = self.operator.snapshot();
        let now_s = now_ms() / 1000;
        let master = snap.keys.master_key(now_s).unwrap().clone();
        let site = snap.keys.site_key(1001, now_s).unwrap().clone();
        let refresh = snap.keys.refresh_key(now_s).unwrap().clone();
        let email = "forged@example.com";
        let junk_inner = "A".repeat(168);
        vec![
            BadRefresh {
                name: "wrapper under a master key",
                token: self.wrap_under(&master, self.refresh_token_under(&master, email)),
                junk: junk_wrapper(master.id),
            },
            BadRefresh {
                name: "wrapper under a site key",
                token: self.wrap_under(&site, self.refresh_token_under(&site, email)),
                junk: junk_wrapper(site.id),
            },
            BadRefresh {
                name: "refresh wrapper holding a token under a master key",
                token: self.wrap_under(&refresh, self.refresh_token_under(&master, email)),
                junk: self.wrap_under(&refresh, junk_inner.clone()),
            },
            BadRefresh {
                name: "refresh wrapper holding a junk token",
                token: self.wrap_under(&refresh, junk_inner.clone()),
                junk: self.wrap_under(&refresh, "B".repeat(168)),
            },
            BadRefresh {
                name: "bare token under a master key",
                token: self.refresh_token_under(&master, email),
                junk: junk_inner.clone(),
            },
            BadRefresh {
                name: "bare token under a site key",
                token: self.refresh_token_under(&site, email),
                junk: junk_inner,
            },
        ]
    }
}
