//! Operator settings: token lifetimes, identity scope, feature switches. Defaults are the
//! official production values.

use std::time::Duration;

use uid2_proto::identity::IdentityScope;
use uid2_proto::salt::{Environment, RawUidSettings};

/// Settings of a running operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// UID2 or EUID.
    pub identity_scope: IdentityScope,
    /// Deployment environment (v4 raw UID bits, API key letters).
    pub environment: Environment,
    /// Advertising token lifetime (`identity_expires`); production 3 days.
    pub identity_token_expires_after: Duration,
    /// Refresh token lifetime (`refresh_expires`); production 30 days.
    pub refresh_token_expires_after: Duration,
    /// When clients should refresh (`refresh_from`); production 1 hour.
    pub refresh_identity_token_after: Duration,
    /// Lifetime of sharing tokens SDKs mint (`token_expiry_seconds`).
    pub sharing_token_expiry: Duration,
    /// Longest advertising-token lifetime bidders accept (defaults to the identity lifetime).
    pub max_bidstream_lifetime: Option<Duration>,
    /// Longest sharing-token lifetime sharers accept (defaults to the sharing expiry).
    pub max_sharing_lifetime: Option<Duration>,
    /// Clock skew SDKs tolerate on token creation times.
    pub allow_clock_skew: Duration,
    /// Issue 33-byte v3 raw UIDs from salt buckets (the official `identity_v3`, off by default).
    pub v3_raw_uids: bool,
    /// Check the `Origin` of client-side generation against the site's domains.
    pub cstg_domain_check: bool,
    /// Report app names with domain names in `site_data`.
    pub provide_app_names: bool,
    /// Largest `/v2/optout/status` request.
    pub optout_status_max_ids: usize,
    /// How often the store is polled for changes.
    pub sync_interval: Duration,
    /// Serve `/ops/baseline`, the load generator's reference route.
    pub enable_baseline_route: bool,
    /// The TCF vendor id whose consent EUID token generation requires (official default 21).
    pub tcf_vendor_id: u16,
    /// Longest a request may take, from its head to its answer (body included): past it a body
    /// still arriving gets a 408 (and stops holding the connection), and a request the server
    /// has not answered a retryable 503.
    pub request_timeout: Duration,
    /// Serve the legacy v1 endpoints (`/v1/token/*`, `/v1/identity/*`, `/v1/key/latest`) that the 2021
    /// publisher guide used. On by default so that guide works as written; an operator whose
    /// clients all speak v2 turns them off (the official `allow_legacy_api`, off there), which
    /// also keeps emails out of query strings and so out of proxies' access logs.
    pub legacy_api: bool,
    /// Past this long without a complete sync, `/ops/healthcheck` answers 503 so that a load
    /// balancer sends traffic to operators that are current (opt-outs recorded elsewhere reach
    /// an operator only through the store). The operator itself keeps serving; `None`, the
    /// default, reports staleness in the healthcheck's body only.
    pub max_staleness: Option<Duration>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            identity_scope: IdentityScope::Uid2,
            environment: Environment::Test,
            identity_token_expires_after: Duration::from_secs(259_200),
            refresh_token_expires_after: Duration::from_secs(2_592_000),
            refresh_identity_token_after: Duration::from_secs(3_600),
            sharing_token_expiry: Duration::from_secs(2_592_000),
            max_bidstream_lifetime: None,
            max_sharing_lifetime: None,
            allow_clock_skew: Duration::from_secs(1_800),
            v3_raw_uids: false,
            cstg_domain_check: true,
            provide_app_names: false,
            optout_status_max_ids: 5_000,
            sync_interval: Duration::from_millis(250),
            enable_baseline_route: false,
            tcf_vendor_id: uid2_proto::tcf::EUID_VENDOR_ID,
            request_timeout: Duration::from_secs(30),
            legacy_api: true,
            max_staleness: None,
        }
    }
}

/// Settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid operator configuration: {0}")]
pub struct ConfigError(pub String);

/// Slack added to the longest token lifetimes advertised to SDKs (`max_bidstream_lifetime_seconds`,
/// `max_sharing_lifetime_seconds`), as upstream does: SDKs refuse a token whose lifetime (expiry
/// minus creation) exceeds the advertised maximum, and the slack keeps tokens minted with exactly
/// the configured lifetime acceptable despite rounding and small clock differences.
const TOKEN_LIFETIME_TOLERANCE_S: u64 = 10;

/// The shortest store poll interval allowed.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);
/// The longest: an opt-out must reach every operator within a minute at worst.
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(60);

impl OperatorConfig {
    /// Checks the lifetime constraints the official operator enforces: refresh token ≥
    /// advertising token ≥ refresh-from, all positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Named as the settings (flags, variables, config keys) that set them.
        let (token, refresh, refresh_after) = (
            self.identity_token_expires_after.as_secs(),
            self.refresh_token_expires_after.as_secs(),
            self.refresh_identity_token_after.as_secs(),
        );
        if self.identity_token_expires_after.is_zero() {
            return Err(ConfigError(
                "identity_token_expires_after (the advertising token lifetime) must be positive"
                    .into(),
            ));
        }
        if self.identity_token_expires_after > self.refresh_token_expires_after {
            return Err(ConfigError(format!(
                "identity_token_expires_after ({token} s) must not be longer than \
                 refresh_token_expires_after ({refresh} s): the advertising token must not \
                 outlive the refresh token"
            )));
        }
        if self.refresh_identity_token_after > self.identity_token_expires_after {
            return Err(ConfigError(format!(
                "refresh_identity_token_after ({refresh_after} s) must not be longer than \
                 identity_token_expires_after ({token} s): clients must refresh before the \
                 advertising token expires"
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError("the request timeout must be positive".into()));
        }
        if !(MIN_SYNC_INTERVAL..=MAX_SYNC_INTERVAL).contains(&self.sync_interval) {
            // Faster is a store query storm (and a log line per failed poll in an outage);
            // slower, opt-outs and disabled keys take minutes to reach this operator.
            return Err(ConfigError(format!(
                "sync_interval_ms ({} ms) must be between {} and {} ms",
                self.sync_interval.as_millis(),
                MIN_SYNC_INTERVAL.as_millis(),
                MAX_SYNC_INTERVAL.as_millis()
            )));
        }
        if let Some(max) = self.max_bidstream_lifetime
            && max < self.identity_token_expires_after
        {
            return Err(ConfigError(
                "max_bidstream_lifetime must cover the advertising token lifetime".into(),
            ));
        }
        if let Some(max) = self.max_staleness
            && max <= self.sync_interval.saturating_mul(4)
        {
            // Between two syncs a healthy operator would fail its healthcheck.
            return Err(ConfigError(
                "max_staleness must be longer than four sync intervals".into(),
            ));
        }
        Ok(())
    }

    /// How raw UIDs are derived.
    pub fn raw_uid_settings(&self) -> RawUidSettings {
        RawUidSettings {
            scope: self.identity_scope,
            environment: self.environment,
            v3_from_salts: self.v3_raw_uids,
        }
    }

    /// These settings with raw UIDs derived as `settings` say (scope, environment, v3).
    pub fn with_raw_uid_settings(self, settings: RawUidSettings) -> Self {
        Self {
            identity_scope: settings.scope,
            environment: settings.environment,
            v3_raw_uids: settings.v3_from_salts,
            ..self
        }
    }

    /// `max_bidstream_lifetime_seconds` as advertised (+10 s tolerance, as upstream).
    pub fn advertised_max_bidstream_lifetime_s(&self) -> u64 {
        self.max_bidstream_lifetime
            .unwrap_or(self.identity_token_expires_after)
            .as_secs()
            + TOKEN_LIFETIME_TOLERANCE_S
    }

    /// `max_sharing_lifetime_seconds` as advertised (+10 s tolerance, as upstream).
    pub fn advertised_max_sharing_lifetime_s(&self) -> u64 {
        self.max_sharing_lifetime
            .unwrap_or(self.sharing_token_expiry)
            .as_secs()
            + TOKEN_LIFETIME_TOLERANCE_S
    }

    /// The letter of API keys and CSTG keys for this environment (`L`, `I`, `P`).
    pub fn key_environment_letter(&self) -> char {
        match self.environment {
            Environment::Test => 'L',
            Environment::Integ => 'I',
            Environment::Prod => 'P',
        }
    }

    /// `UID2` or `EUID`, the prefix of keys.
    pub fn scope_prefix(&self) -> &'static str {
        self.identity_scope.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_production_and_valid() {
        let c = OperatorConfig::default();
        c.validate().unwrap();
        assert_eq!(c.advertised_max_bidstream_lifetime_s(), 259_210);
        assert_eq!(c.advertised_max_sharing_lifetime_s(), 2_592_010);
    }

    #[test]
    fn inconsistent_lifetimes_are_refused() {
        let c = OperatorConfig {
            identity_token_expires_after: Duration::from_secs(100),
            refresh_token_expires_after: Duration::from_secs(50),
            ..OperatorConfig::default()
        };
        assert!(c.validate().is_err());
        let c = OperatorConfig {
            refresh_identity_token_after: Duration::from_secs(300_000),
            ..OperatorConfig::default()
        };
        assert!(c.validate().is_err());
        let zero = OperatorConfig {
            identity_token_expires_after: Duration::ZERO,
            ..OperatorConfig::default()
        };
        let e = zero.validate().unwrap_err().to_string();
        assert!(e.contains("identity_token_expires_after"), "{e}");
    }

    #[test]
    fn the_sync_interval_is_kept_sensible() {
        for ms in [0, 9, 60_001, u64::MAX / 2] {
            let c = OperatorConfig {
                sync_interval: Duration::from_millis(ms),
                ..OperatorConfig::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("sync_interval_ms"), "{ms}: {e}");
        }
        for ms in [10, 250, 60_000] {
            let c = OperatorConfig {
                sync_interval: Duration::from_millis(ms),
                ..OperatorConfig::default()
            };
            c.validate().unwrap();
        }
    }
}
