#![allow(missing_docs)]
//! Fills of `cache_actix::ResponseCacheLayer` and of `#[cached]` Actix handlers returning a
//! whole `HttpResponse`, guarded against invalidations made while the handler ran, and the
//! layer's stale windows (`stale_while_revalidate`: one request refreshes inline while every
//! other is answered `STALE` at once; `stale_if_error`: the stored 200 replaces a 5xx, never a
//! 404), on Redis and memory, on actix's runtime.
//!
//! The origin is an item whose version is in an `AtomicU64`: its answer to a request is the
//! body of the version its handler read. A handler can be held (after reading) until the test
//! releases it; requests that must run concurrently are spawned on the `LocalSet`. The only
//! waits on the clock are for a 300 ms TTL to run out, polled in bounded loops.

mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use cache_actix::{ResponseCacheLayer, RoutePolicy};
use cache_core::backend::{Backend, BackendInfo, Invalidation, Put, VersionRead};
use cache_core::codec::Envelope;
use cache_core::http::{HttpRules, RequestView};
use cache_core::{cached, Cache, CacheError, CacheKey};
use common::Ctx;
use tokio::sync::Notify;

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

    async fn get(&self, id: u32) -> HttpResponse {
        let v = self.read_version().await;
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Ok => HttpResponse::Ok()
                .content_type("application/json")
                .body(item_body(id, v)),
            Mode::Fail => HttpResponse::InternalServerError().body("database down"),
            Mode::Missing => HttpResponse::NotFound().body(format!("no item {id}")),
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

async fn get_item(o: web::Data<Arc<Origin>>, id: web::Path<u32>) -> HttpResponse {
    o.get(*id).await
}

async fn put_item(o: web::Data<Arc<Origin>>) -> HttpResponse {
    o.write();
    HttpResponse::Ok().body("written")
}

/// `/items/{id}` (GET; PUT writes a new version) behind a layer caching it with `policy`,
/// tagged `item:{id}`, invalidated by a successful PUT.
async fn app(
    cache: Cache,
    origin: Arc<Origin>,
    policy: RoutePolicy,
) -> Rc<impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>>
{
    let layer = ResponseCacheLayer::builder(cache)
        .route("/items/{id}", policy.tag("item:{id}").resource("item"))
        .invalidate_on_write("/items/{id}", ["item:{id}"])
        .build();
    Rc::new(
        test::init_service(
            App::new()
                .wrap(layer)
                .app_data(web::Data::new(origin))
                .service(
                    web::resource("/items/{id}")
                        .route(web::get().to(get_item))
                        .route(web::put().to(put_item)),
                ),
        )
        .await,
    )
}

/// The layer's key for `GET path` (resource `item`).
fn layer_key(cache: &Cache, path: &str) -> CacheKey {
    HttpRules::default().key(
        cache,
        "item",
        RequestView {
            method: &axum::http::Method::GET,
            path,
            query: None,
            headers: &axum::http::HeaderMap::new(),
        },
        None,
    )
}

/// Polls the stored entry of `key` until it is past its TTL (without a request, which would
/// refresh it), or gone (then the requests that follow say what they get).
async fn wait_until_stale(cache: &Cache, key: &CacheKey) {
    let deadline = Instant::now() + WAIT;
    loop {
        let Some(raw) = cache.get_raw(key).await else {
            return;
        };
        let env = Envelope::parse(&raw).unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        if env.age_at(now_ms) > env.ttl() + Duration::from_millis(5) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the entry never went past its TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
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
        (self.status, self.h("x-cache-status"), &self.body)
    }
}

async fn send<S, B>(svc: &S, req: Request) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(svc, req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get_<S, B>(svc: &S, uri: &str) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    tokio::time::timeout(WAIT, send(svc, TestRequest::get().uri(uri).to_request()))
        .await
        .unwrap_or_else(|_| panic!("GET {uri} answered within {WAIT:?}"))
}

/// A GET that must be answered without waiting for a held handler.
async fn get_at_once<S, B>(svc: &S, uri: &str, what: &str) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    tokio::time::timeout(AT_ONCE, send(svc, TestRequest::get().uri(uri).to_request()))
        .await
        .unwrap_or_else(|_| panic!("{what}: GET {uri} waited for the handler"))
}

fn spawn_get<S, B>(svc: &Rc<S>, uri: &'static str) -> tokio::task::JoinHandle<Reply>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    let svc = svc.clone();
    actix_web::rt::spawn(async move { get_(&*svc, uri).await })
}

async fn signal(n: &Notify, what: &str) {
    tokio::time::timeout(WAIT, n.notified())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

// ------------------------------------------------------------------ guarded layer fills

/// What invalidates while the first GET's handler is held.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// `PUT /items/1` through the layer (`invalidate_on_write`).
    Put,
    /// A write outside HTTP, then `cache.invalidate_tags(["item:1"])`.
    InvalidateTags,
}

async fn a_layer_fill_racing(ctx: &Ctx, write: Write) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let svc = app(cache.clone(), origin.clone(), RoutePolicy::ttl(HOUR)).await;
    origin.hold_next();
    let first = spawn_get(&svc, "/items/1");
    signal(&origin.read, "the first GET's handler read v1").await;

    match write {
        Write::Put => {
            let put = send(&*svc, TestRequest::put().uri("/items/1").to_request()).await;
            assert_eq!((put.status, put.body.as_str()), (200, "written"));
        }
        Write::InvalidateTags => {
            origin.write();
            cache.invalidate_tags(&["item:1"]).await.unwrap();
        }
    }
    origin.release.notify_one();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(
        first.seen(),
        (200, "MISS", item_body(1, 1).as_str()),
        "the first GET's handler read v1 before the write: v1 is its answer"
    );

    let next = get_(&*svc, "/items/1").await;
    assert_eq!(
        next.seen(),
        (200, "MISS", item_body(1, 2).as_str()),
        "a response computed before the write ({write:?}) was stored after it (runs: {})",
        origin.runs()
    );
    let hit = get_(&*svc, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
    assert_eq!(origin.runs(), 2);
}

async fn a_response_computed_before_a_write_is_not_stored_after_it(ctx: Ctx) {
    a_layer_fill_racing(&ctx, Write::Put).await;
}

async fn a_response_computed_before_invalidate_tags_is_not_stored_after_it(ctx: Ctx) {
    a_layer_fill_racing(&ctx, Write::InvalidateTags).await;
}

async fn a_request_after_a_write_never_gets_the_older_in_flight_response(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let svc = app(cache.clone(), origin.clone(), RoutePolicy::ttl(HOUR)).await;
    let key = layer_key(&cache, "/items/1");
    origin.hold_next();
    let first = spawn_get(&svc, "/items/1");
    signal(&origin.read, "the first GET's handler read v1").await;

    let put = send(&*svc, TestRequest::put().uri("/items/1").to_request()).await;
    assert_eq!(put.status, 200);
    let second = spawn_get(&svc, "/items/1");
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
        (second.status, second.body.as_str()),
        (200, item_body(1, 2).as_str()),
        "a GET that began after the write returned got the response computed before it \
         (joined the handler run in flight: {joined}; x-cache-status {})",
        second.h("x-cache-status")
    );
    assert!(
        joined,
        "harness: the second GET must have joined the run in flight"
    );
    let hit = get_(&*svc, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
}

// ------------------------------------------------------------------ #[cached] HttpResponse fill

struct MacroApp {
    cache: Cache,
    origin: Arc<Origin>,
}

/// A whole `HttpResponse`, cached through the same engine and format as the layer.
#[cached(resource = "page", ttl = "1h", tags = ["pages"], cache = &app.cache)]
async fn cached_page(app: web::Data<MacroApp>, id: web::Path<u32>) -> HttpResponse {
    let version = app.origin.read_version().await;
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!("<h1>page {} v{version}</h1>", *id))
}

async fn a_cached_http_response_computed_before_an_invalidation_is_not_stored_after_it(ctx: Ctx) {
    let app = web::Data::new(MacroApp {
        cache: ctx.cache(),
        origin: Origin::new(),
    });
    let svc = Rc::new(
        test::init_service(
            App::new()
                .wrap(cache_actix::CacheContextLayer::builder().build())
                .app_data(app.clone())
                .route("/pages/{id}", web::get().to(cached_page)),
        )
        .await,
    );
    let body = |v: u64| format!("<h1>page 7 v{v}</h1>");
    app.origin.hold_next();
    let first = spawn_get(&svc, "/pages/7");
    signal(&app.origin.read, "the handler read v1").await;

    app.origin.write();
    app.cache.invalidate_tags(&["pages"]).await.unwrap();
    app.origin.release.notify_one();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.seen(), (200, "MISS", body(1).as_str()));

    let next = get_(&*svc, "/pages/7").await;
    assert_eq!(
        next.seen(),
        (200, "MISS", body(2).as_str()),
        "a #[cached] response computed before the invalidation was stored after it"
    );
    let hit = get_(&*svc, "/pages/7").await;
    assert_eq!(hit.seen(), (200, "HIT", body(2).as_str()));
    assert_eq!(app.origin.runs(), 2);
}

// ------------------------------------------------------------------ stale windows

async fn stale_while_revalidate_one_request_refreshes_while_the_others_get_stale_at_once(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_while_revalidate(MINUTE);
    let svc = app(cache.clone(), origin.clone(), policy).await;
    let key = layer_key(&cache, "/items/1");
    let v1 = item_body(1, 1);
    let v2 = item_body(1, 2);
    assert_eq!(
        get_(&*svc, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );

    // The database moves on (no invalidation); the refresh will be held once it reads.
    origin.write();
    origin.hold_next();
    wait_until_stale(&cache, &key).await;
    let refreshing = spawn_get(&svc, "/items/1");
    signal(&origin.read, "one request refreshes the entry").await;
    for n in 0..5 {
        let r = get_at_once(&*svc, "/items/1", "a request during the refresh").await;
        assert_eq!(
            r.seen(),
            (200, "STALE", v1.as_str()),
            "request {n} during the refresh"
        );
    }
    assert_eq!(origin.runs(), 2, "one refresh for every stale request");

    origin.release.notify_one();
    let refreshed = tokio::time::timeout(WAIT, refreshing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (refreshed.status, refreshed.body.as_str()),
        (200, v2.as_str()),
        "the refreshing request gets its handler's answer"
    );
    let hit = get_(&*svc, "/items/1").await;
    assert_eq!(
        hit.seen(),
        (200, "HIT", v2.as_str()),
        "after the refresh: the new body"
    );
    assert_eq!(origin.runs(), 2);
}

async fn stale_if_error_serves_the_stored_200_on_a_5xx_but_not_on_a_404(ctx: Ctx) {
    let cache = ctx.cache();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_if_error(MINUTE);
    let svc = app(cache.clone(), origin.clone(), policy).await;
    let key = layer_key(&cache, "/items/1");
    let v1 = item_body(1, 1);
    assert_eq!(
        get_(&*svc, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );

    origin.set_mode(Mode::Fail);
    wait_until_stale(&cache, &key).await;
    let failed = get_(&*svc, "/items/1").await;
    assert_eq!(
        failed.seen(),
        (200, "STALE", v1.as_str()),
        "the handler answered 500 past the TTL: the stored 200 is served"
    );
    assert_eq!(origin.runs(), 2, "the handler did run");

    origin.set_mode(Mode::Missing);
    let gone = get_(&*svc, "/items/1").await;
    assert_eq!(
        (gone.status, gone.body.as_str()),
        (404, "no item 1"),
        "a 404 is the origin's answer, not a failure: it must not be replaced by the stale \
         entry (x-cache-status {})",
        gone.h("x-cache-status")
    );

    origin.write();
    origin.set_mode(Mode::Ok);
    let back = get_(&*svc, "/items/1").await;
    assert_eq!(back.seen(), (200, "MISS", item_body(1, 2).as_str()));
    let hit = get_(&*svc, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", item_body(1, 2).as_str()));
}

// ------------------------------------------------------------------ a stale read after a refresh

/// A backend whose next `get`, once armed, reads the entry and then waits for `resume` before
/// answering: a lookup that has read the entry and is still on its way back.
#[derive(Debug)]
struct PausingGet {
    inner: Arc<dyn Backend>,
    armed: AtomicBool,
    paused: Notify,
    resume: Notify,
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

// Regression (found by this suite, fixed): a request that read the entry stale, and joins after another request's refresh of it
// landed, leads a new flight and runs the handler again inline (it waits for the handler instead
// of being answered at once, and the entry is refreshed twice): the inline refresh path of
// `Cache::read_through` (cache-core/src/cache/read.rs, `Lookup::Serve` arm) calls `lead` without
// checking the entry again.
async fn a_request_that_read_the_entry_stale_does_not_refresh_it_again_once_refreshed(ctx: Ctx) {
    let backend = Arc::new(PausingGet {
        inner: ctx.raw_backend(),
        armed: AtomicBool::new(false),
        paused: Notify::new(),
        resume: Notify::new(),
    });
    let cache = ctx
        .builder()
        .backend(backend.clone())
        .command_timeout(WAIT)
        .build()
        .unwrap();
    let origin = Origin::new();
    let policy = RoutePolicy::ttl(SHORT).stale_while_revalidate(MINUTE);
    let svc = app(cache.clone(), origin.clone(), policy).await;
    let key = layer_key(&cache, "/items/1");
    let v1 = item_body(1, 1);
    let v2 = item_body(1, 2);
    assert_eq!(
        get_(&*svc, "/items/1").await.seen(),
        (200, "MISS", v1.as_str())
    );
    origin.write();
    wait_until_stale(&cache, &key).await;

    // B reads the stale entry and is held on its way back from the backend.
    backend.armed.store(true, Ordering::SeqCst);
    let b = spawn_get(&svc, "/items/1");
    signal(&backend.paused, "B read the stale entry").await;
    // A reads it too and refreshes it inline.
    let a = get_(&*svc, "/items/1").await;
    assert_eq!((a.status, a.body.as_str()), (200, v2.as_str()));
    assert_eq!(origin.runs(), 2, "A's refresh ran the handler once");
    let hit = get_(&*svc, "/items/1").await;
    assert_eq!(hit.seen(), (200, "HIT", v2.as_str()));

    // B goes on with what it read: the entry has been refreshed meanwhile.
    backend.resume.notify_one();
    let b = tokio::time::timeout(WAIT, b).await.unwrap().unwrap();
    assert_eq!(
        origin.runs(),
        2,
        "the entry was refreshed already, yet B ran the handler again (B answered {:?})",
        b.seen()
    );
    assert_eq!(b.status, 200);
}

on_both_backends_actix!(
    a_response_computed_before_a_write_is_not_stored_after_it,
    a_response_computed_before_invalidate_tags_is_not_stored_after_it,
    a_request_after_a_write_never_gets_the_older_in_flight_response,
    a_cached_http_response_computed_before_an_invalidation_is_not_stored_after_it,
    stale_while_revalidate_one_request_refreshes_while_the_others_get_stale_at_once,
    stale_if_error_serves_the_stored_200_on_a_5xx_but_not_on_a_404,
    a_request_that_read_the_entry_stale_does_not_refresh_it_again_once_refreshed,
);
