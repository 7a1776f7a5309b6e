//! End-to-end HTTP throughput: what does `cache_axum::ResponseCacheLayer` buy on a slow handler?
//!
//! Run with `cargo bench -p cache-tests --bench axum_throughput`. Starts its own `redis-server`
//! (or uses `REDIS_URL`), serves an Axum app with `axum::serve` on `127.0.0.1:0` inside the
//! bench's tokio multi-thread runtime, and drives it over loopback with concurrent keep-alive
//! clients. The routes, client and report are shared with `actix_throughput`
//! (`support/http_load.rs`).
#![allow(missing_docs)]

#[path = "support/http_load.rs"]
mod http_load;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::{ResponseCacheLayer, RoutePolicy};
use cache_core::Cache;
use serde_json::Value;

use http_load::{document, Served, DB_LATENCY, STATIC_BODY, TTL};

async fn data(Path(id): Path<u32>) -> Json<Value> {
    tokio::time::sleep(DB_LATENCY).await;
    Json(document(id))
}

fn app(cache: Cache) -> Router {
    let layer = ResponseCacheLayer::builder(cache)
        .route("/cached/{id}", RoutePolicy::ttl(TTL))
        .build();
    let cached = Router::new().route("/cached/{id}", get(data)).layer(layer);
    Router::new()
        .route("/uncached/{id}", get(data))
        .route("/static", get(|| async { STATIC_BODY }))
        .merge(cached)
}

fn main() {
    http_load::run(
        "axum",
        "cargo bench -p cache-tests --bench axum_throughput",
        |cache, listener| {
            listener.set_nonblocking(true).expect("non-blocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let addr = listener.local_addr().expect("local addr");
            let app = app(cache);
            tokio::spawn(async move {
                axum::serve(listener, app).await.expect("axum::serve");
            });
            Served {
                addr,
                description: "axum::serve on the same runtime as the clients".to_owned(),
            }
        },
    );
}
