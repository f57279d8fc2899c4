//! An SSP (or DSP): keep the bidstream keys fresh in the background and decrypt the UID2 token of
//! each bid request into a raw UID, without locks or allocation on the bidding path.
//!
//! ```sh
//! UID2_BASE_URL=http://127.0.0.1:8080 UID2_API_KEY=... UID2_SECRET_KEY=... \
//!     cargo run -p uid2-client --example ssp -- <advertising token> <site domain or app name>
//! ```

use std::time::Duration;

use uid2_client::{BidstreamClient, DecryptionStatus};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

#[tokio::main]
async fn main() -> Result<(), uid2_client::Error> {
    let mut args = std::env::args().skip(1);
    let token = args
        .next()
        .expect("usage: ssp <advertising token> [domain]");
    let domain = args.next();

    let client = BidstreamClient::new(
        &env("UID2_BASE_URL"),
        &env("UID2_API_KEY"),
        &env("UID2_SECRET_KEY"),
    )?;
    // Load the keys once before taking traffic, then refresh them every hour in the background.
    client.refresh().await?;
    let _refresher = client.start_auto_refresh(Duration::from_secs(3600));

    // On each bid request (synchronous, lock-free):
    let result = client.decrypt_token_into_raw_uid(&token, domain.as_deref());
    match result.status {
        DecryptionStatus::Success => println!(
            "raw UID {} (site {:?}, established {:?} ms, client-side generated: {})",
            result.raw_uid.expect("set on success"),
            result.site_id,
            result.established_ms,
            result.is_client_side_generated
        ),
        status => println!("no UID2 for this request: {status}"),
    }
    Ok(())
}
