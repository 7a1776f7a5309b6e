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
//! `If-None-Match`, keys) live in [`cache_core::http`], shared with `cache-actix`.

mod admin;
mod context;
mod layer;
mod metrics;

pub use crate::admin::{admin_router, AdminGuard};
pub use crate::context::{CacheContext, CacheContextBuilder, CacheContextLayer};
pub use crate::layer::{
    CacheHeaderNames, ResponseCache, ResponseCacheBuilder, ResponseCacheLayer, RoutePolicy,
    HEADER_AGE, HEADER_KEY, HEADER_STATUS, HEADER_TTL,
};
pub use crate::metrics::{metrics_route, CacheMetrics, PROMETHEUS_CONTENT_TYPE};
pub use cache_core;
pub use cache_core::http::RouteScope;
