//! The [`Cache`] handle and its engine, one file per concern:
//!
//! | file | concern |
//! | --- | --- |
//! | `mod.rs` | the handle, backend calls under the breaker and deadline, ids, counters, health |
//! | `read.rs` | the read-through engine every path uses (values, `#[cached]`, HTTP responses) |
//! | `store.rs` | envelopes, guarded stores, version snapshots and the freshness check of flights |
//! | `lease.rs` | the cross-instance lease |
//! | `many.rs` | fragments: many entries in one round trip |
//! | `ops.rs` | explicit operations: `set`, deletes, invalidation, pattern deletes, stats |

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::backend::Backend;
use crate::breaker::{Breaker, BreakerState, Permit, Transition};
use crate::config::{CacheBuilder, Settings};
use crate::error::{CacheError, ConfigError};
use crate::flight::Flights;
use crate::key::{CacheKey, KeyBuilder, KeySpace};
use crate::policy::CacheStatus;
use crate::stats::Stats;
use crate::stats::{add, inc};

pub(crate) mod durable;
mod inspect;
pub(crate) mod l1;
mod lease;
mod many;
mod ops;
pub(crate) mod read;
mod store;
mod verify;

pub use inspect::{EntryInfo, KeyCensus, ResourceKeys};
pub(crate) use read::Inline;
#[cfg(feature = "http")]
pub(crate) use read::{Detached, Failed, Format};

/// A cheaply cloneable handle to a cache (an `Arc` inside).
///
/// Read-through methods ([`get_or_load`](Self::get_or_load), [`fetch`](Self::fetch), ...) never
/// fail because of the cache: any backend error, timeout or undecodable entry falls through to the
/// loader. Explicit operations (`set`, `delete`, `invalidate_tags`, ...) report failures.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use cache_core::Cache;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = Cache::builder().namespace("docs").build().unwrap();
/// let key = cache.key("trig").id(42).build();
/// let loads = AtomicUsize::new(0);
/// let load = || async {
///     loads.fetch_add(1, Ordering::SeqCst);
///     "Ben Nevis".to_string()
/// };
/// let first: String = cache.get_or_load(&key, Duration::from_secs(60), load).await;
/// let second: String = cache.get_or_load(&key, Duration::from_secs(60), load).await;
/// assert_eq!((first.as_str(), second.as_str()), ("Ben Nevis", "Ben Nevis"));
/// assert_eq!(loads.load(Ordering::SeqCst), 1);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keyspace: KeySpace,
    tag_prefix: String,
    lock_prefix: String,
    /// Prefix of key version ids: `{ns}:k:`.
    key_id_prefix: String,
    /// The namespace generation id, `{ns}:g`, bumped by pattern deletes and `clear`.
    generation_id: String,
    backend: Arc<dyn Backend>,
    settings: Settings,
    breaker: Breaker,
    stats: Stats,
    flights: Flights,
    connected: AtomicBool,
    /// A failure of the current failing period was logged (the first one since start or since
    /// the backend last answered).
    failure_logged: AtomicBool,
    /// Incremented when an invalidation made through this handle starts: the freshness check
    /// of a flight falls back on it when the backend cannot be asked (see `store.rs`).
    epoch: AtomicU64,
    /// Queued invalidations, the breaker prober and the outbox task (see `durable.rs`).
    durable: durable::Durability,
    /// Wakes the outbox task early (the backend came back).
    outbox_kick: Arc<tokio::sync::Notify>,
    /// Stores fail because Redis is full: logged once per episode.
    oom: AtomicBool,
    /// Whether hits are verified because the backend may evict keys (see `verify.rs`), and
    /// when that was last read.
    verify: AtomicU8,
    verify_checked_ms: AtomicU64,
    /// The channel invalidation notices are published on: `{ns}:l1`.
    channel: String,
    /// The in-process tier, when configured and the backend publishes notices.
    l1: Option<l1::L1Handle>,
    /// Registered warmers (see `crate::warm`).
    warmers: std::sync::Mutex<Vec<Arc<crate::warm::Warmer>>>,
    /// Route analytics, set by the builder (in memory when built otherwise).
    #[cfg(feature = "analytics")]
    analytics: std::sync::OnceLock<crate::analytics::Analytics>,
}

/// A weak handle to a cache ([`Cache::downgrade`]).
pub(crate) struct WeakCache(std::sync::Weak<Inner>);

impl WeakCache {
    /// The cache, unless its last handle was dropped.
    pub(crate) fn upgrade(&self) -> Option<Cache> {
        self.0.upgrade().map(|inner| Cache { inner })
    }
}

/// Overall health, as reported by [`Cache::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// The backend answers within the deadline and the breaker is closed.
    Up,
    /// The backend answers, but slowly or after recent failures.
    Degraded,
    /// The backend does not answer; every call falls through.
    Down,
    /// Caching is switched off.
    Disabled,
}

/// A health report.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Overall status.
    pub status: HealthStatus,
    /// Backend kind (`redis`, `memory`).
    pub backend: &'static str,
    /// Circuit breaker state.
    pub breaker: BreakerState,
    /// Consecutive failed backend calls.
    pub consecutive_failures: u32,
    /// Round trip of the health ping, when it answered.
    pub latency_ms: Option<f64>,
    /// The error of the ping, when it failed.
    pub error: Option<String>,
}

/// An entry read with [`Cache::get_entry`]: the value and its metadata.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Entry<T> {
    /// The value.
    pub value: T,
    /// `Hit` when fresh, `Stale` when past its TTL but inside a stale window.
    pub status: CacheStatus,
    /// Time since the value was stored.
    pub age: Duration,
    /// Remaining fresh lifetime (zero when stale).
    pub ttl: Duration,
    /// Strong ETag of the stored payload.
    pub etag: u64,
}

impl Cache {
    /// A builder with the defaults.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// A cache configured from the environment (`REDIS_URL`, `CACHE_ENABLED`, ...; see
    /// [`config`](crate::config)).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable with a bad value.
    pub fn from_env() -> Result<Cache, ConfigError> {
        CacheBuilder::from_env()?.build()
    }

    /// An in-memory cache with the default settings.
    pub fn memory() -> Cache {
        CacheBuilder::new()
            .build()
            .unwrap_or_else(|e| unreachable!("default configuration is valid: {e}"))
    }

    pub(crate) fn from_parts(
        keyspace: KeySpace,
        backend: Arc<dyn Backend>,
        settings: Settings,
        breaker_threshold: u32,
        breaker_cooldown: Duration,
    ) -> Cache {
        let tag_prefix = keyspace.tag_prefix();
        let ns = keyspace.namespace();
        let lock_prefix = format!("{ns}:lock:");
        let key_id_prefix = format!("{ns}:k:");
        let generation_id = format!("{ns}:g");
        let settings_outbox = settings.outbox.is_some() && settings.enabled;
        let channel = format!("{ns}:l1");
        let l1 = match settings.l1_max_bytes {
            Some(max) if settings.enabled && backend.notifies() => {
                Some(l1::L1Handle::new(l1::L1::new(max, channel.clone())))
            }
            Some(_) if settings.enabled => {
                warn!(name: "cache_l1_unavailable", event = "cache_l1_unavailable", backend = backend.kind(), "this backend publishes no invalidation notices: the in-process tier stays off");
                None
            }
            _ => None,
        };
        let cache = Cache {
            inner: Arc::new(Inner {
                keyspace,
                tag_prefix,
                lock_prefix,
                key_id_prefix,
                generation_id,
                backend,
                settings,
                breaker: Breaker::new(breaker_threshold, breaker_cooldown),
                stats: Stats::default(),
                flights: Flights::default(),
                connected: AtomicBool::new(false),
                failure_logged: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                durable: durable::Durability::new(settings_outbox),
                outbox_kick: Arc::new(tokio::sync::Notify::new()),
                oom: AtomicBool::new(false),
                verify: AtomicU8::new(0),
                verify_checked_ms: AtomicU64::new(0),
                channel,
                l1,
                warmers: std::sync::Mutex::new(Vec::new()),
                #[cfg(feature = "analytics")]
                analytics: std::sync::OnceLock::new(),
            }),
        };
        // Replay the outbox at start (when built inside a runtime; otherwise at the first call).
        cache.start_outbox();
        cache.l1();
        cache
    }

    /// Starts a key for `resource` in this cache's keyspace.
    pub fn key(&self, resource: &str) -> KeyBuilder<'_> {
        self.inner.keyspace.key(resource)
    }

    /// The registered warmers.
    pub(crate) fn warmers(&self) -> &std::sync::Mutex<Vec<Arc<crate::warm::Warmer>>> {
        &self.inner.warmers
    }

    /// A weak handle (for background tasks that must end with the cache).
    pub(crate) fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.inner))
    }

    /// The route analytics of this cache (feature `analytics`): stored on the cache's Redis
    /// (single node or cluster), else in memory. See [`crate::analytics`].
    #[cfg(feature = "analytics")]
    pub fn analytics(&self) -> &crate::analytics::Analytics {
        self.inner.analytics.get_or_init(|| {
            crate::analytics::Analytics::memory(&crate::analytics::AnalyticsSettings::default())
        })
    }

    #[cfg(feature = "analytics")]
    pub(crate) fn set_analytics(&self, analytics: crate::analytics::Analytics) {
        let _ = self.inner.analytics.set(analytics);
    }

    /// The keyspace (namespace, versions, key length cap).
    pub fn keyspace(&self) -> &KeySpace {
        &self.inner.keyspace
    }

    /// Whether caching is enabled.
    pub fn is_enabled(&self) -> bool {
        self.inner.settings.enabled
    }

    /// The backend kind (`redis`, `memory`, or a custom backend's name).
    pub fn backend_kind(&self) -> &'static str {
        self.inner.backend.kind()
    }

    /// The default TTL.
    pub fn default_ttl(&self) -> Duration {
        self.inner.settings.default_ttl
    }

    /// The in-process tier, started on first use inside a runtime; `None` when not configured.
    pub(crate) fn l1(&self) -> Option<&l1::L1> {
        let handle = self.inner.l1.as_ref()?;
        handle.start(&self.inner.backend);
        Some(&handle.l1)
    }

    /// The state of the in-process tier (L1); `None` when it is not configured (see
    /// [`CacheBuilder::l1`]).
    pub fn l1_status(&self) -> Option<l1::L1Status> {
        self.l1().map(l1::L1::status)
    }

    /// The codec values are stored with.
    pub(crate) fn codec(&self) -> crate::codec::Codec {
        self.inner.settings.codec
    }

    // ---------------------------------------------------------------- backend calls

    /// Runs one backend call under the breaker and the command deadline.
    async fn call<R, Fut>(
        &self,
        deadline: Duration,
        f: impl FnOnce() -> Fut,
    ) -> Result<R, CacheError>
    where
        Fut: Future<Output = Result<R, CacheError>>,
    {
        if self.inner.settings.outbox.is_some() {
            self.start_outbox();
        }
        let probe = match self.inner.breaker.permit() {
            Permit::Call => false,
            Permit::Probe => true,
            Permit::Reject => {
                self.spawn_prober();
                return Err(CacheError::CircuitOpen);
            }
        };
        let result = match tokio::time::timeout(deadline, f()).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout(deadline)),
        };
        match &result {
            Ok(_) => self.backend_answered(),
            Err(e) if e.is_backend_failure() => {
                self.outbox_suspect();
                let t = self.inner.breaker.failure(probe);
                let was_connected = self.inner.connected.swap(false, Ordering::Relaxed);
                let first = !self.inner.failure_logged.swap(true, Ordering::Relaxed);
                if t == Transition::Opened || was_connected || first {
                    if e.is_tls() || e.is_auth() {
                        // A configuration error: retrying does not help until it is fixed.
                        error!(name: "cache_redis_connection_failed", event = "cache_redis_connection_failed", backend = self.inner.backend.kind(), error = %e, breaker = ?self.inner.breaker.state(), "cache backend refuses this client; serving without cache");
                    } else {
                        warn!(name: "cache_redis_connection_failed", event = "cache_redis_connection_failed", backend = self.inner.backend.kind(), error = %e, breaker = ?self.inner.breaker.state(), "cache backend failing; serving without cache");
                    }
                }
                if t == Transition::Opened {
                    self.spawn_prober();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// The backend answered a call: close the breaker (for every caller at once) and log the
    /// reconnection once.
    fn backend_answered(&self) {
        let t = self.inner.breaker.success();
        if t == Transition::Closed || !self.inner.connected.load(Ordering::Relaxed) {
            self.inner.connected.store(true, Ordering::Relaxed);
            self.inner.failure_logged.store(false, Ordering::Relaxed);
            info!(name: "cache_redis_connected", event = "cache_redis_connected", backend = self.inner.backend.kind(), "cache backend reachable");
        }
    }

    fn deadline(&self) -> Duration {
        self.inner.settings.command_timeout
    }

    fn record_error(&self, resource: &str, op: &'static str, key: &str, e: &CacheError) {
        if !e.is_circuit_open() {
            self.inner.stats.record(resource, |c| inc(&c.errors));
        }
        debug!(name: "cache_error", event = "cache_error", op, key, error = %e, "cache call failed; falling through");
    }

    // ---------------------------------------------------------------- ids

    /// The namespaced id of a tag: `{ns}:t:{tag}`.
    pub(crate) fn tag_id(&self, tag: &str) -> String {
        let mut id = String::with_capacity(self.inner.tag_prefix.len() + tag.len());
        id.push_str(&self.inner.tag_prefix);
        id.push_str(&crate::key::sanitize_segment(tag));
        id
    }

    /// The version id of an entry key, bumped when the entry is deleted by key: `{ns}:k:{key}`.
    pub(crate) fn key_id(&self, key: &CacheKey) -> String {
        let mut id = String::with_capacity(self.inner.key_id_prefix.len() + key.len());
        id.push_str(&self.inner.key_id_prefix);
        id.push_str(key.as_str());
        id
    }

    /// Marks the start of an invalidation made through this handle.
    pub(crate) fn begin_invalidation(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    // ---------------------------------------------------------------- counters

    fn count_served(&self, key: &CacheKey, status: CacheStatus, len: usize, age: Duration) {
        self.count_served_from(key, status, len, age, crate::policy::Tier::Redis);
    }

    fn count_served_from(
        &self,
        key: &CacheKey,
        status: CacheStatus,
        len: usize,
        age: Duration,
        tier: crate::policy::Tier,
    ) {
        let l1 = tier == crate::policy::Tier::L1;
        self.inner.stats.record(key.resource(), |c| {
            inc(if status == CacheStatus::Hit {
                &c.hits
            } else {
                &c.stale
            });
            if l1 {
                inc(&c.l1_hits);
            } else {
                add(&c.bytes_read, len as u64);
            }
        });
        debug!(name: "cache_hit", event = "cache_hit", key = key.as_str(), age_ms = age.as_millis() as u64, stale = status == CacheStatus::Stale, tier = tier.as_str(), "cache hit");
    }

    /// Counts a lookup outcome decided outside the read-through engine: `Hit`/`Stale` count as
    /// served, `Miss` as a miss, `Bypass` as a bypass, `Skip` as a skip.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn record_status(&self, key: &CacheKey, status: CacheStatus, bytes: usize) {
        self.inner.stats.record(key.resource(), |c| match status {
            CacheStatus::Hit | CacheStatus::Stale => {
                inc(if status == CacheStatus::Hit {
                    &c.hits
                } else {
                    &c.stale
                });
                add(&c.bytes_read, bytes as u64);
            }
            CacheStatus::Miss => inc(&c.misses),
            CacheStatus::Bypass => inc(&c.bypasses),
            CacheStatus::Skip => inc(&c.skips),
        });
    }

    // ---------------------------------------------------------------- health

    /// Pings the backend (bypassing the breaker) and reports up, degraded, down or disabled.
    pub async fn health(&self) -> Health {
        let backend = self.inner.backend.kind();
        let breaker = self.inner.breaker.state();
        let consecutive_failures = self.inner.breaker.consecutive_failures();
        if !self.is_enabled() {
            return Health {
                status: HealthStatus::Disabled,
                backend,
                breaker,
                consecutive_failures,
                latency_ms: None,
                error: None,
            };
        }
        let started = Instant::now();
        let deadline = self.deadline().max(Duration::from_millis(250));
        let ping = match tokio::time::timeout(deadline, self.inner.backend.ping()).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout(deadline)),
        };
        let latency = started.elapsed();
        match ping {
            Ok(()) => {
                let status = if breaker == BreakerState::Closed
                    && consecutive_failures == 0
                    && latency <= self.deadline()
                {
                    HealthStatus::Up
                } else {
                    HealthStatus::Degraded
                };
                Health {
                    status,
                    backend,
                    breaker,
                    consecutive_failures,
                    latency_ms: Some(latency.as_secs_f64() * 1000.0),
                    error: None,
                }
            }
            Err(e) => Health {
                status: HealthStatus::Down,
                backend,
                breaker,
                consecutive_failures,
                latency_ms: None,
                error: Some(e.to_string()),
            },
        }
    }

    #[doc(hidden)]
    /// Number of callers waiting on an in-flight load of `key` (for tests and diagnostics).
    pub fn waiting_on(&self, key: &CacheKey) -> usize {
        self.inner.flights.waiters(key.as_str())
    }
}
