//! Framework-agnostic operator endpoints (feature `http`).
//!
//! The HTTP adapters (`cache-axum`, `cache-actix`) expose these operations as an admin API; each
//! function returns an [`AdminReply`] (a status code and a JSON body) so every adapter answers the
//! same request the same way.
//!
//! | function | success | failure |
//! | --- | --- | --- |
//! | [`stats`] | 200 `{total_keys, memory_used_bytes, memory_used_human, keyspace_hits, keyspace_misses, hit_rate_percent, connected_clients, backend, counters, resources, health, l1, warmers}` | always 200; server fields `null` when the backend does not answer; `l1` is the in-process tier's state ([`crate::L1Status`]), `null` without one |
//! | [`flush_all`] | 200 `{deleted}` | 503 `{error}` |
//! | [`flush_pattern`] | 200 `{deleted, pattern}` | 400 `{error}` (invalid pattern), 503 `{error}` |
//! | [`invalidate`] | 200 `{invalidated, tags}` | 400 `{error}` (no tags), 503 `{error}` |
//! | [`reset_stats`] | 200 `{reset: true}` | - |
//! | [`warm`] | 200 [`WarmReport`](crate::warm::WarmReport) | 404 `{error}` (no such warmer), 409 `{error}` (a run is in progress) |
//! | [`health`] | 200 [`Health`](crate::Health) (up, degraded, disabled) | 503 [`Health`](crate::Health) (down) |
//! | `analytics` (feature `analytics`) | 200 `{window, routes, invalidations, recorder}` | 400 `{error}` (window not `5m`, `1h` or `1d`), 503 `{error}` |
//! | `advisor` (feature `analytics`) | 200 `{window, suggestions, observations}` | 400 `{error}` (window not `5m`, `1h` or `1d`), 503 `{error}` |
//! | `timeline` (feature `analytics`) | 200 [`Timeline`](crate::analytics::Timeline) `{window, bucket_secs, from_ms, to_ms, routes: [{method, route, requests, points: [{start_ms, minutes, requests, per_second, hits, misses, hit_rate, errors, bytes, p50_ms, p95_ms, p99_ms}]}]}` | 400 `{error}` (window not `5m`, `1h` or `1d`), 503 `{error}` |
//! | [`dashboard`] | the dashboard page: HTML, no data (see below) | - |
//!
//! Access control is the adapter's job; [`check_bearer`] compares a bearer token in constant time.
//!
//! # The dashboard
//! [`dashboard`] is one HTML document (inline CSS and JS, embedded in the crate, nothing fetched
//! from anywhere else) that the adapters serve at `GET dashboard`. It shows the routes of
//! `GET analytics` in a table, their time series of `GET timeline` as SVG charts (requests, hit
//! rate, p50/p95/p99 latency), the ranking of `GET advisor` ("advisor unavailable" when that
//! endpoint does not answer 200), the figures of `GET stats`, a window selector (`5m`, `1h`,
//! `1d`), an "invalidate tags" form (`POST invalidate`) and a "flush namespace" button
//! (`DELETE` on the admin root) with a confirm step, both showing the JSON reply.
//!
//! **The page itself is served without the guard, and holds no data**: a browser navigation
//! cannot send a bearer header, and the page's bytes are the same for every cache and every
//! request. Everything it shows or does goes through the guarded JSON endpoints above with the
//! token the user types into the page (kept in the tab's `sessionStorage`), or passes in the URL
//! fragment `#token=...` (browsers never send the fragment to the server; the page removes it
//! from the address bar). Data from the application (route templates, tags) is inserted with
//! `textContent`, never parsed as HTML. The page is answered with `Cache-Control: no-store` and
//! a `Content-Security-Policy` that allows only its own inline script and style (by SHA-256
//! hash) and requests to its own origin (`connect-src 'self'`).
//!
//! ```
//! use cache_core::admin::{self, check_bearer, GuardOutcome};
//! use cache_core::Cache;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! let reply = admin::flush_all(&cache).await;
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.body["deleted"], 0);
//!
//! assert_eq!(check_bearer(Some(b"Bearer s3cret"), "s3cret"), GuardOutcome::Allowed);
//! assert_eq!(check_bearer(Some(b"Bearer nope"), "s3cret"), GuardOutcome::Wrong);
//! assert_eq!(check_bearer(None, "s3cret"), GuardOutcome::Missing);
//! # });
//! ```

use serde_json::{json, Value};

use crate::cache::HealthStatus;
use crate::error::CacheError;
use crate::Cache;

/// The answer to an admin request: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminReply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl AdminReply {
    fn ok(body: Value) -> AdminReply {
        AdminReply { status: 200, body }
    }

    fn error(status: u16, message: impl Into<String>) -> AdminReply {
        AdminReply {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    /// 400 for rejected arguments, 503 for everything else (backend down, disabled, ...).
    fn from_error(e: &CacheError) -> AdminReply {
        let status = match e {
            CacheError::InvalidArgument(_) => 400,
            _ => 503,
        };
        AdminReply::error(status, e.to_string())
    }
}

/// Server and engine statistics: backend figures (`null` when the backend does not answer),
/// the engine's counters in total and per resource, and a health report.
pub async fn stats(cache: &Cache) -> AdminReply {
    let (info, health) = tokio::join!(cache.backend_info(), cache.health());
    let snapshot = cache.stats();
    let mut body = match info {
        Ok(info) => json!({
            "total_keys": info.total_keys,
            "memory_used_bytes": info.memory_used_bytes,
            "memory_used_human": human_bytes(info.memory_used_bytes),
            "keyspace_hits": info.keyspace_hits,
            "keyspace_misses": info.keyspace_misses,
            "hit_rate_percent": hit_rate_percent(info.keyspace_hits, info.keyspace_misses),
            "connected_clients": info.connected_clients,
            "backend": info.backend,
        }),
        Err(_) => json!({
            "total_keys": null,
            "memory_used_bytes": null,
            "memory_used_human": null,
            "keyspace_hits": null,
            "keyspace_misses": null,
            "hit_rate_percent": null,
            "connected_clients": null,
            "backend": cache.backend_kind(),
        }),
    };
    let mut health = health;
    if health.status != HealthStatus::Disabled && body["total_keys"].is_null() {
        // The ping may have squeezed through while INFO failed: the backend is not usable.
        health.status = HealthStatus::Down;
    }
    body["counters"] = serde_json::to_value(snapshot.total).unwrap_or(Value::Null);
    body["resources"] = serde_json::to_value(&snapshot.resources).unwrap_or(Value::Null);
    body["health"] = serde_json::to_value(&health).unwrap_or(Value::Null);
    body["l1"] = serde_json::to_value(cache.l1_status()).unwrap_or(Value::Null);
    body["warmers"] = serde_json::to_value(cache.warm_status()).unwrap_or(Value::Null);
    AdminReply::ok(body)
}

/// Runs the warmer `name` now and waits for it: its [`WarmReport`](crate::warm::WarmReport);
/// 404 when there is no such warmer, 409 when a run is already in progress.
pub async fn warm(cache: &Cache, name: &str) -> AdminReply {
    match cache.warm(name).await {
        Ok(Some(report)) => AdminReply::ok(serde_json::to_value(report).unwrap_or(Value::Null)),
        Ok(None) => AdminReply::error(409, format!("warmer `{name}` is already running")),
        Err(e) => AdminReply::error(404, e.to_string()),
    }
}

/// Deletes every entry of the cache's namespace: `{ "deleted": n }`.
pub async fn flush_all(cache: &Cache) -> AdminReply {
    match cache.clear().await {
        Ok(n) => AdminReply::ok(json!({ "deleted": n })),
        Err(e) => AdminReply::from_error(&e),
    }
}

/// Deletes the entries matching a glob `pattern` relative to the keyspace prefix
/// (see [`Cache::delete_pattern`]): `{ "deleted": n, "pattern": p }`.
pub async fn flush_pattern(cache: &Cache, pattern: &str) -> AdminReply {
    if pattern.is_empty() {
        return AdminReply::error(400, "invalid argument: empty pattern");
    }
    match cache.delete_pattern(pattern).await {
        Ok(n) => AdminReply::ok(json!({ "deleted": n, "pattern": pattern })),
        Err(e) => AdminReply::from_error(&e),
    }
}

/// Invalidates every entry carrying any of `tags`: `{ "invalidated": n, "tags": [...] }`; when
/// the backend did not answer in time, `202` with `{ "queued": true, "tags": [...] }` (the
/// invalidation is replayed as soon as it answers; see [`crate::durable`]). Any other failure is
/// reported, never dropped.
pub async fn invalidate(cache: &Cache, tags: Vec<String>) -> AdminReply {
    if tags.is_empty() {
        return AdminReply::error(400, "no tags given");
    }
    if tags.iter().any(String::is_empty) {
        return AdminReply::error(400, "empty tag");
    }
    match cache.invalidate_tags(&tags).await {
        Ok(n) => AdminReply::ok(json!({ "invalidated": n, "tags": tags })),
        Err(e) if e.is_queued() => AdminReply {
            status: 202,
            body: json!({ "queued": true, "tags": tags }),
        },
        Err(e) => AdminReply::from_error(&e),
    }
}

/// Resets the engine's counters: `{ "reset": true }`.
pub async fn reset_stats(cache: &Cache) -> AdminReply {
    cache.reset_stats();
    AdminReply::ok(json!({ "reset": true }))
}

/// Route analytics over a window (`5m`, `1h` or `1d`; `None`: `5m`): `routes` are
/// [`RouteStats`](crate::analytics::RouteStats), most requested first, `invalidations` are
/// [`InvalidationStats`](crate::analytics::InvalidationStats), `recorder` is
/// [`AnalyticsStats`](crate::analytics::AnalyticsStats) (events accepted, written, dropped).
#[cfg(feature = "analytics")]
pub async fn analytics(cache: &Cache, window: Option<&str>) -> AdminReply {
    use crate::analytics::Window;
    let Some(window) = Window::parse(window.unwrap_or("5m")) else {
        return AdminReply::error(400, "window must be 5m, 1h or 1d");
    };
    let a = cache.analytics();
    let routes = match a.routes(window).await {
        Ok(r) => r,
        Err(e) => return AdminReply::error(503, e.to_string()),
    };
    let invalidations = match a.invalidations(window).await {
        Ok(r) => r,
        Err(e) => return AdminReply::error(503, e.to_string()),
    };
    AdminReply::ok(json!({
        "window": window.as_str(),
        "routes": routes,
        "invalidations": invalidations,
        "recorder": a.stats(),
    }))
}

/// The advisor's ranking over a window (`5m`, `1h` or `1d`; `None`: `5m`): `suggestions` are
/// [`Suggestion`](crate::advisor::Suggestion)s, best first (TTL in seconds), `observations`
/// the [`RouteObservation`](crate::advisor::RouteObservation)s they were computed from.
#[cfg(feature = "analytics")]
pub async fn advisor(cache: &Cache, window: Option<&str>) -> AdminReply {
    use crate::analytics::Window;
    let Some(window) = Window::parse(window.unwrap_or("5m")) else {
        return AdminReply::error(400, "window must be 5m, 1h or 1d");
    };
    let observations = match cache.analytics().observations(window).await {
        Ok(r) => r,
        Err(e) => return AdminReply::error(503, e.to_string()),
    };
    let suggestions =
        crate::advisor::advise(&observations, &crate::advisor::AdvisorSettings::default());
    AdminReply::ok(json!({
        "window": window.as_str(),
        "suggestions": suggestions,
        "observations": observations,
    }))
}

/// Per-route time series over a window (`5m`, `1h` or `1d`; `None`: `5m`), for charts:
/// [`Timeline`](crate::analytics::Timeline) (see
/// [`Analytics::timeline`](crate::analytics::Analytics::timeline)); `route` keeps only the route
/// it names (`GET /trigs/{id}`, or a template).
#[cfg(feature = "analytics")]
pub async fn timeline(cache: &Cache, window: Option<&str>, route: Option<&str>) -> AdminReply {
    use crate::analytics::Window;
    let Some(window) = Window::parse(window.unwrap_or("5m")) else {
        return AdminReply::error(400, "window must be 5m, 1h or 1d");
    };
    match cache.analytics().timeline(window, route).await {
        Ok(t) => AdminReply::ok(serde_json::to_value(t).unwrap_or(Value::Null)),
        Err(e) => AdminReply::error(503, e.to_string()),
    }
}

/// A static page: status 200, its headers and its body, the same bytes on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// HTTP status code (200).
    pub status: u16,
    /// Response headers: `Content-Type`, `Cache-Control`, `Content-Security-Policy`, ...
    pub headers: Vec<(&'static str, String)>,
    /// The document.
    pub body: String,
}

const DASHBOARD_HTML: &str = include_str!("admin/dashboard.html");
const DASHBOARD_CSS: &str = include_str!("admin/dashboard.css");
const DASHBOARD_JS: &str = include_str!("admin/dashboard.js");

/// The dashboard page (see [the module docs](self#the-dashboard)): one HTML document with its
/// CSS and JS inline, and the headers to send with it. It holds no data: serve it without the
/// guard (the adapters do); the JSON endpoints it calls stay guarded.
pub fn dashboard() -> &'static Page {
    static PAGE: std::sync::OnceLock<Page> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        let body = DASHBOARD_HTML
            .replacen("/*STYLE*/", DASHBOARD_CSS, 1)
            .replacen("/*SCRIPT*/", DASHBOARD_JS, 1);
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            sha256_base64(DASHBOARD_JS),
            sha256_base64(DASHBOARD_CSS)
        );
        Page {
            status: 200,
            headers: vec![
                ("content-type", "text/html; charset=utf-8".to_owned()),
                ("cache-control", "no-store".to_owned()),
                ("content-security-policy", csp),
                ("x-content-type-options", "nosniff".to_owned()),
                ("referrer-policy", "no-referrer".to_owned()),
                ("x-frame-options", "DENY".to_owned()),
            ],
            body,
        }
    })
}

/// Standard base64 (with padding) of the SHA-256 of `text`, as CSP hash sources write it.
fn sha256_base64(text: &str) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(44);
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The health report; 503 when the backend is down, 200 otherwise.
pub async fn health(cache: &Cache) -> AdminReply {
    let health = cache.health().await;
    let status = if health.status == HealthStatus::Down {
        503
    } else {
        200
    };
    AdminReply {
        status,
        body: serde_json::to_value(&health).unwrap_or(Value::Null),
    }
}

/// The result of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardOutcome {
    /// Let the request through.
    Allowed,
    /// No credentials: answer 401 (with `WWW-Authenticate: Bearer`).
    Missing,
    /// Wrong credentials: answer 403.
    Wrong,
}

impl GuardOutcome {
    /// The HTTP status to answer with, `None` when allowed.
    pub fn status(self) -> Option<u16> {
        match self {
            GuardOutcome::Allowed => None,
            GuardOutcome::Missing => Some(401),
            GuardOutcome::Wrong => Some(403),
        }
    }
}

impl From<bool> for GuardOutcome {
    /// `true` allows, `false` is [`GuardOutcome::Wrong`].
    fn from(allowed: bool) -> GuardOutcome {
        if allowed {
            GuardOutcome::Allowed
        } else {
            GuardOutcome::Wrong
        }
    }
}

/// Checks an `Authorization` header value against `Bearer {expected_token}`.
///
/// No header, or one without the `Bearer` scheme, is [`GuardOutcome::Missing`]; a bearer token
/// that differs is [`GuardOutcome::Wrong`]. Tokens are compared in constant time (only the length
/// may leak). An empty `expected_token` allows nobody.
pub fn check_bearer(authorization_header: Option<&[u8]>, expected_token: &str) -> GuardOutcome {
    let Some(value) = authorization_header else {
        return GuardOutcome::Missing;
    };
    let value = value.trim_ascii();
    let scheme_len = value.iter().position(|b| *b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return GuardOutcome::Missing;
    }
    let token = rest.trim_ascii();
    if expected_token.is_empty() {
        return GuardOutcome::Wrong;
    }
    if constant_time_eq(token, expected_token.as_bytes()) {
        GuardOutcome::Allowed
    } else {
        GuardOutcome::Wrong
    }
}

/// Compares two byte strings in time depending only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Keyspace hits as a percentage of lookups, 2 decimals, `0.0` without lookups.
fn hit_rate_percent(hits: u64, misses: u64) -> f64 {
    let total = hits + misses;
    if total == 0 {
        0.0
    } else {
        (hits as f64 * 10_000.0 / total as f64).round() / 100.0
    }
}

/// Bytes in Redis' `used_memory_human` style: `512B`, `1.50K`, `5.00M`, `2.00G`, `1.00T`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_like_redis() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1024), "1.00K");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.00M");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.50G");
        assert_eq!(human_bytes(1 << 40), "1.00T");
    }

    #[test]
    fn hit_rate_two_decimals() {
        assert_eq!(hit_rate_percent(0, 0), 0.0);
        assert_eq!(hit_rate_percent(1, 2), 33.33);
        assert_eq!(hit_rate_percent(2, 1), 66.67);
        assert_eq!(hit_rate_percent(5, 0), 100.0);
    }

    #[test]
    fn bearer_outcomes() {
        assert_eq!(check_bearer(None, "tok"), GuardOutcome::Missing);
        assert_eq!(check_bearer(Some(b""), "tok"), GuardOutcome::Missing);
        assert_eq!(
            check_bearer(Some(b"Basic dG9r"), "tok"),
            GuardOutcome::Missing
        );
        assert_eq!(
            check_bearer(Some(b"Bearer tok"), "tok"),
            GuardOutcome::Allowed
        );
        assert_eq!(
            check_bearer(Some(b"bearer  tok "), "tok"),
            GuardOutcome::Allowed
        );
        assert_eq!(
            check_bearer(Some(b"Bearer tok2"), "tok"),
            GuardOutcome::Wrong
        );
        assert_eq!(
            check_bearer(Some(b"Bearer tak"), "tok"),
            GuardOutcome::Wrong
        );
        assert_eq!(check_bearer(Some(b"Bearer"), "tok"), GuardOutcome::Wrong);
        assert_eq!(check_bearer(Some(b"Bearer "), ""), GuardOutcome::Wrong);
        assert_eq!(check_bearer(Some(b"tok"), "tok"), GuardOutcome::Missing);
    }

    #[test]
    fn sha256_base64_reference_vectors() {
        // `printf '' | openssl dgst -sha256 -binary | base64`, and of `abc`.
        assert_eq!(
            sha256_base64(""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            sha256_base64("abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn outcome_status_and_bool() {
        assert_eq!(GuardOutcome::Allowed.status(), None);
        assert_eq!(GuardOutcome::Missing.status(), Some(401));
        assert_eq!(GuardOutcome::Wrong.status(), Some(403));
        assert_eq!(GuardOutcome::from(true), GuardOutcome::Allowed);
        assert_eq!(GuardOutcome::from(false), GuardOutcome::Wrong);
    }

    #[tokio::test]
    async fn verbs_on_memory() {
        let cache = Cache::memory();
        let key = cache.key("trig").id(1).build();
        cache
            .set(
                &key,
                &1u32,
                crate::Policy::ttl(std::time::Duration::from_secs(60)).tag("trig:1"),
            )
            .await
            .unwrap();
        let _ = cache.get::<u32>(&key).await;

        let s = stats(&cache).await;
        assert_eq!(s.status, 200);
        assert_eq!(s.body["backend"], "memory");
        assert_eq!(s.body["counters"]["hits"], 1);
        assert!(s.body["resources"]["trig"].is_object());
        assert_eq!(s.body["health"]["status"], "up");

        let r = invalidate(&cache, vec!["trig:1".into()]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["tags"], json!(["trig:1"]));
        assert_eq!(cache.get::<u32>(&key).await, None);
        assert_eq!(invalidate(&cache, vec![]).await.status, 400);

        let p = flush_pattern(&cache, "bad pattern").await;
        assert_eq!(p.status, 400);
        assert!(p.body["error"].is_string());
        let p = flush_pattern(&cache, "trig:*").await;
        assert_eq!(
            (p.status, p.body["pattern"].clone()),
            (200, json!("trig:*"))
        );

        assert_eq!(reset_stats(&cache).await.body, json!({ "reset": true }));
        assert_eq!(cache.stats().total.hits, 0);
        assert_eq!(health(&cache).await.status, 200);
        assert_eq!(flush_all(&cache).await.status, 200);
    }

    #[tokio::test]
    async fn disabled_cache() {
        let cache = Cache::builder().enabled(false).build().unwrap();
        assert_eq!(health(&cache).await.status, 200);
        assert_eq!(flush_all(&cache).await.status, 503);
        assert_eq!(invalidate(&cache, vec!["t".into()]).await.status, 503);
    }
}
