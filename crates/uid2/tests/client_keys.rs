//! A client's API key: `uid2 client rekey` retires a leaked key on a running operator and keeps
//! the client, and a key printed once that cannot be shown (a full disk, a closed pipe) is an
//! error that says how to get another, while a listing into a closed pipe ends quietly.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, ClientCreds, OperatorProcess, add_client, cli, initialised_store, refused};

/// `uid2 client rekey`: a running operator refuses the old key within a second and takes the
/// new one; the client keeps its name, site, roles and state, and tokens it minted with the old
/// key still refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_retires_the_old_key_and_keeps_the_client() {
    let (_dir, store) = initialised_store();
    cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let old = add_client(&store, "publisher", 1001, "generator,mapper");
    let operator = OperatorProcess::start(&store, &[]);
    let api = Api::default();
    let generate = |client: ClientCreds| {
        let (api, url) = (api.clone(), operator.url.clone());
        async move {
            api.call(
                &url,
                &client,
                "/v2/token/generate",
                &json!({"email": "rekeyed@example.com"}),
            )
            .await
        }
    };
    let before = generate(old.clone()).await;
    assert_eq!(before.json["status"], "success", "{before:?}");

    // By the API key itself, as for `disable`; the new key and secret are printed once.
    let printed: Value =
        serde_json::from_str(&cli(&store, &["client", "rekey", &old.key, "--json"])).unwrap();
    assert_eq!(
        (&printed["name"], &printed["site_id"], &printed["roles"]),
        (
            &json!("publisher"),
            &json!(1001),
            &json!(["generator", "mapper"])
        )
    );
    let new = ClientCreds::from_printed(&printed);
    assert_ne!(new.key, old.key);
    assert_ne!(new.secret, old.secret);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = generate(old.clone()).await;
        if answer.http == 401 {
            assert_eq!(answer.json, json!({"status": "unauthorized"}));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old key still works: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = generate(new.clone()).await;
    assert_eq!(after.json["status"], "success", "{after:?}");
    let refreshed = api.refresh(&operator.url, &before.json["body"]).await;
    assert_eq!(refreshed.json["status"], "success", "{refreshed:?}");

    let list: Value = serde_json::from_str(&cli(&store, &["client", "list", "--json"])).unwrap();
    let listed: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "publisher")
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["key_id"], new.key.split_once('.').unwrap().0);

    // A disabled client stays disabled under its new key: refused until it is enabled.
    cli(&store, &["client", "disable", "publisher"]);
    let human = cli(&store, &["client", "rekey", "publisher"]);
    assert!(
        human.contains("disabled") && human.contains("API key:"),
        "{human}"
    );
    let printed: Value =
        serde_json::from_str(&cli(&store, &["client", "rekey", "publisher", "--json"])).unwrap();
    let disabled = ClientCreds::from_printed(&printed);
    // Over two sync intervals: the operator has loaded the new key, and refuses it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(generate(disabled.clone()).await.http, 401);
    cli(&store, &["client", "enable", "publisher"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while generate(disabled.clone()).await.http != 200 {
        assert!(
            Instant::now() < deadline,
            "the enabled client's new key is refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stderr = refused(&store, &["client", "rekey", "nobody"]);
    assert!(stderr.contains("no client"), "{stderr}");
}

/// A new client's key is printed once: when it cannot be (standard output is a full disk), the
/// command fails without a panic and says how to get the client a key it can show.
#[test]
fn a_key_that_cannot_be_shown_is_an_error_that_says_how_to_get_another() {
    let (_dir, store) = initialised_store();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = support::uid2_command()
        .args(["--store", &store, "client", "add", "--name", "lost"])
        .args(["--site-id", "999", "--roles", "generator"])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("uid2 client rekey lost"), "{stderr}");
    let rekeyed = cli(&store, &["client", "rekey", "lost"]);
    assert!(rekeyed.contains("API key:"), "{rekeyed}");
}

/// A reader that closes the pipe early (`uid2 client list | head -1`) ends a listing quietly,
/// but a key shown once that nobody read is still reported.
#[test]
fn a_closed_pipe_ends_a_listing_quietly_but_not_a_lost_key() {
    let (_dir, store) = initialised_store();
    let run_into_closed_pipe = |args: &[&str]| {
        let mut child = support::uid2_command()
            .args(["--store", &store])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command has opened its store, so before it writes.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    };
    let listed = run_into_closed_pipe(&["client", "list"]);
    let stderr = String::from_utf8(listed.stderr).unwrap();
    assert!(listed.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    let added = run_into_closed_pipe(&[
        "client",
        "add",
        "--name",
        "unread",
        "--site-id",
        "999",
        "--roles",
        "mapper",
    ]);
    let stderr = String::from_utf8(added.stderr).unwrap();
    assert_eq!(added.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("uid2 client rekey unread"), "{stderr}");
}
