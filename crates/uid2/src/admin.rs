//! The admin commands: `init`, clients, sites, CSTG key pairs, opt-outs. Only `uid2 init` (and
//! `uid2 serve`) create and initialise a store; every other command opens the store named by
//! `--store` and refuses one that is missing or not initialised, so a mistyped `--store` cannot
//! record an opt-out (or create a client) in a store no operator reads. Writes go through the
//! same code the operator uses, with the deployment settings the store records (so an opt-out
//! carries the raw UID the operators map to); a running operator sees the change within one sync
//! interval.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use uid2_operator::admin::{self, Bootstrap, ensure_initialized};
use uid2_operator::deployment::{SettledStore, settle};
use uid2_operator::{OperatorConfig, now_ms};
use uid2_proto::identity::{HashedIdentity, IdentityType};
use uid2_proto::salt::RawUidSettings;
use uid2_store::{SiteRecord, Store, parse_roles};

use crate::settings::GlobalArgs;

/// `uid2 client …`
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Creates a client and prints its API key and secret (shown only now).
    Add {
        /// Unique name (not of the form of a key id, `UID2-C-…`: commands find clients by
        /// either).
        #[arg(long)]
        name: String,
        /// The site the client acts for.
        #[arg(long)]
        site_id: i32,
        /// Comma-separated: generator, id_reader, sharer, mapper, optout.
        #[arg(long)]
        roles: String,
        /// Print `{"key","secret","site_id","roles","name"}`.
        #[arg(long)]
        json: bool,
    },
    /// Lists clients (never their keys).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disables a client: its key is refused from the next sync on.
    Disable {
        /// Key id (as `client list` shows it), name, or the API key itself.
        client: String,
    },
    /// Enables a disabled client again.
    Enable {
        /// Key id (as `client list` shows it), name, or the API key itself.
        client: String,
    },
    /// Gives a client a new API key and secret (shown only now), for when the old ones may
    /// have leaked: the old key is refused from the next sync on; name, site, roles stay.
    Rekey {
        /// Key id (as `client list` shows it), name, or the API key itself.
        client: String,
        /// Print `{"key","secret","site_id","roles","name"}`.
        #[arg(long)]
        json: bool,
    },
}

/// `uid2 site …`
#[derive(Debug, Subcommand)]
pub(crate) enum SiteCommand {
    /// Adds a site (it gets its own keyset), or updates one: its name, domains and app names
    /// become those given.
    Add {
        /// Site id (above 2).
        #[arg(long)]
        id: i32,
        /// Name.
        #[arg(long)]
        name: String,
        /// Domain allowed to generate tokens client-side (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// App name allowed to generate tokens client-side (repeatable).
        #[arg(long = "app-name")]
        app_names: Vec<String>,
    },
    /// Lists sites.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `uid2 cstg …`
#[derive(Debug, Subcommand)]
pub(crate) enum CstgCommand {
    /// Creates a client-side token generation key pair for a site.
    Add {
        /// The site.
        #[arg(long)]
        site_id: i32,
        /// Print `{"subscription_id","public_key","site_id"}`.
        #[arg(long)]
        json: bool,
    },
    /// Lists key pairs (public halves).
    List {
        /// Print JSON (`subscription_id`, `site_id`, `public_key`, `disabled` of each).
        #[arg(long)]
        json: bool,
    },
}

/// `uid2 optout …`
#[derive(Debug, Subcommand)]
pub(crate) enum OptoutCommand {
    /// Records an opt-out (durable before this returns).
    Add(OptoutTarget),
}

/// Exactly one identity.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct OptoutTarget {
    /// An email address.
    #[arg(long)]
    email: Option<String>,
    /// An E.164 phone number.
    #[arg(long)]
    phone: Option<String>,
    /// Base64 (or hex) SHA-256 of a normalised email.
    #[arg(long)]
    email_hash: Option<String>,
    /// Base64 (or hex) SHA-256 of a phone number.
    #[arg(long)]
    phone_hash: Option<String>,
}

impl OptoutTarget {
    fn identity(&self) -> Result<HashedIdentity> {
        let parsed = match (&self.email, &self.phone, &self.email_hash, &self.phone_hash) {
            (Some(e), ..) => HashedIdentity::from_email(e),
            (_, Some(p), ..) => HashedIdentity::from_phone(p),
            (_, _, Some(h), _) => HashedIdentity::from_hash(IdentityType::Email, h),
            (_, _, _, Some(h)) => HashedIdentity::from_hash(IdentityType::Phone, h),
            _ => bail!("give one of --email, --phone, --email-hash, --phone-hash"),
        };
        Ok(parsed?)
    }
}

/// Why a command refuses the store `described` (never the URL itself: it may hold a password).
fn not_initialized(described: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the store {described} is not initialised: create it with `uid2 init` and the same \
         --store (or start `uid2 serve`, which initialises an empty store), or check --store"
    )
}

/// What is added to a deployment-settings error: where the settings given came from.
pub(crate) const SETTINGS_CONTEXT: &str = "checking the deployment settings given \
    (--identity-scope, --environment, --v3-raw-uids, their UID2_* variables or the config file) \
    against the store";

/// An initialised store, with the operator settings that go with it.
pub(crate) struct AdminStore {
    /// The store, with its deployment settings.
    pub settled: SettledStore,
    /// The default operator settings with the store's deployment settings.
    pub config: OperatorConfig,
}

/// Opens the initialised store named by `--store`; a missing or empty one is an error naming
/// `uid2 init`, and nothing is created (no SQLite file, no schema). The deployment settings are the
/// store's (a store that predates recording them adopts those given, or the defaults, once);
/// one given that disagrees is an error.
pub(crate) async fn open_store(global: &GlobalArgs) -> Result<AdminStore> {
    let common = global.resolve()?;
    let store = open_initialized(&common.store).await?;
    let settled = settle(store, &common.given)
        .await
        .context(SETTINGS_CONTEXT)?;
    Ok(AdminStore {
        config: OperatorConfig::default().with_raw_uid_settings(settled.settings()),
        settled,
    })
}

/// The initialised store at `url`; a missing or empty one is an error naming `uid2 init`, and
/// nothing is created.
async fn open_initialized(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    let store = uid2_store::open_existing(url)
        .await
        .with_context(|| format!("opening store {}", uid2_store::redact_url(url)))?
        .ok_or_else(|| not_initialized(&uid2_store::redact_url(url)))?;
    if !store.is_initialized().await? {
        return Err(not_initialized(&store.describe()));
    }
    Ok(store)
}

/// Prints what bootstrapping created; the secret is shown only here, once.
pub(crate) fn print_bootstrap(
    store: &str,
    buckets: usize,
    deployment: &RawUidSettings,
    boot: &Bootstrap,
) -> Result<()> {
    let c = &boot.demo_client;
    say!(
        "Initialised an empty store at {store} ({buckets} salt buckets).\n\
         Identity scope {scope}, environment {environment}, v3 raw UIDs {v3}: fixed for this store.\n\
         Demo publisher client (site {site}, every role) - shown once, keep it:\n  \
         API key: {key}\n  secret:  {secret}\n\
         Client-side generation for site {site}: subscription id {sub}, public key\n  {public}",
        scope = deployment.scope.as_str(),
        environment = deployment.environment.as_str(),
        v3 = deployment.v3_from_salts,
        site = c.record.site_id,
        key = c.api_key,
        secret = c.secret,
        sub = boot.demo_cstg.subscription_id,
        public = boot.demo_cstg.public_key,
    )
    .with_context(|| {
        format!(
            "the store was initialised, but the demo client's key could not be shown: \
             `uid2 client rekey {}` gives it a new one",
            c.record.name
        )
    })
}

/// `uid2 init`: creates and initialises the store with the deployment settings given (or the
/// defaults), keys, salts, a demo site and client (printed once); on a store that is already
/// initialised it changes nothing and says so (settings given must agree with the store's).
pub(crate) async fn init(global: &GlobalArgs) -> Result<()> {
    let common = global.resolve()?;
    let url = &common.store;
    let store = uid2_store::open(url)
        .await
        .with_context(|| format!("opening store {}", uid2_store::redact_url(url)))?;
    let deployment = common.given.or_defaults();
    let config = OperatorConfig::default().with_raw_uid_settings(deployment);
    let buckets = common.salt_buckets;
    let described = store.describe();
    match ensure_initialized(store.as_ref(), &config, buckets, now_ms(), &mut rand::rng()).await? {
        Some(boot) => print_bootstrap(&described, buckets, &deployment, &boot)?,
        None => {
            settle(store, &common.given)
                .await
                .context(SETTINGS_CONTEXT)?;
            say!("The store {described} is already initialised; nothing changed.")?;
        }
    }
    Ok(())
}

pub(crate) async fn client(global: &GlobalArgs, command: ClientCommand) -> Result<()> {
    let AdminStore { settled, config } = open_store(global).await?;
    let store = settled.store();
    match command {
        ClientCommand::Add {
            name,
            site_id,
            roles,
            json,
        } => {
            let roles = parse_roles(&roles)?;
            let c = admin::add_client(
                store.as_ref(),
                &config,
                &name,
                site_id,
                roles,
                now_ms(),
                &mut rand::rng(),
            )
            .await?;
            print_new_client(&c, json)?;
        }
        ClientCommand::List { json } => {
            let clients = store.clients().await?;
            if json {
                let list: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        json!({"name": c.name, "key_id": c.key_id, "site_id": c.site_id,
                               "roles": c.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(), "disabled": c.disabled})
                    })
                    .collect();
                say!("{}", serde_json::Value::Array(list))?;
            } else {
                for c in clients {
                    let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
                    let state = if c.disabled { "disabled" } else { "enabled" };
                    say!(
                        "{:<20} {:<24} site {:<6} {:<8} {}",
                        c.name,
                        c.key_id,
                        c.site_id,
                        state,
                        roles.join(",")
                    )?;
                }
            }
        }
        ClientCommand::Disable { client } => set_disabled(store.as_ref(), &client, true).await?,
        ClientCommand::Enable { client } => set_disabled(store.as_ref(), &client, false).await?,
        ClientCommand::Rekey { client, json } => {
            let c = admin::rekey_client(store.as_ref(), &config, &client, &mut rand::rng()).await?;
            print_new_client(&c, json)?;
        }
    }
    Ok(())
}

/// Prints a client's new API key and secret, the only time they are shown; if they cannot be
/// shown, the error says how to get new ones.
fn print_new_client(c: &admin::NewClient, json: bool) -> Result<()> {
    let roles: Vec<&str> = c.record.roles.iter().map(|r| r.as_str()).collect();
    if json {
        say!(
            "{}",
            json!({"key": c.api_key, "secret": c.secret, "site_id": c.record.site_id, "roles": roles, "name": c.record.name})
        )
    } else {
        say!(
            "client {name} (site {site_id}, roles {roles}{state})\n  API key: {key}\n  secret:  {secret}",
            name = c.record.name,
            site_id = c.record.site_id,
            roles = roles.join(","),
            state = if c.record.disabled { ", disabled" } else { "" },
            key = c.api_key,
            secret = c.secret
        )
    }
    .with_context(|| {
        format!(
            "client {name} has a new key that could not be shown: `uid2 client rekey {name}` \
             gives it another",
            name = c.record.name
        )
    })
}

async fn set_disabled(store: &dyn Store, named: &str, disabled: bool) -> Result<()> {
    let client = admin::find_client(store, named).await?;
    // By key id, which names exactly one client (never echoing an API key's secret part).
    if !store.set_client_disabled(&client.key_id, disabled).await? {
        bail!(
            "client {} changed meanwhile; run the command again",
            client.name
        );
    }
    say!(
        "client {} ({}) {}",
        client.name,
        client.key_id,
        if disabled { "disabled" } else { "enabled" }
    )
}

pub(crate) async fn site(global: &GlobalArgs, command: SiteCommand) -> Result<()> {
    let store = open_store(global).await?.settled.store().clone();
    match command {
        SiteCommand::Add {
            id,
            name,
            domains,
            app_names,
        } => {
            let existing = store.sites().await?.into_iter().find(|s| s.id == id);
            let site = SiteRecord {
                id,
                name: name.clone(),
                enabled: true,
                domain_names: domains,
                app_names,
                created_s: existing.as_ref().map_or(now_ms() / 1000, |s| s.created_s),
            };
            let site = admin::add_site(store.as_ref(), site, now_ms(), &mut rand::rng()).await?;
            match existing {
                None => say!("site {id} ({name}) added")?,
                // An update replaces the allow-lists: say so, since a domain left out of the
                // command is one client-side generation now refuses.
                Some(old) => say!(
                    "site {id} ({name}) updated: domains {:?} -> {:?}, app names {:?} -> {:?}",
                    old.domain_names,
                    site.domain_names,
                    old.app_names,
                    site.app_names
                )?,
            }
        }
        SiteCommand::List { json } => {
            let sites = store.sites().await?;
            if json {
                let list: Vec<_> = sites
                    .iter()
                    .map(|s| json!({"id": s.id, "name": s.name, "domain_names": s.domain_names, "app_names": s.app_names}))
                    .collect();
                say!("{}", serde_json::Value::Array(list))?;
            } else {
                for s in sites {
                    say!(
                        "{:<6} {:<24} domains {:?} apps {:?}",
                        s.id,
                        s.name,
                        s.domain_names,
                        s.app_names
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn cstg(global: &GlobalArgs, command: CstgCommand) -> Result<()> {
    let AdminStore { settled, config } = open_store(global).await?;
    let store = settled.store();
    match command {
        CstgCommand::Add { site_id, json } => {
            let k = admin::add_cstg(store.as_ref(), &config, site_id, now_ms(), &mut rand::rng())
                .await?;
            let site = store.sites().await?.into_iter().find(|s| s.id == site_id);
            if site.is_some_and(|s| s.domain_names.is_empty() && s.app_names.is_empty()) {
                eprintln!(
                    "note: site {site_id} has no domain or app names yet: its pages' client-side \
                     requests are refused (403 invalid_http_origin) until it has some \
                     (uid2 site add --id {site_id} --name … --domain example.com)"
                );
            }
            if json {
                say!(
                    "{}",
                    json!({"subscription_id": k.subscription_id, "public_key": k.public_key, "site_id": k.site_id})
                )?;
            } else {
                say!(
                    "site {site_id}\n  subscription id: {}\n  public key:      {}",
                    k.subscription_id,
                    k.public_key
                )?;
            }
        }
        CstgCommand::List { json: true } => {
            let list: Vec<_> = store
                .cstg_keypairs()
                .await?
                .into_iter()
                .map(|k| {
                    json!({"subscription_id": k.subscription_id, "site_id": k.site_id,
                           "public_key": k.public_key, "disabled": k.disabled})
                })
                .collect();
            say!("{}", serde_json::Value::Array(list))?;
        }
        CstgCommand::List { json: false } => {
            for k in store.cstg_keypairs().await? {
                let state = if k.disabled { "disabled" } else { "enabled" };
                say!(
                    "{:<12} site {:<6} {:<8} {}",
                    k.subscription_id,
                    k.site_id,
                    state,
                    k.public_key
                )?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn optout(global: &GlobalArgs, command: OptoutCommand) -> Result<()> {
    let AdminStore { settled, .. } = open_store(global).await?;
    let OptoutCommand::Add(target) = command;
    let identity = target.identity()?;
    let record = admin::add_optout(&settled, &identity, now_ms()).await?;
    say!("opt-out recorded (sequence {})", record.seq)?;
    Ok(())
}

/// Flags of `uid2 backup`.
#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// The new file to write (never overwritten); restore by pointing `--store` at it.
    #[arg(long)]
    to: std::path::PathBuf,
}

/// `uid2 backup --to PATH`: a consistent copy of the store, taken without stopping anyone. An
/// uninitialised or missing store is an error; opening it brings its schema up to date, as
/// every command does, and changes nothing else.
pub(crate) async fn backup(global: &GlobalArgs, args: BackupArgs) -> Result<()> {
    let store = open_initialized(&global.resolve()?.store).await?;
    let bytes = store
        .back_up(&args.to)
        .await
        .with_context(|| format!("backing up {}", store.describe()))?;
    say!(
        "Backed up {} to {} ({bytes} bytes); serve it with --store sqlite://{}",
        store.describe(),
        args.to.display(),
        args.to.display()
    )?;
    Ok(())
}
