//! Route analytics for Axum (feature `analytics`): [`AnalyticsLayer`] records every request,
//! cached or not, into [`cache_core::analytics`].
//!
//! Add it with `Router::layer` **after** (outside) the cache layers, so that it sees the
//! `X-Cache-Status` they set:
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use cache_axum::{AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
//! use cache_core::Cache;
//!
//! let cache = Cache::memory();
//! let app: Router = Router::new()
//!     .route("/trigs/{id}", get(|| async { "trig" }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(
//!         ResponseCacheLayer::builder(cache.clone())
//!             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(60)))
//!             .build(),
//!     )
//!     .layer(AnalyticsLayer::new(&cache).user(|parts| {
//!         parts.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//!     }));
//! ```
//!
//! Each event carries the route template from [`MatchedPath`] ([`UNMATCHED_ROUTE`] when no
//! route matched, never the raw path), the method, the pseudonymous user (the extractor's value
//! keyed-hashed, see [`Analytics::pseudonym`]), the start time, the status, the time until the
//! response head, the cache outcome read from `X-Cache-Status` ([`Outcome::None`] without one),
//! the body's size hint, and whether the response is `Cache-Control: private`. Recording is one
//! `try_send`: it never waits and never fails the request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::MatchedPath;
use cache_core::analytics::Window;
use cache_core::analytics::{Analytics, Event, Outcome, UNMATCHED_ROUTE};
use cache_core::metrics::CacheMetrics;
use cache_core::warm::{Warm, WarmRequest, WarmResult};
use cache_core::{Cache, CacheError};
use http::request::Parts;
use http::{header, HeaderName, Request, Response};
use tower::{Layer, Service};

type UserFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

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
    pub fn user(self, user: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.edit(|c| c.user = Some(Arc::new(user)))
    }

    /// Also records `http_route_requests_total` and `http_route_duration_seconds` per route
    /// template (see [`CacheMetrics::record_route`]).
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

impl<S> Layer<S> for AnalyticsLayer {
    type Service = AnalyticsService<S>;

    fn layer(&self, inner: S) -> AnalyticsService<S> {
        AnalyticsService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`AnalyticsLayer`].
#[derive(Clone)]
pub struct AnalyticsService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for AnalyticsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> AnalyticsService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for AnalyticsService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResB: HttpBody + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if req.extensions().get::<WarmRequest>().is_some() {
            // A warmer's replay is not traffic.
            return Box::pin(self.inner.call(req));
        }
        let start = Instant::now();
        let config = self.config.clone();
        let start_ms = config.analytics.now_ms();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
            .to_owned();
        let method = req.method().as_str().to_owned();
        // A reference-counted copy: the target is copied out only for a shared response.
        let target = req.uri().path_and_query().cloned();
        let (req, user) = match &config.user {
            Some(f) => {
                let (parts, body) = req.into_parts();
                let user = f(&parts);
                (Request::from_parts(parts, body), user)
            }
            None => (req, None),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let latency = start.elapsed();
            let mut event = Event::new(method, route, start_ms);
            event.status = res.status().as_u16();
            event.latency = latency;
            event.outcome = res
                .headers()
                .get(&config.status_header)
                .map_or(Outcome::None, |v| Outcome::from_header(v.as_bytes()));
            let hint = res.body().size_hint();
            event.bytes = hint.exact().unwrap_or(hint.lower());
            event.private = res
                .headers()
                .get_all(header::CACHE_CONTROL)
                .iter()
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

/// Warms the response caches of `router` from the analytics: replays, in process, the
/// `per_route` most requested shared targets of every `GET` route the cache served in `window`
/// ([`Analytics::warm_targets`]), each as a plain `GET` through the whole router (its cache
/// layers, extractors and handlers, exactly as a client's request), at most the warmer's
/// [`concurrency`](cache_core::warm::WarmSchedule::concurrency) at once. A target already
/// cached is a hit (counted `present`), a missing one is filled (`loaded`); anything else
/// (an error status, a response the cache skipped) counts as `failed`. The requests carry
/// [`WarmRequest`], so the analytics layer does not count them as traffic. Returns the number
/// of targets replayed.
///
/// Call it from a warmer; on Redis the analytics outlive a restart, so a warmer run at start
/// brings back the cache of the traffic before it:
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use cache_axum::{warm_from_analytics, AnalyticsLayer};
/// use cache_core::analytics::Window;
/// use cache_core::warm::WarmSchedule;
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(AnalyticsLayer::new(&cache));
/// let replay = app.clone();
/// cache.register_warmer(
///     "from-analytics",
///     WarmSchedule::new().every(Duration::from_secs(600)).concurrency(4),
///     move |warm| {
///         let app = replay.clone();
///         async move {
///             let _ = warm_from_analytics(&warm, app, Window::Hour, 50).await;
///         }
///     },
/// );
/// ```
///
/// # Errors
/// The analytics store's error (Redis unreachable): nothing is replayed.
pub async fn warm_from_analytics(
    warm: &Warm,
    router: axum::Router,
    window: Window,
    per_route: usize,
) -> Result<usize, CacheError> {
    let targets = warm
        .cache()
        .analytics()
        .warm_targets(window, per_route)
        .await?;
    let n = targets.len();
    for target in targets {
        let mut svc = router.clone();
        warm.spawn(async move {
            let Ok(req) = Request::get(target.as_str())
                .extension(WarmRequest)
                .body(axum::body::Body::empty())
            else {
                return WarmResult::Failed;
            };
            if std::future::poll_fn(|cx| {
                Service::<Request<axum::body::Body>>::poll_ready(&mut svc, cx)
            })
            .await
            .is_err()
            {
                return WarmResult::Failed;
            }
            match svc.call(req).await {
                Ok(res) => replay_result(
                    res.status().is_success(),
                    res.headers()
                        .get(crate::HEADER_STATUS)
                        .map(|v| v.as_bytes()),
                ),
                Err(_) => WarmResult::Failed,
            }
        })
        .await;
    }
    Ok(n)
}

/// What a replayed request did, from its status and `X-Cache-Status`.
fn replay_result(success: bool, status: Option<&[u8]>) -> WarmResult {
    match status.map(Outcome::from_header) {
        Some(Outcome::Hit | Outcome::Stale) if success => WarmResult::Present,
        Some(Outcome::Miss) if success => WarmResult::Loaded,
        _ => WarmResult::Failed,
    }
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
