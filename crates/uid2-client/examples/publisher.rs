//! A publisher: generate a UID2 identity for a signed-in user, keep it in the session, refresh
//! it when due.
//!
//! ```sh
//! UID2_BASE_URL=http://127.0.0.1:8080 UID2_API_KEY=... UID2_SECRET_KEY=... \
//!     cargo run -p uid2-client --example publisher -- user@example.com
//! ```

use uid2_client::{
    IdentityTokens, PublisherClient, TokenGenerateInput, TokenGenerateResponse,
    TokenRefreshResponse, now_ms,
};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let email = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "user@example.com".into());
    let client = PublisherClient::new(
        &env("UID2_BASE_URL"),
        &env("UID2_API_KEY"),
        &env("UID2_SECRET_KEY"),
    )?;

    // When the user signs in (and has agreed to targeted advertising):
    let identity = match client
        .generate_token(&TokenGenerateInput::from_email(&email))
        .await?
    {
        TokenGenerateResponse::Success(identity) => identity,
        TokenGenerateResponse::OptOut => {
            println!("{email} has opted out of UID2: serve pages without a token");
            return Ok(());
        }
        TokenGenerateResponse::InsufficientUserConsent => {
            println!("no consent for {email}");
            return Ok(());
        }
    };
    println!("advertising token: {}", identity.advertising_token);

    // Keep it in the user's session…
    let session = identity.to_json_string();

    // …and on a later page view, refresh it once it is due.
    let identity = IdentityTokens::from_json_str(&session)?;
    if identity.is_due_for_refresh(now_ms()) && identity.is_refreshable(now_ms()) {
        match client.refresh_token(&identity).await? {
            TokenRefreshResponse::Success(fresh) => {
                println!("refreshed: {}", fresh.advertising_token)
            }
            TokenRefreshResponse::OptOut => println!("opted out since: drop the identity"),
        }
    } else {
        println!(
            "not due for refresh until {} (ms); expires {}",
            identity.refresh_from, identity.identity_expires
        );
    }
    Ok(())
}
