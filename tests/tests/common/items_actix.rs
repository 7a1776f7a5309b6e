//! The items API of `items_api.rs` as an Actix app, shared by `actix_differential.rs` and
//! `fuzz_http.rs`: the handlers and routes (uncached), the cache layer's configuration, and the
//! in-process call returning a harness [`Reply`]. A file that includes it declares
//! `mod items_api` (`#[path = "common/items_api.rs"]`) at its root.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{web, HttpRequest, HttpResponse};
use cache_actix::{ResponseCacheBuilder, ResponseCacheLayer, RoutePolicy, RouteScope};
use cache_core::Cache;

use crate::items_api::{Origin, Out, Reply, Req};

pub const HOUR: Duration = Duration::from_secs(3600);

pub fn respond(out: Out) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(out.status).unwrap())
        .content_type(out.content_type)
        .body(out.body)
}

/// The caller of the per-user route: the `X-User` header (visible ASCII only).
pub fn user_of(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn get_item(o: web::Data<Origin>, id: web::Path<String>) -> HttpResponse {
    respond(o.get_item(&id))
}

pub async fn put_item(o: web::Data<Origin>, id: web::Path<String>, body: String) -> HttpResponse {
    respond(o.put_item(&id, &body))
}

pub async fn list(o: web::Data<Origin>, req: HttpRequest) -> HttpResponse {
    respond(o.list(req.uri().query()))
}

pub async fn create(o: web::Data<Origin>, body: String) -> HttpResponse {
    respond(o.create(&body))
}

pub async fn my_item(
    o: web::Data<Origin>,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    respond(o.my_item(user_of(&req).as_deref(), &id))
}

/// The items API (with a `web::Data<Origin>` in the app). `web::get()` does not match HEAD in
/// actix: both are registered.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/items/{id}")
            .route(web::get().to(get_item))
            .route(web::head().to(get_item))
            .route(web::put().to(put_item)),
    )
    .service(
        web::resource("/items")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/me/items/{id}")
            .route(web::get().to(my_item))
            .route(web::head().to(my_item)),
    );
}

/// The cache layer's configuration for the items API, before `build` (callers may add routes).
pub fn layer_builder(cache: Cache) -> ResponseCacheBuilder {
    ResponseCacheLayer::builder(cache)
        .route(
            "/items/{id}",
            RoutePolicy::ttl(HOUR).tag("item:{id}").resource("item"),
        )
        .route(
            "/items",
            RoutePolicy::ttl(HOUR).tag("items:list").resource("items"),
        )
        .route(
            "/me/items/{id}",
            RoutePolicy::ttl(HOUR)
                .tag("item:{id}")
                .scope(RouteScope::PerUser)
                .resource("my_item"),
        )
        .invalidate_on_write("/items/{id}", ["item:{id}", "items:list"])
        .invalidate_on_write("/items", ["items:list"])
        .user(user_of)
}

pub fn layer(cache: Cache) -> ResponseCacheLayer {
    layer_builder(cache).build()
}

pub fn request(req: &Req) -> Request {
    let mut r = TestRequest::default()
        .method(Method::from_bytes(req.method.as_bytes()).unwrap())
        .uri(&req.uri);
    for (n, v) in &req.headers {
        r = r.insert_header((n.as_str(), v.as_str()));
    }
    r.set_payload(req.body.clone()).to_request()
}

/// Sends `req` in-process and reads the whole answer.
pub async fn call_request<S, B>(svc: &S, req: Request) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(svc, req).await;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = test::read_body(resp).await.to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn call<S, B>(svc: &S, req: &Req) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    call_request(svc, request(req)).await
}
