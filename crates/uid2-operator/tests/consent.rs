//! EUID's TCF consent on `/v2/token/generate`: checked only in EUID scope and only when
//! `tcf_consent_string` is sent; vendor 21 needs purposes 1, 2, 3, 4, 7 and 10 and precise
//! geolocation, else 200 `insufficient_user_consent`; a string that does not decode is a 400.

mod common;

use common::TestOperator;
use serde_json::{Value, json};
use uid2_operator::OperatorConfig;
use uid2_proto::identity::IdentityScope;

/// Vendor 21 has consent for purposes 1, 3, 4 and legitimate interest for 2, 7, 10; special
/// feature 1 (from the official operator's EUID tests).
const SUFFICIENT: &str = "CPehNtWPehNtWABAMBFRACBoALAAAEJAAIYgAKwAQAKgArABAAqAAA";
/// The same without consent to purpose 1.
const NO_PURPOSE_ONE: &str = "CPehXK9PehXK9ABAMBFRACBoADAAAEJAAIYgAKwAQAKgArABAAqAAA";
/// A TCF v1 string: understood upstream, but it cannot carry the v2 special feature.
const TCF_V1: &str = "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA";

fn euid() -> OperatorConfig {
    OperatorConfig {
        identity_scope: IdentityScope::Euid,
        ..OperatorConfig::default()
    }
}

async fn generate(t: &TestOperator, payload: Value) -> (u16, Value) {
    match t.call(&t.publisher, "/v2/token/generate", payload).await {
        Ok(json) => (200, json),
        Err(reply) => (reply.status, reply.json()),
    }
}

#[tokio::test]
async fn euid_generate_follows_the_consent_string() {
    let t = TestOperator::start(euid()).await;
    let email = "consent@example.com";

    let (code, json) = generate(&t, json!({ "email": email })).await;
    assert_eq!(
        (code, json["status"].as_str()),
        (200, Some("success")),
        "no string"
    );
    let token = json["body"]["advertising_token"].as_str().unwrap();
    assert!(token.starts_with('E'), "an EUID token: {token}");

    let (code, json) = generate(
        &t,
        json!({ "email": email, "tcf_consent_string": SUFFICIENT }),
    )
    .await;
    assert_eq!(
        (code, json["status"].as_str()),
        (200, Some("success")),
        "sufficient"
    );

    for insufficient in [NO_PURPOSE_ONE, TCF_V1] {
        let (code, json) = generate(
            &t,
            json!({ "email": email, "tcf_consent_string": insufficient }),
        )
        .await;
        assert_eq!(
            (code, json),
            (200, json!({"status": "insufficient_user_consent"})),
            "{insufficient}"
        );
    }

    for invalid in [
        json!("invalid_consent_string"),
        json!(""),
        json!(null),
        json!(5),
    ] {
        let (code, json) =
            generate(&t, json!({ "email": email, "tcf_consent_string": invalid })).await;
        assert_eq!(
            (code, json),
            (
                400,
                json!({"status": "client_error", "message": "User consent is invalid"})
            ),
            "{invalid}"
        );
    }

    // The identity is checked first.
    let (code, json) = generate(
        &t,
        json!({ "email": "not an email", "tcf_consent_string": "invalid_consent_string" }),
    )
    .await;
    assert_eq!(
        (code, json["message"].as_str()),
        (400, Some("Invalid Identifier"))
    );
    // Consent comes before the opt-out check.
    let (code, json) = generate(
        &t,
        json!({ "email": "optout@example.com", "tcf_consent_string": NO_PURPOSE_ONE }),
    )
    .await;
    assert_eq!(
        (code, json["status"].as_str()),
        (200, Some("insufficient_user_consent"))
    );
}

#[tokio::test]
async fn uid2_ignores_the_consent_string() {
    let t = TestOperator::start(OperatorConfig::default()).await;
    for tcf in [NO_PURPOSE_ONE, "invalid_consent_string", ""] {
        let (code, json) = generate(
            &t,
            json!({ "email": "consent@example.com", "tcf_consent_string": tcf }),
        )
        .await;
        assert_eq!(
            (code, json["status"].as_str()),
            (200, Some("success")),
            "{tcf}"
        );
    }
}
