//! Salt settings and buckets. Buckets are stored in chunks of [`SALT_CHUNK_BUCKETS`], each the
//! official salt-file text, and read one chunk per statement: a million buckets never travel as
//! one answer, and each chunk gets its own time limit on PostgreSQL.

use uid2_proto::salt::{SaltTable, parse_salt_file, write_salt_file};

use super::{bump, generation, record_claim, refused};
use crate::sql::{Conn, Lock, Param};
use crate::{
    Claim, Conditional, Precondition, Result, SaltMeta, SaltState, StateKind, StoreError, Versioned,
};

/// Buckets per row of `salt_chunks`: a million buckets load as 64 rows.
const SALT_CHUNK_BUCKETS: usize = 16_384;

/// Most buckets reserved room for before any is read: a corrupt `bucket_count` must end in a
/// [`StoreError::Corrupt`] once the chunks are counted, not abort the process on an allocation
/// of terabytes. Four times production's 1,048,576; larger tables grow as they load.
const PREALLOCATED_BUCKETS: usize = 1 << 22;

async fn read_meta(conn: &mut impl Conn) -> Result<Option<(SaltMeta, usize)>> {
    conn.query_opt(
        "SELECT first_level_salt, id_prefix, id_secret, bucket_count FROM salt_meta WHERE id = 1",
        &[],
        |r| {
            let count = r.i64(3)?;
            let first_level_salt = r.text(0)?;
            // Every raw UID is derived from it: an empty one would change them all silently.
            if first_level_salt.is_empty() {
                return Err(StoreError::Corrupt(
                    "salt_meta has an empty first-level salt".into(),
                ));
            }
            Ok((
                SaltMeta {
                    first_level_salt,
                    id_prefix: r.text(1)?,
                    id_secret: r.text(2)?,
                },
                usize::try_from(count)
                    .map_err(|_| StoreError::Corrupt(format!("bucket count {count}")))?,
            ))
        },
    )
    .await
}

/// Calls `f` with the salt-file text of each chunk in order; `f` returns how many buckets the
/// chunk held, and they must add up to `count`.
async fn for_each_chunk(
    conn: &mut impl Conn,
    count: usize,
    mut f: impl FnMut(&str) -> Result<usize>,
) -> Result<()> {
    let chunks = conn
        .query("SELECT chunk FROM salt_chunks ORDER BY chunk", &[], |r| {
            r.i32(0)
        })
        .await?;
    let mut seen = 0;
    for chunk in chunks {
        let text = conn
            .query_one(
                "SELECT buckets FROM salt_chunks WHERE chunk = $1",
                &[Param::I32(chunk)],
                |r| r.text(0),
            )
            .await?;
        seen += f(&text)?;
    }
    if seen != count {
        return Err(StoreError::Corrupt(format!(
            "salt_meta says {count} buckets, chunks hold {seen}"
        )));
    }
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The salt state with the salts generation; `conn` must read one consistent snapshot.
pub(crate) async fn versioned(conn: &mut impl Conn) -> Result<Option<Versioned<SaltState>>> {
    let generation = generation(conn, StateKind::Salts).await?;
    let Some((meta, count)) = read_meta(conn).await? else {
        return Ok(None);
    };
    let mut buckets = Vec::with_capacity(count.min(PREALLOCATED_BUCKETS));
    for_each_chunk(conn, count, |text| {
        let before = buckets.len();
        buckets.extend(parse_salt_file(text).map_err(corrupt)?);
        Ok(buckets.len() - before)
    })
    .await?;
    Ok(Some(Versioned {
        value: SaltState { meta, buckets },
        generation,
    }))
}

/// The salt settings and buckets packed into a table, chunk by chunk; `conn` must read one
/// consistent snapshot.
pub(crate) async fn table(conn: &mut impl Conn) -> Result<Option<(SaltMeta, SaltTable)>> {
    let Some((meta, count)) = read_meta(conn).await? else {
        return Ok(None);
    };
    let mut table = SaltTable::with_capacity(count.min(PREALLOCATED_BUCKETS));
    // Each chunk's text is packed straight into the table: a million buckets never exist as
    // owned records (parsing them into records was most of an operator's start-up).
    for_each_chunk(conn, count, |text| {
        table.push_salt_file(text).map_err(corrupt)
    })
    .await?;
    Ok(Some((meta, table.finish())))
}

/// A salt state as stored: settings, bucket count and each chunk's salt-file text, rendered
/// before the write transaction. SQLite writes on another thread, which must own what it
/// writes: moving these texts costs nothing, where copying a million owned buckets took longer
/// than writing them.
pub(crate) struct SaltRows {
    meta: SaltMeta,
    count: usize,
    chunks: Vec<String>,
}

impl SaltRows {
    /// Renders `state`; a state without buckets is refused: every identity maps to a bucket, so
    /// an operator cannot serve from an empty table.
    pub(crate) fn new(state: &SaltState) -> Result<Self> {
        if state.buckets.is_empty() {
            return Err(StoreError::Rejected(
                "a salt table needs at least one bucket".into(),
            ));
        }
        Ok(Self {
            meta: state.meta.clone(),
            count: state.buckets.len(),
            chunks: state
                .buckets
                .chunks(SALT_CHUNK_BUCKETS)
                .map(write_salt_file)
                .collect(),
        })
    }
}

/// Writes the whole salt state; `conn` is a write transaction.
pub(crate) async fn write(conn: &mut impl Conn, rows: &SaltRows) -> Result<()> {
    conn.execute(
        "INSERT INTO salt_meta (id, first_level_salt, id_prefix, id_secret, bucket_count) VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET id_prefix = excluded.id_prefix, id_secret = excluded.id_secret,
             bucket_count = excluded.bucket_count",
        &[
            Param::Text(&rows.meta.first_level_salt),
            Param::Text(&rows.meta.id_prefix),
            Param::Text(&rows.meta.id_secret),
            Param::I64(rows.count as i64),
        ],
    )
    .await?;
    conn.execute("DELETE FROM salt_chunks", &[]).await?;
    for (i, text) in rows.chunks.iter().enumerate() {
        let i =
            i32::try_from(i).map_err(|_| StoreError::Rejected("too many salt buckets".into()))?;
        conn.execute(
            "INSERT INTO salt_chunks (chunk, buckets) VALUES ($1, $2)",
            &[Param::I32(i), Param::Text(text)],
        )
        .await?;
    }
    bump(conn, StateKind::Salts).await
}

/// Records `claim` alone if it is still due (under the salts' lock, as a salt write would);
/// `conn` is a write transaction. Returns whether it was won.
pub(crate) async fn claim_unchanged(conn: &mut impl Conn, claim: &Claim) -> Result<bool> {
    conn.lock(Lock::Salts).await?;
    let pre = Precondition {
        generation: None,
        claim: Some(claim.clone()),
    };
    if refused::<()>(conn, StateKind::Salts, &pre).await?.is_some() {
        return Ok(false);
    }
    record_claim(conn, claim).await?;
    Ok(true)
}

/// Replaces the salt buckets if `pre` holds; `conn` is a write transaction.
pub(crate) async fn replace(
    conn: &mut impl Conn,
    rows: &SaltRows,
    pre: &Precondition,
) -> Result<Conditional<()>> {
    conn.lock(Lock::Salts).await?;
    if let Some(refused) = refused(conn, StateKind::Salts, pre).await? {
        return Ok(refused);
    }
    let current = conn
        .query_opt(
            "SELECT first_level_salt FROM salt_meta WHERE id = 1",
            &[],
            |r| r.text(0),
        )
        .await?;
    match current {
        None => {
            return Err(StoreError::Rejected(
                "the store is not initialised: there are no salts to replace".into(),
            ));
        }
        Some(current) if current != rows.meta.first_level_salt => {
            return Err(StoreError::Conflict(
                "the first-level salt cannot change: every opt-out is keyed on it".into(),
            ));
        }
        Some(_) => {}
    }
    write(conn, rows).await?;
    if let Some(claim) = &pre.claim {
        record_claim(conn, claim).await?;
    }
    Ok(Conditional::Written(()))
}
