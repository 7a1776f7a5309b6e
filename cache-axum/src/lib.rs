//! Axum integration for `cache-core`: the whole-response cache layer ([`ResponseCacheLayer`]),
//! the request-context layer for `#[cached]` handlers ([`CacheContextLayer`]), the admin router
//! ([`admin_router`]), Prometheus metrics ([`CacheMetrics`], [`metrics_route`]), and the runtime
//! that lets `#[cached]` cache handlers returning a whole response. A complete service is in the
//! README ("A complete Axum service").
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use cache_axum::{ResponseCacheLayer, RoutePolicy};
//! use cache_core::Cache;
//!
//! let cache = Cache::memory();
//! let app: Router = Router::new()
//!     .route("/trigs/{id}", get(|| async { "trig" }))
//!     .layer(
//!         ResponseCacheLayer::builder(cache)
//!             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(3600)).tag("trig:{id}"))
//!             .build(),
//!     );
//! ```
//!
//! # `#[cached]` handlers
//!
//! `#[cached]` (from `cache_core`) works on Axum handlers:
//! * `-> Json<T>` (also `Result<Json<T>, E>`, `Option<Json<T>>`): cached as `T` and re-wrapped
//!   on a hit; behind [`CacheContextLayer`] the hit's body is the stored JSON payload, byte for
//!   byte what the miss sent;
//! * `-> Response` (`axum::response::Response`, `Response<Body>`), `-> impl IntoResponse`, or a
//!   response tuple such as `-> (StatusCode, Json<T>)`, `(StatusCode, HeaderMap, Json<T>)` or
//!   `(HeaderMap, Json<T>)` (the function then returns the `Response` the tuple turns into):
//!   the **whole response** is cached, through the same engine and in the same stored format
//!   as [`ResponseCacheLayer`]'s entries, and a hit is served from the stored bytes (the body is
//!   not copied). The handler's response is classified by the shared HTTP rules: a `200` with
//!   storable headers is stored; another status is shared with concurrent identical requests
//!   only, not stored; a response with `Set-Cookie`, `Cache-Control: private`, `no-store` or
//!   `no-cache`, `Vary: *`, or a body (also a streaming one) over 1 MiB is returned as it is,
//!   unstored. `unless` does not apply to these handlers.
//!
//! With [`CacheContextLayer`] the responses get `X-Cache-*` headers, bypass requests refresh
//! the entry, and the stored `ETag` answers `If-None-Match` with `304` and an empty body.
//!
//! Without `key = ..`, a `Path` argument is readable id segments of the key
//! (`Path(id): Path<u32>` gives `<namespace>:v1:{resource}:123`), every other argument except
//! `State` and `Extension` a hashed parameter (the `cache-macros` crate docs, "The key").
//!
//! ```
//! use axum::extract::{Path, State};
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//! use axum::{routing::get, Router};
//! use cache_axum::CacheContextLayer;
//! use cache_core::{cached, Cache};
//!
//! // The whole response: status, headers and body.
//! #[cached(resource = "page", ttl = "10m", tags = ["trig:{id}"], cache = &cache)]
//! async fn page(State(cache): State<Cache>, Path(id): Path<u32>) -> impl IntoResponse {
//!     if id == 0 {
//!         return (StatusCode::NOT_FOUND, [("content-type", "text/plain")], "no trig".to_owned());
//!     }
//!     (StatusCode::OK, [("content-type", "text/html")], format!("<h1>trig {id}</h1>"))
//! }
//!
//! #[cached(resource = "card", ttl = "10m", cache = &cache)]
//! async fn card(State(cache): State<Cache>, Path(id): Path<u32>) -> Response {
//!     format!("card {id}").into_response()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/pages/{id}", get(page))
//!     .route("/cards/{id}", get(card))
//!     .with_state(Cache::memory())
//!     .layer(CacheContextLayer::builder().build());
//! ```
//!
//! The same handler called directly: the first call runs it, the second is served from the
//! cache with the same status, headers and body; a 404 is not stored.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use axum::extract::{Path, State};
//! use axum::http::StatusCode;
//! use axum::response::IntoResponse;
//! use axum::{routing::get, Router};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(resource = "page", ttl = "1m", tags = ["page:{id}"], cache = &cache)]
//! async fn page(State(cache): State<Cache>, Path(id): Path<u32>) -> impl IntoResponse {
//!     LOADS.fetch_add(1, SeqCst);
//!     if id == 0 {
//!         return (StatusCode::NOT_FOUND, [("x-served-by", "page")], "no page".to_owned());
//!     }
//!     (StatusCode::OK, [("x-served-by", "page")], format!("<h1>page {id}</h1>"))
//! }
//!
//! // In an application: a route like any other, behind the context layer.
//! let cache = Cache::memory();
//! let _app: Router = Router::new()
//!     .route("/pages/{id}", get(page))
//!     .with_state(cache.clone())
//!     .layer(cache_axum::CacheContextLayer::builder().build());
//!
//! // What a request gets: status, the handler's header, body.
//! async fn served(resp: impl IntoResponse) -> (StatusCode, String, String) {
//!     let resp = resp.into_response();
//!     let status = resp.status();
//!     let by = resp.headers()["x-served-by"].to_str().unwrap().to_owned();
//!     let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
//!     (status, by, String::from_utf8(body.to_vec()).unwrap())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let first = served(page(State(cache.clone()), Path(7)).await).await;
//! assert_eq!(first, (StatusCode::OK, "page".into(), "<h1>page 7</h1>".into()));
//! let hit = served(page(State(cache.clone()), Path(7)).await).await;
//! assert_eq!(hit, first); // the same response, from the cache
//! assert_eq!(LOADS.load(SeqCst), 1);
//! for _ in 0..2 {
//!     let missing = served(page(State(cache.clone()), Path(0)).await).await;
//!     assert_eq!(missing.0, StatusCode::NOT_FOUND);
//! }
//! assert_eq!(LOADS.load(SeqCst), 3, "a 404 is not stored");
//! # });
//! ```
//!
//! The HTTP rules (GET/HEAD only, credentials, bypass, storability, header filtering,
//! `If-None-Match`, keys), the whole-response cache steps ([`cache_core::http::HttpCache`]), the
//! admin operations and JSON ([`cache_core::admin`]) and the metrics ([`cache_core::metrics`])
//! live in `cache-core`, shared with `cache-actix`: this crate is the Axum glue.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod admin;
#[cfg(feature = "analytics")]
pub mod analytics;
mod context;
mod glue;
mod layer;
mod metrics;

pub use crate::admin::{admin_router, AdminGuard};
#[cfg(feature = "analytics")]
pub use crate::analytics::{warm_from_analytics, AnalyticsLayer, AnalyticsService};
pub use crate::context::{CacheContext, CacheContextBuilder, CacheContextLayer};
pub use crate::layer::{ResponseCache, ResponseCacheBuilder, ResponseCacheLayer};
pub use crate::metrics::metrics_route;
pub use cache_core;
pub use cache_core::http::{
    CacheHeaderNames, RoutePolicy, RouteScope, HEADER_AGE, HEADER_KEY, HEADER_STATUS, HEADER_TIER,
    HEADER_TTL,
};
pub use cache_core::metrics::{CacheMetrics, PROMETHEUS_CONTENT_TYPE};
