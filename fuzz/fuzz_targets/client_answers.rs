//! What the Rust SDK reads from an operator it does not control, on arbitrary bytes: key
//! answers (`/v2/key/bidstream`, `/v2/key/sharing`) parsed into a key container and then used to
//! decrypt and encrypt, and the identity map and buckets answers.
//!
//! First byte 0-127: the rest is a key answer; a token minted under key 1 (master, secret
//! 32 × 0x01) and key 2 (site 9000, secret 32 × 0x02) is decrypted with whatever keys parsed,
//! and a raw UID encrypted (the seed corpus, `scripts/fuzz.sh`, holds an answer with those
//! keys). 128-255: the rest is an identity map (v2, v3) or buckets answer, read by the SDK for
//! fixed inputs.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use uid2_client::{
    BidstreamClient, IdentityMapInput, IdentityMapV3Input, SharingClient, read_buckets_answer,
};
use uid2_proto::identity::{IdentityScope, IdentityType};
use uid2_proto::key::Key;
use uid2_proto::salt::RawUid;
use uid2_proto::token::{
    AdvertisingToken, IdentityHeader, OperatorIdentity, PrivacyBits, PublisherIdentity,
    TokenVersion,
};

const SECRET: &str = "ioG3wKxAokmp+rERx6A4kM/13qhyolUXIu14WN16Spo=";
const RAW_UID: &str = "ywsvDNINiZOVSsfkHpLpSJzXzhr6Jx9Z/4Q0+lsEUvM=";

fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let master = Key::new(1, -1, Some(9_999_999), 0, 0, i64::MAX / 2000, [1; 32]);
        let site = Key::new(2, 9000, Some(99_999), 0, 0, i64::MAX / 2000, [2; 32]);
        AdvertisingToken {
            version: TokenVersion::V4,
            identity: IdentityHeader { scope: IdentityScope::Uid2, identity_type: IdentityType::Email },
            master_key_id: 1,
            expires_ms: 1_700_003_600_000,
            created_ms: 1_700_000_000_000,
            operator: OperatorIdentity::default(),
            site_key_id: 2,
            publisher: PublisherIdentity::for_site(9000),
            privacy_bits: PrivacyBits(3),
            established_ms: 1_700_000_000_000,
            refreshed_ms: 1_700_000_000_000,
            raw_uid: RawUid::parse_base64(RAW_UID).expect("valid raw UID"),
        }
        .encode_with_ivs(&master, &site, [3; 12], [4; 12])
    })
}

/// One HTTP client for every execution: building one (TLS roots) costs far more than a run.
fn http() -> reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new).clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode < 128 {
        let Ok(json) = std::str::from_utf8(rest) else { return };
        // Fresh clients each run (no keys carried over), sharing the HTTP client.
        let bidstream = BidstreamClient::with_http_client("http://127.0.0.1:9", "key", SECRET, Some(http()))
            .expect("valid secret");
        if bidstream.refresh_json(json).is_ok() {
            for now_ms in [0, 1_700_000_000_000, i64::MAX, i64::MIN] {
                let _ = bidstream.decrypt_token_into_raw_uid_at(token(), Some("example.com"), now_ms);
            }
        }
        let sharing = SharingClient::with_http_client("http://127.0.0.1:9", "key", SECRET, Some(http()))
            .expect("valid secret");
        if sharing.refresh_json(json).is_ok() {
            for now_ms in [0, 1_700_000_000_000, i64::MAX, i64::MIN] {
                if let Ok(token) = sharing.encrypt_raw_uid_into_token_at(RAW_UID, now_ms) {
                    let _ = sharing.decrypt_token_into_raw_uid_at(&token, now_ms);
                }
            }
        }
        return;
    }
    // The SDK's own reading of the answers, keyed back to these inputs.
    let (v2, v3) = inputs();
    let _ = v2.read_answer(rest);
    let _ = v3.read_answer(rest);
    let _ = read_buckets_answer(rest);
});

/// Inputs whose hashes an answer can name (and one given twice, keyed twice).
fn inputs() -> &'static (IdentityMapInput, IdentityMapV3Input) {
    static INPUTS: OnceLock<(IdentityMapInput, IdentityMapV3Input)> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let emails = ["user@example.com", "User@Example.com", "other@example.com"];
        (
            IdentityMapInput::from_emails(emails).expect("valid emails"),
            IdentityMapV3Input::from_emails(emails)
                .and_then(|input| input.with_phone("+12345678901"))
                .expect("valid identities"),
        )
    })
}
