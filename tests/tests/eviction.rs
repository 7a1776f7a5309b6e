#![allow(missing_docs)]
//! Redis at its memory limit under each `maxmemory-policy`: no read returns data older than an
//! invalidation that returned before it began, even when Redis evicts a tag's index (so the
//! invalidation cannot find the entries) or a version counter.
//!
//! Under an evicting policy the engine verifies hits (entries record the versions they were
//! stored under; see `cache_core::cache` docs, "verified hits"). The test makes the hazard
//! certain instead of waiting for LRU to pick the right key: it deletes tag indexes before
//! invalidating and version counters after, as an eviction would, while filler keys keep Redis
//! evicting for real.

use std::collections::HashMap;
use std::time::Duration;

use cache_core::{Cache, Policy};
use cache_tests::{unique_namespace, RedisServer};

const HOUR: Duration = Duration::from_secs(3600);
const IDS: u32 = 24;

async fn set_config(server: &RedisServer, name: &str, value: &str) {
    let mut con = server.connection().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}

/// Writes filler until Redis is at its limit (evicting, or refusing under `noeviction`).
async fn pressure(server: &RedisServer, round: u32) {
    let mut con = server.connection().await;
    let filler = "f".repeat(8 * 1024);
    for i in 0..200 {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{round}:{i}"))
            .arg(&filler)
            .arg("PX")
            .arg(3_600_000)
            .query_async(&mut con)
            .await;
        if r.is_err() {
            return; // noeviction: full
        }
    }
}

async fn del(server: &RedisServer, keys: &[String]) {
    let mut con = server.connection().await;
    redis::cmd("DEL")
        .arg(keys)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}

async fn no_stale_read_under(policy: &str) {
    cache_tests::init_tracing();
    let server = RedisServer::start_owned();
    set_config(&server, "maxmemory-policy", policy).await;
    set_config(&server, "maxmemory", "3mb").await;
    let evicting = policy != "noeviction";
    let ns = unique_namespace("ev");
    let cache = Cache::builder()
        .namespace(ns.clone())
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut db: HashMap<u32, u64> = (0..IDS).map(|id| (id, 1)).collect();
    let policy_of = |id: u32| Policy::ttl(HOUR).tag(format!("item:{id}"));
    let key_of = |id: u32| cache.key("item").id(id).build();
    let mut stale = Vec::new();
    for round in 0..6u32 {
        pressure(&server, round).await;
        // Read every item: the value must be the database's.
        for id in 0..IDS {
            let want = db[&id];
            let got: u64 = cache
                .get_or_load(&key_of(id), policy_of(id), || async move { want })
                .await;
            if got != want {
                stale.push((round, id, got, want));
            }
        }
        // Write a third of the items. Under an evicting policy, first evict the index of some
        // of their tags (the invalidation then finds no entry to delete), and after it the
        // version counter of others.
        for id in (round % 3..IDS).step_by(3) {
            let tag_id = format!("{ns}:t:item%3A{id}");
            if evicting && id % 2 == 0 {
                del(&server, &[format!("{tag_id}:k")]).await;
            }
            *db.get_mut(&id).unwrap() += 1;
            cache
                .invalidate_tags(&[format!("item:{id}")])
                .await
                .unwrap();
            if evicting && id % 2 == 1 {
                del(&server, &[format!("{tag_id}:v")]).await;
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{policy}: stale reads (round, id, served, database): {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_noeviction() {
    no_stale_read_under("noeviction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_allkeys_lru() {
    no_stale_read_under("allkeys-lru").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_allkeys_lfu() {
    no_stale_read_under("allkeys-lfu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_allkeys_random() {
    no_stale_read_under("allkeys-random").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_volatile_lru() {
    no_stale_read_under("volatile-lru").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_volatile_lfu() {
    no_stale_read_under("volatile-lfu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_volatile_ttl() {
    no_stale_read_under("volatile-ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_invalidation_under_volatile_random() {
    no_stale_read_under("volatile-random").await;
}
