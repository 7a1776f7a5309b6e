//! The [`Cache`] handle and its read-through engine.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tracing::{debug, info, warn};

use crate::backend::{Backend, BackendInfo, Put};
use crate::breaker::{Breaker, BreakerState, Permit, Transition};
use crate::codec::{duration_ms, now_ms, Envelope, EnvelopeMeta};
use crate::config::{CacheBuilder, Settings};
use crate::error::{CacheError, ConfigError};
use crate::flight::{Flights, Role};
use crate::fragments::Fragment;
use crate::key::{CacheKey, KeyBuilder, KeySpace};
use crate::policy::{CacheStatus, Fetched, Policy};
use crate::stats::Stats;
use crate::stats::{add, inc, StatsSnapshot};
use crate::tags::PendingInvalidation;

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
    backend: Arc<dyn Backend>,
    settings: Settings,
    breaker: Breaker,
    stats: Stats,
    flights: Flights,
    connected: AtomicBool,
}

/// Overall health, as reported by [`Cache::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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

enum Lookup {
    /// Nothing usable; `fallback` keeps a stale entry usable if the loader fails.
    Miss { fallback: Option<Bytes> },
    /// A value to serve now; `refresh` says a refresh should run.
    Serve {
        bytes: Bytes,
        status: CacheStatus,
        refresh: bool,
    },
    /// The backend is unavailable.
    Unavailable,
}

/// How a refresh of a still-servable entry is run.
trait RefreshMode<F> {
    /// Spawns the refresh and returns `None`, or hands the loader back to run inline.
    fn spawn(self, cache: &Cache, key: &CacheKey, policy: &Policy, loader: F) -> Option<F>;
}

struct Inline;

impl<F> RefreshMode<F> for Inline {
    fn spawn(self, _: &Cache, _: &CacheKey, _: &Policy, loader: F) -> Option<F> {
        Some(loader)
    }
}

struct Detached<T, E>(std::marker::PhantomData<fn() -> (T, E)>);

impl<T, E, F, Fut> RefreshMode<F> for Detached<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    fn spawn(self, cache: &Cache, key: &CacheKey, policy: &Policy, loader: F) -> Option<F> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Some(loader);
        };
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        handle.spawn(async move {
            let Role::Leader(leader) = cache.inner.flights.join(key.as_str()) else {
                return; // a refresh is already running
            };
            let _ = cache.load_and_store(&key, &policy, loader, leader).await;
        });
        None
    }
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
        let lock_prefix = format!("{}:lock:", keyspace.namespace());
        Cache {
            inner: Arc::new(Inner {
                keyspace,
                tag_prefix,
                lock_prefix,
                backend,
                settings,
                breaker: Breaker::new(breaker_threshold, breaker_cooldown),
                stats: Stats::default(),
                flights: Flights::default(),
                connected: AtomicBool::new(false),
            }),
        }
    }

    /// Starts a key for `resource` in this cache's keyspace.
    pub fn key(&self, resource: &str) -> KeyBuilder<'_> {
        self.inner.keyspace.key(resource)
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
        let probe = match self.inner.breaker.permit() {
            Permit::Call => false,
            Permit::Probe => true,
            Permit::Reject => return Err(CacheError::CircuitOpen),
        };
        let result = match tokio::time::timeout(deadline, f()).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout(deadline)),
        };
        match &result {
            Ok(_) => {
                let t = self.inner.breaker.success();
                if t == Transition::Closed || !self.inner.connected.load(Ordering::Relaxed) {
                    self.inner.connected.store(true, Ordering::Relaxed);
                    info!(name: "cache_redis_connected", backend = self.inner.backend.kind(), "cache backend reachable");
                }
            }
            Err(e) if e.is_backend_failure() => {
                let t = self.inner.breaker.failure(probe);
                let was_connected = self.inner.connected.swap(false, Ordering::Relaxed);
                if t == Transition::Opened || was_connected {
                    warn!(name: "cache_redis_connection_failed", backend = self.inner.backend.kind(), error = %e, breaker = ?self.inner.breaker.state(), "cache backend failing; serving without cache");
                }
            }
            Err(_) => {}
        }
        result
    }

    fn deadline(&self) -> Duration {
        self.inner.settings.command_timeout
    }

    fn record_error(&self, resource: &str, op: &'static str, key: &str, e: &CacheError) {
        if !e.is_circuit_open() {
            self.inner.stats.record(resource, |c| inc(&c.errors));
        }
        debug!(name: "cache_error", op, key, error = %e, "cache call failed; falling through");
    }

    // ---------------------------------------------------------------- plain operations

    /// Reads a fresh or stale value; `None` on a miss, an error or when disabled.
    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Option<T> {
        self.get_entry(key).await.map(|e| e.value)
    }

    /// Reads a value with its age, remaining TTL and ETag.
    pub async fn get_entry<T: DeserializeOwned>(&self, key: &CacheKey) -> Option<Entry<T>> {
        let bytes = self.get_raw(key).await?;
        let now = now_ms();
        let env = self.parse_or_count(key, &bytes)?;
        let age = env.age_at(now);
        let status = if age < env.ttl() {
            CacheStatus::Hit
        } else if age < env.ttl() + env.stale_while_revalidate().max(env.stale_if_error()) {
            CacheStatus::Stale
        } else {
            return None;
        };
        match env.decode() {
            Ok(value) => {
                self.count_served(key, status, bytes.len(), age);
                Some(Entry {
                    value,
                    status,
                    age,
                    ttl: env.ttl().saturating_sub(age),
                    etag: env.etag(),
                })
            }
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                None
            }
        }
    }

    /// Reads the raw envelope bytes of an entry (for HTTP layers that serve bytes as they are).
    pub async fn get_raw(&self, key: &CacheKey) -> Option<Bytes> {
        self.try_get_raw(key).await.ok().flatten()
    }

    /// Like [`get_raw`](Self::get_raw), telling a miss (`Ok(None)`) from an unavailable backend.
    ///
    /// # Errors
    /// The backend failure, [`CacheError::CircuitOpen`] or [`CacheError::Disabled`].
    pub async fn try_get_raw(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let backend = &self.inner.backend;
        self.call(self.deadline(), || backend.get(key.as_str()))
            .await
            .inspect_err(|e| self.record_error(key.resource(), "get", key.as_str(), e))
    }

    /// Reads many entries in one round trip; one slot per key, `None` for misses, errors and
    /// entries past every window.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[CacheKey]) -> Vec<Option<T>> {
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        for slot in self.get_many_raw(keys).await.into_iter().zip(keys) {
            out.push(match slot {
                (Some(bytes), key) => self.decode_servable(key, &bytes).map(|(v, _)| v),
                (None, key) => {
                    self.inner.stats.record(key.resource(), |c| inc(&c.misses));
                    None
                }
            });
        }
        out
    }

    /// Reads many fragments in one round trip, calls `loader` once with the indices of the
    /// missing ones (it returns their values in that order), stores those in one round trip and
    /// returns every value in fragment order. See [`crate::fragments`] for a worked example.
    ///
    /// Fragments are not single-flighted against each other; each store is guarded by its tags.
    ///
    /// # Errors
    /// The loader's error (nothing is stored then).
    ///
    /// # Panics
    /// If the loader returns a different number of values than it was asked for.
    pub async fn get_many_or_load<T, E, F, Fut>(
        &self,
        fragments: &[Fragment],
        loader: F,
    ) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
    {
        let keys: Vec<CacheKey> = fragments.iter().map(|f| f.key.clone()).collect();
        let raw = if self.is_enabled() {
            self.get_many_raw(&keys).await
        } else {
            vec![None; keys.len()]
        };
        let mut values: Vec<Option<T>> = Vec::with_capacity(fragments.len());
        let mut missing = Vec::new();
        for (i, (slot, key)) in raw.iter().zip(&keys).enumerate() {
            let found = match slot {
                Some(bytes) => self.decode_servable::<T>(key, bytes).map(|(v, _)| v),
                None => {
                    if self.is_enabled() {
                        self.inner.stats.record(key.resource(), |c| inc(&c.misses));
                    }
                    None
                }
            };
            if found.is_none() {
                missing.push(i);
            }
            values.push(found);
        }
        if missing.is_empty() {
            return Ok(values.into_iter().flatten().collect());
        }
        // Snapshot the versions of every tag of the missing fragments in one round trip.
        let mut tag_ids: Vec<String> = Vec::new();
        for &i in &missing {
            for t in &fragments[i].policy.tags {
                let id = self.tag_id(t);
                if !tag_ids.contains(&id) {
                    tag_ids.push(id);
                }
            }
        }
        let versions: Option<Vec<u64>> = if !self.is_enabled() {
            None
        } else {
            self.snapshot_tag_versions(&tag_ids, &keys[missing[0]])
                .await
        };
        for &i in &missing {
            self.inner
                .stats
                .record(keys[i].resource(), |c| inc(&c.loads));
        }
        let started = Instant::now();
        let loaded = loader(missing.clone()).await?;
        let recompute = started.elapsed();
        assert_eq!(
            loaded.len(),
            missing.len(),
            "get_many_or_load: the loader must return one value per missing index"
        );
        if let Some(versions) = versions {
            let mut encoded: Vec<EncodedFragment> = Vec::new();
            for (&i, value) in missing.iter().zip(&loaded) {
                let policy = &fragments[i].policy;
                let Ok(bytes) = self.encode(&keys[i], value, policy, recompute) else {
                    continue;
                };
                let ids: Vec<String> = policy.tags.iter().map(|t| self.tag_id(t)).collect();
                let guard: Vec<u64> = ids
                    .iter()
                    .map(|id| {
                        tag_ids
                            .iter()
                            .position(|x| x == id)
                            .map_or(0, |p| versions[p])
                    })
                    .collect();
                encoded.push((i, bytes, ids, guard));
            }
            let puts: Vec<Put<'_>> = encoded
                .iter()
                .map(|(i, bytes, ids, guard)| {
                    let p = &fragments[*i].policy;
                    let keep = self.keep_for(p);
                    Put {
                        key: keys[*i].as_str(),
                        value: bytes,
                        ttl: keep,
                        tags: ids,
                        guard: Some(guard),
                    }
                })
                .collect();
            let backend = &self.inner.backend;
            match self.call(self.deadline(), || backend.put(&puts)).await {
                Ok(stored) => {
                    for ((i, bytes, _, _), ok) in encoded.iter().zip(stored) {
                        let len = bytes.len() as u64;
                        self.inner.stats.record(keys[*i].resource(), |c| {
                            if ok {
                                inc(&c.sets);
                                add(&c.bytes_written, len);
                            } else {
                                inc(&c.rejected_fills);
                            }
                        });
                    }
                }
                Err(e) => {
                    self.inner
                        .stats
                        .record(keys[missing[0]].resource(), |c| inc(&c.errors));
                    warn!(name: "cache_store_error", keys = missing.len(), error = %e, "could not store fragments");
                }
            }
        }
        let mut loaded = loaded.into_iter();
        Ok(values
            .into_iter()
            .map(|v| match v {
                Some(v) => v,
                None => loaded
                    .next()
                    .unwrap_or_else(|| unreachable!("one loaded value per missing index")),
            })
            .collect())
    }

    /// Reads the current versions of `tag_ids` (one round trip; none for no tags). `None` when
    /// the backend failed: the fill then cannot be proven race-free and must not be stored.
    async fn snapshot_tag_versions(&self, tag_ids: &[String], key: &CacheKey) -> Option<Vec<u64>> {
        if tag_ids.is_empty() {
            return Some(Vec::new());
        }
        let refs: Vec<&str> = tag_ids.iter().map(String::as_str).collect();
        let backend = &self.inner.backend;
        match self
            .call(self.deadline(), || backend.tag_versions(&refs))
            .await
        {
            Ok(v) => Some(v),
            Err(e) => {
                self.record_error(key.resource(), "tag_versions", key.as_str(), &e);
                None
            }
        }
    }

    /// How long the backend keeps an entry stored under `policy` (TTL plus stale windows).
    fn keep_for(&self, policy: &Policy) -> Duration {
        policy.ttl.unwrap_or(self.inner.settings.default_ttl)
            + policy.stale_while_revalidate.max(policy.stale_if_error)
    }

    pub(crate) async fn get_many_raw(&self, keys: &[CacheKey]) -> Vec<Option<Bytes>> {
        if !self.is_enabled() || keys.is_empty() {
            return vec![None; keys.len()];
        }
        let refs: Vec<&str> = keys.iter().map(CacheKey::as_str).collect();
        let backend = &self.inner.backend;
        match self.call(self.deadline(), || backend.get_many(&refs)).await {
            Ok(found) if found.len() == keys.len() => found,
            Ok(_) => vec![None; keys.len()],
            Err(e) => {
                self.record_error(keys[0].resource(), "get_many", keys[0].as_str(), &e);
                vec![None; keys.len()]
            }
        }
    }

    /// Decodes an entry if it is fresh or inside a stale window, counting the outcome.
    pub(crate) fn decode_servable<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
    ) -> Option<(T, CacheStatus)> {
        let env = self.parse_or_count(key, bytes)?;
        let age = env.age_at(now_ms());
        let status = if age < env.ttl() {
            CacheStatus::Hit
        } else if age < env.ttl() + env.stale_while_revalidate() {
            CacheStatus::Stale
        } else {
            self.inner.stats.record(key.resource(), |c| inc(&c.misses));
            return None;
        };
        match env.decode() {
            Ok(v) => {
                self.count_served(key, status, bytes.len(), age);
                Some((v, status))
            }
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                None
            }
        }
    }

    fn parse_or_count<'b>(&self, key: &CacheKey, bytes: &'b [u8]) -> Option<Envelope<'b>> {
        match Envelope::parse(bytes) {
            Ok(env) => Some(env),
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                None
            }
        }
    }

    fn count_served(&self, key: &CacheKey, status: CacheStatus, len: usize, age: Duration) {
        self.inner.stats.record(key.resource(), |c| {
            inc(if status == CacheStatus::Hit {
                &c.hits
            } else {
                &c.stale
            });
            add(&c.bytes_read, len as u64);
        });
        debug!(name: "cache_hit", key = key.as_str(), age_ms = age.as_millis() as u64, stale = status == CacheStatus::Stale, "cache hit");
    }

    /// Stores a value unconditionally with the policy's TTL, windows and tags.
    ///
    /// # Errors
    /// The backend failure, [`CacheError::TooLarge`], [`CacheError::Encode`] or
    /// [`CacheError::Disabled`].
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        policy: impl Into<Policy>,
    ) -> Result<(), CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let policy = policy.into();
        let bytes = self.encode(key, value, &policy, Duration::ZERO)?;
        self.store(key, &policy, &bytes, None).await.map(|_| ())
    }

    /// Stores bytes that are already encoded (an HTTP body, for instance) with a content type,
    /// unconditionally, under the policy's TTL, windows and tags. Read them back with
    /// [`get_raw`](Self::get_raw) and [`Envelope::payload`](crate::codec::Envelope::payload).
    ///
    /// # Errors
    /// The backend failure, [`CacheError::TooLarge`] or [`CacheError::Disabled`].
    pub async fn set_raw(
        &self,
        key: &CacheKey,
        payload: &[u8],
        content_type: &str,
        policy: impl Into<Policy>,
    ) -> Result<(), CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let policy = policy.into();
        let bytes = self.envelope(key, &policy, Duration::ZERO, |meta| {
            Ok(crate::codec::encode_raw_envelope(
                payload,
                content_type,
                meta,
            ))
        })?;
        self.store(key, &policy, &bytes, None).await.map(|_| ())
    }

    /// Counts a lookup outcome decided outside the read-through methods (HTTP layers serving
    /// raw entries): `Hit`/`Stale` count as served, `Miss` as a miss, `Bypass` as a bypass,
    /// `Skip` as a skip.
    pub fn record_status(&self, key: &CacheKey, status: CacheStatus, bytes: usize) {
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

    /// Deletes one entry; `Ok(true)` if it existed.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        Ok(self.delete_many(std::slice::from_ref(key)).await? > 0)
    }

    /// Deletes entries by key; returns how many existed.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn delete_many(&self, keys: &[CacheKey]) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let refs: Vec<&str> = keys.iter().map(CacheKey::as_str).collect();
        let backend = &self.inner.backend;
        let n = self.call(self.deadline(), || backend.delete(&refs)).await?;
        for key in keys {
            self.inner.stats.record(key.resource(), |c| inc(&c.deletes));
        }
        info!(name: "cache_invalidated", keys = ?refs, deleted = n, "cache keys deleted");
        Ok(n)
    }

    /// Invalidates every entry carrying any of `tags`, atomically, at a cost proportional to the
    /// number of entries carrying them (never to the size of the keyspace). A fill that began
    /// before this call and finishes after it is not stored.
    ///
    /// # Errors
    /// Reported to the caller (an invalidation must not vanish silently): the backend failure,
    /// [`CacheError::CircuitOpen`], or [`CacheError::Disabled`]. See [`crate::tags`] for what a
    /// service should do then.
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        if tags.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = tags.iter().map(|t| self.tag_id(t.as_ref())).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let backend = &self.inner.backend;
        let retention = self.inner.settings.tag_version_retention;
        let n = self
            .call(self.inner.settings.admin_timeout.max(self.deadline()), || {
                backend.invalidate_tags(&refs, retention)
            })
            .await
            .inspect_err(|e| warn!(name: "cache_invalidate_failed", tags = ?tags.iter().map(AsRef::as_ref).collect::<Vec<_>>(), error = %e, "tag invalidation failed"))?;
        add(&self.inner.stats.total().invalidations, n);
        info!(name: "cache_invalidated", tags = ?tags.iter().map(AsRef::as_ref).collect::<Vec<_>>(), deleted = n, "cache tags invalidated");
        Ok(n)
    }

    /// Deletes every key of this namespace matching a Redis glob pattern (operators only),
    /// with `SCAN` + `UNLINK` in batches, never `KEYS`. The pattern is relative to the keyspace
    /// prefix `{namespace}:v{version}:`, so `trig:*` deletes every `trig` entry.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for patterns with whitespace or control characters, or the
    /// backend failure.
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let full = self
            .inner
            .keyspace
            .pattern(pattern)
            .map_err(CacheError::InvalidArgument)?;
        let backend = &self.inner.backend;
        let n = self
            .call(self.inner.settings.admin_timeout, || {
                backend.delete_pattern(&full, 500)
            })
            .await?;
        add(&self.inner.stats.total().deletes, n);
        info!(name: "cache_delete_pattern", pattern = %full, deleted = n, "cache pattern deleted");
        Ok(n)
    }

    /// Deletes every entry of this namespace (all versions) and its tag bookkeeping.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn clear(&self) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let pattern = format!("{}:*", escape_glob(self.inner.keyspace.namespace()));
        let backend = &self.inner.backend;
        let n = self
            .call(self.inner.settings.admin_timeout, || {
                backend.delete_pattern(&pattern, 500)
            })
            .await?;
        add(&self.inner.stats.total().deletes, n);
        info!(name: "cache_delete_pattern", pattern = %pattern, deleted = n, "cache namespace cleared");
        Ok(n)
    }

    /// Collects tags and keys to invalidate after a database transaction commits; see
    /// [`PendingInvalidation`].
    pub fn defer(&self) -> PendingInvalidation {
        PendingInvalidation::new(self.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Resets every counter to zero.
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// Server statistics from the backend (keys, memory, keyspace hits and misses, clients).
    ///
    /// # Errors
    /// The backend failure.
    pub async fn backend_info(&self) -> Result<BackendInfo, CacheError> {
        let backend = &self.inner.backend;
        self.call(
            self.inner
                .settings
                .admin_timeout
                .min(Duration::from_secs(5)),
            || backend.info(),
        )
        .await
    }

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

    // ---------------------------------------------------------------- read-through

    /// Returns the cached value, or runs `loader`, stores its value and returns it.
    /// Concurrent misses on one key run the loader once (single-flight).
    ///
    /// `policy` is a TTL (`Duration`) or a full [`Policy`] (tags, stale windows, lease, ...).
    pub async fn get_or_load<T, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let result: Result<Fetched<T>, std::convert::Infallible> = self
            .fetch_with(key, policy.into(), || async { Ok(loader().await) }, Inline)
            .await;
        match result {
            Ok(f) => f.value,
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_load`](Self::get_or_load) for fallible loaders: only `Ok` values are cached;
    /// errors are returned untouched (unless a stale-if-error window serves a stale value).
    ///
    /// # Errors
    /// The loader's error.
    pub async fn try_get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.fetch_with(key, policy.into(), loader, Inline)
            .await
            .map(|f| f.value)
    }

    /// The full read-through: returns the value with its [`CacheStatus`], age and TTL.
    ///
    /// The loader may borrow. When an entry is in its stale-while-revalidate window, one caller
    /// (elected by single-flight) refreshes it inline while every other caller gets the stale
    /// value at once; use [`fetch_detached`](Self::fetch_detached) to refresh in the background.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn fetch<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.fetch_with(key, policy.into(), loader, Inline).await
    }

    /// Like [`fetch`](Self::fetch) with an owned (`'static`) loader, so refreshes of stale
    /// entries (stale-while-revalidate, early refresh) run in a background task and every caller
    /// is answered from the cache at once.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn fetch_detached<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.fetch_with(
            key,
            policy.into(),
            loader,
            Detached::<T, E>(std::marker::PhantomData),
        )
        .await
    }

    async fn fetch_with<T, E, F, Fut, M>(
        &self,
        key: &CacheKey,
        policy: Policy,
        loader: F,
        mode: M,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        M: RefreshMode<F>,
    {
        let resource = key.resource();
        if !self.is_enabled() {
            return loader()
                .await
                .map(|value| Fetched::new(value, CacheStatus::Skip));
        }
        if policy.bypass {
            self.inner.stats.record(resource, |c| inc(&c.bypasses));
            debug!(name: "cache_bypass", key = key.as_str(), "cache lookup bypassed; refreshing");
            return match self.inner.flights.join(key.as_str()) {
                Role::Leader(leader) => self.load_and_store(key, &policy, loader, leader).await,
                Role::Follower(_) => loader().await.map(|v| Fetched::new(v, CacheStatus::Miss)),
            }
            .map(|mut f| {
                f.status = CacheStatus::Bypass;
                f
            });
        }
        let fallback = match self.lookup(key, &policy).await {
            Lookup::Serve {
                bytes,
                status,
                refresh,
            } => {
                let env = Envelope::parse(&bytes).ok();
                match env.map(|e| (e.decode::<T>(), e)) {
                    Some((Ok(value), env)) => {
                        let age = env.age_at(now_ms());
                        if !refresh {
                            self.count_served(key, status, bytes.len(), age);
                            return Ok(Fetched {
                                value,
                                status,
                                age,
                                ttl: env.ttl().saturating_sub(age),
                                etag: Some(env.etag()),
                            });
                        }
                        match mode.spawn(self, key, &policy, loader) {
                            None => {
                                self.count_served(key, status, bytes.len(), age);
                                return Ok(Fetched {
                                    value,
                                    status,
                                    age,
                                    ttl: env.ttl().saturating_sub(age),
                                    etag: Some(env.etag()),
                                });
                            }
                            Some(loader) => {
                                // Inline refresh: the single-flight leader refreshes, the rest
                                // are served what we have.
                                return match self.inner.flights.join(key.as_str()) {
                                    Role::Leader(leader) => {
                                        let fetched =
                                            self.load_and_store(key, &policy, loader, leader).await;
                                        fetched.or_else(|e| {
                                            if status == CacheStatus::Stale
                                                && age < env.ttl() + env.stale_if_error()
                                            {
                                                self.count_served(
                                                    key,
                                                    CacheStatus::Stale,
                                                    bytes.len(),
                                                    age,
                                                );
                                                Ok(Fetched {
                                                    value,
                                                    status: CacheStatus::Stale,
                                                    age,
                                                    ttl: Duration::ZERO,
                                                    etag: Some(env.etag()),
                                                })
                                            } else if status == CacheStatus::Hit {
                                                // early refresh failed: the value is still fresh
                                                self.count_served(key, status, bytes.len(), age);
                                                Ok(Fetched {
                                                    value,
                                                    status,
                                                    age,
                                                    ttl: env.ttl().saturating_sub(age),
                                                    etag: Some(env.etag()),
                                                })
                                            } else {
                                                Err(e)
                                            }
                                        })
                                    }
                                    Role::Follower(_) => {
                                        self.count_served(key, status, bytes.len(), age);
                                        Ok(Fetched {
                                            value,
                                            status,
                                            age,
                                            ttl: env.ttl().saturating_sub(age),
                                            etag: Some(env.etag()),
                                        })
                                    }
                                };
                            }
                        }
                    }
                    Some((Err(e), _)) => {
                        self.record_error(resource, "decode", key.as_str(), &e);
                        None
                    }
                    None => None,
                }
            }
            Lookup::Miss { fallback } => fallback,
            Lookup::Unavailable => {
                self.inner.stats.record(resource, |c| {
                    inc(&c.skips);
                    inc(&c.loads);
                });
                debug!(name: "cache_skip", key = key.as_str(), reason = "backend unavailable", "cache skipped");
                return loader().await.map(|v| Fetched::new(v, CacheStatus::Skip));
            }
        };
        self.inner.stats.record(resource, |c| inc(&c.misses));
        let loaded = match self.inner.flights.join(key.as_str()) {
            Role::Leader(leader) => self.load_and_store(key, &policy, loader, leader).await,
            Role::Follower(follower) => match follower.wait().await {
                Some(bytes) => match Envelope::parse(&bytes).and_then(|e| e.decode::<T>()) {
                    Ok(value) => Ok(Fetched::new(value, CacheStatus::Miss)),
                    Err(_) => self.load_plain(resource, loader).await,
                },
                None => self.load_plain(resource, loader).await,
            },
        };
        loaded.or_else(|e| self.stale_if_error(key, fallback, e))
    }

    fn stale_if_error<T: DeserializeOwned, E>(
        &self,
        key: &CacheKey,
        fallback: Option<Bytes>,
        e: E,
    ) -> Result<Fetched<T>, E> {
        let Some(bytes) = fallback else { return Err(e) };
        let Ok(env) = Envelope::parse(&bytes) else {
            return Err(e);
        };
        let age = env.age_at(now_ms());
        if age >= env.ttl() + env.stale_if_error() {
            return Err(e);
        }
        match env.decode() {
            Ok(value) => {
                self.count_served(key, CacheStatus::Stale, bytes.len(), age);
                debug!(name: "cache_stale_if_error", key = key.as_str(), age_ms = age.as_millis() as u64, "loader failed; serving stale value");
                Ok(Fetched {
                    value,
                    status: CacheStatus::Stale,
                    age,
                    ttl: Duration::ZERO,
                    etag: Some(env.etag()),
                })
            }
            Err(_) => Err(e),
        }
    }

    async fn load_plain<T, E, F, Fut>(&self, resource: &str, loader: F) -> Result<Fetched<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.stats.record(resource, |c| inc(&c.loads));
        loader().await.map(|v| Fetched::new(v, CacheStatus::Miss))
    }

    async fn lookup(&self, key: &CacheKey, policy: &Policy) -> Lookup {
        let backend = &self.inner.backend;
        let bytes = match self
            .call(self.deadline(), || backend.get(key.as_str()))
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Lookup::Miss { fallback: None },
            Err(e) => {
                self.record_error(key.resource(), "get", key.as_str(), &e);
                return Lookup::Unavailable;
            }
        };
        let Some(env) = self.parse_or_count(key, &bytes) else {
            return Lookup::Miss { fallback: None };
        };
        let now = now_ms();
        let age = env.age_at(now);
        let ttl = env.ttl();
        if age < ttl {
            let refresh = policy.early_refresh.is_some_and(|beta| {
                // XFetch: refresh early with probability rising as expiry nears, scaled by the
                // measured recompute time.
                let delta = env.recompute().as_secs_f64();
                let r = fastrand::f64().max(f64::MIN_POSITIVE);
                let remaining = (ttl - age).as_secs_f64();
                delta * beta * -r.ln() >= remaining
            });
            return Lookup::Serve {
                bytes,
                status: CacheStatus::Hit,
                refresh,
            };
        }
        if age < ttl + env.stale_while_revalidate() {
            return Lookup::Serve {
                bytes,
                status: CacheStatus::Stale,
                refresh: true,
            };
        }
        if age < ttl + env.stale_if_error() {
            return Lookup::Miss {
                fallback: Some(bytes),
            };
        }
        Lookup::Miss { fallback: None }
    }

    /// The leader's work: capture tag versions, take the lease if asked, run the loader, store
    /// the value guarded by the captured versions, publish it to the followers.
    async fn load_and_store<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        loader: F,
        leader: crate::flight::LeaderGuard<'_>,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let resource = key.resource();
        // 1. Snapshot tag versions before the loader reads anything.
        let ids: Vec<String> = policy.tags.iter().map(|t| self.tag_id(t)).collect();
        let guard = self.snapshot_tag_versions(&ids, key).await;
        // 2. Cross-instance lease.
        // A bypass refreshes now: it must not be answered by the value it bypasses.
        let lease = if policy.lease && guard.is_some() && !policy.bypass {
            self.acquire_lease(key).await
        } else {
            LeaseOutcome::NotUsed
        };
        if let LeaseOutcome::FilledByOther(bytes) = &lease {
            if let Ok(value) = Envelope::parse(bytes).and_then(|e| e.decode::<T>()) {
                let env = Envelope::parse(bytes).ok();
                let age = env.map_or(Duration::ZERO, |e| e.age_at(now_ms()));
                self.count_served(key, CacheStatus::Hit, bytes.len(), age);
                leader.complete(bytes.clone());
                return Ok(Fetched {
                    value,
                    status: CacheStatus::Hit,
                    age,
                    ttl: env.map_or(Duration::ZERO, |e| e.ttl().saturating_sub(age)),
                    etag: env.map(|e| e.etag()),
                });
            }
        }
        // 3. Load.
        self.inner.stats.record(resource, |c| inc(&c.loads));
        let started = Instant::now();
        let value = match loader().await {
            Ok(v) => v,
            Err(e) => {
                if let LeaseOutcome::Held(token) = &lease {
                    self.release_lease(key, token).await;
                }
                return Err(e); // the guard's drop tells followers to load themselves
            }
        };
        let recompute = started.elapsed();
        // 4. Encode and store.
        let mut fetched = Fetched::new(value, CacheStatus::Miss);
        match self.encode(key, &fetched.value, policy, recompute) {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                if let Some(versions) = &guard {
                    if let Ok(true) = self.store(key, policy, &bytes, Some(versions)).await {
                        fetched.ttl = self.effective_ttl_from(&bytes);
                    }
                }
                fetched.etag = Envelope::parse(&bytes).ok().map(|e| e.etag());
                leader.complete(bytes);
            }
            Err(e) => {
                self.record_error(resource, "encode", key.as_str(), &e);
                drop(leader);
            }
        }
        if let LeaseOutcome::Held(token) = &lease {
            self.release_lease(key, token).await;
        }
        Ok(fetched)
    }

    fn effective_ttl_from(&self, bytes: &[u8]) -> Duration {
        Envelope::parse(bytes).map(|e| e.ttl()).unwrap_or_default()
    }

    /// Encodes with the policy's TTL (jittered), windows and tags; enforces the size cap.
    fn encode<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        policy: &Policy,
        recompute: Duration,
    ) -> Result<Vec<u8>, CacheError> {
        let codec = self.inner.settings.codec;
        self.envelope(key, policy, recompute, |meta| {
            codec.encode_envelope(value, meta)
        })
    }

    /// Builds the envelope metadata for `policy` (TTL with jitter, windows, tags), lets `write`
    /// produce the envelope, and enforces the maximum entry size (counted and logged).
    fn envelope(
        &self,
        key: &CacheKey,
        policy: &Policy,
        recompute: Duration,
        write: impl FnOnce(&EnvelopeMeta<'_>) -> Result<Vec<u8>, CacheError>,
    ) -> Result<Vec<u8>, CacheError> {
        let s = &self.inner.settings;
        let mut ttl = policy.ttl.unwrap_or(s.default_ttl);
        if s.ttl_jitter > 0.0 {
            ttl = crate::ttl::jitter(ttl, s.ttl_jitter);
        }
        let meta = EnvelopeMeta {
            created_at_ms: 0,
            ttl,
            stale_while_revalidate: policy.stale_while_revalidate,
            stale_if_error: policy.stale_if_error,
            recompute,
            tags: &policy.tags,
            compress_above: s.compress_above,
        };
        let bytes = write(&meta)?;
        if bytes.len() > s.max_entry_size {
            self.inner.stats.record(key.resource(), |c| inc(&c.skips));
            info!(name: "cache_skip", key = key.as_str(), size = bytes.len(), max = s.max_entry_size, reason = "too_large", "value larger than max entry size; not cached");
            return Err(CacheError::TooLarge {
                size: bytes.len(),
                max: s.max_entry_size,
            });
        }
        Ok(bytes)
    }

    /// Stores an encoded envelope. `Ok(false)`: the guard rejected the fill.
    pub(crate) async fn store(
        &self,
        key: &CacheKey,
        policy: &Policy,
        bytes: &[u8],
        guard: Option<&[u64]>,
    ) -> Result<bool, CacheError> {
        let env = Envelope::parse(bytes)?;
        let keep = env.ttl() + env.stale_while_revalidate().max(env.stale_if_error());
        let tag_ids: Vec<String> = policy.tags.iter().map(|t| self.tag_id(t)).collect();
        let put = Put {
            key: key.as_str(),
            value: bytes,
            ttl: keep,
            tags: &tag_ids,
            guard,
        };
        let backend = &self.inner.backend;
        match self
            .call(self.deadline(), || backend.put(std::slice::from_ref(&put)))
            .await
        {
            Ok(stored) if stored.first() == Some(&true) => {
                self.inner.stats.record(key.resource(), |c| {
                    inc(&c.sets);
                    add(&c.bytes_written, bytes.len() as u64);
                });
                debug!(name: "cache_miss_stored", key = key.as_str(), size = bytes.len(), ttl_ms = duration_ms(env.ttl()), "value stored");
                Ok(true)
            }
            Ok(_) => {
                self.inner
                    .stats
                    .record(key.resource(), |c| inc(&c.rejected_fills));
                debug!(name: "cache_skip", key = key.as_str(), reason = "invalidated_during_load", "a tag was invalidated while loading; value not stored");
                Ok(false)
            }
            Err(e) => {
                self.inner.stats.record(key.resource(), |c| inc(&c.errors));
                warn!(name: "cache_store_error", key = key.as_str(), error = %e, "could not store value");
                Err(e)
            }
        }
    }

    pub(crate) fn tag_id(&self, tag: &str) -> String {
        let mut id = String::with_capacity(self.inner.tag_prefix.len() + tag.len());
        id.push_str(&self.inner.tag_prefix);
        id.push_str(&crate::key::sanitize_segment(tag));
        id
    }

    async fn acquire_lease(&self, key: &CacheKey) -> LeaseOutcome {
        let lock_key = format!("{}{}", self.inner.lock_prefix, key.as_str());
        let token = format!("{:016x}", fastrand::u64(..));
        let backend = &self.inner.backend;
        let s = &self.inner.settings;
        match self
            .call(self.deadline(), || {
                backend.try_lock(&lock_key, &token, s.lease_ttl)
            })
            .await
        {
            Ok(true) => {
                // Double-check: the previous holder may have stored the value and released the
                // lease between our miss and our lock.
                if let Ok(Some(bytes)) = self
                    .call(self.deadline(), || backend.get(key.as_str()))
                    .await
                {
                    if Envelope::parse(&bytes).is_ok_and(|env| env.age_at(now_ms()) < env.ttl()) {
                        let _ = self
                            .call(self.deadline(), || backend.unlock(&lock_key, &token))
                            .await;
                        return LeaseOutcome::FilledByOther(bytes);
                    }
                }
                return LeaseOutcome::Held(token);
            }
            Ok(false) => {}
            Err(_) => return LeaseOutcome::NotUsed,
        }
        // Another instance loads: wait a bounded time for its value.
        let until = Instant::now() + s.lease_wait;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < until {
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            match self
                .call(self.deadline(), || backend.get(key.as_str()))
                .await
            {
                Ok(Some(bytes)) => {
                    if let Ok(env) = Envelope::parse(&bytes) {
                        if env.age_at(now_ms()) < env.ttl() {
                            return LeaseOutcome::FilledByOther(bytes);
                        }
                    }
                }
                Ok(None) => {
                    // The holder may have crashed: try to take over its expired lease.
                    if let Ok(true) = self
                        .call(self.deadline(), || {
                            backend.try_lock(&lock_key, &token, s.lease_ttl)
                        })
                        .await
                    {
                        return LeaseOutcome::Held(token);
                    }
                }
                Err(_) => return LeaseOutcome::NotUsed,
            }
        }
        LeaseOutcome::NotUsed
    }

    async fn release_lease(&self, key: &CacheKey, token: &str) {
        let lock_key = format!("{}{}", self.inner.lock_prefix, key.as_str());
        let backend = &self.inner.backend;
        let _ = self
            .call(self.deadline(), || backend.unlock(&lock_key, token))
            .await;
    }
}

/// A loaded fragment ready to store: index, envelope, tag ids, expected tag versions.
type EncodedFragment = (usize, Vec<u8>, Vec<String>, Vec<u64>);

enum LeaseOutcome {
    NotUsed,
    Held(String),
    FilledByOther(Bytes),
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
