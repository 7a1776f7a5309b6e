//! Route analytics (feature `analytics`): what was requested, by whom (pseudonymously), how long
//! the handler took, and what the cache did, stored in bounded structures on Redis or in memory,
//! and queried per route over a window.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::analytics::{Event, Outcome, Window};
//! use cache_core::Cache;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder().namespace("docs").build().unwrap();
//! let analytics = cache.analytics();
//! let mut event = Event::new("GET", "/trigs/{id}", analytics.now_ms());
//! event.status = 200;
//! event.latency = Duration::from_millis(12);
//! event.outcome = Outcome::Miss;
//! event.bytes = 512;
//! event.user = Some(analytics.pseudonym("alice"));
//! analytics.record(event);
//! analytics.flush().await;
//!
//! let routes = analytics.routes(Window::FiveMinutes).await.unwrap();
//! assert_eq!(routes[0].route, "/trigs/{id}");
//! assert_eq!(routes[0].requests, 1);
//! assert_eq!(routes[0].distinct_users, 1);
//! # });
//! ```
//!
//! # Design
//! * **Recording is off the request path.** [`Analytics::record`] is synchronous and does one
//!   `try_send` on a bounded channel ([`CacheBuilder::analytics_queue`], default 8192): it never
//!   waits and never fails. When the channel is full the event is dropped and counted
//!   ([`AnalyticsStats::dropped`], and `cache_analytics_dropped_total` on the adapters' metrics
//!   routes). One background task per cache drains the channel, aggregates per route and minute
//!   for up to 200 ms (or 16 384 events, or until [`Analytics::flush`]), and writes the
//!   aggregate in one pipeline per hash slot: the store's cost is per route-minute and write,
//!   not per request. A store error drops that aggregate (counted in
//!   [`AnalyticsStats::write_errors`]).
//! * **Raw events are a sample.** The aggregates count every event; the raw stream keeps at most
//!   [`CacheBuilder::analytics_stream_rate`] events per second (default 200), enough to inspect
//!   recent traffic without paying a stream entry per request.
//! * **Routes, never paths.** The adapters' layers record the route template (`/trigs/{id}`),
//!   and [`UNMATCHED_ROUTE`] for requests no route matched, so bad input cannot grow the
//!   keyspace: the number of routes is bounded by the application's router.
//! * **Invalidations** are recorded in one place, the engine's invalidation path: every
//!   [`Cache::invalidate_tags`](crate::Cache::invalidate_tags), key delete and
//!   [`PendingInvalidation`](crate::PendingInvalidation) counts once per tag and per resource,
//!   from the moment the analytics are in use ([`Analytics::activate`]: an analytics layer was
//!   built or an event recorded); a cache whose analytics are unused writes nothing.
//!
//! # Storage shapes
//! Both stores keep the same shapes, with the same semantics (the same tests run on both):
//!
//! | shape | Redis | memory |
//! | --- | --- | --- |
//! | raw events | stream `{ns}:an:events`, `XADD MAXLEN ~ N` (about N: Redis trims whole nodes, up to 100 entries more) | ring of exactly N events |
//! | route index | sorted set `{ns}:an:routes`, `METHOD template` -> last minute | map keys |
//! | counters of a route-minute | hash `{ns}:an:{r.<id>}:m:<minute>` | map entry |
//! | distinct users of a route-minute | HyperLogLog `{ns}:an:{r.<id>}:u:<minute>` (±0.81 %) | set, exact up to 10 000 per minute |
//! | invalidations of a minute | hash `{ns}:an:{inv}:m:<minute>`, fields `t:<tag>`, `r:<resource>` | map |
//!
//! `<id>` is 16 hex digits of xxh3-64 of `METHOD template`; the braces are a Redis Cluster hash
//! tag, so a route's keys live on one node and its writes and reads are one pipeline there
//! (the stream, the index and the invalidation hashes are one key each). No `KEYS`, no `SCAN`.
//!
//! The counters of a route-minute are `n` (requests), `b` (response bytes), `e` (5xx responses),
//! `p` (responses marked `Cache-Control: private` or per-user), and per cache outcome `o:<outcome>`
//! (requests), `s:<outcome>` (latency sum, µs) and `h:<outcome>:<bucket>` (latency histogram).
//! Several instances writing the same minute add to the same counters with `HINCRBY`: the
//! aggregates merge **by construction**, with no read-modify-write and no per-instance fields.
//!
//! **The latency histogram** uses the DDSketch logarithmic mapping (bucket
//! `ceil(ln(µs) / ln γ)`, `γ = 1.02 / 0.98`: every quantile is within 2 % of a true value) with its
//! counts stored as those plain counters. Serialized sketches (`hdrhistogram`'s V2 format or a
//! DDSketch crate's encoding) would need either a read-modify-write per batch (a Lua script per
//! route-minute) or one field per instance merged on read, and bring a dependency for what is a
//! 20-line mapping; counters per bucket are what those sketches store anyway, and `HINCRBY` keeps
//! the merge exact and atomic across instances. A route's latencies typically fill a few dozen
//! buckets per outcome and minute.
//!
//! # Retention and memory cost
//! Minutes older than the retention ([`CacheBuilder::analytics_retention`],
//! `CACHE_ANALYTICS_RETENTION`, default 1 day) are dropped: on Redis each minute key expires
//! (`PEXPIREAT` at the end of its retention), in memory they are pruned on every write. The raw
//! stream is capped at [`CacheBuilder::analytics_stream_len`] (`CACHE_ANALYTICS_STREAM_LEN`,
//! default 10 000 events). Windows longer than the retention see only the retention.
//!
//! Measured on Redis 7.0 with `MEMORY USAGE` (test `two_instances::memory_usage_per_route_minute`
//! in `tests/tests/analytics.rs`: one route-minute of 1,000 requests, a quarter misses at
//! 20-117 ms and the rest hits at 0.2-3.2 ms, 50 users): the counters hash is 1,896 bytes (121
//! fields), the users HyperLogLog 296 bytes, **about 2.2 KB per route-minute**, so **about 3 MiB
//! per route per day** for a route busy in every minute (a narrower latency spread fills fewer
//! histogram buckets and costs less); a minute without traffic costs nothing. The stream costs
//! about 100 bytes per event (about 1 MiB for the default 10 000). The memory store keeps the
//! same counters in Rust maps (of the same order).
//!
//! # Privacy
//! The user of an event is a pseudonym: the first 16 bytes (hex) of HMAC-SHA256 of the
//! configured user extractor's value, keyed with a per-deployment key
//! ([`CacheBuilder::analytics_key`] or `CACHE_ANALYTICS_KEY`). Without one, each process draws a
//! random key from the operating system: pseudonyms are then stable for the life of the process
//! only, and instances count the same user as different users. Set the same key on every
//! instance to count users across them. The raw value (a token, a user id) is never stored,
//! logged or sent; neither are paths or query strings.
//!
//! # ACL
//! An ACL user limited with [`RedisBackend::acl_rules`](crate::backend::RedisBackend::acl_rules)
//! also needs [`ACL_COMMANDS`] for the analytics.

mod hist;
mod redis;
mod store;
mod timeline;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, Notify, OwnedRwLockWriteGuard, RwLock};
use tracing::warn;

pub(crate) use self::redis::{RedisStore, Source};
pub(crate) use self::store::MemoryStore;
use self::store::{Batch, RouteKey, Store};
pub use self::timeline::{RouteTimeline, Timeline, TimelinePoint};

#[allow(unused_imports)]
use crate::CacheBuilder;

/// The route label of requests no route matched (a 404 of the router, a fallback).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Commands the analytics run, to add to an ACL user's rules.
pub const ACL_COMMANDS: &str = "+xadd +xlen +xrevrange +hincrby +hsetnx +hgetall +pexpireat \
                                +pfadd +pfcount +zadd +zincrby +zrange +zremrangebyscore \
                                +zremrangebyrank +exists +unlink";

/// Largest number of messages the writer takes from the channel at once.
const BATCH: usize = 512;

/// What the cache did for a request, as the layers report it in `X-Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served from the cache, fresh.
    Hit,
    /// Looked up, not found (or unusable): the handler ran and the response was stored.
    Miss,
    /// Served from the cache past its TTL (stale-while-revalidate or stale-if-error).
    Stale,
    /// The client asked to bypass the cache.
    Bypass,
    /// Not cacheable (method, status, credentials, size): the cache stepped aside.
    Skip,
    /// No cache layer on this route.
    None,
}

impl Outcome {
    pub(crate) const COUNT: usize = 6;
    /// Every outcome, in index order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stale,
        Outcome::Bypass,
        Outcome::Skip,
        Outcome::None,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The short code stored (`hit`, `miss`, `stale`, `bypass`, `skip`, `none`).
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Bypass => "bypass",
            Outcome::Skip => "skip",
            Outcome::None => "none",
        }
    }

    /// The outcome of a code as [`code`](Self::code) writes it.
    pub fn from_code(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == code)
    }

    /// The outcome of an `X-Cache-Status` value (`HIT`, `MISS`, `STALE`, `BYPASS`, `SKIP`, case
    /// insensitive); [`Outcome::None`] for anything else.
    pub fn from_header(value: &[u8]) -> Outcome {
        let v = std::str::from_utf8(value).unwrap_or("").trim();
        Outcome::ALL
            .into_iter()
            .find(|o| *o != Outcome::None && o.code().eq_ignore_ascii_case(v))
            .unwrap_or(Outcome::None)
    }
}

/// One request, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The route template (`/trigs/{id}`), or [`UNMATCHED_ROUTE`]; never the raw path.
    pub route: String,
    /// The method (`GET`, ...).
    pub method: String,
    /// The pseudonymous user ([`Analytics::pseudonym`]), when the request had one.
    pub user: Option<String>,
    /// When the request started, milliseconds since the Unix epoch ([`Analytics::now_ms`]).
    pub start_ms: u64,
    /// The response status.
    pub status: u16,
    /// Time from the request entering the layer to the response head leaving it.
    pub latency: Duration,
    /// What the cache did.
    pub outcome: Outcome,
    /// Response body bytes (the body's size hint: exact for buffered bodies, the lower bound
    /// for streams).
    pub bytes: u64,
    /// The response was marked `Cache-Control: private`, or cached per user.
    pub private: bool,
    /// The request's path and query, for [`Analytics::top_targets`] (warming from
    /// analytics): kept only for responses the cache shared (a `GET` answered 2xx from or into
    /// the cache, not private); never in the raw stream. The layers set it only for such
    /// responses, and [`target_key`](Self::target_key) for every request.
    pub target: Option<String>,
    /// [`Analytics::target_key`] of the path and query: what distinct keys are counted by
    /// (with the user for private responses). When `None`, the writer hashes
    /// [`target`](Self::target).
    pub target_key: Option<u64>,
    /// The response's cache key (`X-Cache-Key`), for its resource name; never stored.
    pub cache_key: Option<String>,
}

impl Event {
    /// An event with status 200, zero latency and bytes, outcome [`Outcome::None`], no user.
    pub fn new(method: impl Into<String>, route: impl Into<String>, start_ms: u64) -> Event {
        Event {
            route: route.into(),
            method: method.into(),
            user: None,
            start_ms,
            status: 200,
            latency: Duration::ZERO,
            outcome: Outcome::None,
            bytes: 0,
            private: false,
            target: None,
            target_key: None,
            cache_key: None,
        }
    }

    /// Whether the response was one the cache shares: a `GET` answered 2xx from or into the
    /// cache (hit, stale or miss), not private. Only such targets are kept by name (set
    /// `status`, `outcome` and `private` first).
    pub fn shared_cacheable(&self) -> bool {
        self.method == "GET"
            && (200..300).contains(&self.status)
            && matches!(self.outcome, Outcome::Hit | Outcome::Miss | Outcome::Stale)
            && !self.private
    }
}

/// A query window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Window {
    /// The last 5 minutes (`5m`).
    #[serde(rename = "5m")]
    FiveMinutes,
    /// The last hour (`1h`).
    #[serde(rename = "1h")]
    Hour,
    /// The last day (`1d`).
    #[serde(rename = "1d")]
    Day,
}

impl Window {
    /// Its length in minutes.
    pub fn minutes(self) -> u64 {
        match self {
            Window::FiveMinutes => 5,
            Window::Hour => 60,
            Window::Day => 1440,
        }
    }

    /// `5m`, `1h` or `1d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::FiveMinutes => "5m",
            Window::Hour => "1h",
            Window::Day => "1d",
        }
    }

    /// The window of `5m`, `1h` or `1d`.
    pub fn parse(s: &str) -> Option<Window> {
        match s.trim() {
            "5m" => Some(Window::FiveMinutes),
            "1h" => Some(Window::Hour),
            "1d" => Some(Window::Day),
            _ => None,
        }
    }
}

/// Latency of one cache outcome of a route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OutcomeStats {
    /// The outcome.
    pub outcome: Outcome,
    /// Requests with this outcome.
    pub requests: u64,
    /// Mean latency (ms).
    pub mean_ms: f64,
    /// Median latency (ms, within 2 %).
    pub p50_ms: f64,
    /// 95th percentile latency (ms, within 2 %).
    pub p95_ms: f64,
    /// 99th percentile latency (ms, within 2 %).
    pub p99_ms: f64,
}

/// One route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouteStats {
    /// The method.
    pub method: String,
    /// The route template.
    pub route: String,
    /// Requests.
    pub requests: u64,
    /// Requests per second over the window.
    pub per_second: f64,
    /// Hits (fresh and stale) over lookups (hits, stale, misses); `None` without lookups.
    pub hit_rate: Option<f64>,
    /// Response bytes, in total.
    pub bytes_total: u64,
    /// Mean response bytes.
    pub bytes_mean: f64,
    /// 5xx responses.
    pub errors: u64,
    /// 5xx responses over requests.
    pub error_rate: f64,
    /// Latency over every outcome (the `outcome` field is [`Outcome::None`]).
    pub latency: OutcomeStats,
    /// Latency per cache outcome seen, in [`Outcome::ALL`] order.
    pub outcomes: Vec<OutcomeStats>,
    /// Distinct pseudonymous users (HyperLogLog on Redis, ±0.81 %).
    pub distinct_users: u64,
    /// Responses marked private or cached per user.
    pub private_responses: u64,
    /// Distinct request targets (path and query; with the user for private responses):
    /// the keys the route's responses spread over (HyperLogLog on Redis, ±0.81 %).
    pub distinct_keys: u64,
    /// The cache resources of the route's responses (from `X-Cache-Key`), most requested
    /// first; empty for routes the cache does not serve.
    pub resources: Vec<String>,
    /// Start of the first request of the window (ms since the epoch; to within a write batch,
    /// 200 ms, across instances): the counts were gathered from then to now.
    pub since_ms: u64,
}

impl RouteStats {
    /// The latency of one outcome, when seen.
    pub fn outcome(&self, outcome: Outcome) -> Option<&OutcomeStats> {
        self.outcomes.iter().find(|o| o.outcome == outcome)
    }

    /// Mean latency of misses (what a request costs without the cache), when seen.
    pub fn miss_latency_ms(&self) -> Option<f64> {
        self.outcome(Outcome::Miss).map(|o| o.mean_ms)
    }

    /// Mean latency of hits, when seen.
    pub fn hit_latency_ms(&self) -> Option<f64> {
        self.outcome(Outcome::Hit).map(|o| o.mean_ms)
    }
}

/// What an invalidation count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidationTarget {
    /// A tag ([`Cache::invalidate_tags`](crate::Cache::invalidate_tags)).
    Tag,
    /// The resource of a deleted key.
    Resource,
    /// Keys of a resource reached by tag invalidations: each invalidation counts the keys known
    /// to carry the tag (learnt from the tags this instance stored entries with), cached at that
    /// moment or not. Over a window, that count over the resource's keys is how often one of
    /// its keys is invalidated.
    Entries,
}

/// Invalidations of one tag or resource over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct InvalidationStats {
    /// Tag or resource.
    pub target: InvalidationTarget,
    /// Its name.
    pub name: String,
    /// Invalidations.
    pub count: u64,
    /// Invalidations per second over the window.
    pub per_second: f64,
    /// Mean interval between invalidations: the window over the count (an estimate from
    /// per-minute counts; `None` without invalidations).
    pub mean_interval_secs: Option<f64>,
    /// Minutes of the window with at least one.
    pub active_minutes: u64,
    /// Start of the last minute with one (ms since the epoch).
    pub last_minute_ms: u64,
}

/// A request target and how often it was requested ([`Analytics::top_targets`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TargetCount {
    /// Path and query, as requested.
    pub target: String,
    /// Requests in the window (a lower bound; see [`Analytics::top_targets`]).
    pub requests: u64,
}

/// Counters of the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AnalyticsStats {
    /// Events and invalidations accepted by the channel.
    pub accepted: u64,
    /// Of those, written (or given up after a store error).
    pub written: u64,
    /// Dropped because the channel was full.
    pub dropped: u64,
    /// Batches the store refused.
    pub write_errors: u64,
}

/// What the store holds now (for checking its bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StorageUsage {
    /// Raw events (stream length).
    pub raw_events: u64,
    /// Routes in the index.
    pub routes: u64,
    /// Route-minute counter buckets.
    pub route_minutes: u64,
    /// Minutes with invalidation counts.
    pub invalidation_minutes: u64,
}

/// Settings of the analytics, from the builder.
#[derive(Clone)]
pub(crate) struct AnalyticsSettings {
    pub(crate) retention: Duration,
    pub(crate) stream_len: usize,
    pub(crate) queue: usize,
    pub(crate) stream_rate: u64,
    pub(crate) key: Option<Arc<[u8]>>,
}

impl fmt::Debug for AnalyticsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsSettings")
            .field("retention", &self.retention)
            .field("stream_len", &self.stream_len)
            .field("queue", &self.queue)
            .field("stream_rate", &self.stream_rate)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            retention: Duration::from_secs(24 * 3600),
            stream_len: 10_000,
            queue: 8192,
            stream_rate: 200,
            key: None,
        }
    }
}

impl AnalyticsSettings {
    pub(crate) fn retention_minutes(&self) -> u64 {
        self.retention.as_secs().div_ceil(60).max(1)
    }
}

enum Msg {
    Request(Event),
    Invalidation {
        at_ms: u64,
        tags: Vec<String>,
        /// The tags' ids, as [`Msg::Stored`] carries them.
        tag_ids: Vec<String>,
        resources: Vec<String>,
    },
    /// An entry was stored with these tags (their ids).
    Stored {
        resource: String,
        key_hash: u64,
        tags: Vec<String>,
    },
}

struct Shared {
    store: Arc<dyn Store>,
    retention_min: u64,
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    /// Wakes `flush` callers after each batch.
    progress: Notify,
    /// Asks the writer to write what it aggregated now.
    flush_now: Notify,
    /// Raw events written per second at most.
    stream_rate: u64,
    /// Held for reading by the writer around each store write; tests hold it for writing to
    /// stall the writer.
    gate: Arc<RwLock<()>>,
    /// Set by the first recorded event or [`Analytics::activate`]: invalidations are counted
    /// from then on (a cache whose analytics are unused writes nothing).
    active: AtomicBool,
    /// Added to the wall clock (tests move the analytics clock forward).
    offset_ms: AtomicI64,
    error_logged: AtomicBool,
    /// Seed of the keyed hash of request targets (derived from the deployment key).
    key_seed: u64,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (wall + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    /// The writer was spawned (`rx` taken).
    started: AtomicBool,
    shared: Arc<Shared>,
    mac: Hmac<Sha256>,
}

/// The analytics of a cache: record events, query aggregates. Obtain it with
/// [`Cache::analytics`](crate::Cache::analytics); cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Analytics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analytics")
            .field("store", &self.inner.shared.store)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The writer stalled by [`Analytics::hold_writer`] until this is dropped.
#[derive(Debug)]
#[doc(hidden)]
pub struct WriterHold(#[allow(dead_code)] OwnedRwLockWriteGuard<()>);

impl Analytics {
    pub(crate) fn new(settings: &AnalyticsSettings, store: Arc<dyn Store>) -> Analytics {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let key: Arc<[u8]> = settings.key.clone().unwrap_or_else(|| {
            let mut k = [0u8; 32];
            if getrandom::getrandom(&mut k).is_err() {
                // No OS randomness: fall back on the std hasher's random keys.
                use std::hash::{BuildHasher, Hasher};
                for (i, chunk) in k.chunks_mut(8).enumerate() {
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_usize(i);
                    chunk.copy_from_slice(&h.finish().to_le_bytes());
                }
            }
            Arc::from(&k[..])
        });
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let key_seed = {
            let mut m = mac.clone();
            m.update(b"annocache analytics target keys");
            let out = m.finalize().into_bytes();
            let mut b = [0u8; 8];
            b.copy_from_slice(&out[..8]);
            u64::from_le_bytes(b)
        };
        Analytics {
            inner: Arc::new(Inner {
                tx,
                rx: Mutex::new(Some(rx)),
                started: AtomicBool::new(false),
                shared: Arc::new(Shared {
                    store,
                    retention_min: settings.retention_minutes(),
                    accepted: AtomicU64::new(0),
                    written: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    write_errors: AtomicU64::new(0),
                    progress: Notify::new(),
                    flush_now: Notify::new(),
                    stream_rate: settings.stream_rate,
                    gate: Arc::new(RwLock::new(())),
                    active: AtomicBool::new(false),
                    offset_ms: AtomicI64::new(0),
                    error_logged: AtomicBool::new(false),
                    key_seed,
                }),
                mac,
            }),
        }
    }

    /// The in-memory store with these settings.
    pub(crate) fn memory(settings: &AnalyticsSettings) -> Analytics {
        Analytics::new(
            settings,
            Arc::new(MemoryStore::new(
                settings.stream_len,
                settings.retention_minutes(),
            )),
        )
    }

    /// The analytics clock: the wall clock in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.shared.now_ms()
    }

    /// The keyed hash of a request's path and query ([`Event::target_key`]): xxh3-64 seeded
    /// from the deployment key, so the same target gives the same key on every instance that
    /// shares the key, and targets cannot be read back from what is stored.
    pub fn target_key(&self, path_and_query: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(path_and_query.as_bytes(), self.inner.shared.key_seed)
    }

    /// The pseudonym of a user: 32 hex digits of HMAC-SHA256 of `user` with the deployment key.
    pub fn pseudonym(&self, user: &str) -> String {
        let mut mac = self.inner.mac.clone();
        mac.update(user.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut s = String::with_capacity(32);
        for b in &out[..16] {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Records an event: never waits, never fails. When the channel is full, the event is
    /// dropped and counted.
    pub fn record(&self, event: Event) {
        self.activate();
        self.send(Msg::Request(event));
    }

    /// Starts counting invalidations (the layers call this when built; the first
    /// [`record`](Self::record) does too). Until then a cache whose analytics are unused
    /// writes nothing for them.
    pub fn activate(&self) {
        if !self.inner.shared.active.load(Ordering::Relaxed) {
            self.inner.shared.active.store(true, Ordering::Relaxed);
        }
    }

    /// Records an invalidation (the engine calls this; see the module docs).
    /// `tag_id` maps a tag to the id entries were stored with ([`record_store`](Self::record_store)).
    pub(crate) fn record_invalidation(
        &self,
        tags: &[String],
        keys: &[crate::CacheKey],
        tag_id: impl Fn(&str) -> String,
    ) {
        if (tags.is_empty() && keys.is_empty()) || !self.inner.shared.active.load(Ordering::Relaxed)
        {
            return;
        }
        self.send(Msg::Invalidation {
            at_ms: self.now_ms(),
            tags: tags.to_vec(),
            tag_ids: tags.iter().map(|t| tag_id(t)).collect(),
            resources: keys.iter().map(|k| k.resource().to_owned()).collect(),
        });
    }

    /// Records that an entry was stored with `tags` (the engine calls this on stores, once the
    /// analytics are in use): the writer learns which keys of which resources a tag's
    /// invalidation reaches.
    pub(crate) fn record_store(&self, key: &crate::CacheKey, tags: &[String]) {
        if tags.is_empty() || !self.inner.shared.active.load(Ordering::Relaxed) {
            return;
        }
        self.send(Msg::Stored {
            resource: key.resource().to_owned(),
            key_hash: xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()),
            tags: tags.to_vec(),
        });
    }

    fn send(&self, msg: Msg) {
        self.start();
        let s = &self.inner.shared;
        match self.inner.tx.try_send(msg) {
            Ok(()) => {
                s.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts the writer, once, when called inside a Tokio runtime.
    fn start(&self) {
        // The request path's cost once the writer runs: one relaxed load.
        if self.inner.started.load(Ordering::Relaxed) {
            return;
        }
        let mut slot = self.inner.rx.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(rx) = slot.take() else { return };
        self.inner.started.store(true, Ordering::Relaxed);
        drop(slot);
        handle.spawn(writer(rx, self.inner.shared.clone()));
    }

    /// The recorder's counters.
    pub fn stats(&self) -> AnalyticsStats {
        let s = &self.inner.shared;
        AnalyticsStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            write_errors: s.write_errors.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything accepted before this call is written (or given up after a store
    /// error).
    pub async fn flush(&self) {
        self.start();
        let s = &self.inner.shared;
        let target = s.accepted.load(Ordering::Acquire);
        loop {
            let notified = s.progress.notified();
            if s.written.load(Ordering::Acquire) >= target {
                return;
            }
            s.flush_now.notify_one();
            notified.await;
        }
    }

    /// Per-route aggregates over `window`, most requested first.
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn routes(&self, window: Window) -> Result<Vec<RouteStats>, crate::CacheError> {
        let (from, to, secs) = self.range(window);
        let raw = self.inner.shared.store.routes(from, to).await?;
        let mut out: Vec<RouteStats> = raw.into_iter().map(|r| route_stats(&r, secs)).collect();
        out.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.route.cmp(&b.route))
                .then_with(|| a.method.cmp(&b.method))
        });
        Ok(out)
    }

    /// Invalidations per tag and per resource over `window`, most frequent first.
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn invalidations(
        &self,
        window: Window,
    ) -> Result<Vec<InvalidationStats>, crate::CacheError> {
        let (from, to, secs) = self.range(window);
        let raw = self.inner.shared.store.invalidations(from, to).await?;
        let mut out = Vec::new();
        for (field, minutes) in raw {
            let (target, name) = match field.split_once(':') {
                Some(("t", n)) => (InvalidationTarget::Tag, n),
                Some(("r", n)) => (InvalidationTarget::Resource, n),
                Some(("e", n)) => (InvalidationTarget::Entries, n),
                _ => continue,
            };
            let count: u64 = minutes.iter().map(|(_, n)| n).sum();
            if count == 0 {
                continue;
            }
            out.push(InvalidationStats {
                target,
                name: name.to_owned(),
                count,
                per_second: count as f64 / secs,
                mean_interval_secs: Some(secs / count as f64),
                active_minutes: minutes.iter().filter(|(_, n)| *n > 0).count() as u64,
                last_minute_ms: minutes.iter().map(|(m, _)| m * 60_000).max().unwrap_or(0),
            });
        }
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The most requested targets (path and query) of a route over `window` among the
    /// responses the cache shared (a `GET` answered 2xx from or into the cache, not private),
    /// most requested first, at most `limit`. Kept per route and hour, the 256 most requested
    /// of each hour: counts are exact for targets that stayed in that top, a lower bound for
    /// the others. What the adapters' `warm_from_analytics`
    /// replays (through [`warm_targets`](Self::warm_targets)).
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn top_targets(
        &self,
        method: &str,
        route: &str,
        window: Window,
        limit: usize,
    ) -> Result<Vec<TargetCount>, crate::CacheError> {
        let (from, to, _) = self.range(window);
        let key = RouteKey {
            method: method.to_owned(),
            route: route.to_owned(),
        };
        let top = self
            .inner
            .shared
            .store
            .top_targets(&key, from, to, limit)
            .await?;
        Ok(top
            .into_iter()
            .map(|(target, requests)| TargetCount { target, requests })
            .collect())
    }

    /// The requests to replay to warm the response caches from the analytics: for each `GET`
    /// route the cache served in `window` (it had hits or misses), its `per_route` most
    /// requested shared targets ([`top_targets`](Self::top_targets)), busiest routes first.
    /// The adapters' `warm_from_analytics` replay them through the service.
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn warm_targets(
        &self,
        window: Window,
        per_route: usize,
    ) -> Result<Vec<String>, crate::CacheError> {
        let mut out = Vec::new();
        for r in self.routes(window).await? {
            if r.method != "GET" || r.hit_rate.is_none() {
                continue;
            }
            for t in self.top_targets("GET", &r.route, window, per_route).await? {
                out.push(t.target);
            }
        }
        Ok(out)
    }

    /// What the advisor reads of each `GET` route over `window` (see [`crate::advisor`]):
    /// requests and the time they were observed over, miss (or uncached) and hit latency
    /// (p50), distinct keys, mean size, how often one of its entries is invalidated, and
    /// whether its responses are per user.
    ///
    /// A route's invalidation rate comes from its cache resource (the most requested of
    /// [`RouteStats::resources`]): the keys of that resource reached by invalidations in the
    /// window ([`InvalidationTarget::Entries`] and [`InvalidationTarget::Resource`]), over its
    /// distinct keys and the time. A route the cache does not serve yet has no resource, and
    /// its rate is unknown (`None`).
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn observations(
        &self,
        window: Window,
    ) -> Result<Vec<crate::advisor::RouteObservation>, crate::CacheError> {
        let routes = self.routes(window).await?;
        let invalidations = self.invalidations(window).await?;
        let (now_ms, window_secs) = (self.now_ms(), self.range(window).2);
        let mut reached: HashMap<&str, u64> = HashMap::new();
        for i in &invalidations {
            if matches!(
                i.target,
                InvalidationTarget::Entries | InvalidationTarget::Resource
            ) {
                *reached.entry(i.name.as_str()).or_default() += i.count;
            }
        }
        Ok(routes
            .iter()
            .filter(|r| r.method == "GET" && r.route != UNMATCHED_ROUTE)
            .filter_map(|r| {
                let miss = r
                    .outcome(Outcome::Miss)
                    .or_else(|| r.outcome(Outcome::None))
                    .or_else(|| r.outcome(Outcome::Skip))
                    .or_else(|| r.outcome(Outcome::Bypass))?;
                let keys = r.distinct_keys.max(1);
                let secs =
                    (now_ms.saturating_sub(r.since_ms) as f64 / 1000.0).clamp(1.0, window_secs);
                let per_key = r.resources.first().map(|res| {
                    reached.get(res.as_str()).copied().unwrap_or(0) as f64 / keys as f64 / secs
                });
                Some(crate::advisor::RouteObservation {
                    route: format!("{} {}", r.method, r.route),
                    requests: r.requests,
                    window: Duration::from_secs_f64(secs),
                    miss_latency_ms: miss.p50_ms,
                    hit_latency_ms: r.outcome(Outcome::Hit).map(|h| h.p50_ms),
                    distinct_keys: keys,
                    mean_bytes: r.bytes_mean,
                    key_invalidations_per_s: per_key,
                    differs_per_user: r.private_responses * 2 > r.requests,
                    observed_hit_rate: r.hit_rate,
                })
            })
            .collect())
    }

    /// The advisor's ranking of the `GET` routes observed over `window`: [`observations`]
    /// through [`advise`](crate::advisor::advise).
    ///
    /// [`observations`]: Self::observations
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn advise(
        &self,
        window: Window,
        settings: &crate::advisor::AdvisorSettings,
    ) -> Result<Vec<crate::advisor::Suggestion>, crate::CacheError> {
        Ok(crate::advisor::advise(
            &self.observations(window).await?,
            settings,
        ))
    }

    /// The most recent raw events, newest first.
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<Event>, crate::CacheError> {
        self.inner.shared.store.recent(limit).await
    }

    /// What the store holds now.
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn storage_usage(&self) -> Result<StorageUsage, crate::CacheError> {
        self.inner.shared.store.usage(self.now_ms() / 60_000).await
    }

    /// The minutes of a window (clamped to the retention) and its length in seconds.
    fn range(&self, window: Window) -> (u64, u64, f64) {
        let now = self.now_ms() / 60_000;
        let minutes = window.minutes().min(self.inner.shared.retention_min + 1);
        let from = now.saturating_sub(minutes - 1);
        (from, now, (minutes * 60) as f64)
    }

    /// Stalls the writer until the returned guard is dropped (tests).
    #[doc(hidden)]
    pub async fn hold_writer(&self) -> WriterHold {
        WriterHold(self.inner.shared.gate.clone().write_owned().await)
    }

    /// Moves the analytics clock forward (tests of the retention).
    #[doc(hidden)]
    pub fn advance_clock(&self, by: Duration) {
        self.inner
            .shared
            .offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

fn outcome_stats(outcome: Outcome, n: u64, sum_us: u64, h: &hist::Histogram) -> OutcomeStats {
    let q = |q: f64| h.quantile(q).unwrap_or(0.0) / 1000.0;
    OutcomeStats {
        outcome,
        requests: n,
        mean_ms: if n == 0 {
            0.0
        } else {
            sum_us as f64 / n as f64 / 1000.0
        },
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
    }
}

fn route_stats(w: &store::RouteWindow, secs: f64) -> RouteStats {
    let (key, agg, users) = (&w.key, &w.agg, w.users);
    let mut resources: Vec<(&String, &u64)> = agg.resources.iter().collect();
    resources.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut all = hist::Histogram::default();
    let mut outcomes = Vec::new();
    for o in Outcome::ALL {
        let i = o.index();
        all.merge(&agg.hist[i]);
        if agg.outcomes[i] > 0 {
            outcomes.push(outcome_stats(
                o,
                agg.outcomes[i],
                agg.latency_sum_us[i],
                &agg.hist[i],
            ));
        }
    }
    let sum: u64 = agg.latency_sum_us.iter().sum();
    let c = |o: Outcome| agg.outcomes[o.index()];
    let lookups = c(Outcome::Hit) + c(Outcome::Stale) + c(Outcome::Miss);
    let n = agg.requests;
    RouteStats {
        method: key.method.clone(),
        route: key.route.clone(),
        requests: n,
        per_second: n as f64 / secs,
        hit_rate: (lookups > 0)
            .then(|| (c(Outcome::Hit) + c(Outcome::Stale)) as f64 / lookups as f64),
        bytes_total: agg.bytes,
        bytes_mean: if n == 0 {
            0.0
        } else {
            agg.bytes as f64 / n as f64
        },
        errors: agg.errors,
        error_rate: if n == 0 {
            0.0
        } else {
            agg.errors as f64 / n as f64
        },
        latency: outcome_stats(Outcome::None, n, sum, &all),
        outcomes,
        distinct_users: users,
        private_responses: agg.private,
        distinct_keys: w.keys,
        resources: resources.into_iter().map(|(r, _)| r.clone()).collect(),
        since_ms: agg.first_ms,
    }
}

/// How long the writer aggregates before it writes (unless [`MAX_PENDING`] events or a
/// [`Analytics::flush`] come first).
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's pause after taking less than a full batch from the channel.
const PACE: Duration = Duration::from_millis(5);

/// Events aggregated at most before a write.
const MAX_PENDING: u64 = 16_384;

/// What the writer aggregated since its last write.
struct Pending {
    batch: Batch,
    /// Messages absorbed (written counts them).
    count: u64,
    /// Since when (`None`: nothing pending).
    since: Option<tokio::time::Instant>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            batch: Batch::default(),
            count: 0,
            since: None,
        }
    }
}

/// The raw events' rate limit: a token bucket of `rate` tokens per second.
struct Sampler {
    rate: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl Sampler {
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Tag-index capacity: keys remembered (beyond it the index starts again).
const TAG_INDEX_MAX: usize = 100_000;

/// Which keys carry a tag, per resource, learnt from this instance's stores (tag -> resource ->
/// hashes of the keys stored with it, and key -> its tags), so that an invalidation of the tag
/// counts the keys of each resource it reaches: whether they were cached at that moment or not
/// (a key whose entry is rarely present is still invalidated as often). A key stored again
/// with other tags moves; everything is forgotten when the index is full.
#[derive(Default)]
struct TagIndex {
    tags: HashMap<String, HashMap<String, HashSet<u64>>>,
    keys: HashMap<u64, (String, Vec<String>)>,
}

impl TagIndex {
    fn stored(&mut self, resource: &str, key_hash: u64, tags: Vec<String>) {
        if self.keys.len() >= TAG_INDEX_MAX && !self.keys.contains_key(&key_hash) {
            self.tags.clear();
            self.keys.clear();
        }
        self.forget(key_hash);
        for t in &tags {
            self.tags
                .entry(t.clone())
                .or_default()
                .entry(resource.to_owned())
                .or_default()
                .insert(key_hash);
        }
        self.keys.insert(key_hash, (resource.to_owned(), tags));
    }

    /// Removes a key from every tag it was stored with.
    fn forget(&mut self, key_hash: u64) {
        let Some((resource, tags)) = self.keys.remove(&key_hash) else {
            return;
        };
        for t in tags {
            if let Some(resources) = self.tags.get_mut(&t) {
                if let Some(keys) = resources.get_mut(&resource) {
                    keys.remove(&key_hash);
                    if keys.is_empty() {
                        resources.remove(&resource);
                    }
                }
                if resources.is_empty() {
                    self.tags.remove(&t);
                }
            }
        }
    }

    /// The keys per resource an invalidation of `tags` reaches (each key once).
    fn invalidated(&self, tags: &[String]) -> BTreeMap<String, u64> {
        let mut reached: HashMap<&str, HashSet<u64>> = HashMap::new();
        for t in tags {
            if let Some(resources) = self.tags.get(t) {
                for (r, keys) in resources {
                    reached.entry(r.as_str()).or_default().extend(keys);
                }
            }
        }
        reached
            .into_iter()
            .map(|(r, keys)| (r.to_owned(), keys.len() as u64))
            .collect()
    }
}

/// The writer's state besides what is pending.
struct WriterState {
    sampler: Sampler,
    tags: TagIndex,
    key_seed: u64,
}

/// The keyed hash of a request target (with the user for private responses): the element of
/// the distinct-keys HyperLogLog.
fn key_element(seed: u64, e: &Event) -> Option<u64> {
    let key = match (e.target_key, e.target.as_deref()) {
        (Some(k), _) => k,
        (None, Some(t)) => xxhash_rust::xxh3::xxh3_64_with_seed(t.as_bytes(), seed),
        (None, None) => return None,
    };
    Some(match (&e.user, e.private) {
        (Some(u), true) => xxhash_rust::xxh3::xxh3_64_with_seed(u.as_bytes(), key),
        _ => key,
    })
}

fn absorb(p: &mut Pending, msgs: &mut Vec<Msg>, oldest: u64, st: &mut WriterState) {
    p.count += msgs.len() as u64;
    if p.since.is_none() {
        p.since = Some(tokio::time::Instant::now());
    }
    for msg in msgs.drain(..) {
        match msg {
            Msg::Request(mut e) => {
                let minute = e.start_ms / 60_000;
                if minute < oldest {
                    continue;
                }
                let keep = st.sampler.take();
                let element = key_element(st.key_seed, &e);
                let target = if e.shared_cacheable() {
                    e.target.take()
                } else {
                    None
                };
                e.target = None;
                let users = e.user.clone();
                let agg = |key: RouteKey, e: &Event| {
                    let slot = p.batch.routes.entry((key, minute)).or_default();
                    slot.agg.add(e);
                    if let Some(u) = users {
                        slot.users.insert(u);
                    }
                    if let Some(k) = element {
                        slot.keys.insert(k);
                    }
                    if let Some(t) = target {
                        *slot.targets.entry(t).or_default() += 1;
                    }
                };
                if keep {
                    let key = RouteKey {
                        method: e.method.clone(),
                        route: e.route.clone(),
                    };
                    agg(key, &e);
                    e.cache_key = None;
                    e.target_key = None;
                    p.batch.events.push(e);
                } else {
                    let key = RouteKey {
                        method: std::mem::take(&mut e.method),
                        route: std::mem::take(&mut e.route),
                    };
                    agg(key, &e);
                }
            }
            Msg::Stored {
                resource,
                key_hash,
                tags,
            } => st.tags.stored(&resource, key_hash, tags),
            Msg::Invalidation {
                at_ms,
                tags,
                tag_ids,
                resources,
            } => {
                let fields = p.batch.invalidations.entry(at_ms / 60_000).or_default();
                let tags: BTreeSet<String> = tags.into_iter().collect();
                for (r, n) in st.tags.invalidated(&tag_ids) {
                    *fields.entry(format!("e:{r}")).or_default() += n;
                }
                for t in tags {
                    *fields.entry(format!("t:{t}")).or_default() += 1;
                }
                let resources: BTreeSet<String> = resources.into_iter().collect();
                for r in resources {
                    *fields.entry(format!("r:{r}")).or_default() += 1;
                }
            }
        }
    }
}

async fn write(shared: &Shared, p: &mut Pending, now_min: u64) {
    let pending = std::mem::replace(p, Pending::new());
    if pending.count == 0 {
        return;
    }
    let offset = shared.offset_ms.load(Ordering::Relaxed);
    match shared.store.write(&pending.batch, now_min, offset).await {
        Ok(()) => shared.error_logged.store(false, Ordering::Relaxed),
        Err(e) => {
            shared.write_errors.fetch_add(1, Ordering::Relaxed);
            if !shared.error_logged.swap(true, Ordering::Relaxed) {
                warn!(name: "cache_analytics_write_failed", event = "cache_analytics_write_failed", error = %e, events = pending.count, "analytics batch not stored");
            }
        }
    }
    shared.written.fetch_add(pending.count, Ordering::Release);
    shared.progress.notify_waiters();
}

/// The writer task: aggregates what the channel brings for up to [`INTERVAL`] (or
/// [`MAX_PENDING`] events, or until a flush is asked for), writes it in one go, and ends when
/// every sender is gone.
async fn writer(mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut pending = Pending::new();
    let mut st = WriterState {
        sampler: Sampler {
            rate: shared.stream_rate as f64,
            tokens: shared.stream_rate as f64,
            at: std::time::Instant::now(),
        },
        tags: TagIndex::default(),
        key_seed: shared.key_seed,
    };
    let mut paced = false;
    loop {
        // After a partial take, let the channel fill for a moment: one wake-up per PACE under
        // load instead of one per event (a flush cuts the wait short).
        let mut asked = false;
        if paced {
            tokio::select! {
                () = tokio::time::sleep(PACE) => {}
                () = shared.flush_now.notified() => asked = true,
            }
        }
        let deadline = pending.since.map(|t| t + INTERVAL);
        let (received, flush) = if asked {
            (0, true)
        } else {
            tokio::select! {
                n = rx.recv_many(&mut msgs, BATCH) => (n, false),
                () = shared.flush_now.notified() => (0, true),
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => (0, true),
            }
        };
        paced = received > 0 && received < BATCH;
        let closed = received == 0 && !flush;
        // Tests stall the writer here (`hold_writer`): it then takes nothing more from the
        // channel.
        let _open = shared.gate.read().await;
        if flush {
            while let Ok(m) = rx.try_recv() {
                msgs.push(m);
            }
        }
        let now_min = shared.now_ms() / 60_000;
        let oldest = now_min.saturating_sub(shared.retention_min);
        if !msgs.is_empty() {
            absorb(&mut pending, &mut msgs, oldest, &mut st);
        }
        if flush || closed || pending.count >= MAX_PENDING {
            write(&shared, &mut pending, now_min).await;
        }
        if closed {
            return;
        }
    }
}
