//! The items API of `items_api.rs` as an Axum app, shared by `axum_differential.rs` and
//! `fuzz_http.rs`: the routes (uncached), the cache layer's configuration, and the conversions
//! between a harness request / reply and Axum's types. A file that includes it declares
//! `mod items_api` (`#[path = "common/items_api.rs"]`) at its root.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cache_axum::{ResponseCacheBuilder, ResponseCacheLayer, RoutePolicy, RouteScope};
use cache_core::Cache;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::items_api::{self, Origin, Out, Reply, Req, Target};

pub const HOUR: Duration = Duration::from_secs(3600);

pub fn respond(out: Out) -> Response {
    (
        StatusCode::from_u16(out.status).unwrap(),
        [("content-type", out.content_type)],
        out.body,
    )
        .into_response()
}

/// The caller of the per-user route: the `X-User` header (visible ASCII only).
pub fn user_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The items API, uncached.
pub fn routes(origin: Arc<Origin>) -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(
                |State(o): State<Arc<Origin>>, Path(id): Path<String>| async move {
                    respond(o.get_item(&id))
                },
            )
            .put(
                |State(o): State<Arc<Origin>>, Path(id): Path<String>, body: String| async move {
                    respond(o.put_item(&id, &body))
                },
            ),
        )
        .route(
            "/items",
            get(
                |State(o): State<Arc<Origin>>, RawQuery(q): RawQuery| async move {
                    respond(o.list(q.as_deref()))
                },
            )
            .post(|State(o): State<Arc<Origin>>, body: String| async move {
                respond(o.create(&body))
            }),
        )
        .route(
            "/me/items/{id}",
            get(
                |State(o): State<Arc<Origin>>, headers: HeaderMap, Path(id): Path<String>| async move {
                    respond(o.my_item(user_of(&headers).as_deref(), &id))
                },
            ),
        )
        .with_state(origin)
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
        .user(|parts| user_of(&parts.headers))
}

pub fn layer(cache: Cache) -> ResponseCacheLayer {
    layer_builder(cache).build()
}

/// The items API behind the cache layer.
pub fn cached_routes(cache: Cache, origin: Arc<Origin>) -> Router {
    routes(origin).layer(layer(cache))
}

pub fn request(req: &Req) -> Request {
    let mut b = Request::builder().method(req.method).uri(&req.uri);
    for (n, v) in &req.headers {
        b = b.header(n, v);
    }
    b.body(Body::from(req.body.clone())).unwrap()
}

/// The whole answer (status, headers with lowercase names, body).
pub async fn reply(resp: Response) -> Reply {
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
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A copy of the app: in-process (`oneshot`) for everything but `HEAD`, which goes through
/// `axum::serve` on a real socket (the server writes `Content-Length` and strips the body).
pub struct AxumTarget {
    pub router: Router,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl AxumTarget {
    pub async fn start(router: Router) -> AxumTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = router.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, served).await.unwrap();
        });
        AxumTarget {
            router,
            addr,
            server,
        }
    }

    pub async fn oneshot(&self, req: &Req) -> Reply {
        reply(self.router.clone().oneshot(request(req)).await.unwrap()).await
    }
}

impl Drop for AxumTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Target for AxumTarget {
    async fn send(&self, req: &Req) -> Reply {
        if req.method == "HEAD" {
            items_api::tcp_send(self.addr, req).await
        } else {
            self.oneshot(req).await
        }
    }
}
