//! The whole-response cache: [`ResponseCacheLayer`] and its [`ResponseCache`] service.
//!
//! The steps (plan, lookup, fill, store) are [`cache_core::http::HttpCache`]'s, shared with
//! `cache-actix`; this file moves requests, responses and bodies between Axum and those steps.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use cache_core::http::{
    Answer, CacheHeaderNames, CachedResponse, Disposition, Extra, HttpCache, Origin, Plan,
    RequestInfo, RoutePolicy,
};
use cache_core::metrics::CacheMetrics;
use cache_core::Cache;
use http::request::Parts;
use http::{HeaderName, Request, Response};
use tower::{Layer, Service};

use crate::glue;
use crate::metrics::record_response;

type UserFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

struct Config {
    http: HttpCache,
    user: UserFn,
    bypass_allowed: BypassFn,
    // metrics hook
    metrics: Option<CacheMetrics>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ResponseCacheLayer`].
#[must_use]
#[derive(Debug)]
pub struct ResponseCacheBuilder {
    config: Config,
}

impl ResponseCacheBuilder {
    /// Caches the route with this template (as written in `Router::route`).
    pub fn route(mut self, template: impl Into<String>, policy: RoutePolicy) -> Self {
        self.config.http = self.config.http.route(template, policy);
        self
    }

    /// Adds a request header whose value is part of every key; the routes' responses list it in
    /// `Vary`.
    pub fn vary(mut self, header: HeaderName) -> Self {
        self.config.http = self.config.http.vary(header);
        self
    }

    /// Statuses that are stored (default `[200]`).
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.config.http = self.config.http.cacheable_statuses(statuses);
        self
    }

    /// Name of the bypass query flag (default `cache_bypass`); it is never part of a key.
    pub fn bypass_param(mut self, name: impl Into<String>) -> Self {
        self.config.http = self.config.http.bypass_param(name);
        self
    }

    /// Who may bypass the cache (`Cache-Control: no-cache`, `Pragma: no-cache`, the
    /// `?cache_bypass=1` flag). **The default is everyone**: a bypass skips the lookup, runs the
    /// handler and stores its answer, so in production restrict it with one line:
    /// `.bypass_allowed(|_| false)` for nobody, or `.bypass_allowed(move |parts| admin.allows(parts))`
    /// for the callers an [`AdminGuard`](crate::AdminGuard) admits. A refused bypass is served
    /// like any other request (`HIT` or `MISS`), so the public cannot force refills.
    pub fn bypass_allowed(
        mut self,
        allowed: impl Fn(&Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.bypass_allowed = Arc::new(allowed);
        self
    }

    /// How the user of a per-user route is identified (default: none, so per-user routes pass
    /// through). Return a stable id, never a raw secret: it becomes part of the key.
    pub fn user(mut self, user: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.config.user = Arc::new(user);
        self
    }

    /// Whether to send `X-Cache-Key` (default `true`; turn it off in production if keys reveal
    /// too much).
    pub fn expose_key(mut self, expose: bool) -> Self {
        self.config.http = self.config.http.expose_key(expose);
        self
    }

    /// Names of the cache headers.
    pub fn header_names(mut self, names: CacheHeaderNames) -> Self {
        self.config.http = self.config.http.header_names(names);
        self
    }

    /// After a successful (2xx) `POST`, `PUT`, `PATCH` or `DELETE` on the route with this
    /// template, invalidate `tags`; `{name}` is replaced by the path parameter `name`. A failed
    /// invalidation is logged (`cache_invalidate_failed`); the response is unchanged.
    pub fn invalidate_on_write<I, T>(mut self, template: impl Into<String>, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config.http = self.config.http.invalidate_on_write(template, tags);
        self
    }

    /// Largest body stored (default 1 MiB); larger bodies stream through uncached.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.http = self.config.http.max_body(bytes);
        self
    }

    /// Whether `HEAD` is answered from the `GET` entry (default `true`: Axum routes `HEAD` to
    /// `GET` handlers).
    pub fn head_from_get(mut self, on: bool) -> Self {
        self.config.http = self.config.http.head_from_get(on);
        self
    }

    /// Records `cache_request_duration_seconds{resource, status}` for the cached routes into
    /// `metrics` (metrics hook).
    pub fn metrics(mut self, metrics: CacheMetrics) -> Self {
        self.config.metrics = Some(metrics);
        self
    }

    /// The layer.
    pub fn build(self) -> ResponseCacheLayer {
        ResponseCacheLayer {
            config: Arc::new(self.config),
        }
    }
}

/// A tower layer caching whole responses of the configured routes.
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    config: Arc<Config>,
}

impl ResponseCacheLayer {
    /// A builder using `cache`.
    pub fn builder(cache: Cache) -> ResponseCacheBuilder {
        ResponseCacheBuilder {
            config: Config {
                http: HttpCache::new(cache),
                user: Arc::new(|_| None),
                bypass_allowed: Arc::new(|_| true),
                metrics: None,
            },
        }
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> ResponseCache<S> {
        ResponseCache {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`ResponseCacheLayer`].
#[derive(Debug, Clone)]
pub struct ResponseCache<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ResponseCache<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Request<Body>> for ResponseCache<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        // metrics hook: time the request and label it with the route's resource and status.
        if let Some(metrics) = config.metrics.clone() {
            let resource = req
                .extensions()
                .get::<MatchedPath>()
                .and_then(|m| config.http.resource_of(m.as_str()))
                .map(str::to_owned);
            let start = Instant::now();
            let fut = handle(config.clone(), inner, req);
            return Box::pin(async move {
                let resp = fut.await?;
                if let Some(resource) = resource {
                    let status = &config.http.names().status;
                    record_response(&metrics, &resource, &resp, status, start);
                }
                Ok(resp)
            });
        }
        Box::pin(handle(config, inner, req))
    }
}

fn add_extra(headers: &mut http::HeaderMap, extra: Extra) {
    for (name, value) in extra.set {
        headers.insert(name, value);
    }
    for (name, value) in extra.default {
        headers.entry(name).or_insert(value);
    }
}

fn cached_response(hit: CachedResponse) -> Response<Body> {
    glue::response(hit.status, hit.headers, hit.body)
}

async fn handle<S>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let http = &config.http;
    let (parts, body) = req.into_parts();
    let plan = {
        let info = RequestInfo {
            method: &parts.method,
            route: parts
                .extensions
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        http.plan(
            &info,
            || (config.bypass_allowed)(&parts),
            || (config.user)(&parts),
        )
    };
    let req = Request::from_parts(parts, body);
    match plan {
        Plan::Write(tags) => {
            let resp = inner.call(req).await?;
            if resp.status().is_success() {
                http.after_write(&tags).await;
            }
            Ok(resp)
        }
        Plan::Pass(extra) => {
            let mut resp = inner.call(req).await?;
            add_extra(resp.headers_mut(), extra);
            Ok(resp)
        }
        Plan::Cache(lookup) => {
            // The handler is the loader; it owns the request, so a stale entry can be refreshed
            // in the background while this request is answered at once.
            let cfg = config.clone();
            let handler = move || async move {
                let resp = match inner.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                origin(&cfg.http, resp).await
            };
            Ok(match lookup.fetch_detached(http, handler).await {
                Answer::Cached(c) => cached_response(c),
                Answer::Origin {
                    mut response,
                    extra,
                } => {
                    add_extra(response.headers_mut(), extra);
                    response
                }
                _ => unreachable!("cache-core answers are cached or origin responses"),
            })
        }
        _ => inner.call(req).await,
    }
}

/// Classifies the handler's response for the cache, reading its body up to the cap: a longer
/// body (or one that fails) is handed back as it is, replaying what was read.
async fn origin(http: &HttpCache, resp: Response<Body>) -> Origin<Response<Body>> {
    let status = resp.status().as_u16();
    let disposition = http.disposition(status, resp.headers());
    if disposition == Disposition::Pass {
        return Origin::Own {
            status,
            response: resp,
        };
    }
    let (rparts, rbody) = resp.into_parts();
    match glue::read_capped(rbody, http.max_body_len()).await {
        Ok(bytes) => http.origin(disposition, status, &rparts.headers, bytes),
        Err(replay) => Origin::Own {
            status,
            response: Response::from_parts(rparts, replay),
        },
    }
}
