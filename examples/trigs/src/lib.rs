//! A trigpointing API (trig points, users, logs of visits, photos) on Actix-web and SQLite,
//! cached in Redis **by annotation**: the caching guide of the TrigpointingUK API rebuilt with
//! `cache-core`'s `#[cached]` / `#[invalidates]` and `cache-actix`'s middleware.
//!
//! Run it with `cargo run -p trigs` (see `src/main.rs` and the README). The pieces:
//!
//! * [`handlers`]: every read is `#[cached(resource, ttl, tags)]`, every write
//!   `#[invalidates(tags)]`; the doc comment of each says why its options are what they are.
//! * [`db`]: SQLite (bundled), seeded deterministically on first start, reached through a
//!   small connection pool on the blocking thread pool.
//! * [`render`]: the PNG images (a trig's map, a user's map, a user's badge), drawn with
//!   `tiny-skia` and `embedded-graphics`' bitmap fonts, deterministic.
//! * [`configure`]: the routes, the admin API (`/admin/cache`) and the metrics (`/metrics`);
//!   `main` wraps them in [`cache_actix::CacheContextLayer`], which turns on bypass
//!   (`?cache_bypass=1`, `Cache-Control: no-cache`) and the `X-Cache-*` headers.
//!
//! # Reads → tags
//!
//! TTLs are those of the guide. Each list page is its own entry (the query is part of the key);
//! one tag invalidates all pages. The images are whole responses (`Content-Type: image/png`,
//! rendered by [`render`]): stored with a strong `ETag`, answered `304 Not Modified` on a
//! matching `If-None-Match`.
//!
//! | endpoint | resource | TTL | tags |
//! | --- | --- | --- | --- |
//! | `GET /v1/stats/site` | `stats.site` | 1 h | `stats:site` |
//! | `GET /v1/trigs/{id}` | `trig` | 24 h | `trig:{id}` |
//! | `GET /v1/trigs` | `trigs.list` | 12 h | `trigs:list` |
//! | `GET /v1/trigs/{id}/logs` | `trig.logs` | 2 h | `trig:{id}:logs` |
//! | `GET /v1/trigs/{id}/photos` | `trig.photos` | 2 h | `trig:{id}:photos` |
//! | `GET /v1/trigs/{id}/map` (PNG) | `trig.map` | 4 h | `trig:{id}:map` |
//! | `GET /v1/users/{id}` | `user` | 6 h | `user:{id}` |
//! | `GET /v1/users/{id}/badge` (PNG) | `user.badge` | 5 min | `user:{id}:badge` |
//! | `GET /v1/users/{id}/logs` | `user.logs` | 2 h | `user:{id}:logs` |
//! | `GET /v1/users/{id}/photos` | `user.photos` | 2 h | `user:{id}:photos` |
//! | `GET /v1/users/{id}/map` (PNG) | `user.map` | 4 h | `user:{id}:map` |
//! | `GET /v1/users` | `users.list` | 12 h | `users:list` |
//! | `GET /v1/logs` | `logs.list` | 1 h | `logs:list` |
//! | `GET /v1/logs/{id}` | `log` | 6 h | `log:{id}` |
//! | `GET /v1/photos` | `photos.list` | 1 h | `photos:list` |
//! | `GET /v1/photos/{id}` | `photo` | 12 h | `photo:{id}` |
//!
//! A trig's map shows every trig within [`render::NEIGHBOUR_RADIUS_KM`] (25 km) of it, marked
//! logged (coloured by the condition of its latest log) or never logged, and the trig's log
//! count; a user's map, the trigs they logged; the badge, the user's log, trig and photo
//! counts.
//!
//! # Writes → tags
//!
//! The guide's invalidation patterns (`trig:{id}:*` and so on) become the exact tags of the
//! entries whose data the write changes. `{result.x}` is a field of the written row. "maps
//! around `t`" is `trig:{n}:map` for every trig `n` within the radius of trig `t`, `t`
//! included ([`db::maps_showing`]): the maps that draw `t`, since "within the radius" is
//! symmetric. That list, and the deleted photos' `photo:{p}`, are known only once the write ran:
//! the handler invalidates them with [`cache_core::Cache::invalidate_tags`] after its
//! transaction, as the macro does for the tags it can spell.
//!
//! | endpoint | invalidates |
//! | --- | --- |
//! | `POST /v1/trigs/{trig_id}/logs` | `stats:site`, `trigs:list`, `logs:list`, `trig:{trig_id}`, `trig:{trig_id}:logs`, `user:{result.user_id}`, `user:{result.user_id}:logs`, `user:{result.user_id}:badge`, `user:{result.user_id}:map`, maps around `trig_id` |
//! | `PATCH /v1/logs/{id}` | `logs:list`, `log:{id}`, `trig:{result.trig_id}:logs`, `user:{result.user_id}:logs`, `user:{result.user_id}:map`, maps around `result.trig_id` |
//! | `DELETE /v1/logs/{id}` | `stats:site`, `trigs:list`, `logs:list`, `photos:list`, `log:{id}`, `trig:{result.trig_id}`, `trig:{result.trig_id}:logs`, `trig:{result.trig_id}:photos`, `user:{result.user_id}`, `user:{result.user_id}:logs`, `user:{result.user_id}:photos`, `user:{result.user_id}:badge`, `user:{result.user_id}:map`, maps around `result.trig_id`, and `photo:{p}` for each deleted photo |
//! | `POST /v1/logs/{log_id}/photos` | `stats:site`, `photos:list`, `log:{log_id}`, `trig:{result.trig_id}`, `trig:{result.trig_id}:photos`, `user:{result.user_id}`, `user:{result.user_id}:photos`, `user:{result.user_id}:badge` |
//! | `PATCH /v1/photos/{id}` | `photos:list`, `photo:{id}`, `log:{result.log_id}`, `trig:{result.trig_id}:photos`, `user:{result.user_id}:photos` |
//! | `DELETE /v1/photos/{id}` | `stats:site`, `photos:list`, `photo:{id}`, `log:{result.log_id}`, `trig:{result.trig_id}`, `trig:{result.trig_id}:photos`, `user:{result.user_id}`, `user:{result.user_id}:photos`, `user:{result.user_id}:badge` |
//! | `POST /v1/users` | `stats:site`, `users:list` |
//!
//! Where this is narrower than the guide's patterns, it is because the write cannot change the
//! entry: an edit (`PATCH`) changes no count, so it leaves the site stats, the trig, the user,
//! the trig list and the badge cached; maps do not show photos. The e2e test checks each write
//! against these rows: the entries listed are fresh (MISS, with the new data) and the others
//! stay HIT.
//!
//! Invalidation happens after the write's transaction and before its reply, so the writer's
//! next read is fresh. A read that loaded the old rows before the write and finishes after the
//! invalidation is not stored (the library counts it under `rejected_fills`), so no stale
//! entry survives the race. A failed write (`Err`: 400, 404, 409) invalidates nothing. When Redis is down, reads answer
//! from SQLite (`X-Cache-Status: SKIP`) and writes still succeed.
//!
//! # Inputs
//!
//! Lists take `?page=` (1 to 100,000, default 1) and `?per_page=` (1 to 100, default 20); a
//! value out of range, empty, negative or not a number is a 400 naming it
//! (`{"error": "page=\"4294967295\": expected a whole number from 1 to 100000"}`). A path id
//! that is not an `i64` is a 400 (`{"error": "invalid path: ..."}`), an unknown one a 404; a
//! query or JSON body the extractors refuse is a 4xx with a JSON `error` (a `PATCH` body with an
//! unknown field, or none of the fields it takes, is a 400). No input answers 5xx.
//!
//! # Environment
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ADDR` | listen address (port `0`: any free port) | `127.0.0.1:3002` |
//! | `TRIGS_DB` | SQLite file, created and seeded on first start | `$TMPDIR/trigs-example.sqlite3` |
//! | `TRIGS_SEED_TRIGS`, `TRIGS_SEED_USERS`, `TRIGS_SEED_LOGS` | seed volume | 6000, 400, 40000 |
//! | `ADMIN_TOKEN` | bearer token of `/admin/cache` | `dev-admin-token` |
//! | `REDIS_URL` | Redis; unset: the in-memory backend | unset |
//! | `CACHE_ENABLED` | `false`: no caching at all | `true` |
//! | `CACHE_NAMESPACE` | first key segment | `trigs` |
//! | `LOG_FORMAT` | `json`: one JSON object per log line (`{"event":"cache_hit","key":...}`); else text | text |
//! | `RUST_LOG` | log filter; `info,cache_core=debug` adds every hit and miss | `info,cache_core=info` |

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::error::{InternalError, JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use cache_actix::{admin_scope, metrics_route, AdminGuard, CacheMetrics};
use cache_core::{Cache, CacheBuilder};

pub mod db;
pub mod error;
pub mod handlers;
pub mod model;
pub mod render;

pub use crate::db::{Db, SeedSize};
use crate::error::ApiError;

/// What the handlers share (as `web::Data<App>`): the cache their annotations use and the
/// database.
#[derive(Debug, Clone)]
pub struct App {
    /// The cache, named by every annotation as `cache = &app.cache`.
    pub cache: Cache,
    /// The database.
    pub db: Arc<Db>,
}

/// The service's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub addr: String,
    /// SQLite file.
    pub db_path: PathBuf,
    /// Seed volume of a new database.
    pub seed: SeedSize,
    /// Bearer token of the admin API.
    pub admin_token: String,
}

impl Settings {
    /// Reads `ADDR`, `TRIGS_DB`, `TRIGS_SEED_*` and `ADMIN_TOKEN` (see the crate docs).
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Settings {
            addr: var("ADDR").unwrap_or_else(|| "127.0.0.1:3002".into()),
            db_path: var("TRIGS_DB")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("trigs-example.sqlite3")),
            seed: SeedSize::from_env(),
            admin_token: var("ADMIN_TOKEN").unwrap_or_else(|| "dev-admin-token".into()),
        }
    }
}

/// The cache from the environment (`REDIS_URL`, `CACHE_ENABLED`, ...; see
/// [`CacheBuilder::from_env`]), with namespace `trigs` unless `CACHE_NAMESPACE` says otherwise.
///
/// # Errors
/// A variable with an invalid value, or a cache that cannot be built.
pub fn cache_from_env() -> Result<Cache, Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = CacheBuilder::from_env()?;
    if std::env::var_os("CACHE_NAMESPACE").is_none() {
        builder = builder.namespace("trigs");
    }
    Ok(builder.build()?)
}

/// Registers the API, the admin API (`/admin/cache`, behind `Authorization: Bearer
/// {admin_token}`) and the Prometheus metrics (`/metrics`) on an Actix `App`:
///
/// ```no_run
/// # fn demo(app: trigs::App, metrics: cache_actix::CacheMetrics) {
/// use cache_actix::CacheContextLayer;
/// let context = CacheContextLayer::builder().metrics(metrics.clone()).build();
/// let _ = actix_web::HttpServer::new(move || {
///     actix_web::App::new()
///         .wrap(context.clone())
///         .configure(|cfg| trigs::configure(cfg, &app, &metrics, "dev-admin-token"))
/// });
/// # }
/// ```
pub fn configure(
    cfg: &mut web::ServiceConfig,
    app: &App,
    metrics: &CacheMetrics,
    admin_token: &str,
) {
    use crate::handlers as h;
    cfg.app_data(web::Data::new(app.clone()))
        .service(
            web::scope("/v1")
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .app_data(web::JsonConfig::default().error_handler(json_error))
                .route("/stats/site", web::get().to(h::site_stats))
                .route("/trigs", web::get().to(h::list_trigs))
                .route("/trigs/{id}", web::get().to(h::get_trig))
                .route("/trigs/{id}/logs", web::get().to(h::trig_logs))
                .route("/trigs/{id}/logs", web::post().to(h::create_log))
                .route("/trigs/{id}/photos", web::get().to(h::trig_photos))
                .route("/trigs/{id}/map", web::get().to(h::trig_map))
                .route("/users", web::get().to(h::list_users))
                .route("/users", web::post().to(h::create_user))
                .route("/users/{id}", web::get().to(h::get_user))
                .route("/users/{id}/logs", web::get().to(h::user_logs))
                .route("/users/{id}/photos", web::get().to(h::user_photos))
                .route("/users/{id}/badge", web::get().to(h::user_badge))
                .route("/users/{id}/map", web::get().to(h::user_map))
                .route("/logs", web::get().to(h::list_logs))
                .route("/logs/{id}", web::get().to(h::get_log))
                .route("/logs/{id}", web::patch().to(h::update_log))
                .route("/logs/{id}", web::delete().to(h::delete_log))
                .route("/logs/{id}/photos", web::post().to(h::add_photo))
                .route("/photos", web::get().to(h::list_photos))
                .route("/photos/{id}", web::get().to(h::get_photo))
                .route("/photos/{id}", web::patch().to(h::update_photo))
                .route("/photos/{id}", web::delete().to(h::delete_photo)),
        )
        .service(admin_scope(
            "/admin/cache",
            app.cache.clone(),
            AdminGuard::bearer(admin_token),
        ))
        .service(metrics_route("/metrics", metrics.clone()));
}

/// A query string the extractor cannot read (`?page=1&page=2`, a value that is not valid in
/// its field) as the API's own 400, `{"error": "invalid query string: ..."}`, rather than
/// Actix's plain-text one. Values out of range are checked by the handlers
/// ([`model::PageQuery::get`]).
fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let detail = match &err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let body = ApiError::BadRequest(format!("invalid query string: {detail}")).error_response();
    InternalError::from_response(err, body).into()
}

/// A path parameter that does not parse (`/v1/trigs/abc`, an id beyond `i64`) as a 400,
/// `{"error": "invalid path: ..."}`, rather than Actix's plain-text 404.
fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    let detail = match &err {
        PathError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let body = ApiError::BadRequest(format!("invalid path: {detail}")).error_response();
    InternalError::from_response(err, body).into()
}

/// A JSON body the extractor refuses, with Actix's status (400, 413, 415) and the API's JSON
/// error body.
fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let body = HttpResponse::build(err.status_code())
        .json(serde_json::json!({ "error": format!("invalid body: {err}") }));
    InternalError::from_response(err, body).into()
}

/// Today's date, `YYYY-MM-DD` (UTC), for new logs and users.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{day:02}")
}
