//! Axum integration for `cache-core`.
//!
//! **Status:** the whole-response cache layer ([`ResponseCacheLayer`]), the request-context
//! layer for `#[cached]` handlers ([`CacheContextLayer`]) and the admin router
//! ([`admin_router`]) and Prometheus metrics ([`CacheMetrics`], [`metrics_route`]) are here.
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
//! The HTTP rules (GET/HEAD only, credentials, bypass, storability, header filtering,
//! `If-None-Match`, keys), the whole-response cache steps ([`cache_core::http::HttpCache`]), the
//! admin operations and JSON ([`cache_core::admin`]) and the metrics ([`cache_core::metrics`])
//! live in `cache-core`, shared with `cache-actix`: this crate is the Axum glue.

mod admin;
mod context;
mod layer;
mod metrics;

pub use crate::admin::{admin_router, AdminGuard};
pub use crate::context::{CacheContext, CacheContextBuilder, CacheContextLayer};
pub use crate::layer::{ResponseCache, ResponseCacheBuilder, ResponseCacheLayer};
pub use crate::metrics::metrics_route;
pub use cache_core;
pub use cache_core::http::{
    CacheHeaderNames, RoutePolicy, RouteScope, HEADER_AGE, HEADER_KEY, HEADER_STATUS, HEADER_TTL,
};
pub use cache_core::metrics::{CacheMetrics, PROMETHEUS_CONTENT_TYPE};
