#![allow(missing_docs)]
//! `CacheContextLayer`: `X-Cache-*` headers and bypass for `#[cached]` Axum handlers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::CacheContextLayer;
use cache_core::{cached, Cache};
use common::Ctx;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Clone)]
struct App {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

#[cached(resource = "trig", ttl = "1h", cache = app.cache.clone())]
async fn get_trig(State(app): State<App>, Path(id): Path<u32>) -> Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    Json(format!("trig {id}"))
}

/// A path value in one segment (`1:2` stays one value).
#[cached(resource = "name", ttl = "1h", cache = app.cache.clone())]
async fn get_name(State(app): State<App>, Path(name): Path<String>) -> Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    Json(format!("name {name}"))
}

/// Two path values, in the same resource as [`get_name`].
#[cached(resource = "name", ttl = "1h", cache = app.cache.clone())]
async fn get_pair(State(app): State<App>, Path((a, b)): Path<(String, String)>) -> Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    Json(format!("pair {a} {b}"))
}

fn router(app: App, layer: CacheContextLayer) -> Router {
    Router::new()
        .route("/trigs/{id}", get(get_trig))
        .route("/names/{name}", get(get_name))
        .route("/pairs/{a}/{b}", get(get_pair))
        .route("/plain", get(|| async { "plain" }))
        .with_state(app)
        .layer(layer)
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status, parts.headers, body)
}

fn h<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn cached_handlers_get_cache_headers_and_honour_bypass(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let r = router(app.clone(), CacheContextLayer::builder().build());
    let req = || Request::get("/trigs/1").body(Body::empty()).unwrap();
    let (status, headers, body) = call(&r, req()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "\"trig 1\""));
    assert_eq!(h(&headers, "x-cache-status"), "MISS");
    let key = app.cache.key("trig").id(1).build();
    assert_eq!(h(&headers, "x-cache-key"), key.as_str(), "{headers:?}");
    let (_, headers, body) = call(&r, req()).await;
    assert_eq!(
        (h(&headers, "x-cache-status"), body.as_str()),
        ("HIT", "\"trig 1\"")
    );
    assert_eq!(h(&headers, "x-cache-age"), "0");
    let ttl: u64 = h(&headers, "x-cache-ttl").parse().unwrap();
    assert!(ttl > 3590, "{ttl}");
    assert!(h(&headers, "cache-control").starts_with("public, max-age="));
    assert_eq!(app.loads.load(Ordering::SeqCst), 1);
    let bypass = Request::get("/trigs/1")
        .header("cache-control", "no-cache")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = call(&r, bypass).await;
    assert_eq!(h(&headers, "x-cache-status"), "BYPASS");
    assert_eq!(app.loads.load(Ordering::SeqCst), 2);
    // Handlers without #[cached] get no cache headers.
    let (_, headers, _) = call(&r, Request::get("/plain").body(Body::empty()).unwrap()).await;
    assert_eq!(h(&headers, "x-cache-status"), "");
    // A restricted bypass is refused for the public, and the key can be hidden.
    let restricted = router(
        app.clone(),
        CacheContextLayer::builder()
            .bypass_allowed(|p| p.headers.contains_key("x-admin"))
            .expose_key(false)
            .build(),
    );
    let bypass = Request::get("/trigs/1")
        .header("cache-control", "no-cache")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = call(&restricted, bypass).await;
    assert_eq!(h(&headers, "x-cache-status"), "HIT");
    assert_eq!(h(&headers, "x-cache-key"), "");
}

/// Without `key`, a `Path` argument is readable id segments: `Path(id): Path<u32>` is keyed
/// `ns:v1:trig:123`. Two ids are two entries, each with the handler's body; the value `1:2` in
/// one segment and the values `1`, `2` in two are two entries too (`name:1%3A2`, `name:1:2`).
async fn path_parameters_are_readable_id_segments_in_the_key(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let r = router(app.clone(), CacheContextLayer::builder().build());
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let cases = [
        (
            "/trigs/123",
            app.cache.key("trig").id(123).build(),
            "trig 123",
        ),
        (
            "/trigs/124",
            app.cache.key("trig").id(124).build(),
            "trig 124",
        ),
        (
            "/names/1:2",
            app.cache.key("name").id("1:2").build(),
            "name 1:2",
        ),
        (
            "/pairs/1/2",
            app.cache.key("name").id(1).id(2).build(),
            "pair 1 2",
        ),
    ];
    let prefix = app
        .cache
        .key("x")
        .build()
        .as_str()
        .strip_suffix(":x")
        .unwrap()
        .to_owned();
    assert_eq!(cases[0].1.as_str(), format!("{prefix}:trig:123"));
    assert_eq!(cases[2].1.as_str(), format!("{prefix}:name:1%3A2"));
    assert_eq!(cases[3].1.as_str(), format!("{prefix}:name:1:2"));
    for expected in ["MISS", "HIT"] {
        for (uri, key, body) in &cases {
            let (status, headers, got) = call(&r, get(uri)).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(h(&headers, "x-cache-status"), expected, "{uri}");
            assert_eq!(h(&headers, "x-cache-key"), key.as_str(), "{uri}");
            assert_eq!(
                got,
                serde_json::to_string(body).unwrap(),
                "{uri}: the handler's body"
            );
        }
    }
    assert_eq!(
        app.loads.load(Ordering::SeqCst),
        cases.len(),
        "one entry per request"
    );
}

/// Bypass is open to everyone by default; one line restricts it to the callers the admin guard
/// admits. A refused bypass is an ordinary hit with the cached body; an admitted one refreshes.
async fn bypass_restricted_to_the_admin_guard_in_one_line(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let admin = cache_axum::AdminGuard::bearer("s3cret");
    let r = router(
        app.clone(),
        CacheContextLayer::builder()
            .bypass_allowed(move |parts| admin.allows(parts))
            .build(),
    );
    let req = |auth: Option<&str>, flag: &str| {
        let mut b = Request::get(format!("/trigs/7{flag}"));
        if let Some(token) = auth {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let (_, headers, body) = call(&r, req(None, "")).await;
    assert_eq!(
        (h(&headers, "x-cache-status"), body.as_str()),
        ("MISS", "\"trig 7\"")
    );
    for (auth, flag) in [
        (None, "?cache_bypass=1"),
        (Some("wrong"), "?cache_bypass=1"),
    ] {
        let (_, headers, body) = call(&r, req(auth, flag)).await;
        assert_eq!(
            (h(&headers, "x-cache-status"), body.as_str()),
            ("HIT", "\"trig 7\"")
        );
    }
    assert_eq!(
        app.loads.load(Ordering::SeqCst),
        1,
        "refused bypasses ran nothing"
    );
    let (_, headers, body) = call(&r, req(Some("s3cret"), "?cache_bypass=1")).await;
    assert_eq!(
        (h(&headers, "x-cache-status"), body.as_str()),
        ("BYPASS", "\"trig 7\"")
    );
    assert_eq!(app.loads.load(Ordering::SeqCst), 2);
}

on_both_backends!(
    cached_handlers_get_cache_headers_and_honour_bypass,
    path_parameters_are_readable_id_segments_in_the_key,
    bypass_restricted_to_the_admin_guard_in_one_line
);
