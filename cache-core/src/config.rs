//! Configuration: the [`CacheBuilder`] and environment variables.
//!
//! | variable | meaning | form | default |
//! | --- | --- | --- | --- |
//! | `REDIS_URL` | Redis server; unset means the in-memory backend | `redis://[user:pass@]host:port[/db]`, `rediss://` for TLS | unset |
//! | `REDIS_CLUSTER_URLS` | Redis Cluster seed nodes (any of them); takes precedence over `REDIS_URL` | `redis://host:port,redis://host:port,...` | unset |
//! | `REDIS_USERNAME` | ACL user; replaces the URL's | user name | the URL's, else `default` |
//! | `REDIS_PASSWORD` | password (ACL user or `requirepass`); replaces the URL's | text | the URL's |
//! | `REDIS_TLS_CA_FILE` | CA certificates trusted for the server, instead of the bundled Mozilla roots (`rediss://` only) | PEM file | unset |
//! | `REDIS_TLS_CERT_FILE` | client certificate (chain) for mutual TLS; with `REDIS_TLS_KEY_FILE` | PEM file | unset |
//! | `REDIS_TLS_KEY_FILE` | private key of that certificate | PEM file (PKCS#8, PKCS#1 or SEC1) | unset |
//! | `REDIS_TLS_INSECURE` | `true` accepts **any** server certificate (test servers only) | `true`/`false`/... | `false` |
//! | `CACHE_ENABLED` | kill switch: `false` makes every call a pass-through | `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off` | `true` |
//! | `CACHE_NAMESPACE` | first segment of every key | 1–64 of `A-Za-z0-9_.-` | `cache` |
//! | `CACHE_DEFAULT_TTL` | TTL when a call names none | `"90s"`, `"5m"`, `"24h"`, `"1h30m"` or seconds | `5m` |
//! | `CACHE_COMMAND_TIMEOUT_MS` | deadline of every backend call | positive integer (ms) | `50` |
//! | `CACHE_MAX_ENTRY_BYTES` | larger encoded values are not stored | positive integer | `1048576` |
//! | `CACHE_INVALIDATION_TIMEOUT_MS` | how long a write's invalidation waits for the backend before it is queued ([`crate::durable`]) | positive integer (ms) | `250` |
//! | `CACHE_INVALIDATION_QUEUE` | undelivered invalidations kept; past that, the namespace is retired when the backend answers | integer | `10000` |
//! | `CACHE_ANALYTICS_RETENTION` | how long route analytics keep per-minute aggregates (feature `analytics`; [`CacheBuilder::analytics_retention`]) | duration | `24h` |
//! | `CACHE_ANALYTICS_STREAM_LEN` | raw analytics events kept (feature `analytics`; [`CacheBuilder::analytics_stream_len`]) | integer | `10000` |
//! | `CACHE_ANALYTICS_KEY` | per-deployment key of the users' pseudonyms (feature `analytics`; [`CacheBuilder::analytics_key`]) | secret | random per process |
//! | `CACHE_L1_MAX_BYTES` | bound of the in-process tier in front of Redis, kept coherent by invalidation notices ([`CacheBuilder::l1`]); `0` or unset: no L1 | integer (bytes) | unset |
//!
//! ```
//! use cache_core::CacheBuilder;
//! let env = [("CACHE_DEFAULT_TTL", "soon")];
//! let err = CacheBuilder::from_env_with(|name| {
//!     env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
//! })
//! .unwrap_err();
//! assert_eq!(err.source_name(), "CACHE_DEFAULT_TTL");
//! ```
//!
//! The TLS files are read by [`CacheBuilder::build`]; a missing or malformed one is a
//! [`ConfigError::InvalidEnvFile`] naming the variable. The password and the private key are
//! never printed: not by `Debug`, errors, logs, health reports nor stats.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    Backend, MemoryBackend, RedisBackend, RedisClusterBackend, RedisOptions, RedisTls,
};
use crate::codec::Codec;
use crate::error::ConfigError;
use crate::key::KeySpace;
use crate::ttl::parse_duration;
use crate::Cache;

#[derive(Clone)]
pub(crate) enum BackendChoice {
    Memory { max_bytes: u64 },
    Redis { url: String },
    RedisCluster { seeds: Vec<String>, buckets: u16 },
    Custom(Arc<dyn Backend>),
}

impl fmt::Debug for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Memory { max_bytes } => f
                .debug_struct("Memory")
                .field("max_bytes", max_bytes)
                .finish(),
            BackendChoice::Redis { url } => f
                .debug_struct("Redis")
                .field("url", &crate::backend::redact_url(url))
                .finish(),
            BackendChoice::RedisCluster { seeds, buckets } => f
                .debug_struct("RedisCluster")
                .field(
                    "seeds",
                    &seeds
                        .iter()
                        .map(|s| crate::backend::redact_url(s))
                        .collect::<Vec<_>>(),
                )
                .field("buckets", buckets)
                .finish(),
            BackendChoice::Custom(b) => f.debug_tuple("Custom").field(b).finish(),
        }
    }
}

/// A password or key held by the builder: `Debug` prints `***`.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a PEM comes from, and who named it (for errors).
#[derive(Clone)]
enum Pem {
    Bytes(Vec<u8>),
    File {
        path: PathBuf,
        /// The environment variable that named the file, if any (else the builder option).
        variable: Option<&'static str>,
    },
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the contents nor the path: a private key's path is not printed either.
        match self {
            Pem::Bytes(b) => write!(f, "<{} bytes of PEM>", b.len()),
            Pem::File { variable, .. } => match variable {
                Some(v) => write!(f, "<file named by {v}>"),
                None => f.write_str("<file>"),
            },
        }
    }
}

/// The TLS and credential settings of the builder, resolved into [`RedisOptions`] by `build`.
#[derive(Debug, Clone, Default)]
struct Access {
    username: Option<String>,
    password: Option<Secret>,
    ca: Option<Pem>,
    client_cert: Option<(Pem, Pem)>,
    insecure: bool,
    /// The first option or variable that set a TLS setting, for errors.
    tls_named_by: Option<&'static str>,
    /// The first option or variable that set a credential, for errors.
    credential_named_by: Option<&'static str>,
}

impl Access {
    fn has_tls(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.insecure
    }

    fn tls_named(&mut self, name: &'static str) {
        self.tls_named_by.get_or_insert(name);
    }

    /// The option or variable that set anything, for errors.
    fn named_by(&self) -> Option<&'static str> {
        self.tls_named_by.or(self.credential_named_by)
    }
}

/// An error about `named` (an environment variable if it starts with `REDIS_`, else a builder
/// option) that is really about the Redis URL.
fn url_error(named: &'static str, url: Option<&str>, expected: &'static str) -> ConfigError {
    if named.starts_with("REDIS_") {
        ConfigError::InvalidEnv {
            variable: "REDIS_URL",
            value: url.map(crate::backend::redact_url).unwrap_or_default(),
            expected,
        }
    } else {
        ConfigError::InvalidOption {
            option: named,
            message: format!(
                "{expected}{}",
                url.map(|u| format!(", not {}", crate::backend::redact_url(u)))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Reads and checks one PEM; errors name the option or variable.
fn load_pem(
    pem: &Pem,
    option: &'static str,
    check: fn(&[u8]) -> Result<(), String>,
    secret: bool,
) -> Result<Vec<u8>, ConfigError> {
    let (bytes, variable, path) = match pem {
        Pem::Bytes(b) => (b.clone(), None, None),
        Pem::File { path, variable } => {
            let shown = if secret {
                "the file".to_owned()
            } else {
                path.display().to_string()
            };
            match std::fs::read(path) {
                Ok(b) => (b, *variable, Some(shown)),
                Err(e) => {
                    let message = format!("cannot read {shown}: {e}");
                    return Err(match variable {
                        Some(variable) => ConfigError::InvalidEnvFile { variable, message },
                        None => ConfigError::InvalidOption { option, message },
                    });
                }
            }
        }
    };
    check(&bytes).map_err(|m| {
        let message = match path {
            Some(p) => format!("{p}: {m}"),
            None => m,
        };
        match variable {
            Some(variable) => ConfigError::InvalidEnvFile { variable, message },
            None => ConfigError::InvalidOption { option, message },
        }
    })?;
    Ok(bytes)
}

/// Settings the engine reads on every call.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) default_ttl: Duration,
    pub(crate) ttl_jitter: f64,
    pub(crate) command_timeout: Duration,
    pub(crate) admin_timeout: Duration,
    pub(crate) max_entry_size: usize,
    pub(crate) codec: Codec,
    pub(crate) compress_above: Option<usize>,
    pub(crate) enabled: bool,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) tag_version_retention: Duration,
    pub(crate) invalidation_timeout: Duration,
    pub(crate) invalidation_queue: usize,
    pub(crate) outbox: Option<Arc<dyn crate::durable::Outbox>>,
    pub(crate) outbox_poll: Duration,
    pub(crate) l1_max_bytes: Option<u64>,
}

/// Builds a [`Cache`]. Obtain one with [`Cache::builder`] or [`CacheBuilder::from_env`].
///
/// ```
/// use std::time::Duration;
/// use cache_core::Cache;
///
/// let cache = Cache::builder()
///     .namespace("gallery")
///     .default_ttl(Duration::from_secs(300))
///     .ttl_jitter(0.1)
///     .command_timeout(Duration::from_millis(30))
///     .memory(64 * 1024 * 1024)
///     .build()
///     .unwrap();
/// assert_eq!(cache.keyspace().namespace(), "gallery");
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    namespace: String,
    global_version: u32,
    resource_versions: Vec<(String, u32)>,
    max_key_len: usize,
    backend: BackendChoice,
    redis: RedisOptions,
    access: Access,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    settings: Settings,
    #[cfg(feature = "analytics")]
    analytics: crate::analytics::AnalyticsSettings,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            namespace: "cache".into(),
            global_version: 1,
            resource_versions: Vec::new(),
            max_key_len: 250,
            backend: BackendChoice::Memory {
                max_bytes: 128 * 1024 * 1024,
            },
            redis: RedisOptions::default(),
            access: Access::default(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_millis(500),
            settings: Settings {
                default_ttl: Duration::from_secs(300),
                ttl_jitter: 0.0,
                command_timeout: Duration::from_millis(50),
                admin_timeout: Duration::from_secs(30),
                max_entry_size: 1024 * 1024,
                codec: Codec::Json,
                compress_above: None,
                enabled: true,
                lease_ttl: Duration::from_secs(5),
                lease_wait: Duration::from_secs(5),
                tag_version_retention: Duration::from_secs(24 * 3600),
                invalidation_timeout: Duration::from_millis(250),
                invalidation_queue: 10_000,
                outbox: None,
                outbox_poll: Duration::from_secs(1),
                l1_max_bytes: None,
            },
            #[cfg(feature = "analytics")]
            analytics: crate::analytics::AnalyticsSettings::default(),
        }
    }
}

const BOOL_FORM: &str = "true, false, 1, 0, yes, no, on or off";
const TTL_FORM: &str = r#"a duration like "90s", "5m", "24h", "1h30m" or a number of seconds"#;

impl CacheBuilder {
    /// A builder with the defaults (in-memory backend, namespace `cache`, TTL 5 minutes,
    /// 50 ms deadline).
    pub fn new() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// A builder configured from the process environment (see the [module docs](self)).
    ///
    /// # Errors
    /// [`ConfigError::InvalidEnv`] naming the first variable with a bad value.
    pub fn from_env() -> Result<CacheBuilder, ConfigError> {
        CacheBuilder::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests and for
    /// configuration systems other than the process environment).
    ///
    /// # Errors
    /// [`ConfigError::InvalidEnv`] naming the first variable with a bad value.
    pub fn from_env_with(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<CacheBuilder, ConfigError> {
        let mut b = CacheBuilder::new();
        let invalid =
            |variable: &'static str, value: &str, expected: &'static str| ConfigError::InvalidEnv {
                variable,
                value: value.to_owned(),
                expected,
            };
        if let Some(url) = lookup("REDIS_URL").filter(|v| !v.trim().is_empty()) {
            let url = url.trim().to_owned();
            if redis::parse_redis_url(&url).is_none() {
                // The value is echoed redacted: a password never reaches an error or a log.
                return Err(invalid(
                    "REDIS_URL",
                    &crate::backend::redact_url(&url),
                    "a URL like redis://127.0.0.1:6379 or redis://user:password@host:6379/0",
                ));
            }
            b = b.redis_url(url);
        }
        if let Some(urls) = lookup("REDIS_CLUSTER_URLS").filter(|v| !v.trim().is_empty()) {
            let seeds: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = seeds.iter().find(|u| redis::parse_redis_url(u).is_none()) {
                return Err(invalid(
                    "REDIS_CLUSTER_URLS",
                    &crate::backend::redact_url(bad),
                    "comma-separated seed URLs like redis://127.0.0.1:7000,redis://127.0.0.1:7001",
                ));
            }
            b = b.redis_cluster(seeds);
        }
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(user) = set("REDIS_USERNAME") {
            b = b.redis_username(user.trim());
            b.access.credential_named_by = Some("REDIS_USERNAME");
        }
        // Taken as is: a password may begin or end with spaces.
        if let Some(password) = lookup("REDIS_PASSWORD").filter(|v| !v.is_empty()) {
            b = b.redis_password(password);
            b.access.credential_named_by = Some("REDIS_PASSWORD");
        }
        let file = |variable: &'static str| {
            set(variable).map(|path| Pem::File {
                path: PathBuf::from(path.trim()),
                variable: Some(variable),
            })
        };
        if let Some(ca) = file("REDIS_TLS_CA_FILE") {
            b.access.ca = Some(ca);
            b.access.tls_named("REDIS_TLS_CA_FILE");
        }
        match (file("REDIS_TLS_CERT_FILE"), file("REDIS_TLS_KEY_FILE")) {
            (Some(cert), Some(key)) => {
                b.access.client_cert = Some((cert, key));
                b.access.tls_named("REDIS_TLS_CERT_FILE");
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::InvalidEnvFile {
                    variable: "REDIS_TLS_KEY_FILE",
                    message: "REDIS_TLS_CERT_FILE is set but not the file of its private key"
                        .into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::InvalidEnvFile {
                    variable: "REDIS_TLS_CERT_FILE",
                    message: "REDIS_TLS_KEY_FILE is set but not the file of its certificate".into(),
                })
            }
        }
        if let Some(v) = lookup("REDIS_TLS_INSECURE") {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => {
                    b.access.insecure = true;
                    b.access.tls_named("REDIS_TLS_INSECURE");
                }
                "0" | "false" | "no" | "off" | "" => {}
                _ => return Err(invalid("REDIS_TLS_INSECURE", &v, BOOL_FORM)),
            }
        }
        if let Some(v) = lookup("CACHE_ENABLED") {
            let enabled = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(invalid("CACHE_ENABLED", &v, BOOL_FORM)),
            };
            b = b.enabled(enabled);
        }
        if let Some(v) = lookup("CACHE_NAMESPACE") {
            if KeySpace::new(v.trim(), 1, 250).is_err() {
                return Err(invalid(
                    "CACHE_NAMESPACE",
                    &v,
                    "1 to 64 characters from A-Z a-z 0-9 _ . -",
                ));
            }
            b = b.namespace(v.trim());
        }
        #[cfg(feature = "analytics")]
        {
            if let Some(v) = lookup("CACHE_ANALYTICS_RETENTION") {
                match parse_duration(&v) {
                    Ok(d) if !d.is_zero() => b = b.analytics_retention(d),
                    _ => return Err(invalid("CACHE_ANALYTICS_RETENTION", &v, TTL_FORM)),
                }
            }
            if let Some(v) = lookup("CACHE_ANALYTICS_STREAM_LEN") {
                match v.trim().parse::<usize>() {
                    Ok(n) => b = b.analytics_stream_len(n),
                    _ => {
                        return Err(invalid(
                            "CACHE_ANALYTICS_STREAM_LEN",
                            &v,
                            "a whole number of events, like 10000",
                        ))
                    }
                }
            }
            if let Some(v) = lookup("CACHE_ANALYTICS_KEY") {
                if v.is_empty() {
                    return Err(invalid("CACHE_ANALYTICS_KEY", &v, "a non-empty secret"));
                }
                b = b.analytics_key(v.as_bytes());
            }
        }
        if let Some(v) = lookup("CACHE_DEFAULT_TTL") {
            match parse_duration(&v) {
                Ok(d) if !d.is_zero() => b = b.default_ttl(d),
                _ => return Err(invalid("CACHE_DEFAULT_TTL", &v, TTL_FORM)),
            }
        }
        if let Some(v) = lookup("CACHE_COMMAND_TIMEOUT_MS") {
            match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => b = b.command_timeout(Duration::from_millis(ms)),
                _ => {
                    return Err(invalid(
                        "CACHE_COMMAND_TIMEOUT_MS",
                        &v,
                        "a positive whole number of milliseconds, like 50",
                    ))
                }
            }
        }
        if let Some(v) = lookup("CACHE_INVALIDATION_TIMEOUT_MS") {
            match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => b = b.invalidation_timeout(Duration::from_millis(ms)),
                _ => {
                    return Err(invalid(
                        "CACHE_INVALIDATION_TIMEOUT_MS",
                        &v,
                        "a positive whole number of milliseconds, like 250",
                    ))
                }
            }
        }
        if let Some(v) = lookup("CACHE_INVALIDATION_QUEUE") {
            match v.trim().parse::<usize>() {
                Ok(n) => b = b.invalidation_queue(n),
                _ => {
                    return Err(invalid(
                        "CACHE_INVALIDATION_QUEUE",
                        &v,
                        "a whole number of invalidations, like 10000",
                    ))
                }
            }
        }
        if let Some(v) = lookup("CACHE_L1_MAX_BYTES") {
            match v.trim().parse::<u64>() {
                Ok(0) => b.settings.l1_max_bytes = None,
                Ok(n) => b = b.l1(n),
                _ => {
                    return Err(invalid(
                        "CACHE_L1_MAX_BYTES",
                        &v,
                        "a whole number of bytes, like 67108864 (0: no L1)",
                    ))
                }
            }
        }
        if let Some(v) = lookup("CACHE_MAX_ENTRY_BYTES") {
            match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => b = b.max_entry_size(n),
                _ => {
                    return Err(invalid(
                        "CACHE_MAX_ENTRY_BYTES",
                        &v,
                        "a positive whole number of bytes, like 1048576",
                    ))
                }
            }
        }
        Ok(b)
    }

    /// First segment of every key (default `cache`): 1–64 characters of `A-Za-z0-9_.-`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Global schema version (default 1). Bumping it retires every entry without a flush: new
    /// keys no longer match old ones, and old entries expire by TTL.
    pub fn global_version(mut self, version: u32) -> Self {
        self.global_version = version;
        self
    }

    /// Schema version of one resource; bump it when that resource's cached shape changes.
    pub fn resource_version(mut self, resource: impl Into<String>, version: u32) -> Self {
        self.resource_versions.push((resource.into(), version));
        self
    }

    /// Longest key in bytes (default 250, at least 128); longer keys are shortened with a hash.
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.max_key_len = len;
        self
    }

    /// TTL used when a call names none (default 5 minutes).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.settings.default_ttl = ttl;
        self
    }

    /// Random reduction of each TTL by up to this fraction (0.0–1.0, default 0), so entries
    /// written together do not all expire together.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.settings.ttl_jitter = fraction;
        self
    }

    /// Deadline of every backend call on the request path (default 50 ms).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.settings.command_timeout = timeout;
        self
    }

    /// Deadline of operator calls such as pattern deletes and stats (default 30 s).
    pub fn admin_timeout(mut self, timeout: Duration) -> Self {
        self.settings.admin_timeout = timeout;
        self
    }

    /// Largest encoded entry that is stored (default 1 MiB). Larger values are returned to the
    /// caller but not cached; each is counted as a skip and logged as `cache_skip`.
    pub fn max_entry_size(mut self, bytes: usize) -> Self {
        self.settings.max_entry_size = bytes;
        self
    }

    /// Serialization format for new entries (default JSON).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.settings.codec = codec;
        self
    }

    /// Compress payloads larger than `bytes` with LZ4 (feature `compression`).
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.settings.compress_above = Some(bytes);
        self
    }

    /// Turns caching on or off (off: every call runs its loader, nothing is read or stored).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// Use Redis at `url`. The connection is made lazily; a down Redis never fails `build`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = BackendChoice::Redis { url: url.into() };
        self
    }

    /// Use the Redis Cluster reachable through `seeds` (any of its nodes, `redis://host:port`).
    /// The connection is made lazily; an unreachable cluster never fails `build`. Entries and
    /// their bookkeeping are laid out in slot buckets (see
    /// [`RedisClusterBackend`]).
    pub fn redis_cluster<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let buckets = match &self.backend {
            BackendChoice::RedisCluster { buckets, .. } => *buckets,
            _ => crate::backend::DEFAULT_BUCKETS,
        };
        self.backend = BackendChoice::RedisCluster {
            seeds: seeds.into_iter().map(Into::into).collect(),
            buckets,
        };
        self
    }

    /// Slot buckets per namespace on a Redis Cluster (default 32, 1 to 1024): more spreads a
    /// namespace over more nodes; each tag invalidation runs one script per bucket. Every
    /// instance of a service must use the same value.
    pub fn cluster_buckets(mut self, buckets: u16) -> Self {
        match &mut self.backend {
            BackendChoice::RedisCluster { buckets: b, .. } => *b = buckets,
            _ => {
                self.backend = BackendChoice::RedisCluster {
                    seeds: Vec::new(),
                    buckets,
                }
            }
        }
        self
    }

    /// Connection settings for the Redis backend. The credentials and TLS settings of the
    /// `redis_username`, `redis_password` and `redis_tls_*` methods (and their environment
    /// variables) are applied on top, whatever the order of the calls.
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.redis = options;
        self
    }

    /// ACL user name, replacing the URL's (`redis://user:password@host`).
    pub fn redis_username(mut self, username: impl Into<String>) -> Self {
        self.access.username = Some(username.into());
        self.access.credential_named_by = Some("redis_username");
        self
    }

    /// Password (of the ACL user, or of `requirepass`), replacing the URL's. It is never
    /// printed: `Debug`, errors and logs show `***` or nothing.
    pub fn redis_password(mut self, password: impl Into<String>) -> Self {
        self.access.password = Some(Secret(password.into()));
        self.access.credential_named_by = Some("redis_password");
        self
    }

    /// Trust these CA certificates (PEM, one or more) for the server's certificate, instead
    /// of the bundled Mozilla roots. Needs a `rediss://` URL.
    pub fn redis_tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.access.ca = Some(Pem::Bytes(pem.into()));
        self.access.tls_named("redis_tls_ca_pem");
        self
    }

    /// Like [`redis_tls_ca_pem`](Self::redis_tls_ca_pem), reading the PEM file at
    /// [`build`](Self::build).
    pub fn redis_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.access.ca = Some(Pem::File {
            path: path.into(),
            variable: None,
        });
        self.access.tls_named("redis_tls_ca_file");
        self
    }

    /// Present this client certificate (PEM chain) and private key (PEM) to the server:
    /// mutual TLS, for a server started with `tls-auth-clients yes`. Needs a `rediss://` URL.
    pub fn redis_tls_client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.access.client_cert = Some((Pem::Bytes(cert_pem.into()), Pem::Bytes(key_pem.into())));
        self.access.tls_named("redis_tls_client_cert_pem");
        self
    }

    /// Like [`redis_tls_client_cert_pem`](Self::redis_tls_client_cert_pem), reading the PEM
    /// files at [`build`](Self::build).
    pub fn redis_tls_client_cert_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.access.client_cert = Some((
            Pem::File {
                path: cert_path.into(),
                variable: None,
            },
            Pem::File {
                path: key_path.into(),
                variable: None,
            },
        ));
        self.access.tls_named("redis_tls_client_cert_files");
        self
    }

    /// **Turns off the verification of the server's certificate**: any certificate is
    /// accepted, so anyone on the network path can read and change the traffic, passwords
    /// included. Only for a test server with a throw-away certificate; a warning is logged at
    /// [`build`](Self::build). (A `#insecure` fragment in the URL is refused without this.)
    pub fn redis_tls_insecure_skip_verify(mut self) -> Self {
        self.access.insecure = true;
        self.access.tls_named("redis_tls_insecure_skip_verify");
        self
    }

    /// The Redis options with the credentials and TLS settings applied (files read and
    /// checked).
    fn resolved_redis_options(&self, url: &str) -> Result<RedisOptions, ConfigError> {
        let a = &self.access;
        let mut options = self.redis.clone();
        if let Some(user) = &a.username {
            options.username = Some(user.clone());
        }
        if let Some(Secret(password)) = &a.password {
            options.password = Some(password.clone());
        }
        if !a.has_tls() {
            return Ok(options);
        }
        let named = a.tls_named_by.unwrap_or("redis_url");
        if !url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("rediss://")
        {
            return Err(url_error(
                named,
                Some(url),
                "a rediss:// URL: TLS settings (REDIS_TLS_* or redis_tls_*) are set",
            ));
        }
        let mut tls = RedisTls::default();
        if let Some(ca) = &a.ca {
            let option = match ca {
                Pem::Bytes(_) => "redis_tls_ca_pem",
                Pem::File { .. } => "redis_tls_ca_file",
            };
            tls.ca_pem = Some(load_pem(ca, option, crate::backend::check_ca_pem, false)?);
        }
        if let Some((cert, key)) = &a.client_cert {
            let option = match cert {
                Pem::Bytes(_) => "redis_tls_client_cert_pem",
                Pem::File { .. } => "redis_tls_client_cert_files",
            };
            tls.client_cert_pem = Some(load_pem(
                cert,
                option,
                crate::backend::check_cert_pem,
                false,
            )?);
            tls.client_key_pem = Some(load_pem(key, option, crate::backend::check_key_pem, true)?);
        }
        if a.insecure {
            tls.insecure_skip_verify = true;
            tracing::warn!(name: "cache_redis_tls_insecure", event = "cache_redis_tls_insecure", url = %crate::backend::redact_url(url), "TLS certificate verification of Redis is OFF (redis_tls_insecure_skip_verify / REDIS_TLS_INSECURE): any server certificate is accepted");
        }
        options.tls = tls;
        Ok(options)
    }

    /// Use the in-memory backend holding at most `max_bytes` (the default, with 128 MiB).
    pub fn memory(mut self, max_bytes: u64) -> Self {
        self.backend = BackendChoice::Memory { max_bytes };
        self
    }

    /// Keep an in-process tier (L1) of at most `max_bytes` in front of the backend: a hit there
    /// costs no round trip. Entries read fresh from the backend or stored after a load enter it
    /// with their remaining fresh lifetime; every invalidation on any instance evicts them
    /// through the backend's invalidation notices, and while those are not received L1 is
    /// bypassed. See [`Cache::l1_status`] and the [L1 design](crate::l1). Backends that
    /// publish no notices ([`Backend::notifies`]) keep L1 off.
    pub fn l1(mut self, max_bytes: u64) -> Self {
        self.settings.l1_max_bytes = Some(max_bytes);
        self
    }

    /// How long route analytics keep their per-minute aggregates (feature `analytics`; default
    /// 1 day, rounded up to whole minutes). See [`crate::analytics`] for the memory cost.
    #[cfg(feature = "analytics")]
    pub fn analytics_retention(mut self, retention: Duration) -> Self {
        self.analytics.retention = retention;
        self
    }

    /// How many raw events route analytics keep (feature `analytics`; default 10 000; on Redis
    /// a stream capped with `MAXLEN ~`, so about that many).
    #[cfg(feature = "analytics")]
    pub fn analytics_stream_len(mut self, events: usize) -> Self {
        self.analytics.stream_len = events;
        self
    }

    /// Raw analytics events written per second at most (feature `analytics`; default 200); the
    /// aggregates count every event. `0`: no raw events.
    #[cfg(feature = "analytics")]
    pub fn analytics_stream_rate(mut self, per_second: u64) -> Self {
        self.analytics.stream_rate = per_second;
        self
    }

    /// Capacity of the channel between the request path and the analytics writer (feature
    /// `analytics`; default 8192 events). Beyond it events are dropped and counted.
    #[cfg(feature = "analytics")]
    pub fn analytics_queue(mut self, events: usize) -> Self {
        self.analytics.queue = events.max(1);
        self
    }

    /// The per-deployment key of the users' pseudonyms in route analytics (feature
    /// `analytics`): set the same key on every instance to count a user once across them.
    /// Default: a random key per process.
    #[cfg(feature = "analytics")]
    pub fn analytics_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.analytics.key = Some(std::sync::Arc::from(key.as_ref()));
        self
    }

    /// Use a custom backend.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = BackendChoice::Custom(backend);
        self
    }

    /// Consecutive failures that open the circuit breaker (default 5).
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures;
        self
    }

    /// How long the open breaker skips the backend before probing it (default 500 ms).
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.breaker_cooldown = cooldown;
        self
    }

    /// Lifetime of a cross-instance load lease (default 5 s): a crashed holder blocks others at
    /// most this long.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// How long a caller that did not get the lease waits for the holder's value before loading
    /// itself (default 5 s, capped at the lease TTL).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.settings.lease_wait = wait;
        self
    }

    /// How long an invalidated tag's version is remembered (default 24 h). A fill whose loader
    /// runs longer than this could be stored after an invalidation; keep it above your slowest
    /// loader.
    pub fn tag_version_retention(mut self, retention: Duration) -> Self {
        self.settings.tag_version_retention = retention;
        self
    }

    /// How long an invalidation (`invalidate_tags`, `delete`, `#[invalidates]`, ...) waits for the
    /// backend (default 250 ms). One that is not delivered by then is not lost: it is queued,
    /// replayed as soon as the backend answers, and until then this instance serves no
    /// entry it concerns (see [`crate::durable`]).
    pub fn invalidation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.invalidation_timeout = timeout;
        self
    }

    /// How many undelivered invalidations are queued (default 10,000). Past that, the queue is
    /// dropped and, once the backend answers, every entry of the namespace is retired instead
    /// (a cold cache, never a wrong one; see [`crate::durable`]).
    pub fn invalidation_queue(mut self, capacity: usize) -> Self {
        self.settings.invalidation_queue = capacity;
        self
    }

    /// A durable outbox of invalidations written in the same database transaction as the data
    /// (see [`crate::durable::Outbox`]). Every instance replays it at start, after the backend
    /// comes back and every [`outbox_poll`](Self::outbox_poll), so an invalidation survives the
    /// crash of the instance that made it and reaches every instance.
    pub fn outbox(mut self, outbox: Arc<dyn crate::durable::Outbox>) -> Self {
        self.settings.outbox = Some(outbox);
        self
    }

    /// How often the outbox is read for invalidations not yet delivered (default 1 s).
    pub fn outbox_poll(mut self, every: Duration) -> Self {
        self.settings.outbox_poll = every;
        self
    }

    /// Builds the cache. Never connects: Redis is contacted on first use.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] naming the bad option.
    pub fn build(self) -> Result<Cache, ConfigError> {
        let option =
            |option: &'static str, message: String| ConfigError::InvalidOption { option, message };
        let mut keyspace = KeySpace::new(&self.namespace, self.global_version, self.max_key_len)
            .map_err(|m| {
                option(
                    if self.max_key_len < 128 {
                        "max_key_len"
                    } else {
                        "namespace"
                    },
                    m,
                )
            })?;
        for (resource, version) in &self.resource_versions {
            keyspace = keyspace
                .with_resource_version(resource, *version)
                .map_err(|m| option("resource_version", m))?;
        }
        let s = &self.settings;
        if s.default_ttl.is_zero() {
            return Err(option("default_ttl", "must be greater than zero".into()));
        }
        if !(0.0..=1.0).contains(&s.ttl_jitter) {
            return Err(option(
                "ttl_jitter",
                format!("{} is not a fraction between 0.0 and 1.0", s.ttl_jitter),
            ));
        }
        if s.command_timeout.is_zero() {
            return Err(option(
                "command_timeout",
                "must be greater than zero".into(),
            ));
        }
        if s.max_entry_size == 0 {
            return Err(option("max_entry_size", "must be greater than zero".into()));
        }
        if s.invalidation_timeout.is_zero() {
            return Err(option(
                "invalidation_timeout",
                "must be greater than zero".into(),
            ));
        }
        if s.outbox_poll.is_zero() {
            return Err(option("outbox_poll", "must be greater than zero".into()));
        }
        #[cfg(not(feature = "compression"))]
        if s.compress_above.is_some() {
            return Err(option(
                "compress_above",
                "needs the `compression` feature of cache-core".into(),
            ));
        }
        let mut settings = self.settings.clone();
        settings.lease_wait = settings.lease_wait.min(settings.lease_ttl);
        // `REDIS_TLS_*`, `REDIS_USERNAME` or `REDIS_PASSWORD` without `REDIS_URL` is a
        // deployment mistake (the cache would silently stay in memory); the builder methods
        // only apply to a Redis backend and are ignored by the others.
        if matches!(self.backend, BackendChoice::Memory { .. }) {
            if let Some(named) = self.access.named_by().filter(|n| n.starts_with("REDIS_")) {
                return Err(url_error(
                    named,
                    None,
                    "a Redis URL: REDIS_USERNAME, REDIS_PASSWORD or REDIS_TLS_* are set",
                ));
            }
        }
        #[cfg(feature = "analytics")]
        let mut analytics_source: Option<crate::analytics::Source> = None;
        let backend: Arc<dyn Backend> = match &self.backend {
            BackendChoice::Memory { max_bytes } => Arc::new(MemoryBackend::new(*max_bytes)),
            BackendChoice::Custom(b) => b.clone(),
            BackendChoice::Redis { url } => {
                let options = self.resolved_redis_options(url)?;
                let backend = Arc::new(RedisBackend::new(url, &options).map_err(|e| {
                    option(
                        "redis_url",
                        format!(
                            "{} (expected redis://host:port or rediss://host:port): {e}",
                            crate::backend::redact_url(url)
                        ),
                    )
                })?);
                #[cfg(feature = "analytics")]
                {
                    analytics_source = Some(crate::analytics::Source::Single(backend.clone()));
                }
                backend
            }
            BackendChoice::RedisCluster { seeds, buckets } => {
                if !(1..=1024).contains(buckets) {
                    return Err(option("cluster_buckets", "must be 1 to 1024".into()));
                }
                let Some(first) = seeds.first() else {
                    return Err(option(
                        "redis_cluster",
                        "needs at least one seed URL".into(),
                    ));
                };
                let tls = |u: &str| u.trim_start().to_ascii_lowercase().starts_with("rediss://");
                for url in seeds {
                    if redis::parse_redis_url(url).is_none() || tls(url) != tls(first) {
                        return Err(option(
                            "redis_cluster",
                            format!(
                                "{} (expected redis://host:port or rediss://host:port, the same \
                                 scheme for every seed)",
                                crate::backend::redact_url(url)
                            ),
                        ));
                    }
                }
                let options = self.resolved_redis_options(first)?;
                let backend = Arc::new(
                    RedisClusterBackend::new(seeds, &options, *buckets)
                        .map_err(|e| option("redis_cluster", format!("seed nodes: {e}")))?,
                );
                #[cfg(feature = "analytics")]
                {
                    analytics_source = Some(crate::analytics::Source::Cluster(backend.clone()));
                }
                backend
            }
        };
        #[cfg(feature = "analytics")]
        let deadline = settings.admin_timeout.max(Duration::from_secs(1));
        let cache = Cache::from_parts(
            keyspace,
            backend,
            settings,
            self.breaker_threshold,
            self.breaker_cooldown,
        );
        #[cfg(feature = "analytics")]
        {
            let a = &self.analytics;
            cache.set_analytics(match analytics_source {
                Some(source) => crate::analytics::Analytics::new(
                    a,
                    Arc::new(crate::analytics::RedisStore::new(
                        source,
                        cache.keyspace().namespace(),
                        a.stream_len,
                        a.retention_minutes(),
                        deadline,
                    )),
                ),
                None => crate::analytics::Analytics::memory(a),
            });
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn each_bad_variable_is_named_in_a_typed_error() {
        for (var, value) in [
            ("CACHE_ENABLED", "maybe"),
            ("CACHE_NAMESPACE", "has space"),
            ("CACHE_DEFAULT_TTL", "5 parsecs"),
            ("CACHE_DEFAULT_TTL", "0"),
            ("CACHE_COMMAND_TIMEOUT_MS", "-3"),
            ("CACHE_COMMAND_TIMEOUT_MS", "fast"),
            ("CACHE_MAX_ENTRY_BYTES", "lots"),
            ("CACHE_INVALIDATION_TIMEOUT_MS", "0"),
            ("CACHE_INVALIDATION_QUEUE", "-1"),
            ("REDIS_URL", "http://nope"),
        ] {
            let err = CacheBuilder::from_env_with(env(&[(var, value)])).unwrap_err();
            match &err {
                ConfigError::InvalidEnv {
                    variable, value: v, ..
                } => {
                    assert_eq!(*variable, var);
                    assert_eq!(v, value);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(err.to_string().contains(var), "{err}");
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }

    #[test]
    fn good_variables_configure_the_builder() {
        let b = CacheBuilder::from_env_with(env(&[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("CACHE_ENABLED", "off"),
            ("CACHE_NAMESPACE", "trigs"),
            ("CACHE_DEFAULT_TTL", "24h"),
            ("CACHE_COMMAND_TIMEOUT_MS", "20"),
            ("CACHE_INVALIDATION_TIMEOUT_MS", "400"),
            ("CACHE_INVALIDATION_QUEUE", "50"),
        ]))
        .unwrap();
        assert_eq!(b.settings.invalidation_timeout, Duration::from_millis(400));
        assert_eq!(b.settings.invalidation_queue, 50);
        assert!(matches!(b.backend, BackendChoice::Redis { .. }));
        assert!(!b.settings.enabled);
        assert_eq!(b.namespace, "trigs");
        assert_eq!(b.settings.default_ttl, Duration::from_secs(86_400));
        assert_eq!(b.settings.command_timeout, Duration::from_millis(20));
    }

    #[test]
    fn credential_variables_set_the_user_and_password_and_are_never_printed() {
        let b = CacheBuilder::from_env_with(env(&[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("REDIS_USERNAME", " app "),
            ("REDIS_PASSWORD", " pass word "),
        ]))
        .unwrap();
        assert_eq!(b.access.username.as_deref(), Some("app"));
        let options = b.resolved_redis_options("redis://127.0.0.1:1").unwrap();
        assert_eq!(
            options.password.as_deref(),
            Some(" pass word "),
            "kept as is"
        );
        let debug = format!("{b:?}");
        assert!(!debug.contains("pass word"), "{debug}");
        // Credentials without a Redis URL: the cache would silently stay in memory.
        let err = CacheBuilder::from_env_with(env(&[("REDIS_PASSWORD", "x")]))
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(err.source_name(), "REDIS_URL");
        // The builder's debug output redacts the URL's password too.
        let debug = format!(
            "{:?}",
            CacheBuilder::new().redis_url("redis://app:hunter2@127.0.0.1:1")
        );
        assert!(
            !debug.contains("hunter2") && debug.contains("***"),
            "{debug}"
        );
    }

    #[test]
    fn cache_l1_max_bytes_sets_the_l1_bound_and_bad_values_are_named() {
        let b = CacheBuilder::from_env_with(env(&[("CACHE_L1_MAX_BYTES", " 67108864 ")])).unwrap();
        assert_eq!(b.settings.l1_max_bytes, Some(67_108_864));
        let b = CacheBuilder::from_env_with(env(&[("CACHE_L1_MAX_BYTES", "0")])).unwrap();
        assert_eq!(b.settings.l1_max_bytes, None, "0: no L1");
        let b = CacheBuilder::from_env_with(|_| None).unwrap();
        assert_eq!(b.settings.l1_max_bytes, None, "unset: no L1");
        for bad in ["64MiB", "-1", "1.5", "", "18446744073709551616"] {
            let err = CacheBuilder::from_env_with(env(&[("CACHE_L1_MAX_BYTES", bad)])).unwrap_err();
            match &err {
                ConfigError::InvalidEnv {
                    variable, value, ..
                } => {
                    assert_eq!(*variable, "CACHE_L1_MAX_BYTES");
                    assert_eq!(value, bad);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(err.to_string().contains("CACHE_L1_MAX_BYTES"), "{err}");
        }
    }

    #[test]
    fn unset_redis_url_means_memory() {
        let b = CacheBuilder::from_env_with(|_| None).unwrap();
        assert!(matches!(b.backend, BackendChoice::Memory { .. }));
    }

    #[test]
    fn bad_builder_options_name_the_option() {
        let err = CacheBuilder::new().namespace("").build().unwrap_err();
        assert_eq!(err.source_name(), "namespace");
        let err = CacheBuilder::new().ttl_jitter(2.0).build().unwrap_err();
        assert_eq!(err.source_name(), "ttl_jitter");
        let err = CacheBuilder::new()
            .default_ttl(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.source_name(), "default_ttl");
    }

    #[test]
    fn cluster_buckets_outside_1_to_1024_are_refused_by_name() {
        for n in [0u16, 1025, u16::MAX] {
            let err = Cache::builder()
                .redis_cluster(["redis://127.0.0.1:7000"])
                .cluster_buckets(n)
                .build()
                .unwrap_err();
            assert_eq!(err.source_name(), "cluster_buckets", "{n}: {err}");
            assert!(err.to_string().contains("1 to 1024"), "{err}");
        }
        for n in [1u16, 32, 1024] {
            let b = Cache::builder()
                .cluster_buckets(n)
                .redis_cluster(["redis://127.0.0.1:7000"]);
            assert!(
                matches!(b.backend, BackendChoice::RedisCluster { buckets, .. } if buckets == n)
            );
            b.build().unwrap();
        }
    }

    #[test]
    fn cluster_seeds_must_be_redis_urls_of_one_scheme() {
        for seeds in [
            vec![],
            vec!["http://127.0.0.1:7000"],
            vec!["redis://127.0.0.1:7000", "rediss://127.0.0.1:7001"],
        ] {
            let err = Cache::builder()
                .redis_cluster(seeds.clone())
                .build()
                .unwrap_err();
            assert_eq!(err.source_name(), "redis_cluster", "{seeds:?}: {err}");
        }
        let err = Cache::builder()
            .redis_cluster(["redis://u:hunter2@127.0.0.1:7000", "nope://x"])
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = CacheBuilder::from_env_with(env(&[(
            "REDIS_CLUSTER_URLS",
            "redis://127.0.0.1:7000,http://u:hunter2@x",
        )]))
        .unwrap_err();
        assert_eq!(err.source_name(), "REDIS_CLUSTER_URLS");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let b = CacheBuilder::from_env_with(env(&[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            (
                "REDIS_CLUSTER_URLS",
                " redis://127.0.0.1:7000 , redis://127.0.0.1:7001,",
            ),
        ]))
        .unwrap();
        assert!(
            matches!(&b.backend, BackendChoice::RedisCluster { seeds, .. } if seeds.len() == 2),
            "REDIS_CLUSTER_URLS takes precedence over REDIS_URL"
        );
    }

    #[cfg(feature = "analytics")]
    #[test]
    fn analytics_variables_are_read_and_bad_values_named() {
        let b = CacheBuilder::from_env_with(env(&[
            ("CACHE_ANALYTICS_RETENTION", "2h"),
            ("CACHE_ANALYTICS_STREAM_LEN", "500"),
            ("CACHE_ANALYTICS_KEY", "deployment-key"),
        ]))
        .unwrap();
        assert_eq!(b.analytics.retention, Duration::from_secs(7200));
        assert_eq!(b.analytics.stream_len, 500);
        assert_eq!(b.analytics.key.as_deref(), Some(&b"deployment-key"[..]));
        assert!(!format!("{b:?}").contains("deployment-key"));
        for (var, bad) in [
            ("CACHE_ANALYTICS_RETENTION", "soon"),
            ("CACHE_ANALYTICS_RETENTION", "0s"),
            ("CACHE_ANALYTICS_STREAM_LEN", "many"),
            ("CACHE_ANALYTICS_KEY", ""),
        ] {
            let err = CacheBuilder::from_env_with(env(&[(var, bad)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
