//! Route analytics for actix-web (feature `analytics`): [`AnalyticsLayer`] records every
//! request, cached or not, into [`cache_core::analytics`].
//!
//! Wrap the `App` with it **last** (outermost), so that it sees the `X-Cache-Status` the cache
//! layers set:
//!
//! ```
//! use std::time::Duration;
//! use actix_web::{web, App};
//! use cache_actix::{AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
//! use cache_core::Cache;
//!
//! let cache = Cache::memory();
//! let app = App::new()
//!     .route("/trigs/{id}", web::get().to(|| async { "trig" }))
//!     .route("/health", web::get().to(|| async { "ok" }))
//!     .wrap(
//!         ResponseCacheLayer::builder(cache.clone())
//!             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(60)))
//!             .build(),
//!     )
//!     .wrap(AnalyticsLayer::new(&cache).user(|req| {
//!         req.headers().get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//!     }));
//! ```
//!
//! Each event carries the route pattern (`req.match_pattern()` once routed;
//! [`UNMATCHED_ROUTE`] when no route matched, never the raw path), the method, the
//! pseudonymous user (the extractor's value keyed-hashed, see [`Analytics::pseudonym`]), the
//! start time, the status, the time until the response head, the cache outcome read from
//! `X-Cache-Status` ([`Outcome::None`] without one), the body's size, and whether the response
//! is `Cache-Control: private`. Recording is one `try_send`: it never waits and never fails the
//! request.

use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName};
use actix_web::{Error, HttpMessage};
use cache_core::analytics::Window;
use cache_core::analytics::{Analytics, Event, Outcome, UNMATCHED_ROUTE};
use cache_core::metrics::CacheMetrics;
use cache_core::warm::{WarmReport, WarmRequest};
use cache_core::{Cache, CacheError};

type UserFn = Arc<dyn Fn(&ServiceRequest) -> Option<String> + Send + Sync>;

#[derive(Clone)]
struct Config {
    analytics: Analytics,
    user: Option<UserFn>,
    metrics: Option<CacheMetrics>,
    status_header: HeaderName,
    key_header: HeaderName,
}

/// Records every request into the cache's [`Analytics`]. See the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct AnalyticsLayer {
    config: Arc<Config>,
}

impl fmt::Debug for AnalyticsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsLayer")
            .field("status_header", &self.config.status_header)
            .finish_non_exhaustive()
    }
}

impl AnalyticsLayer {
    /// Records into `cache`'s analytics; no user, no metrics, outcome from `X-Cache-Status`.
    pub fn new(cache: &Cache) -> AnalyticsLayer {
        cache.analytics().activate();
        AnalyticsLayer {
            config: Arc::new(Config {
                analytics: cache.analytics().clone(),
                user: None,
                metrics: None,
                status_header: HeaderName::from_static(crate::HEADER_STATUS),
                key_header: HeaderName::from_static(crate::HEADER_KEY),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// How the user is identified (the same extractor as the cache layers'). Its value is
    /// recorded only as a keyed hash.
    pub fn user(
        self,
        user: impl Fn(&ServiceRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.edit(|c| c.user = Some(Arc::new(user)))
    }

    /// Also records `http_route_requests_total` and `http_route_duration_seconds` per route
    /// pattern (see [`CacheMetrics::record_route`]).
    pub fn metrics(self, metrics: CacheMetrics) -> Self {
        self.edit(|c| c.metrics = Some(metrics))
    }

    /// The header the cache outcome is read from, when renamed with
    /// [`CacheHeaderNames`](crate::CacheHeaderNames) (default `x-cache-status`).
    pub fn status_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.status_header = name)
    }

    /// The header the cache key is read from (its resource name feeds the advisor), when
    /// renamed with [`CacheHeaderNames`](crate::CacheHeaderNames) (default `x-cache-key`).
    pub fn key_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.key_header = name)
    }
}

impl<S, B> Transform<S, ServiceRequest> for AnalyticsLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AnalyticsService<S>;
    type InitError = ();
    type Future = Ready<Result<AnalyticsService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AnalyticsService {
            service: Rc::new(service),
            config: self.config.clone(),
        }))
    }
}

/// The service produced by [`AnalyticsLayer`].
pub struct AnalyticsService<S> {
    service: Rc<S>,
    config: Arc<Config>,
}

impl<S> fmt::Debug for AnalyticsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsService").finish_non_exhaustive()
    }
}

impl<S> AnalyticsService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S, B> Service<ServiceRequest> for AnalyticsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if req.extensions().get::<WarmRequest>().is_some() {
            // A warmer's replay is not traffic.
            return Box::pin(self.service.call(req));
        }
        let start = Instant::now();
        let config = self.config.clone();
        let start_ms = config.analytics.now_ms();
        let method = req.method().as_str().to_owned();
        // A reference-counted copy: the target is copied out only for a shared response.
        let target = req.uri().path_and_query().cloned();
        let user = config.user.as_ref().and_then(|f| f(&req));
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let latency = start.elapsed();
            // Routed by now: the pattern of the resource that answered.
            let route = res
                .request()
                .match_pattern()
                .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
            let mut event = Event::new(method, route, start_ms);
            event.status = res.status().as_u16();
            event.latency = latency;
            event.outcome = res
                .headers()
                .get(&config.status_header)
                .map_or(Outcome::None, |v| Outcome::from_header(v.as_bytes()));
            event.bytes = match res.response().body().size() {
                BodySize::Sized(n) => n,
                BodySize::None | BodySize::Stream => 0,
            };
            event.private = res
                .headers()
                .get_all(header::CACHE_CONTROL)
                .any(|v| contains_private(v.as_bytes()));
            event.user = user.map(|u| config.analytics.pseudonym(&u));
            if let Some(pq) = target {
                event.target_key = Some(config.analytics.target_key(pq.as_str()));
                if event.shared_cacheable() {
                    event.target = Some(pq.as_str().to_owned());
                }
            }
            event.cache_key = res
                .headers()
                .get(&config.key_header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(m) = &config.metrics {
                m.record_route(&event.method, &event.route, event.status, latency);
            }
            config.analytics.record(event);
            Ok(res)
        })
    }
}

/// Warms the response caches of an actix-web service from the analytics: replays, in process,
/// the `per_route` most requested shared targets of every `GET` route the cache served in
/// `window` ([`Analytics::warm_targets`]), each as a plain `GET` through `service`, one after
/// another, and reports what it did. `service` is the application initialised in process with
/// [`actix_web::test::init_service`] (the same `App` the server builds: its cache middleware,
/// extractors and handlers, exactly as a client's request). A target already cached is a hit
/// (counted `present`), a missing one is filled (`loaded`); anything else (an error status, a
/// response the cache skipped) counts as `failed`. The requests carry [`WarmRequest`], so the
/// analytics middleware does not count them as traffic.
///
/// actix-web services stay on their thread, so this is not a registered warmer
/// ([`cache_core::warm`] runs those on any thread): call it where the app is built, for example
/// at start in `actix_web::rt::spawn`, and on an interval with `actix_web::rt::time::interval`.
///
/// # Errors
/// The analytics store's error (Redis unreachable): nothing is replayed.
pub async fn warm_from_analytics<S, B>(
    cache: &Cache,
    service: &S,
    window: Window,
    per_route: usize,
) -> Result<WarmReport, CacheError>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = Error>,
{
    let started = Instant::now();
    let targets = cache.analytics().warm_targets(window, per_route).await?;
    let mut report = WarmReport::default();
    report.name = "analytics".to_owned();
    for target in targets {
        let req = actix_web::test::TestRequest::get()
            .uri(&target)
            .to_request();
        req.extensions_mut().insert(WarmRequest);
        let outcome = match service.call(req).await {
            Ok(res) if res.status().is_success() => res
                .headers()
                .get(crate::HEADER_STATUS)
                .map_or(Outcome::None, |v| Outcome::from_header(v.as_bytes())),
            _ => Outcome::None,
        };
        report.keys += 1;
        match outcome {
            Outcome::Hit | Outcome::Stale => report.present += 1,
            Outcome::Miss => report.loaded += 1,
            _ => report.failed += 1,
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Whether a `Cache-Control` value has the `private` directive.
fn contains_private(v: &[u8]) -> bool {
    std::str::from_utf8(v).is_ok_and(|s| {
        s.split(',').any(|d| {
            let d = d.trim().as_bytes();
            d.len() >= 7 && d[..7].eq_ignore_ascii_case(b"private")
        })
    })
}
