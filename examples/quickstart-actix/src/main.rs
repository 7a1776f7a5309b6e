//! The README's quickstart on Actix-web: the Axum quickstart's service, in Actix's idioms.
//!
//! ```text
//! cargo run -p quickstart-actix                                     # in-memory cache
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p quickstart-actix    # Redis
//! ```
//!
//! The same calls as the Axum quickstart work on it (port 3000 by default, `ADDR` to change it).
//! This file is the README's "A complete Actix-web service", line for line (a test checks it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::error::{ErrorInternalServerError, ErrorNotFound};
use actix_web::{web, HttpResponse, HttpServer};
use cache_actix::{admin_scope, metrics_route, AdminGuard, CacheContextLayer, CacheMetrics};
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
async fn get_trig(
    app: web::Data<App>,
    id: web::Path<u32>,
) -> Result<web::Json<Trig>, actix_web::Error> {
    actix_web::rt::time::sleep(Duration::from_millis(50)).await; // the slow query the cache saves
    let db = app
        .db
        .lock()
        .map_err(|_| ErrorInternalServerError("poisoned"))?;
    let trig = db
        .get(&id)
        .cloned()
        .ok_or_else(|| ErrorNotFound("no such trig"))?;
    Ok(web::Json(trig))
}

/// `POST /trigs/{id}/logs`: a write. After it succeeds, every entry tagged `trig:{id}` is
/// invalidated (an `Err` invalidates nothing).
#[invalidates("trig:{id}", cache = app.cache.clone())]
async fn add_log(
    app: web::Data<App>,
    id: web::Path<u32>,
) -> Result<HttpResponse, actix_web::Error> {
    let mut db = app
        .db
        .lock()
        .map_err(|_| ErrorInternalServerError("poisoned"))?;
    let trig = db
        .get_mut(&id)
        .ok_or_else(|| ErrorNotFound("no such trig"))?;
    trig.logs += 1;
    Ok(HttpResponse::Created().json(&*trig))
}

#[actix_web::main]
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
    // X-Cache-* headers for #[cached] handlers; only admins may bypass the cache.
    let context = {
        let admin = admin.clone();
        CacheContextLayer::builder()
            .metrics(metrics.clone())
            .bypass_allowed(move |req| admin.allows(req))
            .build()
    };

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .wrap(context.clone())
            .app_data(web::Data::new(app.clone()))
            .route("/trigs/{id}", web::get().to(get_trig))
            .route("/trigs/{id}/logs", web::post().to(add_log))
            .service(admin_scope("/admin/cache", cache.clone(), admin.clone()))
            .service(metrics_route("/metrics", metrics.clone()))
    })
    .bind(&addr)?;
    println!("listening on http://{}", server.addrs()[0]);
    server.run().await?;
    Ok(())
}
