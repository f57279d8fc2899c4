//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! write (an opt-out above all) has reached the disk before the call returns. The CLI and a
//! running `uid2 serve` may use the same file at once.
//!
//! Every operation is a shared query (see [`crate::queries`]) run by [`conn::Shared::run`] in a
//! transaction on a blocking thread; arguments are cloned into the work because it outlives
//! the borrow of the caller.

mod conn;

use rusqlite::TransactionBehavior::{Deferred, Immediate};
use uid2_proto::salt::{RawUidSettings, SaltTable};

use crate::queries::salts::SaltRows;
use crate::queries::{self, InitialRows, clients, keys, optouts, raw_uids, salts, sites};
use crate::{
    Claim, ClientRecord, Conditional, CstgKeypairRecord, Generations, InitialState, KeyChange,
    KeyRecord, KeysetRecord, OptOutRecord, Precondition, Result, SaltMeta, SaltState, Setup,
    SiteRecord, Store, Versioned,
};

/// The SQLite backend.
pub struct SqliteStore {
    path: String,
    conn: conn::Shared,
}

impl SqliteStore {
    /// Opens (creating the file, its directory and the schema if needed) the store at `path`.
    pub async fn open(path: &str) -> Result<Self> {
        Self::open_with(path, Setup::Create)
            .await?
            .ok_or_else(|| crate::StoreError::Rejected(format!("{path} could not be created")))
    }

    /// Opens the store at `path` as `setup` allows: with [`Setup::ExistingOnly`], `None` for a
    /// missing or empty file or one without the schema, which are left as they are.
    pub async fn open_with(path: &str, setup: Setup) -> Result<Option<Self>> {
        if setup == Setup::ExistingOnly && std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
            return Ok(None);
        }
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || conn::Shared::open(&owned))
            .await
            .map_err(|e| crate::StoreError::Unavailable(format!("SQLite worker: {e}")))??;
        let now = crate::schema::now_s();
        let has_schema = conn
            .run(Immediate, async move |c| {
                crate::schema::set_up(c, setup, now).await
            })
            .await?;
        Ok(has_schema.then(|| Self {
            path: path.to_owned(),
            conn,
        }))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path)
    }

    async fn back_up(&self, destination: &std::path::Path) -> Result<u64> {
        self.conn.back_up(destination.to_path_buf()).await
    }

    async fn initialize(&self, state: &InitialState) -> Result<bool> {
        let rows = InitialRows::new(state)?;
        self.conn
            .run(Immediate, async move |c| {
                queries::initialize(c, &rows).await
            })
            .await
    }

    async fn is_initialized(&self) -> Result<bool> {
        self.conn
            .run(Deferred, async |c| queries::is_initialized(c).await)
            .await
    }

    async fn generations(&self) -> Result<Generations> {
        self.conn
            .run(Deferred, async |c| queries::generations(c).await)
            .await
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_owned();
        self.conn
            .run(Deferred, async move |c| queries::meta(c, &name).await)
            .await
    }

    async fn raw_uid_settings(&self) -> Result<Option<RawUidSettings>> {
        self.conn
            .run(Deferred, async |c| raw_uids::read(c).await)
            .await
    }

    async fn adopt_raw_uid_settings(&self, settings: &RawUidSettings) -> Result<RawUidSettings> {
        let settings = *settings;
        self.conn
            .run(Immediate, async move |c| {
                raw_uids::adopt(c, &settings).await
            })
            .await
    }

    async fn raise_setting(&self, name: &str, value: i64) -> Result<i64> {
        let name = name.to_owned();
        self.conn
            .run(Immediate, async move |c| {
                queries::raise_setting(c, &name, value).await
            })
            .await
    }

    async fn last_claim_ms(&self, job: &str) -> Result<Option<i64>> {
        let job = job.to_owned();
        self.conn
            .run(Deferred, async move |c| {
                queries::last_claim_ms(c, &job).await
            })
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        self.conn
            .run(Deferred, async |c| clients::all(c).await)
            .await
    }

    async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        let client = client.clone();
        self.conn
            .run(Immediate, async move |c| clients::insert(c, &client).await)
            .await
    }

    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool> {
        let who = key_id_or_name.to_owned();
        self.conn
            .run(Immediate, async move |c| {
                clients::set_disabled(c, &who, disabled).await
            })
            .await
    }

    async fn rekey_client(&self, key_id: &str, new: &ClientRecord) -> Result<bool> {
        let (key_id, new) = (key_id.to_owned(), new.clone());
        self.conn
            .run(Immediate, async move |c| {
                clients::rekey(c, &key_id, &new).await
            })
            .await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.conn.run(Deferred, async |c| sites::all(c).await).await
    }

    async fn upsert_site(&self, site: &SiteRecord) -> Result<()> {
        let site = site.clone();
        self.conn
            .run(Immediate, async move |c| sites::upsert(c, &site).await)
            .await
    }

    async fn keysets(&self) -> Result<Vec<KeysetRecord>> {
        self.conn
            .run(Deferred, async |c| keys::keysets(c).await)
            .await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.conn.run(Deferred, async |c| keys::all(c).await).await
    }

    async fn change_keys(
        &self,
        change: &KeyChange,
        pre: &Precondition,
    ) -> Result<Conditional<Vec<u32>>> {
        let (change, pre) = (change.clone(), pre.clone());
        self.conn
            .run(Immediate, async move |c| {
                keys::change(c, &change, &pre).await
            })
            .await
    }

    async fn salts(&self) -> Result<Option<Versioned<SaltState>>> {
        self.conn
            .run(Deferred, async |c| salts::versioned(c).await)
            .await
    }

    async fn salt_table(&self) -> Result<Option<(SaltMeta, SaltTable)>> {
        self.conn
            .run(Deferred, async |c| salts::table(c).await)
            .await
    }

    async fn claim_unchanged_salts(&self, claim: &Claim) -> Result<bool> {
        let claim = claim.clone();
        self.conn
            .run(Immediate, async move |c| {
                salts::claim_unchanged(c, &claim).await
            })
            .await
    }

    async fn replace_salt_buckets(
        &self,
        state: &SaltState,
        pre: &Precondition,
    ) -> Result<Conditional<()>> {
        let (rows, pre) = (SaltRows::new(state)?, pre.clone());
        self.conn
            .run(Immediate, async move |c| {
                salts::replace(c, &rows, &pre).await
            })
            .await
    }

    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>> {
        self.conn
            .run(Deferred, async |c| sites::cstg_keypairs(c).await)
            .await
    }

    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()> {
        let keypair = keypair.clone();
        self.conn
            .run(Immediate, async move |c| {
                sites::insert_cstg(c, &keypair).await
            })
            .await
    }

    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord> {
        self.conn
            .run(Immediate, async move |c| {
                optouts::append(c, first_level_hash, advertising_id, opted_out_at_ms).await
            })
            .await
    }

    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>> {
        self.conn
            .run(Deferred, async move |c| {
                optouts::after(c, after, limit).await
            })
            .await
    }
}
