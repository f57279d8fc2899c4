//! The demo's participants and their credentials.
//!
//! - a publisher site (id 1001, domain `localhost`) with a generator client, an opt-out client
//!   (what a publisher's "forget me" page uses) and a client-side generation key pair;
//! - an SSP (site 2001) with an ID reader client, which decrypts tokens in bid requests;
//! - an advertiser (site 3001) with a mapper client, so anyone (the browser tests, a curious
//!   reader) can check that the SSP sees the same raw UID `/v2/identity/map` gives for an email.
//!
//! They are created once per store. The store never holds API keys (only their hashes), so the
//! keys and secrets are kept in a JSON file beside it and read back on the next start.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use uid2_operator::OperatorConfig;
use uid2_operator::admin::{add_client, add_cstg, add_site};
use uid2_store::{Role, SiteRecord, Store};

/// The publisher's site id.
pub(crate) const PUBLISHER_SITE_ID: i32 = 1001;
/// The publisher's name, as the pages show it.
pub(crate) const PUBLISHER_SITE_NAME: &str = "The Daily Example";
/// The only domain the publisher's pages may generate tokens from (client-side generation).
pub(crate) const PUBLISHER_DOMAIN: &str = "localhost";
/// The SSP's site id.
pub(crate) const SSP_SITE_ID: i32 = 2001;
/// The advertiser's site id.
pub(crate) const ADVERTISER_SITE_ID: i32 = 3001;

/// An API key and its client secret (base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// The API key (`UID2-C-L-1001-…`).
    pub(crate) key: String,
    /// The client secret, base64 of 32 bytes.
    pub(crate) secret: String,
}

/// Everything the publisher, the SSP and the tests need to talk to the operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DemoCredentials {
    /// The publisher's server: `/v2/token/generate` (role generator).
    pub(crate) publisher: Credentials,
    /// The publisher's opt-out handling: `/v2/token/logout` (role optout).
    pub(crate) publisher_optout: Credentials,
    /// The SSP: `/v2/key/bidstream` (role id_reader).
    pub(crate) ssp: Credentials,
    /// The advertiser: `/v2/identity/map` (role mapper).
    pub(crate) advertiser: Credentials,
    /// Client-side generation: the subscription id the publisher's pages send.
    pub(crate) cstg_subscription_id: String,
    /// Client-side generation: the operator's public key (`UID2-X-L-…`) the pages encrypt to.
    pub(crate) cstg_public_key: String,
}

impl DemoCredentials {
    /// Whether every client of these credentials is still known to `store` (it may have been
    /// replaced by a fresh one since the file was written).
    async fn known_to(&self, store: &dyn Store) -> Result<bool> {
        let clients = store.clients().await?;
        let known = |c: &Credentials| {
            clients
                .iter()
                .any(|r| !r.disabled && c.key.starts_with(&format!("{}.", r.key_id)))
        };
        let cstg = store.cstg_keypairs().await?;
        Ok([
            &self.publisher,
            &self.publisher_optout,
            &self.ssp,
            &self.advertiser,
        ]
        .into_iter()
        .all(known)
            && cstg
                .iter()
                .any(|k| !k.disabled && k.subscription_id == self.cstg_subscription_id))
    }
}

/// Loads the demo's credentials from `path`, or creates the sites, clients and key pair (and
/// writes the file) when the file is missing or belongs to another store.
pub(crate) async fn ensure(
    store: &dyn Store,
    config: &OperatorConfig,
    path: &Path,
    now_ms: i64,
) -> Result<DemoCredentials> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let saved: DemoCredentials = serde_json::from_str(&text)
            .with_context(|| format!("reading {} (delete it to start over)", path.display()))?;
        if saved.known_to(store).await? {
            return Ok(saved);
        }
        tracing::info!(path = %path.display(), "credentials belong to another store; creating new ones");
    }
    let credentials = create(store, config, now_ms).await?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(path, serde_json::to_string_pretty(&credentials)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(credentials)
}

/// Writes `bytes` to `path`, readable by its owner only (on Unix): it holds API secrets.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The mode applies to a new file only: one an older demo left readable is narrowed too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)
}

/// Creates the three sites, the four clients and the CSTG key pair.
async fn create(
    store: &dyn Store,
    config: &OperatorConfig,
    now_ms: i64,
) -> Result<DemoCredentials> {
    let mut rng = rand::rng();
    let site = |id, name: &str, domains: &[&str]| SiteRecord {
        id,
        name: name.to_owned(),
        enabled: true,
        domain_names: domains.iter().map(|d| (*d).to_owned()).collect(),
        app_names: vec![],
        created_s: now_ms / 1000,
    };
    let sites = [
        site(PUBLISHER_SITE_ID, PUBLISHER_SITE_NAME, &[PUBLISHER_DOMAIN]),
        site(SSP_SITE_ID, "Demo SSP", &[]),
        site(ADVERTISER_SITE_ID, "Demo Advertiser", &[]),
    ];
    for s in sites {
        add_site(store, s, now_ms, &mut rng).await?;
    }
    // Client names are unique in the store: a second set (after the file was lost) gets new ones.
    let suffix = now_ms.to_string();
    let mut client = async |name: &str, site_id: i32, role: Role| -> Result<Credentials> {
        let made = add_client(
            store,
            config,
            &format!("demo-{name}-{suffix}"),
            site_id,
            vec![role],
            now_ms,
            &mut rng,
        )
        .await?;
        Ok(Credentials {
            key: made.api_key,
            secret: made.secret,
        })
    };
    let publisher = client("publisher", PUBLISHER_SITE_ID, Role::Generator).await?;
    let publisher_optout = client("publisher-optout", PUBLISHER_SITE_ID, Role::Optout).await?;
    let ssp = client("ssp", SSP_SITE_ID, Role::IdReader).await?;
    let advertiser = client("advertiser", ADVERTISER_SITE_ID, Role::Mapper).await?;
    let cstg = add_cstg(store, config, PUBLISHER_SITE_ID, now_ms, &mut rand::rng()).await?;
    Ok(DemoCredentials {
        publisher,
        publisher_optout,
        ssp,
        advertiser,
        cstg_subscription_id: cstg.subscription_id,
        cstg_public_key: cstg.public_key,
    })
}
