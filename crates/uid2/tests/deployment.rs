//! The deployment settings (identity scope, environment, v3 raw UIDs) are fixed per store:
//! `uid2 init` records them, `uid2 serve` and every admin command take them from the store, a
//! value given that disagrees is refused naming both, and a store initialised before they were
//! recorded adopts the first ones given (or the defaults), once.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Api, ClientCreds, OperatorProcess, add_client, add_client_with, cli, run};
use uid2_proto::encoding::base64_decode;

fn assert_refused(out: &Output, given: &str, recorded: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{given} was given, the store has {recorded}")),
        "{stderr}"
    );
}

fn sqlite_store(dir: &tempfile::TempDir) -> (String, std::path::PathBuf) {
    let path = dir.path().join("uid2.db");
    (format!("sqlite://{}", path.display()), path)
}

/// The raw UID (bytes) the operator at `url` maps `email` to.
async fn mapped_raw_uid(url: &str, mapper: &ClientCreds, email: &str) -> Vec<u8> {
    let mapped = Api::default()
        .call(
            url,
            mapper,
            "/v2/identity/map",
            &json!({ "email": [email] }),
        )
        .await;
    let id = mapped.json["body"]["mapped"][0]["advertising_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{mapped:?}"));
    base64_decode(id).unwrap()
}

/// Waits until the operator at `url` reports `raw_uid` as opted out (at most 5 s).
async fn wait_reported_opted_out(url: &str, mapper: &ClientCreds, raw_uid: &[u8]) {
    let id = uid2_proto::encoding::base64_encode(raw_uid);
    let started = Instant::now();
    loop {
        let status = Api::default()
            .call(
                url,
                mapper,
                "/v2/optout/status",
                &json!({ "advertising_ids": [id] }),
            )
            .await;
        assert_eq!(status.json["status"], "success", "{status:?}");
        if status.json["body"]["opted_out"][0]["advertising_id"] == id.as_str() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_stores_cli_optout_is_reported_for_the_raw_uid_the_api_maps() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = sqlite_store(&dir);
    let printed = cli(&store, &["--v3-raw-uids", "true", "init"]);
    assert!(
        printed.contains("v3 raw UIDs true: fixed for this store"),
        "{printed}"
    );
    let mapper = add_client(&store, "mapper", 999, "mapper");
    // No settings given: serve and the CLI take the store's.
    let operator = OperatorProcess::start(&store, &["--sync-interval-ms", "100"]);
    let email = "v3.optout@example.com";
    let raw_uid = mapped_raw_uid(&operator.url, &mapper, email).await;
    assert_eq!(raw_uid.len(), 33, "a v3 raw UID");

    assert!(cli(&store, &["optout", "add", "--email", email]).contains("opt-out recorded"));
    wait_reported_opted_out(&operator.url, &mapper, &raw_uid).await;
}

#[test]
fn serve_and_admin_commands_refuse_settings_that_disagree_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(&dir);
    cli(&store, &["init"]);

    let serve = run(
        &store,
        &[],
        &[
            "--identity-scope",
            "euid",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_refused(&serve, "identity scope EUID", "UID2");
    let from_env = run(
        &store,
        &[("UID2_V3_RAW_UIDS", "true")],
        &["optout", "add", "--email", "x@example.com"],
    );
    assert_refused(&from_env, "v3 raw UIDs true", "false");
    let config = dir.path().join("uid2.toml");
    std::fs::write(&config, "environment = \"prod\"\n").unwrap();
    let from_file = run(
        &store,
        &[],
        &["--config", config.to_str().unwrap(), "client", "list"],
    );
    assert_refused(&from_file, "environment prod", "test");
    let init_again = run(&store, &[], &["--environment", "integ", "init"]);
    assert_refused(&init_again, "environment integ", "test");
    // Nothing was recorded by the refused commands.
    let optouts: i64 = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM optouts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(optouts, 0);

    // Values that agree are fine.
    let agreeing = run(
        &store,
        &[],
        &[
            "--identity-scope",
            "uid2",
            "--environment",
            "test",
            "--v3-raw-uids",
            "false",
            "client",
            "list",
        ],
    );
    assert!(agreeing.status.success(), "{agreeing:?}");
    let operator = OperatorProcess::start(&store, &["--identity-scope", "UID2"]);
    assert!(operator.url.starts_with("http://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_initialised_before_settings_were_recorded_adopts_the_first_ones_given() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(&dir);
    cli(&store, &["init"]);
    forget_settings(&path);

    // The first command adopts what it is given, once; later ones must agree.
    let mapper = add_client_with(&store, &["--v3-raw-uids", "true"], "mapper", 999, "mapper");
    assert_refused(
        &run(&store, &[], &["--v3-raw-uids", "false", "client", "list"]),
        "v3 raw UIDs false",
        "true",
    );
    let operator = OperatorProcess::start(&store, &["--sync-interval-ms", "100"]);
    let email = "old.store@example.com";
    let raw_uid = mapped_raw_uid(&operator.url, &mapper, email).await;
    assert_eq!(raw_uid.len(), 33, "serve took v3 from the store");
    cli(&store, &["optout", "add", "--email", email]);
    wait_reported_opted_out(&operator.url, &mapper, &raw_uid).await;

    // Given nothing, an old store adopts the defaults.
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(&dir);
    cli(&store, &["init"]);
    forget_settings(&path);
    cli(&store, &["keys", "list"]);
    assert_refused(
        &run(&store, &[], &["--identity-scope", "euid", "keys", "list"]),
        "identity scope EUID",
        "UID2",
    );
}

/// Makes the SQLite store at `path` look like one initialised before the deployment settings
/// were recorded: the same schema, without these rows.
fn forget_settings(path: &std::path::Path) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(
            "DELETE FROM store_meta WHERE name IN ('identity_scope', 'environment', 'v3_raw_uids')",
            [],
        )
        .unwrap();
}
