//! Settings from flags, environment variables (`UID2_*`) and an optional TOML config file, in
//! that order of precedence, over the official production defaults: those of `uid2 serve`, and
//! those every command shares (the store, and the deployment settings fixed per store).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use uid2_operator::OperatorConfig;
use uid2_operator::deployment::GivenSettings;
use uid2_operator::http::server::ConnectionLimits;
use uid2_operator::rotation::{DEFAULT_ACTIVATION_LEAD, MAX_POLICY_SECS, SaltFraction};
use uid2_proto::identity::IdentityScope;
use uid2_proto::salt::{Environment, PRODUCTION_BUCKET_COUNT};

/// Flags of `uid2 serve`. Every one can also come from the environment or the config file.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// Address to listen on, IP:PORT or HOST:PORT (a host's first IPv4 address; default
    /// 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, env = "UID2_LISTEN")]
    pub listen: Option<String>,
    /// Advertising token lifetime, seconds (default 259200, the official production value).
    #[arg(long, env = "UID2_IDENTITY_TOKEN_EXPIRES_AFTER")]
    pub identity_token_expires_after: Option<u64>,
    /// Refresh token lifetime, seconds (default 2592000, the official production value).
    #[arg(long, env = "UID2_REFRESH_TOKEN_EXPIRES_AFTER")]
    pub refresh_token_expires_after: Option<u64>,
    /// Seconds after which clients should refresh (default 3600, the official production value).
    #[arg(long, env = "UID2_REFRESH_IDENTITY_TOKEN_AFTER")]
    pub refresh_identity_token_after: Option<u64>,
    /// How often to poll the store for changes, milliseconds (default 250; 10 to 60000).
    #[arg(long, env = "UID2_SYNC_INTERVAL_MS")]
    pub sync_interval_ms: Option<u64>,
    /// Serve `/ops/baseline` for `uid2 bench` (default false).
    #[arg(long, env = "UID2_BENCH_BASELINE")]
    pub bench_baseline: Option<bool>,
    /// Rotate keys every this many seconds (default 0: never; one operator of a fleet does it).
    #[arg(long, env = "UID2_ROTATE_KEYS_EVERY")]
    pub rotate_keys_every: Option<u64>,
    /// Seconds between publishing a new key and using it (default 3600).
    #[arg(long, env = "UID2_KEY_ACTIVATION_LEAD")]
    pub key_activation_lead: Option<u64>,
    /// Rotate a fraction of the salts every this many seconds (default 0: never).
    #[arg(long, env = "UID2_ROTATE_SALTS_EVERY")]
    pub rotate_salts_every: Option<u64>,
    /// Fraction of salt buckets each salt rotation changes (default 0.05).
    #[arg(long, env = "UID2_SALT_ROTATION_FRACTION")]
    pub salt_rotation_fraction: Option<SaltFraction>,
    /// Longest a request may take to be answered, its body included, seconds (default 30): a
    /// body still arriving then gets a 408, a request the server has not answered a 503.
    #[arg(long, env = "UID2_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Longest a client may take to send an HTTP/1 request's head from its first byte, seconds
    /// (default 10).
    #[arg(long, env = "UID2_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Longest a connection may go without a byte moving either way, seconds (default 75).
    #[arg(long, env = "UID2_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Connections open at once; more wait to be accepted (default 8192).
    #[arg(long, env = "UID2_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Serve the legacy v1 endpoints of the 2021 publisher guide (default true; they put
    /// emails in query strings, so turn them off once every client speaks v2).
    #[arg(long, env = "UID2_LEGACY_API")]
    pub legacy_api: Option<bool>,
    /// Fail `/ops/healthcheck` (503) once the store has not been fully synced for this many
    /// seconds, so a load balancer prefers operators that are current; the operator keeps
    /// serving (default 0: never, staleness is only reported).
    #[arg(long, env = "UID2_MAX_STALENESS")]
    pub max_staleness: Option<u64>,
    /// Serve `/metrics` on this address instead of the API's (port 0 picks a free port): keep
    /// the operator's counts off the public port.
    #[arg(long, env = "UID2_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// Settings every command shares: where the store is, what a new store is created with, and
/// the deployment settings, which are fixed when a store is initialised (`uid2 init`, or
/// `uid2 serve` on an empty store): every other command takes them from the store, and one
/// given that disagrees with the store's is an error.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct GlobalArgs {
    /// The store: `sqlite://PATH` (default `sqlite://uid2-data/uid2.db`, relative to the
    /// working directory) or `postgres://…`.
    #[arg(long, global = true, env = "UID2_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// TOML file with any settings of every command or of `uid2 serve` (keys as the flags, with
    /// `_`); flags and `UID2_*` variables take precedence.
    #[arg(long, global = true, env = "UID2_CONFIG")]
    pub config: Option<PathBuf>,
    /// `uid2` or `euid` (fixed per store; default uid2).
    #[arg(long, global = true, env = "UID2_IDENTITY_SCOPE")]
    pub identity_scope: Option<String>,
    /// `test`, `integ` or `prod`, encoded in v4 raw UIDs and key prefixes (fixed per store;
    /// default test).
    #[arg(long, global = true, env = "UID2_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Issue 33-byte v3 raw UIDs from salt buckets (fixed per store; default false).
    #[arg(long, global = true, env = "UID2_V3_RAW_UIDS")]
    pub v3_raw_uids: Option<bool>,
    /// Salt buckets to create when bootstrapping an empty store (default 1048576, as in
    /// production).
    #[arg(long, global = true, env = "UID2_SALT_BUCKETS")]
    pub salt_buckets: Option<usize>,
}

/// What every command takes from [`GlobalArgs`] and the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommonSettings {
    /// The store URL.
    pub store: String,
    /// Buckets of a new store.
    pub salt_buckets: usize,
    /// The deployment settings given (checked against the store's, or a new store's).
    pub given: GivenSettings,
}

impl GlobalArgs {
    /// The config file's settings (none without `--config`).
    fn file(&self) -> Result<FileSettings> {
        let Some(path) = &self.config else {
            return Ok(FileSettings::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The store, bucket count and deployment settings, from flags and environment over the
    /// config file over the defaults.
    pub(crate) fn resolve(&self) -> Result<CommonSettings> {
        self.resolve_with(&self.file()?)
    }

    fn resolve_with(&self, file: &FileSettings) -> Result<CommonSettings> {
        let given = GivenSettings {
            identity_scope: self
                .identity_scope
                .as_ref()
                .or(file.identity_scope.as_ref())
                .map(|s| parse_scope(s))
                .transpose()?,
            environment: self
                .environment
                .as_ref()
                .or(file.environment.as_ref())
                .map(|e| parse_environment(e))
                .transpose()?,
            v3_raw_uids: self.v3_raw_uids.or(file.v3_raw_uids),
        };
        Ok(CommonSettings {
            store: self
                .store
                .clone()
                .or_else(|| file.store.clone())
                .unwrap_or_else(|| uid2_store::DEFAULT_STORE_URL.to_owned()),
            salt_buckets: self
                .salt_buckets
                .or(file.salt_buckets)
                .unwrap_or(PRODUCTION_BUCKET_COUNT),
            given,
        })
    }
}

fn parse_environment(e: &str) -> Result<Environment> {
    Environment::parse(&e.to_ascii_lowercase())
        .with_context(|| format!("environment must be test, integ or prod, not {e:?}"))
}

/// The same settings as read from a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    store: Option<String>,
    identity_token_expires_after: Option<u64>,
    refresh_token_expires_after: Option<u64>,
    refresh_identity_token_after: Option<u64>,
    identity_scope: Option<String>,
    environment: Option<String>,
    salt_buckets: Option<usize>,
    sync_interval_ms: Option<u64>,
    v3_raw_uids: Option<bool>,
    bench_baseline: Option<bool>,
    rotate_keys_every: Option<u64>,
    key_activation_lead: Option<u64>,
    rotate_salts_every: Option<u64>,
    salt_rotation_fraction: Option<SaltFraction>,
    request_timeout: Option<u64>,
    header_read_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_connections: Option<usize>,
    legacy_api: Option<bool>,
    max_staleness: Option<u64>,
    metrics_listen: Option<String>,
}

/// Where `uid2 serve` listens unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The socket address `setting` names: an IP address and port, or a host name (`localhost`)
/// and port, resolved now; of a name with IPv4 and IPv6 addresses, the first IPv4 one, which is
/// what `http://localhost:PORT` reaches first.
fn listen_address(setting: &str, given: &str) -> Result<SocketAddr> {
    if let Ok(addr) = given.parse() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(given)
        .with_context(|| format!("{setting} {given:?} is not IP:PORT or HOST:PORT"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{setting} {given:?} resolves to no address"))
}

/// Everything `uid2 serve` runs with.
#[derive(Debug)]
pub(crate) struct ServeSettings {
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub common: CommonSettings,
    /// The operator's settings; its deployment settings are the given ones (or the defaults)
    /// until the store's replace them.
    pub operator: OperatorConfig,
    pub schedule: crate::rotate::Schedule,
    pub limits: ConnectionLimits,
}

fn parse_scope(s: &str) -> Result<IdentityScope> {
    match s.to_ascii_lowercase().as_str() {
        "uid2" => Ok(IdentityScope::Uid2),
        "euid" => Ok(IdentityScope::Euid),
        other => bail!("identity scope must be uid2 or euid, not {other:?}"),
    }
}

impl ServeArgs {
    /// Merges flags and environment (already in `self` and `global`), the config file and
    /// defaults.
    pub(crate) fn resolve(self, global: &GlobalArgs) -> Result<ServeSettings> {
        let file = global.file()?;
        let common = global.resolve_with(&file)?;
        let defaults = OperatorConfig::default();
        let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map(Duration::from_secs).unwrap_or(default)
        };
        let operator = OperatorConfig {
            identity_token_expires_after: secs(
                self.identity_token_expires_after,
                file.identity_token_expires_after,
                defaults.identity_token_expires_after,
            ),
            refresh_token_expires_after: secs(
                self.refresh_token_expires_after,
                file.refresh_token_expires_after,
                defaults.refresh_token_expires_after,
            ),
            refresh_identity_token_after: secs(
                self.refresh_identity_token_after,
                file.refresh_identity_token_after,
                defaults.refresh_identity_token_after,
            ),
            sync_interval: self
                .sync_interval_ms
                .or(file.sync_interval_ms)
                .map(Duration::from_millis)
                .unwrap_or(defaults.sync_interval),
            enable_baseline_route: self.bench_baseline.or(file.bench_baseline).unwrap_or(false),
            request_timeout: secs(
                self.request_timeout,
                file.request_timeout,
                defaults.request_timeout,
            ),
            legacy_api: self
                .legacy_api
                .or(file.legacy_api)
                .unwrap_or(defaults.legacy_api),
            max_staleness: self
                .max_staleness
                .or(file.max_staleness)
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            ..defaults
        }
        .with_raw_uid_settings(common.given.or_defaults());
        operator.validate()?;
        let default_limits = ConnectionLimits::default();
        let limits = ConnectionLimits {
            header_read_timeout: secs(
                self.header_read_timeout,
                file.header_read_timeout,
                default_limits.header_read_timeout,
            ),
            idle_timeout: secs(
                self.idle_timeout,
                file.idle_timeout,
                default_limits.idle_timeout,
            ),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(default_limits.max_connections),
        };
        if limits.header_read_timeout.is_zero()
            || limits.idle_timeout.is_zero()
            || limits.max_connections == 0
        {
            bail!("header_read_timeout, idle_timeout and max_connections must be positive");
        }
        Ok(ServeSettings {
            limits,
            metrics_listen: self
                .metrics_listen
                .or(file.metrics_listen)
                .map(|a| listen_address("metrics_listen", &a))
                .transpose()?,
            listen: listen_address(
                "listen",
                &self.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN.into()),
            )?,
            common,
            operator,
            schedule: crate::rotate::Schedule {
                keys_every: Duration::from_secs(
                    self.rotate_keys_every
                        .or(file.rotate_keys_every)
                        .unwrap_or(0),
                ),
                key_activation_lead: match self.key_activation_lead.or(file.key_activation_lead) {
                    None => DEFAULT_ACTIVATION_LEAD,
                    Some(s) if s <= MAX_POLICY_SECS => Duration::from_secs(s),
                    Some(s) => bail!("key_activation_lead {s} is more than a century"),
                },
                salts_every: Duration::from_secs(
                    self.rotate_salts_every
                        .or(file.rotate_salts_every)
                        .unwrap_or(0),
                ),
                salt_fraction: self
                    .salt_rotation_fraction
                    .or(file.salt_rotation_fraction)
                    .unwrap_or_default(),
            },
        })
    }
}

/// How a command that calls an operator as a client reaches it.
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiClientArgs {
    /// The operator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key.
    #[arg(long, env = "UID2_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Client secret (base64).
    #[arg(long, env = "UID2_SECRET_KEY", hide_env_values = true)]
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_may_name_a_host() {
        assert_eq!(
            listen_address("listen", "127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            listen_address("listen", "[::1]:9").unwrap(),
            "[::1]:9".parse::<SocketAddr>().unwrap()
        );
        let local = listen_address("listen", "localhost:8080").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        for bad in ["localhost", "8080", "no-such-host.invalid:80"] {
            let e = listen_address("metrics_listen", bad).unwrap_err();
            assert!(
                format!("{e:#}").contains(&format!("metrics_listen {bad:?}")),
                "{e:#}"
            );
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uid2.toml");
        std::fs::write(
            &path,
            "identity_token_expires_after = 600\nrefresh_token_expires_after = 1200\nenvironment = \"prod\"\nstore = \"sqlite://x.db\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            identity_token_expires_after: Some(900),
            refresh_identity_token_after: Some(60),
            ..ServeArgs::default()
        };
        let with_file = GlobalArgs {
            config: Some(path.clone()),
            ..GlobalArgs::default()
        };
        let s = args.resolve(&with_file).unwrap();
        assert_eq!(
            s.operator.identity_token_expires_after,
            Duration::from_secs(900)
        );
        assert_eq!(
            s.operator.refresh_token_expires_after,
            Duration::from_secs(1200)
        );
        assert_eq!(s.operator.environment, Environment::Prod);
        assert_eq!(s.common.given.environment, Some(Environment::Prod));
        assert_eq!(s.common.given.identity_scope, None);
        assert_eq!(s.common.store, "sqlite://x.db");
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.common.salt_buckets, PRODUCTION_BUCKET_COUNT);
        // Admin commands read the store and the deployment settings from the same file.
        let common = with_file.resolve().unwrap();
        assert_eq!(common, s.common);

        let global = GlobalArgs {
            store: Some("sqlite://y.db".into()),
            ..GlobalArgs::default()
        };
        let defaults = ServeArgs::default().resolve(&global).unwrap();
        assert_eq!(defaults.operator, OperatorConfig::default());
        assert_eq!(defaults.common.store, "sqlite://y.db");
        assert_eq!(defaults.common.given, GivenSettings::default());

        assert_eq!(defaults.schedule.salt_fraction, SaltFraction::DEFAULT);
        assert_eq!(
            defaults.schedule.key_activation_lead,
            DEFAULT_ACTIVATION_LEAD
        );
        assert_eq!(defaults.limits, ConnectionLimits::default());
        std::fs::write(&path, "idle_timeout = 5\nmax_connections = 3\n").unwrap();
        let limited = ServeArgs {
            max_connections: Some(4),
            ..ServeArgs::default()
        }
        .resolve(&with_file)
        .unwrap();
        assert_eq!(
            (limited.limits.idle_timeout, limited.limits.max_connections),
            (Duration::from_secs(5), 4)
        );
        let unlimited = ServeArgs {
            max_connections: Some(0),
            ..ServeArgs::default()
        };
        assert!(unlimited.resolve(&global).is_err());
        // The legacy API: on by default, off from the file, back on from a flag.
        assert!(defaults.operator.legacy_api);
        std::fs::write(&path, "legacy_api = false\n").unwrap();
        let v2_only = ServeArgs::default().resolve(&with_file).unwrap();
        assert!(!v2_only.operator.legacy_api);
        let flagged = ServeArgs {
            legacy_api: Some(true),
            ..ServeArgs::default()
        };
        assert!(flagged.resolve(&with_file).unwrap().operator.legacy_api);

        assert_eq!(defaults.operator.max_staleness, None);
        std::fs::write(&path, "max_staleness = 3600\n").unwrap();
        let strict = ServeArgs::default().resolve(&with_file).unwrap();
        assert_eq!(
            strict.operator.max_staleness,
            Some(Duration::from_secs(3600))
        );
        let off = ServeArgs {
            max_staleness: Some(0),
            ..ServeArgs::default()
        };
        assert_eq!(
            off.resolve(&with_file).unwrap().operator.max_staleness,
            None
        );
        let flapping = ServeArgs {
            max_staleness: Some(1),
            sync_interval_ms: Some(500),
            ..ServeArgs::default()
        };
        assert!(flapping.resolve(&global).is_err());
        // A salt fraction outside (0, 1] is refused from the file as from a flag.
        std::fs::write(&path, "salt_rotation_fraction = 1.5\n").unwrap();
        let refused = ServeArgs::default().resolve(&with_file).unwrap_err();
        assert!(format!("{refused:#}").contains("at most 1"), "{refused:#}");

        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        assert!(ServeArgs::default().resolve(&with_file).is_err());
        assert!(with_file.resolve().is_err());
        let bad_scope = GlobalArgs {
            identity_scope: Some("xyz".into()),
            ..GlobalArgs::default()
        };
        assert!(ServeArgs::default().resolve(&bad_scope).is_err());
    }
}
