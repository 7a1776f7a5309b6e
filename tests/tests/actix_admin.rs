#![allow(missing_docs)]
//! The operator API of `cache-actix` (`admin_scope`), through a real `App`, on Redis and memory;
//! one test over a real TCP socket (`HttpServer`), one against a killed Redis: the cases of
//! `axum_admin.rs`.

mod common;

use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpServer};
use cache_actix::{admin_scope, AdminGuard};
use cache_core::{Cache, Policy};
use cache_tests::{unique_namespace, RedisServer};
use common::{Ctx, Kind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOUR: Duration = Duration::from_secs(3600);
const TOKEN: &str = "s3cret-admin-token";

async fn app(
    cache: Cache,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    app_with(cache, AdminGuard::bearer(TOKEN)).await
}

async fn app_with(
    cache: Cache,
    guard: AdminGuard,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(App::new().service(admin_scope("/admin/cache", cache, guard))).await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

async fn send<S, B>(app: &S, req: Request) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = test::read_body(resp).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

fn request(method: &str, uri: &str) -> TestRequest {
    TestRequest::default()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
}

fn req(method: &str, uri: &str, body: Option<Value>) -> Request {
    let b = request(method, uri).insert_header(("authorization", format!("Bearer {TOKEN}")));
    match body {
        Some(v) => b
            .insert_header(("content-type", "application/json"))
            .set_payload(v.to_string())
            .to_request(),
        None => b.to_request(),
    }
}

async fn call<S, B>(app: &S, method: &str, uri: &str, body: Option<Value>) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send(app, req(method, uri, body)).await
}

async fn put(cache: &Cache, resource: &str, id: u32, tag: &str) {
    let key = cache.key(resource).id(id).build();
    cache
        .set(&key, &id, Policy::ttl(HOUR).tag(tag))
        .await
        .unwrap();
}

async fn has(cache: &Cache, resource: &str, id: u32) -> bool {
    cache
        .get::<u32>(&cache.key(resource).id(id).build())
        .await
        .is_some()
}

/// The stats JSON reports the in-process tier: `l1` is `null` without one, its state with one,
/// and `counters.l1_hits` counts the hits it served.
async fn stats_report_the_l1_tier(ctx: Ctx) {
    let plain = ctx.cache();
    let r = call(&app(plain.clone()).await, "GET", "/admin/cache/stats", None).await;
    assert!(r.json["l1"].is_null(), "{}", r.json);
    let cache = ctx.l1_cache().await;
    let app = app(cache.clone()).await;
    let key = cache.key("trig").id(1).build();
    for _ in 0..3 {
        let v: u32 = cache.get_or_load(&key, HOUR, || async { 1 }).await;
        assert_eq!(v, 1);
    }
    let r = call(&app, "GET", "/admin/cache/stats", None).await;
    let j = &r.json;
    assert_eq!(j["l1"]["live"], true, "{j}");
    assert_eq!(j["l1"]["max_bytes"], 16 * 1024 * 1024, "{j}");
    assert_eq!(j["l1"]["entries"], 1, "{j}");
    assert!(j["l1"]["bytes"].as_u64().unwrap() > 0, "{j}");
    assert!(
        j["l1"]["notices"].is_u64() && j["l1"]["losses"].is_u64(),
        "{j}"
    );
    assert_eq!(j["counters"]["hits"], 2, "{j}");
    assert_eq!(j["counters"]["l1_hits"], 2, "{j}");
    assert_eq!(j["resources"]["trig"]["l1_hits"], 2, "{j}");
}

async fn stats_report_server_and_counters(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app(cache.clone()).await;
    let key = cache.key("trig").id(1).build();
    let _: u32 = cache.get_or_load(&key, HOUR, || async { 1 }).await; // miss + store
    let _: u32 = cache.get_or_load(&key, HOUR, || async { 2 }).await; // hit
    let r = call(&app, "GET", "/admin/cache/stats", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    let j = &r.json;
    for field in [
        "total_keys",
        "memory_used_bytes",
        "keyspace_hits",
        "keyspace_misses",
        "connected_clients",
    ] {
        assert!(j[field].is_u64(), "{field}: {j}");
    }
    assert!(j["total_keys"].as_u64().unwrap() >= 1, "{j}");
    let human = j["memory_used_human"].as_str().unwrap();
    assert!(
        ["B", "K", "M", "G", "T"].iter().any(|u| human.ends_with(u)),
        "{human}"
    );
    assert!(j["hit_rate_percent"].is_f64() || j["hit_rate_percent"].is_u64());
    let expected_backend = match ctx.kind {
        Kind::Redis | Kind::Tls => "redis",
        Kind::Cluster => "redis-cluster",
        Kind::Memory => "memory",
    };
    assert_eq!(j["backend"], expected_backend);
    assert_eq!(j["counters"]["hits"], 1, "{j}");
    assert_eq!(j["counters"]["misses"], 1, "{j}");
    assert_eq!(j["counters"]["sets"], 1, "{j}");
    assert_eq!(j["resources"]["trig"]["hits"], 1, "{j}");
    assert_eq!(j["health"]["status"], "up", "{j}");
    assert_eq!(j["health"]["backend"], expected_backend);
}

async fn flush_all_empties_the_namespace_only(ctx: Ctx) {
    let cache = ctx.cache();
    let other = ctx
        .builder()
        .namespace(unique_namespace("other"))
        .build()
        .unwrap();
    put(&cache, "trig", 1, "trig:1").await;
    put(&cache, "user", 2, "user:2").await;
    put(&other, "trig", 1, "trig:1").await;
    let app = app(cache.clone()).await;
    let r = call(&app, "DELETE", "/admin/cache", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["deleted"].as_u64().unwrap() >= 2, "{}", r.json);
    assert!(!has(&cache, "trig", 1).await);
    assert!(!has(&cache, "user", 2).await);
    assert!(
        has(&other, "trig", 1).await,
        "another namespace was flushed"
    );
    // Unlike axum 0.8 (404 for the trailing slash), `admin_scope` documents that the scope
    // answers the flush both at the prefix and at `prefix/`.
    put(&cache, "trig", 3, "trig:3").await;
    let r = call(&app, "DELETE", "/admin/cache/", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["deleted"].as_u64().unwrap() >= 1, "{}", r.json);
    assert!(!has(&cache, "trig", 3).await);
    assert!(has(&other, "trig", 1).await);
}

async fn pattern_flush_deletes_only_matching(ctx: Ctx) {
    let cache = ctx.cache();
    put(&cache, "trig", 1, "a").await;
    put(&cache, "trig", 2, "b").await;
    put(&cache, "user", 1, "c").await;
    let app = app(cache.clone()).await;
    let r = call(&app, "DELETE", "/admin/cache?pattern=trig%3A*", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({ "deleted": 2, "pattern": "trig:*" }));
    assert!(!has(&cache, "trig", 1).await);
    assert!(!has(&cache, "trig", 2).await);
    assert!(has(&cache, "user", 1).await);
}

async fn invalid_pattern_is_400(ctx: Ctx) {
    let cache = ctx.cache();
    put(&cache, "trig", 1, "a").await;
    let app = app(cache.clone()).await;
    for uri in ["/admin/cache?pattern=trig%20*", "/admin/cache?pattern="] {
        let r = call(&app, "DELETE", uri, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.json["error"].is_string(), "{}", r.json);
    }
    assert!(has(&cache, "trig", 1).await);
}

async fn invalidate_removes_tagged_entries(ctx: Ctx) {
    let cache = ctx.cache();
    put(&cache, "trig", 1, "trig:1").await;
    put(&cache, "trig", 2, "trig:2").await;
    put(&cache, "user", 3, "trig:1").await;
    let app = app(cache.clone()).await;
    let r = call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some(json!({ "tags": ["trig:1"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["tags"], json!(["trig:1"]));
    assert!(r.json["invalidated"].as_u64().unwrap() >= 1, "{}", r.json);
    assert!(!has(&cache, "trig", 1).await);
    assert!(!has(&cache, "user", 3).await);
    assert!(has(&cache, "trig", 2).await);
    // No tags, or a body that is not the expected JSON: 400 with an error.
    let r = call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some(json!({ "tags": [] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["error"].is_string());
    let r = call(&app, "POST", "/admin/cache/invalidate", Some(json!([1]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["error"].is_string());
}

async fn reset_stats_zeroes_counters(ctx: Ctx) {
    let cache = ctx.cache();
    let key = cache.key("trig").id(1).build();
    let _: u32 = cache.get_or_load(&key, HOUR, || async { 1 }).await;
    let _: u32 = cache.get_or_load(&key, HOUR, || async { 1 }).await;
    assert!(cache.stats().total.hits > 0);
    let app = app(cache.clone()).await;
    let r = call(&app, "POST", "/admin/cache/reset-stats", None).await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::OK, json!({ "reset": true }))
    );
    let s = call(&app, "GET", "/admin/cache/stats", None).await;
    assert_eq!(s.json["counters"]["hits"], 0);
    assert_eq!(s.json["counters"]["misses"], 0);
    assert_eq!(s.json["counters"]["sets"], 0);
}

async fn health_is_200_when_up(ctx: Ctx) {
    let app = app(ctx.cache()).await;
    let r = call(&app, "GET", "/admin/cache/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "up");
    assert_eq!(r.json["breaker"], "closed");
}

async fn bearer_guard_refuses_missing_and_wrong_tokens(ctx: Ctx) {
    let cache = ctx.cache();
    put(&cache, "trig", 1, "trig:1").await;
    let app = app(cache.clone()).await;
    for (method, uri) in [
        ("GET", "/admin/cache/stats"),
        ("DELETE", "/admin/cache"),
        ("POST", "/admin/cache/invalidate"),
        ("POST", "/admin/cache/reset-stats"),
        ("GET", "/admin/cache/health"),
    ] {
        let missing = send(&app, request(method, uri).to_request()).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(missing.headers.get("www-authenticate").unwrap(), "Bearer");
        assert!(missing.json["error"].is_string());
        for auth in [
            "Bearer wrong",
            "Bearer s3cret-admin-toke",
            "Bearer s3cret-admin-tokenX",
        ] {
            let wrong = send(
                &app,
                request(method, uri)
                    .insert_header(("authorization", auth))
                    .to_request(),
            )
            .await;
            assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{method} {uri} {auth}");
            assert!(wrong.headers.get("www-authenticate").is_none());
        }
        let basic = send(
            &app,
            request(method, uri)
                .insert_header(("authorization", "Basic YWRtaW46YWRtaW4="))
                .to_request(),
        )
        .await;
        assert_eq!(basic.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    // Nothing was flushed by the refused requests.
    assert!(has(&cache, "trig", 1).await);
}

async fn predicate_guard(ctx: Ctx) {
    let cache = ctx.cache();
    let app = app_with(
        cache,
        AdminGuard::predicate(|req| {
            req.headers()
                .get("x-admin")
                .is_some_and(|v| v.as_bytes() == b"yes")
        }),
    )
    .await;
    let ok = send(
        &app,
        TestRequest::get()
            .uri("/admin/cache/health")
            .insert_header(("x-admin", "yes"))
            .to_request(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    for value in [None, Some("no")] {
        let mut b = TestRequest::get().uri("/admin/cache/stats");
        if let Some(v) = value {
            b = b.insert_header(("x-admin", v));
        }
        let r = send(&app, b.to_request()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{value:?}");
    }
}

on_both_backends_actix!(
    stats_report_the_l1_tier,
    stats_report_server_and_counters,
    flush_all_empties_the_namespace_only,
    pattern_flush_deletes_only_matching,
    invalid_pattern_is_400,
    invalidate_removes_tagged_entries,
    reset_stats_zeroes_counters,
    health_is_200_when_up,
    bearer_guard_refuses_missing_and_wrong_tokens,
    predicate_guard,
);

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_str = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[actix_web::test]
async fn stats_over_a_real_tcp_server() {
    let ctx = Ctx::new(Kind::Redis);
    let cache = ctx.cache();
    put(&cache, "trig", 1, "trig:1").await;
    let server = HttpServer::new(move || {
        App::new().service(admin_scope(
            "/admin/cache",
            cache.clone(),
            AdminGuard::bearer(TOKEN),
        ))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /admin/cache/stats HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    handle.stop(true).await;
    running
        .await
        .expect("server task")
        .expect("server stopped cleanly");

    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    assert!(lines.next().unwrap().starts_with("HTTP/1.1 200"), "{head}");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/json"));
    let body = if header("transfer-encoding") == Some("chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["backend"], "redis");
    assert!(j["total_keys"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["counters"]["sets"], 1, "{j}");
    assert_eq!(j["health"]["status"], "up");
}

#[actix_web::test]
async fn redis_down_health_503_invalidate_queued_202_stats_200() {
    cache_tests::init_tracing();
    let mut server = RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(unique_namespace("adm"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    put(&cache, "trig", 1, "trig:1").await;
    let app = app(cache.clone()).await;
    assert_eq!(
        call(&app, "GET", "/admin/cache/health", None).await.status,
        StatusCode::OK
    );

    server.kill();
    let h = call(&app, "GET", "/admin/cache/health", None).await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.json);
    assert_eq!(h.json["status"], "down");
    assert!(h.json["error"].is_string());

    let i = call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some(json!({ "tags": ["trig:1"] })),
    )
    .await;
    // Not lost: queued, replayed when Redis answers.
    assert_eq!(i.status, StatusCode::ACCEPTED, "{}", i.json);
    assert_eq!(i.json["queued"], true);

    let f = call(&app, "DELETE", "/admin/cache", None).await;
    assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE, "{}", f.json);
    assert!(f.json["error"].is_string());

    let s = call(&app, "GET", "/admin/cache/stats", None).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.json["total_keys"].is_null(), "{}", s.json);
    assert!(s.json["memory_used_bytes"].is_null());
    assert!(s.json["hit_rate_percent"].is_null());
    assert_eq!(s.json["backend"], "redis");
    assert_eq!(s.json["health"]["status"], "down");
    assert!(s.json["counters"].is_object());
}
