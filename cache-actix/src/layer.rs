//! The whole-response cache: [`ResponseCacheLayer`] and its [`ResponseCache`] service.
//!
//! The steps (plan, lookup, fill, store) are [`cache_core::http::HttpCache`]'s, shared with
//! `cache-axum`; this file moves requests, responses and bodies between Actix and those steps.

use std::cell::RefCell;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpRequest, HttpResponse};
use cache_core::http::{
    Answer, CacheHeaderNames, Disposition, Extra, HttpCache, Origin, Plan, RequestInfo, RoutePolicy,
};
use cache_core::metrics::CacheMetrics;
use cache_core::Cache;

use crate::glue::{cached_response, insert_all, method, read_capped, Headers};
use crate::record_response;

type UserFn = Arc<dyn Fn(&HttpRequest) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;

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

/// Builds a [`ResponseCacheLayer`]: the same methods, names and defaults as
/// `cache_axum::ResponseCacheBuilder`.
#[must_use]
#[derive(Debug)]
pub struct ResponseCacheBuilder {
    config: Config,
}

impl ResponseCacheBuilder {
    /// Caches the route with this template (as written in `web::resource` / `App::route`).
    pub fn route(mut self, template: impl Into<String>, policy: RoutePolicy) -> Self {
        self.config.http = self.config.http.route(template, policy);
        self
    }

    /// Adds a request header whose value is part of every key (the routes' `Vary`).
    pub fn vary(mut self, header: http::HeaderName) -> Self {
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

    /// How the user of a per-user route is identified (default: none, so per-user routes pass
    /// through). Return a stable id, never a raw secret: it becomes part of the key.
    pub fn user(
        mut self,
        user: impl Fn(&HttpRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config.user = Arc::new(user);
        self
    }

    /// Whether to send `X-Cache-Key` (default `true`).
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

    /// Whether `HEAD` is answered from the `GET` entry (default `false`: Actix does not route
    /// `HEAD` to `web::get()` routes, so the origin would not answer it like `GET`). Turn it on
    /// when the cached routes answer `HEAD` (e.g. `web::route().guard(guard::Any(guard::Get())
    /// .or(guard::Head()))`).
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

    /// The middleware, for `App::wrap`.
    pub fn build(self) -> ResponseCacheLayer {
        ResponseCacheLayer {
            config: Arc::new(self.config),
        }
    }
}

/// An Actix middleware caching whole responses of the configured routes. It is `Send` and
/// cheap to clone, so it can be built once and cloned into `HttpServer::new`'s factory; the
/// services it wraps need not be `Send`.
///
/// ```
/// use std::time::Duration;
/// use actix_web::{web, App, HttpResponse};
/// use cache_actix::{ResponseCacheLayer, RoutePolicy};
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let app = App::new()
///     .wrap(
///         ResponseCacheLayer::builder(cache)
///             .route("/trigs/{id}", RoutePolicy::ttl(Duration::from_secs(3600)).tag("trig:{id}"))
///             .build(),
///     )
///     .route("/trigs/{id}", web::get().to(|| async { HttpResponse::Ok().body("trig") }));
/// ```
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    config: Arc<Config>,
}

impl ResponseCacheLayer {
    /// A builder using `cache`.
    pub fn builder(cache: Cache) -> ResponseCacheBuilder {
        ResponseCacheBuilder {
            config: Config {
                http: HttpCache::new(cache).head_from_get(false),
                user: Arc::new(|_| None),
                bypass_allowed: Arc::new(|_| true),
                metrics: None,
            },
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ResponseCacheLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = ResponseCache<S>;
    type InitError = ();
    type Future = Ready<Result<ResponseCache<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ResponseCache {
            service: Rc::new(service),
            config: self.config.clone(),
        }))
    }
}

/// The service produced by [`ResponseCacheLayer`].
#[derive(Debug)]
pub struct ResponseCache<S> {
    service: Rc<S>,
    config: Arc<Config>,
}

impl<S> ResponseCache<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S, B> Service<ServiceRequest> for ResponseCache<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let route = crate::glue::route_pattern(req.request());
            // metrics hook: time the request and label it with the route's resource and status.
            let timing = config.metrics.as_ref().and_then(|m| {
                let resource = config.http.resource_of(route.as_deref()?)?.to_owned();
                Some((m.clone(), resource, Instant::now()))
            });
            let resp = handle(&config, &*service, req, route.as_deref()).await?;
            if let Some((metrics, resource, start)) = timing {
                let status = &config.http.names().status;
                record_response(&metrics, &resource, resp.headers(), status, start);
            }
            Ok(resp)
        })
    }
}

/// Where the request is while the engine decides whether to run the handler: a hit never
/// consumes it (its `HttpRequest` answers), a miss hands it to the handler and gets the
/// `HttpRequest` back with the response. An `HttpRequest` is never cloned while the router may
/// still need it alone.
enum Slot {
    Request(ServiceRequest),
    Http(HttpRequest),
    Empty,
}

impl Slot {
    fn into_http(self) -> Option<HttpRequest> {
        match self {
            Slot::Request(req) => Some(req.into_parts().0),
            Slot::Http(req) => Some(req),
            Slot::Empty => None,
        }
    }
}

async fn handle<S, B>(
    config: &Config,
    service: &S,
    req: ServiceRequest,
    route: Option<&str>,
) -> Result<ServiceResponse<BoxBody>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    let http = &config.http;
    let plan = {
        let m = method(req.method());
        let info = RequestInfo {
            method: &m,
            route,
            path: req.path(),
            query: req.uri().query(),
            headers: &Headers(req.headers()),
        };
        let http_req = req.request();
        http.plan(
            &info,
            || (config.bypass_allowed)(http_req),
            || (config.user)(http_req),
        )
    };
    let lookup = match plan {
        Plan::Write(tags) => {
            let resp = service.call(req).await?;
            if resp.status().is_success() {
                http.after_write(&tags).await;
            }
            return Ok(resp.map_into_boxed_body());
        }
        Plan::Pass(extra) => {
            let mut resp = service.call(req).await?;
            add_extra(resp.headers_mut(), &extra);
            return Ok(resp.map_into_boxed_body());
        }
        Plan::Cache(lookup) => lookup,
        _ => return Ok(service.call(req).await?.map_into_boxed_body()),
    };
    let slot = RefCell::new(Slot::Request(req));
    let error: RefCell<Option<Error>> = RefCell::new(None);
    let handler = || async {
        let Slot::Request(req) = std::mem::replace(&mut *slot.borrow_mut(), Slot::Empty) else {
            unreachable!("the handler runs at most once per request");
        };
        let (http_req, response) = match service.call(req).await {
            Ok(resp) => {
                let (http_req, response) = resp.into_parts();
                (http_req, response.map_into_boxed_body())
            }
            Err(e) => {
                // A service error is answered by Actix as an error response; keep it unstored.
                let response = e.error_response();
                *error.borrow_mut() = Some(e);
                return Origin::Own {
                    status: response.status().as_u16(),
                    response,
                };
            }
        };
        *slot.borrow_mut() = Slot::Http(http_req);
        origin(http, response).await
    };
    let answer = lookup.fetch(http, handler).await;
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    let http_req = slot
        .into_inner()
        .into_http()
        .unwrap_or_else(|| unreachable!("the request is back in its slot"));
    Ok(match answer {
        Answer::Cached(hit) => ServiceResponse::new(http_req, cached_response(hit)),
        Answer::Origin {
            mut response,
            extra,
        } => {
            add_extra(response.headers_mut(), &extra);
            ServiceResponse::new(http_req, response)
        }
        _ => unreachable!("cache-core answers are cached or origin responses"),
    })
}

fn add_extra(headers: &mut actix_web::http::header::HeaderMap, extra: &Extra) {
    insert_all(headers, &extra.set);
    for (n, v) in &extra.default {
        if !headers.contains_key(n.as_str()) {
            insert_all(headers, std::slice::from_ref(&(n.clone(), v.clone())));
        }
    }
}

/// Classifies the handler's response for the cache, reading its body up to the cap: a longer
/// body (or one that fails) is handed back, replaying what was read.
async fn origin(
    http: &HttpCache,
    response: HttpResponse<BoxBody>,
) -> Origin<HttpResponse<BoxBody>> {
    let status = response.status().as_u16();
    let sized_over =
        matches!(response.body().size(), BodySize::Sized(n) if n > http.max_body_len() as u64);
    let disposition = http.disposition(status, &Headers(response.headers()));
    if sized_over || disposition == Disposition::Pass {
        return Origin::Own { status, response };
    }
    let (head, body) = response.into_parts();
    match read_capped(body, http.max_body_len()).await {
        Ok(bytes) => http.origin(disposition, status, &Headers(head.headers()), bytes),
        Err(partial) => Origin::Own {
            status,
            response: head.set_body(partial),
        },
    }
}
