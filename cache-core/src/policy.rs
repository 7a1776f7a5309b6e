//! Per-call caching policy and the outcome of a read-through.

use std::time::Duration;

/// How one read-through call caches: TTL, tags, stale windows, lease, early refresh, bypass.
///
/// A plain [`Duration`] converts into a policy with just that TTL.
///
/// ```
/// use std::time::Duration;
/// use cache_core::Policy;
///
/// let policy = Policy::ttl(Duration::from_secs(3600))
///     .tag("trig:123")
///     .tag("trigs:list")
///     .stale_while_revalidate(Duration::from_secs(60))
///     .stale_if_error(Duration::from_secs(600))
///     .lease(true);
/// assert_eq!(policy.tags_ref(), ["trig:123", "trigs:list"]);
/// ```
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) lease: bool,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) bypass: bool,
}

impl Policy {
    /// The cache's defaults (default TTL, no tags, no stale windows).
    pub fn new() -> Policy {
        Policy::default()
    }

    /// A policy with this TTL.
    pub fn ttl(ttl: Duration) -> Policy {
        Policy {
            ttl: Some(ttl),
            ..Policy::default()
        }
    }

    /// Sets the TTL (`None`: the cache's default).
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Policy {
        self.ttl = ttl;
        self
    }

    /// Adds a tag; [`Cache::invalidate_tags`](crate::Cache::invalidate_tags) with it removes the entry.
    pub fn tag(mut self, tag: impl Into<String>) -> Policy {
        self.tags.push(tag.into());
        self
    }

    /// Adds several tags.
    pub fn tags<I, S>(mut self, tags: I) -> Policy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// After the TTL, serve the stale value for this long while one refresh runs.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Policy {
        self.stale_while_revalidate = window;
        self
    }

    /// After the TTL, serve the stale value for this long when the loader fails.
    pub fn stale_if_error(mut self, window: Duration) -> Policy {
        self.stale_if_error = window;
        self
    }

    /// Take a cross-instance lease before loading, so only one instance runs the loader.
    pub fn lease(mut self, on: bool) -> Policy {
        self.lease = on;
        self
    }

    /// Probabilistic early refresh (XFetch) with this `beta` (1.0 is the usual choice; larger
    /// refreshes earlier). Uses the loader time measured when the entry was stored.
    pub fn early_refresh(mut self, beta: f64) -> Policy {
        self.early_refresh = (beta > 0.0 && beta.is_finite()).then_some(beta);
        self
    }

    /// Skip the lookup, run the loader and store its value (an HTTP `Cache-Control: no-cache`).
    pub fn bypass(mut self, on: bool) -> Policy {
        self.bypass = on;
        self
    }

    /// The tags.
    pub fn tags_ref(&self) -> &[String] {
        &self.tags
    }

    /// The TTL, if set.
    pub fn ttl_ref(&self) -> Option<Duration> {
        self.ttl
    }
}

impl From<Duration> for Policy {
    fn from(ttl: Duration) -> Policy {
        Policy::ttl(ttl)
    }
}

impl From<Option<Duration>> for Policy {
    fn from(ttl: Option<Duration>) -> Policy {
        Policy::default().with_ttl(ttl)
    }
}

impl From<&Policy> for Policy {
    fn from(p: &Policy) -> Policy {
        p.clone()
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum CacheStatus {
    /// Served fresh from the cache.
    Hit,
    /// Served from the cache past its TTL (stale-while-revalidate or stale-if-error).
    Stale,
    /// Loaded (and stored when possible).
    Miss,
    /// The lookup was skipped on request; loaded and stored.
    Bypass,
    /// The cache was disabled or unavailable; loaded, not stored.
    Skip,
}

impl CacheStatus {
    /// The `X-Cache-Status` header value: `HIT`, `STALE`, `MISS`, `BYPASS`, `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Stale => "STALE",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Skip => "SKIP",
        }
    }

    /// Whether the value was served from the cache (fresh or stale).
    pub fn is_from_cache(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::Stale)
    }
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value with its read-through outcome.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub status: CacheStatus,
    /// Age of the cached entry (zero when just loaded).
    pub age: Duration,
    /// Remaining fresh lifetime (the full TTL when just stored; zero when stale or not stored).
    pub ttl: Duration,
    /// Strong ETag of the encoded value, when known.
    pub etag: Option<u64>,
    /// Which tier served it (`None` when it was loaded).
    pub tier: Option<Tier>,
}

/// Which tier served a hit: the in-process tier or the shared backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// The in-process tier ([`CacheBuilder::l1`](crate::CacheBuilder::l1)): no round trip.
    L1,
    /// The shared backend (Redis, Redis Cluster, or the memory backend).
    Redis,
}

impl Tier {
    /// The `X-Cache-Tier` header value: `l1` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::Redis => "redis",
        }
    }
}

impl<T> Fetched<T> {
    pub(crate) fn new(value: T, status: CacheStatus) -> Fetched<T> {
        Fetched {
            value,
            status,
            age: Duration::ZERO,
            ttl: Duration::ZERO,
            etag: None,
            tier: None,
        }
    }

    /// Maps the value, keeping the outcome.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fetched<U> {
        Fetched {
            value: f(self.value),
            status: self.status,
            age: self.age,
            ttl: self.ttl,
            etag: self.etag,
            tier: self.tier,
        }
    }
}
