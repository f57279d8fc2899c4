//! The fleet backend: PostgreSQL shared by any number of operators.
//!
//! One connection, re-established lazily after a failure, with a timeout on every operation, so
//! an outage surfaces as [`StoreError::Unavailable`] within seconds and recovery needs nothing
//! but the database coming back. Opt-out inserts take a transaction-scoped advisory lock, so
//! sequence numbers become visible in commit order and a poller reading `seq > last` never skips
//! one that committed late.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Transaction};

use crate::schema::{Dialect, MIGRATIONS_TABLE, SALT_CHUNK_BUCKETS, pending};
use crate::{
    ClientRecord, CstgKeypairRecord, Generations, InitialState, KeyRecord, KeysetRecord,
    OptOutRecord, Result, SaltMeta, SaltState, SiteRecord, Store, StoreError, decode_salt_chunk,
    encode_salt_chunk, format_roles, from_json_list, pack_salt_chunks, parse_roles, secret_from,
    to_json_list,
};

/// Longest any single store operation may take before it counts as an outage.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Advisory lock keys (arbitrary constants, scoped to this schema's use).
const LOCK_MIGRATE: i64 = 0x5549_4432_0001;
const LOCK_INITIALIZE: i64 = 0x5549_4432_0002;
const LOCK_OPTOUT: i64 = 0x5549_4432_0003;

/// The PostgreSQL backend.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    description: String,
    connection: Mutex<Option<Client>>,
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(e.to_string())
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
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
    /// Connects to `url` (creating the schema if needed).
    pub async fn connect(url: &str) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::BadUrl(url.to_owned()))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives_idle(Duration::from_secs(10));
        let store = Self {
            description: describe(&config),
            config,
            connection: Mutex::new(None),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn connected(&self) -> Result<MutexGuard<'_, Option<Client>>> {
        let mut guard = self.connection.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let (client, connection) =
                tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls))
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable("connecting to PostgreSQL timed out".into())
                    })?
                    .map_err(pg_err)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    /// Runs `f` in a transaction with a timeout; a failed connection is dropped so the next call
    /// reconnects.
    async fn tx<T>(&self, f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut guard = self.connected().await?;
        let client = guard.as_mut().expect("connected");
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let tx = client.transaction().await.map_err(pg_err)?;
            let value = f(&tx).await?;
            tx.commit().await.map_err(pg_err)?;
            Ok(value)
        })
        .await;
        settle(&mut guard, outcome)
    }

    /// Runs read-only `f` with a timeout.
    async fn read<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        let mut guard = self.connected().await?;
        let client = guard.as_ref().expect("connected");
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, f(client)).await;
        settle(&mut guard, outcome)
    }

    async fn migrate(&self) -> Result<()> {
        self.tx(async |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE]).await.map_err(pg_err)?;
            tx.batch_execute(MIGRATIONS_TABLE).await.map_err(pg_err)?;
            let current: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            for (version, sql) in pending(Dialect::Postgres, current) {
                tx.batch_execute(&sql).await.map_err(pg_err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                    &[&version],
                )
                .await
                .map_err(pg_err)?;
            }
            Ok(())
        })
        .await
    }
}

fn settle<T>(
    guard: &mut MutexGuard<'_, Option<Client>>,
    outcome: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
) -> Result<T> {
    match outcome {
        Err(_) => {
            **guard = None;
            Err(StoreError::Unavailable(
                "PostgreSQL did not answer in time".into(),
            ))
        }
        Ok(Err(e)) => {
            if guard.as_ref().is_none_or(Client::is_closed) {
                **guard = None;
            }
            Err(e)
        }
        Ok(Ok(v)) => Ok(v),
    }
}

async fn bump(tx: &Transaction<'_>, kind: &str) -> Result<()> {
    tx.execute(
        "UPDATE generations SET value = value + 1 WHERE kind = $1",
        &[&kind],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

async fn insert_client(tx: &Transaction<'_>, c: &ClientRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO clients (key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &c.key_id,
            &c.name,
            &c.site_id,
            &format_roles(&c.roles),
            &&c.secret[..],
            &&c.lookup_hash[..],
            &c.key_salt,
            &c.key_hash,
            &c.disabled,
            &c.created_s,
        ],
    )
    .await
    .map_err(pg_err)?;
    bump(tx, "clients").await
}

async fn upsert_site(tx: &Transaction<'_>, s: &SiteRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO sites (id, name, enabled, domain_names, app_names, created) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled,
             domain_names = excluded.domain_names, app_names = excluded.app_names",
        &[&s.id, &s.name, &s.enabled, &to_json_list(&s.domain_names), &to_json_list(&s.app_names), &s.created_s],
    )
    .await
    .map_err(pg_err)?;
    bump(tx, "sites").await
}

async fn insert_keys(
    tx: &Transaction<'_>,
    keysets: &[KeysetRecord],
    keys: &[KeyRecord],
) -> Result<()> {
    for k in keysets {
        let allowed = k.allowed_sites.as_ref().map(|a| to_json_list(a));
        tx.execute(
            "INSERT INTO keysets (id, site_id, name, allowed_sites, enabled, is_default, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &k.id,
                &k.site_id,
                &k.name,
                &allowed,
                &k.enabled,
                &k.is_default,
                &k.created_s,
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    for k in keys {
        tx.execute(
            "INSERT INTO keys (id, keyset_id, secret, created, activates, expires) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&i64::from(k.id), &k.keyset_id, &&k.secret[..], &k.created_s, &k.activates_s, &k.expires_s],
        )
        .await
        .map_err(pg_err)?;
    }
    bump(tx, "keys").await
}

async fn put_salts(tx: &Transaction<'_>, state: &SaltState) -> Result<()> {
    tx.execute(
        "INSERT INTO salt_meta (id, first_level_salt, id_prefix, id_secret, bucket_count) VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET id_prefix = excluded.id_prefix, id_secret = excluded.id_secret,
             bucket_count = excluded.bucket_count",
        &[
            &state.meta.first_level_salt,
            &state.meta.id_prefix,
            &state.meta.id_secret,
            &(state.buckets.len() as i64),
        ],
    )
    .await
    .map_err(pg_err)?;
    tx.execute("DELETE FROM salt_chunks", &[])
        .await
        .map_err(pg_err)?;
    let insert = tx
        .prepare("INSERT INTO salt_chunks (chunk, buckets) VALUES ($1, $2)")
        .await
        .map_err(pg_err)?;
    for (i, chunk) in state.buckets.chunks(SALT_CHUNK_BUCKETS).enumerate() {
        tx.execute(&insert, &[&(i as i32), &encode_salt_chunk(chunk)])
            .await
            .map_err(pg_err)?;
    }
    bump(tx, "salts").await
}

async fn insert_cstg(tx: &Transaction<'_>, k: &CstgKeypairRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO cstg_keypairs (subscription_id, site_id, public_key, private_key, disabled, created)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&k.subscription_id, &k.site_id, &k.public_key, &k.private_key, &k.disabled, &k.created_s],
    )
    .await
    .map_err(pg_err)?;
    bump(tx, "cstg").await
}

async fn read_salt_meta(c: &Client) -> Result<Option<(SaltMeta, i64)>> {
    let row = c
        .query_opt(
            "SELECT first_level_salt, id_prefix, id_secret, bucket_count FROM salt_meta WHERE id = 1",
            &[],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| {
        (
            SaltMeta {
                first_level_salt: r.get(0),
                id_prefix: r.get(1),
                id_secret: r.get(2),
            },
            r.get(3),
        )
    }))
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn initialize(&self, state: &InitialState) -> Result<bool> {
        self.tx(async |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_INITIALIZE])
                .await
                .map_err(pg_err)?;
            let exists: bool = tx
                .query_one("SELECT EXISTS (SELECT 1 FROM salt_meta)", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            if exists {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO store_meta (name, value) VALUES ('api_key_pepper', $1)",
                &[&state.api_key_pepper],
            )
            .await
            .map_err(pg_err)?;
            put_salts(tx, &state.salts).await?;
            insert_keys(tx, &state.keysets, &state.keys).await?;
            for s in &state.sites {
                upsert_site(tx, s).await?;
            }
            for c in &state.clients {
                insert_client(tx, c).await?;
            }
            for k in &state.cstg_keypairs {
                insert_cstg(tx, k).await?;
            }
            Ok(true)
        })
        .await
    }

    async fn is_initialized(&self) -> Result<bool> {
        self.read(async |c| {
            Ok(c.query_one("SELECT EXISTS (SELECT 1 FROM salt_meta)", &[])
                .await
                .map_err(pg_err)?
                .get(0))
        })
        .await
    }

    async fn generations(&self) -> Result<Generations> {
        self.read(async |c| {
            let mut g = Generations::default();
            for row in c
                .query("SELECT kind, value FROM generations", &[])
                .await
                .map_err(pg_err)?
            {
                g.set(row.get::<_, &str>(0), row.get(1));
            }
            g.optout_seq = c
                .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM optouts", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            Ok(g)
        })
        .await
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(async |c| {
            Ok(
                c.query_opt("SELECT value FROM store_meta WHERE name = $1", &[&name])
                    .await
                    .map_err(pg_err)?
                    .map(|r| r.get(0)),
            )
        })
        .await
    }

    async fn try_claim(&self, name: &str, now_ms: i64, period_ms: i64) -> Result<bool> {
        let key = format!("claim:{name}");
        self.tx(async |tx| {
            // Row lock (or, for a first claim, the insert's unique key) serialises claimants.
            tx.execute(
                "INSERT INTO store_meta (name, value) VALUES ($1, '0') ON CONFLICT (name) DO NOTHING",
                &[&key],
            )
            .await
            .map_err(pg_err)?;
            let last: String = tx
                .query_one("SELECT value FROM store_meta WHERE name = $1 FOR UPDATE", &[&key])
                .await
                .map_err(pg_err)?
                .get(0);
            if last.parse::<i64>().is_ok_and(|last| now_ms - last < period_ms) {
                return Ok(false);
            }
            tx.execute("UPDATE store_meta SET value = $2 WHERE name = $1", &[&key, &now_ms.to_string()])
                .await
                .map_err(pg_err)?;
            Ok(true)
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        self.read(async |c| {
            let rows = c
                .query(
                    "SELECT key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created
                     FROM clients ORDER BY created, key_id",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(ClientRecord {
                        key_id: r.get(0),
                        name: r.get(1),
                        site_id: r.get(2),
                        roles: parse_roles(r.get(3)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        secret: secret_from(r.get(4), "client secret")?,
                        lookup_hash: secret_from(r.get(5), "client lookup hash")?,
                        key_salt: r.get(6),
                        key_hash: r.get(7),
                        disabled: r.get(8),
                        created_s: r.get(9),
                    })
                })
                .collect()
        })
        .await
    }

    async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        self.tx(async |tx| insert_client(tx, client).await).await
    }

    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool> {
        self.tx(async |tx| {
            let n = tx
                .execute(
                    "UPDATE clients SET disabled = $1 WHERE key_id = $2 OR name = $2",
                    &[&disabled, &key_id_or_name],
                )
                .await
                .map_err(pg_err)?;
            if n > 0 {
                bump(tx, "clients").await?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.read(async |c| {
            let rows = c
                .query("SELECT id, name, enabled, domain_names, app_names, created FROM sites ORDER BY id", &[])
                .await
                .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(SiteRecord {
                        id: r.get(0),
                        name: r.get(1),
                        enabled: r.get(2),
                        domain_names: from_json_list(r.get(3))?,
                        app_names: from_json_list(r.get(4))?,
                        created_s: r.get(5),
                    })
                })
                .collect()
        })
        .await
    }

    async fn upsert_site(&self, site: &SiteRecord) -> Result<()> {
        self.tx(async |tx| upsert_site(tx, site).await).await
    }

    async fn keysets(&self) -> Result<Vec<KeysetRecord>> {
        self.read(async |c| {
            let rows = c
                .query(
                    "SELECT id, site_id, name, allowed_sites, enabled, is_default, created FROM keysets ORDER BY id",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(KeysetRecord {
                        id: r.get(0),
                        site_id: r.get(1),
                        name: r.get(2),
                        allowed_sites: r.get::<_, Option<&str>>(3).map(from_json_list).transpose()?,
                        enabled: r.get(4),
                        is_default: r.get(5),
                        created_s: r.get(6),
                    })
                })
                .collect()
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read(async |c| {
            let rows = c
                .query("SELECT id, keyset_id, secret, created, activates, expires FROM keys ORDER BY id", &[])
                .await
                .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    Ok(KeyRecord {
                        id: u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("key id {id}")))?,
                        keyset_id: r.get(1),
                        secret: secret_from(r.get(2), "key secret")?,
                        created_s: r.get(3),
                        activates_s: r.get(4),
                        expires_s: r.get(5),
                    })
                })
                .collect()
        })
        .await
    }

    async fn insert_keys(&self, keysets: &[KeysetRecord], keys: &[KeyRecord]) -> Result<()> {
        self.tx(async |tx| insert_keys(tx, keysets, keys).await)
            .await
    }

    async fn delete_keys(&self, ids: &[u32]) -> Result<()> {
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        self.tx(async |tx| {
            tx.execute("DELETE FROM keys WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(pg_err)?;
            bump(tx, "keys").await
        })
        .await
    }

    async fn salts(&self) -> Result<Option<SaltState>> {
        self.read(async |c| {
            let Some((meta, count)) = read_salt_meta(c).await? else {
                return Ok(None);
            };
            let mut buckets = Vec::with_capacity(count.max(0) as usize);
            for row in c
                .query("SELECT buckets FROM salt_chunks ORDER BY chunk", &[])
                .await
                .map_err(pg_err)?
            {
                buckets.extend(decode_salt_chunk(row.get(0))?);
            }
            if buckets.len() as i64 != count {
                return Err(StoreError::Corrupt(format!(
                    "salt_meta says {count} buckets, chunks hold {}",
                    buckets.len()
                )));
            }
            Ok(Some(SaltState { meta, buckets }))
        })
        .await
    }

    async fn salt_table(&self) -> Result<Option<(SaltMeta, uid2_proto::salt::SaltTable)>> {
        self.read(async |c| {
            let Some((meta, count)) = read_salt_meta(c).await? else {
                return Ok(None);
            };
            let rows = c
                .query("SELECT buckets FROM salt_chunks ORDER BY chunk", &[])
                .await
                .map_err(pg_err)?;
            let table = pack_salt_chunks(
                count.max(0) as usize,
                rows.iter().map(|r| Ok(r.get::<_, String>(0))),
            )?;
            Ok(Some((meta, table)))
        })
        .await
    }

    async fn put_salt_buckets(&self, state: &SaltState) -> Result<()> {
        self.tx(async |tx| {
            let current: Option<String> = tx
                .query_opt("SELECT first_level_salt FROM salt_meta WHERE id = 1", &[])
                .await
                .map_err(pg_err)?
                .map(|r| r.get(0));
            if current.is_some_and(|c| c != state.meta.first_level_salt) {
                return Err(StoreError::Conflict(
                    "the first-level salt cannot change: every opt-out is keyed on it".into(),
                ));
            }
            put_salts(tx, state).await
        })
        .await
    }

    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>> {
        self.read(async |c| {
            let rows = c
                .query(
                    "SELECT subscription_id, site_id, public_key, private_key, disabled, created
                     FROM cstg_keypairs ORDER BY created, subscription_id",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            Ok(rows
                .iter()
                .map(|r| CstgKeypairRecord {
                    subscription_id: r.get(0),
                    site_id: r.get(1),
                    public_key: r.get(2),
                    private_key: r.get(3),
                    disabled: r.get(4),
                    created_s: r.get(5),
                })
                .collect())
        })
        .await
    }

    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()> {
        self.tx(async |tx| insert_cstg(tx, keypair).await).await
    }

    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord> {
        self.tx(async |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_OPTOUT]).await.map_err(pg_err)?;
            let seq: i64 = tx
                .query_one(
                    "INSERT INTO optouts (first_level_hash, advertising_id, opted_out_at) VALUES ($1, $2, $3) RETURNING seq",
                    &[&&first_level_hash[..], &advertising_id, &opted_out_at_ms],
                )
                .await
                .map_err(pg_err)?
                .get(0);
            Ok(OptOutRecord {
                seq,
                first_level_hash,
                advertising_id: advertising_id.clone(),
                opted_out_at_ms,
            })
        })
        .await
    }

    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>> {
        self.read(async |c| {
            let rows = c
                .query(
                    "SELECT seq, first_level_hash, advertising_id, opted_out_at FROM optouts
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .await
                .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(OptOutRecord {
                        seq: r.get(0),
                        first_level_hash: secret_from(r.get(1), "first-level hash")?,
                        advertising_id: r.get(2),
                        opted_out_at_ms: r.get(3),
                    })
                })
                .collect()
        })
        .await
    }
}
