//! The settings that determine raw UIDs (identity scope, environment, v3 raw UIDs), recorded in
//! `store_meta` when the store is initialised. They are fixed for the store's life: every
//! operator and admin command on it must derive the same raw UID from the same identity, or
//! opt-outs recorded by one are not found by another.

use uid2_proto::identity::IdentityScope;
use uid2_proto::salt::{Environment, RawUidSettings};

use super::is_initialized;
use crate::sql::{Conn, Lock, Param};
use crate::{Result, StoreError};

const SCOPE: &str = "identity_scope";
const ENVIRONMENT: &str = "environment";
const V3_RAW_UIDS: &str = "v3_raw_uids";

/// Writes `settings`; `conn` is a write transaction and the store holds none yet.
pub(crate) async fn write(conn: &mut impl Conn, settings: &RawUidSettings) -> Result<()> {
    let v3 = if settings.v3_from_salts {
        "true"
    } else {
        "false"
    };
    for (name, value) in [
        (SCOPE, settings.scope.as_str()),
        (ENVIRONMENT, settings.environment.as_str()),
        (V3_RAW_UIDS, v3),
    ] {
        conn.execute(
            "INSERT INTO store_meta (name, value) VALUES ($1, $2)",
            &[Param::Text(name), Param::Text(value)],
        )
        .await?;
    }
    Ok(())
}

/// The recorded settings; `None` if the store has none (initialised before they were recorded).
pub(crate) async fn read(conn: &mut impl Conn) -> Result<Option<RawUidSettings>> {
    let rows = conn
        .query(
            "SELECT name, value FROM store_meta WHERE name IN ($1, $2, $3)",
            &[
                Param::Text(SCOPE),
                Param::Text(ENVIRONMENT),
                Param::Text(V3_RAW_UIDS),
            ],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let value = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} is missing")))
    };
    let corrupt = |name: &str, v: &str| StoreError::Corrupt(format!("setting {name} is {v:?}"));
    let scope = match value(SCOPE)? {
        "UID2" => IdentityScope::Uid2,
        "EUID" => IdentityScope::Euid,
        other => return Err(corrupt(SCOPE, other)),
    };
    let environment = value(ENVIRONMENT)?;
    let environment =
        Environment::parse(environment).ok_or_else(|| corrupt(ENVIRONMENT, environment))?;
    let v3_from_salts = match value(V3_RAW_UIDS)? {
        "true" => true,
        "false" => false,
        other => return Err(corrupt(V3_RAW_UIDS, other)),
    };
    Ok(Some(RawUidSettings {
        scope,
        environment,
        v3_from_salts,
    }))
}

/// Records `settings` in an initialised store that holds none; returns the recorded ones.
/// `conn` is a write transaction.
pub(crate) async fn adopt(
    conn: &mut impl Conn,
    settings: &RawUidSettings,
) -> Result<RawUidSettings> {
    // Serialised with initialisation and with other adopters: of several operators adopting at
    // once, the first records its settings and the others read them.
    conn.lock(Lock::Initialize).await?;
    if !is_initialized(conn).await? {
        return Err(StoreError::Rejected(
            "the store is not initialised: it records its settings when it is".into(),
        ));
    }
    if let Some(recorded) = read(conn).await? {
        return Ok(recorded);
    }
    write(conn, settings).await?;
    Ok(*settings)
}
