//! The request-context layer for `#[cached]` handlers: [`CacheContextLayer`].

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use cache_core::__private::{with_request_context, RequestContext};
use cache_core::http::{
    outcome_body, outcome_headers, outcome_validator, CacheHeaderNames, HttpRules,
};
use cache_core::metrics::CacheMetrics;
use http::request::Parts;
use http::{header, Request, Response};
use tower::{Layer, Service};

use crate::metrics::record_response;

type UserFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

struct ContextConfig {
    rules: HttpRules,
    user: UserFn,
    bypass_allowed: BypassFn,
    expose_key: bool,
    names: CacheHeaderNames,
    // metrics hook
    metrics: Option<CacheMetrics>,
}

impl fmt::Debug for ContextConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextConfig")
            .field("bypass_param", &self.rules.bypass_param)
            .field("expose_key", &self.expose_key)
            .finish_non_exhaustive()
    }
}

/// Sets up, for every request, what `#[cached]` handlers need (the bypass flag and the user
/// scope) and, after the handler, writes from the outcome of the last `#[cached]` call the
/// handler made:
///
/// * `X-Cache-Status`, `X-Cache-Key`, and on hits `X-Cache-Age`, `X-Cache-TTL` and `Age`;
/// * when the handler set no `Cache-Control`: `private` on **every** status when the value is
///   one user's (a `#[cached(user = ..)]` key, or a request with an identified user), else
///   `public, max-age=<remaining TTL>` on a 2xx built from a stored value, the same on a miss as
///   on a hit (never `public` on a 404 or a 500);
/// * for a handler whose cached value is the response (`Json<T>`, a finished response): an
///   `ETag`, and `304 Not Modified` with an empty body when the request's `If-None-Match`
///   matches it (see [`cache_core::http::outcome_validator`]).
///
/// ```
/// use axum::{routing::get, Json, Router};
/// use cache_axum::CacheContextLayer;
///
/// let app: Router = Router::new()
///     .route("/ping", get(|| async { Json("pong") }))
///     .layer(CacheContextLayer::builder().expose_key(false).build());
/// ```
#[derive(Debug, Clone)]
pub struct CacheContextLayer {
    config: Arc<ContextConfig>,
}

/// Builds a [`CacheContextLayer`].
#[must_use]
#[derive(Debug)]
pub struct CacheContextBuilder {
    config: ContextConfig,
}

impl CacheContextLayer {
    /// A builder with the defaults: anyone may bypass, no user scope, `X-Cache-Key` sent.
    pub fn builder() -> CacheContextBuilder {
        CacheContextBuilder {
            config: ContextConfig {
                rules: HttpRules::default(),
                user: Arc::new(|_| None),
                bypass_allowed: Arc::new(|_| true),
                expose_key: true,
                names: CacheHeaderNames::default(),
                metrics: None,
            },
        }
    }
}

impl CacheContextBuilder {
    /// How the user is identified (e.g. from a verified claim or a header). Handlers read it with
    /// `cache_core::__private::current_user()` through `#[cached(user = ...)]`.
    pub fn user(mut self, user: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.config.user = Arc::new(user);
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

    /// Name of the bypass query flag (default `cache_bypass`).
    pub fn bypass_param(mut self, name: impl Into<String>) -> Self {
        self.config.rules.bypass_param = name.into();
        self
    }

    /// Names of the cache headers.
    pub fn header_names(mut self, names: CacheHeaderNames) -> Self {
        self.config.names = names;
        self
    }

    /// Whether to send `X-Cache-Key` (default `true`).
    pub fn expose_key(mut self, expose: bool) -> Self {
        self.config.expose_key = expose;
        self
    }

    /// Records `cache_request_duration_seconds{resource, status}` into `metrics` for requests
    /// whose handler made a `#[cached]` call; `resource` is the matched route (or `handler`)
    /// (metrics hook).
    pub fn metrics(mut self, metrics: CacheMetrics) -> Self {
        self.config.metrics = Some(metrics);
        self
    }

    /// The layer.
    pub fn build(self) -> CacheContextLayer {
        CacheContextLayer {
            config: Arc::new(self.config),
        }
    }
}

impl<S> Layer<S> for CacheContextLayer {
    type Service = CacheContext<S>;

    fn layer(&self, inner: S) -> CacheContext<S> {
        CacheContext {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`CacheContextLayer`].
#[derive(Debug, Clone)]
pub struct CacheContext<S> {
    inner: S,
    config: Arc<ContextConfig>,
}

impl<S> CacheContext<S> {
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

impl<S> Service<Request<Body>> for CacheContext<S>
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
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        // metrics hook: the route (or `handler`) and the start time.
        let timing = self.config.metrics.is_some().then(|| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "handler".to_owned(), |m| m.as_str().to_owned());
            (route, Instant::now())
        });
        let (parts, body) = req.into_parts();
        let bypass = (config.bypass_allowed)(&parts)
            && config.rules.wants_bypass(parts.uri.query(), &parts.headers);
        let if_none_match = parts.headers.get(header::IF_NONE_MATCH).cloned();
        let ctx = Arc::new(RequestContext::new(bypass, (config.user)(&parts)));
        let fut = with_request_context(ctx.clone(), inner.call(Request::from_parts(parts, body)));
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Some(outcome) = ctx.take_outcome() {
                let status = resp.status().as_u16();
                let headers = resp.headers_mut();
                let has_cc = headers.contains_key(header::CACHE_CONTROL);
                let per_user = ctx.user.is_some();
                for (name, value) in outcome_headers(
                    &config.names,
                    config.expose_key,
                    &outcome,
                    per_user,
                    status,
                    has_cc,
                ) {
                    headers.insert(name, value);
                }
                let (etag, not_modified) = outcome_validator(
                    &outcome,
                    status,
                    headers.get(header::ETAG),
                    if_none_match.as_ref(),
                );
                if let Some(etag) = etag {
                    headers.insert(header::ETAG, etag);
                }
                if not_modified {
                    headers.remove(header::CONTENT_LENGTH);
                    *resp.status_mut() = http::StatusCode::NOT_MODIFIED;
                    *resp.body_mut() = Body::empty();
                } else if let Some(stored) = outcome_body(
                    &outcome,
                    status,
                    headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
                ) {
                    // The stored bytes, not the value re-serialized.
                    headers.remove(header::CONTENT_LENGTH);
                    *resp.body_mut() = Body::from(stored);
                }
            }
            // metrics hook
            if let (Some(metrics), Some((route, start))) = (&config.metrics, timing) {
                record_response(metrics, &route, &resp, &config.names.status, start);
            }
            Ok(resp)
        })
    }
}
