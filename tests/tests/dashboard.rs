#![allow(missing_docs)]
//! The admin dashboard (`GET dashboard`) and its time series (`GET timeline`), on Redis, Redis
//! Cluster and memory, through `cache_axum::admin_router` (the Actix scope: `actix_dashboard.rs`):
//! the page is served without the guard, holds no data, is self-contained and allowed to run by
//! its CSP; the timeline puts events of two minutes in two buckets; its JSON is guarded and
//! equals what `Analytics::timeline` answers.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_axum::{admin_router, AdminGuard, AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
use cache_core::admin;
use cache_core::analytics::{Event, Outcome, Timeline, Window};
use cache_core::Cache;
use common::Ctx;
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::Digest;
use tower::ServiceExt;

const TOKEN: &str = "s3cret";
/// Names that must never appear in the page: a route template and a tag of the application.
const ROUTE: &str = "/secret-route-7f3a/{id}";
const TAG: &str = "secret-tag-7f3a";
const BODY: &str = "the item";

fn app(cache: &Cache) -> Router {
    Router::new()
        .route(ROUTE, get(|| async { BODY }))
        .layer(
            ResponseCacheLayer::builder(cache.clone())
                .route(ROUTE, RoutePolicy::ttl(Duration::from_secs(3600)).tag(TAG))
                .build(),
        )
        .layer(AnalyticsLayer::new(cache))
        .nest(
            "/admin/cache",
            admin_router(cache.clone(), AdminGuard::bearer(TOKEN)),
        )
}

async fn send(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Standard base64 with padding (the CSP hash encoding), written out so that the test does not
/// share the library's encoder.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(A[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

/// The text between the only `open` and the following `close`.
fn only_between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    assert_eq!(page.matches(open).count(), 1, "one {open} in the page");
    let start = page.find(open).unwrap() + open.len();
    let end = start + page[start..].find(close).unwrap();
    &page[start..end]
}

// ------------------------------------------------------------------------------ the page

async fn axum_serves_the_page_without_the_guard_and_without_data(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(&cache);
    // Data the page could leak: an entry with a tag, analytics of a route.
    for _ in 0..2 {
        let (status, _, body) = send(&app, "/secret-route-7f3a/1", None).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, BODY.as_bytes()));
    }
    cache.analytics().flush().await;

    let page = admin::dashboard();
    for token in [None, Some("wrong"), Some(TOKEN)] {
        let (status, headers, body) = send(&app, "/admin/cache/dashboard", token).await;
        assert_eq!(status, StatusCode::OK, "token {token:?}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-store");
        for (name, value) in &page.headers {
            assert_eq!(header(&headers, name), value, "{name}");
        }
        // The same bytes for every request and every cache: the core page, no data in it.
        assert_eq!(body, page.body.as_bytes());
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains("secret-route-7f3a"));
        assert!(!text.contains(TAG));
        assert!(!text.contains(&ctx.namespace));
    }
    // The data endpoints the page reads stay behind the guard.
    for uri in [
        "/admin/cache/stats",
        "/admin/cache/analytics",
        "/admin/cache/timeline",
    ] {
        assert_eq!(
            send(&app, uri, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            send(&app, uri, Some("wrong")).await.0,
            StatusCode::FORBIDDEN
        );
    }
}

#[test]
fn page_is_self_contained_and_inserts_data_as_text_only() {
    let page = &admin::dashboard().body;
    // Nothing fetched from another origin, nothing loaded at all but the document.
    for banned in [
        "http://", "https://", "src=", "href=", "<link", "@import", "url(", "<iframe", "<img",
    ] {
        assert!(!page.contains(banned), "the page contains {banned:?}");
    }
    // Data goes into the DOM as text: no HTML parsing of strings, no eval.
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!page.contains(banned), "the page uses {banned:?}");
    }
    // Requests: one `fetch`, to the admin API next to the page (`endpoint(name)`, or the admin
    // root for the flush).
    assert_eq!(page.matches("fetch(").count(), 1);
    let names: Vec<&str> = page
        .split("endpoint('")
        .skip(1)
        .map(|rest| &rest[..rest.find('\'').unwrap()])
        .collect();
    assert!(!names.is_empty());
    for name in &names {
        let path = name.split('?').next().unwrap();
        assert!(
            ["stats", "analytics", "timeline", "advisor", "invalidate"].contains(&path),
            "unexpected endpoint {name}"
        );
    }
    assert!(page.contains("api('DELETE', root || '/')"));
    // The headless check's marker.
    assert!(page.contains("document.title = 'annocache dashboard: ok'"));
}

#[test]
fn csp_allows_only_the_inline_script_and_style_by_hash() {
    let page = admin::dashboard();
    let csp = page
        .headers
        .iter()
        .find(|(n, _)| *n == "content-security-policy")
        .map(|(_, v)| v.as_str())
        .expect("a CSP header");
    let script = only_between(&page.body, "<script>", "</script>");
    let style = only_between(&page.body, "<style>", "</style>");
    let hash = |s: &str| base64(&sha2::Sha256::digest(s.as_bytes()));
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'none'"), "{csp}");
    assert!(
        directives.contains(&format!("script-src 'sha256-{}'", hash(script)).as_str()),
        "{csp}"
    );
    assert!(
        directives.contains(&format!("style-src 'sha256-{}'", hash(style)).as_str()),
        "{csp}"
    );
    assert!(directives.contains(&"connect-src 'self'"), "{csp}");
    assert!(directives.contains(&"frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(!page.body.contains("<script "), "no other script element");
}

// ------------------------------------------------------------------------------ the timeline

fn event(a: &cache_core::analytics::Analytics, route: &str, at_ms: u64, o: Outcome, ms: u64) {
    let mut e = Event::new("GET", route, at_ms);
    e.outcome = o;
    e.latency = Duration::from_millis(ms);
    e.bytes = 100;
    a.record(e);
}

async fn timeline_puts_two_minutes_in_two_buckets(ctx: Ctx) {
    let cache = ctx.cache();
    let a = cache.analytics();
    let now = a.now_ms();
    let (m1, m0) = (now / 60_000, now / 60_000 - 1);
    // Minute m0: one hit (2 ms). Minute m1: two misses (40 ms) and two hits (2 ms). Another
    // route once.
    event(a, "/x/{id}", m0 * 60_000 + 1, Outcome::Hit, 2);
    for i in 0..2 {
        event(a, "/x/{id}", m1 * 60_000 + i, Outcome::Miss, 40);
        event(a, "/x/{id}", m1 * 60_000 + 5 + i, Outcome::Hit, 2);
    }
    event(a, "/other", m1 * 60_000, Outcome::None, 1);
    a.flush().await;

    let t = a.timeline(Window::FiveMinutes, None).await.unwrap();
    assert_eq!(t.bucket_secs, 60);
    let names: Vec<(&str, u64)> = t
        .routes
        .iter()
        .map(|r| (r.route.as_str(), r.requests))
        .collect();
    assert_eq!(names, [("/x/{id}", 5), ("/other", 1)]);
    let x = &t.routes[0];
    assert_eq!(x.points.len(), 5);
    for p in &x.points {
        let minute = p.start_ms / 60_000;
        let want = if minute == m0 {
            1
        } else if minute == m1 {
            4
        } else {
            0
        };
        assert_eq!(p.requests, want, "minute {minute} (m0 {m0})");
        if minute == m0 {
            assert_eq!((p.hits, p.misses, p.hit_rate), (1, 0, Some(1.0)));
        } else if minute == m1 {
            assert_eq!((p.hits, p.misses, p.hit_rate), (2, 2, Some(0.5)));
            let p99 = p.p99_ms.unwrap();
            assert!((p99 - 40.0).abs() <= 0.8, "p99 {p99}");
            let p50 = p.p50_ms.unwrap();
            assert!((p50 - 2.0).abs() <= 0.04, "p50 {p50}");
            assert_eq!(p.bytes, 400);
        } else {
            assert_eq!((p.hit_rate, p.p50_ms), (None, None));
        }
    }
    // The wall clock may have ticked since `now`: the window ends at the current minute.
    assert!(t.to_ms > now && t.to_ms - t.from_ms == 5 * 60_000);

    // A day: 15-minute buckets, the five requests of the route in them.
    let day = a.timeline(Window::Day, Some("GET /x/{id}")).await.unwrap();
    assert_eq!((day.bucket_secs, day.routes.len()), (900, 1));
    let points = &day.routes[0].points;
    assert!(points.len() <= 97, "{}", points.len());
    assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 5);
    assert_eq!(points.iter().map(|p| p.minutes).sum::<u64>(), 1440);

    // The route filter: `METHOD template`, or the template.
    let only = a.timeline(Window::Hour, Some("/other")).await.unwrap();
    assert_eq!(only.routes.len(), 1);
    assert_eq!(only.routes[0].route, "/other");
    assert_eq!(only.routes[0].points.len(), 60);
    let none = a
        .timeline(Window::Hour, Some("POST /x/{id}"))
        .await
        .unwrap();
    assert!(none.routes.is_empty());

    // Ten minutes later the 5-minute window is empty; the hour still has both minutes.
    a.advance_clock(Duration::from_secs(600));
    assert!(a
        .timeline(Window::FiveMinutes, None)
        .await
        .unwrap()
        .routes
        .is_empty());
    let hour = a.timeline(Window::Hour, Some("/x/{id}")).await.unwrap();
    assert_eq!(hour.routes[0].requests, 5);
}

/// `GET uri` as JSON, while `Analytics::timeline` answers the same before and after (a minute
/// may tick between two reads): (the served body, the oracle's).
async fn served_and_oracle(
    app: &Router,
    cache: &Cache,
    uri: &str,
    window: Window,
    route: Option<&str>,
) -> (Value, Value) {
    for _ in 0..3 {
        let before: Timeline = cache.analytics().timeline(window, route).await.unwrap();
        let (status, _, body) = send(app, uri, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let after = cache.analytics().timeline(window, route).await.unwrap();
        if before == after {
            return (
                serde_json::from_slice(&body).unwrap(),
                serde_json::to_value(after).unwrap(),
            );
        }
    }
    panic!("the timeline kept changing");
}

async fn axum_timeline_json_behind_the_guard(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(&cache);
    for _ in 0..2 {
        send(&app, "/secret-route-7f3a/1", None).await;
    }
    cache.analytics().flush().await;
    assert_eq!(
        send(&app, "/admin/cache/timeline", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "/admin/cache/timeline", Some("wrong")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, "/admin/cache/timeline?window=2w", Some(TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    for (query, window) in [
        ("", Window::FiveMinutes),
        ("?window=5m", Window::FiveMinutes),
        ("?window=1h", Window::Hour),
        ("?window=1d", Window::Day),
    ] {
        let uri = format!("/admin/cache/timeline{query}");
        let (served, oracle) = served_and_oracle(&app, &cache, &uri, window, None).await;
        assert_eq!(served, oracle, "{uri}");
        assert_eq!(served["window"], window.as_str());
        let route = &served["routes"][0];
        assert_eq!(
            (&route["method"], &route["route"]),
            (&"GET".into(), &ROUTE.into())
        );
        assert_eq!(route["requests"], 2);
        let total_hits: u64 = route["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["hits"].as_u64().unwrap())
            .sum();
        assert_eq!(total_hits, 1);
    }
    let uri = "/admin/cache/timeline?window=1h&route=GET%20%2Fsecret-route-7f3a%2F%7Bid%7D";
    let (served, oracle) = served_and_oracle(
        &app,
        &cache,
        uri,
        Window::Hour,
        Some(&format!("GET {ROUTE}")),
    )
    .await;
    assert_eq!(served, oracle);
    assert_eq!(served["routes"].as_array().unwrap().len(), 1);
    let (status, _, body) = send(
        &app,
        "/admin/cache/timeline?window=1h&route=%2Fnope",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["routes"], serde_json::json!([]));
}

on_both_backends!(
    axum_serves_the_page_without_the_guard_and_without_data,
    timeline_puts_two_minutes_in_two_buckets,
    axum_timeline_json_behind_the_guard,
);
