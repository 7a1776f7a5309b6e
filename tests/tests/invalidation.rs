#![allow(missing_docs)]
//! Tags, race safety, deferred invalidation, leases and stale windows, on both backends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::backend::{Backend, Invalidation, Put, VersionRead};
use cache_core::{CacheError, CacheStatus, Fragment, Policy};
use common::Ctx;

const MINUTE: Duration = Duration::from_secs(60);

async fn invalidating_a_tag_removes_every_entry_carrying_it(ctx: Ctx) {
    let cache = ctx.cache();
    for id in 0..20u32 {
        let key = cache.key("log").id(id).build();
        let tags = if id % 2 == 0 {
            vec!["trig:1", "logs:list"]
        } else {
            vec!["trig:2", "logs:list"]
        };
        cache
            .set(&key, &id, Policy::ttl(MINUTE).tags(tags))
            .await
            .unwrap();
    }
    let untagged = cache.key("stats").build();
    cache.set(&untagged, &0u32, MINUTE).await.unwrap();
    assert_eq!(cache.invalidate_tags(&["trig:1"]).await.unwrap(), 10);
    for id in 0..20u32 {
        let got = cache.get::<u32>(&cache.key("log").id(id).build()).await;
        assert_eq!(got.is_some(), id % 2 == 1, "id {id}");
    }
    assert_eq!(cache.invalidate_tags(&["logs:list"]).await.unwrap(), 10);
    assert_eq!(
        cache.get::<u32>(&cache.key("log").id(1).build()).await,
        None
    );
    assert_eq!(cache.get::<u32>(&untagged).await, Some(0));
    assert_eq!(cache.invalidate_tags(&["never-used"]).await.unwrap(), 0);
}

async fn a_fill_that_started_before_an_invalidation_is_never_served_after_it(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(42).build();
    let policy = Policy::ttl(MINUTE).tag("trig:42");
    let loader_started = Arc::new(tokio::sync::Notify::new());
    let invalidated = Arc::new(tokio::sync::Notify::new());
    let slow_fill = {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (loader_started, invalidated) = (loader_started.clone(), invalidated.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, policy, || async move {
                    let old = "read before the write".to_string();
                    loader_started.notify_one();
                    invalidated.notified().await; // the write commits and invalidates now
                    old
                })
                .await
        })
    };
    loader_started.notified().await;
    cache.invalidate_tags(&["trig:42"]).await.unwrap();
    invalidated.notify_one();
    assert_eq!(slow_fill.await.unwrap(), "read before the write");
    assert_eq!(
        cache.get::<String>(&key).await,
        None,
        "the stale fill must not be stored"
    );
    assert_eq!(cache.stats().resources["trig"].rejected_fills, 1);
    // The next fill, started after the invalidation, is stored.
    let fresh: String = cache
        .get_or_load(&key, policy, || async { "new".to_string() })
        .await;
    assert_eq!(fresh, "new");
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("new"));
}

async fn deferred_invalidation_runs_on_commit_only(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(5).build();
    let policy = Policy::ttl(MINUTE).tag("trig:5");
    cache.set(&key, &1u32, policy.clone()).await.unwrap();
    {
        let mut rolled_back = cache.defer();
        rolled_back.tag("trig:5");
    } // dropped: the transaction rolled back
    assert_eq!(cache.get::<u32>(&key).await, Some(1));
    let mut pending = cache.defer();
    pending.tag("trig:5").tag("trig:5");
    assert_eq!(pending.tags(), ["trig:5"]);
    assert_eq!(pending.commit().await.unwrap(), 1);
    assert_eq!(cache.get::<u32>(&key).await, None);
}

async fn lease_lets_one_instance_load_across_instances(ctx: Ctx) {
    let caches: Vec<_> = (0..4).map(|_| ctx.cache()).collect();
    let key = caches[0].key("hot").build();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let cache = caches[i % 4].clone();
        let (key, loads) = (key.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&key, Policy::ttl(MINUTE).lease(true), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // The value takes a while to compute; the other instances wait for it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    42u32
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

async fn a_vanished_lease_holder_delays_others_at_most_the_lease_time(ctx: Ctx) {
    let lease = Duration::from_millis(300);
    let crashed = ctx.builder().lease_ttl(lease).build().unwrap();
    let other = ctx.builder().lease_ttl(lease).build().unwrap();
    let key = crashed.key("hot").id(2).build();
    let started = Arc::new(tokio::sync::Notify::new());
    let holder = {
        let (crashed, key, started) = (crashed.clone(), key.clone(), started.clone());
        tokio::spawn(async move {
            crashed
                .get_or_load(&key, Policy::ttl(MINUTE).lease(true), || async move {
                    started.notify_one();
                    std::future::pending::<u32>().await
                })
                .await
        })
    };
    started.notified().await;
    holder.abort(); // the process holding the lease dies without releasing it
    let begun = Instant::now();
    let v: u32 = other
        .get_or_load(&key, Policy::ttl(MINUTE).lease(true), || async { 9 })
        .await;
    assert_eq!(v, 9);
    assert!(
        begun.elapsed() < lease + Duration::from_millis(200),
        "waited {:?}",
        begun.elapsed()
    );
}

async fn stale_while_revalidate_serves_stale_at_once_and_refreshes_once(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("swr").build();
    let policy = Policy::ttl(Duration::from_millis(100)).stale_while_revalidate(MINUTE);
    cache.set(&key, &1u32, policy.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // let the entry go stale
    let refreshes = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut results = Vec::new();
    for _ in 0..10 {
        let (refreshes, release) = (refreshes.clone(), release.clone());
        let f = cache
            .fetch_detached(&key, policy.clone(), move || async move {
                refreshes.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Ok::<u32, ()>(2)
            })
            .await
            .unwrap();
        results.push(f);
    }
    assert!(results
        .iter()
        .all(|f| f.status == CacheStatus::Stale && f.value == 1));
    release.notify_one();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get_entry::<u32>(&key).await.map(|e| e.value) != Some(2) {
        assert!(Instant::now() < deadline, "refresh never stored");
        tokio::task::yield_now().await;
    }
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let f = cache
        .fetch_detached(&key, policy, || async { Ok::<u32, ()>(3) })
        .await
        .unwrap();
    assert_eq!((f.status, f.value), (CacheStatus::Hit, 2));
}

async fn stale_if_error_serves_stale_on_failure_then_errors_after_the_window(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("sie").build();
    let policy = Policy::ttl(Duration::from_millis(100)).stale_if_error(Duration::from_millis(400));
    cache.set(&key, &1u32, policy.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let f = cache
        .fetch(&key, policy.clone(), || async {
            Err::<u32, &str>("db down")
        })
        .await
        .unwrap();
    assert_eq!((f.status, f.value), (CacheStatus::Stale, 1));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = cache
        .fetch(&key, policy, || async { Err::<u32, &str>("db down") })
        .await;
    assert_eq!(r.unwrap_err(), "db down");
}

async fn get_many_reads_in_one_call(ctx: Ctx) {
    let cache = ctx.cache();
    let keys: Vec<_> = (0..5).map(|i| cache.key("frag").id(i).build()).collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 2 == 0 {
            cache.set(k, &(i as u32), MINUTE).await.unwrap();
        }
    }
    let got = cache.get_many::<u32>(&keys).await;
    assert_eq!(got, [Some(0), None, Some(2), None, Some(4)]);
}

/// A backend wrapper that counts calls, to prove round-trip counts.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Backend>,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl Counting {
    fn calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn note(&self, op: &'static str) {
        self.calls.lock().unwrap().push(op);
    }
}

#[async_trait::async_trait]
impl Backend for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        self.note("get");
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.note("get_many");
        self.inner.get_many(keys).await
    }
    async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.note("versions");
        self.inner.versions(ids).await
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.note("put");
        self.inner.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.note("invalidate");
        self.inner.invalidate(inv).await
    }
    async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
        self.inner.delete_pattern(p, b).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.inner.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.try_lock(k, t, ttl).await
    }
    async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
        self.inner.unlock(k, t).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
    async fn info(&self) -> Result<cache_core::backend::BackendInfo, CacheError> {
        self.inner.info().await
    }
}

async fn fragments_use_one_round_trip_and_load_only_the_missing(ctx: Ctx) {
    let counting = Arc::new(Counting {
        inner: ctx.raw_backend(),
        calls: Default::default(),
    });
    let cache = ctx.builder().backend(counting.clone()).build().unwrap();
    let frags: Vec<Fragment> = (0..8u32)
        .map(|i| {
            Fragment::new(
                cache.key("frag").id(i).build(),
                Policy::ttl(MINUTE).tag(format!("f:{}", i % 2)),
            )
        })
        .collect();
    // Warm half of them.
    for f in frags.iter().step_by(2) {
        cache
            .set(
                &f.key,
                &format!("cached {}", f.key.as_str()),
                f.policy.clone(),
            )
            .await
            .unwrap();
    }
    counting.calls();
    let mut asked = Vec::new();
    let got = cache
        .get_many_or_load(&frags, |missing| {
            asked = missing.clone();
            async move {
                Ok::<_, ()>(
                    missing
                        .iter()
                        .map(|i| format!("loaded {i}"))
                        .collect::<Vec<_>>(),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(asked, [1, 3, 5, 7]);
    assert_eq!(got[1], "loaded 1");
    assert!(got[0].starts_with("cached "));
    // One lookup round trip, one tag snapshot, one store round trip.
    assert_eq!(counting.calls(), ["get_many", "versions", "put"]);
    // Everything is cached now: a single round trip, the loader is not called.
    let again = cache
        .get_many_or_load(&frags, |_| async { Err::<Vec<String>, ()>(()) })
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(counting.calls(), ["get_many"]);
}

async fn early_refresh_recomputes_before_expiry(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("xfetch").build();
    let ttl = Duration::from_millis(400);
    // A loader measured at 100 ms with a huge beta refreshes on practically every read.
    let policy = Policy::ttl(ttl).early_refresh(1_000_000.0);
    let v: u32 = cache
        .get_or_load(&key, policy.clone(), || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            1
        })
        .await;
    assert_eq!(v, 1);
    let f = cache
        .fetch(&key, policy.clone(), || async { Ok::<u32, ()>(2) })
        .await
        .unwrap();
    assert_eq!(
        (f.status, f.value),
        (CacheStatus::Miss, 2),
        "refreshed before the TTL ran out"
    );
    // Without early refresh the same read is a hit.
    let f = cache
        .fetch(&key, Policy::ttl(ttl), || async { Ok::<u32, ()>(3) })
        .await
        .unwrap();
    assert_eq!((f.status, f.value), (CacheStatus::Hit, 2));
}

on_both_backends!(
    fragments_use_one_round_trip_and_load_only_the_missing,
    early_refresh_recomputes_before_expiry,
    invalidating_a_tag_removes_every_entry_carrying_it,
    a_fill_that_started_before_an_invalidation_is_never_served_after_it,
    deferred_invalidation_runs_on_commit_only,
    lease_lets_one_instance_load_across_instances,
    a_vanished_lease_holder_delays_others_at_most_the_lease_time,
    stale_while_revalidate_serves_stale_at_once_and_refreshes_once,
    stale_if_error_serves_stale_on_failure_then_errors_after_the_window,
    get_many_reads_in_one_call,
);
// The same suite over TLS (rustls, the test CA given to the cache).
on_tls_backend!(
    fragments_use_one_round_trip_and_load_only_the_missing,
    early_refresh_recomputes_before_expiry,
    invalidating_a_tag_removes_every_entry_carrying_it,
    a_fill_that_started_before_an_invalidation_is_never_served_after_it,
    deferred_invalidation_runs_on_commit_only,
    lease_lets_one_instance_load_across_instances,
    a_vanished_lease_holder_delays_others_at_most_the_lease_time,
    stale_while_revalidate_serves_stale_at_once_and_refreshes_once,
    stale_if_error_serves_stale_on_failure_then_errors_after_the_window,
    get_many_reads_in_one_call,
);

/// Issue 12, defect 1: a write while Redis is paused. The invalidation does not wait seconds, it
/// is queued and replayed as soon as Redis answers: the old entry is never served again, not by
/// the writer and not by another instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_while_redis_is_paused_is_queued_then_replayed_for_every_instance() {
    let mut server = cache_tests::RedisServer::start_owned();
    let ns = cache_tests::unique_namespace("inv");
    let build = || {
        cache_core::Cache::builder()
            .namespace(ns.clone())
            .redis_url(server.url())
            .build()
            .unwrap()
    };
    let (writer, other) = (build(), build());
    let key = writer.key("trig").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("trig:1");
    let v: u32 = writer
        .get_or_load(&key, policy.clone(), || async { 1 })
        .await;
    assert_eq!(v, 1);
    assert_eq!(
        other.get::<u32>(&key).await,
        Some(1),
        "warm on both instances"
    );

    server.pause();
    let started = Instant::now();
    let err = writer.invalidate_tags(&["trig:1"]).await.unwrap_err();
    assert!(err.is_queued(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the write waited {:?}",
        started.elapsed()
    );
    assert_eq!(writer.pending_invalidations(), 1);
    // While paused, reads fall through to the loader (the database now says 2).
    let v: u32 = writer
        .get_or_load(&key, policy.clone(), || async { 2 })
        .await;
    assert_eq!(v, 2);
    server.resume();

    let resumed = Instant::now();

    // The writer never serves the old entry: it withholds it until its queue is delivered.
    let v: u32 = writer
        .get_or_load(&key, policy.clone(), || async { 2 })
        .await;
    assert_eq!(v, 2, "the writer served the entry of before the write");
    // The queue is replayed within milliseconds of Redis answering, without waiting for a read.
    while writer.pending_invalidations() > 0 {
        assert!(
            resumed.elapsed() < Duration::from_secs(2),
            "the queue is replayed"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("replayed {:?} after Redis answered", resumed.elapsed());
    // Then the other instance sees the invalidation too.
    let v: u32 = other.get_or_load(&key, policy, || async { 2 }).await;
    assert_eq!(
        v, 2,
        "another instance served the entry of before the write"
    );
}

/// `fetch_many` says where each fragment came from: `Miss` when loaded, `Hit` from the cache,
/// and `Skip` (loaded, nothing stored) while Redis is down, as every other read path does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_many_reports_each_fragments_status_and_skip_while_redis_is_down() {
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = cache_core::Cache::builder()
        .namespace(cache_tests::unique_namespace("fm"))
        .redis_url(server.url())
        .build()
        .unwrap();
    let frags: Vec<Fragment> = (0..3u32)
        .map(|i| Fragment::new(cache.key("frag").id(i).build(), Policy::ttl(MINUTE)))
        .collect();
    let load = |missing: Vec<usize>| async move {
        Ok::<_, ()>(missing.iter().map(|&i| i as u32 * 10).collect::<Vec<u32>>())
    };
    let statuses = |f: &[cache_core::Fetched<u32>]| -> Vec<(u32, CacheStatus)> {
        f.iter().map(|f| (f.value, f.status)).collect()
    };
    let first = cache.fetch_many(&frags, load).await.unwrap();
    assert_eq!(
        statuses(&first),
        [
            (0, CacheStatus::Miss),
            (10, CacheStatus::Miss),
            (20, CacheStatus::Miss)
        ]
    );
    let second = cache.fetch_many(&frags, load).await.unwrap();
    assert_eq!(
        statuses(&second),
        [
            (0, CacheStatus::Hit),
            (10, CacheStatus::Hit),
            (20, CacheStatus::Hit)
        ]
    );
    server.kill();
    let down = cache.fetch_many(&frags, load).await.unwrap();
    assert_eq!(
        statuses(&down),
        [
            (0, CacheStatus::Skip),
            (10, CacheStatus::Skip),
            (20, CacheStatus::Skip)
        ]
    );
}

/// Tag bookkeeping does not leak: a store prunes index members whose entries expired, the index
/// key carries a TTL no shorter than its longest-lived member, and version keys expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_bookkeeping_is_pruned_and_expires() {
    let server = cache_tests::RedisServer::start();
    let ns = cache_tests::unique_namespace("bk");
    let cache = cache_core::Cache::builder()
        .namespace(ns.clone())
        .redis_url(server.url())
        .tag_version_retention(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut con = server.connection().await;
    let index = format!("{ns}:t:busy:k");
    for i in 0..50u32 {
        let key = cache.key("short").id(i).build();
        cache
            .set(
                &key,
                &i,
                Policy::ttl(Duration::from_millis(100)).tag("busy"),
            )
            .await
            .unwrap();
    }
    let members: u64 = ::redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(members, 50);
    // Let the 50 short entries expire (expiry is what is under test), then store one more.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let long = cache.key("long").build();
    cache
        .set(&long, &1u32, Policy::ttl(MINUTE).tag("busy"))
        .await
        .unwrap();
    let members: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(&index)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        members,
        [long.as_str()],
        "expired members were pruned by the store"
    );
    let pttl: i64 = ::redis::cmd("PTTL")
        .arg(&index)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        pttl > 59_000,
        "index lives as long as its longest member: {pttl}"
    );
    cache.invalidate_tags(&["busy"]).await.unwrap();
    let exists: u64 = ::redis::cmd("EXISTS")
        .arg(&index)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0, "invalidation deletes the index");
    let vttl: i64 = ::redis::cmd("PTTL")
        .arg(format!("{ns}:t:busy:v"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        vttl > 0 && vttl <= 30_000,
        "version key expires after the retention: {vttl}"
    );
}
