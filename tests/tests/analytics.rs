#![allow(missing_docs)]
//! Route analytics of `cache-core` (feature `analytics`), the same bodies on Redis, Redis
//! Cluster and the memory store: recording, the bounded channel, merged aggregates, retention
//! bounds, invalidation counts, pseudonymous users. The adapters' layers are tested in
//! `axum_analytics.rs` and `actix_analytics.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cache_core::analytics::{
    Analytics, Event, InvalidationTarget, Outcome, Window, UNMATCHED_ROUTE,
};
use cache_core::metrics::CacheMetrics;
use cache_core::Cache;
use common::{Ctx, Kind};

fn event(a: &Analytics, route: &str, outcome: Outcome, latency_us: u64, user: &str) -> Event {
    let mut e = Event::new("GET", route, a.now_ms());
    e.status = 200;
    e.latency = Duration::from_micros(latency_us);
    e.outcome = outcome;
    e.bytes = 100;
    e.user = Some(a.pseudonym(user));
    e
}

/// Every key of the test's namespace, by SCAN (single node only).
async fn redis_keys(ctx: &Ctx) -> Option<Vec<String>> {
    let server = ctx.server.as_ref()?;
    let mut conn = server.connection().await;
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", ctx.namespace))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return Some(keys);
        }
    }
}

async fn recorded_events_keep_every_field(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    let mut e = event(a, "/trigs/{id}", Outcome::Miss, 12_345, "alice");
    e.method = "POST".into();
    e.status = 503;
    e.bytes = 4321;
    e.private = true;
    a.record(e.clone());
    a.flush().await;
    let recent = a.recent_events(10).await.unwrap();
    assert_eq!(recent, vec![e]);
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes.len(), 1);
    let r = &routes[0];
    assert_eq!(
        (r.method.as_str(), r.route.as_str()),
        ("POST", "/trigs/{id}")
    );
    assert_eq!((r.requests, r.errors, r.bytes_total), (1, 1, 4321));
    assert_eq!((r.error_rate, r.bytes_mean), (1.0, 4321.0));
    assert_eq!((r.distinct_users, r.private_responses), (1, 1));
    assert_eq!(r.hit_rate, Some(0.0));
    let miss = r.outcome(Outcome::Miss).unwrap();
    assert_eq!(miss.mean_ms, 12.345);
    assert!((miss.p99_ms - 12.345).abs() <= 0.02 * 12.345, "{miss:?}");
}

async fn aggregates_split_latency_by_outcome(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    // 90 hits at 1..=90 µs x 10, 10 misses at 50 ms, 5 stale at 2 ms.
    for i in 1..=90u64 {
        a.record(event(
            a,
            "/items",
            Outcome::Hit,
            i * 10,
            &format!("u{}", i % 7),
        ));
    }
    for _ in 0..10 {
        a.record(event(a, "/items", Outcome::Miss, 50_000, "u1"));
    }
    for _ in 0..5 {
        a.record(event(a, "/items", Outcome::Stale, 2_000, "u2"));
    }
    a.record(event(a, "/other", Outcome::None, 700, "u3"));
    a.flush().await;
    let routes = a.routes(Window::Hour).await.unwrap();
    assert_eq!(
        routes
            .iter()
            .map(|r| (r.route.as_str(), r.requests))
            .collect::<Vec<_>>(),
        vec![("/items", 105), ("/other", 1)]
    );
    let r = &routes[0];
    assert_eq!(r.hit_rate, Some(95.0 / 105.0));
    assert_eq!(r.distinct_users, 7);
    assert!((r.per_second - 105.0 / 3600.0).abs() < 1e-9);
    let hit = r.outcome(Outcome::Hit).unwrap();
    assert_eq!(hit.requests, 90);
    // p50 of 10..=900 step 10 is 450 µs (rank 44 -> the 45th value), within 2 %.
    assert!((hit.p50_ms - 0.45).abs() <= 0.02 * 0.45, "{hit:?}");
    assert!((hit.p99_ms - 0.89).abs() <= 0.02 * 0.89, "{hit:?}");
    assert_eq!(r.miss_latency_ms(), Some(50.0));
    assert_eq!(r.outcome(Outcome::Stale).unwrap().requests, 5);
    assert!(r.outcome(Outcome::Bypass).is_none());
    assert_eq!(routes[1].hit_rate, None);
}

async fn full_channel_drops_and_counts_instead_of_blocking(ctx: Ctx) {
    let cache = ctx.builder().analytics_queue(16).build().unwrap();
    let metrics = CacheMetrics::new(cache.clone());
    let a = cache.analytics();
    // The writer is stalled: it takes at most one batch (512) out of the channel, then waits.
    let hold = a.hold_writer().await;
    let total = 16 + 512 + 100;
    for i in 0..total {
        a.record(event(a, "/flood", Outcome::None, 10, &format!("u{i}")));
    }
    let stats = a.stats();
    assert_eq!(stats.accepted + stats.dropped, total as u64);
    assert!(stats.dropped >= 100, "{stats:?}");
    assert!(metrics
        .render()
        .contains(&format!("cache_analytics_dropped_total {}", stats.dropped)));
    drop(hold);
    a.flush().await;
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes[0].requests, stats.accepted);
    assert_eq!(a.stats().written, stats.accepted);
}

async fn invalidations_counted_per_tag_and_resource(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    // Unused analytics write nothing.
    cache.invalidate_tags(&["before"]).await.unwrap();
    a.activate();
    cache.invalidate_tags(&["trig:1", "trig:2"]).await.unwrap();
    cache.invalidate_tags(&["trig:1"]).await.unwrap();
    let key = cache.key("trig").id(7).build();
    cache.delete(&key).await.unwrap();
    let mut p = cache.defer();
    p.tag("photo:9");
    p.commit().await.unwrap();
    a.flush().await;
    let inv = a.invalidations(Window::FiveMinutes).await.unwrap();
    let got: BTreeSet<(InvalidationTarget, String, u64)> = inv
        .iter()
        .map(|i| (i.target, i.name.clone(), i.count))
        .collect();
    let want: BTreeSet<(InvalidationTarget, String, u64)> = [
        (InvalidationTarget::Tag, "trig:1".to_owned(), 2),
        (InvalidationTarget::Tag, "trig:2".to_owned(), 1),
        (InvalidationTarget::Tag, "photo:9".to_owned(), 1),
        (InvalidationTarget::Resource, "trig".to_owned(), 1),
    ]
    .into();
    assert_eq!(got, want);
    let t1 = inv.iter().find(|i| i.name == "trig:1").unwrap();
    assert_eq!(t1.mean_interval_secs, Some(150.0));
    assert_eq!(t1.active_minutes, 1);
}

async fn retention_bounds_memory(ctx: Ctx) {
    const RETENTION_MIN: u64 = 3;
    const STREAM: u64 = 200;
    const ROUTES: u64 = 4;
    let cache = ctx
        .builder()
        .analytics_retention(Duration::from_secs(RETENTION_MIN * 60))
        .analytics_stream_len(STREAM as usize)
        .analytics_stream_rate(1_000_000)
        .build()
        .unwrap();
    let a = cache.analytics();
    a.activate();
    // A bound on every key: the stream, the index, per route a counters hash and a users
    // HyperLogLog per minute kept (retention + the current one), an invalidation hash per minute.
    let minutes = RETENTION_MIN + 1;
    let key_cap = 2 + ROUTES * 2 * minutes + minutes;
    let stream_cap = STREAM + 100; // MAXLEN ~ trims whole stream nodes (100 entries).
    for minute in 0..20u64 {
        for i in 0..300u64 {
            let route = format!("/r{}", i % ROUTES);
            a.record(event(a, &route, Outcome::Hit, 100 + i, &format!("u{i}")));
        }
        cache
            .invalidate_tags(&[format!("tag:{minute}")])
            .await
            .unwrap();
        a.flush().await;
        let usage = a.storage_usage().await.unwrap();
        assert!(usage.raw_events <= stream_cap, "minute {minute}: {usage:?}");
        assert!(
            usage.route_minutes <= ROUTES * minutes,
            "minute {minute}: {usage:?}"
        );
        assert!(
            usage.invalidation_minutes <= minutes,
            "minute {minute}: {usage:?}"
        );
        assert!(usage.routes <= ROUTES, "{usage:?}");
        if let Some(keys) = redis_keys(&ctx).await {
            let an: Vec<&String> = keys.iter().filter(|k| k.contains(":an:")).collect();
            assert!(
                an.len() as u64 <= key_cap,
                "minute {minute}: {} keys: {an:?}",
                an.len()
            );
        }
        if minute == 0 {
            // Every key expires at the end of its retention (the bound for routes no longer
            // written): the counters of this minute live at most retention + 1 minutes.
            if let Some(server) = ctx.server.as_ref() {
                let mut conn = server.connection().await;
                for key in redis_keys(&ctx).await.unwrap() {
                    if key.contains(":m:") || key.contains(":u:") {
                        let ttl: i64 = ::redis::cmd("PTTL")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        assert!(ttl > 0 && ttl <= (minutes * 60_000) as i64, "{key}: {ttl}");
                    }
                }
            }
        }
        a.advance_clock(Duration::from_secs(60));
    }
    // The window sees the retained minutes only: 300 events per minute, retention + 1 minutes.
    let routes = a.routes(Window::Hour).await.unwrap();
    let total: u64 = routes.iter().map(|r| r.requests).sum();
    assert!(total <= 300 * minutes, "{total}");
    let usage = a.storage_usage().await.unwrap();
    assert!(usage.raw_events >= STREAM, "{usage:?}");
}

async fn users_are_pseudonyms_never_in_clear(ctx: Ctx) {
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.secret-user-token";
    let one = ctx.builder().analytics_key("k1").build().unwrap();
    let same = ctx.builder().analytics_key("k1").build().unwrap();
    let other = ctx.builder().analytics_key("k2").build().unwrap();
    let p = one.analytics().pseudonym(TOKEN);
    assert_eq!(p.len(), 32);
    assert!(p.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(p, same.analytics().pseudonym(TOKEN));
    assert_ne!(p, other.analytics().pseudonym(TOKEN));
    assert_ne!(p, Cache::memory().analytics().pseudonym(TOKEN));
    let a = one.analytics();
    a.record(event(a, "/me", Outcome::Miss, 10, TOKEN));
    a.flush().await;
    let recent = a.recent_events(1).await.unwrap();
    assert_eq!(recent[0].user.as_deref(), Some(p.as_str()));
    assert!(!format!("{recent:?}").contains("secret-user-token"));
    if let Some(server) = ctx.server.as_ref() {
        let mut conn = server.connection().await;
        for key in redis_keys(&ctx).await.unwrap() {
            let dump: Vec<u8> = ::redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                !String::from_utf8_lossy(&dump).contains("secret-user-token"),
                "{key}"
            );
        }
    }
}

async fn unmatched_label_is_one_route(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    for _ in 0..3 {
        let mut e = Event::new("GET", UNMATCHED_ROUTE, a.now_ms());
        e.status = 404;
        a.record(e);
    }
    a.flush().await;
    let routes = a.routes(Window::Day).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].route.as_str(), routes[0].requests),
        (UNMATCHED_ROUTE, 3)
    );
    assert_eq!(routes[0].error_rate, 0.0);
}

/// The advisor's inputs: distinct keys per route (keyed hashes of the target, with the user for
/// private responses), the cache resources of its responses, and the most requested targets of
/// the responses the cache shared (never a private or uncached one), kept by name only there.
async fn distinct_keys_resources_and_top_targets_per_route(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    let ns = &ctx.namespace;
    let shared = [
        ("/trigs/1", Outcome::Miss),
        ("/trigs/1", Outcome::Hit),
        ("/trigs/1", Outcome::Hit),
        ("/trigs/2", Outcome::Miss),
        ("/trigs/2", Outcome::Hit),
        ("/trigs/1?x=1", Outcome::Miss),
        ("/trigs/3", Outcome::Stale),
    ];
    for (target, outcome) in shared {
        let mut e = event(a, "/trigs/{id}", outcome, 1_000, "alice");
        e.target = Some(target.to_owned());
        e.cache_key = Some(format!("{ns}:v1:trig:{}", target.len()));
        a.record(e);
    }
    // Private: one key per user; uncached (skip) and errors: counted, never kept by name.
    for user in ["bob", "carol"] {
        let mut e = event(a, "/trigs/{id}", Outcome::Miss, 1_000, user);
        e.target = Some("/trigs/secret".to_owned());
        e.private = true;
        a.record(e);
    }
    let mut e = event(a, "/trigs/{id}", Outcome::Skip, 1_000, "alice");
    e.target = Some("/trigs/skipped".to_owned());
    a.record(e);
    let mut e = event(a, "/trigs/{id}", Outcome::Miss, 1_000, "alice");
    e.target = Some("/trigs/broken".to_owned());
    e.status = 500;
    a.record(e);
    a.flush().await;

    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes.len(), 1);
    let r = &routes[0];
    assert_eq!(r.requests, 11);
    // /trigs/1, /trigs/2, /trigs/1?x=1, /trigs/3, secret (bob), secret (carol), skipped, broken.
    assert_eq!(r.distinct_keys, 8);
    assert_eq!(r.resources, ["trig"]);
    let now = a.now_ms();
    assert!(
        r.since_ms > 0 && r.since_ms <= now && now - r.since_ms < 60_000,
        "{}",
        r.since_ms
    );
    let top = a
        .top_targets("GET", "/trigs/{id}", Window::FiveMinutes, 10)
        .await
        .unwrap();
    let got: Vec<(&str, u64)> = top
        .iter()
        .map(|t| (t.target.as_str(), t.requests))
        .collect();
    assert_eq!(
        got,
        [
            ("/trigs/1", 3),
            ("/trigs/2", 2),
            ("/trigs/1?x=1", 1),
            ("/trigs/3", 1)
        ]
    );
    let two = a
        .top_targets("GET", "/trigs/{id}", Window::FiveMinutes, 2)
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    // The raw events keep neither targets nor keys.
    for e in a.recent_events(100).await.unwrap() {
        assert_eq!((e.target, e.cache_key), (None, None));
    }
    if let Some(keys) = redis_keys(&ctx).await {
        assert!(!keys.iter().any(|k| k.contains("secret")), "{keys:?}");
    }
}

/// A tag invalidation counts the keys it reaches per resource, learnt from the tags entries
/// were stored with, whether they are cached at that moment or not; a key counts once per
/// invalidation, even when several of its tags are invalidated together.
async fn tag_invalidations_count_the_keys_they_reach_per_resource(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    a.activate();
    let ttl = Duration::from_secs(60);
    for id in 0..5u32 {
        let key = cache.key("trig").id(id).build();
        let policy = cache_core::Policy::ttl(ttl)
            .tag("trigs:list")
            .tag(format!("trig:{id}"));
        let v: u32 = cache.get_or_load(&key, policy, || async move { id }).await;
        assert_eq!(v, id);
    }
    let key = cache.key("user").id(1).build();
    let _: u32 = cache
        .get_or_load(&key, cache_core::Policy::ttl(ttl).tag("trig:1"), || async {
            7
        })
        .await;
    // trig:1 empties one trig and the user; trigs:list the four trigs left.
    cache.invalidate_tags(&["trig:1"]).await.unwrap();
    cache
        .invalidate_tags(&["trigs:list", "trig:2"])
        .await
        .unwrap();
    // Nothing left to empty.
    cache.invalidate_tags(&["trigs:list"]).await.unwrap();
    a.flush().await;
    let inv = a.invalidations(Window::FiveMinutes).await.unwrap();
    let entries: BTreeSet<(String, u64)> = inv
        .iter()
        .filter(|i| i.target == InvalidationTarget::Entries)
        .map(|i| (i.name.clone(), i.count))
        .collect();
    assert_eq!(
        entries,
        [("trig".to_owned(), 11), ("user".to_owned(), 1)].into()
    );
}

on_both_backends!(
    recorded_events_keep_every_field,
    distinct_keys_resources_and_top_targets_per_route,
    tag_invalidations_count_the_keys_they_reach_per_resource,
    aggregates_split_latency_by_outcome,
    full_channel_drops_and_counts_instead_of_blocking,
    invalidations_counted_per_tag_and_resource,
    retention_bounds_memory,
    users_are_pseudonyms_never_in_clear,
    unmatched_label_is_one_route,
);

/// Two instances (two caches, one Redis) write the same route and minutes: the aggregates read
/// from either are the sum, and the merged latency quantiles are those of one histogram of
/// every value (computed by a memory store that saw all of them).
async fn aggregates_of_two_instances_merge_to_the_sum(ctx: Ctx) {
    let one = ctx.builder().analytics_key("shared").build().unwrap();
    let two = ctx.builder().analytics_key("shared").build().unwrap();
    let all = Cache::builder().analytics_key("shared").build().unwrap();
    for i in 0..400u64 {
        let (a, outcome) = if i % 3 == 0 {
            (one.analytics(), Outcome::Miss)
        } else {
            (two.analytics(), Outcome::Hit)
        };
        let mut e = event(
            a,
            "/merge",
            outcome,
            37 * (i + 1),
            &format!("user{}", i % 11),
        );
        e.bytes = i;
        e.status = if i % 50 == 0 { 500 } else { 200 };
        a.record(e.clone());
        all.analytics().record(e);
    }
    one.analytics().flush().await;
    two.analytics().flush().await;
    all.analytics().flush().await;
    let expected = all.analytics().routes(Window::FiveMinutes).await.unwrap();
    for cache in [&one, &two] {
        let got = cache.analytics().routes(Window::FiveMinutes).await.unwrap();
        assert_eq!(got, expected);
    }
    let r = &expected[0];
    assert_eq!(
        (r.requests, r.bytes_total, r.errors),
        (400, (0..400).sum(), 8)
    );
    assert_eq!(r.distinct_users, 11);
}

/// Bytes per route-minute on Redis, measured with `MEMORY USAGE` (the module docs quote it).
async fn route_minute_memory_usage_on_redis(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    for i in 0..1000u64 {
        let outcome = if i % 4 == 0 {
            Outcome::Miss
        } else {
            Outcome::Hit
        };
        let latency = if outcome == Outcome::Miss {
            20_000 + i * 97
        } else {
            200 + i * 3
        };
        a.record(event(
            a,
            "/trigs/{id}",
            outcome,
            latency,
            &format!("user{}", i % 50),
        ));
    }
    a.flush().await;
    let keys = redis_keys(&ctx).await.unwrap();
    let mut conn = ctx.server.as_ref().unwrap().connection().await;
    let usage = |kind: &'static str| {
        let key = keys.iter().find(|k| k.contains(kind)).unwrap().clone();
        let mut conn = conn.clone();
        async move {
            let n: u64 = ::redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await
                .unwrap();
            n
        }
    };
    let counters = usage(":m:").await;
    let users = usage(":u:").await;
    let fields: u64 = {
        let key = keys.iter().find(|k| k.contains(":m:")).unwrap();
        ::redis::cmd("HLEN")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    println!(
        "route-minute: counters hash {counters} B ({fields} fields), users HLL {users} B, \
         total {} B; per route per day {:.2} MiB",
        counters + users,
        (counters + users) as f64 * 1440.0 / 1048576.0
    );
    assert!(counters + users <= 2560, "{counters} + {users}");
}

mod two_instances {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        aggregates_of_two_instances_merge_to_the_sum(Ctx::new(Kind::Redis)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster() {
        aggregates_of_two_instances_merge_to_the_sum(Ctx::new(Kind::Cluster)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_usage_per_route_minute() {
        route_minute_memory_usage_on_redis(Ctx::new(Kind::Redis)).await
    }
}

/// Redis gone: recording still never fails or waits, the lost batches are counted, and the
/// queries report the error (the admin endpoint answers 503) instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_recording_fails_open_and_counts_write_errors() {
    cache_tests::init_tracing();
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(cache_tests::unique_namespace("an"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let a = cache.analytics();
    a.record(event(a, "/up", Outcome::Miss, 10, "u"));
    a.flush().await;
    assert_eq!(a.stats().write_errors, 0);
    server.kill();
    for _ in 0..50 {
        a.record(event(a, "/down", Outcome::Miss, 10, "u"));
    }
    tokio::time::timeout(Duration::from_secs(30), a.flush())
        .await
        .expect("flush returns once the writer gave the batch up");
    let stats = a.stats();
    assert_eq!((stats.accepted, stats.written, stats.dropped), (51, 51, 0));
    assert!(stats.write_errors >= 1, "{stats:?}");
    let routes = tokio::time::timeout(Duration::from_secs(30), a.routes(Window::Hour))
        .await
        .expect("the query answers");
    assert!(routes.is_err());
    let reply = cache_core::admin::analytics(&cache, Some("1h")).await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
}
