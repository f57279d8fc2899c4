//! Keysets and keys. Every write takes [`Lock::Keys`], so key ids are allocated and rotations
//! applied one at a time across every process sharing the store.

use super::{bump, bytes32, from_json_list, record_claim, refused, to_json_list};
use crate::sql::{Conn, Lock, Param};
use uid2_proto::key::FALLBACK_PUBLISHER_KEYSET_ID;

use crate::{
    Conditional, KeyChange, KeyRecord, KeysetRecord, NewKey, Precondition, Result, StateKind,
    StoreError,
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

/// Adds keysets and keys with the ids they carry (initialisation); `conn` is a write
/// transaction.
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

/// The id above every keyset id in use and every reserved one (the master, refresh and fallback
/// publisher keysets); `conn` holds [`Lock::Keys`].
async fn next_keyset_id(conn: &mut impl Conn) -> Result<i32> {
    let max = conn
        .query_one("SELECT COALESCE(MAX(id), 0) FROM keysets", &[], |r| {
            r.i32(0)
        })
        .await?;
    max.max(FALLBACK_PUBLISHER_KEYSET_ID)
        .checked_add(1)
        .ok_or_else(|| StoreError::Rejected("keyset ids exhausted".into()))
}

/// Whether `site_id` has a keyset.
async fn has_keyset(conn: &mut impl Conn, site_id: i32) -> Result<bool> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM keysets WHERE site_id = $1)",
        &[Param::I32(site_id)],
        |r| r.bool(0),
    )
    .await
}

/// Applies `change` if `pre` holds; returns the new keys' ids: those of `change.add` in order,
/// then that of the site keyset's key if one was created. `conn` is a write transaction.
pub(crate) async fn change(
    conn: &mut impl Conn,
    change: &KeyChange,
    pre: &Precondition,
) -> Result<Conditional<Vec<u32>>> {
    conn.lock(Lock::Keys).await?;
    if let Some(refused) = refused(conn, StateKind::Keys, pre).await? {
        return Ok(refused);
    }
    // Under the lock, no other writer can take these ids (or add a keyset for the site) before
    // this transaction commits.
    let max: i64 = conn
        .query_one("SELECT COALESCE(MAX(id), 0) FROM keys", &[], |r| r.i64(0))
        .await?;
    let mut ids = (max + 1..)
        .map(|id| u32::try_from(id).map_err(|_| StoreError::Rejected("key ids exhausted".into())));
    let mut added = Vec::with_capacity(change.add.len() + 1);
    for k in &change.add {
        let id = ids.next().expect("endless")?;
        insert_key(conn, &k.clone().with_id(id)).await?;
        added.push(id);
    }
    if let Some(site) = &change.site_keyset
        && !has_keyset(conn, site.keyset.site_id).await?
    {
        let keyset_id = next_keyset_id(conn).await?;
        insert_keysets(
            conn,
            &[KeysetRecord {
                id: keyset_id,
                ..site.keyset.clone()
            }],
        )
        .await?;
        let key = NewKey {
            keyset_id,
            ..site.key.clone()
        };
        let id = ids.next().expect("endless")?;
        insert_key(conn, &key.with_id(id)).await?;
        added.push(id);
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
    // A change that turned out empty (a site that had its keyset already) changes nothing
    // operators would reload.
    if !added.is_empty() || !change.remove.is_empty() {
        bump(conn, StateKind::Keys).await?;
    }
    Ok(Conditional::Written(added))
}
