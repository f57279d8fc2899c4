//! Administration: creating clients, sites, keys, salts, CSTG key pairs and opt-outs in a store,
//! and bootstrapping an empty store. Used by the CLI and by `uid2 serve` on first start.

use uid2_proto::CryptoRng;
use uid2_proto::cipher::sha512;
use uid2_proto::cstg::CstgKeyPair;
use uid2_proto::encoding::base64_encode;
use uid2_proto::identity::HashedIdentity;
use uid2_proto::key::{
    FALLBACK_PUBLISHER_KEYSET_ID, FALLBACK_PUBLISHER_SITE_ID, MASTER_KEYSET_ID, MASTER_SITE_ID,
    REFRESH_KEYSET_ID, REFRESH_SITE_ID,
};
use uid2_proto::salt::{BucketSecret, FirstLevelHash, SaltBucket};
use uid2_store::{
    ClientRecord, Conditional, CstgKeypairRecord, InitialState, KeyChange, KeyRecord, KeysetRecord,
    NewKey, OptOutRecord, Precondition, Role, SaltMeta, SaltState, SiteKeyset, SiteRecord, Store,
    StoreError,
};

use crate::clients::lookup_hash;
use crate::config::OperatorConfig;
use crate::deployment::SettledStore;
use crate::domain_names::site_domain_name;
use crate::snapshot::SpecialIdentities;

/// How long a new key stays valid.
pub const KEY_LIFETIME_S: i64 = 365 * 86_400;
/// New keys activate this long before "now", so operators whose clocks lag slightly agree.
const KEY_ACTIVATION_BACKDATE_S: i64 = 60;
/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;
/// New buckets come due for rotation over this many days, an equal share each day starting
/// today, so that a daily rotation of 1/30 of the buckets (as the official one) finds its
/// share due every day.
const BUCKET_REFRESH_SPREAD_DAYS: i64 = 30;
/// The site of the demo publisher created on an empty store.
pub const DEMO_SITE_ID: i32 = 999;
/// First id of generated salt buckets (as in the official fixtures).
const FIRST_BUCKET_ID: u32 = 1_000_000;

/// An administrative action that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

const KEY_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_text(rng: &mut (impl CryptoRng + ?Sized), alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % alphabet.len();
            loop {
                let b = (rng.next_u32() & 0xff) as usize;
                if b < limit {
                    return alphabet[b % alphabet.len()] as char;
                }
            }
        })
        .collect()
}

fn random_b64(rng: &mut (impl CryptoRng + ?Sized), bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill_bytes(&mut buf);
    base64_encode(&buf)
}

fn random_secret(rng: &mut (impl CryptoRng + ?Sized)) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// A client just created: the key and secret exist only here, never in the store.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// The stored record.
    pub record: ClientRecord,
    /// The API key (`UID2-C-L-999-abcdef.…`).
    pub api_key: String,
    /// The client secret, base64.
    pub secret: String,
}

/// Makes a client with a fresh API key and secret.
pub fn make_client(
    pepper: &str,
    config: &OperatorConfig,
    name: &str,
    site_id: i32,
    roles: Vec<Role>,
    now_s: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> NewClient {
    let key_id = format!(
        "{}-C-{}-{}-{}",
        config.scope_prefix(),
        config.key_environment_letter(),
        site_id,
        random_text(rng, KEY_CHARS, 6)
    );
    let api_key = format!("{key_id}.{}", random_text(rng, SECRET_CHARS, 38));
    let secret = random_secret(rng);
    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let record = ClientRecord {
        key_id,
        name: name.to_owned(),
        site_id,
        roles,
        secret,
        lookup_hash: lookup_hash(pepper, &api_key),
        key_salt: base64_encode(&salt),
        key_hash: base64_encode(&sha512(&[&salt, api_key.as_bytes()])),
        disabled: false,
        created_s: now_s,
    };
    NewClient {
        record,
        api_key,
        secret: base64_encode(&secret),
    }
}

fn keyset(id: i32, site_id: i32, name: &str, now_s: i64) -> KeysetRecord {
    KeysetRecord {
        id,
        site_id,
        name: name.to_owned(),
        allowed_sites: None,
        enabled: true,
        is_default: true,
        created_s: now_s,
    }
}

/// A key for `keyset_id` activating at `activates_s`, for the store to give an id.
pub(crate) fn new_key(
    keyset_id: i32,
    activates_s: i64,
    now_s: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> NewKey {
    NewKey {
        keyset_id,
        secret: random_secret(rng),
        created_s: now_s,
        activates_s,
        expires_s: activates_s + KEY_LIFETIME_S,
    }
}

/// A key with id `id` for `keyset_id` activating at `activates_s`.
pub fn make_key(
    id: u32,
    keyset_id: i32,
    activates_s: i64,
    now_s: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> KeyRecord {
    new_key(keyset_id, activates_s, now_s, rng).with_id(id)
}

/// Generates `count` salt buckets.
pub fn make_salt_buckets(
    count: usize,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<SaltBucket> {
    (0..count)
        .map(|i| SaltBucket {
            id: FIRST_BUCKET_ID + i as u32,
            last_updated_ms: now_ms,
            refresh_from_ms: Some(now_ms + (i as i64 % BUCKET_REFRESH_SPREAD_DAYS) * DAY_MS),
            current: BucketSecret::Salt(random_b64(rng, 32)),
            previous: None,
        })
        .collect()
}

/// A new CSTG key pair record for `site_id`, and the subscription id and public key publishers use.
pub fn make_cstg_keypair(
    config: &OperatorConfig,
    site_id: i32,
    now_s: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> CstgKeypairRecord {
    let pair = CstgKeyPair::generate(rng);
    let scope = config.scope_prefix();
    let env = config.key_environment_letter();
    CstgKeypairRecord {
        subscription_id: random_text(rng, KEY_CHARS, 10),
        site_id,
        public_key: pair.public_key_text(&format!("{scope}-X-{env}-")),
        private_key: pair.private_key_text(&format!("{scope}-Y-{env}-")),
        disabled: false,
        created_s: now_s,
    }
}

/// What bootstrapping created, for printing once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The demo publisher client (every role).
    pub demo_client: NewClient,
    /// The demo site's CSTG key pair.
    pub demo_cstg: CstgKeypairRecord,
}

/// Initialises an empty store: the deployment settings of `config` (fixed from then on: see
/// [`crate::deployment`]), salts, master/refresh/fallback keysets and keys, a demo site with its
/// own keyset, a demo client with every role and a CSTG key pair. Returns `None` when the store
/// was already initialised (by this or another operator); its settings are then not checked.
pub async fn ensure_initialized(
    store: &dyn Store,
    config: &OperatorConfig,
    bucket_count: usize,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Option<Bootstrap>, AdminError> {
    if store.is_initialized().await? {
        return Ok(None);
    }
    if bucket_count == 0 {
        return Err(AdminError::Invalid(
            "the salt table needs at least one bucket".into(),
        ));
    }
    let now_s = now_ms / 1000;
    let activates = now_s - KEY_ACTIVATION_BACKDATE_S;
    let pepper = random_b64(rng, 32);
    let keysets = vec![
        keyset(MASTER_KEYSET_ID, MASTER_SITE_ID, "master", now_s),
        keyset(REFRESH_KEYSET_ID, REFRESH_SITE_ID, "refresh", now_s),
        keyset(
            FALLBACK_PUBLISHER_KEYSET_ID,
            FALLBACK_PUBLISHER_SITE_ID,
            "fallback publisher",
            now_s,
        ),
        keyset(3, DEMO_SITE_ID, "demo publisher", now_s),
    ];
    let keys = keysets
        .iter()
        .enumerate()
        .map(|(i, ks)| make_key(i as u32 + 1, ks.id, activates, now_s, rng))
        .collect();
    let demo_client = make_client(
        &pepper,
        config,
        "demo",
        DEMO_SITE_ID,
        Role::ALL.to_vec(),
        now_s,
        rng,
    );
    let demo_cstg = make_cstg_keypair(config, DEMO_SITE_ID, now_s, rng);
    let state = InitialState {
        salts: SaltState {
            meta: SaltMeta {
                first_level_salt: random_b64(rng, 32),
                id_prefix: "b".into(),
                id_secret: random_b64(rng, 32),
            },
            buckets: make_salt_buckets(bucket_count, now_ms, rng),
        },
        api_key_pepper: pepper,
        raw_uids: config.raw_uid_settings(),
        keysets,
        keys,
        sites: vec![SiteRecord {
            id: DEMO_SITE_ID,
            name: "Demo Publisher".into(),
            enabled: true,
            domain_names: vec!["localhost".into()],
            app_names: vec![],
            created_s: now_s,
        }],
        clients: vec![demo_client.record.clone()],
        cstg_keypairs: vec![demo_cstg.clone()],
    };
    if store.initialize(&state).await? {
        Ok(Some(Bootstrap {
            demo_client,
            demo_cstg,
        }))
    } else {
        Ok(None)
    }
}

/// Adds a client of an existing site.
pub async fn add_client(
    store: &dyn Store,
    config: &OperatorConfig,
    name: &str,
    site_id: i32,
    roles: Vec<Role>,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<NewClient, AdminError> {
    if roles.is_empty() {
        return Err(AdminError::Invalid(
            "a client needs at least one role".into(),
        ));
    }
    if site_id <= 0 {
        return Err(AdminError::Invalid(
            "site ids of clients are positive".into(),
        ));
    }
    if !is_name(name) {
        return Err(AdminError::Invalid(format!(
            "a client's name is some text on one line, at most {MAX_NAME_CHARS} characters"
        )));
    }
    if looks_like_key_id(name) {
        return Err(AdminError::Invalid(format!(
            "a client's name cannot look like a key id ({name:?}): commands find a client by \
             either, and would find another client by this name"
        )));
    }
    // Checked here for a clear answer; the store's unique constraint settles a race.
    if store.clients().await?.iter().any(|c| c.name == name) {
        return Err(AdminError::Invalid(format!(
            "a client named {name:?} already exists"
        )));
    }
    let pepper = pepper(store).await?;
    // A client of no site would mint tokens under the fallback publisher key that no site
    // owns, and no one could tell whose they are.
    if !store.sites().await?.iter().any(|s| s.id == site_id) {
        let reserved = FALLBACK_PUBLISHER_SITE_ID;
        let hint = if site_id <= reserved {
            format!(
                "site ids {reserved} and below are reserved; add a site of the client's own \
                 (uid2 site add --id N --name …, N above {reserved})"
            )
        } else {
            format!("add it first (uid2 site add --id {site_id} --name …)")
        };
        return Err(AdminError::Invalid(format!("no site {site_id}: {hint}")));
    }
    let client = make_client(&pepper, config, name, site_id, roles, now_ms / 1000, rng);
    store.insert_client(&client.record).await?;
    Ok(client)
}

/// Whether `name` has the form of a key id (`UID2-C-L-999-abcdef`, `EUID-C-…`).
fn looks_like_key_id(name: &str) -> bool {
    ["UID2-C-", "EUID-C-"].iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    })
}

/// The client an admin names: by key id (as `uid2 client list` shows it), else by name, else by
/// its whole API key, which must be the client's current key: a key id with a wrong or old
/// secret part names no one.
pub async fn find_client(store: &dyn Store, named: &str) -> Result<ClientRecord, AdminError> {
    let clients = store.clients().await?;
    if let Some(c) = clients
        .iter()
        .find(|c| c.key_id == named)
        .or_else(|| clients.iter().find(|c| c.name == named))
    {
        return Ok(c.clone());
    }
    if named.contains('.') && looks_like_key_id(named) {
        let pepper = pepper(store).await?;
        let hash = lookup_hash(&pepper, named);
        return clients
            .into_iter()
            .find(|c| c.lookup_hash == hash)
            .ok_or_else(|| {
                AdminError::Invalid(
                    "no client has that API key (it may be wrong, or replaced by a rekey)".into(),
                )
            });
    }
    Err(AdminError::Invalid(
        "no client with that key id, name or API key".into(),
    ))
}

/// The pepper API keys are hashed with.
async fn pepper(store: &dyn Store) -> Result<String, AdminError> {
    store
        .meta("api_key_pepper")
        .await?
        .ok_or_else(|| AdminError::Invalid("the store is not initialised".into()))
}

/// Gives a client a new API key and secret, for when its old ones may have leaked: the client
/// is found as [`find_client`] finds it; its name, site, roles and state stay, and the old key
/// is refused from the operators' next sync (within a second) on. Tokens it minted stay valid:
/// they are encrypted with the site's keys, not the client's.
pub async fn rekey_client(
    store: &dyn Store,
    config: &OperatorConfig,
    named: &str,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<NewClient, AdminError> {
    let old = &find_client(store, named).await?;
    let pepper = pepper(store).await?;
    let fresh = make_client(
        &pepper,
        config,
        &old.name,
        old.site_id,
        old.roles.clone(),
        old.created_s,
        rng,
    );
    let client = NewClient {
        record: ClientRecord {
            disabled: old.disabled,
            ..fresh.record
        },
        ..fresh
    };
    if !store.rekey_client(&old.key_id, &client.record).await? {
        // Another admin rekeyed it between the read and the update: its key is not ours to print.
        return Err(AdminError::Invalid(format!(
            "client {} changed while being rekeyed; run the command again",
            old.name
        )));
    }
    Ok(client)
}

/// Adds or updates a site, and returns it as stored (its lists checked and normalised, see
/// `checked_site`); a site without a keyset also gets its own default keyset and a key, so
/// tokens minted for it are encrypted with its own key.
///
/// The keyset and key are one key change: the store checks that the site has no keyset and
/// allocates both ids under its key lock, so neither a rotation nor another site added at once
/// can take those ids or give the site a second keyset.
pub async fn add_site(
    store: &dyn Store,
    site: SiteRecord,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<SiteRecord, AdminError> {
    if site.id <= FALLBACK_PUBLISHER_SITE_ID {
        return Err(AdminError::Invalid(format!(
            "site ids 2 and below are reserved (got {})",
            site.id
        )));
    }
    let site = checked_site(site)?;
    store.upsert_site(&site).await?;
    let now_s = now_ms / 1000;
    // The ids are the store's to allocate (0 here).
    let change = KeyChange {
        site_keyset: Some(SiteKeyset {
            keyset: keyset(0, site.id, &site.name, now_s),
            key: new_key(0, now_s - KEY_ACTIVATION_BACKDATE_S, now_s, rng),
        }),
        ..KeyChange::default()
    };
    match store.change_keys(&change, &Precondition::default()).await? {
        Conditional::Written(_) => Ok(site),
        // No precondition was set, so none can fail.
        Conditional::Stale | Conditional::Unclaimed => Err(AdminError::Store(
            StoreError::Rejected("an unconditional key change was refused".into()),
        )),
    }
}

/// Longest site name, client name or app name: a label, not a document.
const MAX_NAME_CHARS: usize = 256;

/// Whether `name` is a usable name: some text on one line, of at most [`MAX_NAME_CHARS`].
fn is_name(name: &str) -> bool {
    !name.trim().is_empty()
        && !name.chars().any(char::is_control)
        && name.chars().count() <= MAX_NAME_CHARS
}

/// The site with its lists checked: a name, domain names that client-side generation can
/// match (lower-cased, each once; see [`site_domain_name`]), and app names that are names (each
/// once).
fn checked_site(mut site: SiteRecord) -> Result<SiteRecord, AdminError> {
    if !is_name(&site.name) {
        return Err(AdminError::Invalid(format!(
            "a site's name is some text on one line, at most {MAX_NAME_CHARS} characters"
        )));
    }
    let mut domains: Vec<String> = Vec::with_capacity(site.domain_names.len());
    for listed in &site.domain_names {
        let domain = site_domain_name(listed).map_err(AdminError::Invalid)?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    site.domain_names = domains;
    if let Some(bad) = site.app_names.iter().find(|a| !is_name(a)) {
        return Err(AdminError::Invalid(format!(
            "{bad:?} is not an app name (some text on one line, at most {MAX_NAME_CHARS} characters)"
        )));
    }
    let mut app_names: Vec<String> = Vec::with_capacity(site.app_names.len());
    for name in site.app_names {
        if !app_names.contains(&name) {
            app_names.push(name);
        }
    }
    site.app_names = app_names;
    Ok(site)
}

/// Adds a CSTG key pair for an existing site.
pub async fn add_cstg(
    store: &dyn Store,
    config: &OperatorConfig,
    site_id: i32,
    now_ms: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<CstgKeypairRecord, AdminError> {
    if !store.sites().await?.iter().any(|s| s.id == site_id) {
        return Err(AdminError::Invalid(format!(
            "no site {site_id}: add it first (uid2 site add)"
        )));
    }
    let record = make_cstg_keypair(config, site_id, now_ms / 1000, rng);
    store.insert_cstg_keypair(&record).await?;
    Ok(record)
}

/// Records an opt-out directly in the store (operators pick it up on their next sync), with the
/// raw UID the operators on the store map the identity to (for `/v2/optout/status`): derived with
/// the store's own deployment settings, as a raw UID derived with others would never be reported
/// as opted out.
pub async fn add_optout(
    store: &SettledStore,
    identity: &HashedIdentity,
    now_ms: i64,
) -> Result<OptOutRecord, AdminError> {
    let (settings, store) = (store.settings(), store.store());
    let (meta, table) = store
        .salt_table()
        .await?
        .ok_or_else(|| AdminError::Invalid("the store is not initialised".into()))?;
    let flh = FirstLevelHash::compute(identity, &meta.first_level_salt);
    if SpecialIdentities::new(&meta.first_level_salt)
        .is_validate_identity(identity.identity_type, &flh)
    {
        // An admin asking for it expects an effect it cannot have: say so instead of recording
        // an opt-out that only `/v2/optout/status` would show. (`/v2/token/logout` records it,
        // as upstream does: an SDK's call is answered as upstream answers it.)
        return Err(AdminError::Invalid(
            "that is a test identity that never opts out (validate@example.com, +12345678901): \
             generate, refresh and map ignore its opt-outs, as the official operator does, so \
             nothing was recorded"
                .into(),
        ));
    }
    let raw_uid = table.raw_uid(&flh, identity.identity_type, settings);
    Ok(store
        .append_optout(flh.0, Some(raw_uid.as_bytes().to_vec()), now_ms)
        .await?)
}
