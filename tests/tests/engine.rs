#![allow(missing_docs)]
//! Core read-through behaviour, on Redis and on the in-memory backend.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheError, CacheStatus, Codec, Policy};
use common::Ctx;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
    height_m: f64,
    tags: Vec<String>,
}

fn trig(id: u32) -> Trig {
    Trig {
        id,
        name: format!("Trig {id}"),
        height_m: 1344.5,
        tags: vec!["summit".into()],
    }
}

const MINUTE: Duration = Duration::from_secs(60);

async fn miss_then_hit(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(1).build();
    let loads = AtomicUsize::new(0);
    let load = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ()>(trig(1))
    };
    let first = cache.fetch(&key, MINUTE, load).await.unwrap();
    assert_eq!(first.status, CacheStatus::Miss);
    assert_eq!(first.value, trig(1));
    let second = cache.fetch(&key, MINUTE, load).await.unwrap();
    assert_eq!(second.status, CacheStatus::Hit);
    assert_eq!(second.value, trig(1));
    assert!(second.ttl <= MINUTE && second.ttl > Duration::from_secs(50));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!(stats.resources["trig"].hits, 1);
    assert_eq!(stats.resources["trig"].misses, 1);
    assert_eq!(stats.resources["trig"].sets, 1);
}

async fn get_set_delete(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(2).build();
    assert_eq!(cache.get::<Trig>(&key).await, None);
    cache.set(&key, &trig(2), MINUTE).await.unwrap();
    assert_eq!(cache.get::<Trig>(&key).await, Some(trig(2)));
    let entry = cache.get_entry::<Trig>(&key).await.unwrap();
    assert_eq!(entry.status, CacheStatus::Hit);
    assert!(entry.age < Duration::from_secs(5));
    assert!(cache.delete(&key).await.unwrap());
    assert!(!cache.delete(&key).await.unwrap());
    assert_eq!(cache.get::<Trig>(&key).await, None);
}

async fn ttl_expiry(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(3).build();
    cache
        .set(&key, &trig(3), Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(cache.get::<Trig>(&key).await, Some(trig(3)));
    // Expiry is the behaviour under test: waiting out the TTL is the only signal.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.get::<Trig>(&key).await, None);
}

async fn oversized_values_are_returned_but_not_stored(ctx: Ctx) {
    let cache = ctx.builder().max_entry_size(512).build().unwrap();
    let key = cache.key("blob").build();
    let big = "x".repeat(4096);
    let got: String = cache
        .get_or_load(&key, MINUTE, || async { big.clone() })
        .await;
    assert_eq!(got, big);
    assert_eq!(cache.get::<String>(&key).await, None);
    assert_eq!(cache.stats().resources["blob"].skips, 1);
    let err = cache.set(&key, &big, MINUTE).await.unwrap_err();
    assert!(
        matches!(err, CacheError::TooLarge { max: 512, .. }),
        "{err}"
    );
}

async fn errors_are_not_cached(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(4).build();
    let r: Result<Trig, &str> = cache
        .try_get_or_load(&key, MINUTE, || async { Err("db down") })
        .await;
    assert_eq!(r, Err("db down"));
    assert_eq!(cache.get::<Trig>(&key).await, None);
    let r: Result<Trig, &str> = cache
        .try_get_or_load(&key, MINUTE, || async { Ok(trig(4)) })
        .await;
    assert_eq!(r, Ok(trig(4)));
    let r: Result<Trig, &str> = cache
        .try_get_or_load(&key, MINUTE, || async { Err("unused") })
        .await;
    assert_eq!(r, Ok(trig(4)), "the cached Ok value is served");
}

async fn json_codec_round_trips(ctx: Ctx) {
    codec_round_trip(&ctx, Codec::Json, None).await;
}

async fn msgpack_codec_round_trips(ctx: Ctx) {
    codec_round_trip(&ctx, Codec::MessagePack, None).await;
}

async fn compact_codec_round_trips(ctx: Ctx) {
    codec_round_trip(&ctx, Codec::Compact, None).await;
}

async fn compression_on_round_trips(ctx: Ctx) {
    codec_round_trip(&ctx, Codec::Json, Some(64)).await;
    codec_round_trip(&ctx, Codec::MessagePack, Some(64)).await;
    codec_round_trip(&ctx, Codec::Compact, Some(64)).await;
}

async fn codec_round_trip(ctx: &Ctx, codec: Codec, compress: Option<usize>) {
    let mut b = ctx.builder().codec(codec);
    if let Some(n) = compress {
        b = b.compress_above(n);
    }
    let cache = b.build().unwrap();
    let key = cache
        .key("list")
        .id(format!("{codec:?}-{compress:?}"))
        .build();
    let value: Vec<Trig> = (0..100).map(trig).collect();
    cache.set(&key, &value, MINUTE).await.unwrap();
    assert_eq!(cache.get::<Vec<Trig>>(&key).await, Some(value.clone()));
    let raw = cache.get_raw(&key).await.unwrap();
    let env = cache_core::codec::Envelope::parse(&raw).unwrap();
    assert_eq!(env.is_compressed(), compress.is_some());
    let plain_len = serde_json::to_vec(&value).unwrap().len();
    if compress.is_some() {
        assert!(
            raw.len() < plain_len / 2,
            "compressed {} vs {plain_len}",
            raw.len()
        );
    }
}

async fn disabled_cache_is_a_pass_through(ctx: Ctx) {
    let cache = ctx.builder().enabled(false).build().unwrap();
    let key = cache.key("trig").id(5).build();
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        let f = cache
            .fetch(&key, MINUTE, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(trig(5))
            })
            .await
            .unwrap();
        assert_eq!(f.status, CacheStatus::Skip);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert!(matches!(
        cache.set(&key, &1, MINUTE).await,
        Err(CacheError::Disabled)
    ));
    assert_eq!(
        cache.health().await.status,
        cache_core::HealthStatus::Disabled
    );
}

async fn concurrent_misses_run_the_loader_once(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("hot").build();
    let loads = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (cache, key, loads, release) =
            (cache.clone(), key.clone(), loads.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&key, MINUTE, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    trig(9)
                })
                .await
        }));
    }
    // Deterministic: release the loader only once the other 999 callers wait on it.
    let started = std::time::Instant::now();
    while cache.waiting_on(&key) < 999 {
        // Bounded: callers that fall through (the cache unreachable) never queue up.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} callers wait on the load",
            cache.waiting_on(&key)
        );
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for t in tasks {
        assert_eq!(t.await.unwrap(), trig(9));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

async fn cancelled_leader_does_not_strand_followers(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("cancel").build();
    let started = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, key, started) = (cache.clone(), key.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, MINUTE, || async {
                    started.notify_one();
                    std::future::pending::<u32>().await
                })
                .await
        })
    };
    started.notified().await;
    let follower = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move { cache.get_or_load(&key, MINUTE, || async { 7u32 }).await })
    };
    let started = std::time::Instant::now();
    while cache.waiting_on(&key) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the follower never waited on the load"
        );
        tokio::task::yield_now().await;
    }
    leader.abort();
    assert_eq!(follower.await.unwrap(), 7);
}

async fn corrupt_entries_fall_through_to_the_loader(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(6).build();
    cache.set(&key, &"not a trig", MINUTE).await.unwrap();
    let got: Trig = cache.get_or_load(&key, MINUTE, || async { trig(6) }).await;
    assert_eq!(got, trig(6));
    assert_eq!(
        cache.get::<Trig>(&key).await,
        Some(trig(6)),
        "the bad entry was replaced"
    );
}

async fn bypass_skips_the_lookup_and_refreshes(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(8).build();
    cache.set(&key, &trig(1), MINUTE).await.unwrap();
    let f = cache
        .fetch(&key, Policy::ttl(MINUTE).bypass(true), || async {
            Ok::<_, ()>(trig(8))
        })
        .await
        .unwrap();
    assert_eq!(f.status, CacheStatus::Bypass);
    assert_eq!(f.value, trig(8));
    assert_eq!(cache.get::<Trig>(&key).await, Some(trig(8)));
    // Regression: with a lease, the lease's double-check must not answer a bypass.
    let f = cache
        .fetch(
            &key,
            Policy::ttl(MINUTE).lease(true).bypass(true),
            || async { Ok::<_, ()>(trig(18)) },
        )
        .await
        .unwrap();
    assert_eq!((f.status, f.value), (CacheStatus::Bypass, trig(18)));
}

async fn versions_retire_old_entries(ctx: Ctx) {
    let v1 = ctx.cache();
    let key1 = v1.key("trig").id(10).build();
    v1.set(&key1, &trig(10), MINUTE).await.unwrap();
    let v2 = ctx.builder().global_version(2).build().unwrap();
    let key2 = v2.key("trig").id(10).build();
    assert_ne!(key1, key2);
    assert_eq!(v2.get::<Trig>(&key2).await, None);
    let r2 = ctx.builder().resource_version("trig", 3).build().unwrap();
    assert_eq!(r2.get::<Trig>(&r2.key("trig").id(10).build()).await, None);
    assert_eq!(v1.get::<Trig>(&key1).await, Some(trig(10)));
}

async fn pattern_delete_scopes_to_the_namespace(ctx: Ctx) {
    let cache = ctx.cache();
    let other = ctx
        .builder()
        .namespace(format!("{}o", ctx.namespace))
        .build()
        .unwrap();
    for id in 0..50 {
        cache
            .set(&cache.key("trig").id(id).build(), &id, MINUTE)
            .await
            .unwrap();
        other
            .set(&other.key("trig").id(id).build(), &id, MINUTE)
            .await
            .unwrap();
    }
    cache
        .set(&cache.key("user").id(1).build(), &1, MINUTE)
        .await
        .unwrap();
    assert_eq!(cache.delete_pattern("trig:*").await.unwrap(), 50);
    assert_eq!(
        cache.get::<i32>(&cache.key("trig").id(3).build()).await,
        None
    );
    assert_eq!(
        cache.get::<i32>(&cache.key("user").id(1).build()).await,
        Some(1)
    );
    assert_eq!(
        other.get::<i32>(&other.key("trig").id(3).build()).await,
        Some(3)
    );
    assert!(cache.delete_pattern("bad pattern").await.is_err());
    assert!(cache.clear().await.unwrap() >= 1);
    assert_eq!(
        cache.get::<i32>(&cache.key("user").id(1).build()).await,
        None
    );
}

async fn health_and_info_report_the_backend(ctx: Ctx) {
    let cache = ctx.cache();
    cache
        .set(&cache.key("a").build(), &1, MINUTE)
        .await
        .unwrap();
    let health = cache.health().await;
    assert_eq!(health.status, cache_core::HealthStatus::Up);
    let info = cache.backend_info().await.unwrap();
    assert!(info.total_keys >= 1);
    assert!(info.memory_used_bytes > 0);
}

on_both_backends!(
    miss_then_hit,
    get_set_delete,
    ttl_expiry,
    oversized_values_are_returned_but_not_stored,
    errors_are_not_cached,
    json_codec_round_trips,
    msgpack_codec_round_trips,
    compact_codec_round_trips,
    compression_on_round_trips,
    disabled_cache_is_a_pass_through,
    concurrent_misses_run_the_loader_once,
    cancelled_leader_does_not_strand_followers,
    corrupt_entries_fall_through_to_the_loader,
    bypass_skips_the_lookup_and_refreshes,
    versions_retire_old_entries,
    pattern_delete_scopes_to_the_namespace,
    health_and_info_report_the_backend,
);
// The same suite over TLS (rustls, the test CA given to the cache).
on_tls_backend!(
    miss_then_hit,
    get_set_delete,
    ttl_expiry,
    oversized_values_are_returned_but_not_stored,
    errors_are_not_cached,
    json_codec_round_trips,
    msgpack_codec_round_trips,
    compact_codec_round_trips,
    compression_on_round_trips,
    disabled_cache_is_a_pass_through,
    concurrent_misses_run_the_loader_once,
    cancelled_leader_does_not_strand_followers,
    corrupt_entries_fall_through_to_the_loader,
    bypass_skips_the_lookup_and_refreshes,
    versions_retire_old_entries,
    pattern_delete_scopes_to_the_namespace,
    health_and_info_report_the_backend,
);
