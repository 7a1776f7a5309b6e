#![allow(missing_docs)]
//! Fail-open against a real `redis-server` that is killed, paused and restarted.

use std::time::{Duration, Instant};

use cache_core::{Cache, CacheStatus, HealthStatus};
use cache_tests::{unique_namespace, RedisServer};

const MINUTE: Duration = Duration::from_secs(60);

fn cache_on(server: &RedisServer) -> Cache {
    cache_tests::init_tracing();
    Cache::builder()
        .namespace(unique_namespace("fo"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(50))
        .breaker_threshold(3)
        .breaker_cooldown(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_falls_through_then_resumes_after_restart() {
    let mut server = RedisServer::start_owned();
    let cache = cache_on(&server);
    let key = cache.key("trig").id(1).build();
    let v: u32 = cache.get_or_load(&key, MINUTE, || async { 1 }).await;
    assert_eq!(v, 1);
    let hit = cache
        .fetch(&key, MINUTE, || async { Ok::<u32, ()>(99) })
        .await
        .unwrap();
    assert_eq!(hit.status, CacheStatus::Hit);

    server.kill();
    // Every call returns the loader's value, never an error.
    for i in 0..20u32 {
        let f = cache
            .fetch(&key, MINUTE, || async move { Ok::<u32, ()>(100 + i) })
            .await
            .unwrap();
        assert_eq!(f.value, 100 + i);
        assert_eq!(f.status, CacheStatus::Skip);
    }
    assert_eq!(cache.health().await.status, HealthStatus::Down);
    // With the breaker open, a call costs microseconds, not a deadline. A second handle with a
    // long cool-down keeps the breaker open (no half-open probe) for the whole measurement.
    let open = Cache::builder()
        .namespace(unique_namespace("fo"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(50))
        .breaker_threshold(3)
        .breaker_cooldown(Duration::from_secs(600))
        .build()
        .unwrap();
    for _ in 0..3 {
        let _: u32 = open.get_or_load(&key, MINUTE, || async { 5 }).await;
    }
    assert_eq!(open.health().await.breaker, cache_core::BreakerState::Open);
    let mut took = Vec::with_capacity(100);
    for _ in 0..100 {
        let started = Instant::now();
        let v: u32 = open.get_or_load(&key, MINUTE, || async { 5 }).await;
        took.push(started.elapsed());
        assert_eq!(v, 5);
    }
    // A call that waited for the deadline would take 50 ms; the 90th percentile stays robust to
    // the odd preemption on a loaded CI machine.
    took.sort();
    assert!(
        took[89] < Duration::from_millis(1),
        "open-breaker calls: p90 {:?}, max {:?}",
        took[89],
        took[99]
    );
    assert!(open.stats().total.skips >= 100);

    server.restart();
    // Caching resumes by itself: within a few breaker cool-downs a value is stored and hit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _: u32 = cache.get_or_load(&key, MINUTE, || async { 7 }).await;
        let f = cache
            .fetch(&key, MINUTE, || async { Ok::<u32, ()>(8) })
            .await
            .unwrap();
        if f.status == CacheStatus::Hit {
            assert_eq!(f.value, 7);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.health().await.status, HealthStatus::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_redis_costs_at_most_the_deadline() {
    let mut server = RedisServer::start_owned();
    let cache = cache_on(&server);
    let key = cache.key("trig").id(2).build();
    cache.set(&key, &1u32, MINUTE).await.unwrap();
    server.pause();
    for _ in 0..10 {
        let started = Instant::now();
        let f = cache
            .fetch(&key, MINUTE, || async { Ok::<u32, ()>(2) })
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(f.value, 2);
        // One deadline for the lookup; the store is skipped once the lookup failed.
        assert!(took < Duration::from_millis(250), "call took {took:?}");
    }
    // Explicit operations report the failure instead of hanging.
    let started = Instant::now();
    assert!(cache.invalidate_tags(&["trig:2"]).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(31));
    server.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_startup_still_serves_then_connects() {
    let mut server = RedisServer::start_owned();
    server.kill();
    let cache = cache_on(&server);
    let key = cache.key("boot").build();
    let v: u32 = cache.get_or_load(&key, MINUTE, || async { 3 }).await;
    assert_eq!(v, 3);
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.set(&key, &4u32, MINUTE).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.get::<u32>(&key).await, Some(4));
}

/// Regression: building a Redis-backed cache outside a tokio runtime used to panic ("no reactor
/// running") because the connection manager spawned a task at construction.
#[test]
fn building_a_redis_cache_outside_a_runtime_does_not_panic() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .namespace(unique_namespace("rt"))
        .redis_url(server.url())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = cache.key("a").build();
        cache.set(&key, &1u32, MINUTE).await.unwrap();
        assert_eq!(cache.get::<u32>(&key).await, Some(1));
    });
}
