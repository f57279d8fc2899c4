//! API clients: reading, adding, disabling, giving new keys.

use super::{bump, bytes32};
use crate::sql::{Conn, Param, Row};
use crate::{ClientRecord, Result, StateKind, StoreError, format_roles, parse_roles};

fn client(r: &dyn Row) -> Result<ClientRecord> {
    Ok(ClientRecord {
        key_id: r.text(0)?,
        name: r.text(1)?,
        site_id: r.i32(2)?,
        roles: parse_roles(&r.text(3)?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        secret: bytes32(&r.blob(4)?, "client secret")?,
        lookup_hash: bytes32(&r.blob(5)?, "client lookup hash")?,
        key_salt: r.text(6)?,
        key_hash: r.text(7)?,
        disabled: r.bool(8)?,
        created_s: r.i64(9)?,
    })
}

/// Every client.
pub(crate) async fn all(conn: &mut impl Conn) -> Result<Vec<ClientRecord>> {
    conn.query(
        "SELECT key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created
         FROM clients ORDER BY created, key_id",
        &[],
        client,
    )
    .await
}

/// Adds a client.
pub(crate) async fn insert(conn: &mut impl Conn, c: &ClientRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO clients (key_id, name, site_id, roles, secret, lookup_hash, key_salt, key_hash, disabled, created)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            Param::Text(&c.key_id),
            Param::Text(&c.name),
            Param::I32(c.site_id),
            Param::Text(&format_roles(&c.roles)),
            Param::Blob(&c.secret),
            Param::Blob(&c.lookup_hash),
            Param::Text(&c.key_salt),
            Param::Text(&c.key_hash),
            Param::Bool(c.disabled),
            Param::I64(c.created_s),
        ],
    )
    .await?;
    bump(conn, StateKind::Clients).await
}

/// Disables or enables the client with this key id or, if none has it, the one with this name
/// (names are unique): never two clients, even when one's name is another's key id. Returns
/// whether one matched.
pub(crate) async fn set_disabled(
    conn: &mut impl Conn,
    key_id_or_name: &str,
    disabled: bool,
) -> Result<bool> {
    let n = conn
        .execute(
            "UPDATE clients SET disabled = $1 WHERE key_id = $2 \
             OR (name = $2 AND NOT EXISTS (SELECT 1 FROM clients WHERE key_id = $2))",
            &[Param::Bool(disabled), Param::Text(key_id_or_name)],
        )
        .await?;
    if n > 0 {
        bump(conn, StateKind::Clients).await?;
    }
    Ok(n > 0)
}

/// Gives the client with key id `key_id` the key material of `new` (see
/// [`Store::rekey_client`](crate::Store::rekey_client)). Returns whether one matched.
pub(crate) async fn rekey(conn: &mut impl Conn, key_id: &str, new: &ClientRecord) -> Result<bool> {
    let n = conn
        .execute(
            "UPDATE clients SET key_id = $1, secret = $2, lookup_hash = $3, key_salt = $4, key_hash = $5
             WHERE key_id = $6",
            &[
                Param::Text(&new.key_id),
                Param::Blob(&new.secret),
                Param::Blob(&new.lookup_hash),
                Param::Text(&new.key_salt),
                Param::Text(&new.key_hash),
                Param::Text(key_id),
            ],
        )
        .await?;
    if n > 0 {
        bump(conn, StateKind::Clients).await?;
    }
    Ok(n > 0)
}
