//! The deployment settings fixed per store: identity scope, environment and v3 raw UIDs.
//!
//! Together they determine every raw UID (and the prefixes of API keys), so every operator and
//! every admin command on one store must use the same ones: an opt-out recorded with a 32-byte
//! raw UID is never found by an operator that maps to 33 bytes, and two operators of a fleet
//! started with different scopes would hand out incompatible raw UIDs. The store records them
//! when it is initialised; afterwards they are read from it, and a value given that disagrees is
//! an error. A store initialised before they were recorded adopts the values first given to it
//! (or the defaults), once.
//!
//! [`settle`] is the one place this is checked: it returns a [`SettledStore`], the store with its
//! settings, and what derives raw UIDs ([`Operator::load`](crate::Operator::load),
//! [`add_optout`](crate::admin::add_optout)) takes one, so it cannot be given other settings.

use std::sync::Arc;

use uid2_proto::identity::IdentityScope;
use uid2_proto::salt::{Environment, RawUidSettings};
use uid2_store::{Store, StoreError};

/// The deployment settings as given to a command (flags, environment, a config file), each
/// possibly absent: an absent one is taken from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GivenSettings {
    /// UID2 or EUID.
    pub identity_scope: Option<IdentityScope>,
    /// The deployment environment.
    pub environment: Option<Environment>,
    /// Whether salt buckets derive 33-byte v3 raw UIDs.
    pub v3_raw_uids: Option<bool>,
}

impl GivenSettings {
    /// Every setting given, as `settings` has them.
    pub fn all(settings: RawUidSettings) -> Self {
        Self {
            identity_scope: Some(settings.scope),
            environment: Some(settings.environment),
            v3_raw_uids: Some(settings.v3_from_salts),
        }
    }

    /// The given settings, the defaults where none was given: what a new store is created with.
    pub fn or_defaults(&self) -> RawUidSettings {
        let defaults = RawUidSettings::default();
        RawUidSettings {
            scope: self.identity_scope.unwrap_or(defaults.scope),
            environment: self.environment.unwrap_or(defaults.environment),
            v3_from_salts: self.v3_raw_uids.unwrap_or(defaults.v3_from_salts),
        }
    }

    /// Each given setting that differs from `recorded`, described with both values.
    fn disagreements(&self, recorded: &RawUidSettings) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, given: Option<&str>, recorded: &str| {
            if let Some(given) = given
                && given != recorded
            {
                out.push(format!(
                    "{name} {given} was given, the store has {recorded}"
                ));
            }
        };
        check(
            "identity scope",
            self.identity_scope.map(IdentityScope::as_str),
            recorded.scope.as_str(),
        );
        check(
            "environment",
            self.environment.map(Environment::as_str),
            recorded.environment.as_str(),
        );
        check(
            "v3 raw UIDs",
            self.v3_raw_uids.map(bool_name),
            bool_name(recorded.v3_from_salts),
        );
        out
    }
}

fn bool_name(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// Why the deployment settings could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A given setting disagrees with the one the store records.
    #[error(
        "the store {store} disagrees with the settings given: {details} (identity scope, \
         environment and v3 raw UIDs are fixed when a store is initialised; leave them out to use \
         the store's)"
    )]
    Mismatch {
        /// The store, as described for logs.
        store: String,
        /// Every disagreement, with both values.
        details: String,
    },
}

/// A store with its deployment settings, settled by [`settle`] (the only way to make one).
#[derive(Clone)]
pub struct SettledStore {
    store: Arc<dyn Store>,
    settings: RawUidSettings,
}

impl std::fmt::Debug for SettledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettledStore")
            .field("store", &self.store.describe())
            .field("settings", &self.settings)
            .finish()
    }
}

impl SettledStore {
    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The deployment settings it records.
    pub fn settings(&self) -> RawUidSettings {
        self.settings
    }
}

/// The deployment settings of `store`: those it records, checked against `given`. A store
/// initialised before they were recorded adopts `given` (absent ones at their defaults) now,
/// once; of several commands or operators doing so at once, the first one's are recorded and the
/// others are checked against them.
pub async fn settle(
    store: Arc<dyn Store>,
    given: &GivenSettings,
) -> Result<SettledStore, SettingsError> {
    let recorded = match store.raw_uid_settings().await? {
        Some(recorded) => recorded,
        None => {
            let adopted = store.adopt_raw_uid_settings(&given.or_defaults()).await?;
            tracing::info!(
                store = %store.describe(),
                identity_scope = adopted.scope.as_str(),
                environment = adopted.environment.as_str(),
                v3_raw_uids = adopted.v3_from_salts,
                "the store recorded no deployment settings (it predates them); it now records these"
            );
            adopted
        }
    };
    let disagreements = given.disagreements(&recorded);
    if disagreements.is_empty() {
        Ok(SettledStore {
            store,
            settings: recorded,
        })
    } else {
        Err(SettingsError::Mismatch {
            store: store.describe(),
            details: disagreements.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_name_both_values_and_agreement_is_silent() {
        let recorded = RawUidSettings {
            scope: IdentityScope::Euid,
            environment: Environment::Prod,
            v3_from_salts: true,
        };
        assert!(GivenSettings::default().disagreements(&recorded).is_empty());
        assert!(
            GivenSettings::all(recorded)
                .disagreements(&recorded)
                .is_empty()
        );
        let given = GivenSettings {
            identity_scope: Some(IdentityScope::Uid2),
            environment: Some(Environment::Prod),
            v3_raw_uids: Some(false),
        };
        assert_eq!(
            given.disagreements(&recorded),
            vec![
                "identity scope UID2 was given, the store has EUID",
                "v3 raw UIDs false was given, the store has true",
            ]
        );
        assert_eq!(given.or_defaults().environment, Environment::Prod);
        assert_eq!(
            GivenSettings::default().or_defaults(),
            RawUidSettings::default()
        );
    }
}
