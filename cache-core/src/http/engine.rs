//! The whole-response cache as framework-independent steps: [`HttpCache`].
//!
//! A cached route is a client of the same read-through engine as [`Cache::fetch`]: the handler
//! is the loader. So a route gets everything a cached function gets: one handler run for any
//! number of concurrent identical requests, fills guarded against invalidations made while the
//! handler ran, stale-while-revalidate and stale-if-error windows, and the lease across
//! instances.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;

use super::{
    if_none_match, Decision, HeaderSource, HttpRules, PassReason, RequestView, RouteScope,
    StoredResponse,
};
use crate::__private::Outcome;
use crate::cache::{Detached, Format, Inline};
use crate::codec::{EnvelopeMeta, Header};
use crate::flight::Shared;
use crate::{Cache, CacheError, CacheKey, CacheStatus, Fetched, Policy};

/// `X-Cache-Status`: `HIT`, `MISS`, `BYPASS`, `STALE` or `SKIP` (cache unavailable).
pub const HEADER_STATUS: &str = "x-cache-status";
/// `X-Cache-Key`: the key used (can be turned off with `expose_key(false)`).
pub const HEADER_KEY: &str = "x-cache-key";
/// `X-Cache-Age`: seconds since the entry was stored (hits only).
pub const HEADER_AGE: &str = "x-cache-age";
/// `X-Cache-TTL`: seconds of freshness left (hits only).
pub const HEADER_TTL: &str = "x-cache-ttl";
/// `X-Cache-Tier`: which tier served a hit or a stale value: `l1` (the in-process tier, no round
/// trip) or `redis` (the shared backend). Not sent on other outcomes.
pub const HEADER_TIER: &str = "x-cache-tier";

fn tier_header(tier: Option<crate::Tier>) -> Option<(HeaderName, HeaderValue)> {
    tier.map(|t| {
        (
            HeaderName::from_static(HEADER_TIER),
            HeaderValue::from_static(t.as_str()),
        )
    })
}

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
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    lease: bool,
}

impl RoutePolicy {
    /// Cache the route's responses for `ttl`.
    pub fn ttl(ttl: Duration) -> RoutePolicy {
        RoutePolicy {
            ttl: Some(ttl),
            tags: Vec::new(),
            scope: RouteScope::Shared,
            resource: None,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            lease: false,
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

    /// After the TTL, answer with the stored response (`X-Cache-Status: STALE`) for this long
    /// while one request refreshes it (in the background where the framework allows it).
    pub fn stale_while_revalidate(mut self, window: Duration) -> RoutePolicy {
        self.stale_while_revalidate = window;
        self
    }

    /// After the TTL, answer with the stored response for this long when the handler fails
    /// (answers 5xx).
    pub fn stale_if_error(mut self, window: Duration) -> RoutePolicy {
        self.stale_if_error = window;
        self
    }

    /// Take a cross-instance lease before running the handler on a miss, so only one instance
    /// runs it (see [`Policy::lease`]).
    pub fn lease(mut self, on: bool) -> RoutePolicy {
        self.lease = on;
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
/// 1. [`HttpCache::plan`] reads the request (method, matched route, path, query, headers) and
///    says what to do: [`Plan::Ignore`] (route not configured), [`Plan::Write`] (a write whose
///    success invalidates tags), [`Plan::Pass`] (run the handler, add some headers), or
///    [`Plan::Cache`] with a [`Lookup`].
/// 2. [`Lookup::fetch`] (or [`Lookup::fetch_detached`] when the handler can run in a background
///    task) answers the request through the read-through engine. The adapter passes the handler
///    as a closure that runs it and turns its response into an [`Origin`] with
///    [`HttpCache::origin`]: a complete storable response, a complete response that may only be
///    shared with concurrent identical requests (a 404), or the framework's own response.
/// 3. The answer is a [`CachedResponse`] to send as it is, or the handler's own response with
///    the [`Extra`] headers to add.
///
/// A cache failure at any step turns into a pass-through (`X-Cache-Status: SKIP`), never an
/// error.
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
    head_from_get: bool,
}

/// The parts of a request the cache reads.
#[derive(Debug)]
pub struct RequestInfo<'a, H: ?Sized> {
    /// The method.
    pub method: &'a Method,
    /// The matched route template (`/trigs/{id}`), if the router matched one.
    pub route: Option<&'a str>,
    /// The request path as received (`/trigs/42`): part of the key, and fills `{name}` in tags.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a H,
}

/// Headers to add to a response the handler produced.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Set (replacing any value the response has).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Set only when the response has no such header.
    pub default: Vec<(HeaderName, HeaderValue)>,
}

/// What to do with a request (from [`HttpCache::plan`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Plan {
    /// Not a cached route: run the handler, return its response unchanged.
    Ignore,
    /// A write on a route configured with `invalidate_on_write`: run the handler, and when its
    /// status is 2xx call [`HttpCache::after_write`] with these tags.
    Write(Vec<String>),
    /// Run the handler without the cache and add these headers to its response (`BYPASS` when
    /// the request was not cacheable because of credentials or `no-store`; `Cache-Control:
    /// private` on per-user routes).
    Pass(Extra),
    /// A cacheable request: [`Lookup::fetch`] it.
    Cache(Lookup),
}

/// A cacheable request, keyed, ready to be answered.
#[derive(Debug)]
pub struct Lookup {
    key: CacheKey,
    scope: RouteScope,
    is_head: bool,
    if_none_match: Option<HeaderValue>,
    policy: Policy,
}

/// The handler's response to a cacheable request, classified by [`HttpCache::origin`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Origin<P> {
    /// Complete and storable.
    Store(StoredResponse),
    /// Complete and safe to hand to concurrent identical requests, but not storable (a status
    /// that is not cacheable, such as 404 or 500).
    Share(StoredResponse),
    /// The framework's response, neither stored nor shared (streaming or over the body cap,
    /// `Set-Cookie`, `Cache-Control: private/no-store`, or a `HEAD`).
    Own {
        /// Its status, to tell a failure (5xx, which a stale-if-error entry may replace) from an
        /// answer.
        status: u16,
        /// The response.
        response: P,
    },
}

/// What the handler's response head says about caching it (from [`HttpCache::disposition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Read the body (up to [`HttpCache::max_body_len`]) and store it.
    Store,
    /// Read the body (up to the cap) and share it with concurrent identical requests only.
    Share,
    /// Pass the response through as it is.
    Pass,
}

/// The answer to a cacheable request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Answer<P> {
    /// A response built by the cache, to send as it is.
    Cached(CachedResponse),
    /// The handler's own response, with headers to add.
    Origin {
        /// The response.
        response: P,
        /// The headers to add.
        extra: Extra,
    },
}

/// A response built by the cache (from an entry, or from the handler's stored or shared
/// response), with every header to send.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// The status (the stored one, or 304).
    pub status: u16,
    /// The stored headers followed by `Cache-Control` (when none was stored), `Vary`, `Age` and
    /// the `X-Cache-*` headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for 304). For `HEAD` the whole body is kept so that the server sends its
    /// length as `Content-Length`; servers never send a `HEAD` body.
    pub body: Bytes,
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl HttpCache {
    /// A configuration with the defaults: no cached route, statuses `[200]`, bypass flag
    /// `cache_bypass`, `X-Cache-Key` sent, bodies up to 1 MiB, `HEAD` answered from the `GET`
    /// entry.
    pub fn new(cache: Cache) -> HttpCache {
        HttpCache {
            cache,
            rules: HttpRules::default(),
            routes: HashMap::new(),
            write_tags: HashMap::new(),
            expose_key: true,
            max_body: 1024 * 1024,
            names: CacheHeaderNames::default(),
            head_from_get: true,
        }
    }

    /// Caches the route with this template (as written in the router).
    pub fn route(mut self, template: impl Into<String>, policy: RoutePolicy) -> Self {
        self.routes.insert(template.into(), policy);
        self
    }

    /// Adds a request header whose value is part of every key; it is listed in the `Vary`
    /// header of the route's responses.
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

    /// Whether a `HEAD` request is answered from the `GET` entry (default `true`). Turn it off
    /// when the router does not answer `HEAD` like `GET` (Actix routes registered with
    /// `web::get()` answer `HEAD` with 404), so that the cache never answers where the origin
    /// would not.
    pub fn head_from_get(mut self, on: bool) -> Self {
        self.head_from_get = on;
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
                None if self.routes.contains_key(route) => Plan::Pass(Extra::default()),
                None => Plan::Ignore,
            };
        }
        let Some(policy) = self.routes.get(route) else {
            return Plan::Ignore;
        };
        let per_user = policy.scope == RouteScope::PerUser;
        let private = || Extra {
            set: Vec::new(),
            default: per_user
                .then(|| (header::CACHE_CONTROL, HeaderValue::from_static("private")))
                .into_iter()
                .collect(),
        };
        if *req.method == Method::HEAD && !self.head_from_get {
            return Plan::Pass(private());
        }
        let decision = self.rules.decide(
            req.method,
            req.query,
            req.headers,
            policy.scope,
            bypass_allowed(),
        );
        let bypassed = || {
            let mut extra = private();
            extra.set.push(self.bypass_header());
            extra
        };
        let user = match (decision, policy.scope) {
            (Decision::Pass(PassReason::Method), _) => return Plan::Pass(private()),
            (Decision::Pass(_), _) => return Plan::Pass(bypassed()),
            (_, RouteScope::PerUser) => match user() {
                Some(u) => Some(u),
                None => return Plan::Pass(bypassed()),
            },
            _ => None,
        };
        let view = RequestView {
            method: req.method,
            path: req.path,
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
        let engine_policy = Policy::new()
            .with_ttl(policy.ttl)
            .tags(policy.tags.iter().map(|t| fill_tag(t, route, req.path)))
            .stale_while_revalidate(policy.stale_while_revalidate)
            .stale_if_error(policy.stale_if_error)
            .lease(policy.lease)
            .bypass(decision == Decision::Refresh);
        Plan::Cache(Lookup {
            key,
            scope: policy.scope,
            is_head: *req.method == Method::HEAD,
            if_none_match,
            policy: engine_policy,
        })
    }

    /// What to do with the handler's response, judged from its head: store it (storable status
    /// and headers, and a `Content-Length`, if any, within [`max_body_len`](Self::max_body_len)),
    /// share it with concurrent identical requests (complete, but a status that is not stored),
    /// or pass it through (anything with `Set-Cookie`, `private`, `no-store`, ... or too long).
    /// The body must still be read with the cap: a longer one passes through.
    pub fn disposition<H: HeaderSource + ?Sized>(&self, status: u16, headers: &H) -> Disposition {
        self.rules.disposition(status, headers, self.max_body)
    }

    /// The [`Origin`] of a complete response body read within the cap, for `disposition`
    /// [`Store`](Disposition::Store) or [`Share`](Disposition::Share).
    pub fn origin<H: HeaderSource + ?Sized, P>(
        &self,
        disposition: Disposition,
        status: u16,
        headers: &H,
        body: Bytes,
    ) -> Origin<P> {
        let stored = StoredResponse::new(status, headers, body);
        match disposition {
            Disposition::Store => Origin::Store(stored),
            _ => Origin::Share(stored),
        }
    }

    /// Invalidates the tags of a [`Plan::Write`] after the handler succeeded. One the backend
    /// does not take in time is queued and replayed (see [`crate::durable`]); any other failure
    /// is logged (`cache_invalidate_failed`), never returned: the write already happened.
    pub async fn after_write(&self, tags: &[String]) {
        match self.cache.invalidate_tags(tags).await {
            Ok(_) | Err(CacheError::Disabled | CacheError::Queued) => {}
            Err(e) => {
                tracing::warn!(name: "cache_invalidate_failed", event = "cache_invalidate_failed", tags = ?tags, error = %e, "invalidation after a write failed");
            }
        }
    }
}

/// What the engine stores for a route: the handler's response, encoded as a raw envelope and
/// decoded without copying its body.
pub(crate) struct ResponseFormat<P>(PhantomData<fn() -> P>);

impl<P> ResponseFormat<P> {
    pub(crate) fn new() -> Self {
        ResponseFormat(PhantomData)
    }
}

impl<P> Clone for ResponseFormat<P> {
    fn clone(&self) -> Self {
        ResponseFormat(PhantomData)
    }
}

/// The loader error of a route: a response that is not stored.
pub(crate) enum Unstored<P> {
    Share(StoredResponse),
    Own { status: u16, response: P },
}

impl<P> Format for ResponseFormat<P> {
    type Value = StoredResponse;
    type Error = Unstored<P>;

    fn encode(
        &self,
        value: &StoredResponse,
        meta: &EnvelopeMeta<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        let content_type = value.content_type().unwrap_or("application/octet-stream");
        Ok(crate::codec::encode_raw_with(
            content_type,
            meta,
            value.body.len() + 256,
            |buf| value.encode_into(buf),
        ))
    }

    fn decode(&self, bytes: &Bytes, header: &Header) -> Result<StoredResponse, CacheError> {
        if !header.is_raw() {
            return Err(CacheError::Decode("not a stored response".into()));
        }
        if header.is_compressed() {
            let payload = crate::codec::Envelope::with_header(bytes, *header).payload()?;
            return StoredResponse::decode_shared(Bytes::from(payload.into_owned()));
        }
        StoredResponse::decode_shared(bytes.slice(header.payload_offset()..))
    }

    fn share(&self, error: &Unstored<P>) -> Option<Shared> {
        match error {
            Unstored::Share(resp) => Some(Arc::new(resp.clone())),
            Unstored::Own { .. } => None,
        }
    }

    fn unshare(&self, shared: &Shared) -> Option<Unstored<P>> {
        let any: &(dyn Any + Send + Sync) = &**shared;
        any.downcast_ref::<StoredResponse>()
            .map(|r| Unstored::Share(r.clone()))
    }

    fn is_failure(&self, error: &Unstored<P>) -> bool {
        match error {
            Unstored::Share(r) => r.status >= 500,
            Unstored::Own { status, .. } => *status >= 500,
        }
    }
}

impl<P> Origin<P> {
    pub(crate) fn into_result(self) -> Result<StoredResponse, Unstored<P>> {
        match self {
            Origin::Store(r) => Ok(r),
            Origin::Share(r) => Err(Unstored::Share(r)),
            Origin::Own { status, response } => Err(Unstored::Own { status, response }),
        }
    }
}

impl Lookup {
    /// The key.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Answers the request: from the entry, or by running `handler` (once for any number of
    /// concurrent identical requests in this process) and storing its response when it is
    /// storable. A stale entry is refreshed inline by one request while the others are answered
    /// `STALE`.
    pub async fn fetch<P, F, Fut>(self, http: &HttpCache, handler: F) -> Answer<P>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Origin<P>>,
    {
        if self.is_head {
            return self.head(http, handler).await;
        }
        let fmt = ResponseFormat::<P>(PhantomData);
        let loader = || async move { handler().await.into_result() };
        let result = http
            .cache
            .read_through(&self.key, &self.policy, &fmt, loader, Inline)
            .await;
        self.answer(http, result)
    }

    /// Like [`fetch`](Self::fetch) with a handler that can run in a background task, so that a
    /// stale entry is refreshed in the background and every request is answered `STALE` at once.
    pub async fn fetch_detached<P, F, Fut>(self, http: &HttpCache, handler: F) -> Answer<P>
    where
        P: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Origin<P>> + Send + 'static,
    {
        if self.is_head {
            return self.head(http, handler).await;
        }
        let fmt = ResponseFormat::<P>(PhantomData);
        let loader = move || async move { handler().await.into_result() };
        let result = http
            .cache
            .read_through(&self.key, &self.policy, &fmt, loader, Detached)
            .await;
        self.answer(http, result)
    }

    fn answer<P>(
        &self,
        http: &HttpCache,
        result: Result<Fetched<StoredResponse>, crate::cache::Failed<Unstored<P>>>,
    ) -> Answer<P> {
        match result {
            Ok(fetched) => Answer::Cached(self.respond(http, fetched)),
            Err(failed) => match failed.error {
                Unstored::Share(resp) => {
                    Answer::Cached(self.respond_unstored(http, resp, failed.status))
                }
                Unstored::Own { response, .. } => Answer::Origin {
                    response,
                    extra: self.extra(http, failed.status),
                },
            },
        }
    }

    /// `HEAD`: answered from the `GET` entry when there is one (never refreshing it), else by
    /// the handler, unstored.
    async fn head<P, F, Fut>(self, http: &HttpCache, handler: F) -> Answer<P>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Origin<P>>,
    {
        let fmt = ResponseFormat::<P>(PhantomData);
        let label = if self.policy.bypass {
            CacheStatus::Bypass
        } else {
            match http.cache.peek(&self.key, &self.policy, &fmt).await {
                Ok(Some(fetched)) => return Answer::Cached(self.respond(http, fetched)),
                Ok(None) => CacheStatus::Miss,
                Err(status) => status,
            }
        };
        match handler().await {
            Origin::Store(r) | Origin::Share(r) => {
                Answer::Cached(self.respond_unstored(http, r, label))
            }
            Origin::Own { response, .. } => Answer::Origin {
                response,
                extra: self.extra(http, label),
            },
        }
    }

    fn visibility(&self) -> &'static str {
        if self.scope == RouteScope::PerUser {
            "private"
        } else {
            "public"
        }
    }

    /// A response from a stored (or storable) entry: the same headers on a miss as on a hit.
    fn respond(&self, http: &HttpCache, fetched: Fetched<StoredResponse>) -> CachedResponse {
        let from_cache = fetched.status.is_from_cache();
        let StoredResponse {
            status,
            headers: stored,
            body,
        } = fetched.value;
        let not_modified = from_cache
            && match (&self.if_none_match, find(&stored, &header::ETAG)) {
                (Some(inm), Some(etag)) => etag.to_str().is_ok_and(|e| if_none_match(inm, e)),
                _ => false,
            };
        let mut headers = Vec::with_capacity(stored.len() + 8);
        let mut has_cache_control = false;
        let mut vary: Option<HeaderValue> = None;
        for (name, v) in stored {
            if name == header::CACHE_CONTROL {
                has_cache_control = true;
            }
            if name == header::VARY {
                vary = Some(v);
                continue;
            }
            let keep = !not_modified
                || matches!(
                    name.as_str(),
                    "etag" | "cache-control" | "expires" | "content-location" | "date"
                );
            if keep {
                headers.push((name, v));
            }
        }
        if !has_cache_control {
            let max_age = if fetched.status == CacheStatus::Stale {
                0
            } else {
                fetched.ttl.as_secs()
            };
            headers.extend(
                value(&format!("{}, max-age={max_age}", self.visibility()))
                    .map(|v| (header::CACHE_CONTROL, v)),
            );
        }
        headers.extend(http.vary_header(vary));
        let status_label = fetched.status;
        if from_cache {
            let age = fetched.age.as_secs().to_string();
            headers.extend(value(&age).map(|v| (header::AGE, v)));
            headers.push(http.status_header(status_label));
            headers.extend(tier_header(fetched.tier));
            headers.extend(value(&age).map(|v| (http.names.age.clone(), v)));
            headers.extend(
                value(&fetched.ttl.as_secs().to_string()).map(|v| (http.names.ttl.clone(), v)),
            );
        } else {
            headers.push(http.status_header(status_label));
        }
        if http.expose_key {
            headers.extend(value(self.key.as_str()).map(|v| (http.names.key.clone(), v)));
        }
        CachedResponse {
            status: if not_modified { 304 } else { status },
            headers,
            body: if not_modified { Bytes::new() } else { body },
        }
    }

    /// A complete response that was not stored (a 404, a 500, a `HEAD`).
    fn respond_unstored(
        &self,
        http: &HttpCache,
        resp: StoredResponse,
        label: CacheStatus,
    ) -> CachedResponse {
        let StoredResponse {
            status,
            headers: stored,
            body,
        } = resp;
        let mut headers = Vec::with_capacity(stored.len() + 4);
        let mut has_cache_control = false;
        let mut vary: Option<HeaderValue> = None;
        for (name, v) in stored {
            if name == header::CACHE_CONTROL {
                has_cache_control = true;
            }
            if name == header::VARY {
                vary = Some(v);
                continue;
            }
            headers.push((name, v));
        }
        if !has_cache_control && self.scope == RouteScope::PerUser {
            headers.push((header::CACHE_CONTROL, HeaderValue::from_static("private")));
        }
        headers.extend(http.vary_header(vary));
        headers.push(http.status_header(label));
        if http.expose_key {
            headers.extend(value(self.key.as_str()).map(|v| (http.names.key.clone(), v)));
        }
        CachedResponse {
            status,
            headers,
            body,
        }
    }

    /// The headers for the handler's own response.
    fn extra(&self, http: &HttpCache, label: CacheStatus) -> Extra {
        let mut set = vec![http.status_header(label)];
        if http.expose_key {
            set.extend(value(self.key.as_str()).map(|v| (http.names.key.clone(), v)));
        }
        let default = (self.scope == RouteScope::PerUser)
            .then(|| (header::CACHE_CONTROL, HeaderValue::from_static("private")))
            .into_iter()
            .collect();
        Extra { set, default }
    }
}

impl HttpRules {
    /// What to do with a response, judged from its head (see [`HttpCache::disposition`]);
    /// `max_body` caps a declared `Content-Length`.
    pub fn disposition<H: HeaderSource + ?Sized>(
        &self,
        status: u16,
        headers: &H,
        max_body: usize,
    ) -> Disposition {
        let too_long = headers
            .str_values("content-length")
            .next()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > max_body);
        if too_long || self.storable_headers(headers).is_err() {
            return Disposition::Pass;
        }
        if self.cacheable_statuses.contains(&status) {
            Disposition::Store
        } else {
            Disposition::Share
        }
    }
}

impl HttpCache {
    fn status_header(&self, status: CacheStatus) -> (HeaderName, HeaderValue) {
        (
            self.names.status.clone(),
            HeaderValue::from_static(status.as_str()),
        )
    }

    /// `Vary`: the response's own value followed by the configured vary headers not in it.
    fn vary_header(&self, existing: Option<HeaderValue>) -> Option<(HeaderName, HeaderValue)> {
        if self.rules.vary.is_empty() {
            return existing.map(|v| (header::VARY, v));
        }
        let mut names: Vec<String> = existing
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for name in &self.rules.vary {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name.as_str())) {
                names.push(name.as_str().to_owned());
            }
        }
        value(&names.join(", ")).map(|v| (header::VARY, v))
    }
}

fn find<'a>(
    headers: &'a [(HeaderName, HeaderValue)],
    name: &HeaderName,
) -> Option<&'a HeaderValue> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The headers an adapter adds after a handler that made `#[cached]` calls: `X-Cache-Status`,
/// `X-Cache-Key` (when `expose_key`), for values served from the cache `X-Cache-Age`,
/// `X-Cache-TTL` and `Age`, and, when the response has no `Cache-Control`, one that never marks
/// per-user data as shareable: `private` on **every** status when `per_user` (a `#[cached]` call
/// keyed by user, or a request with an identified user), otherwise, for a successful (2xx)
/// response built from a stored value, `public, max-age=<remaining TTL>` on a miss as on a hit.
pub fn outcome_headers(
    names: &CacheHeaderNames,
    expose_key: bool,
    outcome: &Outcome,
    per_user: bool,
    response_status: u16,
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
    if outcome.status.is_from_cache() {
        out.extend(tier_header(outcome.tier));
        let age = outcome.age.as_secs().to_string();
        out.extend(value(&age).map(|v| (names.age.clone(), v)));
        out.extend(value(&outcome.ttl.as_secs().to_string()).map(|v| (names.ttl.clone(), v)));
        out.extend(value(&age).map(|v| (header::AGE, v)));
    }
    if !has_cache_control {
        let per_user = per_user || outcome.per_user;
        let stored = outcome.status.is_from_cache() || outcome.ttl > Duration::ZERO;
        if per_user {
            let cc = if stored && (200..300).contains(&response_status) {
                format!("private, max-age={}", outcome.ttl.as_secs())
            } else {
                "private".to_owned()
            };
            out.extend(value(&cc).map(|v| (header::CACHE_CONTROL, v)));
        } else if stored && (200..300).contains(&response_status) {
            let cc = format!("public, max-age={}", outcome.ttl.as_secs());
            out.extend(value(&cc).map(|v| (header::CACHE_CONTROL, v)));
        }
    }
    out
}

/// `ETag` and `304 Not Modified` for the response of a `#[cached]` handler whose value is the
/// whole response (`outcome.whole_response`), as the response layer does: returns the `ETag` to
/// add when the response has none (the stored payload's, `"<16 hex digits>"`), and whether the
/// request's `If-None-Match` matches it (weak comparison), so that the adapter answers 304 with
/// an empty body. Only a 200 built from a stored value gets either.
pub fn outcome_validator(
    outcome: &Outcome,
    response_status: u16,
    response_etag: Option<&HeaderValue>,
    if_none_match_header: Option<&HeaderValue>,
) -> (Option<HeaderValue>, bool) {
    if !outcome.whole_response || response_status != 200 || outcome.status == CacheStatus::Skip {
        return (None, false);
    }
    let added = match response_etag {
        Some(_) => None,
        None => outcome.etag.and_then(|e| value(&format!("\"{e:016x}\""))),
    };
    let etag = response_etag.or(added.as_ref());
    let not_modified = match (if_none_match_header, etag.and_then(|e| e.to_str().ok())) {
        (Some(inm), Some(etag)) => if_none_match(inm, etag),
        _ => false,
    };
    (added, not_modified)
}

/// The body to send for the response of a `#[cached]` `Json<T>` handler whose value came from a
/// stored entry: the stored JSON payload (a zero-copy slice of the entry), so that the body is
/// byte for byte what the miss sent, rather than the value re-serialized (which differs for
/// types whose serialization is not deterministic, such as a `HashMap`). `None` (keep the
/// handler's body) unless the response is a `200` with a JSON `Content-Type`.
pub fn outcome_body(
    outcome: &Outcome,
    response_status: u16,
    content_type: Option<&[u8]>,
) -> Option<Bytes> {
    let json = content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with(b"application/json") || ct.ends_with(b"+json")
    });
    if !outcome.whole_response || response_status != 200 || !json {
        return None;
    }
    outcome.body.clone()
}

/// Replaces `{name}` in a tag template by the path parameter `name` of `route` in `path`
/// (`fill_tag("trig:{id}", "/trigs/{id}", "/trigs/42")` is `trig:42`). Both `{name}` / `{*name}`
/// (Axum) and `{name:regex}` / `{name}*` (Actix) route parameters are recognised; a catch-all
/// takes the rest of the path.
///
/// The value is the segment **percent-decoded**, as both frameworks hand it to the handler:
/// `PUT /trigs/%34%32` is a write on trig `42` and invalidates `trig:42`, the tag the entry of
/// `GET /trigs/42` carries (escapes that do not decode to UTF-8 are replaced by U+FFFD, which can
/// only make two raw spellings share a tag: an invalidation of one reaches both).
pub fn fill_tag(template: &str, route: &str, path: &str) -> String {
    if !template.contains('{') {
        return template.to_owned();
    }
    let mut out = template.to_owned();
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    for seg in route.strip_prefix('/').unwrap_or(route).split('/') {
        let (value, tail) = match rest.split_once('/') {
            Some((value, tail)) => (value, tail),
            None => (rest, ""),
        };
        let param = seg
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix("}*").or_else(|| s.strip_suffix('}')));
        if let Some(name) = param {
            let catch_all = name.starts_with('*') || seg.ends_with("}*");
            let name = name.trim_start_matches('*');
            let name = name.split(':').next().unwrap_or(name);
            let value = if catch_all { rest } else { value };
            out = out.replace(&format!("{{{name}}}"), &percent_decode_lossy(value));
            if catch_all {
                break;
            }
        }
        rest = tail;
    }
    out
}

/// `%XX` escapes decoded (an escape that is not two hex digits is kept as it is), then the bytes
/// as UTF-8 with invalid sequences replaced by U+FFFD. Borrows when there is no `%`.
fn percent_decode_lossy(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit sends the stored bytes as the body: the decoded body and header values are slices
    /// of the bytes the backend returned, not copies.
    #[test]
    fn a_hit_body_is_a_slice_of_the_entry_bytes_not_a_copy() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-served-by", HeaderValue::from_static("handler"));
        let body = Bytes::from(vec![b'x'; 4096]);
        let stored = StoredResponse::new(200, &headers, body);
        let fmt = ResponseFormat::<()>::new();
        let policy = Policy::new();
        let meta = EnvelopeMeta {
            ttl: Duration::from_secs(60),
            tags: policy.tags_ref(),
            ..EnvelopeMeta::default()
        };
        let entry = Bytes::from(fmt.encode(&stored, &meta).unwrap());
        let header = Header::parse(&entry).unwrap();
        let decoded = fmt.decode(&entry, &header).unwrap();
        assert_eq!(decoded, stored, "the stored response round-trips");
        let range = entry.as_ptr() as usize..entry.as_ptr() as usize + entry.len();
        assert!(
            range.contains(&(decoded.body.as_ptr() as usize)),
            "body is borrowed"
        );
        let served_by = decoded
            .headers
            .iter()
            .find(|(n, _)| n == "x-served-by")
            .map(|(_, v)| v.as_bytes().as_ptr() as usize)
            .unwrap();
        assert!(range.contains(&served_by), "header values are borrowed");
    }

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
        assert_eq!(
            fill_tag("f:{rest}", "/files/{*rest}", "/files/a/b%20c"),
            "f:a/b c"
        );
        assert_eq!(
            fill_tag("f:{tail}", "/files/{tail}*", "/files/a/b"),
            "f:a/b"
        );
    }

    /// A write through `/trigs/%34%32` invalidates the tag of `/trigs/42`: values are decoded as
    /// the frameworks decode path parameters (the fuzzer's first find).
    #[test]
    fn tags_are_filled_from_percent_decoded_path_parameters() {
        assert_eq!(
            fill_tag("trig:{id}", "/trigs/{id}", "/trigs/%34%32"),
            "trig:42"
        );
        assert_eq!(fill_tag("t:{id}", "/t/{id}", "/t/%e2%82%ac"), "t:\u{20ac}");
        assert_eq!(fill_tag("t:{id}", "/t/{id}", "/t/%zz%4"), "t:%zz%4");
        assert_eq!(fill_tag("t:{id}", "/t/{id}", "/t/%FF"), "t:\u{fffd}");
    }
}
