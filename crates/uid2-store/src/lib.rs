//! Durable state of a UID2 operator: clients, sites, keysets and keys, salt buckets, CSTG key
//! pairs and opt-outs, behind one [`Store`] trait with two backends sharing one schema:
//! an embedded SQLite file (the default, zero set-up) and PostgreSQL (a fleet of operators).
//!
//! Operators never read the store on the request path: they load it into memory and poll
//! [`Store::generations`] to learn what changed. Every write bumps the generation of what it
//! touched in the same transaction, and opt-outs are append-only with a sequence number, so a
//! poller can fetch just the new ones. A write returns only once it is durable.

mod records;
mod schema;
mod sqlite;

#[cfg(feature = "postgres")]
mod postgres;

use std::sync::Arc;

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
    /// The write conflicts with existing data (duplicate name or id).
    #[error("conflict: {0}")]
    Conflict(String),
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
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// A description for logs (no credentials).
    fn describe(&self) -> String;

    /// Writes `state` if the store has never been initialised; returns whether it did. Atomic:
    /// of several operators starting on one empty database, exactly one initialises it.
    async fn initialize(&self, state: &InitialState) -> Result<bool>;

    /// Whether the store has been initialised.
    async fn is_initialized(&self) -> Result<bool>;

    /// Generation counters and the last opt-out sequence number.
    async fn generations(&self) -> Result<Generations>;

    /// A value of the store's settings.
    async fn meta(&self, name: &str) -> Result<Option<String>>;

    /// Claims the periodic job `name` for this caller if nobody claimed it in the last
    /// `period_ms` (atomic across operators sharing the store); returns whether it did.
    async fn try_claim(&self, name: &str, now_ms: i64, period_ms: i64) -> Result<bool>;

    /// Every client.
    async fn clients(&self) -> Result<Vec<ClientRecord>>;
    /// Adds a client.
    async fn insert_client(&self, client: &ClientRecord) -> Result<()>;
    /// Disables or enables the client named by key id or name; returns whether one matched.
    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool>;

    /// Every site.
    async fn sites(&self) -> Result<Vec<SiteRecord>>;
    /// Adds or replaces a site.
    async fn upsert_site(&self, site: &SiteRecord) -> Result<()>;

    /// Every keyset.
    async fn keysets(&self) -> Result<Vec<KeysetRecord>>;
    /// Every key.
    async fn keys(&self) -> Result<Vec<KeyRecord>>;
    /// Adds keysets and keys in one transaction.
    async fn insert_keys(&self, keysets: &[KeysetRecord], keys: &[KeyRecord]) -> Result<()>;
    /// Removes keys (expired ones, after rotation).
    async fn delete_keys(&self, ids: &[u32]) -> Result<()>;

    /// The salt state, if initialised.
    async fn salts(&self) -> Result<Option<SaltState>>;
    /// The salt settings and buckets packed into a table, built chunk by chunk (what an operator
    /// loads: a million buckets never exist as owned records).
    async fn salt_table(&self) -> Result<Option<(SaltMeta, uid2_proto::salt::SaltTable)>>;
    /// Replaces the salt buckets (the first-level salt must not change).
    async fn put_salt_buckets(&self, state: &SaltState) -> Result<()>;

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

/// Opens (creating and migrating if needed) the store at `url`: `sqlite://PATH`, a plain file
/// path, or `postgres://…` / `postgresql://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            return Ok(Arc::new(PostgresStore::connect(url).await?));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    Ok(Arc::new(SqliteStore::open(path).await?))
}

/// Encodes buckets for one `salt_chunks` row: the official 11-field salt-file text.
pub(crate) fn encode_salt_chunk(buckets: &[uid2_proto::salt::SaltBucket]) -> String {
    uid2_proto::salt::write_salt_file(buckets)
}

/// Decodes one `salt_chunks` row.
pub(crate) fn decode_salt_chunk(text: &str) -> Result<Vec<uid2_proto::salt::SaltBucket>> {
    uid2_proto::salt::parse_salt_file(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Packs chunk texts into a table.
pub(crate) fn pack_salt_chunks(
    count: usize,
    chunks: impl Iterator<Item = Result<String>>,
) -> Result<uid2_proto::salt::SaltTable> {
    let mut table = uid2_proto::salt::SaltTable::with_capacity(count);
    for chunk in chunks {
        for bucket in decode_salt_chunk(&chunk?)? {
            table
                .push(&bucket)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
    }
    if table.len() != count {
        return Err(StoreError::Corrupt(format!(
            "salt_meta says {count} buckets, chunks hold {}",
            table.len()
        )));
    }
    Ok(table.finish())
}

pub(crate) fn to_json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("lists of strings and numbers serialise")
}

pub(crate) fn from_json_list<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

pub(crate) fn secret_from(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}
