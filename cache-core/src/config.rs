//! Configuration: the [`CacheBuilder`] and environment variables.
//!
//! | variable | meaning | form | default |
//! | --- | --- | --- | --- |
//! | `REDIS_URL` | Redis server; unset means the in-memory backend | `redis://[user:pass@]host:port[/db]` | unset |
//! | `REDIS_CLUSTER_URLS` | Redis Cluster seed nodes (any of them); takes precedence over `REDIS_URL` | `redis://host:port,redis://host:port,...` | unset |
//! | `CACHE_ENABLED` | kill switch: `false` makes every call a pass-through | `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off` | `true` |
//! | `CACHE_NAMESPACE` | first segment of every key | 1–64 of `A-Za-z0-9_.-` | `cache` |
//! | `CACHE_DEFAULT_TTL` | TTL when a call names none | `"90s"`, `"5m"`, `"24h"`, `"1h30m"` or seconds | `5m` |
//! | `CACHE_COMMAND_TIMEOUT_MS` | deadline of every backend call | positive integer (ms) | `50` |
//! | `CACHE_MAX_ENTRY_BYTES` | larger encoded values are not stored | positive integer | `1048576` |
//! | `CACHE_INVALIDATION_TIMEOUT_MS` | how long a write's invalidation waits for the backend before it is queued ([`crate::durable`]) | positive integer (ms) | `250` |
//! | `CACHE_INVALIDATION_QUEUE` | undelivered invalidations kept; past that, the namespace is retired when the backend answers | integer | `10000` |
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

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, MemoryBackend, RedisBackend, RedisClusterBackend, RedisOptions};
use crate::codec::Codec;
use crate::error::ConfigError;
use crate::key::KeySpace;
use crate::ttl::parse_duration;
use crate::Cache;

#[derive(Debug, Clone)]
pub(crate) enum BackendChoice {
    Memory { max_bytes: u64 },
    Redis { url: String },
    RedisCluster { seeds: Vec<String>, buckets: u16 },
    Custom(Arc<dyn Backend>),
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
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    settings: Settings,
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
            },
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

    /// Connection settings for the Redis backend.
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.redis = options;
        self
    }

    /// Use the in-memory backend holding at most `max_bytes` (the default, with 128 MiB).
    pub fn memory(mut self, max_bytes: u64) -> Self {
        self.backend = BackendChoice::Memory { max_bytes };
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
        let backend: Arc<dyn Backend> = match self.backend {
            BackendChoice::Memory { max_bytes } => Arc::new(MemoryBackend::new(max_bytes)),
            BackendChoice::Redis { url } => {
                Arc::new(RedisBackend::new(&url, &self.redis).map_err(|e| {
                    option(
                        "redis_url",
                        format!(
                            "{} (expected redis://host:port): {e}",
                            crate::backend::redact_url(&url)
                        ),
                    )
                })?)
            }
            BackendChoice::RedisCluster { seeds, buckets } => {
                if !(1..=1024).contains(&buckets) {
                    return Err(option("cluster_buckets", "must be 1 to 1024".into()));
                }
                for url in &seeds {
                    if redis::parse_redis_url(url).is_none() {
                        return Err(option(
                            "redis_cluster",
                            format!(
                                "{} (expected redis://host:port)",
                                crate::backend::redact_url(url)
                            ),
                        ));
                    }
                }
                Arc::new(
                    RedisClusterBackend::new(&seeds, &self.redis, buckets)
                        .map_err(|e| option("redis_cluster", format!("seed nodes: {e}")))?,
                )
            }
            BackendChoice::Custom(b) => b,
        };
        Ok(Cache::from_parts(
            keyspace,
            backend,
            settings,
            self.breaker_threshold,
            self.breaker_cooldown,
        ))
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
}
