#![allow(missing_docs)]
//! The whole-response cache layer of `cache-axum`, through a real `Router`, on Redis and memory.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cache_axum::{ResponseCacheLayer, RoutePolicy, RouteScope};
use cache_core::Cache;
use common::Ctx;
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn app(
    cache: Cache,
    calls: Calls,
    configure: impl FnOnce(cache_axum::ResponseCacheBuilder) -> cache_axum::ResponseCacheBuilder,
) -> Router {
    let c = calls.clone();
    let trig = move |Path(id): Path<u32>| {
        let c = c.clone();
        async move {
            c.bump();
            (
                [
                    ("content-type", "application/json"),
                    ("x-served-by", "handler"),
                ],
                format!("{{\"id\":{id},\"n\":{}}}", c.get()),
            )
        }
    };
    let c2 = calls.clone();
    let special = move |Path(kind): Path<String>| {
        let c = c2.clone();
        async move {
            c.bump();
            let mut h = HeaderMap::new();
            let status = match kind.as_str() {
                "cookie" => {
                    h.insert("set-cookie", "s=1".parse().unwrap());
                    StatusCode::OK
                }
                "nostore" => {
                    h.insert("cache-control", "no-store".parse().unwrap());
                    StatusCode::OK
                }
                "private" => {
                    h.insert("cache-control", "private".parse().unwrap());
                    StatusCode::OK
                }
                "varystar" => {
                    h.insert("vary", "*".parse().unwrap());
                    StatusCode::OK
                }
                "missing" => StatusCode::NOT_FOUND,
                "big" => return (StatusCode::OK, h, "x".repeat(10_000)).into_response(),
                _ => StatusCode::OK,
            };
            (status, h, format!("{kind} {}", c.get())).into_response()
        }
    };
    let c3 = calls;
    let me = move |headers: HeaderMap| {
        let c = c3.clone();
        async move {
            c.bump();
            let user = headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("anon")
                .to_owned();
            format!("private data of {user}")
        }
    };
    let layer = configure(
        ResponseCacheLayer::builder(cache)
            .route(
                "/trigs/{id}",
                RoutePolicy::ttl(HOUR).tag("trig:{id}").resource("trig"),
            )
            .route("/special/{kind}", RoutePolicy::ttl(HOUR))
            .route("/me", RoutePolicy::ttl(HOUR).scope(RouteScope::PerUser))
            .route("/greeting", RoutePolicy::ttl(HOUR))
            .max_body(4096)
            .user(|parts| {
                parts
                    .headers
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }),
    )
    .build();
    Router::new()
        .route("/trigs/{id}", get(trig).post(|| async { "posted" }))
        .route("/special/{kind}", get(special))
        .route("/me", get(me))
        .route("/uncached", get(|| async { "plain" }))
        .route("/greeting", get(greeting))
        .route(
            "/fail/{id}",
            axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(layer)
}

/// The origin of `/greeting`: the body depends on `Accept-Language`.
async fn greeting(headers: HeaderMap) -> String {
    greeting_for(headers.get("accept-language").and_then(|v| v.to_str().ok()))
}

fn greeting_for(lang: Option<&str>) -> String {
    match lang {
        Some(l) if l.starts_with("fr") => "bonjour".to_owned(),
        _ => "hello".to_owned(),
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn miss_then_hit_with_the_same_response(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    let first = send(&app, get_req("/trigs/1?b=2&a=1")).await;
    assert_eq!(
        (first.status, first.h("x-cache-status")),
        (StatusCode::OK, "MISS")
    );
    let second = send(&app, get_req("/trigs/1?a=1&b=2&cache_bypass=false")).await;
    assert_eq!(second.h("x-cache-status"), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(second.status, first.status);
    assert_eq!(second.h("x-served-by"), "handler");
    assert_eq!(second.h("content-type"), "application/json");
    assert_eq!(second.h("etag"), first.h("etag"));
    assert!(!first.h("etag").is_empty());
    assert_eq!(second.h("x-cache-key"), first.h("x-cache-key"));
    let ttl: u64 = second.h("x-cache-ttl").parse().unwrap();
    assert!(ttl > 3590 && ttl <= 3600, "{ttl}");
    assert_eq!(second.h("x-cache-age"), "0");
    assert!(second.h("cache-control").starts_with("public, max-age="));
    assert_eq!(calls.get(), 1);
    // Unconfigured routes and other methods are untouched.
    let plain = send(&app, get_req("/uncached")).await;
    assert_eq!(plain.h("x-cache-status"), "");
    let post = send(&app, Request::post("/trigs/1").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (post.body.as_str(), post.h("x-cache-status")),
        ("posted", "")
    );
}

/// `X-Cache-Tier` names the tier of each hit: `redis` without L1, `l1` with it (no header on a
/// miss); the body served is the handler's.
async fn hits_carry_the_tier_header_l1_or_redis(ctx: Ctx) {
    for (cache, tier, uri) in [
        (ctx.cache(), "redis", "/trigs/40"),
        (ctx.l1_cache().await, "l1", "/trigs/41"),
    ] {
        let calls = Calls::default();
        let app = app(cache, calls.clone(), |b| b);
        let first = send(&app, get_req(uri)).await;
        assert_eq!(
            (first.h("x-cache-status"), first.h("x-cache-tier")),
            ("MISS", "")
        );
        for _ in 0..3 {
            let hit = send(&app, get_req(uri)).await;
            assert_eq!(
                (hit.h("x-cache-status"), hit.h("x-cache-tier")),
                ("HIT", tier)
            );
            assert_eq!(hit.body, first.body, "the handler's body");
            assert_eq!(hit.h("etag"), first.h("etag"));
            assert_eq!(hit.h("content-type"), "application/json");
        }
        assert_eq!(calls.get(), 1, "{tier}: hits never reach the handler");
    }
}

async fn bypass_by_header_and_flag_refreshes_unless_refused(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    send(&app, get_req("/trigs/2")).await;
    let r = send(
        &app,
        Request::get("/trigs/2")
            .header("cache-control", "no-cache")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.h("x-cache-status"), "BYPASS");
    let r = send(&app, get_req("/trigs/2?cache_bypass=true")).await;
    assert_eq!(r.h("x-cache-status"), "BYPASS");
    assert_eq!(calls.get(), 3);
    let r = send(&app, get_req("/trigs/2")).await;
    assert_eq!(
        (r.h("x-cache-status"), r.body.as_str()),
        ("HIT", "{\"id\":2,\"n\":3}"),
        "the bypass refreshed the entry"
    );
    // Restricted: only requests with an admin header may bypass.
    let restricted = self::app(ctx.cache(), calls.clone(), |b| {
        b.bypass_allowed(|p| p.headers.contains_key("x-admin"))
    });
    let r = send(
        &restricted,
        Request::get("/trigs/2")
            .header("pragma", "no-cache")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.h("x-cache-status"),
        "HIT",
        "the public cannot force a refill"
    );
    let r = send(
        &restricted,
        Request::get("/trigs/2")
            .header("pragma", "no-cache")
            .header("x-admin", "1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.h("x-cache-status"), "BYPASS");
}

async fn etag_gives_304_and_head_is_answered_from_get(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    let first = send(&app, get_req("/trigs/3")).await;
    let etag = first.h("etag").to_owned();
    let r = send(
        &app,
        Request::get("/trigs/3")
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.body, "");
    assert_eq!(r.h("etag"), etag);
    let r = send(
        &app,
        Request::get("/trigs/3")
            .header("if-none-match", "\"other\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.h("x-cache-status")), (StatusCode::OK, "HIT"));
    let head = send(&app, Request::head("/trigs/3").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (head.status, head.h("x-cache-status"), head.body.as_str()),
        (StatusCode::OK, "HIT", "")
    );
    assert_eq!(calls.get(), 1, "the handler ran only for the first GET");
}

async fn uncacheable_responses_are_never_stored(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    for kind in ["cookie", "nostore", "private", "varystar", "missing"] {
        let uri = format!("/special/{kind}");
        send(&app, get_req(&uri)).await;
        let second = send(&app, get_req(&uri)).await;
        assert_eq!(
            second.h("x-cache-status"),
            "MISS",
            "{kind} must not be stored"
        );
        if kind == "cookie" {
            assert_eq!(
                second.h("set-cookie"),
                "s=1",
                "the real response keeps its cookie"
            );
        }
        if kind == "missing" {
            assert_eq!(second.status, StatusCode::NOT_FOUND);
        }
    }
}

async fn authorization_passes_shared_routes_and_per_user_routes_never_share(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    send(&app, get_req("/trigs/4")).await;
    let r = send(
        &app,
        Request::get("/trigs/4")
            .header("authorization", "Bearer t")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.h("x-cache-status"),
        "BYPASS",
        "credentials skip the shared cache"
    );
    // Many users on the per-user route: each only ever sees their own body. Fill one entry per
    // user first (deterministic), then hit them all concurrently, several times each.
    let me = |user: usize| {
        Request::get("/me")
            .header("x-user", format!("u{user}"))
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap()
    };
    for user in 0..40 {
        let r = send(&app, me(user)).await;
        assert_eq!(r.h("x-cache-status"), "MISS");
        assert_eq!(r.body, format!("private data of u{user}"));
    }
    let mut tasks = Vec::new();
    for round in 0..3 {
        for user in 0..40 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let r = send(&app, me(user)).await;
                assert_eq!(r.body, format!("private data of u{user}"), "round {round}");
                assert_eq!(r.h("x-cache-status"), "HIT");
                assert!(
                    r.h("cache-control").starts_with("private"),
                    "per-user hits are private"
                );
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let anon = send(&app, get_req("/me")).await;
    assert_eq!(
        anon.h("x-cache-status"),
        "BYPASS",
        "a per-user route without a user is not cached"
    );
}

async fn bodies_over_the_cap_stream_through_uncached(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b);
    let r = send(&app, get_req("/special/big")).await;
    assert_eq!(r.body.len(), 10_000);
    let r = send(&app, get_req("/special/big")).await;
    assert_eq!((r.h("x-cache-status"), r.body.len()), ("MISS", 10_000));
    assert_eq!(calls.get(), 2);
}

async fn tags_from_path_parameters_invalidate_entries(ctx: Ctx) {
    let cache = ctx.cache();
    let calls = Calls::default();
    let app = app(cache.clone(), calls.clone(), |b| b);
    send(&app, get_req("/trigs/5")).await;
    send(&app, get_req("/trigs/6")).await;
    assert_eq!(cache.invalidate_tags(&["trig:5"]).await.unwrap(), 1);
    assert_eq!(
        send(&app, get_req("/trigs/5")).await.h("x-cache-status"),
        "MISS"
    );
    assert_eq!(
        send(&app, get_req("/trigs/6")).await.h("x-cache-status"),
        "HIT"
    );
    assert!(cache.stats().resources["trig"].hits >= 1);
}

async fn successful_writes_invalidate_configured_tags(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| {
        b.invalidate_on_write("/trigs/{id}", ["trig:{id}"])
            .invalidate_on_write("/fail/{id}", ["trig:{id}"])
    });
    send(&app, get_req("/trigs/8")).await;
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "HIT"
    );
    let failed = send(&app, Request::post("/fail/8").body(Body::empty()).unwrap()).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "HIT",
        "a failed write invalidates nothing"
    );
    let ok = send(&app, Request::post("/trigs/8").body(Body::empty()).unwrap()).await;
    assert_eq!(ok.body, "posted");
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "MISS",
        "a successful write invalidated trig:8"
    );
}

async fn header_names_are_configurable_and_age_grows_while_ttl_shrinks(ctx: Ctx) {
    let calls = Calls::default();
    let names = cache_axum::CacheHeaderNames {
        status: "cdn-cache".parse().unwrap(),
        key: "cdn-key".parse().unwrap(),
        age: "cdn-age".parse().unwrap(),
        ttl: "cdn-ttl".parse().unwrap(),
    };
    let app = app(ctx.cache(), calls, |b| b.header_names(names));
    assert_eq!(send(&app, get_req("/trigs/9")).await.h("cdn-cache"), "MISS");
    let first = send(&app, get_req("/trigs/9")).await;
    assert_eq!(
        (first.h("cdn-cache"), first.h("x-cache-status")),
        ("HIT", "")
    );
    // Ages are whole seconds: waiting past one is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = send(&app, get_req("/trigs/9")).await;
    let age = |r: &Reply| r.h("cdn-age").parse::<u64>().unwrap();
    let ttl = |r: &Reply| r.h("cdn-ttl").parse::<u64>().unwrap();
    assert!(
        age(&later) > age(&first),
        "age grows: {} -> {}",
        age(&first),
        age(&later)
    );
    assert!(
        ttl(&later) < ttl(&first),
        "ttl shrinks: {} -> {}",
        ttl(&first),
        ttl(&later)
    );
    assert_eq!(later.h("age"), later.h("cdn-age"));
}

async fn vary_headers_are_in_the_key_and_listed_in_vary(ctx: Ctx) {
    let app = app(ctx.cache(), Calls::default(), |b| {
        b.vary(header::ACCEPT_LANGUAGE)
    });
    for (lang, status) in [("en", "MISS"), ("fr", "MISS"), ("en", "HIT"), ("fr", "HIT")] {
        let req = Request::get("/greeting")
            .header("accept-language", lang)
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert_eq!(
            r.body,
            greeting_for(Some(lang)),
            "the origin's answer for {lang}"
        );
        assert_eq!(r.h("x-cache-status"), status, "{lang}");
        assert!(
            r.h("vary").to_ascii_lowercase().contains("accept-language"),
            "{status} lists the vary header: {:?}",
            r.h("vary")
        );
    }
}

on_both_backends!(
    hits_carry_the_tier_header_l1_or_redis,
    vary_headers_are_in_the_key_and_listed_in_vary,
    successful_writes_invalidate_configured_tags,
    header_names_are_configurable_and_age_grows_while_ttl_shrinks,
    miss_then_hit_with_the_same_response,
    bypass_by_header_and_flag_refreshes_unless_refused,
    etag_gives_304_and_head_is_answered_from_get,
    uncacheable_responses_are_never_stored,
    authorization_passes_shared_routes_and_per_user_routes_never_share,
    bodies_over_the_cap_stream_through_uncached,
    tags_from_path_parameters_invalidate_entries,
);
// The same suite over TLS (rustls, the test CA given to the cache).
on_tls_backend!(
    vary_headers_are_in_the_key_and_listed_in_vary,
    successful_writes_invalidate_configured_tags,
    header_names_are_configurable_and_age_grows_while_ttl_shrinks,
    miss_then_hit_with_the_same_response,
    bypass_by_header_and_flag_refreshes_unless_refused,
    etag_gives_304_and_head_is_answered_from_get,
    uncacheable_responses_are_never_stored,
    authorization_passes_shared_routes_and_per_user_routes_never_share,
    bodies_over_the_cap_stream_through_uncached,
    tags_from_path_parameters_invalidate_entries,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_every_request_answered_and_marked_skip() {
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(cache_tests::unique_namespace("ax"))
        .redis_url(server.url())
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = app(cache, calls.clone(), |b| b);
    assert_eq!(
        send(&app, get_req("/trigs/7")).await.h("x-cache-status"),
        "MISS"
    );
    server.kill();
    for _ in 0..50 {
        let r = send(&app, get_req("/trigs/7")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.starts_with("{\"id\":7"));
        assert_eq!(r.h("x-cache-status"), "SKIP");
    }
}
