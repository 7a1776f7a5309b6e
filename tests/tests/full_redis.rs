#![allow(missing_docs)]
//! A full Redis (`maxmemory` reached, `noeviction`): invalidations still succeed (the script is
//! declared `allow-oom`: deleting frees memory), hits are still served, stores fail without
//! opening the breaker, and that failure is logged once per episode, not once per request.
//!
//! One test in this binary: it installs a global `tracing` subscriber that captures the log.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::{BreakerState, Cache, CacheStatus, Policy};
use cache_tests::{unique_namespace, RedisServer};

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

async fn redis_cmd<T: redis::FromRedisValue>(server: &RedisServer, cmd: &mut redis::Cmd) -> T {
    let mut con = server.connection().await;
    cmd.query_async(&mut con).await.unwrap()
}

/// Fills Redis with 2 MiB of filler keys, then sets `maxmemory` 1 MiB below what it uses, with
/// `noeviction`: every write that needs memory is refused (`OOM`) for the rest of the test.
async fn fill_past_the_limit(server: &RedisServer) {
    let mut con = server.connection().await;
    let filler = "x".repeat(4096);
    for i in 0..512 {
        redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .query_async::<()>(&mut con)
            .await
            .unwrap();
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used - 1024 * 1024)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let refused: redis::RedisResult<()> = redis::cmd("INCR")
        .arg("filler:probe")
        .query_async(&mut con)
        .await;
    assert_eq!(
        refused.unwrap_err().code(),
        Some("OOM"),
        "Redis refuses writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_still_invalidates_serves_hits_and_logs_the_failed_stores_once() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .init();
    let server = RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(unique_namespace("full"))
        .redis_url(server.url())
        .breaker_threshold(3)
        .build()
        .unwrap();
    let policy = |id: u32| Policy::ttl(HOUR).tag(format!("trig:{id}"));
    for id in 0..3u32 {
        let key = cache.key("trig").id(id).build();
        let v: String = cache
            .get_or_load(&key, policy(id), || async move { format!("v1 of {id}") })
            .await;
        assert_eq!(v, format!("v1 of {id}"));
    }
    fill_past_the_limit(&server).await;

    // Hits are still served.
    let key0 = cache.key("trig").id(0).build();
    let f = cache
        .fetch(&key0, policy(0), || async {
            Ok::<_, ()>("v2 of 0".to_owned())
        })
        .await
        .unwrap();
    assert_eq!((f.value.as_str(), f.status), ("v1 of 0", CacheStatus::Hit));

    // An invalidation succeeds on the full Redis and deletes the entry.
    let deleted = cache.invalidate_tags(&["trig:0"]).await.unwrap();
    assert_eq!(deleted, 1);
    let exists: bool = redis_cmd(&server, redis::cmd("EXISTS").arg(key0.as_str())).await;
    assert!(!exists, "the entry was deleted");

    // Misses run the loader (the database's new value); stores fail without opening the
    // breaker, and the failure is logged once, not per request.
    for _ in 0..10 {
        let f = cache
            .fetch(&key0, policy(0), || async {
                Ok::<_, ()>("v2 of 0".to_owned())
            })
            .await
            .unwrap();
        assert_eq!((f.value.as_str(), f.status), ("v2 of 0", CacheStatus::Miss));
    }
    assert_eq!(cache.health().await.breaker, BreakerState::Closed);
    assert!(
        cache.stats().total.errors >= 10,
        "failed stores are counted"
    );
    assert_eq!(log.count("Redis is full"), 1, "logged once per episode");
    let key1 = cache.key("trig").id(1).build();
    assert_eq!(cache.get::<String>(&key1).await.as_deref(), Some("v1 of 1"));
}
