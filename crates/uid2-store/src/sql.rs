//! The SQL layer both backends share: what a connection must offer so that every statement and
//! every row mapping is written once (in [`crate::queries`]) for SQLite and PostgreSQL alike.
//!
//! Statements are written in the subset of SQL the two engines share, with PostgreSQL's numbered
//! placeholders (`$1`); [`render`] turns them into SQLite's (`?1`). What cannot be said in shared
//! SQL (transaction-scoped locks, "does this table exist") is a method of [`Conn`].

use std::borrow::Cow;

use crate::Result;

/// SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// `sql` (written with `$N` placeholders) in `dialect`'s syntax.
pub(crate) fn render(dialect: Dialect, sql: &str) -> Cow<'_, str> {
    match dialect {
        Dialect::Postgres => Cow::Borrowed(sql),
        // Shared statements never contain `$` except in placeholders.
        Dialect::Sqlite => Cow::Owned(sql.replace('$', "?")),
    }
}

/// A statement parameter. Integer widths follow the column types (`INTEGER` is `I32`, `BIGINT`
/// is `I64`), which PostgreSQL checks and SQLite does not.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    I32(i32),
    I64(i64),
    Bool(bool),
    Text(&'a str),
    OptText(Option<&'a str>),
    Blob(&'a [u8]),
    OptBlob(Option<&'a [u8]>),
}

/// One result row, read by column index.
pub(crate) trait Row {
    fn i32(&self, i: usize) -> Result<i32>;
    fn i64(&self, i: usize) -> Result<i64>;
    fn bool(&self, i: usize) -> Result<bool>;
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn blob(&self, i: usize) -> Result<Vec<u8>>;
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>>;
}

/// Transaction-scoped locks that serialise writers of one kind across every process sharing the
/// store. On PostgreSQL they are advisory locks held until commit; on SQLite every write
/// transaction already holds the database's single write lock, so they cost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Applying migrations.
    Migrate,
    /// Initialising an empty store.
    Initialize,
    /// Appending opt-outs: sequence numbers then become visible in commit order.
    OptOut,
    /// Writing keysets and keys: id allocation and rotation.
    Keys,
    /// Writing salt buckets.
    Salts,
}

impl Lock {
    /// The advisory lock key (arbitrary constants, scoped to this schema).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn key(self) -> i64 {
        0x5549_4432_0000
            + match self {
                Self::Migrate => 1,
                Self::Initialize => 2,
                Self::OptOut => 3,
                Self::Keys => 4,
                Self::Salts => 5,
            }
    }
}

/// A connection (or transaction) the shared queries run on.
pub(crate) trait Conn {
    /// The backend's dialect.
    fn dialect(&self) -> Dialect;

    /// Runs a statement; returns the rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64>;

    /// Runs a query, mapping each row as it is read.
    async fn query<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl FnMut(&dyn Row) -> Result<T> + Send,
    ) -> Result<Vec<T>>;

    /// Runs several statements without parameters (migrations).
    async fn batch(&mut self, sql: &str) -> Result<()>;

    /// Takes `lock` until the end of the current transaction.
    async fn lock(&mut self, lock: Lock) -> Result<()>;

    /// The first row of a query, if any.
    async fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl FnMut(&dyn Row) -> Result<T> + Send,
    ) -> Result<Option<T>> {
        Ok(self.query(sql, params, map).await?.into_iter().next())
    }

    /// The one row a query always returns (aggregates, `EXISTS`).
    async fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl FnMut(&dyn Row) -> Result<T> + Send,
    ) -> Result<T> {
        self.query_opt(sql, params, map).await?.ok_or_else(|| {
            crate::StoreError::Corrupt(format!("no row from a query that always has one: {sql}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rendered_per_dialect() {
        let sql = "UPDATE t SET a = $2 WHERE b = $1";
        assert_eq!(render(Dialect::Postgres, sql), sql);
        assert_eq!(
            render(Dialect::Sqlite, sql),
            "UPDATE t SET a = ?2 WHERE b = ?1"
        );
    }
}
