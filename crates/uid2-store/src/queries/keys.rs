//! Keysets and keys. Every write takes [`Lock::Keys`], so key ids are allocated and rotations
//! applied one at a time across every process sharing the store.

use super::{bump, bytes32, from_json_list, record_claim, refused, to_json_list};
use crate::sql::{Conn, Lock, Param};
use crate::{
    Conditional, KeyChange, KeyRecord, KeysetRecord, Precondition, Result, StateKind, StoreError,
};

/// Every keyset.
pub(crate) async fn keysets(conn: &mut impl Conn) -> Result<Vec<KeysetRecord>> {
    conn.query(
        "SELECT id, site_id, name, allowed_sites, enabled, is_default, created FROM keysets ORDER BY id",
        &[],
        |r| {
            Ok(KeysetRecord {
                id: r.i32(0)?,
                site_id: r.i32(1)?,
                name: r.text(2)?,
                allowed_sites: r.opt_text(3)?.map(|a| from_json_list(&a)).transpose()?,
                enabled: r.bool(4)?,
                is_default: r.bool(5)?,
                created_s: r.i64(6)?,
            })
        },
    )
    .await
}

/// Every key.
pub(crate) async fn all(conn: &mut impl Conn) -> Result<Vec<KeyRecord>> {
    conn.query(
        "SELECT id, keyset_id, secret, created, activates, expires FROM keys ORDER BY id",
        &[],
        |r| {
            let id = r.i64(0)?;
            Ok(KeyRecord {
                id: u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("key id {id}")))?,
                keyset_id: r.i32(1)?,
                secret: bytes32(&r.blob(2)?, "key secret")?,
                created_s: r.i64(3)?,
                activates_s: r.i64(4)?,
                expires_s: r.i64(5)?,
            })
        },
    )
    .await
}

async fn insert_keysets(conn: &mut impl Conn, keysets: &[KeysetRecord]) -> Result<()> {
    for k in keysets {
        let allowed = k.allowed_sites.as_ref().map(|a| to_json_list(a));
        conn.execute(
            "INSERT INTO keysets (id, site_id, name, allowed_sites, enabled, is_default, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Param::I32(k.id),
                Param::I32(k.site_id),
                Param::Text(&k.name),
                Param::OptText(allowed.as_deref()),
                Param::Bool(k.enabled),
                Param::Bool(k.is_default),
                Param::I64(k.created_s),
            ],
        )
        .await?;
    }
    Ok(())
}

async fn insert_key(conn: &mut impl Conn, k: &KeyRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO keys (id, keyset_id, secret, created, activates, expires) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::I64(i64::from(k.id)),
            Param::I32(k.keyset_id),
            Param::Blob(&k.secret),
            Param::I64(k.created_s),
            Param::I64(k.activates_s),
            Param::I64(k.expires_s),
        ],
    )
    .await?;
    Ok(())
}

/// Adds keysets and keys with the ids they carry; `conn` is a write transaction.
pub(crate) async fn insert(
    conn: &mut impl Conn,
    keysets: &[KeysetRecord],
    keys: &[KeyRecord],
) -> Result<()> {
    conn.lock(Lock::Keys).await?;
    insert_keysets(conn, keysets).await?;
    for k in keys {
        insert_key(conn, k).await?;
    }
    bump(conn, StateKind::Keys).await
}

/// Applies `change` if `pre` holds; returns the new keys' ids. `conn` is a write transaction.
pub(crate) async fn change(
    conn: &mut impl Conn,
    change: &KeyChange,
    pre: &Precondition,
) -> Result<Conditional<Vec<u32>>> {
    conn.lock(Lock::Keys).await?;
    if let Some(refusal) = refused(conn, StateKind::Keys, pre).await? {
        return Ok(refusal.outcome());
    }
    insert_keysets(conn, &change.keysets).await?;
    // Under the lock, no other writer can take these ids before this transaction commits.
    let max: i64 = conn
        .query_one("SELECT COALESCE(MAX(id), 0) FROM keys", &[], |r| r.i64(0))
        .await?;
    let mut ids = Vec::with_capacity(change.add.len());
    for (k, id) in change.add.iter().zip(max + 1..) {
        let id = u32::try_from(id).map_err(|_| StoreError::Rejected("key ids exhausted".into()))?;
        insert_key(
            conn,
            &KeyRecord {
                id,
                keyset_id: k.keyset_id,
                secret: k.secret,
                created_s: k.created_s,
                activates_s: k.activates_s,
                expires_s: k.expires_s,
            },
        )
        .await?;
        ids.push(id);
    }
    for id in &change.remove {
        conn.execute(
            "DELETE FROM keys WHERE id = $1",
            &[Param::I64(i64::from(*id))],
        )
        .await?;
    }
    if let Some(claim) = &pre.claim {
        record_claim(conn, claim).await?;
    }
    bump(conn, StateKind::Keys).await?;
    Ok(Conditional::Written(ids))
}
