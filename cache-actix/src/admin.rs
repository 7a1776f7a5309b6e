//! The operator API: [`admin_scope`] and its [`AdminGuard`].

use std::fmt;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use cache_core::admin::{self, AdminReply, GuardOutcome};
use cache_core::Cache;
use serde::Deserialize;

type CheckFn = Arc<dyn Fn(&HttpRequest) -> GuardOutcome + Send + Sync>;

/// Who may call the admin API. Refused requests get 401 (no credentials, with
/// `WWW-Authenticate: Bearer`) or 403 (wrong credentials) and a JSON `{ "error": ... }` body.
/// The same constructors as `cache_axum::AdminGuard`.
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
        AdminGuard::custom(move |req| {
            admin::check_bearer(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(header::HeaderValue::as_bytes),
                &token,
            )
        })
    }

    /// Allows the requests for which `allowed` returns `true`; the others get 403.
    pub fn predicate(allowed: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static) -> AdminGuard {
        AdminGuard::custom(move |req| GuardOutcome::from(allowed(req)))
    }

    /// Full control: [`GuardOutcome::Missing`] answers 401, [`GuardOutcome::Wrong`] (and any other outcome) 403.
    pub fn custom(
        check: impl Fn(&HttpRequest) -> GuardOutcome + Send + Sync + 'static,
    ) -> AdminGuard {
        AdminGuard {
            check: Arc::new(check),
        }
    }

    /// Allows everyone (for scopes already behind authentication, or tests).
    pub fn allow_all() -> AdminGuard {
        AdminGuard::custom(|_| GuardOutcome::Allowed)
    }

    /// Whether this guard lets the request through. With it, one line gives cache bypass to the
    /// admin API's callers only:
    /// `CacheContextLayer::builder().bypass_allowed(move |req| admin.allows(req))`.
    pub fn allows(&self, req: &HttpRequest) -> bool {
        (self.check)(req) == GuardOutcome::Allowed
    }

    /// `None` when allowed, else the refusal to send.
    fn refuse(&self, req: &HttpRequest) -> Option<HttpResponse> {
        match (self.check)(req) {
            GuardOutcome::Allowed => None,
            GuardOutcome::Missing => Some(
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .json(serde_json::json!({ "error": "authorization required" })),
            ),
            // Wrong credentials (and any outcome added later): deny.
            _ => Some(HttpResponse::Forbidden().json(serde_json::json!({ "error": "forbidden" }))),
        }
    }
}

#[derive(Clone)]
struct Admin {
    cache: Cache,
    guard: AdminGuard,
}

/// The operator API over `cache` as an Actix [`Scope`] mounted at `path`: the same routes, JSON
/// and guard as `cache_axum::admin_router`.
///
/// | route (under `path`) | operation | reply |
/// | --- | --- | --- |
/// | `GET /stats` | server and engine statistics | 200 JSON |
/// | `DELETE` (the scope itself, or `/`) | delete every entry of the namespace | `{ "deleted": n }` |
/// | `DELETE ?pattern=trig:*` | delete entries matching a glob relative to the keyspace prefix | `{ "deleted": n, "pattern": p }`, 400 if invalid |
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
/// behind `guard`; a refused request never reads its body. The JSON shapes are those of
/// [`cache_core::admin`].
///
/// The dashboard page holds no data and is the same for every request (a browser navigation
/// cannot send a bearer header): everything it shows or does goes through the guarded routes
/// above with the token typed into the page. See [`cache_core::admin`], "The dashboard".
///
/// ```
/// use actix_web::App;
/// use cache_actix::{admin_scope, AdminGuard};
/// use cache_core::Cache;
///
/// let cache = Cache::memory();
/// let app = App::new().service(admin_scope("/admin/cache", cache, AdminGuard::bearer("s3cret")));
/// ```
pub fn admin_scope(path: &str, cache: Cache, guard: AdminGuard) -> Scope {
    let scope = web::scope(path)
        .app_data(web::Data::new(Admin { cache, guard }))
        .route("", web::delete().to(flush))
        .route("/", web::delete().to(flush))
        .route("/stats", web::get().to(stats))
        .route("/invalidate", web::post().to(invalidate))
        .route("/reset-stats", web::post().to(reset_stats))
        .route("/warm/{name}", web::post().to(warm))
        .route("/health", web::get().to(health));
    #[cfg(feature = "analytics")]
    let scope = scope
        .route("/analytics", web::get().to(analytics))
        .route("/advisor", web::get().to(advisor));
    #[cfg(feature = "analytics")]
    let scope = scope.route("/timeline", web::get().to(timeline));
    // No guard: the page holds no data (see above).
    scope.route("/dashboard", web::get().to(dashboard))
}

async fn dashboard() -> HttpResponse {
    let page = admin::dashboard();
    let mut resp = HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK));
    for (name, value) in &page.headers {
        resp.insert_header((*name, value.as_str()));
    }
    resp.body(page.body.as_str())
}

fn reply(r: AdminReply) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(r.body)
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": message }))
}

#[derive(Deserialize)]
struct FlushQuery {
    pattern: Option<String>,
}

#[derive(Deserialize)]
struct InvalidateBody {
    tags: Vec<String>,
}

async fn flush(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    match web::Query::<FlushQuery>::from_query(req.query_string()) {
        Ok(q) => match &q.pattern {
            Some(pattern) => reply(admin::flush_pattern(&admin.cache, pattern).await),
            None => reply(admin::flush_all(&admin.cache).await),
        },
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn stats(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    reply(admin::stats(&admin.cache).await)
}

/// Largest `POST /invalidate` body read.
const MAX_BODY: usize = 64 * 1024;

async fn invalidate(admin: web::Data<Admin>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    let body = match body.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return bad_request(&format!("could not read the body: {e}")),
        Err(_) => return bad_request("body larger than 64 KiB"),
    };
    match serde_json::from_slice::<InvalidateBody>(&body) {
        Ok(body) => reply(admin::invalidate(&admin.cache, body.tags).await),
        Err(e) => bad_request(&format!("invalid JSON body: {e}")),
    }
}

async fn reset_stats(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    reply(admin::reset_stats(&admin.cache).await)
}

async fn warm(admin: web::Data<Admin>, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    reply(admin::warm(&admin.cache, &name).await)
}

#[cfg(feature = "analytics")]
#[derive(Deserialize)]
struct AnalyticsQuery {
    window: Option<String>,
}

#[cfg(feature = "analytics")]
async fn analytics(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    match web::Query::<AnalyticsQuery>::from_query(req.query_string()) {
        Ok(q) => reply(admin::analytics(&admin.cache, q.window.as_deref()).await),
        Err(e) => bad_request(&e.to_string()),
    }
}

#[cfg(feature = "analytics")]
async fn advisor(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    match web::Query::<AnalyticsQuery>::from_query(req.query_string()) {
        Ok(q) => reply(admin::advisor(&admin.cache, q.window.as_deref()).await),
        Err(e) => bad_request(&e.to_string()),
    }
}

#[cfg(feature = "analytics")]
#[derive(Deserialize)]
struct TimelineQuery {
    window: Option<String>,
    route: Option<String>,
}

#[cfg(feature = "analytics")]
async fn timeline(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    match web::Query::<TimelineQuery>::from_query(req.query_string()) {
        Ok(q) => {
            reply(admin::timeline(&admin.cache, q.window.as_deref(), q.route.as_deref()).await)
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn health(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = admin.guard.refuse(&req) {
        return refused;
    }
    reply(admin::health(&admin.cache).await)
}
