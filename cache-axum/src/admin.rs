//! The operator API: [`admin_router`] and its [`AdminGuard`].

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_core::admin::{self, AdminReply, GuardOutcome};
use cache_core::Cache;
use http::request::Parts;
use http::{header, HeaderValue, Request, StatusCode};
use serde::Deserialize;

type CheckFn = Arc<dyn Fn(&Parts) -> GuardOutcome + Send + Sync>;

/// Who may call the admin API. Refused requests get 401 (no credentials, with
/// `WWW-Authenticate: Bearer`) or 403 (wrong credentials) and a JSON `{ "error": ... }` body.
#[derive(Clone)]
pub struct AdminGuard {
    check: CheckFn,
}

impl fmt::Debug for AdminGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminGuard").finish_non_exhaustive()
    }
}

impl AdminGuard {
    /// Requires `Authorization: Bearer {token}`, compared in constant time: without the header
    /// 401, with another token 403. An empty token allows nobody.
    pub fn bearer(token: impl Into<String>) -> AdminGuard {
        let token: String = token.into();
        AdminGuard::custom(move |parts| {
            admin::check_bearer(
                parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes),
                &token,
            )
        })
    }

    /// Allows the requests for which `allowed` returns `true`; the others get 403.
    pub fn predicate(allowed: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> AdminGuard {
        AdminGuard::custom(move |parts| GuardOutcome::from(allowed(parts)))
    }

    /// Full control: [`GuardOutcome::Missing`] answers 401, [`GuardOutcome::Wrong`] (and any other outcome) 403.
    pub fn custom(check: impl Fn(&Parts) -> GuardOutcome + Send + Sync + 'static) -> AdminGuard {
        AdminGuard {
            check: Arc::new(check),
        }
    }

    /// Allows everyone (for routers already behind authentication, or tests).
    pub fn allow_all() -> AdminGuard {
        AdminGuard::custom(|_| GuardOutcome::Allowed)
    }

    /// Whether this guard lets the request through. With it, one line gives cache bypass to the
    /// admin API's callers only:
    /// `CacheContextLayer::builder().bypass_allowed(move |parts| admin.allows(parts))`.
    pub fn allows(&self, parts: &Parts) -> bool {
        (self.check)(parts) == GuardOutcome::Allowed
    }
}

/// The operator API over `cache`, to be nested by the application:
///
/// | route | operation | reply |
/// | --- | --- | --- |
/// | `GET /stats` | server and engine statistics | 200 JSON |
/// | `DELETE /` | delete every entry of the namespace | `{ "deleted": n }` |
/// | `DELETE /?pattern=trig:*` | delete entries matching a glob relative to the keyspace prefix | `{ "deleted": n, "pattern": p }`, 400 if invalid |
/// | `POST /invalidate` | JSON `{ "tags": ["trig:1"] }` | `{ "invalidated": n, "tags": [...] }`, 400 if empty |
/// | `POST /reset-stats` | zero the counters | `{ "reset": true }` |
/// | `POST /warm/{name}` | run the warmer `name` now and wait for it | its report (`cache_core::warm::WarmReport`), 404 if unknown, 409 if running |
/// | `GET /health` | ping the backend | 200, or 503 when down |
/// | `GET /analytics?window=5m\|1h\|1d` | route analytics (feature `analytics`) | 200 JSON, 400 for another window |
/// | `GET /advisor?window=5m\|1h\|1d` | the advisor's ranking (feature `analytics`) | 200 JSON `{window, suggestions, observations}`, 400 for another window |
/// | `GET /timeline?window=5m\|1h\|1d[&route=GET%20/x/{id}]` | per-route time series for charts (feature `analytics`) | 200 JSON, 400 for another window |
/// | `GET /dashboard` | the dashboard page (HTML, no data; **not behind the guard**) | 200 HTML |
///
/// Backend failures answer 503 with `{ "error": ... }`. Every route but `GET /dashboard` is
/// behind `guard`. The JSON shapes are those of [`cache_core::admin`].
///
/// The dashboard page holds no data and is the same for every request (a browser navigation
/// cannot send a bearer header): everything it shows or does goes through the guarded routes
/// above with the token typed into the page. See [`cache_core::admin`], "The dashboard".
///
/// Nested under `/admin/cache`, the flush route is `DELETE /admin/cache` (axum 0.8 does not match
/// `/admin/cache/` for a nested `/` route).
///
/// ```
/// use axum::Router;
/// use cache_axum::{admin_router, AdminGuard};
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let app: Router = Router::new().nest("/admin/cache", admin_router(cache, AdminGuard::bearer("s3cret")));
/// ```
pub fn admin_router(cache: Cache, guard: AdminGuard) -> Router {
    let router = Router::new()
        .route("/", axum::routing::delete(flush))
        .route("/stats", get(stats))
        .route("/invalidate", post(invalidate))
        .route("/reset-stats", post(reset_stats))
        .route("/warm/{name}", post(warm))
        .route("/health", get(health));
    #[cfg(feature = "analytics")]
    let router = router
        .route("/analytics", get(analytics))
        .route("/advisor", get(advisor));
    #[cfg(feature = "analytics")]
    let router = router.route("/timeline", get(timeline));
    router
        .route_layer(middleware::from_fn_with_state(guard, check_guard))
        // Added after the guard's `route_layer`, so not behind it: the page holds no data.
        .route("/dashboard", get(dashboard))
        .with_state(cache)
}

async fn dashboard() -> Response {
    let page = admin::dashboard();
    let mut resp = Response::new(Body::from(page.body.as_str()));
    *resp.status_mut() = StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK);
    for (name, value) in &page.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            resp.headers_mut()
                .insert(header::HeaderName::from_static(name), value);
        }
    }
    resp
}

async fn check_guard(State(guard): State<AdminGuard>, req: Request<Body>, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match (guard.check)(&parts) {
        GuardOutcome::Allowed => next.run(Request::from_parts(parts, body)).await,
        GuardOutcome::Missing => {
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({ "error": "authorization required" })),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        // Wrong credentials (and any outcome added later): deny.
        _ => (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": "forbidden" })),
        )
            .into_response(),
    }
}

fn reply(r: AdminReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body)).into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct FlushQuery {
    pattern: Option<String>,
}

#[derive(Deserialize)]
struct InvalidateBody {
    tags: Vec<String>,
}

async fn flush(
    State(cache): State<Cache>,
    query: Result<Query<FlushQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(FlushQuery {
            pattern: Some(pattern),
        })) => reply(admin::flush_pattern(&cache, &pattern).await),
        Ok(Query(FlushQuery { pattern: None })) => reply(admin::flush_all(&cache).await),
        Err(e) => bad_request(&e.body_text()),
    }
}

async fn stats(State(cache): State<Cache>) -> Response {
    reply(admin::stats(&cache).await)
}

async fn invalidate(
    State(cache): State<Cache>,
    body: Result<Json<InvalidateBody>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(body)) => reply(admin::invalidate(&cache, body.tags).await),
        Err(e) => bad_request(&e.body_text()),
    }
}

async fn reset_stats(State(cache): State<Cache>) -> Response {
    reply(admin::reset_stats(&cache).await)
}

async fn warm(State(cache): State<Cache>, Path(name): Path<String>) -> Response {
    reply(admin::warm(&cache, &name).await)
}

#[cfg(feature = "analytics")]
#[derive(Deserialize)]
struct AnalyticsQuery {
    window: Option<String>,
}

#[cfg(feature = "analytics")]
async fn analytics(
    State(cache): State<Cache>,
    query: Result<Query<AnalyticsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => reply(admin::analytics(&cache, q.window.as_deref()).await),
        Err(e) => bad_request(&e.body_text()),
    }
}

#[cfg(feature = "analytics")]
async fn advisor(
    State(cache): State<Cache>,
    query: Result<Query<AnalyticsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => reply(admin::advisor(&cache, q.window.as_deref()).await),
        Err(e) => bad_request(&e.body_text()),
    }
}

#[cfg(feature = "analytics")]
#[derive(Deserialize)]
struct TimelineQuery {
    window: Option<String>,
    route: Option<String>,
}

#[cfg(feature = "analytics")]
async fn timeline(
    State(cache): State<Cache>,
    query: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => {
            reply(admin::timeline(&cache, q.window.as_deref(), q.route.as_deref()).await)
        }
        Err(e) => bad_request(&e.body_text()),
    }
}

async fn health(State(cache): State<Cache>) -> Response {
    reply(admin::health(&cache).await)
}
