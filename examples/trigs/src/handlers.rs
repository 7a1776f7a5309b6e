//! The HTTP handlers: every read carries `#[cached]`, every write `#[invalidates]`.
//!
//! The pattern, once: a read names a `resource` (the key's resource segment and the name its
//! statistics are kept under), a `ttl` (the seed guide's table) and the `tags` of the data it
//! shows; a write names the tags of the data it changes. Tags replace the guide's
//! `trig:{id}:*` pattern deletes: invalidating a tag is one O(1) operation however many
//! entries (pages, query variants) carry it, and it never scans the keyspace.
//!
//! The handlers are ordinary Actix handlers: the macros read the extractors (`web::Path`,
//! `web::Query`, `web::Json`, `web::Data`) as arguments. `web::Data<App>` is a handle, left out
//! of the key; the others are in it. `Err` replies are never cached and invalidate nothing.

use actix_web::body::BoxBody;
use actix_web::{web, HttpRequest, HttpResponse, Responder, ResponseError};
use cache_core::{cached, invalidates};
use serde::Serialize;

use crate::db::{self, LogFilter, PhotoFilter, CONDITIONS};
use crate::error::ApiError;
use crate::model::{
    LogDetail, LogPatch, LogSummary, NewLog, NewPhoto, NewUser, Page, PageQuery, Photo, PhotoPatch,
    SiteStats, Trig, TrigSummary, User, UserSummary,
};
use crate::{render, today, App};

/// A `201 Created` JSON reply. It derefs to the created row, so `#[invalidates]` tag templates
/// can name its fields: `{result.trig_id}`.
#[derive(Debug)]
pub struct Created<T>(pub T);

impl<T> std::ops::Deref for Created<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize> Responder for Created<T> {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        HttpResponse::Created().json(&self.0)
    }
}

/// A `200` with PNG bytes, the whole response a `#[cached]` image handler returns (stored
/// with its `Content-Type`; the library adds a strong `ETag` and answers `If-None-Match`).
fn png(bytes: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok().content_type("image/png").body(bytes)
}

/// The response of an image handler: the PNG, or the error as the API's JSON error response
/// (a 404 or 500 is not stored).
fn image(result: Result<Vec<u8>, ApiError>) -> HttpResponse {
    match result {
        Ok(bytes) => png(bytes),
        Err(e) => e.error_response(),
    }
}

/// Invalidates tags known only once the write ran (its photos, the maps around its trig), as
/// `#[invalidates]` does for the tags it can spell: an invalidation Redis does not take in time
/// is queued and replayed, never lost ([`cache_core::CacheError::Queued`]); with caching off
/// there is nothing to invalidate. The write is committed either way.
async fn invalidate_also(app: &App, tags: Vec<String>) {
    if tags.is_empty() {
        return;
    }
    match app.cache.invalidate_tags(&tags).await {
        Ok(_) | Err(cache_core::CacheError::Queued | cache_core::CacheError::Disabled) => {}
        Err(e) => tracing::warn!(error = %e, tags = ?tags, "invalidation after write failed"),
    }
}

/// `trig:{n}:map` for each trig `n` whose map shows the written trig
/// ([`db::maps_showing`]).
fn map_tags(maps: &[i64]) -> Vec<String> {
    maps.iter().map(|n| format!("trig:{n}:map")).collect()
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

/// `GET /v1/stats/site`: four `COUNT(*)`s over the whole database, the most expensive read.
///
/// Cached for 1 h under tag `stats:site`, which every write (log, photo, user) invalidates, so
/// the counts are never stale; the TTL only bounds how long an unread entry lives.
#[cached(resource = "stats.site", ttl = "1h", tags = ["stats:site"], cache = &app.cache)]
pub async fn site_stats(app: web::Data<App>) -> Result<web::Json<SiteStats>, ApiError> {
    let stats = app.db.run(|c| Ok(db::site_stats(c)?)).await?;
    Ok(web::Json(stats))
}

/// `GET /v1/trigs/{id}`: a trig with its log and photo counts.
///
/// Cached for 24 h (trigs themselves never change; their counts do, through logs and photos,
/// whose writes invalidate tag `trig:{id}`). `key = "{id}"` makes the readable key
/// `trigs:v1:trig:42`, as the guide's `trig:{id}:v1`. A 404 is an `Err`: not cached.
#[cached(resource = "trig", key = "{id}", ttl = "24h", tags = ["trig:{id}"], cache = &app.cache)]
pub async fn get_trig(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<Trig>, ApiError> {
    let id = id.into_inner();
    let trig = app
        .db
        .run(move |c| db::trig(c, id)?.ok_or(ApiError::NotFound("trig")))
        .await?;
    Ok(web::Json(trig))
}

/// `GET /v1/trigs?page=&per_page=`: trigs with their log counts. A page or page size out of
/// range is a 400 ([`PageQuery::get`]), as on every list.
///
/// Cached for 12 h under tag `trigs:list`. Each page is its own entry (the query is in the
/// key); any log write invalidates them all, as the guide's "any log (conservative)".
#[cached(resource = "trigs.list", ttl = "12h", tags = ["trigs:list"], cache = &app.cache)]
pub async fn list_trigs(
    app: web::Data<App>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<TrigSummary>>, ApiError> {
    let (page, per_page) = q.get()?;
    let list = app
        .db
        .run(move |c| Ok(db::trigs(c, page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/trigs/{id}/logs?page=`: a trig's logs, newest first.
///
/// Cached for 2 h under tag `trig:{id}:logs`: a log written or deleted for this trig
/// invalidates every page, other trigs' entries stay.
#[cached(resource = "trig.logs", ttl = "2h", tags = ["trig:{id}:logs"], cache = &app.cache)]
pub async fn trig_logs(
    app: web::Data<App>,
    id: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<LogSummary>>, ApiError> {
    let (id, (page, per_page)) = (id.into_inner(), q.get()?);
    let list = app
        .db
        .run(move |c| Ok(db::logs(c, LogFilter::Trig(id), page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/trigs/{id}/photos?page=`: photos of a trig's logs.
///
/// Cached for 2 h under tag `trig:{id}:photos`, which photo writes and log deletions of this
/// trig invalidate.
#[cached(resource = "trig.photos", ttl = "2h", tags = ["trig:{id}:photos"], cache = &app.cache)]
pub async fn trig_photos(
    app: web::Data<App>,
    id: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<Photo>>, ApiError> {
    let (id, (page, per_page)) = (id.into_inner(), q.get()?);
    let list = app
        .db
        .run(move |c| Ok(db::trig_photos(c, id, page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/users/{id}`: a user with their log, trig and photo counts.
///
/// Cached for 6 h under tag `user:{id}`, which the user's log and photo writes invalidate.
#[cached(resource = "user", key = "{id}", ttl = "6h", tags = ["user:{id}"], cache = &app.cache)]
pub async fn get_user(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<User>, ApiError> {
    let id = id.into_inner();
    let user = app
        .db
        .run(move |c| db::user(c, id)?.ok_or(ApiError::NotFound("user")))
        .await?;
    Ok(web::Json(user))
}

/// `GET /v1/users/{id}/logs?page=`: a user's logs, newest first.
///
/// Cached for 2 h under tag `user:{id}:logs`.
#[cached(resource = "user.logs", ttl = "2h", tags = ["user:{id}:logs"], cache = &app.cache)]
pub async fn user_logs(
    app: web::Data<App>,
    id: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<LogSummary>>, ApiError> {
    let (id, (page, per_page)) = (id.into_inner(), q.get()?);
    let list = app
        .db
        .run(move |c| Ok(db::logs(c, LogFilter::User(id), page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/users?page=`: registered users.
///
/// Cached for 12 h under tag `users:list`, which only a registration invalidates (the rows
/// carry no counts, so logs do not change them).
#[cached(resource = "users.list", ttl = "12h", tags = ["users:list"], cache = &app.cache)]
pub async fn list_users(
    app: web::Data<App>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<UserSummary>>, ApiError> {
    let (page, per_page) = q.get()?;
    let list = app
        .db
        .run(move |c| Ok(db::users(c, page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/logs?page=`: the newest logs of everyone.
///
/// Cached for 1 h (the busiest list) under tag `logs:list`, which every log write invalidates.
#[cached(resource = "logs.list", ttl = "1h", tags = ["logs:list"], cache = &app.cache)]
pub async fn list_logs(
    app: web::Data<App>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<LogSummary>>, ApiError> {
    let (page, per_page) = q.get()?;
    let list = app
        .db
        .run(move |c| Ok(db::logs(c, LogFilter::All, page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/logs/{id}`: a log with its trig's and user's names and its photos.
///
/// Cached for 6 h under tag `log:{id}`: a photo added to the log or the log's deletion
/// invalidates it (a deleted log then answers 404, which is not cached).
#[cached(resource = "log", key = "{id}", ttl = "6h", tags = ["log:{id}"], cache = &app.cache)]
pub async fn get_log(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<LogDetail>, ApiError> {
    let id = id.into_inner();
    let log = app
        .db
        .run(move |c| db::log(c, id)?.ok_or(ApiError::NotFound("log")))
        .await?;
    Ok(web::Json(log))
}

/// `GET /v1/photos/{id}`: one photo.
///
/// Cached for 12 h under tag `photo:{id}`, which the photo's update and deletion (and its
/// log's deletion) invalidate.
#[cached(resource = "photo", key = "{id}", ttl = "12h", tags = ["photo:{id}"], cache = &app.cache)]
pub async fn get_photo(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<Photo>, ApiError> {
    let id = id.into_inner();
    let photo = app
        .db
        .run(move |c| db::photo_by_id(c, id)?.ok_or(ApiError::NotFound("photo")))
        .await?;
    Ok(web::Json(photo))
}

/// `GET /v1/photos?page=`: the newest photos of everyone.
///
/// Cached for 1 h (as the guide's `/v1/photos`) under tag `photos:list`, which every photo
/// write (and a log deletion, which deletes its photos) invalidates.
#[cached(resource = "photos.list", ttl = "1h", tags = ["photos:list"], cache = &app.cache)]
pub async fn list_photos(
    app: web::Data<App>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<Photo>>, ApiError> {
    let (page, per_page) = q.get()?;
    let list = app
        .db
        .run(move |c| Ok(db::photos(c, PhotoFilter::All, page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/users/{id}/photos?page=`: the photos of a user's logs, newest first.
///
/// Cached for 2 h under tag `user:{id}:photos`, which the user's photo writes and log
/// deletions invalidate.
#[cached(resource = "user.photos", ttl = "2h", tags = ["user:{id}:photos"], cache = &app.cache)]
pub async fn user_photos(
    app: web::Data<App>,
    id: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<Page<Photo>>, ApiError> {
    let (id, (page, per_page)) = (id.into_inner(), q.get()?);
    let list = app
        .db
        .run(move |c| Ok(db::photos(c, PhotoFilter::User(id), page, per_page)?))
        .await?;
    Ok(web::Json(list))
}

/// `GET /v1/users/{id}/badge`: a PNG badge with the user's name and counts (logs, trigs logged,
/// photos), [`render::BADGE_SIZE`].
///
/// A whole response (`HttpResponse`, `Content-Type: image/png`), cached for 5 min (the guide's
/// TTL) under tag `user:{id}:badge`, which the user's log and photo creations and deletions
/// invalidate. The library stores the bytes with a strong `ETag` (a hash of them) and answers
/// `If-None-Match` with `304`. An unknown user is a JSON 404, not stored.
#[cached(resource = "user.badge", key = "{id}", ttl = "5m", tags = ["user:{id}:badge"], cache = &app.cache)]
pub async fn user_badge(app: web::Data<App>, id: web::Path<i64>) -> HttpResponse {
    let id = id.into_inner();
    image(
        app.db
            .run(move |c| render::badge(&db::user(c, id)?.ok_or(ApiError::NotFound("user"))?))
            .await,
    )
}

/// `GET /v1/trigs/{id}/map`: a PNG map of the trig and every trig within
/// [`render::NEIGHBOUR_RADIUS_KM`], each marked logged (coloured by its latest condition) or
/// never logged, [`render::TRIG_MAP_SIZE`]; rendered on the blocking pool with the query.
///
/// Cached for 4 h under tag `trig:{id}:map`. A log write on trig `x` changes the maps that
/// show `x`: those of the trigs within the radius of `x` (the relation is symmetric), so the
/// write invalidates `trig:{n}:map` for each of them ([`db::maps_showing`]).
#[cached(resource = "trig.map", key = "{id}", ttl = "4h", tags = ["trig:{id}:map"], cache = &app.cache)]
pub async fn trig_map(app: web::Data<App>, id: web::Path<i64>) -> HttpResponse {
    let id = id.into_inner();
    image(
        app.db
            .run(move |c| {
                render::trig_map(&db::trig_map(c, id)?.ok_or(ApiError::NotFound("trig"))?)
            })
            .await,
    )
}

/// `GET /v1/users/{id}/map`: a PNG map of the trigs the user logged, coloured by the
/// condition of their latest log of each, [`render::USER_MAP_SIZE`].
///
/// Cached for 4 h under tag `user:{id}:map`, which the user's log writes (create, update,
/// delete) invalidate.
#[cached(resource = "user.map", key = "{id}", ttl = "4h", tags = ["user:{id}:map"], cache = &app.cache)]
pub async fn user_map(app: web::Data<App>, id: web::Path<i64>) -> HttpResponse {
    let id = id.into_inner();
    image(
        app.db
            .run(move |c| {
                render::user_map(&db::user_map(c, id)?.ok_or(ApiError::NotFound("user"))?)
            })
            .await,
    )
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

/// The checks of a log's text and condition, on create and update.
fn check_log(text: Option<&str>, condition: Option<&str>) -> Result<(), ApiError> {
    if text.is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::BadRequest("text must not be empty".into()));
    }
    if condition.is_some_and(|c| !CONDITIONS.contains(&c)) {
        return Err(ApiError::BadRequest(format!(
            "condition must be one of {CONDITIONS:?}"
        )));
    }
    Ok(())
}

/// `POST /v1/trigs/{trig_id}/logs` with `{ "user_id", "text", "condition" }`: logs a visit.
///
/// The guide's "a log write invalidates site stats, the trig, the user, trig and log lists",
/// as tags, plus what draws the log: the user's badge (log count) and map, and the maps that
/// show the trig (its log count and latest condition), `trig:{n}:map` for each trig `n`
/// within the radius ([`db::maps_showing`], invalidated in the body: a list a template cannot
/// spell). `trig:{trig_id}` comes from the path (formatted before the body runs); the user's
/// tags come from the created row, `{result.user_id}` (formatted after a successful body,
/// through `Created`'s `Deref`). A 400/404 is an `Err`: nothing is invalidated.
#[invalidates(
    "stats:site",
    "trigs:list",
    "logs:list",
    "trig:{trig_id}",
    "trig:{trig_id}:logs",
    "user:{result.user_id}",
    "user:{result.user_id}:logs",
    "user:{result.user_id}:badge",
    "user:{result.user_id}:map",
    cache = &app.cache
)]
pub async fn create_log(
    app: web::Data<App>,
    trig_id: web::Path<i64>,
    body: web::Json<NewLog>,
) -> Result<Created<LogSummary>, ApiError> {
    let (trig_id, new) = (*trig_id, body.into_inner());
    check_log(Some(&new.text), Some(&new.condition))?;
    let today = today();
    let (log, maps) = app
        .db
        .run(move |c| {
            let log = db::create_log(c, trig_id, &new, &today)?
                .ok_or(ApiError::NotFound("trig or user"))?;
            Ok((log, db::maps_showing(c, trig_id)?))
        })
        .await?;
    invalidate_also(&app, map_tags(&maps)).await;
    Ok(Created(log))
}

/// `PATCH /v1/logs/{id}` with `{ "text"?, "condition"? }` (at least one): edits a log; replies
/// with the edited log.
///
/// Invalidates what shows the log's text or condition: the log, the trig's and user's log
/// lists and the list of all logs, the user's map and the maps that show the trig (colours by
/// the latest condition). Counts do not change, so the site stats, the trig, the user, the
/// trig list and the badge stay cached (the guide's pattern deletes were conservative; tags
/// name exactly what changed).
#[invalidates(
    "logs:list",
    "log:{id}",
    "trig:{result.trig_id}:logs",
    "user:{result.user_id}:logs",
    "user:{result.user_id}:map",
    cache = &app.cache
)]
pub async fn update_log(
    app: web::Data<App>,
    id: web::Path<i64>,
    body: web::Json<LogPatch>,
) -> Result<web::Json<LogSummary>, ApiError> {
    let (id, patch) = (*id, body.into_inner());
    if patch.text.is_none() && patch.condition.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to update: give text and/or condition".into(),
        ));
    }
    check_log(patch.text.as_deref(), patch.condition.as_deref())?;
    let (log, maps) = app
        .db
        .run(move |c| {
            let log = db::update_log(c, id, &patch)?.ok_or(ApiError::NotFound("log"))?;
            let maps = db::maps_showing(c, log.trig_id)?;
            Ok((log, maps))
        })
        .await?;
    invalidate_also(&app, map_tags(&maps)).await;
    Ok(web::Json(log))
}

/// `DELETE /v1/logs/{id}`: deletes a log and its photos; replies with the deleted log.
///
/// The same tags as a log write, plus `log:{id}` and the photo lists (trig, user, all). The
/// trig and user are only known from the deleted row: `{result.trig_id}`, `{result.user_id}`.
/// The photos' own entries (`photo:{id}`) and the maps that show the trig are lists of variable
/// length that a template cannot spell: they are invalidated in the body with
/// [`cache_core::Cache::invalidate_tags`], the call the macro makes for you.
#[invalidates(
    "stats:site",
    "trigs:list",
    "logs:list",
    "photos:list",
    "log:{id}",
    "trig:{result.trig_id}",
    "trig:{result.trig_id}:logs",
    "trig:{result.trig_id}:photos",
    "user:{result.user_id}",
    "user:{result.user_id}:logs",
    "user:{result.user_id}:photos",
    "user:{result.user_id}:badge",
    "user:{result.user_id}:map",
    cache = &app.cache
)]
pub async fn delete_log(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<LogSummary>, ApiError> {
    let id = *id;
    let (log, photos, maps) = app
        .db
        .run(move |c| {
            let (log, photos) = db::delete_log(c, id)?.ok_or(ApiError::NotFound("log"))?;
            let maps = db::maps_showing(c, log.trig_id)?;
            Ok((log, photos, maps))
        })
        .await?;
    let mut tags: Vec<String> = photos.iter().map(|p| format!("photo:{p}")).collect();
    tags.extend(map_tags(&maps));
    invalidate_also(&app, tags).await;
    Ok(web::Json(log))
}

/// `POST /v1/logs/{log_id}/photos` with `{ "caption", "url" }`: attaches a photo to a log.
///
/// The guide's photo invalidation: site stats, the log (its detail lists photos), the trig
/// and its photo list, the user (their photo count), their photo list and badge, the list of
/// all photos. The trig and user come from the created photo row. Maps do not show photos.
#[invalidates(
    "stats:site",
    "photos:list",
    "log:{log_id}",
    "trig:{result.trig_id}",
    "trig:{result.trig_id}:photos",
    "user:{result.user_id}",
    "user:{result.user_id}:photos",
    "user:{result.user_id}:badge",
    cache = &app.cache
)]
pub async fn add_photo(
    app: web::Data<App>,
    log_id: web::Path<i64>,
    body: web::Json<NewPhoto>,
) -> Result<Created<Photo>, ApiError> {
    let (log_id, new) = (*log_id, body.into_inner());
    if new.url.trim().is_empty() {
        return Err(ApiError::BadRequest("url must not be empty".into()));
    }
    let photo = app
        .db
        .run(move |c| db::add_photo(c, log_id, &new)?.ok_or(ApiError::NotFound("log")))
        .await?;
    Ok(Created(photo))
}

/// `PATCH /v1/photos/{id}` with `{ "caption"?, "url"? }` (at least one): edits a photo;
/// replies with the edited photo.
///
/// Invalidates the photo, its log (whose detail lists it) and the photo lists that show it
/// (its trig's, its user's, all). No count changes: the site stats, the trig, the user and the
/// badge stay cached.
#[invalidates(
    "photos:list",
    "photo:{id}",
    "log:{result.log_id}",
    "trig:{result.trig_id}:photos",
    "user:{result.user_id}:photos",
    cache = &app.cache
)]
pub async fn update_photo(
    app: web::Data<App>,
    id: web::Path<i64>,
    body: web::Json<PhotoPatch>,
) -> Result<web::Json<Photo>, ApiError> {
    let (id, patch) = (*id, body.into_inner());
    if patch.caption.is_none() && patch.url.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to update: give caption and/or url".into(),
        ));
    }
    if patch.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return Err(ApiError::BadRequest("url must not be empty".into()));
    }
    let photo = app
        .db
        .run(move |c| db::update_photo(c, id, &patch)?.ok_or(ApiError::NotFound("photo")))
        .await?;
    Ok(web::Json(photo))
}

/// `DELETE /v1/photos/{id}`: deletes a photo; replies with the deleted photo.
///
/// The guide's photo invalidation, as for an upload, plus the photo's own entry (which then
/// answers 404, not cached).
#[invalidates(
    "stats:site",
    "photos:list",
    "photo:{id}",
    "log:{result.log_id}",
    "trig:{result.trig_id}",
    "trig:{result.trig_id}:photos",
    "user:{result.user_id}",
    "user:{result.user_id}:photos",
    "user:{result.user_id}:badge",
    cache = &app.cache
)]
pub async fn delete_photo(
    app: web::Data<App>,
    id: web::Path<i64>,
) -> Result<web::Json<Photo>, ApiError> {
    let id = *id;
    let photo = app
        .db
        .run(move |c| db::delete_photo(c, id)?.ok_or(ApiError::NotFound("photo")))
        .await?;
    Ok(web::Json(photo))
}

/// `POST /v1/users` with `{ "name" }`: registers a user.
///
/// Invalidates the user list and site stats. The new user's own entry needs nothing: a 404
/// for an id not yet taken was never cached.
#[invalidates("stats:site", "users:list", cache = &app.cache)]
pub async fn create_user(
    app: web::Data<App>,
    body: web::Json<NewUser>,
) -> Result<Created<UserSummary>, ApiError> {
    let new = body.into_inner();
    let name = new.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 64 characters".into(),
        ));
    }
    let today = today();
    let user = app
        .db
        .run(move |c| {
            db::create_user(c, &new, &today)?
                .ok_or_else(|| ApiError::Conflict(format!("name {:?} is taken", new.name)))
        })
        .await?;
    Ok(Created(user))
}
