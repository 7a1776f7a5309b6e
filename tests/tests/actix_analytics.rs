#![allow(missing_docs)]
//! `cache_actix::AnalyticsLayer` and the admin `GET analytics` endpoint, on Redis, Redis
//! Cluster and memory: the same checks as `axum_analytics.rs`.

mod common;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use cache_actix::{admin_scope, AdminGuard, AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
use cache_core::analytics::{Outcome, Window, UNMATCHED_ROUTE};
use cache_core::metrics::CacheMetrics;
use cache_core::Cache;
use common::Ctx;
use serde_json::Value;

const USER: &str = "token-of-alice-1234";
const ITEM: &str = "{\"id\":1,\"name\":\"item one\"}";

async fn service(
    cache: &Cache,
    metrics: Option<CacheMetrics>,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    let mut layer = AnalyticsLayer::new(cache).user(|req| {
        req.headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(m) = metrics {
        layer = layer.metrics(m);
    }
    test::init_service(
        App::new()
            .route("/items/{id}", web::get().to(|| async { ITEM }))
            .route("/plain", web::get().to(|| async { "plain body" }))
            .route(
                "/private",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .insert_header(("cache-control", "private, max-age=0"))
                        .body("mine")
                }),
            )
            .route(
                "/boom",
                web::get().to(|| async { HttpResponse::InternalServerError().body("boom") }),
            )
            .service(admin_scope(
                "/admin/cache",
                cache.clone(),
                AdminGuard::bearer("s3cret"),
            ))
            .wrap(
                ResponseCacheLayer::builder(cache.clone())
                    .route("/items/{id}", RoutePolicy::ttl(Duration::from_secs(3600)))
                    .build(),
            )
            .wrap(layer),
    )
    .await
}

async fn call<S, B>(app: &S, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Vec<u8>)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let mut req = TestRequest::get().uri(uri);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    (status, test::read_body(resp).await.to_vec())
}

async fn events_recorded_for_cached_and_uncached_routes(ctx: Ctx) {
    let cache = ctx.cache();
    let app = service(&cache, None).await;
    let a = cache.analytics();
    let user = [("x-user", USER)];
    assert_eq!(
        call(&app, "/items/1", &user).await,
        (StatusCode::OK, ITEM.into())
    );
    assert_eq!(
        call(&app, "/items/1", &[]).await,
        (StatusCode::OK, ITEM.into())
    );
    assert_eq!(call(&app, "/plain", &user).await.1, b"plain body");
    assert_eq!(call(&app, "/private", &[]).await.1, b"mine");
    assert_eq!(
        call(&app, "/boom", &[]).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    a.flush().await;
    let mut events = a.recent_events(10).await.unwrap();
    events.reverse();
    let seen: Vec<(&str, &str, u16, Outcome, u64, bool)> = events
        .iter()
        .map(|e| {
            (
                e.method.as_str(),
                e.route.as_str(),
                e.status,
                e.outcome,
                e.bytes,
                e.private,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "GET",
                "/items/{id}",
                200,
                Outcome::Miss,
                ITEM.len() as u64,
                false
            ),
            (
                "GET",
                "/items/{id}",
                200,
                Outcome::Hit,
                ITEM.len() as u64,
                false
            ),
            ("GET", "/plain", 200, Outcome::None, 10, false),
            ("GET", "/private", 200, Outcome::None, 4, true),
            ("GET", "/boom", 500, Outcome::None, 4, false),
        ]
    );
    let pseudonym = a.pseudonym(USER);
    assert_eq!(events[0].user.as_deref(), Some(pseudonym.as_str()));
    assert_eq!(events[1].user, None);
    assert!(events.iter().all(|e| e.latency > Duration::ZERO));
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    let items = routes.iter().find(|r| r.route == "/items/{id}").unwrap();
    assert_eq!((items.requests, items.hit_rate), (2, Some(0.5)));
}

async fn unmatched_and_odd_paths_never_create_per_path_keys(ctx: Ctx) {
    let cache = ctx.cache();
    let app = service(&cache, None).await;
    let a = cache.analytics();
    let odd = [
        "/nope",
        "/items",
        "/items/1/extra",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/plain/",
        "/a%00b",
        "/..;/admin",
    ];
    for (i, path) in odd.iter().enumerate() {
        assert_eq!(
            call(&app, path, &[]).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        let long = format!("/x/{i}/{}", "y".repeat(300));
        assert_eq!(call(&app, &long, &[]).await.0, StatusCode::NOT_FOUND);
    }
    a.flush().await;
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(
        (routes[0].route.as_str(), routes[0].requests),
        (UNMATCHED_ROUTE, 14)
    );
    let usage = a.storage_usage().await.unwrap();
    assert_eq!((usage.routes, usage.route_minutes), (1, 1));
}

async fn route_metrics_cover_uncached_routes(ctx: Ctx) {
    let cache = ctx.cache();
    let metrics = CacheMetrics::new(cache.clone());
    let app = service(&cache, Some(metrics.clone())).await;
    call(&app, "/plain", &[]).await;
    call(&app, "/plain", &[]).await;
    let text = metrics.render();
    let plain = text
        .lines()
        .find(|l| l.starts_with("http_route_requests_total") && l.contains("route=\"/plain\""))
        .expect("plain counted");
    assert!(
        plain.ends_with(" 2") && plain.contains("status=\"200\""),
        "{plain}"
    );
}

async fn admin_analytics_json_behind_the_guard(ctx: Ctx) {
    let cache = ctx.cache();
    let app = service(&cache, None).await;
    call(&app, "/items/1", &[]).await;
    call(&app, "/items/1", &[]).await;
    cache.invalidate_tags(&["item:1"]).await.unwrap();
    cache.analytics().flush().await;
    let auth = [("authorization", "Bearer s3cret")];
    assert_eq!(
        call(&app, "/admin/cache/analytics", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = call(&app, "/admin/cache/analytics?window=2w", &auth).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(&app, "/admin/cache/analytics?window=1h", &auth).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["window"], "1h");
    let route = &body["routes"][0];
    assert_eq!(route["route"], "/items/{id}");
    assert_eq!(route["requests"], 2);
    assert_eq!(route["hit_rate"], 0.5);
    assert_eq!(body["invalidations"][0]["name"], "item:1");
}

/// The advisor behind the admin scope ranks the slow uncached route first, from the recorded
/// traffic (as `axum_analytics.rs`).
async fn advisor_ranks_the_slow_uncached_route_first_from_recorded_traffic(ctx: Ctx) {
    let cache = ctx.cache();
    let app = test::init_service(
        App::new()
            .route(
                "/slow/{id}",
                web::get().to(|id: web::Path<u32>| async move {
                    // The handler's own cost (a slow query), not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    format!("slow {id}")
                }),
            )
            .route(
                "/fast/{id}",
                web::get().to(|id: web::Path<u32>| async move { format!("fast {id}") }),
            )
            .service(admin_scope(
                "/admin/cache",
                cache.clone(),
                AdminGuard::bearer("s3cret"),
            ))
            .wrap(AnalyticsLayer::new(&cache)),
    )
    .await;
    for i in 0..30u32 {
        let id = i % 4;
        let (status, body) = call(&app, &format!("/slow/{id}"), &[]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, format!("slow {id}").into_bytes())
        );
        let (status, body) = call(&app, &format!("/fast/{id}"), &[]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, format!("fast {id}").into_bytes())
        );
    }
    cache.analytics().flush().await;
    let auth = [("authorization", "Bearer s3cret")];
    assert_eq!(
        call(&app, "/admin/cache/advisor", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&app, "/admin/cache/advisor?window=1h", &auth).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let suggestions = body["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 1, "{body}");
    assert_eq!(suggestions[0]["route"], "GET /slow/{id}");
    assert!(
        suggestions[0]["why"]
            .as_str()
            .unwrap()
            .contains("over 4 keys"),
        "{body}"
    );
}

/// Warming from analytics replays the top targets through the service: after a flush they are
/// hits with the handler's bodies, the others are not warmed, and replays are not traffic.
async fn warm_from_analytics_refills_the_top_targets_with_the_origins_bodies(ctx: Ctx) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let cache = ctx.cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(counter))
            .route(
                "/items/{id}",
                web::get().to(
                    |id: web::Path<u32>, runs: web::Data<Arc<AtomicUsize>>| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        format!("item {id}")
                    },
                ),
            )
            .wrap(
                ResponseCacheLayer::builder(cache.clone())
                    .route("/items/{id}", RoutePolicy::ttl(Duration::from_secs(3600)))
                    .build(),
            )
            .wrap(AnalyticsLayer::new(&cache)),
    )
    .await;
    for id in [1, 1, 1, 2, 2, 3] {
        let (status, body) = call(&app, &format!("/items/{id}"), &[]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, format!("item {id}").into_bytes())
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    cache.analytics().flush().await;
    cache.clear().await.unwrap();
    let report = cache_actix::warm_from_analytics(&cache, &app, Window::FiveMinutes, 2)
        .await
        .unwrap();
    assert_eq!(
        (report.keys, report.loaded, report.present, report.failed),
        (2, 2, 0, 0)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    for (id, status) in [(1, "HIT"), (2, "HIT"), (3, "MISS")] {
        let resp = test::call_service(
            &app,
            TestRequest::get().uri(&format!("/items/{id}")).to_request(),
        )
        .await;
        assert_eq!(
            resp.headers().get("x-cache-status").unwrap(),
            status,
            "/items/{id}"
        );
        assert_eq!(test::read_body(resp).await, format!("item {id}").as_bytes());
    }
    let again = cache_actix::warm_from_analytics(&cache, &app, Window::FiveMinutes, 2)
        .await
        .unwrap();
    assert_eq!((again.keys, again.present), (2, 2));
    cache.analytics().flush().await;
    let routes = cache.analytics().routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes[0].requests, 9, "the replays are not traffic");
}

on_both_backends_actix!(
    events_recorded_for_cached_and_uncached_routes,
    advisor_ranks_the_slow_uncached_route_first_from_recorded_traffic,
    warm_from_analytics_refills_the_top_targets_with_the_origins_bodies,
    unmatched_and_odd_paths_never_create_per_path_keys,
    route_metrics_cover_uncached_routes,
    admin_analytics_json_behind_the_guard,
);
