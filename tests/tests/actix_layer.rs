#![allow(missing_docs)]
//! The whole-response cache layer of `cache-actix`, through a real `App`, on Redis and memory:
//! the cases of `axum_layer.rs`.

mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_http::Request;
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpRequest, HttpResponse};
use cache_actix::{ResponseCacheLayer, RoutePolicy, RouteScope};
use cache_core::Cache;
use common::Ctx;

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

/// The origin of `/greeting`: the body depends on `Accept-Language`.
async fn greeting(req: HttpRequest) -> String {
    greeting_for(
        req.headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok()),
    )
}

fn greeting_for(lang: Option<&str>) -> String {
    match lang {
        Some(l) if l.starts_with("fr") => "bonjour".to_owned(),
        _ => "hello".to_owned(),
    }
}

async fn app(
    cache: Cache,
    calls: Calls,
    configure: impl FnOnce(cache_actix::ResponseCacheBuilder) -> cache_actix::ResponseCacheBuilder,
) -> impl Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> {
    let c = calls.clone();
    let trig = move |id: web::Path<u32>| {
        let c = c.clone();
        async move {
            c.bump();
            HttpResponse::Ok()
                .insert_header(("content-type", "application/json"))
                .insert_header(("x-served-by", "handler"))
                .body(format!("{{\"id\":{},\"n\":{}}}", *id, c.get()))
        }
    };
    let c2 = calls.clone();
    let special = move |kind: web::Path<String>| {
        let c = c2.clone();
        async move {
            c.bump();
            let kind = kind.into_inner();
            let mut resp = HttpResponse::Ok();
            match kind.as_str() {
                "cookie" => {
                    resp.insert_header(("set-cookie", "s=1"));
                }
                "nostore" => {
                    resp.insert_header(("cache-control", "no-store"));
                }
                "private" => {
                    resp.insert_header(("cache-control", "private"));
                }
                "varystar" => {
                    resp.insert_header(("vary", "*"));
                }
                "missing" => {
                    resp.status(StatusCode::NOT_FOUND);
                }
                "big" => return resp.body("x".repeat(10_000)),
                _ => {}
            }
            resp.body(format!("{kind} {}", c.get()))
        }
    };
    let c3 = calls;
    let me = move |req: HttpRequest| {
        let c = c3.clone();
        async move {
            c.bump();
            let user = req
                .headers()
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
            .user(|req| {
                req.headers()
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }),
    )
    .build();
    test::init_service(
        App::new()
            .wrap(layer)
            // `web::get()` does not match HEAD in actix (axum's `get` does): register both.
            .service(
                web::resource("/trigs/{id}")
                    .route(web::get().to(trig.clone()))
                    .route(web::head().to(trig))
                    .route(web::post().to(|| async { "posted" })),
            )
            .route("/special/{kind}", web::get().to(special))
            .route("/me", web::get().to(me))
            .route("/uncached", web::get().to(|| async { "plain" }))
            .route("/greeting", web::get().to(greeting))
            .route(
                "/fail/{id}",
                web::post().to(|| async { HttpResponse::InternalServerError().finish() }),
            ),
    )
    .await
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

async fn send<S>(app: &S, req: Request) -> Reply
where
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    let resp = test::call_service(app, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn get_req(uri: &str) -> Request {
    TestRequest::get().uri(uri).to_request()
}

async fn miss_then_hit_with_the_same_response(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b).await;
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
    let post = send(&app, TestRequest::post().uri("/trigs/1").to_request()).await;
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
        let app = app(cache, calls.clone(), |b| b).await;
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
    let app = app(ctx.cache(), calls.clone(), |b| b).await;
    send(&app, get_req("/trigs/2")).await;
    let r = send(
        &app,
        TestRequest::get()
            .uri("/trigs/2")
            .insert_header(("cache-control", "no-cache"))
            .to_request(),
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
        b.bypass_allowed(|req| req.headers().contains_key("x-admin"))
    })
    .await;
    let r = send(
        &restricted,
        TestRequest::get()
            .uri("/trigs/2")
            .insert_header(("pragma", "no-cache"))
            .to_request(),
    )
    .await;
    assert_eq!(
        r.h("x-cache-status"),
        "HIT",
        "the public cannot force a refill"
    );
    let r = send(
        &restricted,
        TestRequest::get()
            .uri("/trigs/2")
            .insert_header(("pragma", "no-cache"))
            .insert_header(("x-admin", "1"))
            .to_request(),
    )
    .await;
    assert_eq!(r.h("x-cache-status"), "BYPASS");
}

async fn etag_gives_304_and_head_is_answered_from_get(ctx: Ctx) {
    let calls = Calls::default();
    // This app answers HEAD like GET (it registers `web::head()`), so HEAD may come from the
    // GET entry; `head_from_get` is off by default on Actix.
    let app = app(ctx.cache(), calls.clone(), |b| b.head_from_get(true)).await;
    let first = send(&app, get_req("/trigs/3")).await;
    let etag = first.h("etag").to_owned();
    let r = send(
        &app,
        TestRequest::get()
            .uri("/trigs/3")
            .insert_header(("if-none-match", etag.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.body, "");
    assert_eq!(r.h("etag"), etag);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/trigs/3")
            .insert_header(("if-none-match", "\"other\""))
            .to_request(),
    )
    .await;
    assert_eq!((r.status, r.h("x-cache-status")), (StatusCode::OK, "HIT"));
    let head = send(
        &app,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/trigs/3")
            .to_request(),
    )
    .await;
    // The body is kept so that the server sends its length as `Content-Length`; servers never
    // send a HEAD body (checked over TCP in the differential tests).
    assert_eq!(
        (head.status, head.h("x-cache-status"), head.body.as_str()),
        (StatusCode::OK, "HIT", first.body.as_str())
    );
    assert_eq!(calls.get(), 1, "the handler ran only for the first GET");
}

async fn uncacheable_responses_are_never_stored(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b).await;
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
    let app = Rc::new(app(ctx.cache(), calls.clone(), |b| b).await);
    send(&*app, get_req("/trigs/4")).await;
    let r = send(
        &*app,
        TestRequest::get()
            .uri("/trigs/4")
            .insert_header(("authorization", "Bearer t"))
            .to_request(),
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
        TestRequest::get()
            .uri("/me")
            .insert_header(("x-user", format!("u{user}")))
            .insert_header(("authorization", "Bearer x"))
            .to_request()
    };
    for user in 0..40 {
        let r = send(&*app, me(user)).await;
        assert_eq!(r.h("x-cache-status"), "MISS");
        assert_eq!(r.body, format!("private data of u{user}"));
    }
    // The service is not `Send`: the requests run concurrently as local tasks.
    let mut tasks = Vec::new();
    for round in 0..3 {
        for user in 0..40 {
            let app = app.clone();
            tasks.push(actix_web::rt::spawn(async move {
                let r = send(&*app, me(user)).await;
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
    let anon = send(&*app, get_req("/me")).await;
    assert_eq!(
        anon.h("x-cache-status"),
        "BYPASS",
        "a per-user route without a user is not cached"
    );
}

async fn bodies_over_the_cap_stream_through_uncached(ctx: Ctx) {
    let calls = Calls::default();
    let app = app(ctx.cache(), calls.clone(), |b| b).await;
    let r = send(&app, get_req("/special/big")).await;
    assert_eq!(r.body.len(), 10_000);
    let r = send(&app, get_req("/special/big")).await;
    assert_eq!((r.h("x-cache-status"), r.body.len()), ("MISS", 10_000));
    assert_eq!(calls.get(), 2);
}

async fn tags_from_path_parameters_invalidate_entries(ctx: Ctx) {
    let cache = ctx.cache();
    let calls = Calls::default();
    let app = app(cache.clone(), calls.clone(), |b| b).await;
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
    })
    .await;
    send(&app, get_req("/trigs/8")).await;
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "HIT"
    );
    let failed = send(&app, TestRequest::post().uri("/fail/8").to_request()).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "HIT",
        "a failed write invalidates nothing"
    );
    let ok = send(&app, TestRequest::post().uri("/trigs/8").to_request()).await;
    assert_eq!(ok.body, "posted");
    assert_eq!(
        send(&app, get_req("/trigs/8")).await.h("x-cache-status"),
        "MISS",
        "a successful write invalidated trig:8"
    );
}

async fn header_names_are_configurable_and_age_grows_while_ttl_shrinks(ctx: Ctx) {
    let calls = Calls::default();
    let names = cache_actix::CacheHeaderNames {
        status: "cdn-cache".parse().unwrap(),
        key: "cdn-key".parse().unwrap(),
        age: "cdn-age".parse().unwrap(),
        ttl: "cdn-ttl".parse().unwrap(),
    };
    let app = app(ctx.cache(), calls, |b| b.header_names(names)).await;
    assert_eq!(send(&app, get_req("/trigs/9")).await.h("cdn-cache"), "MISS");
    let first = send(&app, get_req("/trigs/9")).await;
    assert_eq!(
        (first.h("cdn-cache"), first.h("x-cache-status")),
        ("HIT", "")
    );
    // Ages are whole seconds: waiting past one is the behaviour under test.
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
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
        b.vary(axum::http::header::ACCEPT_LANGUAGE)
    })
    .await;
    for (lang, status) in [("en", "MISS"), ("fr", "MISS"), ("en", "HIT"), ("fr", "HIT")] {
        let req = TestRequest::get()
            .uri("/greeting")
            .insert_header(("accept-language", lang))
            .to_request();
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

on_both_backends_actix!(
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
on_tls_backend_actix!(
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

#[actix_web::test]
async fn redis_killed_every_request_answered_and_marked_skip() {
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(cache_tests::unique_namespace("ac"))
        .redis_url(server.url())
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = Rc::new(app(cache, calls.clone(), |b| b).await);
    assert_eq!(
        send(&*app, get_req("/trigs/7")).await.h("x-cache-status"),
        "MISS"
    );
    server.kill();
    for _ in 0..50 {
        let r = send(&*app, get_req("/trigs/7")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.starts_with("{\"id\":7"));
        assert_eq!(r.h("x-cache-status"), "SKIP");
    }
    // A concurrent burst against the dead server: every request is answered by the handler,
    // none errors.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            actix_web::rt::spawn(async move {
                let resp = test::try_call_service(&*app, get_req("/trigs/7"))
                    .await
                    .expect("no request errors while Redis is down");
                let status = resp.status();
                let skip = resp.headers().get("x-cache-status").cloned();
                let body = test::read_body(resp).await;
                assert_eq!(status, StatusCode::OK);
                assert!(body.starts_with(b"{\"id\":7"), "{body:?}");
                assert_eq!(skip.as_ref().map(|v| v.as_bytes()), Some(&b"SKIP"[..]));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.get(), 101, "every request reached the handler");
}
