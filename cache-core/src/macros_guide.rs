//! A guide to `#[cached]` and `#[invalidates]`, one runnable example per option.
//!
//! Every example runs on the in-memory backend ([`Cache::memory`](crate::Cache::memory)),
//! passed with `cache = ...`, and counts the calls of the function body (the "loader") to show
//! what the option changes. The option table and the key layout are in the docs of the
//! `cache-macros` crate; the compile-time rules are at the [end](#compile-time-rules).
//!
//! # `#[cached(...)]`
//!
//! ## `resource`
//! The resource segment of the key, and the name statistics are kept under. Default: the
//! function's name.
//! ```
//! use cache_core::{cached, Cache};
//!
//! #[cached(resource = "trig", ttl = "1m", cache = cache)]
//! async fn load_trig(cache: &Cache, id: u32) -> String {
//!     format!("trig {id}")
//! }
//!
//! #[cached(ttl = "1m", cache = cache)]
//! async fn load_user(cache: &Cache, id: u32) -> String {
//!     format!("user {id}")
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! load_trig(&cache, 1).await;
//! load_trig(&cache, 1).await;
//! load_user(&cache, 1).await;
//! let stats = cache.stats();
//! assert_eq!(stats.resources["trig"].hits, 1);
//! assert_eq!(stats.resources["load_user"].misses, 1);
//! # });
//! ```
//!
//! ## `ttl`
//! How long an entry is fresh, parsed at compile time: `"90s"`, `"5m"`, `"24h"`, `"1h30m"`,
//! `"250ms"`, or bare seconds `"3600"`. Default: the cache's default TTL.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "100ms", cache = cache)]
//! async fn quote(cache: &Cache) -> u32 {
//!     LOADS.fetch_add(1, SeqCst) as u32
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(quote(&cache).await, 0);
//! assert_eq!(quote(&cache).await, 0); // fresh: served from the cache
//! tokio::time::sleep(std::time::Duration::from_millis(200)).await;
//! assert_eq!(quote(&cache).await, 1); // expired: the body runs again
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## The default key: path parameters and the other arguments
//! Without `key`, an argument that comes from the URL path (a type whose last path segment is
//! `Path` with one generic argument: axum's `Path<T>`, actix-web's `web::Path<T>`) is readable
//! id segments, in argument order: a scalar is one segment, a tuple or struct of scalars one per
//! element. Every other argument is a hashed parameter named after the name it binds. Each
//! segment is escaped by [`KeyBuilder::id`](crate::KeyBuilder::id), so the value `1:2` is the
//! segment `1%3A2`, never the two segments `1` and `2`.
//! ```
//! use cache_core::{cached, Cache};
//!
//! pub struct Path<T>(pub T); // as `axum::extract::Path`
//! pub struct Query<T>(pub T); // as `axum::extract::Query`
//!
//! #[cached(resource = "trig", ttl = "1m", cache = cache)]
//! async fn trig_logs(cache: &Cache, Path((id, page)): Path<(u32, u32)>, Query(sort): Query<String>) -> String {
//!     format!("trig {id}, page {page}, by {sort}")
//! }
//!
//! #[cached(resource = "trig", ttl = "1m", cache = cache)]
//! async fn trig(cache: &Cache, Path(id): Path<String>) -> String {
//!     format!("trig {id}")
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig_logs(&cache, Path((123, 2)), Query("date".into())).await;
//! // The entry is at `<namespace>:v1:trig:123:2:q=<hash of sort="date">`:
//! let key = cache.key("trig").id(123).id(2).param("sort", "\"date\"").build();
//! assert!(key.as_str().contains(":trig:123:2:q="));
//! assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("trig 123, page 2, by date"));
//!
//! trig(&cache, Path("1:2".into())).await;
//! let key = cache.key("trig").id("1:2").build();
//! assert!(key.as_str().ends_with(":trig:1%3A2"));
//! assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("trig 1:2"));
//! # });
//! ```
//!
//! ## `key` (template)
//! `key = "{a}:{b}"`: the key's id segments, formatted from arguments with `Display`. Only the
//! named arguments are in the key.
//! ```
//! use cache_core::{cached, Cache};
//!
//! #[cached(resource = "trig", key = "{trig_id}:{page}", ttl = "1m", cache = cache)]
//! async fn trig_page(cache: &Cache, trig_id: u32, page: u32) -> Vec<u32> {
//!     vec![trig_id, page]
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig_page(&cache, 7, 2).await;
//! // The entry is at `<namespace>:v1:trig:7:2`, the key the builder makes:
//! let key = cache.key("trig").id(7).id(2).build();
//! assert!(key.as_str().ends_with(":trig:7:2"));
//! assert_eq!(cache.get::<Vec<u32>>(&key).await, Some(vec![7, 2]));
//! # });
//! ```
//!
//! ## `key` (list)
//! `key = [a, b]`: only these arguments, as hashed parameters; the others do not change the key.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(key = [q, page], ttl = "1m", cache = cache)]
//! async fn search(cache: &Cache, q: String, page: u32, request_id: u64) -> usize {
//!     let _ = request_id;
//!     LOADS.fetch_add(1, SeqCst);
//!     q.len() + page as usize
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! search(&cache, "rust".into(), 1, 1001).await;
//! search(&cache, "rust".into(), 1, 1002).await; // another request id: same key
//! assert_eq!(LOADS.load(SeqCst), 1);
//! search(&cache, "rust".into(), 2, 1003).await; // another page: another key
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `tags`
//! Tags of the entry (`{name}` formatted from arguments); invalidating a tag removes every
//! entry that carries it.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1h", tags = ["trig:{trig_id}", "trigs:list"], cache = cache)]
//! async fn trig_page(cache: &Cache, trig_id: u32, page: u32) -> Vec<u32> {
//!     LOADS.fetch_add(1, SeqCst);
//!     vec![trig_id, page]
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! for (trig, page) in [(1, 1), (1, 2), (2, 1)] {
//!     trig_page(&cache, trig, page).await;
//! }
//! assert_eq!(LOADS.load(SeqCst), 3);
//! cache.invalidate_tags(&["trig:1"]).await.unwrap();
//! for (trig, page) in [(1, 1), (1, 2), (2, 1)] {
//!     trig_page(&cache, trig, page).await;
//! }
//! assert_eq!(LOADS.load(SeqCst), 5, "both pages of trig 1 reloaded, trig 2 did not");
//! cache.invalidate_tags(&["trigs:list"]).await.unwrap();
//! trig_page(&cache, 2, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 6);
//! # });
//! ```
//!
//! ## `user`
//! Per-user entries: `user = <expr>` (any `Display`, evaluated before the body; it may use the
//! arguments) adds a `user=..` segment, so two users never share an entry.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! struct Claims {
//!     sub: String,
//! }
//!
//! #[cached(ttl = "1m", user = claims.sub, skip = [claims], cache = cache)]
//! async fn feed(cache: &Cache, claims: &Claims) -> String {
//!     LOADS.fetch_add(1, SeqCst);
//!     format!("feed of {}", claims.sub)
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! let (alice, bob) = (Claims { sub: "alice".into() }, Claims { sub: "bob".into() });
//! assert_eq!(feed(&cache, &alice).await, "feed of alice");
//! assert_eq!(feed(&cache, &bob).await, "feed of bob");
//! assert_eq!(feed(&cache, &alice).await, "feed of alice");
//! assert_eq!(LOADS.load(SeqCst), 2);
//! let key = cache.key("feed").user("alice").build();
//! assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("feed of alice"));
//! # });
//! ```
//!
//! ## `version`
//! The resource's schema version (`#v2` in the key): bump it when the cached type changes
//! shape, and old entries are never read as the new type.
//! ```
//! use serde::{Deserialize, Serialize};
//! use cache_core::{cached, Cache};
//!
//! #[derive(Serialize, Deserialize)]
//! struct TrigV2 {
//!     id: u32,
//!     title: String,
//! }
//!
//! #[cached(resource = "trig", key = "{id}", ttl = "1m", cache = cache)]
//! async fn trig_v1(cache: &Cache, id: u32) -> String {
//!     format!("trig {id}")
//! }
//!
//! #[cached(resource = "trig", key = "{id}", version = 2, ttl = "1m", cache = cache)]
//! async fn trig_v2(cache: &Cache, id: u32) -> TrigV2 {
//!     TrigV2 { id, title: format!("trig {id}") }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig_v1(&cache, 7).await;
//! assert_eq!(trig_v2(&cache, 7).await.title, "trig 7"); // not the v1 entry
//! let key = cache.key("trig").version(2).id(7).build();
//! assert!(key.as_str().ends_with(":trig#v2:7"));
//! assert_eq!(cache.stats().resources["trig"].misses, 2);
//! # });
//! ```
//!
//! ## `unless`
//! A closure over `&ReturnType` (the type as written); `true` returns the value without
//! storing it.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1m", unless = |v: &Vec<u32>| v.is_empty(), cache = cache)]
//! async fn logs(cache: &Cache, trig_id: u32) -> Vec<u32> {
//!     LOADS.fetch_add(1, SeqCst);
//!     if trig_id == 0 { vec![] } else { vec![trig_id] }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! logs(&cache, 0).await;
//! logs(&cache, 0).await;
//! assert_eq!(LOADS.load(SeqCst), 2, "empty lists are not stored");
//! logs(&cache, 1).await;
//! logs(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 3);
//! # });
//! ```
//!
//! ## `stale_while_revalidate`
//! After the TTL, for this long, one caller refreshes the entry while the others are served the
//! stale value at once (instead of waiting for the refresh).
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use std::time::Duration;
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "100ms", stale_while_revalidate = "1m", cache = cache)]
//! async fn price(cache: &Cache) -> u32 {
//!     let n = LOADS.fetch_add(1, SeqCst) as u32;
//!     tokio::time::sleep(Duration::from_millis(50)).await; // a slow query
//!     n
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(price(&cache).await, 0);
//! tokio::time::sleep(Duration::from_millis(200)).await; // expired, within the window
//! let (a, b) = tokio::join!(price(&cache), price(&cache));
//! let mut got = [a, b];
//! got.sort();
//! assert_eq!(got, [0, 1], "one caller refreshed, the other got the stale value at once");
//! assert_eq!(price(&cache).await, 1);
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `stale_if_error`
//! After the TTL, for this long, a failing body (`Err`) is answered with the stale value.
//! ```
//! use std::time::Duration;
//! use cache_core::{cached, Cache};
//!
//! // `db_up` simulates an outage; it is skipped, so both calls use the same entry.
//! #[cached(ttl = "100ms", stale_if_error = "10m", skip = [db_up], cache = cache)]
//! async fn rate(cache: &Cache, db_up: bool) -> Result<u32, String> {
//!     if db_up { Ok(42) } else { Err("database down".into()) }
//! }
//!
//! #[cached(ttl = "100ms", skip = [db_up], cache = cache)]
//! async fn rate_strict(cache: &Cache, db_up: bool) -> Result<u32, String> {
//!     if db_up { Ok(42) } else { Err("database down".into()) }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(rate(&cache, true).await, Ok(42));
//! assert_eq!(rate_strict(&cache, true).await, Ok(42));
//! tokio::time::sleep(Duration::from_millis(200)).await;
//! assert_eq!(rate(&cache, false).await, Ok(42), "the stale value instead of the error");
//! assert!(rate_strict(&cache, false).await.is_err(), "no window: the error");
//! # });
//! ```
//!
//! ## `lease`
//! Before running the body on a miss, take a lease in the backend, so that of several
//! instances (processes sharing Redis) only one runs the body; the others wait for its value.
//! Within one instance, concurrent misses of a key already share one body run.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cache_core::backend::MemoryBackend;
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1m", lease = true, cache = cache)]
//! async fn report(cache: &Cache) -> u32 {
//!     LOADS.fetch_add(1, SeqCst);
//!     tokio::time::sleep(Duration::from_millis(100)).await; // an expensive query
//!     7
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // Two "instances": two caches on one shared backend (Redis in production).
//! let shared = Arc::new(MemoryBackend::new(1 << 20));
//! let one = Cache::builder().namespace("app").backend(shared.clone()).build().unwrap();
//! let two = Cache::builder().namespace("app").backend(shared).build().unwrap();
//! let (a, b) = tokio::join!(report(&one), report(&two));
//! assert_eq!((a, b), (7, 7));
//! assert_eq!(LOADS.load(SeqCst), 1, "the second instance waited for the first");
//! # });
//! ```
//!
//! ## `cache`
//! Which cache: a `Cache`, `&Cache`, `Arc<Cache>` or an `Option` of those (`None`: the body
//! runs uncached). Without it, the process-wide default ([`install_default`](crate::install_default))
//! is used, and without a default the body runs uncached (and `#[invalidates]` invalidates
//! nothing): the first such call of the process logs the warning `cache_no_default_cache`, so
//! a forgotten `install_default` does not go unnoticed (test `no_default_cache.rs`).
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! struct Repo {
//!     cache: Option<Cache>,
//!     loads: AtomicUsize,
//! }
//!
//! impl Repo {
//!     #[cached(ttl = "1m", cache = &self.cache)]
//!     async fn name(&self, id: u32) -> String {
//!         self.loads.fetch_add(1, SeqCst);
//!         format!("name {id}")
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cached = Repo { cache: Some(Cache::memory()), loads: AtomicUsize::new(0) };
//! cached.name(1).await;
//! cached.name(1).await;
//! assert_eq!(cached.loads.load(SeqCst), 1);
//!
//! let uncached = Repo { cache: None, loads: AtomicUsize::new(0) };
//! uncached.name(1).await;
//! uncached.name(1).await;
//! assert_eq!(uncached.loads.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `skip`
//! Arguments left out of the default key. Every argument is in it except handle extractors
//! (`State<T>`, `Extension<T>`, `web::Data<T>`: a type whose last path segment is `State`,
//! `Data` or `Extension` with generic arguments), the argument named by `cache = <argument>`,
//! and those listed in `skip`. Nothing else is left out by its type: a database pool or a client
//! must be skipped (it is not `Serialize`, and the compile error on it says so), and an
//! `Arc<Filter>` is keyed by its `Filter`.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! /// A connection pool: not `Serialize`, and not part of what the function returns.
//! struct PgPool;
//!
//! #[cached(ttl = "1m", skip = [db, trace_id], cache = cache)]
//! async fn trig(cache: &Cache, db: &PgPool, id: u32, trace_id: String) -> String {
//!     LOADS.fetch_add(1, SeqCst);
//!     let _ = (db, trace_id);
//!     format!("trig {id}")
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig(&cache, &PgPool, 1, "a1".into()).await;
//! trig(&cache, &PgPool, 1, "b2".into()).await;
//! assert_eq!(LOADS.load(SeqCst), 1);
//! trig(&cache, &PgPool, 2, "c3".into()).await; // `id` is in the key
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `crate`
//! The path of `cache_core` when it is reached through a re-export.
//! ```
//! // A platform crate that re-exports `cache_core` (as `pub use cache_core;` would).
//! mod platform {
//!     pub mod cache_core {
//!         pub use ::cache_core::*;
//!     }
//! }
//!
//! use platform::cache_core::{cached, Cache};
//!
//! #[cached(ttl = "1m", cache = cache, crate = "platform::cache_core")]
//! async fn answer(cache: &Cache) -> u32 {
//!     42
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(answer(&cache).await, 42);
//! assert_eq!(answer(&cache).await, 42);
//! assert_eq!(cache.stats().resources["answer"].hits, 1);
//! # });
//! ```
//!
//! ## Return types
//! `Result<T, E>` caches `Ok` only, `Option<T>` caches `Some` only, also behind a type alias
//! (`type ApiResult<T> = Result<T, ApiError>`). `Json<T>` (axum's or actix-web's, any tuple
//! struct `Json(pub T)`), alone or as the `Ok`/`Some` type, is cached as `T` and re-wrapped on
//! a hit; it must be written out in the return type (behind an alias it is a compile error).
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! pub struct Json<T>(pub T); // as `axum::Json` or `actix_web::web::Json`
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1m", cache = cache)]
//! async fn trig(cache: &Cache, id: u32) -> Result<Json<Vec<u32>>, u16> {
//!     LOADS.fetch_add(1, SeqCst);
//!     if id == 0 {
//!         return Err(404);
//!     }
//!     Ok(Json(vec![id]))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(trig(&cache, 0).await.err(), Some(404));
//! assert_eq!(trig(&cache, 0).await.err(), Some(404));
//! assert_eq!(trig(&cache, 1).await.ok().map(|j| j.0), Some(vec![1]));
//! assert_eq!(trig(&cache, 1).await.ok().map(|j| j.0), Some(vec![1]));
//! assert_eq!(LOADS.load(SeqCst), 3, "errors are not cached");
//! # });
//! ```
//!
//! Through a type alias:
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, Cache};
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct ApiError(u16);
//!
//! type ApiResult<T> = Result<T, ApiError>;
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1m", cache = cache)]
//! async fn trig(cache: &Cache, id: u32) -> ApiResult<String> {
//!     if LOADS.fetch_add(1, SeqCst) == 0 {
//!         return Err(ApiError(503)); // the first call fails
//!     }
//!     Ok(format!("trig {id}"))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! assert_eq!(trig(&cache, 1).await, Err(ApiError(503)));
//! assert_eq!(trig(&cache, 1).await.as_deref(), Ok("trig 1")); // the error was not cached
//! assert_eq!(trig(&cache, 1).await.as_deref(), Ok("trig 1")); // `Ok` was
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## Whole HTTP responses
//! A handler whose return type is itself a finished response is cached **whole** (status,
//! headers, body): `Response`, `impl IntoResponse` or a response tuple (`(StatusCode, Json<T>)`,
//! `(StatusCode, HeaderMap, Json<T>)`, `(HeaderMap, Json<T>)`, ...) on Axum (with `cache-axum`
//! as a dependency), `HttpResponse`, `impl Responder` or `(R, StatusCode)` on Actix (with
//! `cache-actix`). A tuple handler returns the response its tuple turns into
//! (`axum::response::Response`, `actix_web::HttpResponse`). The response is stored in the format
//! of the response layers and a hit is served from the stored bytes. Only a `200` with storable
//! headers is stored; another status (`201`, `404`, `500`) is not (the next request runs the
//! handler again), and a response with `Set-Cookie`, `Cache-Control: private/no-store/no-cache`,
//! `Vary: *` or a body over 1 MiB is returned as it is. `unless` does not apply. Behind
//! `CacheContextLayer` the response gets `X-Cache-*` headers, and its stored `ETag` answers
//! `If-None-Match` with `304`. The rules are listed in the `cache-macros` crate docs ("Whole HTTP
//! responses").
//!
//! (This example needs `cache-axum` and `axum`, which `cache-core` does not depend on: it runs
//! as a doctest of the `cache_axum` crate docs (section "`#[cached]` handlers"), and the
//! behaviour is tested in
//! `tests/tests/macros_http.rs`.)
//! ```ignore
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use axum::extract::{Path, State};
//! use axum::http::StatusCode;
//! use axum::response::IntoResponse;
//! use axum::{routing::get, Router};
//! use cache_core::{cached, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(resource = "page", ttl = "1m", tags = ["page:{id}"], cache = &cache)]
//! async fn page(State(cache): State<Cache>, Path(id): Path<u32>) -> impl IntoResponse {
//!     LOADS.fetch_add(1, SeqCst);
//!     if id == 0 {
//!         return (StatusCode::NOT_FOUND, [("x-served-by", "page")], "no page".to_owned());
//!     }
//!     (StatusCode::OK, [("x-served-by", "page")], format!("<h1>page {id}</h1>"))
//! }
//!
//! // In an application: a route like any other, behind the context layer.
//! let cache = Cache::memory();
//! let _app: Router = Router::new()
//!     .route("/pages/{id}", get(page))
//!     .with_state(cache.clone())
//!     .layer(cache_axum::CacheContextLayer::builder().build());
//!
//! // What a request gets: status, the handler's header, body.
//! async fn served(resp: impl IntoResponse) -> (StatusCode, String, String) {
//!     let resp = resp.into_response();
//!     let status = resp.status();
//!     let by = resp.headers()["x-served-by"].to_str().unwrap().to_owned();
//!     let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
//!     (status, by, String::from_utf8(body.to_vec()).unwrap())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let first = served(page(State(cache.clone()), Path(7)).await).await;
//! assert_eq!(first, (StatusCode::OK, "page".into(), "<h1>page 7</h1>".into()));
//! let hit = served(page(State(cache.clone()), Path(7)).await).await;
//! assert_eq!(hit, first); // the same response, from the cache
//! assert_eq!(LOADS.load(SeqCst), 1);
//! for _ in 0..2 {
//!     let missing = served(page(State(cache.clone()), Path(0)).await).await;
//!     assert_eq!(missing.0, StatusCode::NOT_FOUND);
//! }
//! assert_eq!(LOADS.load(SeqCst), 3, "a 404 is not stored");
//! # });
//! ```
//!
//! # `#[invalidates(...)]`
//!
//! ## tags
//! One or more tag templates, first; invalidated after the body returns, unless it returned
//! `Err`.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, invalidates, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1h", tags = ["trig:{id}"], cache = cache)]
//! async fn trig(cache: &Cache, id: u32) -> u32 {
//!     LOADS.fetch_add(1, SeqCst);
//!     id
//! }
//!
//! #[invalidates("trig:{id}", cache = cache)]
//! async fn add_log(cache: &Cache, id: u32, valid: bool) -> Result<(), String> {
//!     if !valid {
//!         return Err("invalid log".into());
//!     }
//!     Ok(())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig(&cache, 1).await;
//! assert!(add_log(&cache, 1, false).await.is_err());
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 1, "a failed write invalidates nothing");
//! add_log(&cache, 1, true).await.unwrap();
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `cache`
//! As for `#[cached]`: which cache to invalidate in (default: the process-wide default).
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, invalidates, Cache};
//!
//! struct Service {
//!     cache: Cache,
//!     loads: AtomicUsize,
//! }
//!
//! impl Service {
//!     #[cached(ttl = "1h", tags = ["user:{id}"], cache = &self.cache)]
//!     async fn user(&self, id: u32) -> String {
//!         self.loads.fetch_add(1, SeqCst);
//!         format!("user {id}")
//!     }
//!
//!     #[invalidates("user:{id}", cache = &self.cache)]
//!     async fn rename(&self, id: u32) {
//!         let _ = id; // `()` counts as success
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let svc = Service { cache: Cache::memory(), loads: AtomicUsize::new(0) };
//! svc.user(1).await;
//! svc.rename(1).await;
//! svc.user(1).await;
//! assert_eq!(svc.loads.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `defer`
//! `defer = <&mut PendingInvalidation>`: add the tags to it instead of invalidating now, e.g.
//! inside a transaction; [`commit`](crate::PendingInvalidation::commit) them after the commit.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, invalidates, Cache, PendingInvalidation};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(ttl = "1h", tags = ["trig:{id}"], cache = cache)]
//! async fn trig(cache: &Cache, id: u32) -> u32 {
//!     LOADS.fetch_add(1, SeqCst);
//!     id
//! }
//!
//! #[invalidates("trig:{id}", defer = pending)]
//! async fn add_log_in_tx(id: u32, pending: &mut PendingInvalidation) -> Result<(), String> {
//!     let _ = id;
//!     Ok(())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig(&cache, 1).await;
//! let mut pending = cache.defer();
//! add_log_in_tx(1, &mut pending).await.unwrap();
//! assert_eq!(pending.tags(), ["trig:1"]);
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 1, "nothing happens before the commit");
//! pending.commit().await.unwrap();
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 2);
//! # });
//! ```
//!
//! ## `{result}` in tags
//! `{result}` or `{result.field}` (nested and tuple fields too: `{result.owner.0}`) formats the
//! success value (the `Ok` or `Some` value, or the value itself): for a create, whose id is
//! only known afterwards. Arguments take fields as well (`{input.name}`). With `None` the
//! result tags are skipped.
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use cache_core::{cached, invalidates, Cache};
//!
//! static LOADS: AtomicUsize = AtomicUsize::new(0);
//!
//! struct NewTrig {
//!     name: String,
//! }
//!
//! struct Created {
//!     id: u32,
//! }
//!
//! #[cached(ttl = "1h", tags = ["trig:{id}"], cache = cache)]
//! async fn trig(cache: &Cache, id: u32) -> Option<u32> {
//!     LOADS.fetch_add(1, SeqCst);
//!     (id == 1).then_some(id) // `None` (not found) is not cached
//! }
//!
//! #[invalidates("trig:{result.id}", "names:{input.name}", cache = cache)]
//! async fn create(cache: &Cache, input: NewTrig) -> Result<Created, String> {
//!     let _ = input.name.len();
//!     Ok(Created { id: 1 })
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! trig(&cache, 1).await;
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 1);
//! create(&cache, NewTrig { name: "one".into() }).await.unwrap();
//! trig(&cache, 1).await;
//! assert_eq!(LOADS.load(SeqCst), 2, "`trig:1` was invalidated");
//! # });
//! ```
//!
//! ## `crate`
//! As for `#[cached]`.
//!
//! # Compile-time rules
//!
//! Each mistake is a compile error on the offending token that names the rule and the fix.
//!
//! A function that is not `async`:
//! ```compile_fail
//! #[cache_core::cached(ttl = "1m")]
//! fn trig(id: u32) -> u32 {
//!     id
//! }
//! ```
//!
//! An unknown option (the error lists the valid ones):
//! ```compile_fail
//! #[cache_core::cached(ttl = "1m", expire = "1m")]
//! async fn trig(id: u32) -> u32 {
//!     id
//! }
//! ```
//!
//! An option given twice:
//! ```compile_fail
//! #[cache_core::cached(ttl = "1m", ttl = "2m")]
//! async fn trig(id: u32) -> u32 {
//!     id
//! }
//! ```
//!
//! A malformed duration (units `d`, `h`, `m`, `s`, `ms`, largest first, lowercase):
//! ```compile_fail
//! #[cache_core::cached(ttl = "1.5h")]
//! async fn trig(id: u32) -> u32 {
//!     id
//! }
//! ```
//!
//! A `{name}` that is not an argument (in `key`, `tags` or `#[invalidates]` tags):
//! ```compile_fail
//! #[cache_core::cached(ttl = "1m", tags = ["trig:{trig_id}"])]
//! async fn trig(id: u32) -> u32 {
//!     id
//! }
//! ```
//!
//! A key argument that is not `Serialize` (reported on the argument; the message says to add
//! it to `skip = [..]` if it does not change the result, or to name the key with `key = [..]`):
//! ```compile_fail,E0277
//! struct PgPool;
//!
//! #[cache_core::cached(ttl = "1m")]
//! async fn trig(db: &PgPool, id: u32) -> u32 {
//!     let _ = db;
//!     id
//! }
//! ```
//!
//! A `Json<T>` behind a type alias (write `Result<Json<T>, E>` out, or return `T`):
//! ```compile_fail,E0277
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Trig { id: u32 }
//! pub struct Json<T>(pub T);
//! type JsonResult<T> = Result<Json<T>, u16>;
//!
//! #[cache_core::cached(ttl = "1m")]
//! async fn trig(id: u32) -> JsonResult<Trig> {
//!     Ok(Json(Trig { id }))
//! }
//! ```
//!
//! A cached value that is not `Serialize + DeserializeOwned` (reported on the return type):
//! ```compile_fail,E0277
//! struct Trig {
//!     id: u32,
//! }
//!
//! #[cache_core::cached(ttl = "1m")]
//! async fn trig(id: u32) -> Result<Trig, String> {
//!     Ok(Trig { id })
//! }
//! ```
//!
//! An opaque return that is not a whole response (`impl Display`; `impl IntoResponse` and
//! `impl Responder` are), a `dyn Trait`, or a whole response inside a `Result` / `Option`
//! (`Result<(StatusCode, Json<T>), E>`, `Option<HttpResponse>`): it cannot be stored. Return
//! `Json<T>` or a serializable type, or the whole response itself (`Response`,
//! `impl IntoResponse`, a response tuple, `HttpResponse`, `impl Responder`, `(R, StatusCode)`):
//! ```compile_fail
//! #[cache_core::cached(ttl = "1m")]
//! async fn trig(id: u32) -> impl std::fmt::Display {
//!     id
//! }
//! ```
