//! Instructions per cache hit, counted with `valgrind --tool=callgrind`: deterministic for a given
//! binary, unlike timings, so a change to the hit path can be compared before and after on any
//! machine. Build with `cargo bench -p cache-tests --bench hit_cost --no-run`, then run
//! `HIT_COST=<variant> valgrind --tool=callgrind target/release/deps/hit_cost-<hash>` for each
//! variant and compute `(total(variant) - total(setup)) / 10000`:
//!
//! * `get_or_load`: a typed hit (10 rows of JSON with 20 `f64`s) on the in-memory backend;
//! * `layer`: an Axum `ResponseCacheLayer` hit, in-process (`oneshot`), on the in-memory backend;
//! * `setup`: everything but the measured loop.
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

fn main() {
    match std::env::var("HIT_COST") {
        Ok(variant) => run(&variant),
        Err(_) => {
            println!("# instructions per hit: see the header of benches/hit_cost.rs (callgrind)");
            for variant in ["get_or_load", "layer"] {
                let started = std::time::Instant::now();
                run(variant);
                let per_hit = started.elapsed().as_secs_f64() * 1e6 / N as f64;
                println!("{variant:12} {per_hit:8.2} µs per hit (wall clock, {N} hits)");
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
        let cache = Cache::memory();
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
            "layer" => {
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
