//! PostgreSQL statements: the [`Conn`] the shared queries run on, with a time limit on every
//! statement, and errors mapped by SQLSTATE with the server's own words kept.

use std::error::Error as _;
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::GenericClient;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::sql::{Conn, Dialect, Lock, Param, Row};
use crate::{Result, StoreError};

/// Longest any one statement may take before the database counts as unreachable.
pub(super) const STATEMENT_LIMIT: Duration = Duration::from_secs(5);

/// Longest a write waits for a fleet-wide lock (opt-outs take one each) when its call has
/// more time than that left.
pub(super) const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(3);

/// Time a call keeps back, after its lock wait, for the statements that follow and its commit.
const AFTER_LOCK_MARGIN: Duration = Duration::from_millis(500);

/// How long a write's transaction may sit idle before the server ends its session.
const IDLE_IN_WRITE_LIMIT: Duration = Duration::from_secs(10);

/// The settings of one write transaction (`SET LOCAL`: they end with it, so they work through
/// a transaction-pooling proxy such as PgBouncer, which refuses them as startup options):
/// - `lock_timeout`: a write waiting for a fleet-wide lock gives up within its call's deadline
///   (`deadline`; `None` for work without one) with an answer ([`StoreError::Busy`]), so a
///   lock held too long is not mistaken for a database that does not answer;
/// - `idle_in_transaction_session_timeout`: the server ends a session that sits in a write
///   doing nothing (its operator crashed, froze or lost the network mid-write), so the locks it
///   holds are freed within seconds instead of blocking every operator's opt-outs until TCP
///   gives up on it, hours later. Writes send their statements back to back;
/// - `synchronous_commit`: a database or role set to `off` would let a commit return before
///   its WAL is on disk, so an acknowledged opt-out could vanish in a crash; such a write
///   raises it to `local` (any stricter setting, such as waiting for a standby, is kept).
pub(super) fn write_settings(deadline: Option<tokio::time::Instant>) -> String {
    let lock_wait = match deadline {
        Some(deadline) => deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(AFTER_LOCK_MARGIN)
            .min(LOCK_WAIT_LIMIT),
        None => LOCK_WAIT_LIMIT,
    };
    // Zero would mean "wait for ever".
    let lock_ms = lock_wait.as_millis().max(1);
    format!(
        "SET LOCAL lock_timeout = {lock_ms}; SET LOCAL idle_in_transaction_session_timeout = {}; \
         SELECT set_config('synchronous_commit', 'local', true) \
         WHERE current_setting('synchronous_commit') = 'off'",
        IDLE_IN_WRITE_LIMIT.as_millis()
    )
}

/// Maps a PostgreSQL error to what the caller can do about it, keeping the server's message
/// (the error's own `Display` says only "db error").
pub(super) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        let text = match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        let io = e
            .source()
            .is_some_and(|c| c.downcast_ref::<std::io::Error>().is_some());
        return if e.is_closed() || io {
            StoreError::Unavailable(format!("PostgreSQL connection: {text}"))
        } else {
            StoreError::Rejected(format!("PostgreSQL client: {text}"))
        };
    };
    let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" ({detail})"));
    }
    if *db.code() == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE {
        // The transaction's `lock_timeout` (see `write_settings`): another writer holds the
        // lock.
        return StoreError::Busy(text);
    }
    match &db.code().code()[..2] {
        // Integrity constraint violations: unique, foreign key, not null, check.
        "23" => StoreError::Conflict(text),
        // Connection exceptions, insufficient resources, operator intervention (shutdown),
        // transaction rollbacks (serialisation failure, deadlock): retrying may succeed.
        "08" | "53" | "57" | "40" => StoreError::Unavailable(text),
        _ => StoreError::Rejected(text),
    }
}

/// Runs one statement under [`STATEMENT_LIMIT`].
pub(super) async fn limited<T>(
    statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    tokio::time::timeout(STATEMENT_LIMIT, statement)
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {} s",
                STATEMENT_LIMIT.as_secs()
            ))
        })?
        .map_err(pg_err)
}

/// A client or a transaction.
pub(super) struct PgConn<'a, C> {
    client: &'a C,
}

impl<'a, C> PgConn<'a, C> {
    pub(super) fn new(client: &'a C) -> Self {
        Self { client }
    }
}

fn refs<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient + Sync> Conn for PgConn<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        limited(self.client.execute(sql, &refs(params))).await
    }

    async fn query<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl FnMut(&dyn Row) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        let rows = limited(self.client.query(sql, &refs(params))).await?;
        rows.iter().map(|r| r as &dyn Row).map(map).collect()
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        limited(self.client.batch_execute(sql)).await
    }

    async fn lock(&mut self, lock: Lock) -> Result<()> {
        limited(
            self.client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&lock.key()]),
        )
        .await
        .map(drop)
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // The checked forms, so a parameter of the wrong width is an error, not garbage.
        match self {
            Param::I32(v) => v.to_sql_checked(ty, out),
            Param::I64(v) => v.to_sql_checked(ty, out),
            Param::Bool(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::OptText(v) => v.to_sql_checked(ty, out),
            Param::Blob(v) => v.to_sql_checked(ty, out),
            Param::OptBlob(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Each variant checks its own type in `to_sql`.
        true
    }

    to_sql_checked!();
}

fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r tokio_postgres::Row,
    i: usize,
) -> Result<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

impl Row for tokio_postgres::Row {
    fn i32(&self, i: usize) -> Result<i32> {
        column(self, i)
    }
    fn i64(&self, i: usize) -> Result<i64> {
        column(self, i)
    }
    fn bool(&self, i: usize) -> Result<bool> {
        column(self, i)
    }
    fn text(&self, i: usize) -> Result<String> {
        column(self, i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        column(self, i)
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>> {
        column(self, i)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        column(self, i)
    }
}
