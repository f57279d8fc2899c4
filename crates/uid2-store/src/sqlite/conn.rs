//! SQLite plumbing: opening the file, running work on a blocking thread inside a transaction,
//! mapping errors, and the [`Conn`] the shared queries run on.

use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::sql::{Conn, Dialect, Lock, Param, Row, render};
use crate::{Result, StoreError};

/// Maps a SQLite error to what the caller can do about it.
fn sql_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::ConstraintViolation => StoreError::Conflict(e.to_string()),
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::SystemIoFailure
            | C::CannotOpen
            | C::DiskFull
            | C::OutOfMemory => StoreError::Unavailable(e.to_string()),
            C::DatabaseCorrupt | C::NotADatabase => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Rejected(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Rejected(e.to_string()),
    }
}

/// The shared queries are async for PostgreSQL's sake; on SQLite every step completes at once,
/// on the blocking thread that holds the connection, so one poll runs them to the end.
fn run_now<T>(work: impl Future<Output = T>) -> T {
    match pin!(work).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("SQLite queries never wait"),
    }
}

/// Creates missing directories, readable by their owner only (on Unix).
fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

/// Creates the file empty, readable and writable by its owner only (on Unix), unless it exists.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The connection of a store, shared by its calls one at a time.
#[derive(Clone)]
pub(super) struct Shared(Arc<Mutex<Connection>>);

impl Shared {
    /// Opens (creating the file and its directory if needed) the database at `path`. What it
    /// creates only its owner may read: the store holds client secrets and every key.
    pub(super) fn open(path: &str) -> Result<Self> {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            private_dir_builder()
                .create(dir)
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        create_private_file(Path::new(path))
            .map_err(|e| StoreError::Unavailable(format!("creating {path}: {e}")))?;
        // SQLite gives the -wal and -shm files the database file's permissions.
        let conn = Connection::open(path).map_err(sql_err)?;
        // The CLI and a running operator may write at once: wait for the lock, do not fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql_err)?;
        // FULL: a committed opt-out has reached the disk before it is acknowledged.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
        )
        .map_err(sql_err)?;
        Ok(Self(Arc::new(Mutex::new(conn))))
    }

    /// Writes a consistent copy of the database to `destination`, a new file readable by its
    /// owner only, while other connections (a running operator) go on reading and writing:
    /// `VACUUM INTO` reads one snapshot, the write-ahead log's committed pages included, which a
    /// copy of the file alone would miss. Returns the copy's size in bytes.
    pub(super) async fn back_up(&self, destination: std::path::PathBuf) -> Result<u64> {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // SQLite takes the name as text: a lossy rendering would write another file.
            let shown = destination
                .to_str()
                .ok_or_else(|| {
                    StoreError::Rejected(format!("{} is not a UTF-8 path", destination.display()))
                })?
                .to_owned();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&destination).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    StoreError::Rejected(format!(
                        "{shown} already exists; a backup never overwrites"
                    ))
                } else {
                    StoreError::Unavailable(format!("creating {shown}: {e}"))
                }
            })?;
            let copied = {
                let conn = shared
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                conn.execute("VACUUM INTO ?1", [shown.as_str()])
                    .map_err(sql_err)
                    .and_then(|_| {
                        // SQLite does not sync what VACUUM INTO writes: a backup that a power
                        // cut could tear is no backup.
                        let file = std::fs::File::open(&destination).and_then(|f| {
                            f.sync_all()?;
                            f.metadata()
                        });
                        // And the new file's entry in its directory.
                        let parent = destination
                            .parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .unwrap_or(Path::new("."));
                        let entry = std::fs::File::open(parent).and_then(|d| d.sync_all());
                        file.and_then(|m| entry.map(|()| m.len()))
                            .map_err(|e| StoreError::Unavailable(format!("syncing {shown}: {e}")))
                    })
            };
            if copied.is_err() {
                // Nothing half-written is left to be mistaken for a backup.
                let _ = std::fs::remove_file(&destination);
            }
            copied
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite worker: {e}")))?
    }

    /// Runs `work` in a transaction on a blocking thread; commits if it succeeds.
    pub(super) async fn run<T, F>(&self, behavior: TransactionBehavior, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut SqliteConn<'_>) -> Result<T> + Send + 'static,
    {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Reads get a deferred transaction: one consistent snapshot across statements.
            // Writes get IMMEDIATE, which takes the write lock up front, so concurrent writers
            // wait (busy timeout) instead of failing half-way.
            let tx = conn.transaction_with_behavior(behavior).map_err(sql_err)?;
            let value = run_now(work(&mut SqliteConn { conn: &tx }))?;
            tx.commit().map_err(sql_err)?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite worker: {e}")))?
    }
}

/// A connection inside a transaction.
pub(super) struct SqliteConn<'a> {
    conn: &'a Connection,
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(&render(Dialect::Sqlite, sql))
            .map_err(sql_err)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(params))
            .map_err(sql_err)?;
        Ok(changed as u64)
    }

    async fn query<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        mut map: impl FnMut(&dyn Row) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        let mut stmt = self
            .conn
            .prepare_cached(&render(Dialect::Sqlite, sql))
            .map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(sql_err)
    }

    async fn lock(&mut self, _lock: Lock) -> Result<()> {
        // Every write transaction holds the database's one write lock already (IMMEDIATE).
        Ok(())
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::I32(v) => ToSqlOutput::Owned(Value::Integer(v.into())),
            Param::I64(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::Bool(v) => ToSqlOutput::Owned(Value::Integer(v.into())),
            Param::Text(v) | Param::OptText(Some(v)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()))
            }
            Param::Blob(v) | Param::OptBlob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Param::OptText(None) | Param::OptBlob(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

impl Row for rusqlite::Row<'_> {
    fn i32(&self, i: usize) -> Result<i32> {
        self.get(i).map_err(sql_err)
    }
    fn i64(&self, i: usize) -> Result<i64> {
        self.get(i).map_err(sql_err)
    }
    fn bool(&self, i: usize) -> Result<bool> {
        self.get(i).map_err(sql_err)
    }
    fn text(&self, i: usize) -> Result<String> {
        self.get(i).map_err(sql_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i).map_err(sql_err)
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>> {
        self.get(i).map_err(sql_err)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.get(i).map_err(sql_err)
    }
}
