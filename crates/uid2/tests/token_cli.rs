//! `uid2 token inspect` and `uid2 token decrypt` against tokens minted by a real `uid2 serve`.

mod support;

use serde_json::{Value, json};
use support::{Api, OperatorProcess, add_client, cli, uid2_command};
use uid2_proto::encoding::base64_encode;

/// Runs `uid2 token …`; returns the exit success and the printed JSON.
fn token_command(store: &str, args: &[&str]) -> (bool, Value) {
    let out = uid2_command()
        .args(["--store", store, "token"])
        .args(args)
        .output()
        .expect("uid2 runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "uid2 token {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_decrypt_show_what_the_operator_minted() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    support::init(&store);
    cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let publisher = add_client(&store, "publisher", 1001, "generator,mapper");
    let ssp = add_client(&store, "ssp", 1001, "id_reader");
    let operator = OperatorProcess::start(&store, &[]);
    let api = Api::default();

    let generated = api
        .call(
            &operator.url,
            &publisher,
            "/v2/token/generate",
            &json!({"email": "inspect.me@example.com"}),
        )
        .await;
    assert_eq!(generated.json["status"], "success", "{:?}", generated.json);
    let identity = &generated.json["body"];
    let mapped = api
        .call(
            &operator.url,
            &publisher,
            "/v2/identity/map",
            &json!({"email": ["inspect.me@example.com"]}),
        )
        .await;
    let raw_uid = mapped.json["body"]["mapped"][0]["advertising_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The operator's view: every field, with the store's keys.
    let token = identity["advertising_token"].as_str().unwrap();
    let (ok, report) = token_command(&store, &["inspect", token]);
    assert!(ok, "{report}");
    assert_eq!(report["kind"], "advertising_token");
    assert_eq!(report["version"], "v4");
    assert_eq!(report["identity_scope"], "UID2");
    assert_eq!(report["identity_type"], "email");
    assert_eq!(report["site_id"], 1001);
    assert_eq!(report["raw_uid"], raw_uid.as_str());
    assert_eq!(report["client_side_generated"], false);
    assert_eq!(report["expired"], false);
    assert_eq!(
        report["expires"]["ms"].as_i64(),
        identity["identity_expires"].as_i64()
    );

    let refresh = identity["refresh_token"].as_str().unwrap();
    let (ok, report) = token_command(&store, &["inspect", refresh]);
    assert!(ok, "{report}");
    assert_eq!(report["kind"], "refresh_token (v2 API wrapper)");
    assert_eq!(report["site_id"], 1001);
    assert_eq!(
        report["refresh_response_key"],
        identity["refresh_response_key"]
    );
    assert_eq!(
        report["expires"]["ms"].as_i64(),
        identity["refresh_expires"].as_i64()
    );

    // The SSP's view: keys from /v2/key/bidstream with an id_reader key.
    let secret = base64_encode(&ssp.secret);
    let (ok, report) = token_command(
        &store,
        &[
            "decrypt",
            token,
            "--url",
            &operator.url,
            "--key",
            &ssp.key,
            "--secret",
            &secret,
        ],
    );
    assert!(ok, "{report}");
    assert_eq!(report["status"], "success");
    assert_eq!(report["raw_uid"], raw_uid.as_str());
    assert_eq!(report["site_id"], 1001);

    // A tampered token does not open, and the command says so with its exit status.
    // A character in the middle (the ciphertext): the last one may carry only padding bits,
    // which a decoder ignores.
    let middle = token.len() / 2;
    let replaced = if &token[middle..=middle] == "A" {
        "Q"
    } else {
        "A"
    };
    let tampered = format!("{}{replaced}{}", &token[..middle], &token[middle + 1..]);
    let (ok, report) = token_command(&store, &["inspect", &tampered]);
    assert!(!ok);
    assert_eq!(report["version"], "v4");
    assert_eq!(report["error"], "token does not decrypt");
    let (ok, report) = token_command(
        &store,
        &[
            "decrypt",
            &tampered,
            "--url",
            &operator.url,
            "--key",
            &ssp.key,
            "--secret",
            &secret,
        ],
    );
    assert!(!ok);
    assert_eq!(report["status"], "invalid payload");

    // Without a store, only the prefix is read.
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let (ok, report) = token_command(&missing, &["inspect", token]);
    assert!(!ok);
    assert_eq!(report["version"], "v4");
    assert_eq!(report["identity_type"], "email");
    assert!(report["outer_key_id"].as_u64().is_some());
    assert!(
        !dir.path().join("none.db").exists(),
        "inspect created a store"
    );
    let (ok, report) = token_command(&missing, &["inspect", "not a token"]);
    assert!(!ok);
    assert!(report["prefix"].as_str().unwrap().starts_with("unreadable"));
}
