//! Prometheus metrics for Actix: [`metrics_route`]. The metrics themselves
//! ([`CacheMetrics`]) live in [`cache_core::metrics`], shared with `cache-axum`.

use std::time::Instant;

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpResponse, Resource};
use cache_core::metrics::{CacheMetrics, PROMETHEUS_CONTENT_TYPE};

/// Records a response (if it carries the cache status header) for `resource`, timed from
/// `start`.
pub(crate) fn record_response(
    metrics: &CacheMetrics,
    resource: &str,
    headers: &HeaderMap,
    status_header: &http::HeaderName,
    start: Instant,
) {
    if let Some(status) = headers
        .get(status_header.as_str())
        .and_then(|v| v.to_str().ok())
    {
        metrics.record_request(resource, status, start.elapsed());
    }
}

/// A resource at `path` serving `GET` with the Prometheus text of `metrics`
/// (`content-type: text/plain; version=0.0.4`): `App::new().service(metrics_route("/metrics", m))`.
///
/// The resource is public as returned; to restrict it, `.wrap(..)` it with your own
/// authentication, or serve it on an internal listener only.
///
/// ```
/// use std::time::Duration;
/// use actix_web::{web, App, HttpResponse};
/// use cache_actix::{metrics_route, CacheMetrics, ResponseCacheLayer, RoutePolicy};
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let metrics = CacheMetrics::new(cache.clone());
/// let app = App::new()
///     .wrap(
///         ResponseCacheLayer::builder(cache)
///             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(60)).resource("trig"))
///             .metrics(metrics.clone())
///             .build(),
///     )
///     .route("/trigs/{id}", web::get().to(|| async { HttpResponse::Ok().body("trig") }))
///     .service(metrics_route("/metrics", metrics));
/// ```
pub fn metrics_route(path: &str, metrics: CacheMetrics) -> Resource {
    web::resource(path).route(web::get().to(move || {
        let text = metrics.render();
        async move {
            HttpResponse::Ok()
                .content_type(PROMETHEUS_CONTENT_TYPE)
                .body(text)
        }
    }))
}
