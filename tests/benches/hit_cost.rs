//! Instructions per cache hit, counted with `valgrind --tool=callgrind`: deterministic for a given
//! binary, unlike timings, so a change to the hit path can be compared before and after on any
//! machine. Build with `cargo bench -p cache-tests --bench hit_cost --no-run`, then run
//! `HIT_COST=<variant> valgrind --tool=callgrind target/release/deps/hit_cost-<hash>` for each
//! variant and compute `(total(variant) - total(setup)) / 10000`:
//!
//! * `get_or_load`: a typed hit (10 rows of JSON with 20 `f64`s) on the in-memory backend;
//! * `layer`: an Axum `ResponseCacheLayer` hit, in-process (`oneshot`), on the in-memory backend;
//! * `layer_l1`: the same hit served by the in-process tier (L1) in front of that backend;
//! * `setup`: everything but the measured loop.
//!
//! Measured on 2026-11-30 (whole program / 10 000): `layer` 28.7k and `layer_l1` 27.4k
//! instructions per request, of which the cache layer (`cache_axum::layer::handle`) 17.9k on
//! an L1 hit: planning the request and building its key 4.9k (the key's id segments 1.4k,
//! header lookups by `&str` name, each name parsed, 0.9k), the engine's read 5.0k (the L1
//! `get` 1.5k, re-parsing the stored headers 0.85k), and the response 4.0k (building its
//! `HeaderMap` 2.4k). Allocation and copies are about a third of the program.
//!
//! And on a real Redis (a `redis-server` the bench starts; valgrind counts the client's
//! instructions only), with the 1 KiB page of the peer bench: `redis_raw` (redis-rs `GET` +
//! `serde_json`), `redis_cached` (the `cached` crate's `AsyncRedisCache`), `redis_json` and
//! `redis_compact` (ours, `get_or_load`), against `redis_setup`. On a 2-core machine where the
//! server shares the cores, the client's instructions per hit bound the many-task throughput.
//! Measured on 2026-11-30 (10 000 hits each, setup subtracted): `redis_raw` 66.3k,
//! `redis_cached` 38.2k, `redis_json` 69.5k, `redis_compact` 36.0k instructions per hit. About
//! half of ours and of `cached`'s is the decode of the owned value (its `String`s' allocations);
//! most of the rest is redis-rs's connection and tokio.
//!
//! Without valgrind (`cargo bench`), it runs each variant and prints the time per hit.
#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use cache_axum::{ResponseCacheLayer, RoutePolicy};
use cache_core::Cache;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

const N: usize = 10_000;

#[derive(Serialize, Deserialize, Clone)]
struct Row {
    id: u64,
    name: String,
    lat: f64,
    lon: f64,
}

fn rows() -> Vec<Row> {
    (0..10)
        .map(|id| Row {
            id,
            name: format!("trig point number {id}"),
            lat: 55.398430706246764,
            lon: -4.123,
        })
        .collect()
}

#[path = "support/records.rs"]
mod records;

fn main() {
    match std::env::var("HIT_COST") {
        Ok(variant) if variant.starts_with("redis_") => run_redis(&variant),
        Ok(variant) => run(&variant),
        Err(_) => {
            println!("# instructions per hit: see the header of benches/hit_cost.rs (callgrind)");
            for variant in ["get_or_load", "layer", "layer_l1"] {
                let started = std::time::Instant::now();
                run(variant);
                let per_hit = started.elapsed().as_secs_f64() * 1e6 / N as f64;
                println!("{variant:12} {per_hit:8.2} µs per hit (wall clock, {N} hits)");
            }
            for variant in ["redis_raw", "redis_cached", "redis_json", "redis_compact"] {
                let started = std::time::Instant::now();
                run_redis(variant);
                let per_hit = started.elapsed().as_secs_f64() * 1e6 / N as f64;
                println!(
                    "{variant:12} {per_hit:8.2} µs per hit (wall clock, {N} hits, with setup)"
                );
            }
        }
    }
}

fn run(variant: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // `*_l1`: the same on a cache with the in-process tier in front of the backend.
        let cache = if variant.ends_with("_l1") {
            let cache = Cache::builder().l1(16 * 1024 * 1024).build().unwrap();
            while !cache.l1_status().is_some_and(|s| s.live) {
                tokio::task::yield_now().await;
            }
            cache
        } else {
            Cache::memory()
        };
        let key = cache.key("trig").id(1).build();
        let ttl = Duration::from_secs(3600);
        let _: Vec<Row> = cache.get_or_load(&key, ttl, || async { rows() }).await;
        let app = Router::new()
            .route(
                "/trigs/{id}",
                get(|Path(id): Path<u32>| async move {
                    axum::Json(serde_json::json!({"id": id, "rows": 10}))
                }),
            )
            .layer(
                ResponseCacheLayer::builder(cache.clone())
                    .route("/trigs/{id}", RoutePolicy::ttl(ttl))
                    .build(),
            );
        let req = || {
            axum::http::Request::get("/trigs/1")
                .body(Body::empty())
                .unwrap()
        };
        let _ = app
            .clone()
            .oneshot(req())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        match variant {
            "get_or_load" => {
                for _ in 0..N {
                    let v: Vec<Row> = cache
                        .get_or_load(&key, ttl, || async { unreachable!() })
                        .await;
                    std::hint::black_box(v);
                }
            }
            "layer" | "layer_l1" => {
                for _ in 0..N {
                    let resp = app.clone().oneshot(req()).await.unwrap();
                    assert_eq!(resp.headers()["x-cache-status"], "HIT");
                    std::hint::black_box(resp.into_body().collect().await.unwrap().to_bytes());
                }
            }
            _ => {}
        }
    });
}

fn run_redis(variant: &str) {
    use cached::ConcurrentCachedAsync;
    let server = cache_tests::RedisServer::start_owned();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ttl = Duration::from_secs(3600);
        let page = records::page(1, 1024);
        let ours = |codec| {
            Cache::builder()
                .namespace("hitcost")
                .redis_url(url.clone())
                .codec(codec)
                .build()
                .unwrap()
        };
        let json = ours(cache_core::Codec::Json);
        let compact = ours(cache_core::Codec::Compact);
        let key = json.key("items").id(1).build();
        let ckey = compact.key("items").id(2).build();
        let _: records::Page = json.get_or_load(&key, ttl, || async { page.clone() }).await;
        let _: records::Page = compact
            .get_or_load(&ckey, ttl, || async { page.clone() })
            .await;
        let peer = cached::AsyncRedisCache::<u64, records::Page>::builder("hitcost-cached")
            .namespace("peers")
            .connection_string(&url)
            .ttl(ttl)
            .build()
            .await
            .unwrap();
        peer.async_cache_set(1, page.clone()).await.unwrap();
        let mut raw = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("SET")
            .arg("hitcost-raw")
            .arg(serde_json::to_vec(&page).unwrap())
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        match variant {
            "redis_raw" => {
                for _ in 0..N {
                    let mut con = raw.clone();
                    let bytes: Vec<u8> = redis::cmd("GET")
                        .arg("hitcost-raw")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    let v: records::Page = serde_json::from_slice(&bytes).unwrap();
                    std::hint::black_box(v);
                }
            }
            "redis_cached" => {
                for _ in 0..N {
                    let v = peer.async_cache_get(&1).await.unwrap().unwrap();
                    std::hint::black_box(v);
                }
            }
            "redis_json" | "redis_compact" => {
                let (cache, key) = if variant == "redis_json" {
                    (&json, &key)
                } else {
                    (&compact, &ckey)
                };
                for _ in 0..N {
                    let v: records::Page = cache
                        .get_or_load(key, ttl, || async { unreachable!() })
                        .await;
                    std::hint::black_box(v);
                }
            }
            _ => {}
        }
    });
}
