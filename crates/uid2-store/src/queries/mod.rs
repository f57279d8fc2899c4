//! Every store operation, written once against [`Conn`] and run by both backends: the SQL text,
//! the parameters and the mapping of rows to records. A backend only decides where the
//! operation runs (which connection, which transaction, which time limit).
//!
//! This module holds what concerns the store as a whole: initialisation, generation counters,
//! settings and the claims of periodic jobs; one submodule per kind of record holds the rest.

pub(crate) mod clients;
pub(crate) mod keys;
pub(crate) mod optouts;
pub(crate) mod raw_uids;
pub(crate) mod salts;
pub(crate) mod sites;

use uid2_proto::salt::RawUidSettings;

use crate::sql::{Conn, Lock, Param};
use crate::{
    Claim, ClientRecord, Conditional, CstgKeypairRecord, Generations, InitialState, KeyRecord,
    KeysetRecord, Precondition, Result, SiteRecord, StateKind, StoreError,
};

/// Records that `kind` changed: pollers compare this counter to decide what to reload.
pub(crate) async fn bump(conn: &mut impl Conn, kind: StateKind) -> Result<()> {
    conn.execute(
        "UPDATE generations SET value = value + 1 WHERE kind = $1",
        &[Param::Text(kind.as_str())],
    )
    .await?;
    Ok(())
}

/// The generation of one kind.
pub(crate) async fn generation(conn: &mut impl Conn, kind: StateKind) -> Result<i64> {
    conn.query_one(
        "SELECT value FROM generations WHERE kind = $1",
        &[Param::Text(kind.as_str())],
        |r| r.i64(0),
    )
    .await
}

/// Every generation counter and the last opt-out sequence number.
pub(crate) async fn generations(conn: &mut impl Conn) -> Result<Generations> {
    let mut g = Generations::default();
    for (name, value) in conn
        .query("SELECT kind, value FROM generations", &[], |r| {
            Ok((r.text(0)?, r.i64(1)?))
        })
        .await?
    {
        g.set_named(&name, value);
    }
    g.optout_seq = optouts::last_seq(conn).await?;
    Ok(g)
}

/// Whether the store holds state: only initialisation writes the first `salt_meta` row.
pub(crate) async fn is_initialized(conn: &mut impl Conn) -> Result<bool> {
    conn.query_one("SELECT EXISTS (SELECT 1 FROM salt_meta)", &[], |r| {
        r.bool(0)
    })
    .await
}

/// An [`InitialState`] ready to be written: owned, with its salts rendered (see
/// [`salts::SaltRows`]).
pub(crate) struct InitialRows {
    api_key_pepper: String,
    raw_uids: RawUidSettings,
    salts: salts::SaltRows,
    keysets: Vec<KeysetRecord>,
    keys: Vec<KeyRecord>,
    sites: Vec<SiteRecord>,
    clients: Vec<ClientRecord>,
    cstg_keypairs: Vec<CstgKeypairRecord>,
}

impl InitialRows {
    /// Prepares `state`.
    pub(crate) fn new(state: &InitialState) -> Result<Self> {
        Ok(Self {
            api_key_pepper: state.api_key_pepper.clone(),
            raw_uids: state.raw_uids,
            salts: salts::SaltRows::new(&state.salts)?,
            keysets: state.keysets.clone(),
            keys: state.keys.clone(),
            sites: state.sites.clone(),
            clients: state.clients.clone(),
            cstg_keypairs: state.cstg_keypairs.clone(),
        })
    }
}

/// Writes `rows` unless the store holds some state already; `conn` is a write transaction.
pub(crate) async fn initialize(conn: &mut impl Conn, rows: &InitialRows) -> Result<bool> {
    // Of several operators starting on one empty database, the first initialises it and the
    // others, waiting here, then find it initialised.
    conn.lock(Lock::Initialize).await?;
    if is_initialized(conn).await? {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO store_meta (name, value) VALUES ('api_key_pepper', $1)",
        &[Param::Text(&rows.api_key_pepper)],
    )
    .await?;
    raw_uids::write(conn, &rows.raw_uids).await?;
    salts::write(conn, &rows.salts).await?;
    keys::insert(conn, &rows.keysets, &rows.keys).await?;
    for site in &rows.sites {
        sites::upsert(conn, site).await?;
    }
    for client in &rows.clients {
        clients::insert(conn, client).await?;
    }
    for keypair in &rows.cstg_keypairs {
        sites::insert_cstg(conn, keypair).await?;
    }
    Ok(true)
}

/// A value of the store's settings.
pub(crate) async fn meta(conn: &mut impl Conn, name: &str) -> Result<Option<String>> {
    conn.query_opt(
        "SELECT value FROM store_meta WHERE name = $1",
        &[Param::Text(name)],
        |r| r.text(0),
    )
    .await
}

/// Raises the numeric setting `name` to at least `value`; returns the setting.
pub(crate) async fn raise_setting(conn: &mut impl Conn, name: &str, value: i64) -> Result<i64> {
    // One statement: PostgreSQL re-reads a conflicting row under its lock, so two raisers at
    // once cannot overwrite each other with a lower value.
    let text = conn
        .query_one(
            "INSERT INTO store_meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = CASE
                 WHEN CAST(store_meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)
                 THEN excluded.value ELSE store_meta.value END
             RETURNING value",
            &[Param::Text(name), Param::Text(&value.to_string())],
            |r| r.text(0),
        )
        .await?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("setting {name} is not a number: {text:?}")))
}

fn claim_key(job: &str) -> String {
    format!("claim:{job}")
}

/// When the periodic job last ran, if ever.
pub(crate) async fn last_claim_ms(conn: &mut impl Conn, job: &str) -> Result<Option<i64>> {
    let Some(text) = meta(conn, &claim_key(job)).await? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|_| StoreError::Corrupt(format!("claim of {job} is not a time: {text:?}")))
}

/// Checks `pre` for a write of `kind`: the outcome to report instead of writing (`Stale` or
/// `Unclaimed`) if it does not hold. `conn` is a write transaction holding the kind's lock.
pub(crate) async fn refused<T>(
    conn: &mut impl Conn,
    kind: StateKind,
    pre: &Precondition,
) -> Result<Option<Conditional<T>>> {
    if let Some(expected) = pre.generation
        && generation(conn, kind).await? != expected
    {
        return Ok(Some(Conditional::Stale));
    }
    if let Some(claim) = &pre.claim
        && !claim.is_due(last_claim_ms(conn, &claim.job).await?)
    {
        return Ok(Some(Conditional::Unclaimed));
    }
    Ok(None)
}

/// Records `claim` as the job's last run (in the transaction of the write it accompanies).
pub(crate) async fn record_claim(conn: &mut impl Conn, claim: &Claim) -> Result<()> {
    conn.execute(
        "INSERT INTO store_meta (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[
            Param::Text(&claim_key(&claim.job)),
            Param::Text(&claim.now_ms.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Encodes a list column (domain names, allowed sites) as JSON.
fn to_json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("lists of strings and numbers serialise")
}

/// Decodes a list column.
fn from_json_list<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

/// A 32-byte column.
fn bytes32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}
