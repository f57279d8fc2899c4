//! The records a store holds. No email address or phone number ever appears here: identities are
//! stored only as first-level hashes, API keys only as hashes.

use std::fmt;
use std::str::FromStr;

use uid2_proto::salt::SaltBucket;

/// What an API key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Generate and validate tokens (publishers).
    Generator,
    /// Decrypt tokens in the bid stream: `/v2/key/bidstream` (SSPs and DSPs; "Bidder" in the docs).
    IdReader,
    /// Share raw UIDs as tokens: `/v2/key/sharing`.
    Sharer,
    /// Map identities to raw UIDs (advertisers, data providers).
    Mapper,
    /// Record opt-outs: `/v2/token/logout`.
    Optout,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Self::Generator,
        Self::IdReader,
        Self::Sharer,
        Self::Mapper,
        Self::Optout,
    ];

    /// The name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generator => "generator",
            Self::IdReader => "id_reader",
            Self::Sharer => "sharer",
            Self::Mapper => "mapper",
            Self::Optout => "optout",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected one of generator, id_reader, sharer, mapper, optout)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == lower)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Parses a comma-separated role list.
pub fn parse_roles(list: &str) -> Result<Vec<Role>, UnknownRole> {
    let mut roles: Vec<Role> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// Writes a role list as stored.
pub fn format_roles(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// An API client. The key itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The public prefix of the key (`UID2-C-L-999-abcdef`), used to name the client.
    pub key_id: String,
    /// Human name, unique.
    pub name: String,
    /// The site the client acts for.
    pub site_id: i32,
    /// Granted roles.
    pub roles: Vec<Role>,
    /// The 32-byte client secret (envelope key).
    pub secret: [u8; 32],
    /// SHA-256(store pepper ‖ key): what requests are looked up by.
    pub lookup_hash: [u8; 32],
    /// The official store's key salt (base64), kept for export.
    pub key_salt: String,
    /// The official store's key hash, base64 SHA-512(salt ‖ key), kept for export.
    pub key_hash: String,
    /// Disabled clients are refused.
    pub disabled: bool,
    /// Creation (s).
    pub created_s: i64,
}

/// A site: a publisher, advertiser, DSP… anything that holds API keys or keysets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// Site id.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Disabled sites keep their data but are not used.
    pub enabled: bool,
    /// Registrable domains allowed to generate tokens client-side.
    pub domain_names: Vec<String>,
    /// Mobile app names allowed to generate tokens client-side.
    pub app_names: Vec<String>,
    /// Creation (s).
    pub created_s: i64,
}

/// A keyset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetRecord {
    /// Keyset id.
    pub id: i32,
    /// Owning site.
    pub site_id: i32,
    /// Name.
    pub name: String,
    /// Sites allowed to decrypt; `None` = every ID reader.
    pub allowed_sites: Option<Vec<i32>>,
    /// Enabled.
    pub enabled: bool,
    /// The site's default keyset.
    pub is_default: bool,
    /// Creation (s).
    pub created_s: i64,
}

/// An encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key id.
    pub id: u32,
    /// Keyset.
    pub keyset_id: i32,
    /// The 32-byte secret.
    pub secret: [u8; 32],
    /// Creation (s).
    pub created_s: i64,
    /// Activation (s).
    pub activates_s: i64,
    /// Expiry (s).
    pub expires_s: i64,
}

/// A key to add, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Keyset.
    pub keyset_id: i32,
    /// The 32-byte secret.
    pub secret: [u8; 32],
    /// Creation (s).
    pub created_s: i64,
    /// Activation (s).
    pub activates_s: i64,
    /// Expiry (s).
    pub expires_s: i64,
}

impl NewKey {
    /// The key with the id the store gave it.
    pub fn with_id(self, id: u32) -> KeyRecord {
        KeyRecord {
            id,
            keyset_id: self.keyset_id,
            secret: self.secret,
            created_s: self.created_s,
            activates_s: self.activates_s,
            expires_s: self.expires_s,
        }
    }
}

/// A site's default keyset and its first key, for a [`KeyChange`] to create if the site has no
/// keyset yet. The store allocates both ids in the change's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteKeyset {
    /// The keyset, for its `site_id`; its `id` is allocated by the store (the one given is
    /// ignored).
    pub keyset: KeysetRecord,
    /// Its first key; its `keyset_id` is the new keyset's (the one given is ignored).
    pub key: NewKey,
}

/// A change to keysets and keys, made in one transaction. New keysets and keys get ids above
/// every id in use, allocated inside that transaction, so concurrent changes never collide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// Keys to add, in order; their ids are returned in the same order.
    pub add: Vec<NewKey>,
    /// Ids of keys to remove.
    pub remove: Vec<u32>,
    /// A default keyset to create for a site, unless the site has a keyset when the change is
    /// made (checked in its transaction, so two changes for one site create one keyset).
    pub site_keyset: Option<SiteKeyset>,
}

/// Operator-wide salt settings. The first-level salt never changes: opt-outs are keyed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltMeta {
    /// The first-level salt (text).
    pub first_level_salt: String,
    /// Prefix of bucket id strings.
    pub id_prefix: String,
    /// Hashids salt of bucket id strings.
    pub id_secret: String,
}

/// All salt state: settings and buckets in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltState {
    /// Settings.
    pub meta: SaltMeta,
    /// Buckets; bucket index i is `buckets[i]`.
    pub buckets: Vec<SaltBucket>,
}

/// A client-side token generation key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CstgKeypairRecord {
    /// Public subscription id the publisher's page sends.
    pub subscription_id: String,
    /// Site the generated tokens are for.
    pub site_id: i32,
    /// `UID2-X-?-` + base64 SPKI.
    pub public_key: String,
    /// `UID2-Y-?-` + base64 PKCS#8.
    pub private_key: String,
    /// Disabled key pairs answer 401.
    pub disabled: bool,
    /// Creation (s).
    pub created_s: i64,
}

/// An opt-out, keyed by first-level hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRecord {
    /// Append order, assigned by the store.
    pub seq: i64,
    /// First-level hash of the identity.
    pub first_level_hash: [u8; 32],
    /// The raw UID at opt-out time (for `/v2/optout/status`), if known.
    pub advertising_id: Option<Vec<u8>>,
    /// When (ms).
    pub opted_out_at_ms: i64,
}

/// The kinds of state a running operator caches, each with a generation counter bumped by every
/// write, so a poller can tell cheaply what to reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// Clients.
    Clients,
    /// Sites.
    Sites,
    /// Keysets and keys.
    Keys,
    /// Salt buckets and settings.
    Salts,
    /// CSTG key pairs.
    Cstg,
}

impl StateKind {
    /// Every kind.
    pub const ALL: [StateKind; 5] = [
        Self::Clients,
        Self::Sites,
        Self::Keys,
        Self::Salts,
        Self::Cstg,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clients => "clients",
            Self::Sites => "sites",
            Self::Keys => "keys",
            Self::Salts => "salts",
            Self::Cstg => "cstg",
        }
    }
}

/// Generation counters of every kind, plus the last opt-out sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    /// Clients.
    pub clients: i64,
    /// Sites.
    pub sites: i64,
    /// Keys.
    pub keys: i64,
    /// Salts.
    pub salts: i64,
    /// CSTG key pairs.
    pub cstg: i64,
    /// Highest opt-out sequence number.
    pub optout_seq: i64,
}

impl Generations {
    /// The counter of one kind.
    pub fn get(&self, kind: StateKind) -> i64 {
        match kind {
            StateKind::Clients => self.clients,
            StateKind::Sites => self.sites,
            StateKind::Keys => self.keys,
            StateKind::Salts => self.salts,
            StateKind::Cstg => self.cstg,
        }
    }

    /// Sets the counter of one kind.
    pub fn set(&mut self, kind: StateKind, value: i64) {
        let slot = match kind {
            StateKind::Clients => &mut self.clients,
            StateKind::Sites => &mut self.sites,
            StateKind::Keys => &mut self.keys,
            StateKind::Salts => &mut self.salts,
            StateKind::Cstg => &mut self.cstg,
        };
        *slot = value;
    }

    /// Sets the counter of the kind stored as `name` (unknown names are ignored: a newer
    /// schema may count more kinds).
    pub(crate) fn set_named(&mut self, name: &str, value: i64) {
        if let Some(kind) = StateKind::ALL.into_iter().find(|k| k.as_str() == name) {
            self.set(kind, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_leniently_and_round_trip() {
        let roles = parse_roles("Generator, id-reader,sharer,MAPPER,optout,generator").unwrap();
        assert_eq!(roles, Role::ALL.to_vec());
        assert_eq!(parse_roles(&format_roles(&roles)).unwrap(), roles);
        assert!(parse_roles("generator,admin").is_err());
        assert!(parse_roles("").unwrap().is_empty());
    }
}
