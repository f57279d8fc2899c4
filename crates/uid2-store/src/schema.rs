//! The schema: one ordered list of migrations shared by every backend, and applying them.
//!
//! The SQL is written once in the subset SQLite and PostgreSQL share; the two places where they
//! differ (binary columns and the append-only sequence key) are placeholders each backend fills.

use crate::sql::{Conn, Dialect, Lock, Param};
use crate::{Result, Setup, StoreError};

/// Ordered migrations: (version, SQL). Never edit a released one; append a new one. A binary
/// refuses a store migrated past the versions it knows, unless the newer migration says older
/// binaries may still use it: one that only adds what they can ignore ends with
/// `INSERT INTO store_meta (name, value) VALUES ('schema_min_reader', 'V')
///  ON CONFLICT (name) DO UPDATE SET value = excluded.value` (V: the oldest version that can).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE generations (
    kind  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO generations (kind, value) VALUES ('clients', 0), ('sites', 0), ('keys', 0), ('salts', 0), ('cstg', 0);
CREATE TABLE sites (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    domain_names TEXT NOT NULL,
    app_names    TEXT NOT NULL,
    created      BIGINT NOT NULL
);
CREATE TABLE clients (
    key_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    site_id     INTEGER NOT NULL,
    roles       TEXT NOT NULL,
    secret      {BLOB} NOT NULL,
    lookup_hash {BLOB} NOT NULL UNIQUE,
    key_salt    TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    disabled    BOOLEAN NOT NULL,
    created     BIGINT NOT NULL
);
CREATE TABLE keysets (
    id            INTEGER PRIMARY KEY,
    site_id       INTEGER NOT NULL,
    name          TEXT NOT NULL,
    allowed_sites TEXT,
    enabled       BOOLEAN NOT NULL,
    is_default    BOOLEAN NOT NULL,
    created       BIGINT NOT NULL
);
CREATE TABLE keys (
    id        BIGINT PRIMARY KEY,
    keyset_id INTEGER NOT NULL REFERENCES keysets (id),
    secret    {BLOB} NOT NULL,
    created   BIGINT NOT NULL,
    activates BIGINT NOT NULL,
    expires   BIGINT NOT NULL
);
CREATE TABLE salt_meta (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    first_level_salt TEXT NOT NULL,
    id_prefix        TEXT NOT NULL,
    id_secret        TEXT NOT NULL,
    bucket_count     BIGINT NOT NULL
);
CREATE TABLE salt_chunks (
    chunk   INTEGER PRIMARY KEY,
    buckets TEXT NOT NULL
);
CREATE TABLE cstg_keypairs (
    subscription_id TEXT PRIMARY KEY,
    site_id         INTEGER NOT NULL,
    public_key      TEXT NOT NULL,
    private_key     TEXT NOT NULL,
    disabled        BOOLEAN NOT NULL,
    created         BIGINT NOT NULL
);
CREATE TABLE optouts (
    seq              {SEQ_PK},
    first_level_hash {BLOB} NOT NULL,
    advertising_id   {BLOB},
    opted_out_at     BIGINT NOT NULL
);
CREATE INDEX optouts_by_hash ON optouts (first_level_hash);
"#,
    ),
    // Opt-outs are only ever read in sequence order (the primary key); this index cost every
    // append a second B-tree insert and answered no query.
    (2, "DROP INDEX IF EXISTS optouts_by_hash;"),
];

/// Migrations after `current`, rendered for `dialect`.
pub(crate) fn pending(dialect: Dialect, current: i64) -> Vec<(i64, String)> {
    MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > current)
        .map(|(v, sql)| (*v, render(dialect, sql)))
        .collect()
}

fn render(dialect: Dialect, sql: &str) -> String {
    let (blob, seq_pk) = match dialect {
        Dialect::Sqlite => ("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Dialect::Postgres => ("BYTEA", "BIGSERIAL PRIMARY KEY"),
    };
    sql.replace("{BLOB}", blob).replace("{SEQ_PK}", seq_pk)
}

/// The table that records applied migrations (created before any migration runs).
const MIGRATIONS_TABLE: &str =
    "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// The wall clock in Unix seconds, recorded with each applied migration.
pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether the database has this schema at all (in any version).
pub(crate) async fn exists(conn: &mut impl Conn) -> Result<bool> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')"
        }
        Dialect::Postgres => "SELECT to_regclass('schema_migrations') IS NOT NULL",
    };
    conn.query_one(sql, &[], |r| r.bool(0)).await
}

/// Brings the schema to the current version (creating it with `setup` [`Setup::Create`]);
/// returns whether the database now has it: false only for [`Setup::ExistingOnly`] on a
/// database without it, which is left untouched.
pub(crate) async fn set_up(conn: &mut impl Conn, setup: Setup, now_s: i64) -> Result<bool> {
    if setup == Setup::ExistingOnly && !exists(conn).await? {
        return Ok(false);
    }
    migrate(conn, now_s).await?;
    Ok(true)
}

/// Applies pending migrations; `conn` is a write transaction.
async fn migrate(conn: &mut impl Conn, now_s: i64) -> Result<()> {
    // Several operators may start at once on an empty database: one migrates, the others wait
    // and then find nothing to do.
    conn.lock(Lock::Migrate).await?;
    // Checked rather than `CREATE TABLE IF NOT EXISTS`, which makes PostgreSQL send a notice
    // ("relation already exists") that its client logs on every start.
    if !exists(conn).await? {
        conn.batch(MIGRATIONS_TABLE).await?;
    }
    let current = conn
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
            |r| r.i64(0),
        )
        .await?;
    // A newer binary migrated this store. Unless that migration recorded that binaries knowing
    // only older versions can still use it (`schema_min_reader` in `store_meta`, so that a
    // fleet can roll back), this one does not know the tables and could damage them.
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        let min_reader = conn
            .query_opt(
                "SELECT value FROM store_meta WHERE name = 'schema_min_reader'",
                &[],
                |r| r.text(0),
            )
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(current);
        if min_reader > known {
            return Err(StoreError::Rejected(format!(
                "the store's schema is version {current}, which needs a uid2 that knows version \
                 {min_reader} (this one knows {known}): run a newer uid2"
            )));
        }
    }
    for (version, sql) in pending(conn.dialect(), current) {
        conn.batch(&sql).await?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[Param::I64(version), Param::I64(now_s)],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_render_without_placeholders() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for (_, sql) in pending(dialect, 0) {
                assert!(!sql.contains('{'), "{dialect:?}: unrendered placeholder");
            }
        }
        assert!(pending(Dialect::Sqlite, MIGRATIONS.len() as i64).is_empty());
        assert!(
            MIGRATIONS.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "versions are consecutive"
        );
    }
}
