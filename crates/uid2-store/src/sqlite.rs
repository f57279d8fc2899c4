//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! write (an opt-out above all) has reached the disk before the call returns. The CLI and a
//! running `uid2 serve` may use the same file at once.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::schema::{Dialect, MIGRATIONS_TABLE, SALT_CHUNK_BUCKETS, pending};
use crate::{
    ClientRecord, CstgKeypairRecord, Generations, InitialState, KeyRecord, KeysetRecord,
    OptOutRecord, Result, SaltMeta, SaltState, SiteRecord, Store, StoreError, decode_salt_chunk,
    encode_salt_chunk, format_roles, from_json_list, pack_salt_chunks, parse_roles, secret_from,
    to_json_list,
};

/// The SQLite backend.
pub struct SqliteStore {
    path: String,
    conn: Arc<Mutex<Connection>>,
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating the file, its directory and the schema if needed) the store at `path`.
    pub async fn open(path: &str) -> Result<Self> {
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = Path::new(&owned)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("creating {}: {e}", dir.display()))
                })?;
            }
            let mut conn = Connection::open(&owned).map_err(sql_err)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(sql_err)?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            )
            .map_err(sql_err)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.with(move |conn| {
            // IMMEDIATE takes the write lock up front, so concurrent writers wait (busy_timeout)
            // instead of failing half-way.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(sql_err)?;
            Ok(out)
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute(MIGRATIONS_TABLE, []).map_err(sql_err)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    for (version, sql) in pending(Dialect::Sqlite, current) {
        tx.execute_batch(&sql).map_err(sql_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_s()],
        )
        .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)
}

fn read_salt_meta(c: &Connection) -> Result<Option<(SaltMeta, i64)>> {
    c.query_row(
        "SELECT first_level_salt, id_prefix, id_secret, bucket_count FROM salt_meta WHERE id = 1",
        [],
        |r| {
            Ok((
                SaltMeta {
                    first_level_salt: r.get(0)?,
                    id_prefix: r.get(1)?,
                    id_secret: r.get(2)?,
                },
                r.get::<_, i64>(3)?,
            ))
        },
    )
    .optional()
    .map_err(sql_err)
}

fn bump(tx: &Transaction<'_>, kind: &str) -> Result<()> {
    tx.execute(
        "UPDATE generations SET value = value + 1 WHERE kind = ?1",
        params![kind],
    )
    .map_err(sql_err)?;
    Ok(())
}

fn insert_client(tx: &Transaction<'_>, c: &ClientRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO clients (key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            c.key_id,
            c.name,
            c.site_id,
            format_roles(&c.roles),
            &c.secret[..],
            &c.lookup_hash[..],
            c.key_salt,
            c.key_hash,
            c.disabled,
            c.created_s
        ],
    )
    .map_err(sql_err)?;
    bump(tx, "clients")
}

fn upsert_site(tx: &Transaction<'_>, s: &SiteRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO sites (id, name, enabled, domain_names, app_names, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled,
             domain_names = excluded.domain_names, app_names = excluded.app_names",
        params![s.id, s.name, s.enabled, to_json_list(&s.domain_names), to_json_list(&s.app_names), s.created_s],
    )
    .map_err(sql_err)?;
    bump(tx, "sites")
}

fn insert_keys(tx: &Transaction<'_>, keysets: &[KeysetRecord], keys: &[KeyRecord]) -> Result<()> {
    for k in keysets {
        tx.execute(
            "INSERT INTO keysets (id, site_id, name, allowed_sites, enabled, is_default, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                k.id,
                k.site_id,
                k.name,
                k.allowed_sites.as_ref().map(|a| to_json_list(a)),
                k.enabled,
                k.is_default,
                k.created_s
            ],
        )
        .map_err(sql_err)?;
    }
    for k in keys {
        tx.execute(
            "INSERT INTO keys (id, keyset_id, secret, created, activates, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![k.id, k.keyset_id, &k.secret[..], k.created_s, k.activates_s, k.expires_s],
        )
        .map_err(sql_err)?;
    }
    bump(tx, "keys")
}

fn put_salts(tx: &Transaction<'_>, state: &SaltState) -> Result<()> {
    tx.execute(
        "INSERT INTO salt_meta (id, first_level_salt, id_prefix, id_secret, bucket_count) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET id_prefix = excluded.id_prefix, id_secret = excluded.id_secret,
             bucket_count = excluded.bucket_count",
        params![
            state.meta.first_level_salt,
            state.meta.id_prefix,
            state.meta.id_secret,
            state.buckets.len() as i64
        ],
    )
    .map_err(sql_err)?;
    tx.execute("DELETE FROM salt_chunks", []).map_err(sql_err)?;
    for (i, chunk) in state.buckets.chunks(SALT_CHUNK_BUCKETS).enumerate() {
        tx.execute(
            "INSERT INTO salt_chunks (chunk, buckets) VALUES (?1, ?2)",
            params![i as i64, encode_salt_chunk(chunk)],
        )
        .map_err(sql_err)?;
    }
    bump(tx, "salts")
}

fn insert_cstg(tx: &Transaction<'_>, k: &CstgKeypairRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO cstg_keypairs (subscription_id, site_id, public_key, private_key, disabled, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![k.subscription_id, k.site_id, k.public_key, k.private_key, k.disabled, k.created_s],
    )
    .map_err(sql_err)?;
    bump(tx, "cstg")
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path)
    }

    async fn initialize(&self, state: &InitialState) -> Result<bool> {
        let state = state.clone();
        self.write(move |tx| {
            let exists: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM salt_meta)", [], |r| r.get(0))
                .map_err(sql_err)?;
            if exists {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO store_meta (name, value) VALUES ('api_key_pepper', ?1)",
                params![state.api_key_pepper],
            )
            .map_err(sql_err)?;
            put_salts(tx, &state.salts)?;
            insert_keys(tx, &state.keysets, &state.keys)?;
            for s in &state.sites {
                upsert_site(tx, s)?;
            }
            for c in &state.clients {
                insert_client(tx, c)?;
            }
            for k in &state.cstg_keypairs {
                insert_cstg(tx, k)?;
            }
            Ok(true)
        })
        .await
    }

    async fn is_initialized(&self) -> Result<bool> {
        self.with(|c| {
            c.query_row("SELECT EXISTS (SELECT 1 FROM salt_meta)", [], |r| r.get(0))
                .map_err(sql_err)
        })
        .await
    }

    async fn generations(&self) -> Result<Generations> {
        self.with(|c| {
            let mut g = Generations::default();
            let mut stmt = c
                .prepare_cached("SELECT kind, value FROM generations")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql_err)?;
            for row in rows {
                let (kind, value) = row.map_err(sql_err)?;
                g.set(&kind, value);
            }
            g.optout_seq = c
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM optouts", [], |r| {
                    r.get(0)
                })
                .map_err(sql_err)?;
            Ok(g)
        })
        .await
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT value FROM store_meta WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err)
        })
        .await
    }

    async fn try_claim(&self, name: &str, now_ms: i64, period_ms: i64) -> Result<bool> {
        let key = format!("claim:{name}");
        self.write(move |tx| {
            let last: Option<String> = tx
                .query_row("SELECT value FROM store_meta WHERE name = ?1", params![key], |r| r.get(0))
                .optional()
                .map_err(sql_err)?;
            if last.and_then(|v| v.parse::<i64>().ok()).is_some_and(|last| now_ms - last < period_ms) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO store_meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![key, now_ms.to_string()],
            )
            .map_err(sql_err)?;
            Ok(true)
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created
                     FROM clients ORDER BY created, key_id",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i32>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, bool>(8)?,
                        r.get::<_, i64>(9)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (key_id, name, site_id, roles, secret, lookup, key_salt, key_hash, disabled, created_s) =
                    row.map_err(sql_err)?;
                out.push(ClientRecord {
                    roles: parse_roles(&roles).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    secret: secret_from(&secret, "client secret")?,
                    lookup_hash: secret_from(&lookup, "client lookup hash")?,
                    key_id,
                    name,
                    site_id,
                    key_salt,
                    key_hash,
                    disabled,
                    created_s,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn insert_client(&self, client: &ClientRecord) -> Result<()> {
        let client = client.clone();
        self.write(move |tx| insert_client(tx, &client)).await
    }

    async fn set_client_disabled(&self, key_id_or_name: &str, disabled: bool) -> Result<bool> {
        let who = key_id_or_name.to_owned();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE clients SET disabled = ?1 WHERE key_id = ?2 OR name = ?2",
                    params![disabled, who],
                )
                .map_err(sql_err)?;
            if n > 0 {
                bump(tx, "clients")?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT id, name, enabled, domain_names, app_names, created FROM sites ORDER BY id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, name, enabled, domains, apps, created_s) = row.map_err(sql_err)?;
                out.push(SiteRecord {
                    id,
                    name,
                    enabled,
                    domain_names: from_json_list(&domains)?,
                    app_names: from_json_list(&apps)?,
                    created_s,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn upsert_site(&self, site: &SiteRecord) -> Result<()> {
        let site = site.clone();
        self.write(move |tx| upsert_site(tx, &site)).await
    }

    async fn keysets(&self) -> Result<Vec<KeysetRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT id, site_id, name, allowed_sites, enabled, is_default, created FROM keysets ORDER BY id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, bool>(4)?,
                        r.get::<_, bool>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, site_id, name, allowed, enabled, is_default, created_s) = row.map_err(sql_err)?;
                out.push(KeysetRecord {
                    id,
                    site_id,
                    name,
                    allowed_sites: allowed.map(|a| from_json_list(&a)).transpose()?,
                    enabled,
                    is_default,
                    created_s,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT id, keyset_id, secret, created, activates, expires FROM keys ORDER BY id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, keyset_id, secret, created_s, activates_s, expires_s) = row.map_err(sql_err)?;
                out.push(KeyRecord {
                    id: u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("key id {id}")))?,
                    keyset_id,
                    secret: secret_from(&secret, "key secret")?,
                    created_s,
                    activates_s,
                    expires_s,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn insert_keys(&self, keysets: &[KeysetRecord], keys: &[KeyRecord]) -> Result<()> {
        let (keysets, keys) = (keysets.to_vec(), keys.to_vec());
        self.write(move |tx| insert_keys(tx, &keysets, &keys)).await
    }

    async fn delete_keys(&self, ids: &[u32]) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |tx| {
            for id in &ids {
                tx.execute("DELETE FROM keys WHERE id = ?1", params![id])
                    .map_err(sql_err)?;
            }
            bump(tx, "keys")
        })
        .await
    }

    async fn salts(&self) -> Result<Option<SaltState>> {
        self.with(|c| {
            let Some((meta, count)) = read_salt_meta(c)? else {
                return Ok(None);
            };
            let mut buckets = Vec::with_capacity(count.max(0) as usize);
            let mut stmt = c
                .prepare("SELECT buckets FROM salt_chunks ORDER BY chunk")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql_err)?;
            for row in rows {
                buckets.extend(decode_salt_chunk(&row.map_err(sql_err)?)?);
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
        self.with(|c| {
            let Some((meta, count)) = read_salt_meta(c)? else {
                return Ok(None);
            };
            let mut stmt = c
                .prepare("SELECT buckets FROM salt_chunks ORDER BY chunk")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql_err)?;
            let table = pack_salt_chunks(count.max(0) as usize, rows.map(|r| r.map_err(sql_err)))?;
            Ok(Some((meta, table)))
        })
        .await
    }

    async fn put_salt_buckets(&self, state: &SaltState) -> Result<()> {
        let state = state.clone();
        self.write(move |tx| {
            let current: Option<String> = tx
                .query_row(
                    "SELECT first_level_salt FROM salt_meta WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err)?;
            if current.is_some_and(|c| c != state.meta.first_level_salt) {
                return Err(StoreError::Conflict(
                    "the first-level salt cannot change: every opt-out is keyed on it".into(),
                ));
            }
            put_salts(tx, &state)
        })
        .await
    }

    async fn cstg_keypairs(&self) -> Result<Vec<CstgKeypairRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT subscription_id, site_id, public_key, private_key, disabled, created
                     FROM cstg_keypairs ORDER BY created, subscription_id",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(CstgKeypairRecord {
                        subscription_id: r.get(0)?,
                        site_id: r.get(1)?,
                        public_key: r.get(2)?,
                        private_key: r.get(3)?,
                        disabled: r.get(4)?,
                        created_s: r.get(5)?,
                    })
                })
                .map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        })
        .await
    }

    async fn insert_cstg_keypair(&self, keypair: &CstgKeypairRecord) -> Result<()> {
        let keypair = keypair.clone();
        self.write(move |tx| insert_cstg(tx, &keypair)).await
    }

    async fn append_optout(
        &self,
        first_level_hash: [u8; 32],
        advertising_id: Option<Vec<u8>>,
        opted_out_at_ms: i64,
    ) -> Result<OptOutRecord> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO optouts (first_level_hash, advertising_id, opted_out_at) VALUES (?1, ?2, ?3)",
                params![&first_level_hash[..], advertising_id, opted_out_at_ms],
            )
            .map_err(sql_err)?;
            Ok(OptOutRecord {
                seq: tx.last_insert_rowid(),
                first_level_hash,
                advertising_id,
                opted_out_at_ms,
            })
        })
        .await
    }

    async fn optouts_after(&self, after: i64, limit: usize) -> Result<Vec<OptOutRecord>> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, first_level_hash, advertising_id, opted_out_at FROM optouts
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, flh, advertising_id, opted_out_at_ms) = row.map_err(sql_err)?;
                out.push(OptOutRecord {
                    seq,
                    first_level_hash: secret_from(&flh, "first-level hash")?,
                    advertising_id,
                    opted_out_at_ms,
                });
            }
            Ok(out)
        })
        .await
    }
}
