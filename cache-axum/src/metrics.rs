//! Prometheus metrics for Axum: [`metrics_route`]. The metrics themselves
//! ([`CacheMetrics`]) live in [`cache_core::metrics`], shared with `cache-actix`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Response};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cache_core::metrics::{CacheMetrics, PROMETHEUS_CONTENT_TYPE};
use http::HeaderName;

/// Records `resp` (if it carries the cache status header) for `resource`, timed from `start`.
pub(crate) fn record_response(
    metrics: &CacheMetrics,
    resource: &str,
    resp: &Response<Body>,
    status_header: &HeaderName,
    start: Instant,
) {
    if let Some(status) = resp
        .headers()
        .get(status_header)
        .and_then(|v| v.to_str().ok())
    {
        metrics.record_request(resource, status, start.elapsed());
    }
}

/// A router serving `GET /` with the Prometheus text of `metrics`
/// (`content-type: text/plain; version=0.0.4`).
///
/// Nest it where the scraper expects it: `Router::new().nest("/metrics", metrics_route(m))`
/// answers `GET /metrics`. The route is public as returned; to restrict it, add a
/// `route_layer` with your own authentication before nesting, or expose it on an internal
/// listener only.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use cache_axum::{metrics_route, CacheMetrics, ResponseCacheLayer, RoutePolicy};
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let metrics = CacheMetrics::new(cache.clone());
/// let app: Router = Router::new()
///     .route("/trigs/{id}", get(|| async { "trig" }))
///     .layer(
///         ResponseCacheLayer::builder(cache)
///             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(60)).resource("trig"))
///             .metrics(metrics.clone())
///             .build(),
///     )
///     .nest("/metrics", metrics_route(metrics));
/// ```
pub fn metrics_route(metrics: CacheMetrics) -> Router {
    Router::new().route("/", get(serve)).with_state(metrics)
}

async fn serve(State(metrics): State<CacheMetrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        metrics.render(),
    )
}
