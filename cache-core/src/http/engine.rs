//! The whole-response cache as a framework-independent state machine: [`HttpCache`].
//!
//! See [`HttpCache`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;

use super::{
    if_none_match, Decision, HeaderSource, HttpRules, PassReason, RequestView, RouteScope,
    StoredResponse,
};
use crate::__private::Outcome;
use crate::codec::Envelope;
use crate::{Cache, CacheKey, CacheStatus, Policy};

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

    fn resource_name(&self) -> &str {
        self.resource.as_deref().unwrap_or("http")
    }
}

/// The framework-independent configuration and steps of a whole-response cache.
///
/// Both HTTP adapters drive the same steps, so a request is keyed, looked up, answered and
/// stored the same way under Axum and Actix; the adapters only move bytes and headers between
/// their framework's types and these:
///
/// 1. [`HttpCache::plan`] reads the request (method, matched route, query, headers) and says what
///    to do: [`Plan::Ignore`] (route not configured), [`Plan::Write`] (a write whose success
///    invalidates tags), [`Plan::Pass`] (run the handler, maybe mark `BYPASS`), or
///    [`Plan::Cache`] with a [`Lookup`].
/// 2. [`Lookup::fetch`] reads the entry: a hit is a ready [`CachedResponse`] (with `304 Not
///    Modified` for a matching `If-None-Match`, no body for `HEAD`, and every cache header); a
///    miss is a [`Fill`].
/// 3. The adapter runs the handler, asks [`Fill::wants_body`] whether the response may be
///    stored, buffers at most [`HttpCache::max_body`] bytes of it, and calls [`Fill::store`].
///    [`Fill::headers`] are the headers to add to the handler's response.
///
/// A cache failure at any step turns into a pass-through (`X-Cache-Status: SKIP`), never an
/// error.
///
/// The adapters' builders (`cache_axum::ResponseCacheLayer::builder`,
/// `cache_actix::ResponseCache::builder`) fill one in.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpCache {
    cache: Cache,
    rules: HttpRules,
    routes: HashMap<String, RoutePolicy>,
    write_tags: HashMap<String, Vec<String>>,
    expose_key: bool,
    max_body: usize,
    names: CacheHeaderNames,
}

/// The parts of a request the cache reads.
#[derive(Debug)]
pub struct RequestInfo<'a, H: ?Sized> {
    /// The method.
    pub method: &'a Method,
    /// The matched route template (`/trigs/{id}`), if the router matched one.
    pub route: Option<&'a str>,
    /// The request path (`/trigs/42`), to fill `{name}` in tags.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a H,
}

/// What to do with a request (from [`HttpCache::plan`]).
#[derive(Debug)]
pub enum Plan {
    /// Not a cached route: run the handler, return its response unchanged.
    Ignore,
    /// A write on a route configured with `invalidate_on_write`: run the handler, and when its
    /// status is 2xx call [`HttpCache::after_write`] with these tags.
    Write(Vec<String>),
    /// Run the handler without the cache; when `mark` is set, add the header
    /// [`HttpCache::bypass_header`] (`X-Cache-Status: BYPASS`) to its response.
    Pass {
        /// Whether the response is marked `BYPASS`.
        mark: bool,
    },
    /// A cacheable request: [`Lookup::fetch`] it.
    Cache(Lookup),
}

/// A cacheable request, keyed, ready to be looked up.
#[derive(Debug)]
pub struct Lookup {
    key: CacheKey,
    scope: RouteScope,
    refresh: bool,
    is_head: bool,
    if_none_match: Option<HeaderValue>,
    ttl: Option<Duration>,
    tags: Vec<String>,
}

/// A miss (or a refresh): run the handler, then maybe [`store`](Fill::store) its response.
#[derive(Debug)]
pub struct Fill {
    key: CacheKey,
    label: CacheStatus,
    is_head: bool,
    ttl: Option<Duration>,
    tags: Vec<String>,
}

/// A response served from the cache, with every header to send.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// The status (the stored one, or 304).
    pub status: u16,
    /// The stored headers followed by `Cache-Control` (when none was stored), `Age` and the
    /// `X-Cache-*` headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for `HEAD` and 304).
    pub body: Bytes,
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl HttpCache {
    /// A configuration with the defaults: no cached route, statuses `[200]`, bypass flag
    /// `cache_bypass`, `X-Cache-Key` sent, bodies up to 1 MiB.
    pub fn new(cache: Cache) -> HttpCache {
        HttpCache {
            cache,
            rules: HttpRules::default(),
            routes: HashMap::new(),
            write_tags: HashMap::new(),
            expose_key: true,
            max_body: 1024 * 1024,
            names: CacheHeaderNames::default(),
        }
    }

    /// Caches the route with this template (as written in the router).
    pub fn route(mut self, template: impl Into<String>, policy: RoutePolicy) -> Self {
        self.routes.insert(template.into(), policy);
        self
    }

    /// Adds a request header whose value is part of every key.
    pub fn vary(mut self, header: HeaderName) -> Self {
        self.rules.vary.push(header);
        self
    }

    /// Statuses that are stored (default `[200]`).
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.rules.cacheable_statuses = statuses.into_iter().collect();
        self
    }

    /// Name of the bypass query flag (default `cache_bypass`).
    pub fn bypass_param(mut self, name: impl Into<String>) -> Self {
        self.rules.bypass_param = name.into();
        self
    }

    /// Whether to send `X-Cache-Key` (default `true`).
    pub fn expose_key(mut self, expose: bool) -> Self {
        self.expose_key = expose;
        self
    }

    /// Names of the cache headers.
    pub fn header_names(mut self, names: CacheHeaderNames) -> Self {
        self.names = names;
        self
    }

    /// Invalidate `tags` after a successful write on the route `template`.
    pub fn invalidate_on_write<I, T>(mut self, template: impl Into<String>, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.write_tags
            .insert(template.into(), tags.into_iter().map(Into::into).collect());
        self
    }

    /// Largest body stored (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The largest body stored.
    pub fn max_body_len(&self) -> usize {
        self.max_body
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The HTTP rules.
    pub fn rules(&self) -> &HttpRules {
        &self.rules
    }

    /// The header names.
    pub fn names(&self) -> &CacheHeaderNames {
        &self.names
    }

    /// The resource name of a cached route (for metrics labels), `None` if not cached.
    pub fn resource_of(&self, route: &str) -> Option<&str> {
        self.routes.get(route).map(RoutePolicy::resource_name)
    }

    /// Whether the route is cached (`GET`/`HEAD`) or invalidates on write.
    pub fn handles(&self, route: &str) -> bool {
        self.routes.contains_key(route) || self.write_tags.contains_key(route)
    }

    /// `X-Cache-Status: BYPASS` (with the configured name).
    pub fn bypass_header(&self) -> (HeaderName, HeaderValue) {
        (
            self.names.status.clone(),
            HeaderValue::from_static(CacheStatus::Bypass.as_str()),
        )
    }

    /// Decides what to do with a request. `bypass_allowed` says whether this caller may force a
    /// refresh; `user` is called for per-user routes only (a per-user route without a user
    /// passes through).
    pub fn plan<H: HeaderSource + ?Sized>(
        &self,
        req: &RequestInfo<'_, H>,
        bypass_allowed: impl FnOnce() -> bool,
        user: impl FnOnce() -> Option<String>,
    ) -> Plan {
        let Some(route) = req.route else {
            return Plan::Ignore;
        };
        if matches!(
            *req.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) {
            return match self.write_tags.get(route) {
                Some(templates) => Plan::Write(
                    templates
                        .iter()
                        .map(|t| fill_tag(t, route, req.path))
                        .collect(),
                ),
                None if self.routes.contains_key(route) => Plan::Pass { mark: false },
                None => Plan::Ignore,
            };
        }
        let Some(policy) = self.routes.get(route) else {
            return Plan::Ignore;
        };
        let decision = self.rules.decide(
            req.method,
            req.query,
            req.headers,
            policy.scope,
            bypass_allowed(),
        );
        let user = match (decision, policy.scope) {
            (Decision::Pass(reason), _) => {
                return Plan::Pass {
                    mark: reason != PassReason::Method,
                }
            }
            (_, RouteScope::PerUser) => match user() {
                Some(u) => Some(u),
                None => return Plan::Pass { mark: true },
            },
            _ => None,
        };
        let view = RequestView {
            method: req.method,
            route,
            query: req.query,
            headers: req.headers,
        };
        let key = self
            .rules
            .key(&self.cache, policy.resource_name(), view, user.as_deref());
        let if_none_match = req
            .headers
            .values("if-none-match")
            .next()
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        Plan::Cache(Lookup {
            key,
            scope: policy.scope,
            refresh: decision == Decision::Refresh,
            is_head: *req.method == Method::HEAD,
            if_none_match,
            ttl: policy.ttl,
            tags: policy
                .tags
                .iter()
                .map(|t| fill_tag(t, route, req.path))
                .collect(),
        })
    }

    /// Invalidates the tags of a [`Plan::Write`] after the handler succeeded. A failure is
    /// logged (`cache_invalidate_failed`), never returned: the write already happened and the
    /// entries still expire with their TTL.
    pub async fn after_write(&self, tags: &[String]) {
        match self.cache.invalidate_tags(tags).await {
            Ok(_) | Err(crate::CacheError::Disabled) => {}
            Err(e) => {
                tracing::warn!(name: "cache_invalidate_failed", tags = ?tags, error = %e, "invalidation after a write failed");
            }
        }
    }
}

impl Lookup {
    /// The key.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Reads the entry: `Ok` with the response to send on a fresh hit, `Err` with the fill to
    /// run otherwise (a miss, a refresh, an unreadable entry, or the cache unavailable, which is
    /// labelled `SKIP` and not stored).
    ///
    /// # Errors
    /// `Err` is not a failure: it is the [`Fill`] of a request the cache could not answer.
    pub async fn fetch(self, http: &HttpCache) -> Result<CachedResponse, Fill> {
        let mut available = true;
        if !self.refresh {
            match http.cache.try_get_raw(&self.key).await {
                Ok(Some(bytes)) => {
                    if let Some(resp) = self.hit(http, &bytes) {
                        return Ok(resp);
                    }
                }
                Ok(None) => {}
                Err(_) => available = false,
            }
        }
        let label = match (available, self.refresh) {
            (false, _) => CacheStatus::Skip,
            (true, true) => CacheStatus::Bypass,
            _ => CacheStatus::Miss,
        };
        http.cache.record_status(&self.key, label, 0);
        Err(Fill {
            key: self.key,
            label,
            is_head: self.is_head,
            ttl: self.ttl,
            tags: self.tags,
        })
    }

    fn hit(&self, http: &HttpCache, bytes: &Bytes) -> Option<CachedResponse> {
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
        http.cache
            .record_status(&self.key, CacheStatus::Hit, bytes.len());
        let remaining = env.ttl().saturating_sub(age).as_secs();
        let not_modified = match (&self.if_none_match, stored.etag()) {
            (Some(inm), Some(etag)) => if_none_match(inm, etag),
            _ => false,
        };
        let StoredResponse {
            status,
            headers: stored_headers,
            body,
        } = stored;
        let mut headers = Vec::with_capacity(stored_headers.len() + 6);
        let mut has_cache_control = false;
        for (name, v) in stored_headers {
            has_cache_control |= name == header::CACHE_CONTROL;
            let keep = !not_modified
                || matches!(
                    name.as_str(),
                    "etag" | "cache-control" | "vary" | "expires" | "content-location" | "date"
                );
            if keep {
                headers.push((name, v));
            }
        }
        if !has_cache_control {
            let visibility = if self.scope == RouteScope::PerUser {
                "private"
            } else {
                "public"
            };
            headers.extend(
                value(&format!("{visibility}, max-age={remaining}"))
                    .map(|v| (header::CACHE_CONTROL, v)),
            );
        }
        let age = age.as_secs().to_string();
        headers.extend(value(&age).map(|v| (header::AGE, v)));
        headers.push((
            http.names.status.clone(),
            HeaderValue::from_static(CacheStatus::Hit.as_str()),
        ));
        headers.extend(value(&age).map(|v| (http.names.age.clone(), v)));
        headers.extend(value(&remaining.to_string()).map(|v| (http.names.ttl.clone(), v)));
        if http.expose_key {
            headers.extend(value(self.key.as_str()).map(|v| (http.names.key.clone(), v)));
        }
        Some(CachedResponse {
            status: if not_modified { 304 } else { status },
            headers,
            body: if not_modified || self.is_head {
                Bytes::new()
            } else {
                body
            },
        })
    }
}

impl Fill {
    /// `MISS`, `BYPASS` (a permitted refresh) or `SKIP` (cache unavailable).
    pub fn label(&self) -> CacheStatus {
        self.label
    }

    /// The key.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// The headers to add to the handler's response: `X-Cache-Status` and (if exposed)
    /// `X-Cache-Key`.
    pub fn headers(&self, http: &HttpCache) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = vec![(
            http.names.status.clone(),
            HeaderValue::from_static(self.label.as_str()),
        )];
        if http.expose_key {
            out.extend(value(self.key.as_str()).map(|v| (http.names.key.clone(), v)));
        }
        out
    }

    /// Whether the handler's response may be stored, judged from its head: the cache is
    /// available, the request is not `HEAD`, the status and headers are storable, and a
    /// `Content-Length` (if any) is within [`HttpCache::max_body`]. The body must still be
    /// buffered with that cap: a longer one streams through unstored.
    pub fn wants_body<H: HeaderSource + ?Sized>(
        &self,
        http: &HttpCache,
        status: u16,
        headers: &H,
    ) -> bool {
        let too_long = headers
            .str_values("content-length")
            .next()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > http.max_body);
        self.label != CacheStatus::Skip
            && !self.is_head
            && !too_long
            && http.rules.storable(status, headers).is_ok()
    }

    /// Stores the response (call only when [`wants_body`](Self::wants_body) said so and the
    /// whole body was read). Returns the `ETag` to add to the response when it has none. A
    /// failed store is logged (`cache_store_error`), never returned.
    pub async fn store<H: HeaderSource + ?Sized>(
        self,
        http: &HttpCache,
        status: u16,
        headers: &H,
        body: Bytes,
    ) -> Option<HeaderValue> {
        let has_etag = headers.contains("etag");
        let stored = StoredResponse::new(status, headers, body);
        let content_type = headers
            .str_values("content-type")
            .next()
            .unwrap_or("application/octet-stream");
        let policy = Policy::new().with_ttl(self.ttl).tags(self.tags);
        if let Err(e) = http
            .cache
            .set_raw(&self.key, &stored.encode(), content_type, policy)
            .await
        {
            tracing::debug!(name: "cache_store_error", key = self.key.as_str(), error = %e, "response not stored");
        }
        if has_etag {
            return None;
        }
        stored.etag().and_then(value)
    }
}

/// The headers an adapter adds after a handler that made `#[cached]` calls: `X-Cache-Status`,
/// `X-Cache-Key` (when `expose_key`), and for values served from the cache `X-Cache-Age`,
/// `X-Cache-TTL`, `Age`, plus a `Cache-Control` (`private` when `per_user`, else `public`) when
/// the response has none.
pub fn outcome_headers(
    names: &CacheHeaderNames,
    expose_key: bool,
    outcome: &Outcome,
    per_user: bool,
    has_cache_control: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    out.push((
        names.status.clone(),
        HeaderValue::from_static(outcome.status.as_str()),
    ));
    if expose_key {
        out.extend(value(&outcome.key).map(|v| (names.key.clone(), v)));
    }
    if matches!(outcome.status, CacheStatus::Hit | CacheStatus::Stale) {
        let age = outcome.age.as_secs().to_string();
        out.extend(value(&age).map(|v| (names.age.clone(), v)));
        out.extend(value(&outcome.ttl.as_secs().to_string()).map(|v| (names.ttl.clone(), v)));
        out.extend(value(&age).map(|v| (header::AGE, v)));
    }
    if outcome.status.is_from_cache() && !has_cache_control {
        let visibility = if per_user { "private" } else { "public" };
        let cc = format!("{visibility}, max-age={}", outcome.ttl.as_secs());
        out.extend(value(&cc).map(|v| (header::CACHE_CONTROL, v)));
    }
    out
}

/// Replaces `{name}` in a tag template by the path parameter `name` of `route` in `path`
/// (`fill_tag("trig:{id}", "/trigs/{id}", "/trigs/42")` is `trig:42`). Both `{name}` (Axum) and
/// `{name:regex}` / `{tail}*` (Actix) route parameters are recognised.
pub fn fill_tag(template: &str, route: &str, path: &str) -> String {
    if !template.contains('{') {
        return template.to_owned();
    }
    let mut out = template.to_owned();
    for (seg, value) in route.split('/').zip(path.split('/')) {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = name.trim_start_matches('*');
            let name = name.split(':').next().unwrap_or(name);
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
        assert_eq!(
            fill_tag("trig:{id}", "/trigs/{id:\\d+}", "/trigs/42"),
            "trig:42"
        );
    }
}
