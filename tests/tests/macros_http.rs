#![allow(missing_docs)]
//! `#[cached]` and `#[invalidates]` on real Axum and Actix handlers, driven through the
//! frameworks (a `Router` with `tower::ServiceExt::oneshot`; an actix `App` with
//! `actix_web::test`), on Redis and on the in-memory backend.
//!
//! Each handler counts its "database" loads per label, so a hit is a request that did not load.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cache_core::{cached, invalidates, Cache};
use common::Ctx;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
    tag: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Filter {
    tag: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Rename {
    name: String,
}

/// A stand-in database: names by id, and a load counter per label.
#[derive(Default)]
struct Db {
    names: Mutex<HashMap<u32, String>>,
    loads: Mutex<HashMap<String, usize>>,
}

impl Db {
    fn load(&self, label: impl Into<String>) {
        *self.loads.lock().unwrap().entry(label.into()).or_default() += 1;
    }

    fn loads(&self, label: &str) -> usize {
        self.loads.lock().unwrap().get(label).copied().unwrap_or(0)
    }

    fn name(&self, id: u32) -> String {
        self.names
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("Trig {id}"))
    }

    fn rename(&self, id: u32, name: String) {
        self.names.lock().unwrap().insert(id, name);
    }
}

/// The application state both frameworks share.
#[derive(Clone)]
struct App {
    cache: Cache,
    db: Arc<Db>,
}

impl App {
    fn new(ctx: &Ctx) -> App {
        App {
            cache: ctx.cache(),
            db: Arc::default(),
        }
    }
}

// ============================================================================= axum

mod axum_app {
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::extract::{FromRequestParts, Path, Query, State};
    use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Request, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// The caller, from the `x-user` header (a stand-in for an auth extractor).
    pub(super) struct User(String);

    impl<S: Send + Sync> FromRequestParts<S> for User {
        type Rejection = StatusCode;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<User, StatusCode> {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(|v| User(v.to_owned()))
                .ok_or(StatusCode::UNAUTHORIZED)
        }
    }

    /// `Json<T>`: cached as `T`. `app` is a handle (not in the key); `id` and `q` are.
    #[cached(resource = "trig", ttl = "1m", tags = ["trig:{id}"], cache = &app.cache)]
    async fn get_trig(
        State(app): State<App>,
        Path(id): Path<u32>,
        Query(q): Query<Filter>,
    ) -> Json<Trig> {
        app.db.load(format!("trig:{id}"));
        Json(Trig {
            id,
            name: app.db.name(id),
            tag: q.tag,
        })
    }

    /// `Result<Json<T>, StatusCode>`: only `Ok` is cached.
    #[cached(resource = "maybe", ttl = "1m", tags = ["trig:{id}"], cache = &app.cache)]
    async fn maybe_trig(
        State(app): State<App>,
        Path(id): Path<u32>,
    ) -> Result<Json<Trig>, StatusCode> {
        app.db.load(format!("maybe:{id}"));
        match id {
            0 => Err(StatusCode::NOT_FOUND),
            500.. => Err(StatusCode::INTERNAL_SERVER_ERROR),
            _ => Ok(Json(Trig {
                id,
                name: app.db.name(id),
                tag: None,
            })),
        }
    }

    /// A write: invalidates `trig:{id}` only when it succeeds. An opaque `Ok` type is fine here.
    #[invalidates("trig:{id}", cache = &app.cache)]
    async fn rename(
        State(app): State<App>,
        Path(id): Path<u32>,
        Json(body): Json<Rename>,
    ) -> Result<impl IntoResponse, StatusCode> {
        if body.name.is_empty() {
            return Err(StatusCode::UNPROCESSABLE_ENTITY);
        }
        app.db.rename(id, body.name);
        Ok(StatusCode::NO_CONTENT)
    }

    #[derive(Deserialize)]
    pub(super) struct NewTrig {
        id: u32,
        name: String,
    }

    /// A create: the new id is only known from the result, `{result.id}` (through `Json`'s
    /// `Deref`); `{input.name}` is a field of an argument.
    #[invalidates("trig:{result.id}", "name:{input.name}", cache = &app.cache)]
    async fn create(
        State(app): State<App>,
        Json(input): Json<NewTrig>,
    ) -> Result<Json<Trig>, StatusCode> {
        if input.id == 0 {
            return Err(StatusCode::CONFLICT);
        }
        app.db.rename(input.id, input.name.clone());
        Ok(Json(Trig {
            id: input.id,
            name: input.name,
            tag: None,
        }))
    }

    #[cached(resource = "by_name", ttl = "1m", tags = ["name:{name}"], cache = &app.cache)]
    async fn by_name(State(app): State<App>, Path(name): Path<String>) -> Json<usize> {
        app.db.load(format!("by_name:{name}"));
        Json(name.len())
    }

    /// Per-user entries: the user scope comes from an extractor.
    #[cached(resource = "feed", ttl = "1m", user = user.0, skip = [user], cache = &app.cache)]
    async fn feed(State(app): State<App>, user: User) -> Json<String> {
        app.db.load(format!("feed:{}", user.0));
        Json(format!("feed of {}", user.0))
    }

    /// Per-user entries from a path parameter.
    #[cached(resource = "inbox", ttl = "1m", user = who, cache = &app.cache)]
    async fn inbox(State(app): State<App>, Path(who): Path<String>) -> Json<Vec<String>> {
        app.db.load(format!("inbox:{who}"));
        Json(vec![format!("hello {who}")])
    }

    fn router(app: App) -> Router {
        Router::new()
            .route("/trigs/{id}", get(get_trig).post(rename))
            .route("/maybe/{id}", get(maybe_trig))
            .route("/feed", get(feed))
            .route("/inbox/{who}", get(inbox))
            .route("/trigs", axum::routing::post(create))
            .route("/by_name/{name}", get(by_name))
            .with_state(app)
    }

    async fn send(app: &App, req: Request<Body>) -> (StatusCode, String) {
        let resp = router(app.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get_(app: &App, uri: &str) -> (StatusCode, String) {
        send(app, Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn get_as(app: &App, uri: &str, user: &str) -> (StatusCode, String) {
        let req = Request::get(uri)
            .header("x-user", user)
            .body(Body::empty())
            .unwrap();
        send(app, req).await
    }

    async fn post(app: &App, uri: &str, json: &str) -> StatusCode {
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(json.to_owned()))
            .unwrap();
        send(app, req).await.0
    }

    fn trig(body: &str) -> Trig {
        serde_json::from_str(body).unwrap()
    }

    pub(super) async fn json_handler_miss_then_hit(ctx: Ctx) {
        let app = App::new(&ctx);
        let (status, body) = get_(&app, "/trigs/1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(trig(&body).name, "Trig 1");
        let (_, again) = get_(&app, "/trigs/1").await;
        assert_eq!(again, body, "a hit returns the same JSON");
        assert_eq!(app.db.loads("trig:1"), 1);

        let (_, tagged) = get_(&app, "/trigs/1?tag=red").await;
        assert_eq!(trig(&tagged).tag.as_deref(), Some("red"));
        get_(&app, "/trigs/1?tag=red").await;
        assert_eq!(app.db.loads("trig:1"), 2, "the query is part of the key");
        get_(&app, "/trigs/2").await;
        assert_eq!(app.db.loads("trig:2"), 1);
        assert_eq!(app.cache.stats().resources["trig"].hits, 2);
    }

    pub(super) async fn errors_are_not_cached(ctx: Ctx) {
        let app = App::new(&ctx);
        for n in 1..=2 {
            assert_eq!(get_(&app, "/maybe/0").await.0, StatusCode::NOT_FOUND);
            assert_eq!(app.db.loads("maybe:0"), n);
            assert_eq!(
                get_(&app, "/maybe/500").await.0,
                StatusCode::INTERNAL_SERVER_ERROR
            );
            assert_eq!(app.db.loads("maybe:500"), n);
        }
        for _ in 0..3 {
            let (status, body) = get_(&app, "/maybe/7").await;
            assert_eq!((status, trig(&body).id), (StatusCode::OK, 7));
        }
        assert_eq!(app.db.loads("maybe:7"), 1, "Ok(Json(..)) is cached");
    }

    pub(super) async fn write_invalidates_only_on_success(ctx: Ctx) {
        let app = App::new(&ctx);
        get_(&app, "/trigs/1").await;
        get_(&app, "/maybe/1").await;
        get_(&app, "/trigs/2").await;
        assert_eq!(
            post(&app, "/trigs/1", r#"{"name":""}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let (_, body) = get_(&app, "/trigs/1").await;
        assert_eq!(trig(&body).name, "Trig 1");
        assert_eq!(
            app.db.loads("trig:1"),
            1,
            "a failed write invalidates nothing"
        );

        assert_eq!(
            post(&app, "/trigs/1", r#"{"name":"renamed"}"#).await,
            StatusCode::NO_CONTENT
        );
        let (_, body) = get_(&app, "/trigs/1").await;
        assert_eq!(trig(&body).name, "renamed", "the write is visible at once");
        let (_, body) = get_(&app, "/maybe/1").await;
        assert_eq!(trig(&body).name, "renamed");
        assert_eq!((app.db.loads("trig:1"), app.db.loads("maybe:1")), (2, 2));
        get_(&app, "/trigs/2").await;
        assert_eq!(app.db.loads("trig:2"), 1, "another trig is untouched");
    }

    pub(super) async fn users_never_share_entries(ctx: Ctx) {
        let app = App::new(&ctx);
        assert_eq!(get_(&app, "/feed").await.0, StatusCode::UNAUTHORIZED);
        for _ in 0..2 {
            assert_eq!(get_as(&app, "/feed", "alice").await.1, r#""feed of alice""#);
            assert_eq!(get_as(&app, "/feed", "bob").await.1, r#""feed of bob""#);
        }
        assert_eq!(
            (app.db.loads("feed:alice"), app.db.loads("feed:bob")),
            (1, 1)
        );

        for _ in 0..2 {
            assert_eq!(get_(&app, "/inbox/alice").await.1, r#"["hello alice"]"#);
            assert_eq!(get_(&app, "/inbox/bob").await.1, r#"["hello bob"]"#);
        }
        assert_eq!(
            (app.db.loads("inbox:alice"), app.db.loads("inbox:bob")),
            (1, 1)
        );
    }

    pub(super) async fn create_invalidates_from_the_json_result(ctx: Ctx) {
        let app = App::new(&ctx);
        get_(&app, "/trigs/9").await;
        get_(&app, "/by_name/nine").await;
        assert_eq!(
            post(&app, "/trigs", r#"{"id":0,"name":"nine"}"#).await,
            StatusCode::CONFLICT
        );
        get_(&app, "/trigs/9").await;
        get_(&app, "/by_name/nine").await;
        assert_eq!(
            (app.db.loads("trig:9"), app.db.loads("by_name:nine")),
            (1, 1)
        );

        assert_eq!(
            post(&app, "/trigs", r#"{"id":9,"name":"nine"}"#).await,
            StatusCode::OK
        );
        let (_, body) = get_(&app, "/trigs/9").await;
        assert_eq!(trig(&body).name, "nine");
        get_(&app, "/by_name/nine").await;
        assert_eq!(
            (app.db.loads("trig:9"), app.db.loads("by_name:nine")),
            (2, 2)
        );
    }

    /// `impl IntoResponse`: the whole response (status, headers, body) is cached. A 404 is
    /// returned unstored (its body counts the loads, so a second 404 shows a fresh run).
    #[cached(resource = "page", ttl = "1m", tags = ["trig:{id}"], cache = &app.cache)]
    async fn page(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse {
        app.db.load(format!("page:{id}"));
        if id == 0 {
            return (
                StatusCode::NOT_FOUND,
                [
                    ("x-served-by", "page"),
                    ("content-type", "text/plain; charset=utf-8"),
                ],
                format!("no page 0 (load {})", app.db.loads("page:0")),
            );
        }
        (
            StatusCode::OK,
            [
                ("x-served-by", "page"),
                ("content-type", "text/html; charset=utf-8"),
            ],
            page_body(&app.db.name(id)),
        )
    }

    fn page_body(name: &str) -> String {
        format!("<h1>{name}</h1>")
    }

    /// `Response`: cached whole like `impl IntoResponse`.
    #[cached(resource = "card", ttl = "1m", tags = ["trig:{id}"], cache = &app.cache)]
    async fn card(State(app): State<App>, Path(id): Path<u32>) -> Response {
        app.db.load(format!("card:{id}"));
        if id == 0 {
            let n = app.db.loads("card:0");
            return (StatusCode::NOT_FOUND, format!("no card 0 (load {n})")).into_response();
        }
        let mut resp = Json(Trig {
            id,
            name: app.db.name(id),
            tag: None,
        })
        .into_response();
        resp.headers_mut()
            .insert("x-served-by", HeaderValue::from_static("card"));
        resp
    }

    /// A response that sets a cookie is never stored: each request runs the handler and gets
    /// its own cookie.
    #[cached(resource = "visit", ttl = "1m", cache = &app.cache)]
    async fn visit(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse {
        app.db.load(format!("visit:{id}"));
        let n = app.db.loads(&format!("visit:{id}"));
        (
            [(header::SET_COOKIE, format!("visit={n}"))],
            format!("visit {n} of {id}"),
        )
    }

    /// A `200` with one header that makes it unstorable, chosen by `kind`; the body counts the
    /// loads, so a second run shows.
    #[cached(resource = "unstorable", ttl = "1m", cache = &app.cache)]
    async fn unstorable(State(app): State<App>, Path(kind): Path<String>) -> Response {
        app.db.load(format!("unstorable:{kind}"));
        let n = app.db.loads(&format!("unstorable:{kind}"));
        let (name, value) = unstorable_header(&kind);
        ([(name, value)], format!("{kind} {n}")).into_response()
    }

    /// The header each `kind` of [`unstorable`] sets.
    fn unstorable_header(kind: &str) -> (&'static str, &'static str) {
        match kind {
            "cookie" => ("set-cookie", "visit=1"),
            "private" => ("cache-control", "private, max-age=60"),
            "no-store" => ("cache-control", "no-store"),
            "no-cache" => ("cache-control", "no-cache"),
            _ => ("vary", "*"),
        }
    }

    /// A streaming body of `kib` KiB, in 1 KiB chunks numbered `0..kib` (each chunk is its
    /// number's last digit, repeated), followed by the load count.
    #[cached(resource = "big", ttl = "1m", cache = &app.cache)]
    async fn big(State(app): State<App>, Path(kib): Path<usize>) -> Response {
        app.db.load(format!("big:{kib}"));
        let n = app.db.loads(&format!("big:{kib}"));
        Body::from_stream(futures_util::stream::iter(big_chunks(kib, n))).into_response()
    }

    fn big_chunks(kib: usize, load: usize) -> Vec<Result<Bytes, std::convert::Infallible>> {
        (0..kib)
            .map(|i| Ok(Bytes::from(vec![b'0' + (i % 10) as u8; 1024])))
            .chain([Ok(Bytes::from(format!("load {load}")))])
            .collect()
    }

    /// What the tuple handlers return for `id` at this moment: ids from 100 are created
    /// (`201`, with the load count in the name, so a second run shows in the body).
    fn made_value(app: &App, label: &str, id: u32) -> (StatusCode, Trig) {
        if id >= 100 {
            let n = app.db.loads(&format!("{label}:{id}"));
            let name = format!("created (load {n})");
            return (
                StatusCode::CREATED,
                Trig {
                    id,
                    name,
                    tag: None,
                },
            );
        }
        let name = app.db.name(id);
        (
            StatusCode::OK,
            Trig {
                id,
                name,
                tag: None,
            },
        )
    }

    /// `(StatusCode, Json<T>)`: cached whole like `impl IntoResponse` (the function returns the
    /// `Response` the tuple turns into); a `201` is not stored. `return` works as without the
    /// attribute.
    #[cached(resource = "made", ttl = "1m", tags = ["trig:{id}"], cache = &app.cache)]
    async fn made(State(app): State<App>, Path(id): Path<u32>) -> (StatusCode, Json<Trig>) {
        app.db.load(format!("made:{id}"));
        let (status, trig) = made_value(&app, "made", id);
        if status != StatusCode::OK {
            return (status, Json(trig));
        }
        (status, Json(trig))
    }

    fn served_by(name: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-served-by", HeaderValue::from_static(name));
        h
    }

    /// `(StatusCode, HeaderMap, Json<T>)`.
    #[cached(resource = "headed", ttl = "1m", cache = &app.cache)]
    async fn headed(
        State(app): State<App>,
        Path(id): Path<u32>,
    ) -> (StatusCode, HeaderMap, Json<Trig>) {
        app.db.load(format!("headed:{id}"));
        let (status, trig) = made_value(&app, "headed", id);
        (status, served_by("headed"), Json(trig))
    }

    /// `(HeaderMap, Json<T>)`: always `200`.
    #[cached(resource = "bare", ttl = "1m", cache = &app.cache)]
    async fn bare(State(app): State<App>, Path(id): Path<u32>) -> (HeaderMap, Json<Trig>) {
        app.db.load(format!("bare:{id}"));
        let (_, trig) = made_value(&app, "bare", id);
        (served_by("bare"), Json(trig))
    }

    /// The whole-response handlers, behind the context layer (`X-Cache-*`, `ETag`, 304).
    fn whole_router(app: App) -> Router {
        Router::new()
            .route("/made/{id}", get(made))
            .route("/headed/{id}", get(headed))
            .route("/bare/{id}", get(bare))
            .route("/pages/{id}", get(page))
            .route("/cards/{id}", get(card))
            .route("/visits/{id}", get(visit))
            .route("/unstorable/{kind}", get(unstorable))
            .route("/big/{kib}", get(big))
            .with_state(app)
            .layer(cache_axum::CacheContextLayer::builder().build())
    }

    async fn call(app: &App, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = whole_router(app.clone()).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    fn get_req(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn cache_status(headers: &HeaderMap) -> &str {
        headers
            .get("x-cache-status")
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The handler's headers: without the ones the context layer adds.
    fn handler_headers(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                !n.as_str().starts_with("x-cache-")
                    && *n != header::AGE
                    && *n != header::CACHE_CONTROL
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    /// `X-Cache-Tier` on the hits of a `#[cached]` whole response: `redis` without L1, `l1`
    /// with it, none on the miss; the body is the handler's.
    pub(super) async fn whole_response_hits_carry_the_tier_header(ctx: Ctx) {
        for (cache, tier, id) in [
            (ctx.cache(), "redis", 70u32),
            (ctx.l1_cache().await, "l1", 71),
        ] {
            let app = App {
                cache,
                db: Arc::default(),
            };
            let uri = format!("/pages/{id}");
            let (status, headers, body) = call(&app, get_req(&uri)).await;
            assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
            assert!(headers.get("x-cache-tier").is_none());
            assert_eq!(body, page_body(&format!("Trig {id}")));
            for _ in 0..3 {
                let (s2, h2, b2) = call(&app, get_req(&uri)).await;
                let tier_header = h2.get("x-cache-tier").map(|v| v.to_str().unwrap());
                assert_eq!((cache_status(&h2), tier_header), ("HIT", Some(tier)));
                assert_eq!((s2, &b2), (status, &body), "the handler's response");
            }
            assert_eq!(app.db.loads(&format!("page:{id}")), 1);
        }
    }

    pub(super) async fn whole_response_miss_then_hit(ctx: Ctx) {
        let app = App::new(&ctx);
        // `impl IntoResponse`.
        let (status, headers, body) = call(&app, get_req("/pages/7")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache_status(&headers), "MISS");
        assert_eq!(body, page_body("Trig 7"));
        assert_eq!(headers["x-served-by"], "page");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers.contains_key(header::ETAG));
        let (status2, headers2, body2) = call(&app, get_req("/pages/7")).await;
        assert_eq!(cache_status(&headers2), "HIT");
        assert_eq!((status2, &body2), (status, &body));
        assert_eq!(handler_headers(&headers2), handler_headers(&headers));
        assert_eq!(app.db.loads("page:7"), 1);

        let (status, headers, body) = call(&app, get_req("/pages/8")).await;
        assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
        assert_eq!(body, page_body("Trig 8"), "another id, another entry");
        assert_eq!(app.db.loads("page:8"), 1);

        // `Response`.
        for (n, expected) in [(1, "MISS"), (2, "HIT")] {
            let (status, headers, body) = call(&app, get_req("/cards/3")).await;
            assert_eq!(status, StatusCode::OK, "request {n}");
            assert_eq!(cache_status(&headers), expected, "request {n}");
            assert_eq!(headers["x-served-by"], "card");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            let t: Trig = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                t,
                Trig {
                    id: 3,
                    name: "Trig 3".into(),
                    tag: None
                }
            );
        }
        let (_, _, body) = call(&app, get_req("/cards/4")).await;
        assert_eq!(serde_json::from_slice::<Trig>(&body).unwrap().id, 4);
        assert_eq!((app.db.loads("card:3"), app.db.loads("card:4")), (1, 1));

        // A write invalidating the tag makes the next read run the handler again.
        app.db.rename(7, "Renamed".into());
        app.cache.invalidate_tags(&["trig:7"]).await.unwrap();
        let (status, headers, body) = call(&app, get_req("/pages/7")).await;
        assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
        assert_eq!(body, page_body("Renamed"));
    }

    pub(super) async fn whole_response_404_is_not_stored(ctx: Ctx) {
        let app = App::new(&ctx);
        for n in 1..=2 {
            let (status, headers, body) = call(&app, get_req("/pages/0")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(
                body,
                format!("no page 0 (load {n})"),
                "request {n} runs the handler"
            );
            assert_eq!(headers["x-served-by"], "page");
            assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
            assert_eq!(app.db.loads("page:0"), n);

            let (status, _, body) = call(&app, get_req("/cards/0")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body, format!("no card 0 (load {n})"));
            assert_eq!(app.db.loads("card:0"), n);
        }
    }

    pub(super) async fn whole_response_set_cookie_is_never_stored(ctx: Ctx) {
        let app = App::new(&ctx);
        for n in 1..=3 {
            let (status, headers, body) = call(&app, get_req("/visits/5")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                body,
                format!("visit {n} of 5"),
                "request {n} runs the handler"
            );
            assert_eq!(headers[header::SET_COOKIE], format!("visit={n}").as_str());
            assert_ne!(cache_status(&headers), "HIT");
        }
        assert_eq!(app.db.loads("visit:5"), 3);
    }

    /// A `200` with `Set-Cookie`, `Cache-Control: private`, `no-store` or `no-cache`, or
    /// `Vary: *` is returned as the handler made it and never stored: each request runs it.
    pub(super) async fn whole_responses_with_set_cookie_private_no_store_no_cache_or_vary_star_are_not_stored(
        ctx: Ctx,
    ) {
        let app = App::new(&ctx);
        for kind in ["cookie", "private", "no-store", "no-cache", "vary"] {
            let (name, value) = unstorable_header(kind);
            for n in 1..=2 {
                let (status, headers, body) =
                    call(&app, get_req(&format!("/unstorable/{kind}"))).await;
                assert_eq!(status, StatusCode::OK, "{kind} {n}");
                assert_eq!(
                    body,
                    format!("{kind} {n}"),
                    "{kind}: request {n} runs the handler"
                );
                assert_eq!(headers[name], value, "{kind} {n}: the handler's header");
                assert_ne!(cache_status(&headers), "HIT");
            }
            assert_eq!(app.db.loads(&format!("unstorable:{kind}")), 2, "{kind}");
        }
    }

    pub(super) async fn whole_response_over_1mib_is_not_stored(ctx: Ctx) {
        // The cache itself would store 8 MiB entries: the 1 MiB cap is the handler's.
        let app = App {
            cache: ctx.builder().max_entry_size(8 << 20).build().unwrap(),
            db: Arc::default(),
        };
        let expected = |kib: usize, load: usize| -> Vec<u8> {
            big_chunks(kib, load)
                .into_iter()
                .flat_map(|c| c.unwrap().to_vec())
                .collect()
        };
        for n in 1..=2 {
            let (status, _, body) = call(&app, get_req("/big/2048")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body.len(), 2048 * 1024 + 6);
            assert!(
                body == expected(2048, n),
                "request {n}: the whole body, in order"
            );
        }
        assert_eq!(app.db.loads("big:2048"), 2, "a 2 MiB body is not stored");
        // Within the cap it is stored.
        for _ in 0..2 {
            let (status, _, body) = call(&app, get_req("/big/4")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body == expected(4, 1));
        }
        assert_eq!(app.db.loads("big:4"), 1);
    }

    pub(super) async fn whole_response_etag_answers_304(ctx: Ctx) {
        let app = App::new(&ctx);
        for uri in ["/pages/7", "/cards/7"] {
            let (status, headers, body) = call(&app, get_req(uri)).await;
            assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
            assert!(!body.is_empty());
            let etag = headers[header::ETAG].clone();
            let req = Request::get(uri)
                .header(header::IF_NONE_MATCH, etag.clone())
                .body(Body::empty())
                .unwrap();
            let (status, headers, body) = call(&app, req).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
            assert_eq!(cache_status(&headers), "HIT");
            assert_eq!(headers[header::ETAG], etag);
            assert!(body.is_empty(), "a 304 has no body");
            // Another validator gets the full response from the entry.
            let req = Request::get(uri)
                .header(header::IF_NONE_MATCH, "\"other\"")
                .body(Body::empty())
                .unwrap();
            let (status, headers, again) = call(&app, req).await;
            assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "HIT"));
            assert!(!again.is_empty());
        }
        assert_eq!((app.db.loads("page:7"), app.db.loads("card:7")), (1, 1));
    }

    /// `If-None-Match` is answered `304` on a miss too: after an invalidation the handler runs
    /// again, and when its new response has the same bytes (so the same `ETag`) a client that
    /// holds that `ETag` gets `304` with an empty body; when the bytes changed, the new `200`.
    pub(super) async fn whole_response_etag_answers_304_on_a_miss(ctx: Ctx) {
        let app = App::new(&ctx);
        for uri in ["/pages/8", "/cards/8"] {
            let (status, headers, body) = call(&app, get_req(uri)).await;
            assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
            let etag = headers[header::ETAG].clone();
            app.cache.invalidate_tags(&["trig:8"]).await.unwrap();
            let req = Request::get(uri)
                .header(header::IF_NONE_MATCH, etag.clone())
                .body(Body::empty())
                .unwrap();
            let (status, headers, empty) = call(&app, req).await;
            assert_eq!(
                (status, cache_status(&headers)),
                (StatusCode::NOT_MODIFIED, "MISS"),
                "{uri}"
            );
            assert_eq!(headers[header::ETAG], etag);
            assert!(empty.is_empty(), "a 304 has no body");
            // The miss stored the response: the next request is a HIT with the same bytes.
            let (status, headers, again) = call(&app, get_req(uri)).await;
            assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "HIT"));
            assert_eq!(again, body);
        }
        assert_eq!((app.db.loads("page:8"), app.db.loads("card:8")), (2, 2));
        // New bytes: the old `ETag` no longer matches, the new response is sent.
        app.db.rename(8, "Renamed".into());
        app.cache.invalidate_tags(&["trig:8"]).await.unwrap();
        let (_, headers, _) = call(&app, get_req("/pages/8")).await;
        let old = headers[header::ETAG].clone();
        app.db.rename(8, "Renamed again".into());
        app.cache.invalidate_tags(&["trig:8"]).await.unwrap();
        let req = Request::get("/pages/8")
            .header(header::IF_NONE_MATCH, old.clone())
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = call(&app, req).await;
        assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
        assert_ne!(headers[header::ETAG], old);
        assert_eq!(&body[..], b"<h1>Renamed again</h1>");
    }

    /// Response tuples (`(StatusCode, Json<T>)`, `(StatusCode, HeaderMap, Json<T>)`,
    /// `(HeaderMap, Json<T>)`) are cached whole: on the miss and on the hit, the status, the
    /// handler's headers and the body are the handler's; a `201` tuple is not stored.
    pub(super) async fn tuple_returns_are_cached_whole_and_a_201_is_not_stored(ctx: Ctx) {
        let app = App::new(&ctx);
        for (label, served) in [
            ("made", None),
            ("headed", Some("headed")),
            ("bare", Some("bare")),
        ] {
            let uri = format!("/{label}/7");
            let (want_status, want) = made_value(&app, label, 7);
            let want_body = serde_json::to_vec(&want).unwrap();
            for (n, expected) in [(1, "MISS"), (2, "HIT")] {
                let (status, headers, body) = call(&app, get_req(&uri)).await;
                assert_eq!(
                    (status, cache_status(&headers)),
                    (want_status, expected),
                    "{uri} {n}"
                );
                assert_eq!(body, want_body, "{uri} {n}: the handler's body");
                assert_eq!(headers[header::CONTENT_TYPE], "application/json");
                let by = headers.get("x-served-by").map(|v| v.to_str().unwrap());
                assert_eq!(by, served, "{uri} {n}");
            }
            assert_eq!(app.db.loads(&format!("{label}:7")), 1, "{uri}");
            // Another id, another entry, with that id's body.
            let (status, _, body) = call(&app, get_req(&format!("/{label}/8"))).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                body,
                serde_json::to_vec(&made_value(&app, label, 8).1).unwrap()
            );
        }
        for label in ["made", "headed"] {
            let uri = format!("/{label}/100");
            for n in 1..=2 {
                let (status, headers, body) = call(&app, get_req(&uri)).await;
                assert_eq!(status, StatusCode::CREATED, "{uri} {n}");
                assert_ne!(cache_status(&headers), "HIT", "{uri} {n}");
                let want = made_value(&app, label, 100).1;
                assert_eq!(want.name, format!("created (load {n})"));
                assert_eq!(body, serde_json::to_vec(&want).unwrap(), "{uri} {n}");
            }
            assert_eq!(
                app.db.loads(&format!("{label}:100")),
                2,
                "a 201 is not stored"
            );
        }
        // A write invalidating the tag makes the next read run the handler again.
        app.db.rename(7, "Renamed".into());
        app.cache.invalidate_tags(&["trig:7"]).await.unwrap();
        let (status, headers, body) = call(&app, get_req("/made/7")).await;
        assert_eq!((status, cache_status(&headers)), (StatusCode::OK, "MISS"));
        assert_eq!(
            body,
            serde_json::to_vec(&made_value(&app, "made", 7).1).unwrap()
        );
    }

    #[test]
    fn handlers_are_axum_handlers() {
        // `Router::route` already requires it; this names the property.
        fn is_handler<H: axum::handler::Handler<T, App>, T>(_: H) {}
        is_handler(get_trig);
        is_handler(maybe_trig);
        is_handler(rename);
        is_handler(feed);
        is_handler(create);
        is_handler(page);
        is_handler(card);
        is_handler(visit);
        is_handler(big);
        is_handler(made);
        is_handler(unstorable);
        is_handler(headed);
        is_handler(bare);
        // A tuple handler returns the response the tuple turns into.
        fn returns_response<F: std::future::Future<Output = Response>>(_: F) {}
        let app = App {
            cache: Cache::memory(),
            db: Arc::default(),
        };
        returns_response(made(State(app), Path(1)));
    }
}

use axum_app::{
    create_invalidates_from_the_json_result, errors_are_not_cached, json_handler_miss_then_hit,
    tuple_returns_are_cached_whole_and_a_201_is_not_stored, users_never_share_entries,
    whole_response_404_is_not_stored, whole_response_etag_answers_304,
    whole_response_etag_answers_304_on_a_miss, whole_response_hits_carry_the_tier_header,
    whole_response_miss_then_hit, whole_response_over_1mib_is_not_stored,
    whole_response_set_cookie_is_never_stored,
    whole_responses_with_set_cookie_private_no_store_no_cache_or_vary_star_are_not_stored,
    write_invalidates_only_on_success,
};

on_both_backends!(
    json_handler_miss_then_hit,
    errors_are_not_cached,
    write_invalidates_only_on_success,
    users_never_share_entries,
    invalidates_with_result_placeholders,
    create_invalidates_from_the_json_result,
    whole_response_miss_then_hit,
    whole_response_hits_carry_the_tier_header,
    whole_response_404_is_not_stored,
    whole_response_set_cookie_is_never_stored,
    whole_response_over_1mib_is_not_stored,
    whole_response_etag_answers_304,
    whole_response_etag_answers_304_on_a_miss,
    tuple_returns_are_cached_whole_and_a_201_is_not_stored,
    whole_responses_with_set_cookie_private_no_store_no_cache_or_vary_star_are_not_stored,
);

// ============================================================================= {result} tags

/// `{result}` / `{result.field}` in `#[invalidates]` tags: formatted from the success value.
mod result_tags {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn count(loads: &AtomicUsize) -> usize {
        loads.load(Ordering::SeqCst)
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Created {
        id: u32,
        owner: Owner,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Owner(String);

    #[cached(ttl = "1h", tags = ["trig:{id}"], cache = cache, skip = [loads])]
    async fn trig_by_id(cache: &Cache, loads: &AtomicUsize, id: u32) -> u32 {
        loads.fetch_add(1, Ordering::SeqCst);
        id
    }

    #[cached(ttl = "1h", tags = ["owner:{who}"], cache = cache, skip = [loads])]
    async fn trigs_of(cache: &Cache, loads: &AtomicUsize, who: String) -> String {
        loads.fetch_add(1, Ordering::SeqCst);
        who
    }

    /// Tags from the `Ok` value (`{result.field}`, nested and tuple fields) and from argument
    /// fields (`{input.1}`).
    #[invalidates("trig:{result.id}", "owner:{result.owner.0}", "owner:{input.1}", cache = cache)]
    async fn create_trig(
        cache: &Cache,
        input: (u32, String),
        fail: bool,
    ) -> Result<Created, String> {
        if fail {
            return Err("rejected".into());
        }
        Ok(Created {
            id: input.0,
            owner: Owner("alice".into()),
        })
    }

    #[invalidates("trig:{result}", cache = cache)]
    async fn bump(cache: &Cache, id: u32) -> Option<u32> {
        (id != 0).then_some(id)
    }

    pub(super) async fn invalidates_with_result_placeholders(ctx: Ctx) {
        let cache = ctx.cache();
        let loads = AtomicUsize::new(0);
        trig_by_id(&cache, &loads, 5).await;
        trigs_of(&cache, &loads, "alice".into()).await;
        trigs_of(&cache, &loads, "bob".into()).await;
        assert_eq!(count(&loads), 3);

        assert!(create_trig(&cache, (5, "bob".into()), true).await.is_err());
        trig_by_id(&cache, &loads, 5).await;
        trigs_of(&cache, &loads, "alice".into()).await;
        trigs_of(&cache, &loads, "bob".into()).await;
        assert_eq!(count(&loads), 3, "Err: nothing invalidated");

        let created = create_trig(&cache, (5, "bob".into()), false).await.unwrap();
        assert_eq!(created.id, 5);
        trig_by_id(&cache, &loads, 5).await;
        trigs_of(&cache, &loads, "alice".into()).await;
        trigs_of(&cache, &loads, "bob".into()).await;
        assert_eq!(
            count(&loads),
            6,
            "trig:5, owner:alice and owner:bob invalidated"
        );

        assert_eq!(bump(&cache, 0).await, None);
        trig_by_id(&cache, &loads, 5).await;
        assert_eq!(count(&loads), 6, "None: no result, no `{{result}}` tag");
        assert_eq!(bump(&cache, 5).await, Some(5));
        trig_by_id(&cache, &loads, 5).await;
        assert_eq!(count(&loads), 7);
    }
}

use result_tags::invalidates_with_result_placeholders;

// ============================================================================= actix-web

mod actix {
    use super::*;
    use actix_web::dev::Payload;
    use actix_web::http::StatusCode;
    use actix_web::{test, web, FromRequest, HttpRequest, HttpResponse, Responder};
    use std::future::{ready, Ready};

    /// The caller, from the `x-user` header.
    struct User(String);

    impl FromRequest for User {
        type Error = actix_web::Error;
        type Future = Ready<Result<User, actix_web::Error>>;

        fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
            ready(
                req.headers()
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| User(v.to_owned()))
                    .ok_or_else(|| actix_web::error::ErrorUnauthorized("who are you?")),
            )
        }
    }

    /// `web::Json<T>`; `path` is keyed by the tuple it derefs to, `q` by the filter.
    #[cached(resource = "trig", ttl = "1m", tags = ["trigs"], cache = &app.cache)]
    async fn get_trig(
        app: web::Data<App>,
        path: web::Path<(u32, String)>,
        web::Query(q): web::Query<Filter>,
    ) -> web::Json<Trig> {
        let (id, lang) = path.into_inner();
        app.db.load(format!("trig:{id}:{lang}"));
        web::Json(Trig {
            id,
            name: format!("{} ({lang})", app.db.name(id)),
            tag: q.tag,
        })
    }

    /// `Result<web::Json<T>, actix_web::Error>`: errors are returned, not cached.
    #[cached(resource = "maybe", ttl = "1m", tags = ["trigs"], cache = &app.cache)]
    async fn maybe_trig(
        app: web::Data<App>,
        path: web::Path<u32>,
    ) -> Result<web::Json<Trig>, actix_web::Error> {
        let id = *path;
        app.db.load(format!("maybe:{id}"));
        if id == 0 {
            return Err(actix_web::error::ErrorNotFound("no such trig"));
        }
        Ok(web::Json(Trig {
            id,
            name: app.db.name(id),
            tag: None,
        }))
    }

    #[invalidates("trigs", cache = &app.cache)]
    async fn rename(
        app: web::Data<App>,
        path: web::Path<u32>,
        body: web::Json<Rename>,
    ) -> Result<HttpResponse, actix_web::Error> {
        if body.name.is_empty() {
            return Err(actix_web::error::ErrorUnprocessableEntity("empty name"));
        }
        app.db.rename(*path, body.into_inner().name);
        Ok(HttpResponse::NoContent().finish())
    }

    #[cached(resource = "feed", ttl = "1m", user = user.0, skip = [user], cache = &app.cache)]
    async fn feed(app: web::Data<App>, user: User) -> web::Json<String> {
        app.db.load(format!("feed:{}", user.0));
        web::Json(format!("feed of {}", user.0))
    }

    /// `HttpResponse`: the whole response (status, headers, body) is cached; a non-200 one is
    /// returned unstored.
    #[cached(resource = "page", ttl = "1m", tags = ["trigs"], cache = &app.cache)]
    async fn page(app: web::Data<App>, path: web::Path<u32>) -> HttpResponse {
        let id = *path;
        app.db.load(format!("page:{id}"));
        if id == 0 {
            return HttpResponse::NotFound().body("no page 0");
        }
        HttpResponse::Ok()
            .insert_header(("x-page", id.to_string()))
            .content_type("text/html; charset=utf-8")
            .body(format!("<h1>{}</h1>", app.db.name(id)))
    }

    /// `impl Responder`: turned into a response with the request (kept by the context
    /// middleware), then cached like `HttpResponse`.
    #[cached(resource = "card", ttl = "1m", tags = ["trigs"], cache = &app.cache)]
    async fn card(app: web::Data<App>, path: web::Path<u32>) -> impl Responder {
        let id = *path;
        app.db.load(format!("card:{id}"));
        web::Json(Trig {
            id,
            name: app.db.name(id),
            tag: None,
        })
        .customize()
        .insert_header(("x-card", "yes"))
    }

    /// What the tuple handlers return for `id` at this moment (as on Axum): ids from 100 are
    /// created (`201`, the load count in the name).
    fn made_value(app: &App, label: &str, id: u32) -> (StatusCode, Trig) {
        if id >= 100 {
            let n = app.db.loads(&format!("{label}:{id}"));
            let name = format!("created (load {n})");
            return (
                StatusCode::CREATED,
                Trig {
                    id,
                    name,
                    tag: None,
                },
            );
        }
        let name = app.db.name(id);
        (
            StatusCode::OK,
            Trig {
                id,
                name,
                tag: None,
            },
        )
    }

    /// `(web::Json<T>, StatusCode)`: cached whole like `impl Responder` (the function returns
    /// the `HttpResponse`); a `201` is not stored.
    #[cached(resource = "made", ttl = "1m", tags = ["trigs"], cache = &app.cache)]
    async fn made(app: web::Data<App>, path: web::Path<u32>) -> (web::Json<Trig>, StatusCode) {
        let id = *path;
        app.db.load(format!("made:{id}"));
        let (status, trig) = made_value(&app, "made", id);
        (web::Json(trig), status)
    }

    /// `(impl Responder, StatusCode)`.
    #[cached(resource = "made_r", ttl = "1m", cache = &app.cache)]
    async fn made_responder(
        app: web::Data<App>,
        path: web::Path<u32>,
    ) -> (impl Responder, StatusCode) {
        let id = *path;
        app.db.load(format!("made_r:{id}"));
        let (status, trig) = made_value(&app, "made_r", id);
        (
            web::Json(trig).customize().insert_header(("x-card", "yes")),
            status,
        )
    }

    /// A `200` with one header that makes it unstorable, chosen by `kind` (as on Axum).
    #[cached(resource = "unstorable", ttl = "1m", cache = &app.cache)]
    async fn unstorable(app: web::Data<App>, kind: web::Path<String>) -> HttpResponse {
        app.db.load(format!("unstorable:{kind}"));
        let n = app.db.loads(&format!("unstorable:{kind}"));
        HttpResponse::Ok()
            .insert_header(unstorable_header(&kind))
            .body(format!("{kind} {n}"))
    }

    fn unstorable_header(kind: &str) -> (&'static str, &'static str) {
        match kind {
            "cookie" => ("set-cookie", "visit=1"),
            "private" => ("cache-control", "private, max-age=60"),
            "no-store" => ("cache-control", "no-store"),
            "no-cache" => ("cache-control", "no-cache"),
            _ => ("vary", "*"),
        }
    }

    /// A `200` with `Set-Cookie`, `Cache-Control: private`, `no-store` or `no-cache`, or
    /// `Vary: *` is returned as the handler made it and never stored: each request runs it.
    async fn whole_responses_with_set_cookie_private_no_store_no_cache_or_vary_star_are_not_stored(
        ctx: Ctx,
    ) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/unstorable/{kind}", web::get().to(unstorable)),
        )
        .await;
        for kind in ["cookie", "private", "no-store", "no-cache", "vary"] {
            let (name, value) = unstorable_header(kind);
            for n in 1..=2 {
                let req = test::TestRequest::get()
                    .uri(&format!("/unstorable/{kind}"))
                    .to_request();
                let resp = test::call_service(&svc, req).await;
                assert_eq!(resp.status(), StatusCode::OK, "{kind} {n}");
                assert_eq!(resp.headers().get(name).unwrap(), value, "{kind} {n}");
                assert_ne!(
                    resp.headers()
                        .get("x-cache-status")
                        .map(|v| v.to_str().unwrap()),
                    Some("HIT")
                );
                let body = test::read_body(resp).await;
                assert_eq!(&body[..], format!("{kind} {n}").as_bytes(), "{kind} {n}");
            }
            assert_eq!(app.db.loads(&format!("unstorable:{kind}")), 2, "{kind}");
        }
    }

    /// `(R, StatusCode)` tuples are cached whole: the status, the handler's headers and body on
    /// the miss and on the hit; a `201` tuple is not stored.
    async fn tuple_returns_are_cached_whole_and_a_201_is_not_stored(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/made/{id}", web::get().to(made))
                .route("/made_r/{id}", web::get().to(made_responder)),
        )
        .await;
        let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();
        for (label, card) in [("made", None), ("made_r", Some("yes"))] {
            let uri = format!("/{label}/7");
            let (want_status, want) = made_value(&app, label, 7);
            for (n, expected) in [(1, "MISS"), (2, "HIT")] {
                let resp = test::call_service(&svc, get(&uri)).await;
                assert_eq!(resp.status(), want_status, "{uri} {n}");
                let h = |name: &str| {
                    resp.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                assert_eq!(h("x-cache-status").as_deref(), Some(expected), "{uri} {n}");
                assert_eq!(h("x-card").as_deref(), card, "{uri} {n}");
                assert_eq!(h("content-type").as_deref(), Some("application/json"));
                let body = test::read_body(resp).await;
                assert_eq!(&body[..], serde_json::to_vec(&want).unwrap(), "{uri} {n}");
            }
            assert_eq!(app.db.loads(&format!("{label}:7")), 1, "{uri}");
            let uri = format!("/{label}/100");
            for n in 1..=2 {
                let resp = test::call_service(&svc, get(&uri)).await;
                assert_eq!(resp.status(), StatusCode::CREATED, "{uri} {n}");
                assert_ne!(resp.headers().get("x-cache-status").unwrap(), "HIT");
                let want = made_value(&app, label, 100).1;
                assert_eq!(want.name, format!("created (load {n})"));
                let body = test::read_body(resp).await;
                assert_eq!(&body[..], serde_json::to_vec(&want).unwrap(), "{uri} {n}");
            }
            assert_eq!(
                app.db.loads(&format!("{label}:100")),
                2,
                "a 201 is not stored"
            );
        }
    }

    macro_rules! service {
        ($app:expr) => {
            test::init_service(
                actix_web::App::new()
                    .app_data(web::Data::new($app.clone()))
                    .route("/trigs/{id}/{lang}", web::get().to(get_trig))
                    .route("/maybe/{id}", web::get().to(maybe_trig))
                    .route("/maybe/{id}", web::post().to(rename))
                    .route("/feed", web::get().to(feed)),
            )
            .await
        };
    }

    /// `X-Cache-Tier` on the hits of a `#[cached]` whole response: `redis` without L1, `l1`
    /// with it, none on the miss; the body is the handler's.
    async fn whole_response_hits_carry_the_tier_header(ctx: Ctx) {
        for (cache, tier, id) in [
            (ctx.cache(), "redis", 70u32),
            (ctx.l1_cache().await, "l1", 71),
        ] {
            let app = App {
                cache,
                db: Arc::default(),
            };
            let svc = test::init_service(
                actix_web::App::new()
                    .wrap(cache_actix::CacheContextLayer::builder().build())
                    .app_data(web::Data::new(app.clone()))
                    .route("/pages/{id}", web::get().to(page)),
            )
            .await;
            let uri = format!("/pages/{id}");
            for (n, expected) in [(1, "MISS"), (2, "HIT"), (3, "HIT"), (4, "HIT")] {
                let resp =
                    test::call_service(&svc, test::TestRequest::get().uri(&uri).to_request()).await;
                assert_eq!(resp.status(), StatusCode::OK);
                let h = |name: &str| {
                    resp.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                assert_eq!(
                    h("x-cache-status").as_deref(),
                    Some(expected),
                    "request {n}"
                );
                let want = (n > 1).then_some(tier);
                assert_eq!(h("x-cache-tier").as_deref(), want, "request {n}");
                let body = test::read_body(resp).await;
                assert_eq!(&body[..], format!("<h1>Trig {id}</h1>").as_bytes());
            }
            assert_eq!(app.db.loads(&format!("page:{id}")), 1);
        }
    }

    async fn whole_responses_are_cached_with_headers(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/pages/{id}", web::get().to(page))
                .route("/cards/{id}", web::get().to(card)),
        )
        .await;
        let get = |uri: &'static str| test::TestRequest::get().uri(uri).to_request();
        for (n, expected) in [(1, "MISS"), (2, "HIT")] {
            let resp = test::call_service(&svc, get("/pages/7")).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let h = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            assert_eq!(
                h("x-cache-status").as_deref(),
                Some(expected),
                "request {n}"
            );
            assert_eq!(h("x-page").as_deref(), Some("7"));
            assert_eq!(
                h("content-type").as_deref(),
                Some("text/html; charset=utf-8")
            );
            assert!(h("x-cache-key").unwrap().contains("page"));
            let body = test::read_body(resp).await;
            assert_eq!(&body[..], b"<h1>Trig 7</h1>");
        }
        assert_eq!(app.db.loads("page:7"), 1);
        for n in 1..=2 {
            let resp = test::call_service(&svc, get("/pages/0")).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            assert_eq!(test::read_body(resp).await, "no page 0");
            assert_eq!(app.db.loads("page:0"), n, "a 404 is not cached");
        }
        for expected in ["MISS", "HIT"] {
            let resp = test::call_service(&svc, get("/cards/3")).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), expected);
            assert_eq!(resp.headers().get("x-card").unwrap(), "yes");
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                "application/json"
            );
            let t: Trig = test::read_body_json(resp).await;
            assert_eq!((t.id, t.name.as_str()), (3, "Trig 3"));
        }
        assert_eq!(app.db.loads("card:3"), 1);
        // Bypass refreshes the whole response.
        let bypass = test::TestRequest::get()
            .uri("/pages/7")
            .insert_header(("cache-control", "no-cache"))
            .to_request();
        let resp = test::call_service(&svc, bypass).await;
        assert_eq!(resp.headers().get("x-cache-status").unwrap(), "BYPASS");
        assert_eq!(app.db.loads("page:7"), 2);
        // A write invalidating `trigs` makes the next read fresh.
        app.db.rename(7, "Renamed".into());
        app.cache.invalidate_tags(&["trigs"]).await.unwrap();
        let resp = test::call_service(&svc, get("/pages/7")).await;
        assert_eq!(resp.headers().get("x-cache-status").unwrap(), "MISS");
        assert_eq!(test::read_body(resp).await, "<h1>Renamed</h1>");
    }

    /// With the context middleware, `If-None-Match` with the `ETag` of the first response is
    /// answered `304` with an empty body on a hit, for `HttpResponse` and `impl Responder`.
    async fn whole_response_etag_answers_304(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/pages/{id}", web::get().to(page))
                .route("/cards/{id}", web::get().to(card)),
        )
        .await;
        for uri in ["/pages/7", "/cards/7"] {
            let resp =
                test::call_service(&svc, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "MISS");
            let etag = resp.headers().get("etag").unwrap().clone();
            assert!(!test::read_body(resp).await.is_empty());
            let req = test::TestRequest::get()
                .uri(uri)
                .insert_header(("if-none-match", etag.clone()))
                .to_request();
            let resp = test::call_service(&svc, req).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{uri}");
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "HIT");
            assert_eq!(resp.headers().get("etag").unwrap(), &etag);
            assert!(test::read_body(resp).await.is_empty(), "a 304 has no body");
            let req = test::TestRequest::get()
                .uri(uri)
                .insert_header(("if-none-match", "\"other\""))
                .to_request();
            let resp = test::call_service(&svc, req).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "HIT");
            assert!(!test::read_body(resp).await.is_empty());
        }
        assert_eq!((app.db.loads("page:7"), app.db.loads("card:7")), (1, 1));
    }

    /// `If-None-Match` is answered `304` on a miss too (after an invalidation, when the new
    /// response has the same bytes and so the same `ETag`), for `HttpResponse` and
    /// `impl Responder`; with new bytes, the new `200`.
    async fn whole_response_etag_answers_304_on_a_miss(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(web::Data::new(app.clone()))
                .route("/pages/{id}", web::get().to(page))
                .route("/cards/{id}", web::get().to(card)),
        )
        .await;
        let with = |uri: &str, etag: &actix_web::http::header::HeaderValue| {
            test::TestRequest::get()
                .uri(uri)
                .insert_header(("if-none-match", etag.clone()))
                .to_request()
        };
        for uri in ["/pages/8", "/cards/8"] {
            let resp =
                test::call_service(&svc, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "MISS");
            let etag = resp.headers().get("etag").unwrap().clone();
            let body = test::read_body(resp).await;
            app.cache.invalidate_tags(&["trigs"]).await.unwrap();
            let resp = test::call_service(&svc, with(uri, &etag)).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{uri}");
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "MISS");
            assert_eq!(resp.headers().get("etag").unwrap(), &etag);
            assert!(test::read_body(resp).await.is_empty(), "a 304 has no body");
            let resp =
                test::call_service(&svc, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.headers().get("x-cache-status").unwrap(), "HIT");
            assert_eq!(test::read_body(resp).await, body);
        }
        assert_eq!((app.db.loads("page:8"), app.db.loads("card:8")), (2, 2));
        let resp =
            test::call_service(&svc, test::TestRequest::get().uri("/pages/8").to_request()).await;
        let old = resp.headers().get("etag").unwrap().clone();
        app.db.rename(8, "Renamed".into());
        app.cache.invalidate_tags(&["trigs"]).await.unwrap();
        let resp = test::call_service(&svc, with("/pages/8", &old)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().get("x-cache-status").unwrap(), "MISS");
        assert_ne!(resp.headers().get("etag").unwrap(), &old);
        assert_eq!(test::read_body(resp).await, "<h1>Renamed</h1>");
    }

    /// Without the context middleware an `impl Responder` handler is still cached (the macro's
    /// hidden `HttpRequest` argument turns it into a response); only the headers are missing.
    async fn responders_are_cached_without_the_context_middleware(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = test::init_service(
            actix_web::App::new()
                .app_data(web::Data::new(app.clone()))
                .route("/cards/{id}", web::get().to(card)),
        )
        .await;
        for _ in 0..2 {
            let req = test::TestRequest::get().uri("/cards/4").to_request();
            let resp = test::call_service(&svc, req).await;
            assert!(resp.headers().get("x-cache-status").is_none());
            let t: Trig = test::read_body_json(resp).await;
            assert_eq!(t.id, 4);
        }
        assert_eq!(app.db.loads("card:4"), 1);
    }

    async fn trigs_and_errors(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = service!(app);
        let get = |uri: &'static str| test::TestRequest::get().uri(uri).to_request();

        for _ in 0..2 {
            let t: Trig = test::call_and_read_body_json(&svc, get("/trigs/1/en")).await;
            assert_eq!(t.name, "Trig 1 (en)");
            let t: Trig = test::call_and_read_body_json(&svc, get("/trigs/1/fr?tag=x")).await;
            assert_eq!(
                (t.name.as_str(), t.tag.as_deref()),
                ("Trig 1 (fr)", Some("x"))
            );
        }
        assert_eq!(app.db.loads("trig:1:en"), 1);
        assert_eq!(app.db.loads("trig:1:fr"), 1);
        assert_eq!(app.cache.stats().resources["trig"].hits, 2);

        for n in 1..=2 {
            let resp = test::call_service(&svc, get("/maybe/0")).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            assert_eq!(app.db.loads("maybe:0"), n, "errors are not cached");
        }
        for _ in 0..2 {
            let t: Trig = test::call_and_read_body_json(&svc, get("/maybe/3")).await;
            assert_eq!(t.id, 3);
        }
        assert_eq!(app.db.loads("maybe:3"), 1);

        // A failed write invalidates nothing; a successful one invalidates the `trigs` tag.
        let post = |json: &'static str| {
            test::TestRequest::post()
                .uri("/maybe/3")
                .insert_header(("content-type", "application/json"))
                .set_payload(json)
                .to_request()
        };
        let resp = test::call_service(&svc, post(r#"{"name":""}"#)).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let _: Trig = test::call_and_read_body_json(&svc, get("/maybe/3")).await;
        assert_eq!(app.db.loads("maybe:3"), 1);
        let resp = test::call_service(&svc, post(r#"{"name":"renamed"}"#)).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let t: Trig = test::call_and_read_body_json(&svc, get("/maybe/3")).await;
        assert_eq!(t.name, "renamed");
        let _: Trig = test::call_and_read_body_json(&svc, get("/trigs/1/en")).await;
        assert_eq!((app.db.loads("maybe:3"), app.db.loads("trig:1:en")), (2, 2));
    }

    async fn users_never_share_entries(ctx: Ctx) {
        let app = App::new(&ctx);
        let svc = service!(app);
        let as_user = |who: &'static str| {
            test::TestRequest::get()
                .uri("/feed")
                .insert_header(("x-user", who))
                .to_request()
        };
        let resp =
            test::call_service(&svc, test::TestRequest::get().uri("/feed").to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        for _ in 0..2 {
            let s: String = test::call_and_read_body_json(&svc, as_user("alice")).await;
            assert_eq!(s, "feed of alice");
            let s: String = test::call_and_read_body_json(&svc, as_user("bob")).await;
            assert_eq!(s, "feed of bob");
        }
        assert_eq!(
            (app.db.loads("feed:alice"), app.db.loads("feed:bob")),
            (1, 1)
        );
    }

    /// `#[actix_web::test]`: actix's runtime (a current-thread tokio runtime in a `LocalSet`).
    macro_rules! on_both_backends_actix {
        ($($test:ident),* $(,)?) => {
            mod redis {
                $(
                    #[actix_web::test]
                    async fn $test() {
                        super::$test(crate::common::Ctx::new(crate::common::Kind::Redis)).await
                    }
                )*
            }
            mod memory {
                $(
                    #[actix_web::test]
                    async fn $test() {
                        super::$test(crate::common::Ctx::new(crate::common::Kind::Memory)).await
                    }
                )*
            }
        };
    }

    on_both_backends_actix!(
        trigs_and_errors,
        users_never_share_entries,
        whole_responses_are_cached_with_headers,
        whole_response_hits_carry_the_tier_header,
        whole_response_etag_answers_304,
        whole_response_etag_answers_304_on_a_miss,
        responders_are_cached_without_the_context_middleware,
        tuple_returns_are_cached_whole_and_a_201_is_not_stored,
        whole_responses_with_set_cookie_private_no_store_no_cache_or_vary_star_are_not_stored,
    );
}
