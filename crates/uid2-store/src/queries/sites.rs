//! Sites and the client-side token generation key pairs they own.

use super::{bump, from_json_list, to_json_list};
use crate::sql::{Conn, Param};
use crate::{CstgKeypairRecord, Result, SiteRecord, StateKind};

/// Every site.
pub(crate) async fn all(conn: &mut impl Conn) -> Result<Vec<SiteRecord>> {
    conn.query(
        "SELECT id, name, enabled, domain_names, app_names, created FROM sites ORDER BY id",
        &[],
        |r| {
            Ok(SiteRecord {
                id: r.i32(0)?,
                name: r.text(1)?,
                enabled: r.bool(2)?,
                domain_names: from_json_list(&r.text(3)?)?,
                app_names: from_json_list(&r.text(4)?)?,
                created_s: r.i64(5)?,
            })
        },
    )
    .await
}

/// Adds or replaces a site (its creation time is kept).
pub(crate) async fn upsert(conn: &mut impl Conn, s: &SiteRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO sites (id, name, enabled, domain_names, app_names, created) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled,
             domain_names = excluded.domain_names, app_names = excluded.app_names",
        &[
            Param::I32(s.id),
            Param::Text(&s.name),
            Param::Bool(s.enabled),
            Param::Text(&to_json_list(&s.domain_names)),
            Param::Text(&to_json_list(&s.app_names)),
            Param::I64(s.created_s),
        ],
    )
    .await?;
    bump(conn, StateKind::Sites).await
}

/// Every CSTG key pair.
pub(crate) async fn cstg_keypairs(conn: &mut impl Conn) -> Result<Vec<CstgKeypairRecord>> {
    conn.query(
        "SELECT subscription_id, site_id, public_key, private_key, disabled, created
         FROM cstg_keypairs ORDER BY created, subscription_id",
        &[],
        |r| {
            Ok(CstgKeypairRecord {
                subscription_id: r.text(0)?,
                site_id: r.i32(1)?,
                public_key: r.text(2)?,
                private_key: r.text(3)?,
                disabled: r.bool(4)?,
                created_s: r.i64(5)?,
            })
        },
    )
    .await
}

/// Adds a CSTG key pair.
pub(crate) async fn insert_cstg(conn: &mut impl Conn, k: &CstgKeypairRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO cstg_keypairs (subscription_id, site_id, public_key, private_key, disabled, created)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::Text(&k.subscription_id),
            Param::I32(k.site_id),
            Param::Text(&k.public_key),
            Param::Text(&k.private_key),
            Param::Bool(k.disabled),
            Param::I64(k.created_s),
        ],
    )
    .await?;
    bump(conn, StateKind::Cstg).await
}
