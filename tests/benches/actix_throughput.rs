//! End-to-end HTTP throughput: what does `cache_actix::ResponseCacheLayer` buy on a slow
//! handler? The same routes, client and report as `axum_throughput` (`support/http_load.rs`).
//!
//! Run with `cargo bench -p cache-tests --bench actix_throughput`. Starts its own
//! `redis-server` (or uses `REDIS_URL`), serves an Actix app (`HttpServer`, 2 workers, on its
//! own threads) on `127.0.0.1:0`, and drives it over loopback with concurrent keep-alive
//! clients on a tokio runtime.
#![allow(missing_docs)]

#[path = "support/http_load.rs"]
mod http_load;

use actix_web::{web, App, HttpResponse, HttpServer};
use cache_actix::{ResponseCacheLayer, RoutePolicy};

use http_load::{document, Served, DB_LATENCY, STATIC_BODY, TTL};

/// Actix server worker threads.
const WORKERS: usize = 2;

async fn data(id: web::Path<u32>) -> HttpResponse {
    tokio::time::sleep(DB_LATENCY).await;
    HttpResponse::Ok().json(document(*id))
}

fn main() {
    http_load::run(
        "actix-web",
        "cargo bench -p cache-tests --bench actix_throughput",
        |cache, listener| {
            let addr = listener.local_addr().expect("local addr");
            let layer = ResponseCacheLayer::builder(cache)
                .route("/cached/{id}", RoutePolicy::ttl(TTL))
                .build();
            // The server runs on its own actix system; the process exit stops it.
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    HttpServer::new(move || {
                        App::new()
                            .route("/uncached/{id}", web::get().to(data))
                            .route(
                                "/static",
                                web::get().to(|| async { HttpResponse::Ok().body(STATIC_BODY) }),
                            )
                            .service(
                                web::scope("")
                                    .wrap(layer.clone())
                                    .route("/cached/{id}", web::get().to(data)),
                            )
                    })
                    .workers(WORKERS)
                    .disable_signals()
                    .listen(listener)
                    .expect("listen")
                    .run()
                    .await
                    .expect("actix server");
                });
            });
            Served {
                addr,
                description: format!("actix HttpServer with {WORKERS} workers on its own threads"),
            }
        },
    );
}
