//! Admin commands refuse what would quietly harm a running deployment: a client of no site, key
//! rotation settings that overflow or drop keys live tokens need, a client name that could be
//! taken for another client's key id, a forged API key naming a client; a rekey retires a leaked key on a running operator and keeps the client.

mod support;

use std::process::Output;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, ClientCreds, OperatorProcess, add_client, cli, init};
use uid2_proto::encoding::base64_decode;
use uid2_proto::identity::HashedIdentity;

fn store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    init(&store);
    (dir, store)
}

fn refused(store: &str, args: &[&str]) -> String {
    let out: Output = support::run(store, &[], args);
    assert!(
        !out.status.success(),
        "uid2 {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_client_needs_an_existing_site() {
    let (_dir, store) = store();
    let stderr = refused(
        &store,
        &[
            "client",
            "add",
            "--name",
            "stray",
            "--site-id",
            "12345",
            "--roles",
            "generator",
        ],
    );
    assert!(stderr.contains("no site 12345"), "{stderr}");
    let clients: Value = serde_json::from_str(&cli(&store, &["client", "list", "--json"])).unwrap();
    assert!(
        clients
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "stray")
    );
    // Names: one line of text, one client each, never the form of a key id (a client named
    // after another's key id would be found by that name, or would hide behind it).
    cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let publisher = add_client(&store, "publisher", 1001, "generator");
    let key_id = publisher.key.split_once('.').unwrap().0;
    for (name, message) in [
        ("publisher", "already exists"),
        ("", "one line"),
        ("two\nlines", "one line"),
        (key_id, "cannot look like a key id"),
        ("uid2-c-l-1001-other", "cannot look like a key id"),
    ] {
        let stderr = refused(
            &store,
            &[
                "client",
                "add",
                "--name",
                name,
                "--site-id",
                "1001",
                "--roles",
                "mapper",
            ],
        );
        assert!(stderr.contains(message), "{name:?}: {stderr}");
    }
}

#[test]
fn key_rotation_refuses_settings_that_would_lose_keys() {
    let (_dir, store) = store();
    let before = cli(&store, &["keys", "list"]);
    // `u64::MAX` meant as "forever" would have wrapped to a negative retention and removed the
    // keys in use; a lead that large, to keys activating before they were made.
    for args in [
        ["keys", "rotate", "--retention", "18446744073709551615"],
        ["keys", "rotate", "--activation-lead", "9223372036854775807"],
    ] {
        let stderr = refused(&store, &args);
        assert!(stderr.contains("not in"), "{args:?}: {stderr}");
    }
    // Shorter than the tokens the operators issue live (30 days by default).
    let stderr = refused(&store, &["keys", "rotate", "--retention", "0"]);
    assert!(stderr.contains("live tokens"), "{stderr}");
    assert_eq!(
        cli(&store, &["keys", "list"]),
        before,
        "nothing was rotated"
    );
    // A century is "forever", and accepted.
    let rotated = cli(&store, &["keys", "rotate", "--retention", "3153600000"]);
    assert!(rotated.contains("removed []"), "{rotated}");
}

#[test]
fn disable_and_enable_name_exactly_one_client() {
    let (_dir, store) = store();
    cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let publisher = add_client(&store, "publisher", 1001, "generator");
    let key_id = publisher.key.split_once('.').unwrap().0.to_owned();
    add_client(&store, "mapper", 1001, "mapper");
    let state = || -> Vec<(String, bool)> {
        let list: Value =
            serde_json::from_str(&cli(&store, &["client", "list", "--json"])).unwrap();
        let mut out: Vec<(String, bool)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["key_id"].as_str().unwrap().to_owned(),
                    c["disabled"].as_bool().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let disabled = |state: &[(String, bool)]| -> Vec<String> {
        state
            .iter()
            .filter(|(_, d)| *d)
            .map(|(k, _)| k.clone())
            .collect()
    };

    cli(&store, &["client", "disable", &key_id]);
    assert_eq!(
        disabled(&state()),
        [key_id.as_str()],
        "the key id's client only"
    );
    cli(&store, &["client", "enable", &key_id]);
    assert!(disabled(&state()).is_empty());

    // The API key itself names its client, and its secret part is never echoed.
    let printed = cli(&store, &["client", "disable", &publisher.key]);
    assert_eq!(disabled(&state()), [key_id.as_str()]);
    let secret_part = publisher.key.split_once('.').unwrap().1;
    assert!(!printed.contains(secret_part), "{printed}");

    let stderr = refused(&store, &["client", "disable", "nobody"]);
    assert!(stderr.contains("no client"), "{stderr}");
    // An API key names its client only whole: a right key id with a wrong secret part names
    // no one.
    cli(&store, &["client", "enable", &key_id]);
    let forged = format!("{key_id}.wrongsecretpart");
    let stderr = refused(&store, &["client", "disable", &forged]);
    assert!(stderr.contains("no client has that API key"), "{stderr}");
    assert!(disabled(&state()).is_empty());
}

#[test]
fn updating_a_site_says_which_domains_it_loses() {
    let (_dir, store) = store();
    let added = cli(
        &store,
        &[
            "site",
            "add",
            "--id",
            "1000",
            "--name",
            "Pub A",
            "--domain",
            "example.com",
        ],
    );
    assert!(added.contains("site 1000 (Pub A) added"), "{added}");
    let updated = cli(&store, &["site", "add", "--id", "1000", "--name", "Pub A2"]);
    assert!(
        updated.contains(r#"domains ["example.com"] -> []"#),
        "{updated}"
    );
}

#[test]
fn keys_list_says_which_key_each_keyset_encrypts_with() {
    let (_dir, store) = store();
    // New keys wait an hour (the default lead) before the operators use them.
    cli(&store, &["keys", "rotate"]);
    let listed = cli(&store, &["keys", "list"]);
    let mut keysets = 0;
    for block in listed.split("keyset ").skip(1) {
        keysets += 1;
        let states: Vec<&str> = block
            .lines()
            .skip(1)
            .map(|line| line.rsplit("  ").next().unwrap())
            .collect();
        assert_eq!(states, ["in use", "pending"], "{block}");
    }
    assert!(keysets >= 3, "{listed}");
    // Times are UTC date-times, not bare epoch seconds.
    let first_key = listed.lines().find(|l| l.contains("key ")).unwrap();
    assert!(
        first_key.contains("T") && first_key.contains("Z  expires"),
        "{first_key}"
    );

    // The same, for scripts: each keyset's keys with their state and epoch-second times.
    let json: Value = serde_json::from_str(&cli(&store, &["keys", "list", "--json"])).unwrap();
    let keysets = json.as_array().unwrap();
    assert_eq!(keysets.len(), listed.matches("keyset ").count());
    for keyset in keysets {
        let keys = keyset["keys"].as_array().unwrap();
        let states: Vec<&str> = keys.iter().map(|k| k["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["in use", "pending"], "{keyset}");
        assert!(keys[1]["activates"].as_i64() > keys[0]["activates"].as_i64());
    }

    let cstg: Value = serde_json::from_str(&cli(&store, &["cstg", "list", "--json"])).unwrap();
    let demo = &cstg.as_array().unwrap()[0];
    assert_eq!(
        (&demo["site_id"], &demo["disabled"]),
        (&json!(999), &json!(false))
    );
    assert!(demo["public_key"].as_str().unwrap().starts_with("UID2-X-"));
}

/// A site lists what client-side generation can match: registrable domains, lower-cased, each
/// once; anything else is refused with what to list instead, and nothing is stored.
#[test]
fn sites_list_only_domains_client_side_generation_can_match() {
    let (_dir, store) = store();
    for (domain, says) in [
        ("www.example.com", r#"list "example.com""#),
        ("https://example.com/path", "not a domain name"),
        ("", "not a domain name"),
        ("intranet.corp", "not under a known public suffix"),
    ] {
        let stderr = refused(
            &store,
            &[
                "site", "add", "--id", "1000", "--name", "Pub", "--domain", domain,
            ],
        );
        assert!(stderr.contains(says), "{domain:?}: {stderr}");
    }
    let long_name = "n".repeat(300);
    let stderr = refused(
        &store,
        &["site", "add", "--id", "1000", "--name", &long_name],
    );
    assert!(stderr.contains("at most 256 characters"), "{stderr}");
    let stderr = refused(
        &store,
        &[
            "site",
            "add",
            "--id",
            "1000",
            "--name",
            "Pub",
            "--app-name",
            " ",
        ],
    );
    assert!(stderr.contains("not an app name"), "{stderr}");
    let sites: Value = serde_json::from_str(&cli(&store, &["site", "list", "--json"])).unwrap();
    assert!(
        sites.as_array().unwrap().iter().all(|s| s["id"] != 1000),
        "{sites}"
    );

    cli(
        &store,
        &[
            "site",
            "add",
            "--id",
            "1000",
            "--name",
            "Pub",
            "--domain",
            "Example.COM",
            "--domain",
            "example.com",
            "--domain",
            "localhost",
            "--app-name",
            "com.example.app",
            "--app-name",
            "com.example.app",
        ],
    );
    let sites: Value = serde_json::from_str(&cli(&store, &["site", "list", "--json"])).unwrap();
    let site = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 1000)
        .unwrap();
    assert_eq!(
        site["domain_names"],
        serde_json::json!(["example.com", "localhost"])
    );
    assert_eq!(site["app_names"], serde_json::json!(["com.example.app"]));
}

/// Admin input that could never take effect is refused or pointed out: an opt-out of a test
/// identity that never opts out, a client of a reserved site, a CSTG key pair of a site no page
/// can use it from.
#[test]
fn admin_input_that_cannot_take_effect_is_refused_or_pointed_out() {
    let (_dir, store) = store();
    let email_hash = HashedIdentity::from_email("validate@example.com")
        .unwrap()
        .hash;
    let phone_hash = HashedIdentity::from_phone("+12345678901").unwrap().hash;
    for identity in [
        ["--email", "validate@example.com"],
        ["--phone", "+12345678901"],
        ["--email-hash", email_hash.as_str()],
        ["--phone-hash", phone_hash.as_str()],
    ] {
        let stderr = refused(&store, &["optout", "add", identity[0], identity[1]]);
        assert!(stderr.contains("never opts out"), "{identity:?}: {stderr}");
    }
    cli(&store, &["optout", "add", "--email", "someone@example.com"]);

    let stderr = refused(
        &store,
        &[
            "client",
            "add",
            "--name",
            "c",
            "--site-id",
            "1",
            "--roles",
            "mapper",
        ],
    );
    assert!(stderr.contains("reserved"), "{stderr}");

    cli(
        &store,
        &["site", "add", "--id", "1002", "--name", "No pages"],
    );
    let out = support::run(&store, &[], &["cstg", "add", "--site-id", "1002"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no domain or app names"), "{stderr}");
    cli(
        &store,
        &[
            "site",
            "add",
            "--id",
            "1003",
            "--name",
            "Pages",
            "--domain",
            "example.org",
        ],
    );
    let out = support::run(&store, &[], &["cstg", "add", "--site-id", "1003"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("no domain or app names"), "{stderr}");
}

#[test]
fn bench_refuses_settings_that_measure_nothing() {
    for args in [
        ["--concurrency", "0"],
        ["--duration", "0"],
        ["--map-size", "0"],
    ] {
        let mut all = vec![
            "bench",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
            "--secret",
            "s",
        ];
        all.extend(args);
        let out = support::run("sqlite:///nonexistent/uid2.db", &[], &all);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_says_when_the_operator_has_no_baseline_route() {
    let (_dir, store) = store();
    cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let publisher = add_client(&store, "publisher", 1001, "generator");
    let operator = support::OperatorProcess::start(&store, &[]);
    let secret = publisher.secret_base64();
    let out = support::run(
        &store,
        &[],
        &[
            "bench",
            "--url",
            &operator.url,
            "--key",
            &publisher.key,
            "--secret",
            &secret,
            "--endpoint",
            "generate",
            "--duration",
            "1",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--bench-baseline true"), "{stderr}");
}

/// `uid2 client rekey`: a running operator refuses the old key within a second and takes the
/// new one; the client keeps its name, site, roles and state, and tokens it minted with the old
/// key still refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_retires_the_old_key_and_keeps_the_client() {
    let (_dir, store) = store();
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
    let new = ClientCreds {
        key: printed["key"].as_str().unwrap().to_owned(),
        secret: base64_decode(printed["secret"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    };
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
    let disabled = ClientCreds {
        key: printed["key"].as_str().unwrap().to_owned(),
        secret: base64_decode(printed["secret"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    };
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
    let (_dir, store) = store();
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
    let (_dir, store) = store();
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
