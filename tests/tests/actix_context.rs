#![allow(missing_docs)]
//! `CacheContextLayer`: `X-Cache-*` headers and bypass for `#[cached]` Actix handlers: the cases
//! of `axum_context.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use cache_actix::CacheContextLayer;
use cache_core::{cached, Cache};
use common::Ctx;

#[derive(Clone)]
struct State {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

#[cached(resource = "trig", ttl = "1h", cache = app.cache.clone())]
async fn get_trig(app: web::Data<State>, id: web::Path<u32>) -> web::Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    web::Json(format!("trig {}", *id))
}

/// A path value in one segment (`1:2` stays one value).
#[cached(resource = "name", ttl = "1h", cache = app.cache.clone())]
async fn get_name(app: web::Data<State>, name: web::Path<String>) -> web::Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    web::Json(format!("name {}", *name))
}

/// Two path values, in the same resource as [`get_name`].
#[cached(resource = "name", ttl = "1h", cache = app.cache.clone())]
async fn get_pair(app: web::Data<State>, path: web::Path<(String, String)>) -> web::Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    web::Json(format!("pair {} {}", path.0, path.1))
}

async fn service(
    state: State,
    layer: CacheContextLayer,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .route("/trigs/{id}", web::get().to(get_trig))
            .route("/names/{name}", web::get().to(get_name))
            .route("/pairs/{a}/{b}", web::get().to(get_pair))
            .route("/plain", web::get().to(|| async { "plain" }))
            .wrap(layer),
    )
    .await
}

async fn call<S, B>(svc: &S, req: Request) -> (StatusCode, HeaderMap, String)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(svc, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    (status, headers, body)
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn cached_handlers_get_cache_headers_and_honour_bypass(ctx: Ctx) {
    let state = State {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let r = service(state.clone(), CacheContextLayer::builder().build()).await;
    let req = || TestRequest::get().uri("/trigs/1").to_request();
    let (status, headers, body) = call(&r, req()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "\"trig 1\""));
    assert_eq!(h(&headers, "x-cache-status"), "MISS");
    let key = state.cache.key("trig").id(1).build();
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
    assert_eq!(state.loads.load(Ordering::SeqCst), 1);
    let bypass = TestRequest::get()
        .uri("/trigs/1")
        .insert_header(("cache-control", "no-cache"))
        .to_request();
    let (_, headers, _) = call(&r, bypass).await;
    assert_eq!(h(&headers, "x-cache-status"), "BYPASS");
    assert_eq!(state.loads.load(Ordering::SeqCst), 2);
    // Handlers without #[cached] get no cache headers.
    let (_, headers, _) = call(&r, TestRequest::get().uri("/plain").to_request()).await;
    assert_eq!(h(&headers, "x-cache-status"), "");
    // A restricted bypass is refused for the public, and the key can be hidden.
    let restricted = service(
        state.clone(),
        CacheContextLayer::builder()
            .bypass_allowed(|req| req.headers().contains_key("x-admin"))
            .expose_key(false)
            .build(),
    )
    .await;
    let bypass = TestRequest::get()
        .uri("/trigs/1")
        .insert_header(("cache-control", "no-cache"))
        .to_request();
    let (_, headers, _) = call(&restricted, bypass).await;
    assert_eq!(h(&headers, "x-cache-status"), "HIT");
    assert_eq!(h(&headers, "x-cache-key"), "");
}

/// Without `key`, a `web::Path` argument is readable id segments: `web::Path<u32>` is keyed
/// `ns:v1:trig:123`, `web::Path<(String, String)>` one segment per element. Two ids are two
/// entries, each with the handler's body; the value `1:2` in one segment and the values `1`, `2`
/// in two are two entries too (`name:1%3A2`, `name:1:2`).
async fn path_parameters_are_readable_id_segments_in_the_key(ctx: Ctx) {
    let state = State {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let r = service(state.clone(), CacheContextLayer::builder().build()).await;
    let cache = &state.cache;
    let cases = [
        ("/trigs/123", cache.key("trig").id(123).build(), "trig 123"),
        ("/trigs/124", cache.key("trig").id(124).build(), "trig 124"),
        (
            "/names/1:2",
            cache.key("name").id("1:2").build(),
            "name 1:2",
        ),
        (
            "/pairs/1/2",
            cache.key("name").id(1).id(2).build(),
            "pair 1 2",
        ),
    ];
    let prefix = cache
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
            let (status, headers, got) = call(&r, TestRequest::get().uri(uri).to_request()).await;
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
        state.loads.load(Ordering::SeqCst),
        cases.len(),
        "one entry per request"
    );
}

/// Bypass is open to everyone by default; one line restricts it to the callers the admin guard
/// admits. A refused bypass is an ordinary hit with the cached body; an admitted one refreshes.
async fn bypass_restricted_to_the_admin_guard_in_one_line(ctx: Ctx) {
    let state = State {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let admin = cache_actix::AdminGuard::bearer("s3cret");
    let r = service(
        state.clone(),
        CacheContextLayer::builder()
            .bypass_allowed(move |req| admin.allows(req))
            .build(),
    )
    .await;
    let req = |auth: Option<&str>, flag: &str| {
        let mut b = TestRequest::get().uri(&format!("/trigs/7{flag}"));
        if let Some(token) = auth {
            b = b.insert_header(("authorization", format!("Bearer {token}")));
        }
        b.to_request()
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
        state.loads.load(Ordering::SeqCst),
        1,
        "refused bypasses ran nothing"
    );
    let (_, headers, body) = call(&r, req(Some("s3cret"), "?cache_bypass=1")).await;
    assert_eq!(
        (h(&headers, "x-cache-status"), body.as_str()),
        ("BYPASS", "\"trig 7\"")
    );
    assert_eq!(state.loads.load(Ordering::SeqCst), 2);
}

on_both_backends_actix!(
    cached_handlers_get_cache_headers_and_honour_bypass,
    path_parameters_are_readable_id_segments_in_the_key,
    bypass_restricted_to_the_admin_guard_in_one_line
);
