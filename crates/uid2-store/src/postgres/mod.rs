//! The fleet backend: PostgreSQL shared by any number of operators.
//!
//! Every operation is a shared query (see [`crate::queries`]) run on a pooled connection (see
//! [`pool`]): an outage surfaces as [`StoreError::Unavailable`] within seconds, and recovery
//! needs nothing but the database coming back. Writes run in a transaction; the salt table is
//! read in one consistent snapshot, chunk by chunk, each chunk under its own time limit.

mod conn;
mod pool;
pub(crate) mod tls;

use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel, Transaction};
use uid2_proto::salt::{RawUidSettings, SaltTable};

use crate::queries::salts::SaltRows;
use crate::queries::{self, InitialRows, clients, keys, optouts, raw_uids, salts, sites};
use crate::{
    Claim, ClientRecord, Conditional, CstgKeypairRecord, Generations, InitialState, KeyChange,
    KeyRecord, KeysetRecord, OptOutRecord, Precondition, Result, SaltMeta, SaltState, Setup,
    SiteRecord, Store, StoreError, Versioned,
};
use conn::{PgConn, limited};
use pool::{Limit, Pool};

/// The PostgreSQL backend.
pub struct PostgresStore {
    pool: Pool,
    description: String,
}

/// The connection settings and the TLS settings of a store URL.
pub(crate) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, tls::TlsSettings)> {
    let bad = || StoreError::BadUrl(url.to_owned());
    let (rest, tls) = tls::split_url(url).ok_or_else(bad)?;
    Ok((rest.parse().map_err(|_| bad())?, tls))
}

/// The server and database of `config`, never its credentials.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        config.get_dbname().unwrap_or_default()
    )
}

impl PostgresStore {
    /// Connects to `url` (creating or migrating the schema if needed).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Setup::Create)
            .await?
            .ok_or_else(|| StoreError::Rejected("the schema could not be created".into()))
    }

    /// Connects to `url` as `setup` allows: with [`Setup::ExistingOnly`], `None` for a
    /// database without the schema, which is left as it is.
    pub async fn connect_with(url: &str, setup: Setup) -> Result<Option<Self>> {
        let (mut config, tls) = parse_url(url)?;
        config
            .connect_timeout(pool::CALL_DEADLINE)
            .keepalives_idle(Duration::from_secs(10))
            .ssl_mode(tls.ssl_mode());
        let store = Self {
            description: describe(&config),
            pool: Pool::new(config, tls.connector()?),
        };
        let now = crate::schema::now_s();
        let has_schema = store
            .write(Limit::Call, async |c| {
                crate::schema::set_up(c, setup, now).await
            })
            .await?;
        Ok(has_schema.then_some(store))
    }

    /// Runs `work` on a connection outside any transaction.
    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConn<'_, Client>) -> Result<T>,
    ) -> Result<T> {
        self.pool
            .run(Limit::Call, async |client, _| {
                work(&mut PgConn::new(&*client)).await
            })
            .await
    }

    /// Runs `work` in one consistent snapshot (`REPEATABLE READ`); each statement has its own
    /// time limit, as the work grows with the data.
    async fn read_snapshot<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConn<'_, Transaction<'_>>) -> Result<T>,
    ) -> Result<T> {
        self.pool
            .run(Limit::PerStatement, async |client, _| {
                let tx = limited(
                    client
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start(),
                )
                .await?;
                let value = work(&mut PgConn::new(&tx)).await?;
                limited(tx.commit()).await?;
                Ok(value)
            })
            .await
    }

    /// Runs `work` in a transaction, committed if it succeeds.
    async fn write<T>(
        &self,
        limit: Limit,
        work: impl AsyncFnOnce(&mut PgConn<'_, Transaction<'_>>) -> Result<T>,
    ) -> Result<T> {
        self.pool
            .run(limit, async |client, deadline| {
                let tx = limited(client.transaction()).await?;
                let deadline = (limit == Limit::Call).then_some(deadline);
                limited(tx.batch_execute(&conn::write_settings(deadline))).await?;
                let value = work(&mut PgConn::new(&tx)).await?;
                limited(tx.commit()).await?;
                Ok(value)
            })
            .await
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn initialize(&self, state: &InitialState) -> Result<bool> {
        let rows = InitialRows::new(state)?;
        // A million salt buckets take longer than one call's deadline to write.
        self.write(Limit::PerStatement, async |c| {
            queries::initialize(c, &rows).await
        })
        .await
    }

    async fn is_initialized(&self) -> Result<bool> {
        self.read(async |c| queries::is_initialized(c).await).await
    }

    async fn generations(&self) -> Result<Generations> {
        self.read(async |c| queries::generations(c).await).await
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(async |c| queries::meta(c, name).await).await
    }

    async fn raw_uid_settings(&self) -> Result<Option<RawUidSettings>> {
        self.read(async |c| raw_uids::read(c).await).await
    }

    async fn adopt_raw_uid_settings(&self, settings: &RawUidSettings) -> Result<RawUidSettings> {
        self.write(Limit::Call, async |c| raw_uids::adopt(c, settings).await)
            .await
    }

    async fn raise_setting(&self, name: &str, value: i64) -> Result<i64> {
        self.write(Limit::Call, async |c| {
            queries::raise_setting(c, name, value).await
        })
        .await
    }

    async fn last_claim_ms(&self, job: &str) -> Result<Option<i64>> {
        self.read(async |c| queries::last_claim_ms(c, job).await)
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        self.read(async |c| clients::all(c).await).await
    }

    async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        self.write(Limit::Call, async |c| clients::insert(c, client).await)
            .await
    }

    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool> {
        self.write(Limit::Call, async |c| {
            clients::set_disabled(c, key_id_or_name, disabled).await
        })
        .await
    }

    async fn rekey_client(&self, key_id: &str, new: &ClientRecord) -> Result<bool> {
        self.write(Limit::Call, async |c| clients::rekey(c, key_id, new).await)
            .await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.read(async |c| sites::all(c).await).await
    }

    async fn upsert_site(&self, site: &SiteRecord) -> Result<()> {
        self.write(Limit::Call, async |c| sites::upsert(c, site).await)
            .await
    }

    async fn keysets(&self) -> Result<Vec<KeysetRecord>> {
        self.read(async |c| keys::keysets(c).await).await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read(async |c| keys::all(c).await).await
    }

    async fn change_keys(
        &self,
        change: &KeyChange,
        pre: &Precondition,
    ) -> Result<Conditional<Vec<u32>>> {
        self.write(Limit::Call, async |c| keys::change(c, change, pre).await)
            .await
    }

    async fn salts(&self) -> Result<Option<Versioned<SaltState>>> {
        self.read_snapshot(async |c| salts::versioned(c).await)
            .await
    }

    async fn salt_table(&self) -> Result<Option<(SaltMeta, SaltTable)>> {
        self.read_snapshot(async |c| salts::table(c).await).await
    }

    async fn claim_unchanged_salts(&self, claim: &Claim) -> Result<bool> {
        self.write(Limit::Call, async |c| {
            salts::claim_unchanged(c, claim).await
        })
        .await
    }

    async fn replace_salt_buckets(
        &self,
        state: &SaltState,
        pre: &Precondition,
    ) -> Result<Conditional<()>> {
        let rows = SaltRows::new(state)?;
        self.write(Limit::PerStatement, async |c| {
            salts::replace(c, &rows, pre).await
        })
        .await
    }

    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>> {
        self.read(async |c| sites::cstg_keypairs(c).await).await
    }

    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()> {
        self.write(Limit::Call, async |c| sites::insert_cstg(c, keypair).await)
            .await
    }

    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord> {
        self.write(Limit::Call, async |c| {
            optouts::append(c, first_level_hash, advertising_id, opted_out_at_ms).await
        })
        .await
    }

    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>> {
        self.read(async |c| optouts::after(c, after, limit).await)
            .await
    }
}
