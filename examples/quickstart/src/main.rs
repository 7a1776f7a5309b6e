//! The README's quickstart: a small Axum service cached by annotation.
//!
//! ```text
//! cargo run -p quickstart                                     # in-memory cache, no Redis needed
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p quickstart    # Redis
//! ```
//!
//! Then, in another shell:
//!
//! ```text
//! curl -i localhost:3000/trigs/1                   # X-Cache-Status: MISS (a 50 ms "database" read)
//! curl -i localhost:3000/trigs/1                   # HIT, X-Cache-Age, X-Cache-TTL
//! curl -i -X POST localhost:3000/trigs/1/logs      # 201: a write, invalidates tag trig:1
//! curl -i localhost:3000/trigs/1                   # MISS, with the new log count
//! curl -s -H 'Authorization: Bearer dev-admin-token' localhost:3000/admin/cache/stats
//! curl -s localhost:3000/metrics
//! ```
//!
//! This file is the README's "A complete Axum service", line for line (a test checks it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_axum::{admin_router, metrics_route, AdminGuard, CacheContextLayer, CacheMetrics};
use cache_core::{cached, invalidates, Cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
    logs: u32,
}

/// The state the handlers share: the cache and a stand-in for a SQL database.
#[derive(Clone)]
struct App {
    cache: Cache,
    db: Arc<Mutex<HashMap<u32, Trig>>>,
}

/// `GET /trigs/{id}`: cached for 24 h under `cache:v1:trig:{id}`, tagged `trig:{id}`.
/// Only `Ok` is cached: an unknown id answers 404 every time.
#[cached(resource = "trig", ttl = "24h", tags = ["trig:{id}"], cache = app.cache.clone())]
async fn get_trig(State(app): State<App>, Path(id): Path<u32>) -> Result<Json<Trig>, StatusCode> {
    tokio::time::sleep(Duration::from_millis(50)).await; // the slow query the cache saves
    let db = app
        .db
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    db.get(&id).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
}

/// `POST /trigs/{id}/logs`: a write. After it succeeds, every entry tagged `trig:{id}` is
/// invalidated (an `Err` invalidates nothing).
#[invalidates("trig:{id}", cache = app.cache.clone())]
async fn add_log(
    State(app): State<App>,
    Path(id): Path<u32>,
) -> Result<(StatusCode, Json<Trig>), StatusCode> {
    let mut db = app
        .db
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let trig = db.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    trig.logs += 1;
    Ok((StatusCode::CREATED, Json(trig.clone())))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // REDIS_URL set: Redis; unset: the in-memory backend. CACHE_ENABLED=false turns it off.
    let cache = Cache::from_env()?;
    // The default for `#[cached]` / `#[invalidates]` functions without `cache = ...`.
    cache_core::install_default(cache.clone())?;

    let db = (1..=100)
        .map(|id| {
            (
                id,
                Trig {
                    id,
                    name: format!("Trig {id}"),
                    logs: 0,
                },
            )
        })
        .collect();
    let app = App {
        cache: cache.clone(),
        db: Arc::new(Mutex::new(db)),
    };

    let token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "dev-admin-token".into());
    let admin = AdminGuard::bearer(token);
    let metrics = CacheMetrics::new(cache.clone());
    let router = Router::new()
        .route("/trigs/{id}", get(get_trig))
        .route("/trigs/{id}/logs", post(add_log))
        .with_state(app)
        // Admin API and metrics are `Router<()>`: add them after `with_state`.
        .nest("/admin/cache", admin_router(cache.clone(), admin.clone()))
        .merge(metrics_route("/metrics", metrics.clone()))
        // X-Cache-* headers for #[cached] handlers; only admins may bypass the cache.
        .layer(
            CacheContextLayer::builder()
                .metrics(metrics)
                .bypass_allowed(move |parts| admin.allows(parts))
                .build(),
        );

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
