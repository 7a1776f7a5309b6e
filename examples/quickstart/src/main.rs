//! A small trig-point API cached with `cache-core`.
//!
//! Run it with the embedded default (in-memory cache, no Redis needed):
//!
//! ```text
//! cargo run -p quickstart
//! ```
//!
//! or against Redis: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p quickstart`.
//! Then try:
//!
//! ```text
//! curl -i localhost:3000/trigs/1          # X-Cache-Status: MISS (a 50 ms "database" read)
//! curl -i localhost:3000/trigs/1          # X-Cache-Status: HIT
//! curl -i -X POST localhost:3000/trigs/1/logs   # a write: invalidates tag trig:1
//! curl -i localhost:3000/trigs/1          # MISS again, with the new log count
//! curl -s localhost:3000/cache/stats      # counters per resource, backend facts, health
//! ```
//!
//! The HTTP glue here is written by hand to show the engine's API; `cache-axum` will provide it
//! as middleware.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_core::{Cache, Policy};
use serde::{Deserialize, Serialize};

/// A trig point, as the "database" returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
    logs: u32,
}

/// The application state: the cache handle and a stand-in for a SQL database.
#[derive(Clone)]
struct App {
    cache: Cache,
    db: Arc<Mutex<HashMap<u32, Trig>>>,
}

impl App {
    /// A slow database read (50 ms), the cost the cache saves.
    async fn load_trig(&self, id: u32) -> Option<Trig> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.db.lock().ok()?.get(&id).cloned()
    }
}

/// `GET /trigs/{id}`: cached for 24 h under tag `trig:{id}`; `Cache-Control: no-cache` bypasses.
async fn get_trig(
    State(app): State<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let key = app.cache.key("trig").id(id).build();
    let bypass = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache"));
    let policy = Policy::ttl(Duration::from_secs(24 * 3600))
        .tag(format!("trig:{id}"))
        .bypass(bypass);
    let fetched = app
        .cache
        .fetch(&key, policy, || async {
            app.load_trig(id).await.ok_or(StatusCode::NOT_FOUND)
        })
        .await;
    match fetched {
        Ok(f) => {
            let mut h = HeaderMap::new();
            h.insert(
                "x-cache-status",
                HeaderValue::from_static(f.status.as_str()),
            );
            if let Ok(v) = HeaderValue::from_str(key.as_str()) {
                h.insert("x-cache-key", v);
            }
            if f.status.is_from_cache() {
                h.insert("x-cache-age", f.age.as_secs().into());
                h.insert("x-cache-ttl", f.ttl.as_secs().into());
            }
            (h, Json(f.value)).into_response()
        }
        Err(status) => status.into_response(),
    }
}

/// `POST /trigs/{id}/logs`: a write, then the invalidation of everything tagged `trig:{id}`.
async fn add_log(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse {
    let updated = {
        let Ok(mut db) = app.db.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        match db.get_mut(&id) {
            Some(trig) => {
                trig.logs += 1;
                trig.clone()
            }
            None => return StatusCode::NOT_FOUND.into_response(),
        }
    };
    if let Err(e) = app.cache.invalidate_tags(&[format!("trig:{id}")]).await {
        // The write succeeded; the cache could not be told. TTLs bound the staleness.
        tracing::error!(error = %e, "invalidation failed");
    }
    (StatusCode::CREATED, Json(updated)).into_response()
}

/// `GET /cache/stats`: our counters, the backend's facts and health.
async fn stats(State(app): State<App>) -> impl IntoResponse {
    let backend = app.cache.backend_info().await.ok();
    Json(serde_json::json!({
        "counters": app.cache.stats(),
        "backend": backend,
        "health": app.cache.health().await,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cache_core=debug".into()),
        )
        .init();
    let cache = Cache::builder().namespace("quickstart");
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => cache.redis_url(url),
        _ => cache,
    }
    .build()?;
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
    let router = Router::new()
        .route("/trigs/{id}", get(get_trig))
        .route("/trigs/{id}/logs", post(add_log))
        .route("/cache/stats", get(stats))
        .with_state(app);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        backend = cache.backend_kind(),
        "quickstart listening on http://{addr} — try: curl -i http://{addr}/trigs/1"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
