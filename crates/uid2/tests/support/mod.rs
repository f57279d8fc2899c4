//! Starts real `uid2` processes and talks to them with real encrypted requests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_encode};
use uid2_proto::envelope::{open_bare_response, open_response, seal_request};

pub const UID2: &str = env!("CARGO_BIN_EXE_uid2");

/// Runs an admin command against `store` and returns its stdout.
pub fn cli(store: &str, args: &[&str]) -> String {
    let out = Command::new(UID2)
        .args(["--store", store, "--salt-buckets", "4096"])
        .args(args)
        .output()
        .expect("uid2 runs");
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

/// An API client as `uid2 client add --json` prints it.
#[derive(Clone)]
pub struct ClientCreds {
    pub key: String,
    pub secret: [u8; 32],
}

pub fn add_client(store: &str, name: &str, site: i32, roles: &str) -> ClientCreds {
    let v: Value = serde_json::from_str(&cli(
        store,
        &[
            "client",
            "add",
            "--name",
            name,
            "--site-id",
            &site.to_string(),
            "--roles",
            roles,
            "--json",
        ],
    ))
    .unwrap();
    ClientCreds {
        key: v["key"].as_str().unwrap().to_owned(),
        secret: base64_decode(v["secret"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    }
}

/// A running `uid2 serve`.
pub struct OperatorProcess {
    child: Child,
    pub url: String,
}

impl OperatorProcess {
    pub fn start(store: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(UID2)
            .args(["--store", store, "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("uid2 serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("uid2 serve printed its address")
                .unwrap();
            if let Some(url) = line.strip_prefix("uid2 operator listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
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

/// An answer: HTTP status and decrypted JSON (or the plain error JSON).
#[derive(Debug)]
pub struct Answer {
    pub http: u16,
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
        let response = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(&client.key)
            .body(base64_encode(&sealed))
            .send()
            .await
            .expect("operator reachable");
        let http = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let json = if http == 200 {
            let opened = open_response(&key, &base64_decode(&bytes).unwrap(), nonce).unwrap();
            serde_json::from_slice(&opened.payload).unwrap()
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer { http, json }
    }

    /// Refreshes an identity (as a browser would: no API key).
    pub async fn refresh(&self, base: &str, identity: &Value) -> Answer {
        let response = self
            .http
            .post(format!("{base}/v2/token/refresh"))
            .body(identity["refresh_token"].as_str().unwrap().to_owned())
            .send()
            .await
            .expect("operator reachable");
        let http = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let json = if http == 200 {
            let key: [u8; 32] = base64_decode(identity["refresh_response_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            serde_json::from_slice(
                &open_bare_response(&key, &base64_decode(&bytes).unwrap()).unwrap(),
            )
            .unwrap()
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer { http, json }
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
