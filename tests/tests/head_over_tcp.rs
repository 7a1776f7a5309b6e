#![allow(missing_docs)]
//! `HEAD` answered from the cache, through real servers (the server writes `Content-Length` and
//! strips the body, so this cannot be seen in-process), on Redis and memory: the `Content-Length`
//! of a `HEAD` hit is the length of the `GET` body, the hit does not run the handler, and the
//! `GET` body is the origin's. Axum's response layer and a `#[cached]` Axum handler; Actix's
//! response layer with `.head_from_get(true)` on a route that answers `HEAD`.
//! (`axum_differential.rs` / `actix_differential.rs` compare `HEAD` lengths too, without
//! checking that the answer is a hit; the Actix one runs with `head_from_get` off, so its `HEAD`
//! requests reach the handler.)

mod common;

#[path = "common/items_api.rs"]
mod items_api;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use items_api::{tcp_send, Reply, Req};

const HOUR: Duration = Duration::from_secs(3600);

fn head(uri: &str) -> Req {
    Req {
        method: "HEAD",
        ..Req::get(uri)
    }
}

/// The origin's body for item `id`: long enough to notice a wrong length.
fn item_body(id: u32) -> String {
    format!(
        "{{\"id\":{id},\"name\":\"Item {id} «ünïcödé»\",\"price\":{},\"notes\":\"{}\"}}",
        55.398430706246764 * f64::from(id),
        "x".repeat(300)
    )
}

/// Checks a `GET` then a `HEAD` of `uri` over TCP; `runs` counts the handler runs.
fn check_head_hit(uri: &str, get: &Reply, head: &Reply, body: &str, runs: usize) {
    assert_eq!(
        (get.status, get.h("x-cache-status")),
        (200, Some("MISS")),
        "GET {uri}"
    );
    assert_eq!(get.text(), body, "GET {uri}: the origin's body");
    assert_eq!(
        (head.status, head.h("x-cache-status"), head.body.len()),
        (200, Some("HIT"), 0),
        "HEAD {uri}: a hit without a body ({})",
        head.brief()
    );
    assert_eq!(
        head.h("content-length"),
        Some(body.len().to_string().as_str()),
        "HEAD {uri} over TCP must announce the GET body's length ({})",
        head.brief()
    );
    assert_eq!(runs, 1, "the HEAD hit did not run the handler");
}

// ============================================================================= axum

mod axum_head {
    use super::*;
    use axum::extract::{Path, State};
    use axum::routing::get;
    use axum::{Json, Router};
    use cache_axum::{CacheContextLayer, ResponseCacheLayer, RoutePolicy};
    use cache_core::{cached, Cache};
    use common::Ctx;
    use serde::{Deserialize, Serialize};

    /// Serves `router` on a free port until the returned handle is aborted.
    async fn serve(router: Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        (addr, server)
    }

    async fn a_head_hit_of_the_response_layer_announces_the_get_body_length(ctx: Ctx) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let router = Router::new()
            .route(
                "/items/{id}",
                get(move |Path(id): Path<u32>| {
                    let runs = counted.clone();
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        ([("content-type", "application/json")], item_body(id))
                    }
                }),
            )
            .layer(
                ResponseCacheLayer::builder(ctx.cache())
                    .route("/items/{id}", RoutePolicy::ttl(HOUR).resource("item"))
                    .build(),
            );
        let (addr, server) = serve(router).await;
        let get = tcp_send(addr, &Req::get("/items/3")).await;
        let head = tcp_send(addr, &head("/items/3")).await;
        server.abort();
        check_head_hit(
            "/items/3",
            &get,
            &head,
            &item_body(3),
            runs.load(Ordering::SeqCst),
        );
    }

    #[derive(Clone)]
    struct App {
        cache: Cache,
        runs: Arc<AtomicUsize>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Item {
        id: u32,
        name: String,
        price: f64,
        notes: String,
    }

    fn item(id: u32) -> Item {
        Item {
            id,
            name: format!("Item {id} «ünïcödé»"),
            price: 55.398430706246764 * f64::from(id),
            notes: "x".repeat(300),
        }
    }

    #[cached(resource = "item", ttl = "1h", cache = &app.cache)]
    async fn cached_item(State(app): State<App>, Path(id): Path<u32>) -> Json<Item> {
        app.runs.fetch_add(1, Ordering::SeqCst);
        Json(item(id))
    }

    async fn a_head_hit_of_a_cached_json_handler_announces_the_get_body_length(ctx: Ctx) {
        let app = App {
            cache: ctx.cache(),
            runs: Arc::default(),
        };
        let router = Router::new()
            .route("/items/{id}", get(cached_item))
            .with_state(app.clone())
            .layer(CacheContextLayer::builder().build());
        let (addr, server) = serve(router).await;
        let get = tcp_send(addr, &Req::get("/items/5")).await;
        let head = tcp_send(addr, &head("/items/5")).await;
        server.abort();
        let body = serde_json::to_string(&item(5)).unwrap();
        check_head_hit(
            "/items/5",
            &get,
            &head,
            &body,
            app.runs.load(Ordering::SeqCst),
        );
    }

    on_both_backends!(
        a_head_hit_of_the_response_layer_announces_the_get_body_length,
        a_head_hit_of_a_cached_json_handler_announces_the_get_body_length,
    );
}

// ============================================================================= actix

mod actix_head {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use cache_actix::{ResponseCacheLayer, RoutePolicy};
    use common::Ctx;

    async fn a_head_hit_of_the_response_layer_with_head_from_get_announces_the_get_body_length(
        ctx: Ctx,
    ) {
        let runs = web::Data::new(AtomicUsize::new(0));
        let layer = ResponseCacheLayer::builder(ctx.cache())
            .route("/items/{id}", RoutePolicy::ttl(HOUR).resource("item"))
            .head_from_get(true)
            .build();
        async fn get_item(runs: web::Data<AtomicUsize>, id: web::Path<u32>) -> HttpResponse {
            runs.fetch_add(1, Ordering::SeqCst);
            HttpResponse::Ok()
                .content_type("application/json")
                .body(item_body(*id))
        }
        let server = {
            let runs = runs.clone();
            HttpServer::new(move || {
                App::new()
                    .wrap(layer.clone())
                    .app_data(runs.clone())
                    .service(
                        web::resource("/items/{id}")
                            .route(web::get().to(get_item))
                            .route(web::head().to(get_item)),
                    )
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap()
        };
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let get = tcp_send(addr, &Req::get("/items/4")).await;
        let head = tcp_send(addr, &head("/items/4")).await;
        handle.stop(true).await;
        check_head_hit(
            "/items/4",
            &get,
            &head,
            &item_body(4),
            runs.load(Ordering::SeqCst),
        );
    }

    on_both_backends_actix!(
        a_head_hit_of_the_response_layer_with_head_from_get_announces_the_get_body_length,
    );
}
