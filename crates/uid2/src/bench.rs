//! `uid2 bench`: a load generator that sends real encrypted requests to an operator and, in the
//! same invocation, the same load to the operator's `/ops/baseline` route (same request and
//! response sizes, no UID2 work), so each endpoint is reported as a ratio to the HTTP stack
//! measured on the same machine at the same time.
//!
//! The operator must run with `--bench-baseline true`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use uid2_proto::cipher::GcmKey;
use uid2_proto::encoding::{base64_decode, base64_decode_array, base64_encode};
use uid2_proto::envelope::{open_bare_response, open_response, seal_request};
use uid2_proto::identity::HashedIdentity;
use uid2_proto::wire::{AnyResponse, IdentityTokens, ResponseStatus};

use crate::settings::ApiClientArgs;

/// Endpoints the load generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Endpoint {
    /// `/v2/token/generate`, a new email each request.
    Generate,
    /// `/v2/token/refresh` with one refresh token.
    Refresh,
    /// `/v2/identity/map` with `--map-size` emails a call.
    Map,
}

/// Flags of `uid2 bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The operator and an API key (GENERATOR for generate/refresh, MAPPER for map).
    #[command(flatten)]
    api: ApiClientArgs,
    /// Endpoints to measure (repeatable).
    #[arg(long = "endpoint", value_enum, default_values_t = [Endpoint::Generate, Endpoint::Refresh, Endpoint::Map])]
    endpoints: Vec<Endpoint>,
    /// Requests in flight.
    #[arg(long, default_value_t = 32,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Emails per identity-map call (the operator takes bodies of up to 1 MiB: about 30,000).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    map_size: usize,
    /// Print one JSON object per measurement instead of a table.
    #[arg(long)]
    json: bool,
}

fn now_ms() -> i64 {
    uid2_operator::now_ms()
}

/// Builds one request: (path, body) plus the state needed to check the answer.
#[derive(Clone)]
struct Target {
    base: String,
    key: String,
    secret: Arc<GcmKey>,
    endpoint: Endpoint,
    refresh: Option<(String, [u8; 32])>,
    map_size: usize,
}

enum Check {
    Envelope([u8; 8]),
    Refresh([u8; 32]),
    None,
}

impl Target {
    fn build(&self, n: u64, baseline: Option<usize>) -> (String, Vec<u8>, Check) {
        let (path, body, check) = match self.endpoint {
            Endpoint::Generate => {
                let email = format!("bench-user-{n}@example.com");
                let hash = HashedIdentity::from_email(&email)
                    .expect("valid email")
                    .hash;
                let json = format!(r#"{{"email_hash":"{hash}"}}"#);
                self.envelope("/v2/token/generate", json.as_bytes())
            }
            Endpoint::Map => {
                let emails: Vec<String> = (0..self.map_size)
                    .map(|i| format!("map-{n}-{i}@example.com"))
                    .collect();
                let json = serde_json::json!({ "email": emails }).to_string();
                self.envelope("/v2/identity/map", json.as_bytes())
            }
            Endpoint::Refresh => {
                let (token, key) = self.refresh.clone().expect("prepared");
                (
                    "/v2/token/refresh".to_owned(),
                    token.into_bytes(),
                    Check::Refresh(key),
                )
            }
        };
        match baseline {
            Some(size) => (format!("/ops/baseline?size={size}"), body, Check::None),
            None => (path, body, check),
        }
    }

    fn envelope(&self, path: &str, json: &[u8]) -> (String, Vec<u8>, Check) {
        let mut rng = rand::rng();
        let mut nonce = [0u8; 8];
        rand::Rng::fill_bytes(&mut rng, &mut nonce);
        let sealed = seal_request(&self.secret, now_ms(), nonce, json, &mut rng);
        (
            path.to_owned(),
            base64_encode(&sealed).into_bytes(),
            Check::Envelope(nonce),
        )
    }

    fn verify(&self, check: &Check, body: &[u8]) -> Result<Vec<u8>> {
        let json = match check {
            Check::None => return Ok(Vec::new()),
            Check::Envelope(nonce) => {
                open_response(&self.secret, &base64_decode(body)?, *nonce)?.payload
            }
            Check::Refresh(key) => open_bare_response(key, &base64_decode(body)?)?,
        };
        let parsed: AnyResponse = serde_json::from_slice(&json)?;
        ensure!(
            parsed.status == ResponseStatus::Success,
            "status {:?}",
            parsed.status
        );
        Ok(json)
    }
}

struct Measurement {
    name: String,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Measurement {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

async fn send(
    http: &reqwest::Client,
    target: &Target,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>> {
    let response = http
        .post(format!("{}{}", target.base, path))
        .bearer_auth(&target.key)
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes.to_vec())
}

async fn measure(
    http: &reqwest::Client,
    target: &Target,
    name: String,
    baseline: Option<usize>,
    concurrency: usize,
    duration: Duration,
) -> Measurement {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (http, target) = (http.clone(), target.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut n = (w as u64) << 40;
            while Instant::now() < deadline {
                n += 1;
                let (path, body, check) = target.build(n, baseline);
                let t = Instant::now();
                let result = send(&http, &target, &path, body)
                    .await
                    .and_then(|b| target.verify(&check, &b));
                latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                match result {
                    Ok(_) => ok += 1,
                    Err(_) => errors += 1,
                }
            }
            (ok, errors, latencies)
        }));
    }
    let mut m = Measurement {
        name,
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        if let Ok((ok, errors, lat)) = w.await {
            m.requests += ok;
            m.errors += errors;
            m.latencies_us.extend(lat);
        }
    }
    m.elapsed = started.elapsed();
    m.latencies_us.sort_unstable();
    m
}

/// Runs one request to learn sizes, and for refresh obtains a refresh token.
async fn prepare(http: &reqwest::Client, target: &mut Target) -> Result<(usize, usize)> {
    if target.endpoint == Endpoint::Refresh {
        let generate = Target {
            endpoint: Endpoint::Generate,
            ..target.clone()
        };
        let (path, body, check) = generate.build(1, None);
        let json = generate.verify(&check, &send(http, &generate, &path, body).await?)?;
        let parsed: uid2_proto::wire::Envelope<IdentityTokens> = serde_json::from_slice(&json)?;
        let key = parsed
            .body
            .refresh_response_key
            .context("no refresh_response_key")?;
        let key: [u8; 32] = base64_decode_array(&key)
            .map_err(|_| anyhow::anyhow!("refresh_response_key is not 32 bytes of base64"))?;
        target.refresh = Some((parsed.body.refresh_token, key));
    }
    let (path, body, check) = target.build(0, None);
    let request_len = body.len();
    let response = send(http, target, &path, body).await?;
    target.verify(&check, &response).context("sample request")?;
    // Without its baseline every ratio would be meaningless: say so before measuring anything.
    let (path, body, _) = target.build(0, Some(response.len()));
    send(http, target, &path, body).await.with_context(|| {
        format!(
            "the operator at {} does not answer its baseline route; start it with `uid2 serve --bench-baseline true`",
            target.base
        )
    })?;
    Ok((request_len, response.len()))
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    let secret: [u8; 32] = base64_decode_array(&args.api.secret)
        .map_err(|_| anyhow::anyhow!("the secret is not 32 bytes of base64"))?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let duration = Duration::from_secs(args.duration);
    if !args.json {
        say!(
            "{:<22} {:>10} {:>9} {:>9} {:>7} {:>9}",
            "measurement",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "ratio"
        )?;
    }
    for endpoint in &args.endpoints {
        let mut target = Target {
            base: args.api.url.trim_end_matches('/').to_owned(),
            key: args.api.key.clone(),
            secret: Arc::new(GcmKey::new(&secret)),
            endpoint: *endpoint,
            refresh: None,
            map_size: args.map_size,
        };
        let (_, response_len) = prepare(&http, &mut target)
            .await
            .with_context(|| format!("preparing {endpoint:?}"))?;
        let name = format!("{endpoint:?}").to_lowercase();
        let base = measure(
            &http,
            &target,
            format!("baseline ({name})"),
            Some(response_len),
            args.concurrency,
            duration,
        )
        .await;
        let real = measure(&http, &target, name, None, args.concurrency, duration).await;
        let ratio = real.rate() / base.rate().max(f64::MIN_POSITIVE);
        for (m, r) in [(&base, None), (&real, Some(ratio))] {
            if args.json {
                say!(
                    "{}",
                    serde_json::json!({"name": m.name, "requests_per_second": m.rate(), "p50_ms": m.percentile_ms(0.5),
                        "p99_ms": m.percentile_ms(0.99), "errors": m.errors, "ratio_to_baseline": r,
                        "concurrency": args.concurrency, "seconds": m.elapsed.as_secs_f64()})
                )?;
            } else {
                say!(
                    "{:<22} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>9}",
                    m.name,
                    m.rate(),
                    m.percentile_ms(0.5),
                    m.percentile_ms(0.99),
                    m.errors,
                    r.map(|r| format!("{r:.2}x")).unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}
