#![allow(missing_docs)]
//! `cache_axum::AnalyticsLayer` and the admin `GET analytics` endpoint, on Redis, Redis Cluster
//! and memory: events of cached and uncached routes with the right fields, unmatched and odd
//! paths under one label, per-route Prometheus metrics, the guarded JSON.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_axum::{admin_router, AdminGuard, AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
use cache_core::analytics::{Outcome, Window, UNMATCHED_ROUTE};
use cache_core::metrics::CacheMetrics;
use cache_core::Cache;
use common::Ctx;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const USER: &str = "token-of-alice-1234";
const ITEM: &str = "{\"id\":1,\"name\":\"item one\"}";

fn app(cache: &Cache, metrics: Option<CacheMetrics>) -> Router {
    let mut layer = AnalyticsLayer::new(cache).user(|parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(m) = metrics {
        layer = layer.metrics(m);
    }
    Router::new()
        .route("/items/{id}", get(|| async { ITEM }))
        .route("/plain", get(|| async { "plain body" }))
        .route(
            "/private",
            get(|| async { ([("cache-control", "private, max-age=0")], "mine") }),
        )
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(
            ResponseCacheLayer::builder(cache.clone())
                .route("/items/{id}", RoutePolicy::ttl(Duration::from_secs(3600)))
                .build(),
        )
        .layer(layer)
}

async fn get_body(app: &Router, uri: &str, user: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::builder().uri(uri);
    if let Some(u) = user {
        req = req.header("x-user", u);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn events_recorded_for_cached_and_uncached_routes(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(&cache, None);
    let a = cache.analytics();
    assert_eq!(
        get_body(&app, "/items/1", Some(USER)).await,
        (StatusCode::OK, ITEM.into())
    );
    assert_eq!(
        get_body(&app, "/items/1", None).await,
        (StatusCode::OK, ITEM.into())
    );
    assert_eq!(get_body(&app, "/plain", Some(USER)).await.1, "plain body");
    assert_eq!(get_body(&app, "/private", None).await.1, "mine");
    assert_eq!(
        get_body(&app, "/boom", None).await.0,
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
    assert_eq!(events[2].user.as_deref(), Some(pseudonym.as_str()));
    assert!(events.iter().all(|e| e.latency > Duration::ZERO));
    let now = a.now_ms();
    assert!(events
        .iter()
        .all(|e| e.start_ms <= now && e.start_ms + 60_000 > now));
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    let items = routes.iter().find(|r| r.route == "/items/{id}").unwrap();
    assert_eq!((items.requests, items.hit_rate), (2, Some(0.5)));
    let boom = routes.iter().find(|r| r.route == "/boom").unwrap();
    assert_eq!(boom.error_rate, 1.0);
}

async fn unmatched_and_odd_paths_never_create_per_path_keys(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(&cache, None);
    let a = cache.analytics();
    let odd = [
        "/nope",
        "/items",
        "/items/1/extra",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/plain/",
        "/a%00b",
        "/..;/admin",
        "/ünïcödé",
    ];
    for (i, path) in odd.iter().enumerate() {
        let (status, _) = get_body(&app, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let long = format!("/x/{i}/{}", "y".repeat(300));
        assert_eq!(get_body(&app, &long, None).await.0, StatusCode::NOT_FOUND);
    }
    a.flush().await;
    let routes = a.routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(
        (routes[0].route.as_str(), routes[0].requests),
        (UNMATCHED_ROUTE, 16)
    );
    let usage = a.storage_usage().await.unwrap();
    assert_eq!((usage.routes, usage.route_minutes), (1, 1));
    if let Some(server) = ctx.server.as_ref() {
        let mut conn = server.connection().await;
        let keys: Vec<String> = ::redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(format!("{}:an:*", ctx.namespace))
            .arg("COUNT")
            .arg(10_000)
            .query_async::<(u64, Vec<String>)>(&mut conn)
            .await
            .unwrap()
            .1;
        // The stream, the index, one counters hash: nothing named after a path.
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(keys
            .iter()
            .all(|k| !k.contains("passwd") && !k.contains("yyy")));
    }
}

async fn route_metrics_cover_uncached_routes(ctx: Ctx) {
    let cache = ctx.cache();
    let metrics = CacheMetrics::new(cache.clone());
    let app = app(&cache, Some(metrics.clone()));
    get_body(&app, "/plain", None).await;
    get_body(&app, "/plain", None).await;
    get_body(&app, "/nope/1", None).await;
    let text = metrics.render();
    let line = |name: &str, route: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("route=\"{route}\"")))
            .map(str::to_owned)
    };
    let plain = line("http_route_requests_total", "/plain").expect("plain counted");
    assert!(
        plain.ends_with(" 2") && plain.contains("status=\"200\""),
        "{plain}"
    );
    let unmatched = line("http_route_requests_total", UNMATCHED_ROUTE).expect("404 counted");
    assert!(
        unmatched.contains("status=\"404\"") && unmatched.ends_with(" 1"),
        "{unmatched}"
    );
    let count = line("http_route_duration_seconds_count", "/plain").expect("histogram");
    assert!(count.ends_with(" 2"), "{count}");
    assert!(!text.contains("/nope/1"));
}

async fn admin_analytics_json_behind_the_guard(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(&cache, None);
    let admin = Router::new().nest(
        "/admin/cache",
        admin_router(cache.clone(), AdminGuard::bearer("s3cret")),
    );
    get_body(&app, "/items/1", None).await;
    get_body(&app, "/items/1", None).await;
    cache.invalidate_tags(&["item:1"]).await.unwrap();
    cache.analytics().flush().await;
    let call = |uri: &str, token: Option<&str>| {
        let mut req = Request::builder().uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let admin = admin.clone();
        let req = req.body(Body::empty()).unwrap();
        async move {
            let resp = admin.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(
        call("/admin/cache/analytics", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/admin/cache/analytics", Some("wrong")).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = call("/admin/cache/analytics?window=2w", Some("s3cret")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for window in ["5m", "1h", "1d"] {
        let (status, body) = call(
            &format!("/admin/cache/analytics?window={window}"),
            Some("s3cret"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["window"], window);
        let route = &body["routes"][0];
        assert_eq!(route["route"], "/items/{id}");
        assert_eq!(route["requests"], 2);
        assert_eq!(route["hit_rate"], 0.5);
        assert_eq!(route["outcomes"][0]["outcome"], "hit");
        assert_eq!(body["invalidations"][0]["name"], "item:1");
        assert_eq!(body["recorder"]["dropped"], 0);
    }
    let (status, body) = call("/admin/cache/analytics", Some("s3cret")).await;
    assert_eq!(
        (status, body["window"].as_str()),
        (StatusCode::OK, Some("5m"))
    );
}

on_both_backends!(
    events_recorded_for_cached_and_uncached_routes,
    unmatched_and_odd_paths_never_create_per_path_keys,
    route_metrics_cover_uncached_routes,
    admin_analytics_json_behind_the_guard,
);
