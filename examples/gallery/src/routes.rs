//! The HTTP API: handlers, extractors, and the router with its cache layers.
//!
//! Two ways of caching are used side by side, chosen per route:
//!
//! * **[`ResponseCacheLayer`]** (whole responses, no code in the handler) for the shared,
//!   parameter-light, most-hit routes `GET /gallery` and `GET /tags`. A hit serves the stored
//!   bytes as they are (no deserialize/serialize of the JSON), and the layer answers
//!   `If-None-Match` with `304 Not Modified` from its strong ETag, which browsers revalidating the
//!   front page send all the time.
//! * **`#[cached]`** with [`CacheContextLayer`] for routes whose key must be computed (canonical
//!   filters), that are per user, or that authorize per request after loading. The context layer
//!   carries the bypass flag into the annotated functions and writes `X-Cache-Status`,
//!   `X-Cache-Key`, `X-Cache-Age`, `X-Cache-TTL` from the outcome of the last `#[cached]` call.
//!
//! The merged view `GET /users/{id}/gallery` reads its fragments with
//! [`Cache::get_many_or_load`](cache_core::Cache::get_many_or_load) and writes its own headers:
//! `X-Cache-Status` (`HIT` when every fragment came from the cache, `MISS` when some were loaded,
//! `BYPASS`, or `SKIP` when the cache is unavailable or off, as on every other route) and `X-Cache-Fragments: total=8, loaded=2`.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use cache_axum::{
    admin_router, metrics_route, AdminGuard, AnalyticsLayer, CacheContextLayer, CacheMetrics,
    ResponseCacheLayer, RoutePolicy,
};
use cache_core::cached;
use cache_core::http::HttpRules;

use crate::app::App;
use crate::db;
use crate::model::{
    ApiError, ContentFilter, ContentItem, ContentQuery, GenerationType, NewContent, Page,
    PageParams, Source, TagCount, TagUpdate, GENERATION_TYPES,
};

/// The request header naming the caller (a stand-in for real authentication: a verified
/// session or token would set it).
pub const USER_HEADER: &str = "x-user-id";

fn header_user(parts: &Parts) -> Option<i64> {
    parts
        .headers
        .get(USER_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The caller, from `X-User-Id`; 401 without it.
#[derive(Debug, Clone, Copy)]
pub struct Viewer(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Viewer, ApiError> {
        header_user(parts).map(Viewer).ok_or(ApiError::Unauthorized)
    }
}

/// The owner of `/users/{id}/...`: the path's user, who must be the caller (401 without
/// `X-User-Id`, 403 for anyone else).
///
/// Authorization is an **extractor** on purpose: extractors run before the handler, so before
/// the `#[cached]` lookup inside it. A check written in the handler body would be skipped on
/// every hit.
#[derive(Debug, Clone, Copy)]
pub struct Owner(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Owner {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Owner, Response> {
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match header_user(parts) {
            None => Err(ApiError::Unauthorized.into_response()),
            Some(v) if v != id => Err(ApiError::Forbidden.into_response()),
            Some(_) => Ok(Owner(id)),
        }
    }
}

// ------------------------------------------------------------------------------ reads

/// `GET /generation-types`: the 4 generation types.
///
/// `#[cached]` directly on an axum **handler**: `State(app)` is a handle, so not in the key, and
/// there are no other arguments, so the key is just `generation_types`. `Json<T>` is cached as
/// `T` and re-wrapped on a hit; `Err` is never cached. The data only changes with a deploy, so
/// 24 hours; the tag `types:list` lets an operator refresh it from the admin API
/// (`POST /admin/cache/invalidate {"tags":["types:list"]}`).
#[cached(
    resource = "generation_types",
    ttl = "24h",
    tags = ["types:list"],
    cache = app.cache_for("generation_types")
)]
pub async fn generation_types(
    State(app): State<App>,
) -> Result<Json<Vec<GenerationType>>, ApiError> {
    Ok(Json(app.db.read(db::generation_types).await?))
}

/// `GET /tags`: the 200 most used tags with counts. Cached by the [`ResponseCacheLayer`] (see
/// [`router`]) with tag `tags:list`, which every write invalidates (counts change).
pub async fn tags(State(app): State<App>) -> Result<Json<Vec<TagCount>>, ApiError> {
    Ok(Json(app.db.read(|c| db::tag_counts(c, 200)).await?))
}

/// `GET /gallery?page=&limit=&type=`: the community gallery, engaged public items ranked by a
/// time-decayed popularity. Cached by the [`ResponseCacheLayer`] (key: route + sorted query) with
/// tag `gallery`.
pub async fn gallery(
    State(app): State<App>,
    Query(q): Query<GalleryQuery>,
) -> Result<Json<Page<ContentItem>>, ApiError> {
    let p = PageParams {
        page: q.page.unwrap_or(1),
        limit: q.limit.unwrap_or(24),
    }
    .clamped();
    let gt = match q.generation_type.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => Some(
            GENERATION_TYPES
                .iter()
                .find(|(n, _)| *n == t)
                .map(|(n, _)| *n)
                .ok_or_else(|| ApiError::BadRequest(format!("type={t:?}: unknown")))?,
        ),
    };
    Ok(Json(
        app.db
            .read(move |c| db::gallery_page(c, gt, p.page, p.limit))
            .await?,
    ))
}

/// The query of `GET /gallery`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct GalleryQuery {
    /// Page from 1.
    pub page: Option<u32>,
    /// Page size.
    pub limit: Option<u32>,
    /// Generation type.
    #[serde(rename = "type")]
    pub generation_type: Option<String>,
}

/// `GET /content?tag=&type=&sort=&user=&source=&page=&limit=`: canonicalizes the query, then
/// calls the cached query [`App::content_page`].
pub async fn content_list(
    State(app): State<App>,
    Query(q): Query<ContentQuery>,
) -> Result<Json<Page<ContentItem>>, ApiError> {
    let filter = ContentFilter::from_query(&q)?;
    let scope = filter.invalidation_tag();
    Ok(Json(app.content_page(filter, scope).await?))
}

/// `GET /content/{id}`: the cached item ([`App::content_item`]), then the per-request check: a
/// private item is only shown to its owner (404 for anyone else).
pub async fn content_item(
    State(app): State<App>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Json<ContentItem>, ApiError> {
    let item = app.content_item(id).await?;
    let viewer = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    if !item.is_public && viewer != Some(item.owner_id) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(item))
}

/// `GET /users/{id}/content_items`: the caller's own manual items (public and private).
///
/// `#[cached]` on the handler with **`user = owner.0`**: the key gets a `user=` segment, so two
/// users never share an entry, and the [`Owner`] extractor has already checked that the caller
/// is that user. `Query(page)` is in the key (a hashed parameter); `owner` is skipped from the
/// parameters since it is the user segment. Tag `user:{owner.0}:items`: every write of this user
/// invalidates it. 10 minutes.
#[cached(
    resource = "user_content_items",
    ttl = "10m",
    user = owner.0,
    skip = [owner],
    tags = ["user:{owner.0}:items"],
    cache = app.cache_for("user_content_items")
)]
pub async fn user_content_items(
    State(app): State<App>,
    owner: Owner,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<ContentItem>>, ApiError> {
    let p = page.clamped();
    let id = owner.0;
    Ok(Json(
        app.db
            .read(move |c| db::user_items(c, id, Source::Manual, p.page, p.limit))
            .await?,
    ))
}

/// `GET /users/{id}/content_items_auto`: the caller's own auto-generated items; cached like
/// [`user_content_items`] under its own resource.
#[cached(
    resource = "user_content_items_auto",
    ttl = "10m",
    user = owner.0,
    skip = [owner],
    tags = ["user:{owner.0}:items"],
    cache = app.cache_for("user_content_items_auto")
)]
pub async fn user_content_items_auto(
    State(app): State<App>,
    owner: Owner,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<ContentItem>>, ApiError> {
    let p = page.clamped();
    let id = owner.0;
    Ok(Json(
        app.db
            .read(move |c| db::user_items(c, id, Source::Auto, p.page, p.limit))
            .await?,
    ))
}

/// The query of `GET /users/{id}/gallery`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FeedQuery {
    /// Only this generation type (2 fragments instead of 8).
    #[serde(rename = "type")]
    pub generation_type: Option<String>,
}

/// `GET /users/{id}/gallery?type=`: the merged view ([`App::user_gallery`]), own items and
/// community items per generation type, from separately cached fragments.
pub async fn user_gallery(
    State(app): State<App>,
    owner: Owner,
    Query(q): Query<FeedQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let types: Vec<&'static str> = match q.generation_type.as_deref().filter(|s| !s.is_empty()) {
        None => App::all_types(),
        Some(t) => vec![GENERATION_TYPES
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(n, _)| *n)
            .ok_or_else(|| ApiError::BadRequest(format!("type={t:?}: unknown")))?],
    };
    // The same bypass rules as the layers: `?cache_bypass=1` or `Cache-Control: no-cache`.
    let bypass = HttpRules::default().wants_bypass(uri.query(), &headers);
    let (body, report) = app.user_gallery(owner.0, &types, bypass).await?;
    let status = if !app.caches("user_gallery") || report.skipped {
        "SKIP"
    } else if report.bypassed {
        "BYPASS"
    } else if report.loaded == 0 {
        "HIT"
    } else {
        "MISS"
    };
    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    // The user's own items (private ones included): never for a shared cache.
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("private"),
    );
    h.insert("x-cache-status", HeaderValue::from_static(status));
    if let Ok(v) =
        HeaderValue::from_str(&format!("total={}, loaded={}", report.total, report.loaded))
    {
        h.insert("x-cache-fragments", v);
    }
    Ok(resp)
}

// ------------------------------------------------------------------------------ writes

/// `POST /content` (caller from `X-User-Id`): 201 with the item. See [`App::create_content`] for
/// the tags it invalidates.
pub async fn create_content(
    State(app): State<App>,
    viewer: Viewer,
    Json(input): Json<NewContent>,
) -> Result<(StatusCode, Json<ContentItem>), ApiError> {
    let outcome = app.create_content(viewer.0, input).await?;
    let item = outcome
        .item
        .ok_or_else(|| ApiError::Internal("created item missing".into()))?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// `PUT /content/{id}/tags` (owner only): 200 with the item. See [`App::update_tags`].
pub async fn update_tags(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<TagUpdate>,
) -> Result<Json<ContentItem>, ApiError> {
    let outcome = app.update_tags(viewer.0, id, body.tags).await?;
    outcome
        .item
        .map(Json)
        .ok_or_else(|| ApiError::Internal("updated item missing".into()))
}

/// `DELETE /content/{id}` (owner only): 204. See [`App::delete_content`].
pub async fn delete_content(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    app.delete_content(viewer.0, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /`: what this service is, and URLs to try.
pub async fn index(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let (max_item_id, users) = app
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT IFNULL(MAX(id), 0) FROM content_items), (SELECT COUNT(*) FROM users)",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )?)
        })
        .await?;
    Ok(Json(serde_json::json!({
        "max_item_id": max_item_id,
        "users": users,
        "service": "gallery",
        "cache_backend": app.cache.backend_kind(),
        "cache_enabled": app.cache.is_enabled(),
        "database": app.db.path().display().to_string(),
        "try": [
            "GET /gallery", "GET /gallery?page=2", "GET /tags", "GET /generation-types",
            "GET /content?tag=cat&sort=popular", "GET /content?type=image&page=2",
            "GET /content/1",
            "GET /users/1/content_items (X-User-Id: 1)",
            "GET /users/1/content_items_auto (X-User-Id: 1)",
            "GET /users/1/gallery (X-User-Id: 1)",
            "POST /content (X-User-Id)", "PUT /content/{id}/tags", "DELETE /content/{id}",
            "GET /admin/cache/stats (Authorization: Bearer $ADMIN_TOKEN)", "GET /metrics",
        ],
    })))
}

// ------------------------------------------------------------------------------ router

/// The full application: routes, cache layers, admin API and metrics.
///
/// Layer order (outermost last): the [`ResponseCacheLayer`] caches whole responses of the routes
/// it names and passes every other request through untouched; the [`CacheContextLayer`] wraps
/// every route, giving `#[cached]` handlers their bypass flag and user and turning their outcome
/// into headers (it adds nothing to responses of routes without a `#[cached]` call).
pub fn router(app: App, admin_token: &str) -> Router {
    let cache = app.cache.clone();
    let metrics = CacheMetrics::new(cache.clone());
    let mut response_cache = ResponseCacheLayer::builder(cache.clone());
    if app.caches("gallery") {
        // The community front page: the most-hit route. 5 minutes; `gallery` is invalidated by
        // writes to engaged items (the only ones it ranks). The key includes the sorted query
        // (`page`, `limit`, `type`), without `cache_bypass`.
        response_cache = response_cache.route(
            "/gallery",
            RoutePolicy::ttl(Duration::from_secs(300))
                .resource("gallery")
                .tag("gallery"),
        );
    }
    if app.caches("tags") {
        // Tag counts: every write invalidates `tags:list`; 10 minutes otherwise.
        response_cache = response_cache.route(
            "/tags",
            RoutePolicy::ttl(Duration::from_secs(600))
                .resource("tags")
                .tag("tags:list"),
        );
    }
    let response_cache = response_cache.metrics(metrics.clone()).build();
    let context = CacheContextLayer::builder()
        // Per-user responses get `Cache-Control: private` on hits.
        .user(|parts| header_user(parts).map(|u| u.to_string()))
        // Anyone may bypass in this example; in production restrict it (e.g. to staff), so the
        // public cannot force refills.
        .bypass_allowed(|_| true)
        .metrics(metrics.clone())
        .build();
    Router::new()
        .route("/", get(index))
        .route("/generation-types", get(generation_types))
        .route("/tags", get(tags))
        .route("/gallery", get(gallery))
        .route("/content", get(content_list).post(create_content))
        .route("/content/{id}", get(content_item).delete(delete_content))
        .route("/content/{id}/tags", put(update_tags))
        .route("/users/{id}/content_items", get(user_content_items))
        .route(
            "/users/{id}/content_items_auto",
            get(user_content_items_auto),
        )
        .route("/users/{id}/gallery", get(user_gallery))
        .with_state(app)
        .layer(response_cache)
        .layer(context)
        // Route analytics of the application's routes (not of the admin API or the metrics),
        // cached or not: `GET /admin/cache/analytics`, `timeline` and the `dashboard` page.
        .layer(AnalyticsLayer::new(&cache).user(|parts| header_user(parts).map(|u| u.to_string())))
        .nest(
            "/admin/cache",
            admin_router(cache, AdminGuard::bearer(admin_token)),
        )
        .merge(metrics_route("/metrics", metrics))
}
