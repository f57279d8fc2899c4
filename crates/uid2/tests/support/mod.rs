//! Starts real `uid2` processes and talks to them with real encrypted requests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{open_bare_response, open_response, seal_request};

pub const UID2: &str = env!("CARGO_BIN_EXE_uid2");

/// A `uid2` command that does not inherit the developer's `UID2_*` settings (a `UID2_CONFIG`
/// or `UID2_LISTEN` in the shell must not change what a test sees); tests pass their own.
pub fn uid2_command() -> Command {
    let mut command = Command::new(UID2);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("UID2_") {
            command.env_remove(name);
        }
    }
    command
}

/// Salt buckets of the stores the tests create: few, so that `uid2 init` is quick.
pub const SALT_BUCKETS: usize = 1024;

/// How long any `uid2` command may take before a test gives up on it.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `uid2 --store STORE --salt-buckets N ARGS…` with `env` set, and returns what it did.
/// A command still running after two minutes (a `serve` that was expected to be refused, say)
/// is killed and fails the test.
pub fn run(store: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let child = uid2_command()
        .args([
            "--store",
            store,
            "--salt-buckets",
            &SALT_BUCKETS.to_string(),
        ])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("uid2 runs");
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(COMMAND_DEADLINE) {
        Ok(output) => output.expect("uid2 runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("uid2 {args:?} did not finish within {COMMAND_DEADLINE:?}");
        }
    }
}

/// Runs an admin command against `store` and returns its stdout; it must succeed.
pub fn cli(store: &str, args: &[&str]) -> String {
    let out = run(store, &[], args);
    assert!(
        out.status.success(),
        "uid2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates and initialises the store (`uid2 init`), as every admin command but `init` and
/// `serve` needs; returns what it printed.
pub fn init(store: &str) -> String {
    cli(store, &["init"])
}

/// A new initialised SQLite store in a directory of its own (kept while the guard lives), and
/// its URL.
pub fn initialised_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("uid2.db").display());
    init(&store);
    (dir, store)
}

/// Runs an admin command that must fail, and returns what it wrote to stderr.
pub fn refused(store: &str, args: &[&str]) -> String {
    let out = run(store, &[], args);
    assert!(
        !out.status.success(),
        "uid2 {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// An API client as `uid2 client add --json` prints it.
#[derive(Clone)]
pub struct ClientCreds {
    pub key: String,
    pub secret: [u8; 32],
}

impl ClientCreds {
    /// The key and secret of what `uid2 client add --json` (or `client rekey --json`) printed.
    pub fn from_printed(printed: &Value) -> Self {
        Self {
            key: printed["key"].as_str().unwrap().to_owned(),
            secret: base64_decode(printed["secret"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
        }
    }

    /// The secret as `uid2 client add` prints it and the SDKs take it: base64.
    pub fn secret_base64(&self) -> String {
        base64_encode(&self.secret)
    }
}

/// Adds a client with `uid2 client add`.
pub fn add_client(store: &str, name: &str, site: i32, roles: &str) -> ClientCreds {
    add_client_with(store, &[], name, site, roles)
}

/// [`add_client`], with global `flags` (deployment settings, say) before the command.
pub fn add_client_with(
    store: &str,
    flags: &[&str],
    name: &str,
    site: i32,
    roles: &str,
) -> ClientCreds {
    let site = site.to_string();
    let mut args = flags.to_vec();
    args.extend([
        "client",
        "add",
        "--name",
        name,
        "--site-id",
        &site,
        "--roles",
        roles,
        "--json",
    ]);
    ClientCreds::from_printed(&serde_json::from_str(&cli(store, &args)).unwrap())
}

/// A running `uid2 serve`.
pub struct OperatorProcess {
    child: Child,
    pub url: String,
    /// What it printed before it listened (the bootstrap report of a fresh store).
    pub printed: Vec<String>,
}

impl OperatorProcess {
    /// Starts `uid2 --store STORE serve` on a free port with `extra` flags.
    pub fn start(store: &str, extra: &[&str]) -> Self {
        let mut command = uid2_command();
        command
            .args(["--store", store, "serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        Self::spawn(command)
    }

    /// Starts `command` (a `uid2 … serve`) and waits until it listens. If it exits first or
    /// takes over two minutes, the test fails with what it wrote to stderr.
    pub fn spawn(mut command: Command) -> Self {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .expect("uid2 serve starts");
        let stdout = child.stdout.take().unwrap();
        let (line_tx, lines) = mpsc::channel();
        // Reads every line, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + COMMAND_DEADLINE;
        let mut printed = Vec::new();
        let url = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.strip_prefix("uid2 operator listening on ") {
                    Some(url) => break url.to_owned(),
                    None => printed.push(line),
                },
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "uid2 serve never listened ({e}); it printed {printed:?} and wrote:\n{}",
                        std::fs::read_to_string(stderr.path()).unwrap_or_default()
                    );
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url,
            printed,
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP client speaking the v2 envelope.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

/// An answer: HTTP status, headers and decrypted JSON (or the plain error JSON).
#[derive(Debug)]
pub struct Answer {
    pub http: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }
}

impl Api {
    pub async fn call(
        &self,
        base: &str,
        client: &ClientCreds,
        path: &str,
        payload: &Value,
    ) -> Answer {
        let key = GcmKey::new(&client.secret);
        let nonce: [u8; 8] = rand::random();
        let body = if payload.is_null() {
            Vec::new()
        } else {
            payload.to_string().into_bytes()
        };
        let sealed = seal_request(
            &key,
            uid2_operator::now_ms(),
            nonce,
            &body,
            &mut rand::rng(),
        );
        let request = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(&client.key)
            .body(base64_encode(&sealed));
        Self::answer(request, |sealed| {
            open_response(&key, sealed, nonce).unwrap().payload
        })
        .await
    }

    /// Refreshes an identity (as a browser would: no API key).
    pub async fn refresh(&self, base: &str, identity: &Value) -> Answer {
        let request = self
            .http
            .post(format!("{base}/v2/token/refresh"))
            .body(identity["refresh_token"].as_str().unwrap().to_owned());
        Self::answer(request, |sealed| {
            let key: [u8; 32] = base64_decode(identity["refresh_response_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            open_bare_response(&key, sealed).unwrap()
        })
        .await
    }

    /// Sends `request`; a 200 answer is base64 of an envelope that `open` opens, any other is
    /// the plain status JSON.
    async fn answer(
        request: reqwest::RequestBuilder,
        open: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Answer {
        let response = request.send().await.expect("operator reachable");
        let http = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let json = if http == 200 {
            serde_json::from_slice(&open(&base64_decode(&bytes).unwrap())).unwrap()
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer {
            http,
            headers,
            json,
        }
    }

    pub async fn get_text(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
