//! Durable state of a UID2 operator: clients, sites, keysets and keys, salt buckets, CSTG key
//! pairs and opt-outs, behind one [`Store`] trait with two backends sharing one schema:
//! an embedded SQLite file (the default, zero set-up) and PostgreSQL (a fleet of operators).
//!
//! Operators never read the store on the request path: they load it into memory and poll
//! [`Store::generations`] to learn what changed. Every write bumps the generation of what it
//! touched in the same transaction, and opt-outs are append-only with a sequence number, so a
//! poller can fetch just the new ones. A write returns only once it is durable.
//!
//! Every operation is written once, in `queries`, against the small connection abstraction of
//! `sql` (statements with `$1` placeholders, rendered per backend); `sqlite` and `postgres`
//! only provide connections, transactions, locks and time limits. Writes that must not lose a
//! race (rotations) are conditional: see [`Precondition`].

mod conditions;
mod queries;
mod records;
mod schema;
mod sql;
mod sqlite;

#[cfg(feature = "postgres")]
mod postgres;

use std::sync::Arc;

use uid2_proto::salt::RawUidSettings;

pub use conditions::*;
pub use records::*;
pub use sqlite::SqliteStore;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed to answer; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered, but another writer held what this write needed for too long (a
    /// lock of a fleet-wide write); retrying later may succeed. The store is reachable.
    #[error("store busy: {0}")]
    Busy(String),
    /// The write conflicts with existing data (duplicate name or id, a missing referenced row).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store refused the operation for a reason retrying will not change.
    #[error("refused by the store: {0}")]
    Rejected(String),
    /// Stored data that does not parse.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// A store URL this build cannot open.
    #[error("unsupported store URL {0:?} (expected sqlite://PATH, a file path, or postgres://…)")]
    BadUrl(String),
}

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything a fresh store is initialised with, written in one transaction.
#[derive(Debug, Clone)]
pub struct InitialState {
    /// The pepper API keys are hashed with for lookup.
    pub api_key_pepper: String,
    /// How raw UIDs are derived: fixed for the store's life (see [`Store::raw_uid_settings`]).
    pub raw_uids: RawUidSettings,
    /// Salts.
    pub salts: SaltState,
    /// Keysets.
    pub keysets: Vec<KeysetRecord>,
    /// Keys.
    pub keys: Vec<KeyRecord>,
    /// Sites.
    pub sites: Vec<SiteRecord>,
    /// Clients.
    pub clients: Vec<ClientRecord>,
    /// CSTG key pairs.
    pub cstg_keypairs: Vec<CstgKeypairRecord>,
}

/// Durable state of an operator.
///
/// # Change tracking
///
/// Every write bumps, in its own transaction, the generation counter of the kind it touched, so
/// a poller learns cheaply from [`generations`](Store::generations) what to reload.
///
/// Opt-outs are an append-only log numbered by `seq`, and every backend guarantees that **once
/// [`generations`](Store::generations) has reported `optout_seq = S`, no opt-out with
/// `seq ≤ S` is committed later**: sequence numbers become visible in increasing order. A poller
/// that reads [`optouts_after`](Store::optouts_after) its cursor up to `S` and advances the
/// cursor to the highest `seq` it read therefore never skips one.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// A description for logs (no credentials).
    fn describe(&self) -> String;

    /// Writes a consistent copy of the whole store to `destination` (a new file) while it stays
    /// in use, and returns the copy's size in bytes. Only the embedded store can; a PostgreSQL
    /// database is backed up with its own tools (`pg_dump`), so the default refuses.
    async fn back_up(&self, destination: &std::path::Path) -> Result<u64> {
        let _ = destination;
        Err(StoreError::Rejected(format!(
            "{} is backed up with its database's own tools (pg_dump for PostgreSQL)",
            self.describe()
        )))
    }

    /// Writes `state` if the store has never been initialised; returns whether it did. Atomic:
    /// of several operators starting on one empty database, exactly one initialises it. A state
    /// without salt buckets is [`StoreError::Rejected`].
    async fn initialize(&self, state: &InitialState) -> Result<bool>;

    /// Whether the store has been initialised.
    async fn is_initialized(&self) -> Result<bool>;

    /// Generation counters and the last opt-out sequence number (see the ordering guarantee
    /// above).
    async fn generations(&self) -> Result<Generations>;

    /// A value of the store's settings.
    async fn meta(&self, name: &str) -> Result<Option<String>>;

    /// The settings that determine raw UIDs (identity scope, environment, v3 raw UIDs), recorded
    /// when the store was initialised; `None` for a store initialised before they were recorded.
    /// Every operator and admin command on the store must derive raw UIDs with these.
    async fn raw_uid_settings(&self) -> Result<Option<RawUidSettings>>;

    /// Records `settings` in an initialised store that has none recorded (one initialised before
    /// they were), once, atomically across operators; returns the recorded settings, which are
    /// those of whoever recorded first. An uninitialised store is refused.
    async fn adopt_raw_uid_settings(&self, settings: &RawUidSettings) -> Result<RawUidSettings>;

    /// Raises the numeric setting `name` to at least `value` (atomically, across operators);
    /// returns its value.
    async fn raise_setting(&self, name: &str, value: i64) -> Result<i64>;

    /// When the periodic job `job` last ran (the time of its last [`Claim`]), if ever.
    async fn last_claim_ms(&self, job: &str) -> Result<Option<i64>>;

    /// Every client.
    async fn clients(&self) -> Result<Vec<ClientRecord>>;
    /// Adds a client.
    async fn insert_client(&self, client: &ClientRecord) -> Result<()>;
    /// Disables or enables the client with this key id or, if none has it, the one with this
    /// name; returns whether one matched.
    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool>;
    /// Replaces the API key and secret of the client with key id `key_id` by `new`'s (its key
    /// id, secret, lookup hash, key salt and key hash; name, site, roles, state and creation
    /// stay); the old key is refused from the operators' next sync. Returns whether a client
    /// had that key id.
    async fn rekey_client(&self, key_id: &str, new: &ClientRecord) -> Result<bool>;

    /// Every site.
    async fn sites(&self) -> Result<Vec<SiteRecord>>;
    /// Adds or replaces a site.
    async fn upsert_site(&self, site: &SiteRecord) -> Result<()>;

    /// Every keyset.
    async fn keysets(&self) -> Result<Vec<KeysetRecord>>;
    /// Every key.
    async fn keys(&self) -> Result<Vec<KeyRecord>>;
    /// Adds keys, removes keys and creates a site's keyset (allocating every new id), in one
    /// transaction serialised with every other key write, if `pre` holds; returns the new keys'
    /// ids (see [`KeyChange`]).
    async fn change_keys(
        &self,
        change: &KeyChange,
        pre: &Precondition,
    ) -> Result<Conditional<Vec<u32>>>;

    /// The salt state and the salts generation it was read at, if initialised.
    async fn salts(&self) -> Result<Option<Versioned<SaltState>>>;
    /// The salt settings and buckets packed into a table, built chunk by chunk (what an operator
    /// loads: a million buckets never exist as owned records).
    async fn salt_table(&self) -> Result<Option<(SaltMeta, uid2_proto::salt::SaltTable)>>;
    /// Records `claim` of a salt-rotation job that found nothing to rotate, if the claim is
    /// still due (serialised with salt writes, as their own claims are): the salts are not
    /// rewritten, so operators have nothing to reload. Returns whether the claim was won.
    async fn claim_unchanged_salts(&self, claim: &Claim) -> Result<bool>;
    /// Replaces the salt buckets if `pre` holds (the first-level salt must not change, and there
    /// must be at least one bucket: [`StoreError::Rejected`] otherwise).
    async fn replace_salt_buckets(
        &self,
        state: &SaltState,
        pre: &Precondition,
    ) -> Result<Conditional<()>>;

    /// Every CSTG key pair.
    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>>;
    /// Adds a CSTG key pair.
    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()>;

    /// Appends an opt-out and returns it with its sequence number, once durable.
    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord>;
    /// Opt-outs with `seq > after`, in sequence order, at most `limit`.
    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>>;
}

/// The default store location of `uid2 serve`.
pub const DEFAULT_STORE_URL: &str = "sqlite://uid2-data/uid2.db";

/// What opening a store may set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Create what is missing (an SQLite file and its directory, the schema); migrate an older
    /// schema.
    Create,
    /// Open only a database that has the schema (migrating it if older); create nothing.
    ExistingOnly,
}

/// Opens (creating and migrating if needed) the store at `url`: `sqlite://PATH`, a plain file
/// path, or `postgres://…` / `postgresql://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, Setup::Create)
        .await?
        .ok_or_else(|| StoreError::Rejected("the store could not be created".into()))
}

/// Opens the store at `url` if it exists with its schema (migrating an older one); `None`, and
/// nothing created, otherwise: for commands that must not set a store up by mistake (a typo
/// in a URL). The store may still be uninitialised ([`Store::is_initialized`]).
pub async fn open_existing(url: &str) -> Result<Option<Arc<dyn Store>>> {
    open_with(url, Setup::ExistingOnly).await
}

async fn open_with(url: &str, setup: Setup) -> Result<Option<Arc<dyn Store>>> {
    open_url(url, setup).await.map_err(|e| match e {
        StoreError::BadUrl(_) => StoreError::BadUrl(redact_url(url)),
        other => other,
    })
}

/// What a message or a log line may show of the store URL `url`: a PostgreSQL URL as host, port
/// and database only (a password may hide in the user info, even past a `/`, or in a
/// `password=` parameter); another URL with user info as its scheme only; a SQLite path as is.
pub fn redact_url(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return postgres::parse_url(url).map_or_else(
            |_| "postgres://…".to_owned(),
            |(c, _)| postgres::describe(&c),
        );
        #[cfg(not(feature = "postgres"))]
        return "postgres://…".to_owned();
    }
    match url.split_once("://") {
        Some((scheme, rest)) if scheme != "sqlite" && rest.contains('@') => format!("{scheme}://…"),
        None if is_connection_string(url) => "a key=value connection string".to_owned(),
        _ => url.to_owned(),
    }
}

/// Whether `url` has the form of PostgreSQL's `key=value` connection strings (`host=db
/// password=…`), which are not store URLs: read as a SQLite file name, one would create a local
/// store named after the password, and an operator on it would never see the fleet's opt-outs.
fn is_connection_string(url: &str) -> bool {
    !url.contains("://") && url.contains('=')
}

async fn open_url(url: &str, setup: Setup) -> Result<Option<Arc<dyn Store>>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = PostgresStore::connect_with(url, setup).await?;
            return Ok(store.map(|s| Arc::new(s) as Arc<dyn Store>));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    if is_connection_string(url) {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    // `sqlite:x.db` (one colon, no slashes) and `?mode=…` parameters are URL forms other tools
    // take: read as a file name they would create a file called `sqlite:x.db` or `x.db?mode=…`.
    if path.is_empty() || path.contains("://") || path.starts_with("sqlite:") || path.contains('?')
    {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    let store = SqliteStore::open_with(path, setup).await?;
    Ok(store.map(|s| Arc::new(s) as Arc<dyn Store>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://uid2:s3cret@db.example:5433/uid2?sslmode=disable",
                "postgres://db.example:5433/uid2",
            ),
            // tokio-postgres reads the user info up to the first `@`, `/` included.
            (
                "postgresql://me:a/s3cret@localhost/x",
                "postgres://localhost:5432/x",
            ),
            (
                "postgres://me@localhost/x?password=s3cret",
                "postgres://localhost:5432/x",
            ),
            ("postgres://me:s3cret@host:port/x", "postgres://…"),
            ("mysql://root:s3cret@localhost/uid2", "mysql://…"),
            (
                "host=db user=uid2 password=s3cret dbname=uid2",
                "a key=value connection string",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        for unchanged in [
            "sqlite://./uid2-data/uid2.db",
            "./uid2.db",
            "sqlite://a@b.db",
        ] {
            assert_eq!(redact_url(unchanged), unchanged);
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_reported_without_its_password() {
        let Err(err) = open("mysql://root:hunter2@localhost/uid2").await else {
            panic!("a MySQL URL opened");
        };
        assert!(matches!(err, StoreError::BadUrl(_)), "{err}");
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("mysql://"), "{message}");

        // A connection string is no file name: refused, not created, and never shown.
        let dir = tempfile::tempdir().unwrap();
        let conninfo = format!("{}/host=db password=hunter2", dir.path().display());
        let Err(err) = open(&conninfo).await else {
            panic!("a connection string opened");
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
