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

/// A router serving `GET {path}` with the Prometheus text of `metrics`
/// (`content-type: text/plain; version=0.0.4`), to [`merge`](Router::merge) into the app:
/// `app.merge(metrics_route("/metrics", m))` answers `GET /metrics`. The path is explicit, as in
/// `cache_actix::metrics_route`, so a merged route answers where it says.
///
/// The route is public as returned; to restrict it, add a `route_layer` with your own
/// authentication before merging, or expose it on an internal listener only.
///
/// # Panics
/// If `path` is not a valid axum route path (it must start with `/`).
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
///     .merge(metrics_route("/metrics", metrics));
/// ```
pub fn metrics_route(path: &str, metrics: CacheMetrics) -> Router {
    Router::new().route(path, get(serve)).with_state(metrics)
}

async fn serve(State(metrics): State<CacheMetrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        metrics.render(),
    )
}
