//! Framework-agnostic HTTP caching rules (feature `http`).
//!
//! The HTTP adapters (`cache-axum`, `cache-actix`) share this module, so the same request is
//! keyed, bypassed and stored the same way under either framework. It applies the parts of
//! RFC 9111 that concern a server-side shared cache:
//!
//! * two requests share an entry only when every handler would answer them alike: the key holds
//!   the method (`HEAD` shares `GET`'s), the request **path**, the query taken exactly (only the
//!   order of parameters is canonicalised: `?page=`, `?page` and no `page` are three entries),
//!   the configured vary headers and, on per-user routes, the user;
//! * only `GET` and `HEAD` are looked up or stored (`HEAD` is answered from the `GET` entry,
//!   unless [`HttpCache::head_from_get`] is off);
//! * a request carrying `Authorization` or a session cookie passes through a shared route
//!   (per-user routes put the user in the key; public routes ignore credentials);
//! * `Cache-Control: no-cache` or `Pragma: no-cache` (or the bypass query flag) skips the lookup
//!   and refreshes the entry, when bypass is allowed for the caller; `no-store` on the request
//!   passes through without storing;
//! * a response is stored only with a cacheable status (200 by default), and never with
//!   `Cache-Control: no-store`, `private` or `no-cache`, with `Set-Cookie`, or with `Vary: *`;
//! * hop-by-hop headers (and headers named by `Connection`) are never stored;
//! * `If-None-Match` is compared weakly (RFC 9110 §13.1.2), `*` matches any entry.
//!
//! ```
//! use cache_core::http::{Decision, HttpRules, RouteScope};
//! use http::{HeaderMap, HeaderValue, Method};
//!
//! let rules = HttpRules::default();
//! let mut headers = HeaderMap::new();
//! assert_eq!(rules.decide(&Method::GET, None, &headers, RouteScope::Shared, true), Decision::Lookup);
//! headers.insert("authorization", HeaderValue::from_static("Bearer t"));
//! assert!(matches!(rules.decide(&Method::GET, None, &headers, RouteScope::Shared, true), Decision::Pass(_)));
//! assert_eq!(rules.decide(&Method::GET, None, &headers, RouteScope::PerUser, true), Decision::Lookup);
//! ```

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

use crate::error::CacheError;
use crate::key::CacheKey;
use crate::Cache;

mod engine;

pub use engine::{
    fill_tag, outcome_body, outcome_headers, outcome_validator, Answer, CacheHeaderNames,
    CachedResponse, Disposition, Extra, HttpCache, Lookup, Origin, Plan, RequestInfo, RoutePolicy,
    HEADER_AGE, HEADER_KEY, HEADER_STATUS, HEADER_TIER, HEADER_TTL,
};
pub(crate) use engine::{ResponseFormat, Unstored};

/// Read access to a header map, so that the rules work on any framework's headers (Axum uses
/// [`http::HeaderMap`]; Actix has its own map, wrapped by `cache-actix`).
pub trait HeaderSource {
    /// The values of the header `name` (lowercase), in order.
    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]>;

    /// Every header as (lowercase name, value), in order.
    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// Whether the header `name` is present.
    fn contains(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// The values of `name` that are valid UTF-8 (others are skipped, never an error).
    fn str_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }
}

impl HeaderSource for HeaderMap {
    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }
}

/// Who may share a route's cached responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RouteScope {
    /// One entry for everyone; requests with credentials pass through.
    #[default]
    Shared,
    /// One entry per user; the user is part of the key.
    PerUser,
    /// One entry for everyone, credentials or not (the response does not depend on them).
    Public,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Look the response up, fill it on a miss.
    Lookup,
    /// Skip the lookup, run the handler and store its response (a permitted bypass).
    Refresh,
    /// Neither look up nor store.
    Pass(PassReason),
}

/// Why a request passes through the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassReason {
    /// Not `GET` or `HEAD`.
    Method,
    /// `Authorization` on a shared route.
    Authorization,
    /// A session cookie on a shared route.
    SessionCookie,
    /// `Cache-Control: no-store` on the request.
    NoStore,
}

impl PassReason {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PassReason::Method => "method",
            PassReason::Authorization => "authorization",
            PassReason::SessionCookie => "session_cookie",
            PassReason::NoStore => "no_store",
        }
    }
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotStorable {
    /// The status is not in the cacheable list.
    Status(u16),
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private`.
    Private,
    /// `Cache-Control: no-cache` (must be revalidated on every use).
    NoCache,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
}

/// The shared rules, configured once per layer.
#[derive(Debug, Clone)]
pub struct HttpRules {
    /// Statuses whose responses are stored (default `[200]`).
    pub cacheable_statuses: Vec<u16>,
    /// Query parameter that requests a bypass; excluded from keys (default `cache_bypass`).
    pub bypass_param: String,
    /// Request headers whose values are part of the key (the route's `Vary`).
    pub vary: Vec<HeaderName>,
    /// Cookie names that identify a session (default `session`, `sessionid`, `sid`, `connect.sid`,
    /// `_session`).
    pub session_cookies: Vec<String>,
}

impl Default for HttpRules {
    fn default() -> Self {
        HttpRules {
            cacheable_statuses: vec![200],
            bypass_param: "cache_bypass".into(),
            vary: Vec::new(),
            session_cookies: ["session", "sessionid", "sid", "connect.sid", "_session"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The directives of a `Cache-Control` header that matter here, parsed leniently: unknown or
/// malformed directives are ignored, never an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `no-cache`.
    pub no_cache: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `private`.
    pub private: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` header in `headers`.
    pub fn from_headers<H: HeaderSource + ?Sized>(headers: &H) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.str_values("cache-control") {
            for directive in value.split(',') {
                let name = directive.split('=').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("no-cache") {
                    cc.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    cc.no_store = true;
                } else if name.eq_ignore_ascii_case("private") {
                    cc.private = true;
                }
            }
        }
        cc
    }
}

impl HttpRules {
    /// Whether the request asks for a bypass: `Cache-Control: no-cache`, `Pragma: no-cache`, or
    /// `<bypass_param>=true|1|yes` in the query.
    pub fn wants_bypass<H: HeaderSource + ?Sized>(&self, query: Option<&str>, headers: &H) -> bool {
        if CacheControl::from_headers(headers).no_cache {
            return true;
        }
        let pragma = headers.str_values("pragma").any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        });
        pragma
            || query.is_some_and(|q| {
                q.split('&').any(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    name == self.bypass_param
                        && matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
                })
            })
    }

    /// Whether the request carries credentials: `Authorization`, or a session cookie.
    fn credentials<H: HeaderSource + ?Sized>(&self, headers: &H) -> Option<PassReason> {
        if headers.contains("authorization") {
            return Some(PassReason::Authorization);
        }
        let session = headers
            .str_values("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim()))
            .any(|name| {
                self.session_cookies
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(name))
            });
        session.then_some(PassReason::SessionCookie)
    }

    /// Decides how to treat a request. `bypass_allowed` says whether this caller may force a
    /// refresh (restrict it to operators so the public cannot force refills); a refused bypass
    /// is an ordinary lookup.
    pub fn decide<H: HeaderSource + ?Sized>(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &H,
        scope: RouteScope,
        bypass_allowed: bool,
    ) -> Decision {
        if method != Method::GET && method != Method::HEAD {
            return Decision::Pass(PassReason::Method);
        }
        if CacheControl::from_headers(headers).no_store {
            return Decision::Pass(PassReason::NoStore);
        }
        if scope == RouteScope::Shared {
            if let Some(reason) = self.credentials(headers) {
                return Decision::Pass(reason);
            }
        }
        if bypass_allowed && self.wants_bypass(query, headers) {
            Decision::Refresh
        } else {
            Decision::Lookup
        }
    }

    /// Whether a response may be stored.
    ///
    /// # Errors
    /// The first rule that forbids storing it.
    pub fn storable<H: HeaderSource + ?Sized>(
        &self,
        status: u16,
        headers: &H,
    ) -> Result<(), NotStorable> {
        if !self.cacheable_statuses.contains(&status) {
            return Err(NotStorable::Status(status));
        }
        self.storable_headers(headers)
    }

    /// Whether the headers of a response allow storing it (every rule of
    /// [`storable`](Self::storable) but the status).
    ///
    /// # Errors
    /// The first rule that forbids storing it.
    pub fn storable_headers<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
    ) -> Result<(), NotStorable> {
        let cc = CacheControl::from_headers(headers);
        if cc.no_store {
            return Err(NotStorable::NoStore);
        }
        if cc.private {
            return Err(NotStorable::Private);
        }
        if cc.no_cache {
            return Err(NotStorable::NoCache);
        }
        if headers.contains("set-cookie") {
            return Err(NotStorable::SetCookie);
        }
        let vary_star = headers
            .str_values("vary")
            .any(|v| v.split(',').any(|f| f.trim() == "*"));
        if vary_star {
            return Err(NotStorable::VaryStar);
        }
        Ok(())
    }

    /// The key of a request: `resource`, the method (`HEAD` shares `GET`'s entry), the request
    /// **path** as received (so `/trigs/5` and `/trigs/6` never share an entry), the query taken
    /// exactly ([`KeyBuilder::exact_query`](crate::key::KeyBuilder::exact_query): only the order
    /// of parameters is canonicalised, and the bypass flag is left out), the values of the `vary`
    /// headers, and the user when the route is per-user.
    pub fn key<H: HeaderSource + ?Sized>(
        &self,
        cache: &Cache,
        resource: &str,
        request: RequestView<'_, H>,
        user: Option<&str>,
    ) -> CacheKey {
        let RequestView {
            method,
            path,
            query,
            headers,
        } = request;
        let method = if method == Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        let mut key = cache
            .key(resource)
            .id(method)
            .id(path)
            .exact_query(query)
            .exclude(&self.bypass_param);
        for name in &self.vary {
            // Absent: no parameter. Present (even empty): `=` then the values joined by `, `,
            // every byte outside visible ASCII and `%` escaped as `%XX`, so that two requests
            // share an entry only when their header values are byte for byte the same (RFC 9111
            // §4.1; an absent header matches only an absent one).
            let mut values = headers.values(name.as_str()).peekable();
            if values.peek().is_none() {
                continue;
            }
            let mut joined = String::from("=");
            for (i, v) in values.enumerate() {
                if i > 0 {
                    joined.push_str(", ");
                }
                for &b in v {
                    if (b.is_ascii_graphic() && b != b'%') || b == b' ' {
                        joined.push(b as char);
                    } else {
                        let _ = write!(joined, "%{b:02X}");
                    }
                }
            }
            key = key.param(&format!("header:{name}"), joined);
        }
        if let Some(user) = user {
            key = key.user(user);
        }
        key.build()
    }
}

/// The parts of a request that its key is derived from.
#[derive(Debug)]
pub struct RequestView<'a, H: ?Sized = HeaderMap> {
    /// The method.
    pub method: &'a Method,
    /// The request path as received (`/trigs/42`), not the route template.
    pub path: &'a str,
    /// The raw query string, without `?` (`None` when the URI has none).
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a H,
}

impl<H: ?Sized> Clone for RequestView<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for RequestView<'_, H> {}

/// Whether a header must never be stored: hop-by-hop headers (RFC 9110 §7.6.1), those named in
/// `Connection`, `Set-Cookie`, and the cache's own `Age` and `X-Cache-*` headers.
pub fn is_unstorable_header<H: HeaderSource + ?Sized>(name: &str, connection: &H) -> bool {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let n = name;
    HOP_BY_HOP.contains(&n)
        || n == "set-cookie"
        || n == "age"
        || n.starts_with("x-cache-")
        || connection
            .str_values("connection")
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(n))
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison; `*` matches anything).
pub fn if_none_match(header_value: &HeaderValue, etag: &str) -> bool {
    let Ok(value) = header_value.to_str() else {
        return false;
    };
    let strip = |t: &str| {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_owned()
    };
    let etag = strip(etag);
    value.split(',').any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || strip(candidate) == etag
    })
}

/// A response as stored: status, the headers that belong in a cache, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Status code.
    pub status: u16,
    /// Stored headers, in order (names lowercase).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: bytes::Bytes,
}

impl StoredResponse {
    /// Builds a stored response from the parts of a real one, dropping the headers that must not
    /// be stored and adding a strong `ETag` (XXH3-64 of the body) when the response has none.
    pub fn new<H: HeaderSource + ?Sized>(
        status: u16,
        headers: &H,
        body: bytes::Bytes,
    ) -> StoredResponse {
        let mut kept: Vec<(HeaderName, HeaderValue)> = headers
            .entries()
            .filter(|(n, _)| !is_unstorable_header(n, headers))
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_bytes(v).ok()?,
                ))
            })
            .collect();
        if !headers.contains("etag") {
            let tag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
            if let Ok(v) = HeaderValue::from_str(&tag) {
                kept.push((header::ETAG, v));
            }
        }
        StoredResponse {
            status,
            headers: kept,
            body,
        }
    }

    /// The stored `ETag`, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == header::ETAG)
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// The stored `Content-Type`, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == header::CONTENT_TYPE)
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// Encodes the response as an envelope payload: `u16 status`, `u16 header count`, per header
    /// `u16 name length`, name, `u32 value length`, value, then the body (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends [`encode`](Self::encode)'s output to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.status.to_le_bytes());
        let count = self.headers.len().min(u16::MAX as usize);
        out.extend_from_slice(&(count as u16).to_le_bytes());
        for (name, value) in &self.headers[..count] {
            let n = name.as_str().as_bytes();
            out.extend_from_slice(&(n.len() as u16).to_le_bytes());
            out.extend_from_slice(n);
            let v = value.as_bytes();
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&self.body);
    }

    /// Decodes [`encode`](Self::encode)'s output.
    ///
    /// # Errors
    /// [`CacheError::Decode`] for truncated or invalid input (never a panic).
    pub fn decode(bytes: &[u8]) -> Result<StoredResponse, CacheError> {
        Self::decode_shared(bytes::Bytes::copy_from_slice(bytes))
    }

    /// Decodes [`encode`](Self::encode)'s output without copying: the body and the header values
    /// are slices of `bytes` (a cache hit serves the bytes Redis returned).
    ///
    /// # Errors
    /// [`CacheError::Decode`] for truncated or invalid input (never a panic).
    #[allow(clippy::needless_pass_by_value)] // the body and header values are slices of `bytes`
    pub fn decode_shared(bytes: bytes::Bytes) -> Result<StoredResponse, CacheError> {
        let bad = || CacheError::Decode("invalid stored response".into());
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<std::ops::Range<usize>, CacheError> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(bad)?;
            let range = at..end;
            at = end;
            Ok(range)
        };
        let u16_at =
            |r: std::ops::Range<usize>| u16::from_le_bytes([bytes[r.start], bytes[r.start + 1]]);
        let status = u16_at(take(2)?);
        let count = u16_at(take(2)?);
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let nl = u16_at(take(2)?);
            let name = HeaderName::from_bytes(&bytes[take(usize::from(nl))?]).map_err(|_| bad())?;
            let r = take(4)?;
            let vl = u32::from_le_bytes([
                bytes[r.start],
                bytes[r.start + 1],
                bytes[r.start + 2],
                bytes[r.start + 3],
            ]);
            let v = take(vl as usize)?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(v)).map_err(|_| bad())?;
            headers.push((name, value));
        }
        let body = bytes.slice(take(0)?.start..);
        Ok(StoredResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_get_and_head_are_cached() {
        let r = HttpRules::default();
        let h = HeaderMap::new();
        for m in [
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert_eq!(
                r.decide(&m, None, &h, RouteScope::Shared, true),
                Decision::Pass(PassReason::Method)
            );
        }
        assert_eq!(
            r.decide(&Method::HEAD, None, &h, RouteScope::Shared, true),
            Decision::Lookup
        );
    }

    #[test]
    fn credentials_pass_shared_routes_but_not_per_user_or_public_ones() {
        let r = HttpRules::default();
        let auth = headers(&[("authorization", "Bearer x")]);
        let cookie = headers(&[("cookie", "theme=dark; sessionid=abc")]);
        let harmless = headers(&[("cookie", "theme=dark")]);
        let get = Method::GET;
        assert_eq!(
            r.decide(&get, None, &auth, RouteScope::Shared, true),
            Decision::Pass(PassReason::Authorization)
        );
        assert_eq!(
            r.decide(&get, None, &cookie, RouteScope::Shared, true),
            Decision::Pass(PassReason::SessionCookie)
        );
        assert_eq!(
            r.decide(&get, None, &harmless, RouteScope::Shared, true),
            Decision::Lookup
        );
        assert_eq!(
            r.decide(&get, None, &auth, RouteScope::PerUser, true),
            Decision::Lookup
        );
        assert_eq!(
            r.decide(&get, None, &cookie, RouteScope::Public, true),
            Decision::Lookup
        );
    }

    #[test]
    fn bypass_by_header_pragma_or_flag_and_only_when_allowed() {
        let r = HttpRules::default();
        let get = Method::GET;
        let none = HeaderMap::new();
        for h in [
            headers(&[("cache-control", "no-cache")]),
            headers(&[("pragma", "no-cache")]),
            headers(&[("cache-control", "max-age=0, No-Cache")]),
        ] {
            assert_eq!(
                r.decide(&get, None, &h, RouteScope::Shared, true),
                Decision::Refresh
            );
            assert_eq!(
                r.decide(&get, None, &h, RouteScope::Shared, false),
                Decision::Lookup,
                "refused bypass is a lookup"
            );
        }
        assert_eq!(
            r.decide(
                &get,
                Some("a=1&cache_bypass=true"),
                &none,
                RouteScope::Shared,
                true
            ),
            Decision::Refresh
        );
        assert_eq!(
            r.decide(
                &get,
                Some("cache_bypass=false"),
                &none,
                RouteScope::Shared,
                true
            ),
            Decision::Lookup
        );
        assert_eq!(
            r.decide(
                &get,
                None,
                &headers(&[("cache-control", "no-store")]),
                RouteScope::Shared,
                true
            ),
            Decision::Pass(PassReason::NoStore)
        );
    }

    #[test]
    fn storability_follows_the_response_rules() {
        let r = HttpRules::default();
        assert_eq!(r.storable(200, &HeaderMap::new()), Ok(()));
        assert_eq!(
            r.storable(404, &HeaderMap::new()),
            Err(NotStorable::Status(404))
        );
        assert_eq!(
            r.storable(200, &headers(&[("cache-control", "public, no-store")])),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            r.storable(200, &headers(&[("cache-control", "private")])),
            Err(NotStorable::Private)
        );
        assert_eq!(
            r.storable(200, &headers(&[("set-cookie", "a=b")])),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(
            r.storable(200, &headers(&[("vary", "accept, *")])),
            Err(NotStorable::VaryStar)
        );
        assert_eq!(r.storable(200, &headers(&[("vary", "accept")])), Ok(()));
    }

    #[test]
    fn hostile_cache_control_is_parsed_without_panicking() {
        let r = HttpRules::default();
        for v in [
            ",,,",
            "=",
            "no-store=\"",
            "\u{7f}",
            "max-age=99999999999999999999",
            "private=\"a, b\"",
        ] {
            if let Ok(value) = HeaderValue::from_str(v) {
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, value);
                let _ = r.storable(200, &h);
                let _ = r.decide(
                    &Method::GET,
                    Some("&&=&cache_bypass"),
                    &h,
                    RouteScope::Shared,
                    true,
                );
            }
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap(),
        );
        assert_eq!(r.storable(200, &h), Ok(()), "non-UTF-8 values are ignored");
    }

    #[test]
    fn unstorable_headers_are_dropped_and_an_etag_added() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("x-cache-status", "MISS"),
            ("age", "3"),
        ]);
        let stored = StoredResponse::new(200, &h, bytes::Bytes::from_static(b"{}"));
        let names: Vec<&str> = stored.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "etag"]);
        assert_eq!(
            stored.etag(),
            Some(format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(b"{}")).as_str())
        );
        let round = StoredResponse::decode(&stored.encode()).unwrap();
        assert_eq!(round, stored);
        assert!(StoredResponse::decode(&stored.encode()[..5]).is_err());
        assert!(StoredResponse::decode(b"").is_err());
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let m = |v: &'static str, e| if_none_match(&HeaderValue::from_static(v), e);
        assert!(m("\"abc\"", "\"abc\""));
        assert!(m("W/\"abc\"", "\"abc\""));
        assert!(m("\"x\", \"abc\"", "\"abc\""));
        assert!(m("*", "\"abc\""));
        assert!(!m("\"abd\"", "\"abc\""));
    }

    #[test]
    fn keys_share_get_and_head_drop_the_bypass_flag_and_separate_users_and_vary() {
        let cache = Cache::memory();
        let r = HttpRules {
            vary: vec![header::ACCEPT_LANGUAGE],
            ..HttpRules::default()
        };
        let h = |lang: &'static str| headers(&[("accept-language", lang)]);
        let route = "/trigs/42";
        let k = |method: &Method, query: Option<&str>, headers: &HeaderMap, u: Option<&str>| {
            let view = RequestView {
                method,
                path: route,
                query,
                headers,
            };
            r.key(&cache, "trig", view, u)
        };
        let base = k(&Method::GET, Some("b=2&a=1"), &h("en"), None);
        assert_eq!(
            base,
            k(
                &Method::HEAD,
                Some("a=1&b=2&cache_bypass=true"),
                &h("en"),
                None
            )
        );
        assert_ne!(base, k(&Method::GET, Some("a=1&b=2"), &h("fr"), None));
        assert_ne!(
            k(&Method::GET, None, &h("en"), Some("alice")),
            k(&Method::GET, None, &h("en"), Some("bob"))
        );
        assert_eq!(base.resource(), "trig");
    }
}
