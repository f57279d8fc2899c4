//! Opt-outs: an append-only log ordered by sequence number.
//!
//! The ordering guarantee pollers rely on (see [`crate::Store::generations`]) is made here:
//! appends hold [`Lock::OptOut`] from taking a sequence number until commit, so numbers become
//! visible in increasing order and none is committed below one a poller has already read.

use super::bytes32;
use crate::sql::{Conn, Lock, Param};
use crate::{OptOutRecord, Result};

/// The highest sequence number committed.
pub(crate) async fn last_seq(conn: &mut impl Conn) -> Result<i64> {
    conn.query_one("SELECT COALESCE(MAX(seq), 0) FROM optouts", &[], |r| {
        r.i64(0)
    })
    .await
}

/// Appends an opt-out; `conn` is a write transaction.
pub(crate) async fn append(
    conn: &mut impl Conn,
    first_level_hash: [u8; 32],
    advertising_id: Option<Vec<u8>>,
    opted_out_at_ms: i64,
) -> Result<OptOutRecord> {
    conn.lock(Lock::OptOut).await?;
    let seq = conn
        .query_one(
            "INSERT INTO optouts (first_level_hash, advertising_id, opted_out_at) VALUES ($1, $2, $3)
             RETURNING seq",
            &[
                Param::Blob(&first_level_hash),
                Param::OptBlob(advertising_id.as_deref()),
                Param::I64(opted_out_at_ms),
            ],
            |r| r.i64(0),
        )
        .await?;
    Ok(OptOutRecord {
        seq,
        first_level_hash,
        advertising_id,
        opted_out_at_ms,
    })
}

/// Opt-outs with `seq > after`, in sequence order, at most `limit`.
pub(crate) async fn after(
    conn: &mut impl Conn,
    after: i64,
    limit: usize,
) -> Result<Vec<OptOutRecord>> {
    conn.query(
        "SELECT seq, first_level_hash, advertising_id, opted_out_at FROM optouts
         WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[
            Param::I64(after),
            Param::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
        |r| {
            Ok(OptOutRecord {
                seq: r.i64(0)?,
                first_level_hash: bytes32(&r.blob(1)?, "first-level hash")?,
                advertising_id: r.opt_blob(2)?,
                opted_out_at_ms: r.i64(3)?,
            })
        },
    )
    .await
}
