//! Which commands may create a store, and how `uid2 serve` is configured: only `uid2 init` and
//! `uid2 serve` initialise a store; every other command refuses a missing or uninitialised one
//! (naming `uid2 init`) and creates nothing; `serve` takes its settings from `UID2_*` variables.

mod support;

use std::process::Output;

use serde_json::json;
use support::{Api, ClientCreds, OperatorProcess, uid2_command};
use uid2_proto::encoding::base64_decode;

fn uid2(store: &str, args: &[&str]) -> Output {
    support::run(store, &[], args)
}

const ADMIN_COMMANDS: &[&[&str]] = &[
    &["optout", "add", "--email", "someone@example.com"],
    &[
        "client",
        "add",
        "--name",
        "x",
        "--site-id",
        "1001",
        "--roles",
        "mapper",
    ],
    &["client", "list"],
    &["site", "add", "--id", "1001", "--name", "Publisher"],
    &["cstg", "list"],
    &["keys", "list"],
    &["salts", "rotate", "--fraction", "0.1"],
];

fn assert_refused(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{what} succeeded: {stdout}");
    assert!(
        stderr.contains("not initialised") && stderr.contains("uid2 init"),
        "{what}: {stderr}"
    );
    assert!(
        !stdout.contains("API key") && !stdout.contains("recorded"),
        "{what}: {stdout}"
    );
}

#[test]
fn admin_commands_refuse_a_missing_store_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    let store = format!("sqlite://{}", typo.join("uid2.db").display());
    for args in ADMIN_COMMANDS {
        assert_refused(&uid2(&store, args), &args.join(" "));
    }
    assert!(
        !typo.exists(),
        "a refused command created {}",
        typo.display()
    );
}

#[test]
fn admin_commands_refuse_an_uninitialised_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let store = format!("sqlite://{}", path.display());
    for args in ADMIN_COMMANDS {
        assert_refused(&uid2(&store, args), &args.join(" "));
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "a refused command wrote to the file"
    );
}

#[test]
fn init_initialises_once_and_then_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    let first = uid2(&store, &["init"]);
    assert!(first.status.success());
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(first.contains("Initialised an empty store"), "{first}");
    assert!(
        first.contains(&format!("({} salt buckets)", support::SALT_BUCKETS)),
        "{first}"
    );
    assert_eq!(
        first.matches("API key: UID2-C-L-999-").count(),
        1,
        "{first}"
    );

    let again = uid2(&store, &["init"]);
    assert!(again.status.success());
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(again.contains("already initialised"), "{again}");
    assert!(!again.contains("API key"), "{again}");

    let optout = uid2(&store, &["optout", "add", "--email", "someone@example.com"]);
    assert!(optout.status.success(), "{optout:?}");
    assert!(String::from_utf8_lossy(&optout.stdout).contains("opt-out recorded"));
}

/// The value after `label` on the first line of `lines` that has it.
fn after<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {lines:?}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_initialises_a_fresh_store_with_settings_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    let mut command = uid2_command();
    command
        .arg("serve")
        .env("UID2_STORE", &store)
        .env("UID2_LISTEN", "127.0.0.1:0")
        .env("UID2_SALT_BUCKETS", "128")
        .env("UID2_IDENTITY_TOKEN_EXPIRES_AFTER", "600")
        .env("UID2_REFRESH_TOKEN_EXPIRES_AFTER", "1200")
        .env("UID2_REFRESH_IDENTITY_TOKEN_AFTER", "60")
        .env("UID2_ENVIRONMENT", "integ");
    let operator = OperatorProcess::spawn(command);
    let (url, lines) = (&operator.url, &operator.printed);
    assert!(
        lines.iter().any(|l| l.contains("(128 salt buckets)")),
        "{lines:?}"
    );
    // Recorded in the store, as the child `uid2 init` was given it.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("environment integ, v3 raw UIDs false: fixed for this store")),
        "{lines:?}"
    );
    assert!(
        after(lines, "API key:").starts_with("UID2-C-I-999-"),
        "{lines:?}"
    );
    let demo = ClientCreds {
        key: after(lines, "API key:").to_owned(),
        secret: base64_decode(after(lines, "secret:"))
            .unwrap()
            .try_into()
            .unwrap(),
    };

    let before = uid2_operator::now_ms();
    let answer = Api::default()
        .call(
            url,
            &demo,
            "/v2/token/generate",
            &json!({"email": "env@example.com"}),
        )
        .await;
    let after_ms = uid2_operator::now_ms();
    assert_eq!(answer.json["status"], "success", "{answer:?}");
    let body = &answer.json["body"];
    let within = |field: &str, seconds: i64| {
        let at = body[field].as_i64().unwrap();
        assert!(
            (before + seconds * 1000..=after_ms + seconds * 1000).contains(&at),
            "{field} = {at}, expected now + {seconds} s"
        );
    };
    within("identity_expires", 600);
    within("refresh_expires", 1200);
    within("refresh_from", 60);
    let metrics = Api::default().get_text(&format!("{url}/metrics")).await;
    assert!(metrics.contains("uid2_salt_buckets 128"), "{metrics}");
}

#[tokio::test]
async fn metrics_can_be_kept_off_the_api_port() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/uid2.db", dir.path().display());
    support::init(&store);
    let op = OperatorProcess::start(&store, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics_url = op
        .printed
        .iter()
        .find_map(|line| line.strip_prefix("uid2 metrics on "))
        .unwrap_or_else(|| panic!("no metrics address in {:?}", op.printed))
        .to_owned();
    assert_ne!(metrics_url, format!("{}/metrics", op.url));
    let metrics = Api::default().get_text(&metrics_url).await;
    assert!(metrics.contains("uid2_salt_buckets 1024"), "{metrics}");
    let on_the_api = reqwest::get(format!("{}/metrics", op.url)).await.unwrap();
    assert_eq!(on_the_api.status(), 404);
    // The API itself is where it was.
    let health = reqwest::get(format!("{}/ops/healthcheck", op.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// `uid2 backup` copies a store in use: what was acknowledged before it (a client, an opt-out
/// still in the write-ahead log of a running operator's database) is in the copy, an operator
/// serves from the copy, and an existing file is never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_holds_everything_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    support::init(&store);
    support::cli(
        &store,
        &["site", "add", "--id", "1001", "--name", "Publisher"],
    );
    let publisher = support::add_client(&store, "publisher", 1001, "generator");
    let running = OperatorProcess::start(&store, &[]);
    support::cli(&store, &["optout", "add", "--email", "gone@example.com"]);
    // The operator's open connection keeps the opt-out in the write-ahead log, where a copy of
    // the database file alone would miss it.
    let wal = std::fs::metadata(dir.path().join("uid2.db-wal")).unwrap();
    assert!(wal.len() > 0);

    let backup = dir.path().join("backup.db");
    let backup_arg = backup.to_str().unwrap();
    let printed = support::cli(&store, &["backup", "--to", backup_arg]);
    assert!(printed.starts_with("Backed up "), "{printed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the copy holds every secret");
    }
    let taken = std::fs::read(&backup).unwrap();
    let again = support::run(&store, &[], &["backup", "--to", backup_arg]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(
        std::fs::read(&backup).unwrap() == taken,
        "the backup was overwritten"
    );
    drop(running);

    let restored = OperatorProcess::start(&format!("sqlite://{backup_arg}"), &[]);
    let api = Api::default();
    for (email, status) in [
        ("gone@example.com", "optout"),
        ("kept@example.com", "success"),
    ] {
        let answer = api
            .call(
                &restored.url,
                &publisher,
                "/v2/token/generate",
                &json!({ "email": email }),
            )
            .await;
        assert_eq!(answer.http, 200, "{email}: {answer:?}");
        assert_eq!(answer.json["status"], status, "{email}");
    }
}

/// A password in the store URL or a client secret given by environment never shows: not in
/// `--help` (which lists environment values), not when a connection string is mistaken for a
/// file name.
#[test]
fn secrets_given_by_environment_never_show() {
    let out = uid2_command()
        .env("UID2_STORE", "postgres://uid2:s3cretpw@db.example/uid2")
        .env("UID2_SECRET_KEY", "s3cretkey")
        .args(["bench", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("UID2_STORE"), "{help}");
    assert!(!help.contains("s3cret"), "{help}");

    let dir = tempfile::tempdir().unwrap();
    let out = uid2_command()
        .current_dir(dir.path())
        .args(["--store", "host=db user=uid2 password=s3cretpw", "init"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(stderr.contains("connection string"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
