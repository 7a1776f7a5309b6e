//! Actix-web integration for `cache-core`: the same capabilities, builder methods, option names
//! and defaults as `cache-axum`, in Actix's idioms (`Transform` + `Service` middleware that
//! never requires `Send` of the services it wraps, a `Scope` for the admin API, a `Resource`
//! for metrics).
//!
//! ```
//! use std::time::Duration;
//! use actix_web::{web, App, HttpResponse};
//! use cache_actix::{admin_scope, AdminGuard, CacheContextLayer, ResponseCacheLayer, RoutePolicy};
//! use cache_core::Cache;
//!
//! let cache = Cache::memory();
//! let app = App::new()
//!     // Whole-response caching of configured routes, with ETag/304 and X-Cache-* headers.
//!     .wrap(
//!         ResponseCacheLayer::builder(cache.clone())
//!             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(3600)).tag("trig:{id}"))
//!             .invalidate_on_write("/trigs/{id}/logs", ["trig:{id}"])
//!             .build(),
//!     )
//!     // Bypass and user scope in, X-Cache-* headers out, for `#[cached]` handlers.
//!     .wrap(CacheContextLayer::builder().build())
//!     .route("/trigs/{id}", web::get().to(|| async { HttpResponse::Ok().body("trig") }))
//!     .service(admin_scope("/admin/cache", cache, AdminGuard::bearer("s3cret")));
//! ```
//!
//! The HTTP rules (GET/HEAD only, credentials, bypass, storability, header filtering,
//! `If-None-Match`, keys), the whole-response cache steps ([`cache_core::http::HttpCache`]), the
//! admin operations and JSON ([`cache_core::admin`]) and the metrics ([`cache_core::metrics`])
//! live in `cache-core`, shared with `cache-axum`: this crate converts between Actix's types and
//! those.
//!
//! # Parity with `cache-axum`
//!
//! | capability | `cache-axum` | `cache-actix` |
//! | --- | --- | --- |
//! | whole-response cache | `ResponseCacheLayer::builder(cache)…build()` in `Router::layer` | `ResponseCacheLayer::builder(cache)…build()` in `App::wrap` |
//! | builder methods | `route`, `vary`, `cacheable_statuses`, `bypass_param`, `bypass_allowed`, `user`, `expose_key`, `header_names`, `invalidate_on_write`, `max_body`, `metrics` | the same (closures take `&http::request::Parts` / `&HttpRequest`) |
//! | route policy | `RoutePolicy::ttl(..).tag("trig:{id}").scope(..).resource(..)` | the same type (re-exported from `cache_core::http`) |
//! | `#[cached]` handlers | `CacheContextLayer` (bypass, user, `X-Cache-*` out) | `CacheContextLayer`, same builder |
//! | `#[cached]` whole-response handlers | `-> Response`, `-> impl IntoResponse`, a response tuple such as `(StatusCode, Json<T>)` (returns `Response`) | `-> HttpResponse`, `-> impl Responder`, `(R, StatusCode)` (returns `HttpResponse`; a hidden `HttpRequest` argument is added for the last two) |
//! | `#[cached]` / `#[invalidates]` extractors | `Path` (readable id segments of the default key), `Query`, `Json`, `State` | `web::Path` (the same), `web::Query`, `web::Json`, `web::Data` |
//! | headers | `X-Cache-Status` (`HIT`/`MISS`/`BYPASS`/`STALE`/`SKIP`), `X-Cache-Key`, `X-Cache-Age`, `X-Cache-TTL`, `Age`, `Cache-Control`, `ETag` | the same |
//! | bypass | `Cache-Control: no-cache`, `Pragma: no-cache`, `?cache_bypass=1`, restricted by `bypass_allowed` | the same |
//! | conditional requests | `If-None-Match` → 304 from the entry; `HEAD` from the `GET` entry | the same |
//! | credentials | shared routes pass `Authorization` / session cookies; `RouteScope::PerUser` keys by user; `RouteScope::Public` ignores them | the same |
//! | body cap | `max_body` (1 MiB): larger bodies stream through unstored | the same |
//! | fail-open | Redis down → `SKIP`, handler answers | the same |
//! | admin API | `admin_router(cache, guard)` nested where you like | `admin_scope(path, cache, guard)` |
//! | admin guard | `AdminGuard::{bearer, predicate, custom, allow_all, allows}` | the same |
//! | metrics | `CacheMetrics` + `metrics_route(path, m)` (a `Router`, merged) | `CacheMetrics` + `metrics_route(path, m)` (a `Resource`) |
//! | tests | `tests/tests/axum_*.rs` | `tests/tests/actix_*.rs` (the same cases) |
//! | throughput bench | `cargo bench -p cache-tests --bench axum_throughput` | `cargo bench -p cache-tests --bench actix_throughput` |

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

pub use crate::admin::{admin_scope, AdminGuard};
#[cfg(feature = "analytics")]
pub use crate::analytics::{warm_from_analytics, AnalyticsLayer, AnalyticsService};
pub use crate::context::{CacheContext, CacheContextBuilder, CacheContextLayer};
pub use crate::layer::{ResponseCache, ResponseCacheBuilder, ResponseCacheLayer};
pub use crate::metrics::metrics_route;
pub(crate) use crate::metrics::record_response;
pub use cache_core;
pub use cache_core::http::{
    CacheHeaderNames, RoutePolicy, RouteScope, HEADER_AGE, HEADER_KEY, HEADER_STATUS, HEADER_TIER,
    HEADER_TTL,
};
pub use cache_core::metrics::{CacheMetrics, PROMETHEUS_CONTENT_TYPE};
