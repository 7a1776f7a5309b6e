//! The whole-response cache: [`ResponseCacheLayer`] and its [`ResponseCache`] service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::MatchedPath;
use bytes::{Bytes, BytesMut};
use cache_core::codec::Envelope;
use cache_core::http::{
    if_none_match, Decision, HttpRules, PassReason, RequestView, RouteScope, StoredResponse,
};
use cache_core::{Cache, CacheKey, CacheStatus, Policy};
use futures_util::StreamExt;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::metrics::CacheMetrics;

/// `X-Cache-Status`: `HIT`, `MISS`, `BYPASS`, `STALE` or `SKIP` (cache unavailable).
pub const HEADER_STATUS: &str = "x-cache-status";
/// `X-Cache-Key`: the key used (can be turned off with `expose_key(false)`).
pub const HEADER_KEY: &str = "x-cache-key";
/// `X-Cache-Age`: seconds since the entry was stored (hits only).
pub const HEADER_AGE: &str = "x-cache-age";
/// `X-Cache-TTL`: seconds of freshness left (hits only).
pub const HEADER_TTL: &str = "x-cache-ttl";

/// The names of the cache headers (defaults: `x-cache-status`, `x-cache-key`, `x-cache-age`,
/// `x-cache-ttl`).
#[derive(Debug, Clone)]
pub struct CacheHeaderNames {
    /// Outcome: `HIT`, `MISS`, `BYPASS`, `STALE`, `SKIP`.
    pub status: HeaderName,
    /// The key used.
    pub key: HeaderName,
    /// Seconds since the entry was stored (hits).
    pub age: HeaderName,
    /// Seconds of freshness left (hits).
    pub ttl: HeaderName,
}

impl Default for CacheHeaderNames {
    fn default() -> Self {
        CacheHeaderNames {
            status: HeaderName::from_static(HEADER_STATUS),
            key: HeaderName::from_static(HEADER_KEY),
            age: HeaderName::from_static(HEADER_AGE),
            ttl: HeaderName::from_static(HEADER_TTL),
        }
    }
}

/// How one route is cached.
#[derive(Debug, Clone)]
#[must_use]
pub struct RoutePolicy {
    ttl: Option<Duration>,
    tags: Vec<String>,
    scope: RouteScope,
    resource: Option<String>,
}

impl RoutePolicy {
    /// Cache the route's responses for `ttl`.
    pub fn ttl(ttl: Duration) -> RoutePolicy {
        RoutePolicy {
            ttl: Some(ttl),
            tags: Vec::new(),
            scope: RouteScope::Shared,
            resource: None,
        }
    }

    /// Tag the route's entries; `{name}` is replaced by the path parameter `name`
    /// (`"trig:{id}"` for the route `/trigs/{id}`).
    pub fn tag(mut self, tag: impl Into<String>) -> RoutePolicy {
        self.tags.push(tag.into());
        self
    }

    /// Who shares the entries (default [`RouteScope::Shared`]).
    pub fn scope(mut self, scope: RouteScope) -> RoutePolicy {
        self.scope = scope;
        self
    }

    /// The resource name for keys and per-resource stats (default `http`).
    pub fn resource(mut self, resource: impl Into<String>) -> RoutePolicy {
        self.resource = Some(resource.into());
        self
    }
}

type UserFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

struct Config {
    cache: Cache,
    rules: HttpRules,
    routes: HashMap<String, RoutePolicy>,
    user: UserFn,
    bypass_allowed: BypassFn,
    expose_key: bool,
    max_body: usize,
    names: CacheHeaderNames,
    write_tags: HashMap<String, Vec<String>>,
    // metrics hook
    metrics: Option<CacheMetrics>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("rules", &self.rules)
            .field("routes", &self.routes)
            .field("expose_key", &self.expose_key)
            .field("max_body", &self.max_body)
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
        self.config.routes.insert(template.into(), policy);
        self
    }

    /// Adds a request header whose value is part of every key (the routes' `Vary`).
    pub fn vary(mut self, header: HeaderName) -> Self {
        self.config.rules.vary.push(header);
        self
    }

    /// Statuses that are stored (default `[200]`).
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.config.rules.cacheable_statuses = statuses.into_iter().collect();
        self
    }

    /// Name of the bypass query flag (default `cache_bypass`); it is never part of a key.
    pub fn bypass_param(mut self, name: impl Into<String>) -> Self {
        self.config.rules.bypass_param = name.into();
        self
    }

    /// Who may bypass (default: everyone). A refused bypass is served like any request, so the
    /// public cannot force refills.
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
        self.config.expose_key = expose;
        self
    }

    /// Names of the cache headers.
    pub fn header_names(mut self, names: CacheHeaderNames) -> Self {
        self.config.names = names;
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
        self.config
            .write_tags
            .insert(template.into(), tags.into_iter().map(Into::into).collect());
        self
    }

    /// Largest body stored (default 1 MiB); larger bodies stream through uncached.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.max_body = bytes;
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
                cache,
                rules: HttpRules::default(),
                routes: HashMap::new(),
                user: Arc::new(|_| None),
                bypass_allowed: Arc::new(|_| true),
                expose_key: true,
                max_body: 1024 * 1024,
                names: CacheHeaderNames::default(),
                write_tags: HashMap::new(),
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
                .and_then(|m| config.routes.get(m.as_str()))
                .map(|p| p.resource.clone().unwrap_or_else(|| "http".to_owned()));
            let start = Instant::now();
            let status_header = config.names.status.clone();
            let fut = handle(config, inner, req);
            return Box::pin(async move {
                let resp = fut.await?;
                if let Some(resource) = resource {
                    metrics.record_response(&resource, &resp, &status_header, start);
                }
                Ok(resp)
            });
        }
        Box::pin(handle(config, inner, req))
    }
}

fn set_header(resp: &mut Response<Body>, name: &HeaderName, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        resp.headers_mut().insert(name.clone(), v);
    }
}

async fn handle<S>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let is_write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if let Some(templates) = route
        .as_deref()
        .filter(|_| is_write)
        .and_then(|r| config.write_tags.get(r).map(|t| (r, t)))
    {
        let (route, templates) = (templates.0.to_owned(), templates.1.clone());
        let path = req.uri().path().to_owned();
        let resp = inner.call(req).await?;
        if resp.status().is_success() {
            let tags: Vec<String> = templates
                .iter()
                .map(|t| fill_tag(t, &route, &path))
                .collect();
            if let Err(e) = config.cache.invalidate_tags(&tags).await {
                tracing::warn!(name: "cache_invalidate_failed", tags = ?tags, error = %e, "invalidation after a write failed");
            }
        }
        return Ok(resp);
    }
    let Some((route, policy)) = route.and_then(|r| config.routes.get(&r).cloned().map(|p| (r, p)))
    else {
        return inner.call(req).await;
    };
    let (parts, body) = req.into_parts();
    let bypass_ok = (config.bypass_allowed)(&parts);
    let decision = config.rules.decide(
        &parts.method,
        parts.uri.query(),
        &parts.headers,
        policy.scope,
        bypass_ok,
    );
    let user = match policy.scope {
        RouteScope::PerUser => (config.user)(&parts),
        _ => None,
    };
    let pass = match decision {
        Decision::Pass(reason) => Some(reason),
        _ if policy.scope == RouteScope::PerUser && user.is_none() => {
            Some(PassReason::Authorization)
        }
        _ => None,
    };
    if let Some(reason) = pass {
        let mut resp = inner.call(Request::from_parts(parts, body)).await?;
        if reason != PassReason::Method {
            set_header(
                &mut resp,
                &config.names.status,
                CacheStatus::Bypass.as_str(),
            );
        }
        return Ok(resp);
    }
    let resource = policy.resource.as_deref().unwrap_or("http");
    let view = RequestView {
        method: &parts.method,
        route: &route,
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let key = config
        .rules
        .key(&config.cache, resource, view, user.as_deref());
    let is_head = parts.method == Method::HEAD;
    let mut available = true;
    if decision == Decision::Lookup {
        match config.cache.try_get_raw(&key).await {
            Ok(Some(bytes)) => {
                if let Some(resp) = serve_hit(&config, &key, &bytes, &parts, policy.scope, is_head)
                {
                    return Ok(resp);
                }
            }
            Ok(None) => {}
            Err(_) => available = false,
        }
    }
    let label = match (available, decision) {
        (false, _) => CacheStatus::Skip,
        (true, Decision::Refresh) => CacheStatus::Bypass,
        _ => CacheStatus::Miss,
    };
    config.cache.record_status(&key, label, 0);
    let tags: Vec<String> = policy
        .tags
        .iter()
        .map(|t| fill_tag(t, &route, parts.uri.path()))
        .collect();
    let resp = inner.call(Request::from_parts(parts, body)).await?;
    let (mut rparts, rbody) = resp.into_parts();
    let finish = |rparts: &mut http::response::Parts| {
        if let Ok(v) = HeaderValue::from_str(label.as_str()) {
            rparts.headers.insert(config.names.status.clone(), v);
        }
        if config.expose_key {
            if let Ok(v) = HeaderValue::from_str(key.as_str()) {
                rparts.headers.insert(config.names.key.clone(), v);
            }
        }
    };
    let too_long = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > config.max_body);
    if !available
        || is_head
        || too_long
        || config
            .rules
            .storable(rparts.status.as_u16(), &rparts.headers)
            .is_err()
    {
        finish(&mut rparts);
        return Ok(Response::from_parts(rparts, rbody));
    }
    // Buffer up to the cap; a longer body streams through uncached.
    let mut buf = BytesMut::new();
    let mut rbody = rbody;
    while let Some(frame) = rbody.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > config.max_body {
                        let head = buf.freeze();
                        let stream =
                            futures_util::stream::once(
                                async move { Ok::<Bytes, axum::Error>(head) },
                            )
                            .chain(rbody.into_data_stream());
                        finish(&mut rparts);
                        return Ok(Response::from_parts(rparts, Body::from_stream(stream)));
                    }
                }
            }
            Err(e) => {
                let head = buf.freeze();
                let stream = futures_util::stream::iter([Ok(head), Err(e)]);
                finish(&mut rparts);
                return Ok(Response::from_parts(rparts, Body::from_stream(stream)));
            }
        }
    }
    let body = buf.freeze();
    let stored = StoredResponse::new(rparts.status.as_u16(), &rparts.headers, body.clone());
    let content_type = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let cache_policy = Policy::new().with_ttl(policy.ttl).tags(tags);
    if let Err(e) = config
        .cache
        .set_raw(&key, &stored.encode(), &content_type, cache_policy)
        .await
    {
        tracing::debug!(name: "cache_store_error", key = key.as_str(), error = %e, "response not stored");
    }
    if let Some(etag) = stored.etag().and_then(|e| HeaderValue::from_str(e).ok()) {
        rparts.headers.entry(header::ETAG).or_insert(etag);
    }
    finish(&mut rparts);
    Ok(Response::from_parts(rparts, Body::from(body)))
}

fn serve_hit(
    config: &Config,
    key: &CacheKey,
    bytes: &Bytes,
    req: &Parts,
    scope: RouteScope,
    is_head: bool,
) -> Option<Response<Body>> {
    let env = Envelope::parse(bytes).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let age = env.age_at(now);
    if age >= env.ttl() {
        return None;
    }
    let stored = StoredResponse::decode(&env.payload().ok()?).ok()?;
    config
        .cache
        .record_status(key, CacheStatus::Hit, bytes.len());
    let remaining = env.ttl().saturating_sub(age).as_secs();
    let not_modified = match (req.headers.get(header::IF_NONE_MATCH), stored.etag()) {
        (Some(inm), Some(etag)) => if_none_match(inm, etag),
        _ => false,
    };
    let mut builder = Response::builder();
    if not_modified {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        for (name, value) in &stored.headers {
            if matches!(
                name.as_str(),
                "etag" | "cache-control" | "vary" | "expires" | "content-location" | "date"
            ) {
                builder = builder.header(name, value);
            }
        }
    } else {
        builder = builder.status(stored.status);
        for (name, value) in &stored.headers {
            builder = builder.header(name, value);
        }
    }
    let body = if not_modified || is_head {
        Body::empty()
    } else {
        Body::from(stored.body)
    };
    let mut resp = builder.body(body).ok()?;
    if !resp.headers().contains_key(header::CACHE_CONTROL) {
        let visibility = if scope == RouteScope::PerUser {
            "private"
        } else {
            "public"
        };
        set_header(
            &mut resp,
            &header::CACHE_CONTROL,
            format!("{visibility}, max-age={remaining}"),
        );
    }
    set_header(&mut resp, &header::AGE, age.as_secs().to_string());
    set_header(&mut resp, &config.names.status, CacheStatus::Hit.as_str());
    set_header(&mut resp, &config.names.age, age.as_secs().to_string());
    set_header(&mut resp, &config.names.ttl, remaining.to_string());
    if config.expose_key {
        set_header(&mut resp, &config.names.key, key.as_str());
    }
    Some(resp)
}

/// Replaces `{name}` in a tag template by the path parameter `name` of `route` in `path`.
fn fill_tag(template: &str, route: &str, path: &str) -> String {
    let mut out = template.to_owned();
    for (seg, value) in route.split('/').zip(path.split('/')) {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = name.trim_start_matches('*');
            out = out.replace(&format!("{{{name}}}"), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fill_tag;

    #[test]
    fn tags_are_filled_from_path_parameters() {
        assert_eq!(fill_tag("trig:{id}", "/trigs/{id}", "/trigs/42"), "trig:42");
        assert_eq!(
            fill_tag("u:{user}:t:{id}", "/u/{user}/t/{id}", "/u/7/t/9"),
            "u:7:t:9"
        );
        assert_eq!(fill_tag("static", "/trigs/{id}", "/trigs/42"), "static");
    }
}
