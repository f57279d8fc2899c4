//! Admin commands refuse what would quietly harm a running deployment: a client of no site, key
//! rotation settings that overflow or drop keys live tokens need, a client name that could be
//! taken for another client's key id, a forged API key naming a client, input that could never
//! take effect. (Rekeys and keys that cannot be shown: `client_keys.rs`.)

mod support;

use serde_json::{Value, json};
use support::{add_client, cli, initialised_store, refused};
use uid2_proto::identity::HashedIdentity;

#[test]
fn a_client_needs_an_existing_site() {
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
    let (_dir, store) = initialised_store();
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
