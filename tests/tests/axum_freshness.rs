#![allow(missing_docs)]
//! Fills of `cache_axum::ResponseCacheLayer` and of `#[cached]` Axum handlers guarded against
//! invalidations made while the handler ran, and the layer's stale windows
//! (`stale_while_revalidate`: every request answered `STALE` at once while one background
//! refresh runs; `stale_if_error`: the stored 200 replaces a 5xx, never a 404), on Redis and
//! memory.
//!
//! The origin is an item whose version is in an `AtomicU64`: its answer to a request is the
//! body of the version its handler read. A handler can be held (after reading) until the test
//! releases it, so every interleaving is driven by signals; the only waits on the clock are for
//! a 300 ms TTL to run out, polled in bounded loops.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::{ResponseCacheLayer, RoutePolicy};
use cache_core::backend::{Backend, BackendInfo, Invalidation, Put, VersionRead};
use cache_core::http::{HttpRules, RequestView};
use cache_core::{cached, Cache, CacheError, CacheKey};
use common::Ctx;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);
/// A TTL short enough to wait out.
const SHORT: Duration = Duration::from_millis(300);
/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);
/// How long a request answered "at once" may take (the held handler never returns before the
/// test releases it, so a request that waits for it times out).
const AT_ONCE: Duration = Duration::from_secs(2);

/// What the origin's GET handler answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    Missing,
}

/// The origin: one item's version, a run counter, a hold switch and the signals of a held run.
struct Origin {
    version: AtomicU64,
    runs: AtomicUsize,
    hold: AtomicBool,
    read: Notify,
    release: Notify,
    mode: Mutex<Mode>,
}

impl Origin {
    fn new() -> Arc<Origin> {
        Arc::new(Origin {
            version: AtomicU64::new(1),
            runs: AtomicUsize::new(0),
            hold: AtomicBool::new(false),
            read: Notify::new(),
            release: Notify::new(),
            mode: Mutex::new(Mode::Ok),
        })
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// The next handler run reads, signals `read`, and waits for `release`.
    fn hold_next(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Reads the version, then waits if held: what every handler does first.
    async fn read_version(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let v = self.version.load(Ordering::SeqCst);
        if self.hold.swap(false, Ordering::SeqCst) {
            self.read.notify_one();
            self.release.notified().await;
        }
        v
    }

    async fn get(&self, id: u32) -> Response {
        let v = self.read_version().await;
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Ok => ([("content-type", "application/json")], item_body(id, v)).into_response(),
            Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "database down").into_response(),
            Mode::Missing => (StatusCode::NOT_FOUND, format!("no item {id}")).into_response(),
        }
    }

    fn write(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

/// The origin's 200 body for version `v` of item `id`.
fn item_body(id: u32, v: u64) -> String {
    format!("{{\"id\":{id},\"version\":{v}}}")
}

/// `/items/{id}` (GET; PUT writes a new version) behind a layer caching it with `policy`,
/// tagged `item:{id}`, invalidated by a successful PUT.
fn app(cache: Cache, origin: Arc<Origin>, policy: RoutePolicy) -> Router {
    let layer = ResponseCacheLayer::builder(cache)
        .route("/items/{id}", policy.tag("item:{id}").resource("item"))
        .invalidate_on_write("/items/{id}", ["item:{id}"])
        .build();
    Router::new()
        .route(
            "/items/{id}",
            get(|State(o): State<Arc<Origin>>, Path(id): Path<u32>| async move { o.get(id).await })
                .put(|State(o): State<Arc<Origin>>| async move {
                    o.write();
                    "written"
                }),
        )
        .with_state(origin)
        .layer(layer)
}

/// The layer's key for `GET path` (resource `item`), to watch its flight.
fn layer_key(cache: &Cache, path: &str) -> CacheKey {
    HttpRules::default().key(
        cache,
        "item",
        RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &HeaderMap::new(),
        },
        None,
    )
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Status, `X-Cache-Status` and body.
    fn seen(&self) -> (u16, &str, &str) {
        (self.status.as_u16(), self.h("x-cache-status"), &self.body)
    }
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get_(router: &Router, uri: &str) -> Reply {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    tokio::time::timeout(WAIT, send(router, req))
        .await
        .unwrap_or_else(|_| panic!("GET {uri} answered within {WAIT:?}"))
}

/// A GET that must be answered without waiting for a held handler.
async fn get_at_once(router: &Router, uri: &str, what: &str) -> Reply {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    tokio::time::timeout(AT_ONCE, send(router, req))
        .await
        .unwrap_or_else(|_| panic!("{what}: GET {uri} waited for the handler"))
}

fn spawn_get(router: &Router, uri: &'static str) -> tokio::task::JoinHandle<Reply> {
    let router = router.clone();
    tokio::spawn(async move { get_(&router, uri).await })
}

async fn signal(n: &Notify, what: &str) {
    tokio::time::timeout(WAIT, n.notified())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Polls `GET uri` until it is no longer a `HIT` (the TTL ran out); every hit must carry
/// `hit_body`. Returns the first other answer.
async fn poll_until_not_hit(router: &Router, uri: &str, hit_body: &str) -> Reply {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get_at_once(router, uri, "polling the TTL").await;
        if r.h("x-cache-status") != "HIT" {
            return r;
        }
        assert_eq!(r.body, hit_body, "a hit serves the stored body");
        assert!(
            Instant::now() < deadline,
            "the entry never went past its TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------ guarded layer fills

/// A GET whose handler read v1 is held; `write` makes v2 and invalidates; the GET finishes.
async fn a_layer_fill_racing(ctx: &Ctx, write: impl AsyncFnOnce(&Router, &Cache, &Origin)) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let router = app(cache.clone(), origin.clone(), RoutePolicy::ttl(HOUR));
    origin.hold_next();
    let first = spawn_get(&router, "/items/1");
    signal(&origin.read, "the first GET's handler read v1").await;

    write(&router, &cache, &origin).await;
    origin.release.notify_one();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(
        first.seen(),
        (200, "MISS", item_body(1, 1).as_str()),
        "the first GET's handler read v1 before the write: v1 is its answer"
    );

    let next = get_(&router, "/items/1").await;
    assert_eq!(
        next.seen(),
        (200, "MISS", item_body(1, 2).as_str()),
        "a response computed before the write was stored after it (runs: {})",
        origin.runs()
    );
    let hit = get_(&router, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
    assert_eq!(origin.runs(), 2);
}

async fn a_response_computed_before_a_write_is_not_stored_after_it(ctx: Ctx) {
    a_layer_fill_racing(&ctx, async |router: &Router, _: &Cache, _: &Origin| {
        let put = Request::put("/items/1").body(Body::empty()).unwrap();
        let r = tokio::time::timeout(WAIT, send(router, put)).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "written"));
    })
    .await;
}

async fn a_response_computed_before_invalidate_tags_is_not_stored_after_it(ctx: Ctx) {
    // The write happens outside HTTP (a job, another service), which invalidates the tag.
    a_layer_fill_racing(&ctx, async |_: &Router, cache: &Cache, origin: &Origin| {
        origin.write();
        cache.invalidate_tags(&["item:1"]).await.unwrap();
    })
    .await;
}

async fn a_request_after_a_write_never_gets_the_older_in_flight_response(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let router = app(cache.clone(), origin.clone(), RoutePolicy::ttl(HOUR));
    let key = layer_key(&cache, "/items/1");
    origin.hold_next();
    let first = spawn_get(&router, "/items/1");
    signal(&origin.read, "the first GET's handler read v1").await;

    let put = Request::put("/items/1").body(Body::empty()).unwrap();
    assert_eq!(send(&router, put).await.status, StatusCode::OK);
    let second = spawn_get(&router, "/items/1");
    let deadline = Instant::now() + WAIT;
    while cache.waiting_on(&key) < 1 && origin.runs() < 2 && !second.is_finished() {
        assert!(Instant::now() < deadline, "the second GET never started");
        tokio::task::yield_now().await;
    }
    let joined = cache.waiting_on(&key) >= 1;

    origin.release.notify_one();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    let second = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(first.seen(), (200, "MISS", item_body(1, 1).as_str()));
    assert_eq!(
        (second.status.as_u16(), second.body.as_str()),
        (200, item_body(1, 2).as_str()),
        "a GET that began after the write returned got the response computed before it \
         (joined the handler run in flight: {joined}; x-cache-status {})",
        second.h("x-cache-status")
    );
    assert!(
        joined,
        "harness: the second GET must have joined the run in flight"
    );
    let hit = get_(&router, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
}

// ------------------------------------------------------------------ #[cached] handler fill

#[derive(Clone)]
struct MacroApp {
    cache: Cache,
    origin: Arc<Origin>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u32,
    version: u64,
}

#[cached(resource = "trig", ttl = "1h", tags = ["trig:{id}"], cache = &app.cache)]
async fn cached_item(State(app): State<MacroApp>, Path(id): Path<u32>) -> Json<Item> {
    let version = app.origin.read_version().await;
    Json(Item { id, version })
}

async fn a_cached_json_handler_computed_before_an_invalidation_is_not_stored_after_it(ctx: Ctx) {
    let app = MacroApp {
        cache: ctx.cache(),
        origin: Origin::new(),
    };
    let router = Router::new()
        .route("/trigs/{id}", get(cached_item))
        .with_state(app.clone())
        .layer(cache_axum::CacheContextLayer::builder().build());
    let body = |version| serde_json::to_string(&Item { id: 7, version }).unwrap();
    app.origin.hold_next();
    let first = spawn_get(&router, "/trigs/7");
    signal(&app.origin.read, "the handler read v1").await;

    app.origin.write();
    app.cache.invalidate_tags(&["trig:7"]).await.unwrap();
    app.origin.release.notify_one();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.seen(), (200, "MISS", body(1).as_str()));

    let next = get_(&router, "/trigs/7").await;
    assert_eq!(
        next.seen(),
        (200, "MISS", body(2).as_str()),
        "a #[cached] response computed before the invalidation was stored after it"
    );
    let hit = get_(&router, "/trigs/7").await;
    assert_eq!(hit.seen(), (200, "HIT", body(2).as_str()));
    assert_eq!(app.origin.runs(), 2);
}

// ------------------------------------------------------------------ stale windows

async fn stale_while_revalidate_answers_stale_at_once_while_one_background_refresh_runs(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_while_revalidate(MINUTE);
    let router = app(cache.clone(), origin.clone(), policy);
    let v1 = item_body(1, 1);
    assert_eq!(
        get_(&router, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );

    // The database moves on (no invalidation); the refresh will be held once it reads.
    origin.write();
    origin.hold_next();
    let first_stale = poll_until_not_hit(&router, "/items/1", &v1).await;
    assert_eq!(
        first_stale.seen(),
        (200, "STALE", v1.as_str()),
        "past the TTL, inside the window: the stored body, at once"
    );
    signal(&origin.read, "the background refresh ran the handler").await;
    for n in 0..5 {
        let r = get_at_once(&router, "/items/1", "a request during the refresh").await;
        assert_eq!(
            r.seen(),
            (200, "STALE", v1.as_str()),
            "request {n} during the refresh"
        );
    }
    assert_eq!(origin.runs(), 2, "one refresh for every stale request");

    origin.release.notify_one();
    let deadline = Instant::now() + WAIT;
    while cache.stats().resources.get("item").map_or(0, |r| r.sets) < 2 {
        assert!(
            Instant::now() < deadline,
            "the refresh never stored its response"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hit = get_(&router, "/items/1").await;
    assert_eq!(
        hit.seen(),
        (200, "HIT", item_body(1, 2).as_str()),
        "after the refresh: the new body"
    );
    // No assertion on the runs after the release: a stale request's background task that is
    // scheduled only after the refresh landed refreshes again (see
    // `a_request_that_read_the_entry_stale_does_not_refresh_it_again_once_refreshed`).
}

/// A backend whose next `get`, once armed, reads the entry and then waits for `resume` before
/// answering: a lookup that has read the entry and is still on its way back.
#[derive(Debug)]
struct PausingGet {
    inner: Arc<dyn Backend>,
    armed: AtomicBool,
    paused: Notify,
    resume: Notify,
}

impl PausingGet {
    fn new(inner: Arc<dyn Backend>) -> Arc<PausingGet> {
        Arc::new(PausingGet {
            inner,
            armed: AtomicBool::new(false),
            paused: Notify::new(),
            resume: Notify::new(),
        })
    }
}

#[async_trait::async_trait]
impl Backend for PausingGet {
    fn kind(&self) -> &'static str {
        "pausing"
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        let found = self.inner.get(key).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.paused.notify_one();
            self.resume.notified().await;
        }
        found
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.inner.get_many(keys).await
    }
    async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.inner.versions(ids).await
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.inner.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.inner.invalidate(inv).await
    }
    async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
        self.inner.delete_pattern(p, b).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.inner.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.try_lock(k, t, ttl).await
    }
    async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
        self.inner.unlock(k, t).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.inner.info().await
    }
}

// Regression (found by this suite, fixed): a stale request whose background refresh task starts after another refresh of the
// entry landed runs the handler again (a second refresh of a fresh entry): `Detached::spawn`
// (cache-core/src/cache/read.rs) becomes the leader of a new flight and calls `lead` without
// checking the entry again.
async fn a_request_that_read_the_entry_stale_does_not_refresh_it_again_once_refreshed(ctx: Ctx) {
    let backend = PausingGet::new(ctx.raw_backend());
    let cache = ctx
        .builder()
        .backend(backend.clone())
        .command_timeout(WAIT)
        .build()
        .unwrap();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_while_revalidate(MINUTE);
    let router = app(cache.clone(), origin.clone(), policy);
    let v1 = item_body(1, 1);
    assert_eq!(
        get_(&router, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );
    origin.write();
    // Wait out the TTL with HEAD requests: they are answered from the entry and never refresh.
    let deadline = Instant::now() + WAIT;
    loop {
        let head = Request::head("/items/1").body(Body::empty()).unwrap();
        let r = send(&router, head).await;
        if r.h("x-cache-status") == "STALE" {
            break;
        }
        assert_eq!(r.h("x-cache-status"), "HIT");
        assert!(
            Instant::now() < deadline,
            "the entry never went past its TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.runs(), 1);

    // B reads the stale entry and is held on its way back from the backend.
    backend.armed.store(true, Ordering::SeqCst);
    let b = spawn_get(&router, "/items/1");
    signal(&backend.paused, "B read the stale entry").await;
    // A reads it too, is answered STALE, and its background refresh stores v2.
    let a = get_at_once(&router, "/items/1", "A").await;
    assert_eq!(a.seen(), (200, "STALE", v1.as_str()));
    let deadline = Instant::now() + WAIT;
    while cache.stats().resources.get("item").map_or(0, |r| r.sets) < 2 {
        assert!(
            Instant::now() < deadline,
            "A's refresh never stored its response"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // A's refresh lands (seals its flight)
    assert_eq!(origin.runs(), 2, "A's refresh ran the handler once");
    let hit = get_(&router, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));

    // B goes on with what it read.
    backend.resume.notify_one();
    let b = tokio::time::timeout(WAIT, b).await.unwrap().unwrap();
    assert_eq!(
        b.seen(),
        (200, "STALE", v1.as_str()),
        "B read the entry stale"
    );
    // A refresh started by B now would run the handler again for an entry refreshed already.
    // Nothing signals that it did not happen: give it time to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        origin.runs(),
        2,
        "the entry was refreshed already: B's background task ran the handler again"
    );
}

async fn stale_if_error_serves_the_stored_200_on_a_5xx_but_not_on_a_404(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_if_error(MINUTE);
    let router = app(cache, origin.clone(), policy);
    let v1 = item_body(1, 1);
    assert_eq!(
        get_(&router, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );

    origin.set_mode(Mode::Fail);
    let failed = poll_until_not_hit(&router, "/items/1", &v1).await;
    assert_eq!(
        failed.seen(),
        (200, "STALE", v1.as_str()),
        "the handler answered 500 past the TTL: the stored 200 is served"
    );
    assert_eq!(origin.runs(), 2, "the handler did run");

    origin.set_mode(Mode::Missing);
    let gone = get_(&router, "/items/1").await;
    assert_eq!(
        (gone.status.as_u16(), gone.body.as_str()),
        (404, "no item 1"),
        "a 404 is the origin's answer, not a failure: it must not be replaced by the stale \
         entry (x-cache-status {})",
        gone.h("x-cache-status")
    );

    origin.write();
    origin.set_mode(Mode::Ok);
    let back = get_(&router, "/items/1").await;
    assert_eq!(back.seen(), (200, "MISS", item_body(1, 2).as_str()));
    let hit = get_(&router, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
}

on_both_backends!(
    a_response_computed_before_a_write_is_not_stored_after_it,
    a_response_computed_before_invalidate_tags_is_not_stored_after_it,
    a_request_after_a_write_never_gets_the_older_in_flight_response,
    a_cached_json_handler_computed_before_an_invalidation_is_not_stored_after_it,
    stale_while_revalidate_answers_stale_at_once_while_one_background_refresh_runs,
    stale_if_error_serves_the_stored_200_on_a_5xx_but_not_on_a_404,
    a_request_that_read_the_entry_stale_does_not_refresh_it_again_once_refreshed,
);
