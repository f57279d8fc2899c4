//! `uid2-demo`: the UID2 publisher flow end to end, in one command.
//!
//! ```sh
//! cargo run -p uid2-demo
//! ```
//!
//! starts three HTTP servers and prints their URLs:
//! - the **operator** ([`operator`]): this project's UID2 operator with its own SQLite store
//!   (`uid2-data/demo/` by default), serving the browser SDK at `/static/js/uid2-sdk.js`;
//! - a **publisher** site ([`publisher`]): log in, get a UID2 token, see it refresh, send an ad
//!   request, log out, opt out; and a page with client-side token generation;
//! - an **SSP** ([`ssp`]): decrypts the advertising tokens of ad requests.
//!
//! The operator runs in this process, through the `uid2-operator` library, rather than as a
//! spawned `uid2 serve`: the demo is then one binary that `cargo run` builds on its own (no
//! second binary to build and find on the path, no child process to clean up), it starts in
//! well under a second, and it still runs exactly the routes, snapshot and store sync that
//! `uid2 serve` runs: both hand `uid2_operator::http::router` the same `Operator`.
//!
//! Once everything listens, one line `UID2_DEMO_READY {json}` gives the URLs (and the path of
//! the credentials file) to scripts and tests; port 0 picks a free port.

mod operator;
mod publisher;
mod setup;
mod ssp;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;
use tokio::net::TcpListener;
use uid2_client::{BidstreamClient, OptOutClient, PublisherClient};
use uid2_operator::OperatorConfig;
use uid2_operator::http::server::ConnectionLimits;

use crate::publisher::{Publisher, PublisherSettings};
use crate::ssp::Ssp;

/// The UID2 demo: an operator, a publisher site and an SSP, in one process.
#[derive(Debug, Parser)]
#[command(name = "uid2-demo", version, about)]
struct Args {
    /// Operator port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    operator_port: u16,
    /// Publisher site port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    publisher_port: u16,
    /// SSP port (0: any free port).
    #[arg(long, default_value_t = 3001)]
    ssp_port: u16,
    /// Address the three servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Host name in the URLs given to browsers. Client-side token generation only works from
    /// the publisher site's domain, `localhost` (the operator refuses IP-address origins).
    #[arg(long, default_value = "localhost")]
    public_host: String,
    /// Directory of the operator's store and the demo's credentials.
    #[arg(long, default_value = "uid2-data/demo")]
    data_dir: PathBuf,
    /// Salt buckets of a new store (production has 1048576; fewer start faster).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    salt_buckets: u64,
    /// Advertising token lifetime, seconds.
    #[arg(long, default_value_t = 60)]
    identity_token_expires_after: u64,
    /// Refresh token lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    refresh_token_expires_after: u64,
    /// Seconds after which the SDK refreshes the token.
    #[arg(long, default_value_t = 10)]
    refresh_identity_token_after: u64,
    /// How often the browser SDK checks its identity, milliseconds (`refreshRetryPeriod`, ≥ 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1000..))]
    refresh_retry_period_ms: u64,
    /// How often the SSP fetches `/v2/key/bidstream`, seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    ssp_key_refresh_secs: u64,
}

impl Args {
    /// The operator's settings: production defaults with the demo's token lifetimes.
    fn operator_config(&self) -> OperatorConfig {
        OperatorConfig {
            identity_token_expires_after: Duration::from_secs(self.identity_token_expires_after),
            refresh_token_expires_after: Duration::from_secs(self.refresh_token_expires_after),
            refresh_identity_token_after: Duration::from_secs(self.refresh_identity_token_after),
            ..OperatorConfig::default()
        }
    }

    /// A listener on the bind address.
    async fn listen(&self, port: u16, what: &str) -> Result<TcpListener> {
        let addr = SocketAddr::new(self.bind, port);
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("{what}: cannot listen on {addr} (choose another port)"))
    }

    /// The URL browsers use for a server listening on `addr`.
    fn public_url(&self, addr: SocketAddr) -> String {
        format!("http://{}:{}", self.public_host, addr.port())
    }
}

/// The line tests and scripts wait for.
#[derive(Debug, Serialize)]
struct Ready<'a> {
    operator: &'a str,
    publisher: &'a str,
    ssp: &'a str,
    credentials: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,uid2_operator=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let store_url = format!("sqlite://{}", args.data_dir.join("uid2.db").display());
    let credentials_path = args.data_dir.join("demo-credentials.json");
    let demo = operator::load(
        &store_url,
        usize::try_from(args.salt_buckets)?,
        &credentials_path,
        args.operator_config(),
    )
    .await?;
    let credentials = demo.credentials;

    let operator_listener = args.listen(args.operator_port, "operator").await?;
    let publisher_listener = args.listen(args.publisher_port, "publisher").await?;
    let ssp_listener = args.listen(args.ssp_port, "SSP").await?;
    let operator_addr = operator_listener.local_addr()?;
    let operator_url = args.public_url(operator_addr);
    let publisher_url = args.public_url(publisher_listener.local_addr()?);
    let ssp_url = args.public_url(ssp_listener.local_addr()?);
    // Server-to-server calls go to the socket itself, whatever `localhost` resolves to.
    let operator_internal = format!("http://{operator_addr}");
    let operator = tokio::spawn(operator::serve(demo.operator, operator_listener));

    let bidstream = BidstreamClient::new(
        &operator_internal,
        &credentials.ssp.key,
        &credentials.ssp.secret,
    )?;
    bidstream
        .refresh()
        .await
        .context("the SSP could not fetch /v2/key/bidstream")?;
    let _key_refresh = bidstream.start_auto_refresh(Duration::from_secs(args.ssp_key_refresh_secs));
    let ssp = Ssp::new(bidstream).router();

    let publisher = Publisher::new(
        PublisherSettings {
            operator_url: operator_url.clone(),
            ssp_url: ssp_url.clone(),
            refresh_retry_period_ms: args.refresh_retry_period_ms,
            cstg_subscription_id: credentials.cstg_subscription_id.clone(),
            cstg_public_key: credentials.cstg_public_key.clone(),
        },
        PublisherClient::new(
            &operator_internal,
            &credentials.publisher.key,
            &credentials.publisher.secret,
        )?,
        OptOutClient::new(
            &operator_internal,
            &credentials.publisher_optout.key,
            &credentials.publisher_optout.secret,
        )?,
    )
    .router();

    // The publisher and the SSP face browsers too: the operator's connection limits apply.
    let publisher = tokio::spawn(serve(publisher_listener, publisher));
    let ssp = tokio::spawn(serve(ssp_listener, ssp));

    println!(
        "UID2 demo running (token refresh after {}s, token lifetime {}s, refresh token lifetime {}s):\n  \
         publisher  {publisher_url}   <- open this\n  \
         SSP        {ssp_url}\n  \
         operator   {operator_url}\n\
         Press Ctrl-C to stop.",
        args.refresh_identity_token_after,
        args.identity_token_expires_after,
        args.refresh_token_expires_after,
    );
    let ready = Ready {
        operator: &operator_url,
        publisher: &publisher_url,
        ssp: &ssp_url,
        credentials: credentials_path.display().to_string(),
    };
    println!("UID2_DEMO_READY {}", serde_json::to_string(&ready)?);
    std::io::stdout().flush().ok();

    tokio::select! {
        r = operator => r.context("operator task")??,
        r = publisher => r.context("publisher task")?,
        r = ssp => r.context("SSP task")?,
        // SIGTERM keeps its default action (exit); Ctrl-C stops the demo politely.
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}

/// Serves one of the demo's own sites (publisher, SSP) until the process ends.
async fn serve(listener: TcpListener, app: axum::Router) {
    uid2_operator::http::server::serve(
        listener,
        app,
        ConnectionLimits::default(),
        std::future::pending(),
    )
    .await;
}
