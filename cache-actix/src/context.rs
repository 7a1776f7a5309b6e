//! The request-context middleware for `#[cached]` handlers: [`CacheContextLayer`].

use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{header, StatusCode};
use actix_web::{Error, HttpRequest};
use cache_core::__private::{with_request_context, RequestContext};
use cache_core::http::{
    outcome_body, outcome_headers, outcome_validator, CacheHeaderNames, HttpRules,
};
use cache_core::metrics::CacheMetrics;

use crate::glue::{insert_all, Headers};
use crate::record_response;

type UserFn = Arc<dyn Fn(&HttpRequest) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;

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
/// The same builder as `cache_axum::CacheContextLayer`.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use cache_actix::CacheContextLayer;
///
/// let app = App::new()
///     .wrap(CacheContextLayer::builder().expose_key(false).build())
///     .route("/ping", web::get().to(|| async { HttpResponse::Ok().body("pong") }));
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
    pub fn user(
        mut self,
        user: impl Fn(&HttpRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config.user = Arc::new(user);
        self
    }

    /// Who may bypass the cache (`Cache-Control: no-cache`, `Pragma: no-cache`, the
    /// `?cache_bypass=1` flag). **The default is everyone**: a bypass skips the lookup, runs the
    /// handler and stores its answer, so in production restrict it with one line:
    /// `.bypass_allowed(|_| false)` for nobody, or `.bypass_allowed(move |req| admin.allows(req))`
    /// for the callers an [`AdminGuard`](crate::AdminGuard) admits. A refused bypass is served
    /// like any other request (`HIT` or `MISS`), so the public cannot force refills.
    pub fn bypass_allowed(
        mut self,
        allowed: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static,
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

    /// The middleware, for `App::wrap` (or `Scope::wrap`, `Resource::wrap`).
    pub fn build(self) -> CacheContextLayer {
        CacheContextLayer {
            config: Arc::new(self.config),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for CacheContextLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = CacheContext<S>;
    type InitError = ();
    type Future = Ready<Result<CacheContext<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CacheContext {
            service: Rc::new(service),
            config: self.config.clone(),
        }))
    }
}

/// The service produced by [`CacheContextLayer`]. It does not require `Send` of the wrapped
/// service or its futures.
#[derive(Debug)]
pub struct CacheContext<S> {
    service: Rc<S>,
    config: Arc<ContextConfig>,
}

impl<S> CacheContext<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S, B> Service<ServiceRequest> for CacheContext<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let config = self.config.clone();
        // metrics hook: the route (or `handler`) and the start time.
        let timing = config.metrics.is_some().then(|| {
            let route =
                crate::glue::route_pattern(req.request()).unwrap_or_else(|| "handler".to_owned());
            (route, Instant::now())
        });
        let http_req = req.request();
        let bypass = (config.bypass_allowed)(http_req)
            && config
                .rules
                .wants_bypass(Some(req.query_string()), &Headers(req.headers()));
        let if_none_match = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        let ctx = Arc::new(RequestContext::new(bypass, (config.user)(http_req)));
        let fut = with_request_context(ctx.clone(), self.service.call(req));
        Box::pin(async move {
            let mut resp = fut.await?;
            let mut not_modified = false;
            let mut stored_body = None;
            if let Some(outcome) = ctx.take_outcome() {
                let status = resp.status().as_u16();
                let headers = resp.headers_mut();
                let has_cc = headers.contains_key(header::CACHE_CONTROL);
                let per_user = ctx.user.is_some();
                let pairs = outcome_headers(
                    &config.names,
                    config.expose_key,
                    &outcome,
                    per_user,
                    status,
                    has_cc,
                );
                insert_all(headers, &pairs);
                let etag = headers
                    .get(header::ETAG)
                    .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
                let (added, matched) =
                    outcome_validator(&outcome, status, etag.as_ref(), if_none_match.as_ref());
                if let Some(added) = added {
                    insert_all(headers, &[(http::header::ETAG, added)]);
                }
                not_modified = matched;
                if !matched {
                    stored_body = outcome_body(
                        &outcome,
                        status,
                        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
                    );
                }
            }
            // metrics hook
            if let (Some(metrics), Some((route, start))) = (&config.metrics, timing) {
                record_response(metrics, &route, resp.headers(), &config.names.status, start);
            }
            if not_modified {
                let mut resp = resp.map_body(|_, _| EitherBody::right(BoxBody::new(())));
                resp.response_mut().head_mut().status = StatusCode::NOT_MODIFIED;
                resp.headers_mut().remove(header::CONTENT_LENGTH);
                return Ok(resp);
            }
            if let Some(stored) = stored_body {
                // The stored bytes, not the value re-serialized.
                let mut resp = resp.map_body(|_, _| EitherBody::right(BoxBody::new(stored)));
                resp.headers_mut().remove(header::CONTENT_LENGTH);
                return Ok(resp);
            }
            Ok(resp.map_into_left_body())
        })
    }
}
