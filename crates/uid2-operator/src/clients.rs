//! API clients: authentication of `Authorization: Bearer <key>` and role checks.
//!
//! Keys are never stored. Each client is found by SHA-256(store pepper ‖ key): one hash and one
//! map lookup per request, instead of trying the per-client salted SHA-512 of every client of a
//! site as the official operator does.
//!
//! The map lookup compares digests with `==`, which may stop at the first differing byte. That
//! leaks nothing useful: the digest is of the secret pepper and the key, so a caller cannot choose
//! digest bytes to probe with, and learning how many leading bytes of some digest matched tells
//! nothing about any key. The peppered hash is the timing protection; there is no second,
//! "constant-time" comparison pretending otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use uid2_proto::cipher::{GcmKey, sha256};
use uid2_store::{ClientRecord, Role};

/// Hash under which a client is looked up.
pub fn lookup_hash(pepper: &str, api_key: &str) -> [u8; 32] {
    sha256(&[pepper.as_bytes(), api_key.as_bytes()])
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    /// From a list.
    pub fn from_list(roles: &[Role]) -> Self {
        Self(roles.iter().fold(0, |acc, r| acc | Self::bit(*r)))
    }

    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }

    /// Whether `role` is granted.
    pub fn has(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    /// Whether any of `roles` is granted.
    pub fn has_any(self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }
}

/// An authenticated client, ready for the request path.
pub struct Client {
    /// Public key id.
    pub key_id: String,
    /// Name.
    pub name: String,
    /// Site the client acts for.
    pub site_id: i32,
    /// Granted roles.
    pub roles: Roles,
    /// Disabled clients are refused (but still count as "authenticated" on refresh).
    pub disabled: bool,
    /// Envelope key, expanded once.
    pub secret: GcmKey,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("key_id", &self.key_id)
            .field("site_id", &self.site_id)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Every client, by lookup hash.
#[derive(Debug, Default)]
pub struct ClientIndex {
    pepper: String,
    by_hash: HashMap<[u8; 32], Arc<Client>>,
}

impl ClientIndex {
    /// Builds the index.
    pub fn new(pepper: String, records: &[ClientRecord]) -> Self {
        let by_hash = records
            .iter()
            .map(|r| {
                let client = Client {
                    key_id: r.key_id.clone(),
                    name: r.name.clone(),
                    site_id: r.site_id,
                    roles: Roles::from_list(&r.roles),
                    disabled: r.disabled,
                    secret: GcmKey::new(&r.secret),
                };
                (r.lookup_hash, Arc::new(client))
            })
            .collect();
        Self { pepper, by_hash }
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there is no client.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The client holding `api_key`, disabled or not.
    pub fn find(&self, api_key: &str) -> Option<&Arc<Client>> {
        self.by_hash.get(&lookup_hash(&self.pepper, api_key))
    }

    /// The enabled client holding `api_key`.
    pub fn enabled(&self, api_key: &str) -> Option<&Arc<Client>> {
        self.find(api_key).filter(|c| !c.disabled)
    }

    /// The enabled client holding `api_key` with any of `roles`.
    pub fn authorize(&self, api_key: &str, roles: &[Role]) -> Option<&Arc<Client>> {
        self.enabled(api_key).filter(|c| c.roles.has_any(roles))
    }
}

/// The API key of an `Authorization` header: `Bearer <key>`, scheme matched case-insensitively.
pub fn bearer_key(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    let key = value[7..].trim();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, roles: Vec<Role>, disabled: bool) -> ClientRecord {
        ClientRecord {
            key_id: key[..8].to_owned(),
            name: key.to_owned(),
            site_id: 7,
            roles,
            secret: [1; 32],
            lookup_hash: lookup_hash("pepper", key),
            key_salt: String::new(),
            key_hash: String::new(),
            disabled,
            created_s: 0,
        }
    }

    #[test]
    fn finds_by_key_and_checks_roles_and_disabled() {
        let index = ClientIndex::new(
            "pepper".into(),
            &[
                record("key-one-abc", vec![Role::Generator], false),
                record("key-two-abc", vec![Role::Mapper, Role::Sharer], true),
            ],
        );
        assert!(index.authorize("key-one-abc", &[Role::Generator]).is_some());
        assert!(
            index
                .authorize("key-one-abc", &[Role::Mapper, Role::IdReader])
                .is_none()
        );
        assert!(
            index.authorize("key-two-abc", &[Role::Mapper]).is_none(),
            "disabled"
        );
        assert!(index.find("key-two-abc").is_some());
        assert!(index.find("key-three").is_none());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_key(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_key(Some("  bEaReR   abc ")), Some("abc"));
        assert_eq!(bearer_key(Some("Basic abc")), None);
        assert_eq!(bearer_key(Some("Bearer ")), None);
        assert_eq!(bearer_key(Some("Bear")), None);
        assert_eq!(bearer_key(None), None);
    }
}
