//! A `#[cached]` handler returning `Json<T>` sends, on a hit and to callers that waited on the
//! load, byte for byte the body the miss sent, even when `T` serializes differently from one
//! instance to the next (a `HashMap`'s key order is random per instance): the context layer
//! sends the stored JSON payload instead of the value re-serialized.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cache_core::{cached, Cache};
use common::Ctx;
use serde::{Deserialize, Serialize};

/// A value whose JSON depends on the instance: 64 keys in a `HashMap` come out in a different
/// order from a decoded copy almost surely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counts {
    id: u32,
    by_name: HashMap<String, u32>,
}

fn counts(id: u32) -> Counts {
    Counts {
        id,
        by_name: (0..64).map(|i| (format!("name-{i}"), i * id)).collect(),
    }
}

#[derive(Clone)]
struct App {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

mod axum_side {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Path, State};
    use axum::http::Request;
    use axum::routing::get;
    use axum::{Json, Router};
    use cache_axum::CacheContextLayer;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[cached(resource = "counts", ttl = "1h", cache = &app.cache)]
    async fn cached_counts(State(app): State<App>, Path(id): Path<u32>) -> Json<Counts> {
        app.loads.fetch_add(1, Ordering::SeqCst);
        // Let concurrent requests join this load.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        Json(counts(id))
    }

    async fn get_body(router: &Router, uri: &str) -> (String, bytes::Bytes) {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let label = resp.headers()["x-cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        (label, resp.into_body().collect().await.unwrap().to_bytes())
    }

    pub(super) async fn a_json_handler_hit_is_byte_for_byte_the_miss_axum(ctx: Ctx) {
        let app = App {
            cache: ctx.cache(),
            loads: Arc::default(),
        };
        let router = Router::new()
            .route("/counts/{id}", get(cached_counts))
            .with_state(app.clone())
            .layer(CacheContextLayer::builder().build());
        // Eight concurrent cold requests: one loads, the others get the stored bytes.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let router = router.clone();
            tasks.push(tokio::spawn(
                async move { get_body(&router, "/counts/3").await },
            ));
        }
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        let (label, hit) = get_body(&router, "/counts/3").await;
        assert_eq!(label, "HIT");
        assert_eq!(app.loads.load(Ordering::SeqCst), 1);
        let first = &bodies[0].1;
        let value: Counts = serde_json::from_slice(first).unwrap();
        assert_eq!(value, counts(3), "the origin's value");
        for (label, body) in bodies.iter().chain(std::iter::once(&(label, hit))) {
            assert_eq!(
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(first),
                "{label}: the same bytes as the miss"
            );
        }
    }
}

mod actix_side {
    use super::*;
    use actix_web::test::{self, TestRequest};
    use actix_web::web::{self, Json};
    use cache_actix::CacheContextLayer;

    #[cached(resource = "counts", ttl = "1h", cache = &app.cache)]
    async fn cached_counts(app: web::Data<App>, id: web::Path<u32>) -> Json<Counts> {
        app.loads.fetch_add(1, Ordering::SeqCst);
        Json(counts(*id))
    }

    pub(super) async fn a_json_handler_hit_is_byte_for_byte_the_miss_actix(ctx: Ctx) {
        let app = App {
            cache: ctx.cache(),
            loads: Arc::default(),
        };
        let service = test::init_service(
            actix_web::App::new()
                .wrap(CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/counts/{id}", web::get().to(cached_counts)),
        )
        .await;
        let mut bodies = Vec::new();
        for expected in ["MISS", "HIT", "HIT"] {
            let resp =
                test::call_service(&service, TestRequest::get().uri("/counts/5").to_request())
                    .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), expected);
            bodies.push(test::read_body(resp).await);
        }
        assert_eq!(app.loads.load(Ordering::SeqCst), 1);
        let value: Counts = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(value, counts(5), "the origin's value");
        for body in &bodies[1..] {
            assert_eq!(
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&bodies[0]),
                "a hit sends the same bytes as the miss"
            );
        }
    }
}

use actix_side::a_json_handler_hit_is_byte_for_byte_the_miss_actix;
use axum_side::a_json_handler_hit_is_byte_for_byte_the_miss_axum;

on_both_backends!(a_json_handler_hit_is_byte_for_byte_the_miss_axum);

mod actix {
    use super::*;
    on_both_backends_actix!(a_json_handler_hit_is_byte_for_byte_the_miss_actix);
}
