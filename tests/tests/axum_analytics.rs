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
        // The stream, the index, one counters hash, one distinct-keys HyperLogLog: nothing
        // named after a path.
        assert_eq!(keys.len(), 4, "{keys:?}");
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

async fn admin_get(admin: &Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let resp = admin.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
    )
}

/// The advisor, fed by the recorded traffic: an uncached route whose handler is slow ranks
/// first, with its distinct keys observed; a route faster than a cache hit is not suggested; the
/// admin `GET advisor` serves the ranking behind the guard.
async fn advisor_ranks_the_slow_uncached_route_first_from_recorded_traffic(ctx: Ctx) {
    let cache = ctx.cache();
    let app =
        Router::new()
            .route(
                "/slow/{id}",
                get(
                    |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                        // The handler's own cost (a slow query), not a synchronisation.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        format!("slow {id}")
                    },
                ),
            )
            .route(
                "/fast/{id}",
                get(
                    |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                        format!("fast {id}")
                    },
                ),
            )
            .layer(AnalyticsLayer::new(&cache));
    for i in 0..30u32 {
        let id = i % 4;
        assert_eq!(
            get_body(&app, &format!("/slow/{id}"), None).await,
            (StatusCode::OK, format!("slow {id}"))
        );
        assert_eq!(
            get_body(&app, &format!("/fast/{id}"), None).await,
            (StatusCode::OK, format!("fast {id}"))
        );
    }
    cache.analytics().flush().await;
    let admin = Router::new().nest(
        "/admin/cache",
        admin_router(cache.clone(), AdminGuard::bearer("s3cret")),
    );
    let (status, body) = admin_get(&admin, "/admin/cache/advisor?window=1h").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["window"], "1h");
    let suggestions = body["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 1, "{body}");
    let s = &suggestions[0];
    assert_eq!(s["route"], "GET /slow/{id}");
    assert_eq!(s["scope"], "shared");
    // No write seen and not cached yet: the default TTL, writes unknown.
    assert_eq!(s["ttl"], 3600);
    assert!(s["why"].as_str().unwrap().contains("over 4 keys"), "{s}");
    let slow = body["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["route"] == "GET /slow/{id}")
        .unwrap();
    assert_eq!(
        (slow["requests"].as_u64(), slow["distinct_keys"].as_u64()),
        (Some(30), Some(4))
    );
    assert!(slow["miss_latency_ms"].as_f64().unwrap() >= 19.0, "{slow}");
    assert_eq!(
        admin_get(&admin, "/admin/cache/advisor?window=2w").await.0,
        StatusCode::BAD_REQUEST
    );
    let unguarded = Request::builder()
        .uri("/admin/cache/advisor")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        admin.clone().oneshot(unguarded).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Warming from analytics replays the most requested targets of the cached routes through the
/// router: after a flush, the top targets are cached again (served as hits with the handler's
/// bodies), the others are not, and the replay is not counted as traffic.
async fn warm_from_analytics_refills_the_top_targets_with_the_origins_bodies(ctx: Ctx) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let cache = ctx.cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(move |axum::extract::Path(id): axum::extract::Path<u32>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    format!("item {id}")
                }
            }),
        )
        .layer(
            ResponseCacheLayer::builder(cache.clone())
                .route("/items/{id}", RoutePolicy::ttl(Duration::from_secs(3600)))
                .build(),
        )
        .layer(AnalyticsLayer::new(&cache));
    for id in [1, 1, 1, 2, 2, 3] {
        assert_eq!(
            get_body(&app, &format!("/items/{id}"), None).await,
            (StatusCode::OK, format!("item {id}"))
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    cache.analytics().flush().await;
    let replay = app.clone();
    cache.register_warmer(
        "from-analytics",
        cache_core::warm::WarmSchedule::new()
            .at_start(false)
            .after_flush(false),
        move |warm| {
            let app = replay.clone();
            async move {
                let n = cache_axum::warm_from_analytics(&warm, app, Window::FiveMinutes, 2)
                    .await
                    .unwrap();
                assert_eq!(n, 2);
            }
        },
    );
    cache.clear().await.unwrap();
    let report = cache.warm("from-analytics").await.unwrap().unwrap();
    assert_eq!(
        (report.keys, report.loaded, report.present, report.failed),
        (2, 2, 0, 0)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    // The top two are hits with the origin's bodies; the third was not warmed.
    for (id, status) in [(1, "HIT"), (2, "HIT"), (3, "MISS")] {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri(format!("/items/{id}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-cache-status"], status, "/items/{id}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, format!("item {id}").as_bytes());
    }
    // A second run finds them cached.
    let again = cache.warm("from-analytics").await.unwrap().unwrap();
    assert_eq!((again.keys, again.present), (2, 2));
    cache.analytics().flush().await;
    let routes = cache.analytics().routes(Window::FiveMinutes).await.unwrap();
    assert_eq!(routes[0].requests, 9, "the replays are not traffic");
}

on_both_backends!(
    events_recorded_for_cached_and_uncached_routes,
    advisor_ranks_the_slow_uncached_route_first_from_recorded_traffic,
    warm_from_analytics_refills_the_top_targets_with_the_origins_bodies,
    unmatched_and_odd_paths_never_create_per_path_keys,
    route_metrics_cover_uncached_routes,
    admin_analytics_json_behind_the_guard,
);
