//! The randomized concurrent consistency checker shared by `tests/consistency.rs` (a bounded run
//! per backend, with and without L1, asserted) and `benches/consistency.rs` (100k operations per
//! variant, a table).
//!
//! The database is the truth: an in-process map `id -> version` behind a lock. A **write** bumps
//! the version of an id (the commit), invalidates the tag `item:{id}` through one of the caches
//! (`invalidate_tags`, or `defer()` + `tag()` + `commit()`), and once the invalidation has
//! returned records `invalidated_upto[id] = max(.., version written)`. A **read** snapshots
//! `must_see = invalidated_upto[id]` when it starts, then reads through one of the caches and one
//! of the read paths ([`Method`]); the value it returns must be `>= must_see`, otherwise it is a
//! **stale read**: a value the cache was told to forget before the read began. Half the writes
//! are followed by a read of the same id on the same instance (the task's next operation): the
//! "read my own write" case, right after the invalidation returned.
//!
//! Loaders read the database without holding the lock across an await, and yield or sleep a
//! random 0..2 ms before and after reading, to widen race windows. Every entry is tagged
//! `item:{id}` and lives an hour, so only invalidation removes entries.
//!
//! **Who made a read stale.** Every invalidation that returned is logged per id with the
//! instance it was made on (the index of the cache) and the instant it returned. A stale read
//! that returned `v` is blamed on the invalidations of a version above `v` that had returned
//! before the read began. It is a **same-instance** stale read when one of them was made on the
//! reading instance (read your writes is broken: never allowed, with or without L1); otherwise a
//! **cross-instance** one, whose *delay* is how long after the earliest of them returned the read
//! began. Without L1 every stale read is a bug. With L1 (the `l1` variants), another instance may
//! serve the old value from its L1 until the invalidation's notice reached it: cross-instance
//! stale reads are allowed within the propagation delay, and their delays are its distribution
//! as the readers saw it.
//!
//! **Stale after the notice was applied.** With [`NoticeCounter`] around each instance's backend
//! (one storage that delivers the notices of one channel in publication order: one
//! `redis-server`, or a `MemoryBackend`; not a cluster, whose nodes forward each other's
//! messages in no common order), the checker also tells whether a cross-instance stale read began
//! after the reading instance had applied the notice of an invalidation it missed. Every
//! invalidation call is counted before it starts; when one returns, `published_upto` = that count
//! bounds its notice's position in the channel (every notice before it was published by a call
//! that had started). An instance that had applied at least that many notices when the read
//! began had applied it: a stale read then is not explained by the propagation delay
//! ([`Report::after_notice`], must be 0).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cache_core::backend::{Backend, BackendInfo, Invalidation, NoticeSink, Put, VersionRead};
use cache_core::{cached, Cache, CacheError, CacheKey, Policy};

pub const HOUR: Duration = Duration::from_secs(3600);

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Operations in total (reads + writes).
    pub ops: usize,
    /// Concurrent tasks issuing them.
    pub tasks: usize,
    /// Distinct ids (`0..ids`).
    pub ids: u32,
    /// Percentage of operations that are writes.
    pub write_percent: u32,
    /// Seed of the per-task operation generators (the timing is not reproducible, the sequence
    /// of operations each task draws is).
    pub seed: u64,
}

/// The read paths exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `Cache::get_or_load`.
    GetOrLoad,
    /// `Cache::try_get_or_load` with an infallible loader.
    TryGetOrLoad,
    /// `Cache::fetch` (status counted).
    Fetch,
    /// `Cache::fetch_detached` with a stale-while-revalidate window (status counted).
    FetchDetachedSwr,
    /// `Cache::get_or_load` with `Policy::lease(true)`.
    Lease,
    /// A `#[cached(..., tags = ["item:{id}"], cache = ...)]` function.
    Macro,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::GetOrLoad,
        Method::TryGetOrLoad,
        Method::Fetch,
        Method::FetchDetachedSwr,
        Method::Lease,
        Method::Macro,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Method::GetOrLoad => "get_or_load",
            Method::TryGetOrLoad => "try_get_or_load",
            Method::Fetch => "fetch",
            Method::FetchDetachedSwr => "fetch_detached+swr",
            Method::Lease => "get_or_load+lease",
            Method::Macro => "#[cached]",
        }
    }

    fn index(self) -> usize {
        Method::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// One invalidation that returned: up to which version, on which instance, when.
#[derive(Debug, Clone, Copy)]
struct Returned {
    version: u64,
    instance: usize,
    at: Instant,
    /// Invalidation calls started when it returned: its notice is at most this far in the
    /// channel.
    published_upto: u64,
}

/// Why a read was stale (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blame {
    /// One of the invalidations the read missed was made on the reading instance.
    pub same_instance: bool,
    /// How long after the earliest invalidation it missed returned the read began (for a
    /// same-instance stale read: the earliest of the reading instance's own).
    pub delay: Duration,
    /// The reading instance had applied the notice of an invalidation it missed before the read
    /// began (only known with a [`NoticeCounter`]).
    pub after_notice: bool,
}

/// The truth and the counters.
pub struct World {
    db: Mutex<Vec<u64>>,
    invalidated_upto: Vec<AtomicU64>,
    /// Per id, every invalidation that returned, in the order they were recorded.
    returned: Vec<Mutex<Vec<Returned>>>,
    loader_runs: AtomicU64,
}

impl World {
    pub fn new(ids: u32) -> World {
        World {
            db: Mutex::new(vec![0; ids as usize]),
            invalidated_upto: (0..ids).map(|_| AtomicU64::new(0)).collect(),
            returned: (0..ids).map(|_| Mutex::new(Vec::new())).collect(),
            loader_runs: AtomicU64::new(0),
        }
    }

    /// The current version of `id` (the lock is held for the read only).
    pub fn read(&self, id: u32) -> u64 {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)[id as usize]
    }

    /// Commits a write: bumps the version of `id`, returns the new version.
    pub fn bump(&self, id: u32) -> u64 {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        db[id as usize] += 1;
        db[id as usize]
    }

    /// Records that every version up to `version` of `id` has been invalidated, by an
    /// invalidation made on `instance` that returned at `at` (logged before `must_see` can
    /// show it, so a read that sees it also finds it in the log).
    pub fn invalidated(
        &self,
        id: u32,
        version: u64,
        instance: usize,
        at: Instant,
        published_upto: u64,
    ) {
        self.returned[id as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Returned {
                version,
                instance,
                at,
                published_upto,
            });
        self.invalidated_upto[id as usize].fetch_max(version, Ordering::SeqCst);
    }

    /// Blames the stale read of `value` of `id` on `reader`, begun at `began` when it had
    /// applied `applied` notices (if counted): the invalidations of a version above `value` that
    /// returned before `began`. `None` if there is none (the read was not stale).
    pub fn blame(
        &self,
        id: u32,
        value: u64,
        reader: usize,
        began: Instant,
        applied: Option<u64>,
    ) -> Option<Blame> {
        let log = self.returned[id as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let missed = || {
            log.iter()
                .filter(move |r| r.version > value && r.at <= began)
        };
        let own = missed()
            .filter(|r| r.instance == reader)
            .map(|r| r.at)
            .min();
        let earliest = own.or_else(|| missed().map(|r| r.at).min())?;
        let after_notice =
            applied.is_some_and(|applied| missed().any(|r| applied >= r.published_upto));
        Some(Blame {
            same_instance: own.is_some(),
            delay: began.saturating_duration_since(earliest),
            after_notice,
        })
    }

    pub fn must_see(&self, id: u32) -> u64 {
        self.invalidated_upto[id as usize].load(Ordering::SeqCst)
    }

    pub fn loader_runs(&self) -> u64 {
        self.loader_runs.load(Ordering::SeqCst)
    }
}

/// A random pause of 0..2 ms: nothing, a few `yield_now`s, or a short sleep.
pub async fn jitter() {
    match fastrand::u8(..10) {
        0..=2 => {}
        3..=7 => {
            for _ in 0..fastrand::u8(1..8) {
                tokio::task::yield_now().await;
            }
        }
        _ => tokio::time::sleep(Duration::from_micros(fastrand::u64(..2_000))).await,
    }
}

/// The loader every read path uses: pause, read the database, pause.
pub async fn load(world: &World, id: u32) -> u64 {
    world.loader_runs.fetch_add(1, Ordering::SeqCst);
    jitter().await;
    let v = world.read(id);
    jitter().await;
    v
}

/// The `#[cached]` read path: same key (`item:{id}`), same tag as the others.
#[cached(resource = "item", key = "{id}", ttl = "1h", tags = ["item:{id}"], cache = cache)]
pub async fn cached_item(cache: &Cache, world: &World, id: u32) -> u64 {
    load(world, id).await
}

pub fn item_key(cache: &Cache, id: u32) -> CacheKey {
    cache.key("item").id(id).build()
}

pub fn tag(id: u32) -> String {
    format!("item:{id}")
}

/// What a read returned, and whether it was a miss when the path reports it.
struct ReadOutcome {
    value: u64,
    /// `Some(true)` for a miss, `Some(false)` for a hit, `None` when the path does not say.
    miss: Option<bool>,
}

async fn read_through(cache: &Cache, world: &Arc<World>, id: u32, method: Method) -> ReadOutcome {
    let key = item_key(cache, id);
    let policy = Policy::ttl(HOUR).tag(tag(id));
    let plain = |value| ReadOutcome { value, miss: None };
    match method {
        Method::GetOrLoad => plain(cache.get_or_load(&key, policy, || load(world, id)).await),
        Method::TryGetOrLoad => plain(
            cache
                .try_get_or_load(&key, policy, || async {
                    Ok::<u64, Infallible>(load(world, id).await)
                })
                .await
                .unwrap_or_else(|never| match never {}),
        ),
        Method::Fetch => {
            let f = cache
                .fetch(&key, policy, || async {
                    Ok::<u64, Infallible>(load(world, id).await)
                })
                .await
                .unwrap_or_else(|never| match never {});
            ReadOutcome {
                value: f.value,
                miss: Some(!f.status.is_from_cache()),
            }
        }
        Method::FetchDetachedSwr => {
            let world = world.clone();
            let f = cache
                .fetch_detached(
                    &key,
                    policy.stale_while_revalidate(HOUR),
                    move || async move { Ok::<u64, Infallible>(load(&world, id).await) },
                )
                .await
                .unwrap_or_else(|never| match never {});
            ReadOutcome {
                value: f.value,
                miss: Some(!f.status.is_from_cache()),
            }
        }
        Method::Lease => plain(
            cache
                .get_or_load(&key, policy.lease(true), || load(world, id))
                .await,
        ),
        Method::Macro => plain(cached_item(cache, world, id).await),
    }
}

/// Counts the notices an instance's L1 has applied: wraps its backend, and its subscriber's sink
/// so that each notice is counted once the L1 has applied it (the signal the checker reads when
/// a read begins). Every other call is forwarded as is.
#[derive(Debug, Clone)]
pub struct NoticeCounter {
    inner: Arc<dyn Backend>,
    applied: Arc<AtomicU64>,
}

impl NoticeCounter {
    pub fn new(inner: Arc<dyn Backend>) -> NoticeCounter {
        NoticeCounter {
            inner,
            applied: Arc::default(),
        }
    }

    /// Notices applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }
}

struct CountingSink<'a> {
    sink: &'a dyn NoticeSink,
    applied: &'a AtomicU64,
}

impl NoticeSink for CountingSink<'_> {
    fn subscribed(&self) {
        self.sink.subscribed();
    }

    fn notice(&self, payload: &[u8]) {
        self.sink.notice(payload);
        self.applied.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Backend for NoticeCounter {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.inner.get_many(keys).await
    }
    async fn versions(&self, reads: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.inner.versions(reads).await
    }
    async fn versions_or_create(
        &self,
        reads: &[VersionRead<'_>],
        create: &[bool],
        retention: Duration,
    ) -> Result<Vec<u64>, CacheError> {
        self.inner
            .versions_or_create(reads, create, retention)
            .await
    }
    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<bytes::Bytes>, Vec<u64>), CacheError> {
        self.inner.get_checked(key, ids).await
    }
    async fn may_evict(&self) -> Result<bool, CacheError> {
        self.inner.may_evict().await
    }
    fn eviction_hint(&self) -> Option<bool> {
        self.inner.eviction_hint()
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.inner.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.inner.invalidate(inv).await
    }
    async fn delete_pattern(&self, pattern: &str, batch: usize) -> Result<u64, CacheError> {
        self.inner.delete_pattern(pattern, batch).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.inner.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.try_lock(key, token, ttl).await
    }
    async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        self.inner.unlock(key, token).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.inner.info().await
    }
    fn notifies(&self) -> bool {
        self.inner.notifies()
    }
    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn NoticeSink,
    ) -> Result<(), CacheError> {
        let counting = CountingSink {
            sink,
            applied: &self.applied,
        };
        self.inner.listen(channel, heartbeat, &counting).await
    }
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        self.inner.publish(channel, payload).await
    }
}

/// Waits until the L1 of every cache is subscribed (it serves and fills only then), polling its
/// status with a generous deadline.
pub async fn until_l1_live(caches: &[Cache]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for cache in caches {
        while !cache.l1_status().expect("L1 configured").live {
            assert!(Instant::now() < deadline, "L1 never subscribed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The counts of one run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub ops: u64,
    pub reads: u64,
    pub writes: u64,
    /// Stale reads, all instances (see the module docs).
    pub stale_reads: u64,
    /// Of those, on the instance that made an invalidation the read missed (read your writes).
    pub same_instance_stale: u64,
    /// Of those, on another instance than every invalidation the read missed.
    pub cross_instance_stale: u64,
    /// The delay of every cross-instance stale read (how long after the invalidation it missed
    /// returned the read began), sorted.
    pub cross_delays: Vec<Duration>,
    /// Hits served by the caches' in-process tier (`Cache::stats().total.l1_hits`).
    pub l1_hits: u64,
    /// Cross-instance stale reads that began after the reading instance had applied the notice of
    /// an invalidation they missed (counted only with [`NoticeCounter`]s; must be 0).
    pub after_notice: u64,
    /// Whether `after_notice` was checked (every instance had a [`NoticeCounter`]).
    pub notices_counted: bool,
    /// Reads that returned a version above the database's (impossible; a harness check).
    pub from_the_future: u64,
    pub loader_runs: u64,
    /// Reads through `fetch` / `fetch_detached` (the paths reporting a status).
    pub status_reads: u64,
    /// Of those, the misses (not served from the cache).
    pub status_misses: u64,
    /// Lookups that found nothing, as counted by the caches (`Cache::stats().total.misses`).
    pub engine_misses: u64,
    pub elapsed: Duration,
    /// Reads and stale reads per [`Method`] (index of `Method::ALL`).
    pub per_method: [(u64, u64); 6],
    /// The first stale reads, described.
    pub examples: Vec<String>,
}

impl Report {
    /// Loader runs per miss (engine-counted misses).
    pub fn runs_per_miss(&self) -> f64 {
        if self.engine_misses == 0 {
            0.0
        } else {
            self.loader_runs as f64 / self.engine_misses as f64
        }
    }

    /// The `p` quantile (0..=1) of the cross-instance stale reads' delays.
    pub fn cross_delay(&self, p: f64) -> Option<Duration> {
        let n = self.cross_delays.len();
        if n == 0 {
            return None;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        Some(self.cross_delays[i])
    }

    /// Cross-instance stale reads that began more than `bound` after the invalidation they missed
    /// returned.
    pub fn cross_later_than(&self, bound: Duration) -> usize {
        self.cross_delays.iter().filter(|d| **d > bound).count()
    }

    /// `count, p50, p99, max` of the cross-instance stale reads' delays, in words.
    pub fn cross_distribution(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        if self.cross_delays.is_empty() {
            return "none".to_owned();
        }
        format!(
            "{} began p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms after the invalidation returned",
            self.cross_delays.len(),
            ms(self.cross_delay(0.5)),
            ms(self.cross_delay(0.99)),
            ms(self.cross_delay(1.0)),
        )
    }

    pub fn summary(&self, label: &str) -> String {
        let per_method = Method::ALL
            .iter()
            .zip(self.per_method.iter())
            .map(|(m, (reads, stale))| format!("{}: {stale}/{reads}", m.label()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[{label}] ops {} (reads {}, writes {}) in {:.2} s; STALE READS {} (on the \
             invalidating instance {}, on other instances {}: {}; after the notice was applied: \
             {}); L1 hits {}; loader runs {}; \
             misses {} (engine), fetch-path misses {}/{}; loader runs per miss {:.2}; \
             stale/reads per path: {per_method}{}",
            self.ops,
            self.reads,
            self.writes,
            self.elapsed.as_secs_f64(),
            self.stale_reads,
            self.same_instance_stale,
            self.cross_instance_stale,
            self.cross_distribution(),
            if self.notices_counted {
                self.after_notice.to_string()
            } else {
                "not counted".to_owned()
            },
            self.l1_hits,
            self.loader_runs,
            self.engine_misses,
            self.status_misses,
            self.status_reads,
            self.runs_per_miss(),
            if self.examples.is_empty() {
                String::new()
            } else {
                format!("\n  first stale reads:\n  {}", self.examples.join("\n  "))
            }
        )
    }
}

#[derive(Default)]
struct Shared {
    next_op: AtomicUsize,
    reads: AtomicU64,
    writes: AtomicU64,
    stale: AtomicU64,
    same_instance: AtomicU64,
    after_notice: AtomicU64,
    cross_delays: Mutex<Vec<Duration>>,
    /// Invalidation calls started.
    invalidations_started: AtomicU64,
    future: AtomicU64,
    status_reads: AtomicU64,
    status_misses: AtomicU64,
    per_method: [(AtomicU64, AtomicU64); 6],
    examples: Mutex<Vec<String>>,
}

/// Runs `cfg.ops` operations from `cfg.tasks` concurrent tasks over `caches` (which must share
/// one storage), then reports. Panics if an invalidation fails (a failed invalidation would make
/// the oracle wrong, not the cache).
pub async fn run(caches: Vec<Cache>, cfg: Config) -> Report {
    let n = caches.len();
    run_counted(caches, vec![None; n], cfg).await
}

/// [`run`], with the [`NoticeCounter`] of each cache (all or none) to check that no stale read
/// began after its instance applied the notice it missed.
pub async fn run_counted(
    caches: Vec<Cache>,
    counters: Vec<Option<NoticeCounter>>,
    cfg: Config,
) -> Report {
    assert!(!caches.is_empty());
    assert_eq!(caches.len(), counters.len());
    let notices_counted = counters.iter().all(Option::is_some);
    let counters = Arc::new(counters);
    let world = Arc::new(World::new(cfg.ids));
    let shared = Arc::new(Shared::default());
    let caches = Arc::new(caches);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..cfg.tasks {
        let (world, shared, caches) = (world.clone(), shared.clone(), caches.clone());
        let counters = counters.clone();
        let mut rng = fastrand::Rng::with_seed(cfg.seed.wrapping_add(t as u64 * 0x9E37_79B9));
        tasks.spawn(async move {
            // A read of the id just written, on the same instance, as the task's next operation.
            let mut follow_up: Option<(u32, usize)> = None;
            while shared.next_op.fetch_add(1, Ordering::SeqCst) < cfg.ops {
                let (id, c, write) = match follow_up.take() {
                    Some((id, c)) => (id, c, false),
                    None => (
                        rng.u32(..cfg.ids),
                        rng.usize(..caches.len()),
                        rng.u32(..100) < cfg.write_percent,
                    ),
                };
                let cache = &caches[c];
                if write {
                    let version = world.bump(id);
                    shared.invalidations_started.fetch_add(1, Ordering::SeqCst);
                    if rng.bool() {
                        cache
                            .invalidate_tags(&[tag(id)])
                            .await
                            .unwrap_or_else(|e| panic!("invalidate_tags failed: {e}"));
                    } else {
                        let mut pending = cache.defer();
                        pending.tag(tag(id));
                        pending
                            .commit()
                            .await
                            .unwrap_or_else(|e| panic!("deferred commit failed: {e:?}"));
                    }
                    let returned = Instant::now();
                    let published_upto = shared.invalidations_started.load(Ordering::SeqCst);
                    world.invalidated(id, version, c, returned, published_upto);
                    shared.writes.fetch_add(1, Ordering::Relaxed);
                    if rng.bool() {
                        follow_up = Some((id, c));
                    }
                } else {
                    let method = Method::ALL[rng.usize(..Method::ALL.len())];
                    let must_see = world.must_see(id);
                    let began = Instant::now();
                    let applied = counters[c].as_ref().map(NoticeCounter::applied);
                    let out = read_through(cache, &world, id, method).await;
                    let now = world.read(id);
                    shared.reads.fetch_add(1, Ordering::Relaxed);
                    shared.per_method[method.index()]
                        .0
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(miss) = out.miss {
                        shared.status_reads.fetch_add(1, Ordering::Relaxed);
                        if miss {
                            shared.status_misses.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if out.value > now {
                        shared.future.fetch_add(1, Ordering::Relaxed);
                    }
                    if out.value < must_see {
                        shared.stale.fetch_add(1, Ordering::Relaxed);
                        shared.per_method[method.index()]
                            .1
                            .fetch_add(1, Ordering::Relaxed);
                        let blame = world
                            .blame(id, out.value, c, began, applied)
                            .expect("harness: a stale read misses a logged invalidation");
                        if blame.same_instance {
                            shared.same_instance.fetch_add(1, Ordering::Relaxed);
                        } else {
                            if blame.after_notice {
                                shared.after_notice.fetch_add(1, Ordering::Relaxed);
                            }
                            shared
                                .cross_delays
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(blame.delay);
                        }
                        let mut ex = shared
                            .examples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        // Same-instance ones first: they are the bugs.
                        let bug = blame.same_instance || blame.after_notice;
                        if ex.len() < 8 || (bug && ex.len() < 16) {
                            ex.push(format!(
                                "{} on cache #{c}, id {id}: got v{}, but v{must_see} was \
                                 invalidated before the read began (db now v{now}); {}, \
                                 began {:.3} ms after the invalidation returned",
                                method.label(),
                                out.value,
                                if blame.same_instance {
                                    "SAME INSTANCE"
                                } else if blame.after_notice {
                                    "another instance, AFTER ITS NOTICE WAS APPLIED"
                                } else {
                                    "another instance"
                                },
                                blame.delay.as_secs_f64() * 1e3
                            ));
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let elapsed = started.elapsed();
    let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let mut per_method = [(0, 0); 6];
    for (out, (reads, stale)) in per_method.iter_mut().zip(shared.per_method.iter()) {
        *out = (l(reads), l(stale));
    }
    let reads = l(&shared.reads);
    let writes = l(&shared.writes);
    let mut cross_delays = std::mem::take(
        &mut *shared
            .cross_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    cross_delays.sort_unstable();
    let examples = std::mem::take(
        &mut *shared
            .examples
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Report {
        ops: reads + writes,
        reads,
        writes,
        stale_reads: l(&shared.stale),
        same_instance_stale: l(&shared.same_instance),
        cross_instance_stale: cross_delays.len() as u64,
        cross_delays,
        l1_hits: caches.iter().map(|c| c.stats().total.l1_hits).sum(),
        after_notice: l(&shared.after_notice),
        notices_counted,
        from_the_future: l(&shared.future),
        loader_runs: world.loader_runs(),
        status_reads: l(&shared.status_reads),
        status_misses: l(&shared.status_misses),
        engine_misses: caches.iter().map(|c| c.stats().total.misses).sum(),
        elapsed,
        per_method,
        examples,
    }
}
