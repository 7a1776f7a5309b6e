//! The randomized concurrent consistency checker shared by `tests/consistency.rs` (a bounded run
//! per backend, asserted) and `benches/consistency.rs` (100k operations per variant, a table).
//!
//! The database is the truth: an in-process map `id -> version` behind a lock. A **write** bumps
//! the version of an id (the commit), invalidates the tag `item:{id}` through one of the caches
//! (`invalidate_tags`, or `defer()` + `tag()` + `commit()`), and once the invalidation has
//! returned records `invalidated_upto[id] = max(.., version written)`. A **read** snapshots
//! `must_see = invalidated_upto[id]` when it starts, then reads through one of the caches and one
//! of the read paths ([`Method`]); the value it returns must be `>= must_see`, otherwise it is a
//! **stale read**: a value the cache was told to forget before the read began.
//!
//! Loaders read the database without holding the lock across an await, and yield or sleep a
//! random 0..2 ms before and after reading, to widen race windows. Every entry is tagged
//! `item:{id}` and lives an hour, so only invalidation removes entries.
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

use cache_core::{cached, Cache, CacheKey, Policy};

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

/// The truth and the counters.
pub struct World {
    db: Mutex<Vec<u64>>,
    invalidated_upto: Vec<AtomicU64>,
    loader_runs: AtomicU64,
}

impl World {
    pub fn new(ids: u32) -> World {
        World {
            db: Mutex::new(vec![0; ids as usize]),
            invalidated_upto: (0..ids).map(|_| AtomicU64::new(0)).collect(),
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

    /// Records that every version up to `version` of `id` has been invalidated.
    pub fn invalidated(&self, id: u32, version: u64) {
        self.invalidated_upto[id as usize].fetch_max(version, Ordering::SeqCst);
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

/// The counts of one run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub ops: u64,
    pub reads: u64,
    pub writes: u64,
    pub stale_reads: u64,
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

    pub fn summary(&self, label: &str) -> String {
        let per_method = Method::ALL
            .iter()
            .zip(self.per_method.iter())
            .map(|(m, (reads, stale))| format!("{}: {stale}/{reads}", m.label()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[{label}] ops {} (reads {}, writes {}) in {:.2} s; STALE READS {}; loader runs {}; \
             misses {} (engine), fetch-path misses {}/{}; loader runs per miss {:.2}; \
             stale/reads per path: {per_method}{}",
            self.ops,
            self.reads,
            self.writes,
            self.elapsed.as_secs_f64(),
            self.stale_reads,
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
    assert!(!caches.is_empty());
    let world = Arc::new(World::new(cfg.ids));
    let shared = Arc::new(Shared::default());
    let caches = Arc::new(caches);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..cfg.tasks {
        let (world, shared, caches) = (world.clone(), shared.clone(), caches.clone());
        let mut rng = fastrand::Rng::with_seed(cfg.seed.wrapping_add(t as u64 * 0x9E37_79B9));
        tasks.spawn(async move {
            while shared.next_op.fetch_add(1, Ordering::SeqCst) < cfg.ops {
                let id = rng.u32(..cfg.ids);
                let c = rng.usize(..caches.len());
                let cache = &caches[c];
                if rng.u32(..100) < cfg.write_percent {
                    let version = world.bump(id);
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
                    world.invalidated(id, version);
                    shared.writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    let method = Method::ALL[rng.usize(..Method::ALL.len())];
                    let must_see = world.must_see(id);
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
                        let mut ex = shared
                            .examples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if ex.len() < 8 {
                            ex.push(format!(
                                "{} on cache #{c}, id {id}: got v{}, but v{must_see} was \
                                 invalidated before the read began (db now v{now})",
                                method.label(),
                                out.value
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
