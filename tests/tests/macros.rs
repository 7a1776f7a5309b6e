#![allow(missing_docs)]
//! `#[cached]` and `#[invalidates]`, on Redis and on the in-memory backend.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cache_core::__private::{with_request_context, RequestContext};
use cache_core::{cached, invalidates, Cache, CacheStatus, PendingInvalidation};
use common::Ctx;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
}

fn count(loads: &AtomicUsize) -> usize {
    loads.load(Ordering::SeqCst)
}

/// Runs `fut` in a request context and returns its output with the recorded outcome.
async fn observed<T>(
    fut: impl std::future::Future<Output = T>,
) -> (T, Option<cache_core::__private::Outcome>) {
    observed_with(RequestContext::default(), fut).await
}

async fn observed_with<T>(
    ctx: RequestContext,
    fut: impl std::future::Future<Output = T>,
) -> (T, Option<cache_core::__private::Outcome>) {
    let ctx = Arc::new(ctx);
    let out = with_request_context(ctx.clone(), fut).await;
    (out, ctx.take_outcome())
}

// ------------------------------------------------------------------ free functions

#[cached(resource = "trig", ttl = "1m", cache = cache, skip = [loads])]
async fn load_trig(cache: &Cache, loads: &AtomicUsize, trig_id: u32) -> Trig {
    loads.fetch_add(1, Ordering::SeqCst);
    Trig {
        id: trig_id,
        name: format!("Trig {trig_id}"),
    }
}

async fn free_fn_miss_then_hit(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    let (first, outcome) = observed(load_trig(&cache, &loads, 1)).await;
    assert_eq!(first.name, "Trig 1");
    assert_eq!(outcome.unwrap().status, CacheStatus::Miss);
    let (second, outcome) = observed(load_trig(&cache, &loads, 1)).await;
    assert_eq!(second, first);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, CacheStatus::Hit);
    assert!(outcome.key.contains(":trig:q="), "{}", outcome.key);
    assert_eq!(count(&loads), 1);
    load_trig(&cache, &loads, 2).await;
    assert_eq!(count(&loads), 2, "another argument is another key");
    assert_eq!(cache.stats().resources["trig"].hits, 1);
}

// ------------------------------------------------------------------ methods

struct Repo {
    cache: Cache,
    loads: AtomicUsize,
}

impl Repo {
    #[cached(ttl = "1m", cache = &self.cache)]
    async fn name(&self, id: u32) -> String {
        self.loads.fetch_add(1, Ordering::SeqCst);
        format!("name {id}")
    }

    #[invalidates("repo:{id}", cache = &self.cache)]
    async fn rename(&self, id: u32) {
        let _ = id;
    }

    #[cached(ttl = "1m", tags = ["repo:{id}"], cache = &self.cache)]
    async fn tagged(&self, id: u32) -> u32 {
        self.loads.fetch_add(1, Ordering::SeqCst);
        id
    }
}

async fn method_miss_then_hit(ctx: Ctx) {
    let repo = Repo {
        cache: ctx.cache(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(repo.name(7).await, "name 7");
    assert_eq!(repo.name(7).await, "name 7");
    assert_eq!(count(&repo.loads), 1);
    assert_eq!(repo.tagged(7).await, 7);
    assert_eq!(repo.tagged(7).await, 7);
    assert_eq!(count(&repo.loads), 2);
    repo.rename(7).await; // `()` counts as success
    assert_eq!(repo.tagged(7).await, 7);
    assert_eq!(count(&repo.loads), 3);
    assert_eq!(repo.name(7).await, "name 7", "untagged entry survives");
    assert_eq!(count(&repo.loads), 3);
}

// ------------------------------------------------------------------ Result / Option / unless

#[derive(Debug, PartialEq)]
struct DbError(String);

fn parse_number(s: &str) -> Result<u32, DbError> {
    s.parse().map_err(|_| DbError(format!("not a number: {s}")))
}

#[cached(ttl = "1m", cache = cache, skip = [loads])]
async fn number(cache: &Cache, loads: &AtomicUsize, text: String) -> Result<u32, DbError> {
    loads.fetch_add(1, Ordering::SeqCst);
    let n = parse_number(&text)?; // `?` works as in the original function
    if n == 13 {
        return Err(DbError("unlucky".into()));
    }
    Ok(n)
}

async fn result_errors_are_not_cached(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    for expected in 1..=2 {
        let err = number(&cache, &loads, "x".into()).await.unwrap_err();
        assert_eq!(err, DbError("not a number: x".into()));
        assert_eq!(count(&loads), expected);
    }
    assert!(number(&cache, &loads, "13".into()).await.is_err());
    assert!(number(&cache, &loads, "13".into()).await.is_err());
    assert_eq!(count(&loads), 4);
    assert_eq!(number(&cache, &loads, "5".into()).await, Ok(5));
    assert_eq!(number(&cache, &loads, "5".into()).await, Ok(5));
    assert_eq!(count(&loads), 5);
}

#[cached(ttl = "1m", lease = true, cache = cache, skip = [loads])]
async fn maybe(cache: &Cache, loads: &AtomicUsize, id: Option<u32>) -> Option<Trig> {
    loads.fetch_add(1, Ordering::SeqCst);
    id.map(|id| Trig {
        id,
        name: "t".into(),
    })
}

#[cached(ttl = "1m", cache = cache, skip = [loads], unless = |v: &Vec<u32>| v.is_empty())]
async fn list(cache: &Cache, loads: &AtomicUsize, len: u32) -> Vec<u32> {
    loads.fetch_add(1, Ordering::SeqCst);
    (0..len).collect()
}

async fn none_and_unless_are_not_cached(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    assert_eq!(maybe(&cache, &loads, None).await, None);
    assert_eq!(maybe(&cache, &loads, None).await, None);
    assert_eq!(count(&loads), 2, "None is not cached");
    assert!(maybe(&cache, &loads, Some(1)).await.is_some());
    assert!(maybe(&cache, &loads, Some(1)).await.is_some());
    assert_eq!(count(&loads), 3, "Some is cached");

    let loads = AtomicUsize::new(0);
    assert!(list(&cache, &loads, 0).await.is_empty());
    assert!(list(&cache, &loads, 0).await.is_empty());
    assert_eq!(count(&loads), 2, "`unless` values are not cached");
    assert_eq!(list(&cache, &loads, 2).await, [0, 1]);
    assert_eq!(list(&cache, &loads, 2).await, [0, 1]);
    assert_eq!(count(&loads), 3);
}

// ------------------------------------------------------------------ return shapes through aliases

/// An API error that is `Serialize + Deserialize`: cached as a plain value, `Err` would be
/// stored and served to every later caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ApiError {
    status: u16,
}

type ApiResult<T> = Result<T, ApiError>;
type Maybe<T> = Option<T>;

fn expected_trig(id: u32) -> Trig {
    Trig {
        id,
        name: format!("aliased {id}"),
    }
}

#[cached(ttl = "1m", cache = cache, skip = [loads, up])]
async fn aliased_result(
    cache: &Cache,
    loads: &AtomicUsize,
    up: &AtomicBool,
    id: u32,
) -> ApiResult<Trig> {
    loads.fetch_add(1, Ordering::SeqCst);
    if !up.load(Ordering::SeqCst) {
        return Err(ApiError { status: 503 });
    }
    Ok(expected_trig(id))
}

#[cached(ttl = "1m", cache = cache, skip = [loads, up])]
async fn aliased_option(
    cache: &Cache,
    loads: &AtomicUsize,
    up: &AtomicBool,
    id: u32,
) -> Maybe<Trig> {
    loads.fetch_add(1, Ordering::SeqCst);
    up.load(Ordering::SeqCst).then(|| expected_trig(id))
}

async fn result_alias_caches_ok_only(ctx: Ctx) {
    let cache = ctx.cache();
    let (loads, up) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (v, outcome) = observed(aliased_result(&cache, &loads, &up, 1)).await;
    assert_eq!(v, Err(ApiError { status: 503 }));
    assert_eq!(outcome.unwrap().status, CacheStatus::Miss);
    up.store(true, Ordering::SeqCst);
    assert_eq!(
        aliased_result(&cache, &loads, &up, 1).await,
        Ok(expected_trig(1)),
        "the `Err` was not cached: the body ran again"
    );
    assert_eq!(count(&loads), 2);
    up.store(false, Ordering::SeqCst);
    let (v, outcome) = observed(aliased_result(&cache, &loads, &up, 1)).await;
    assert_eq!(v, Ok(expected_trig(1)), "the `Ok` was cached");
    assert_eq!(outcome.unwrap().status, CacheStatus::Hit);
    assert_eq!(count(&loads), 2);
}

async fn option_alias_caches_some_only(ctx: Ctx) {
    let cache = ctx.cache();
    let (loads, up) = (AtomicUsize::new(0), AtomicBool::new(false));
    assert_eq!(aliased_option(&cache, &loads, &up, 1).await, None);
    up.store(true, Ordering::SeqCst);
    assert_eq!(
        aliased_option(&cache, &loads, &up, 1).await,
        Some(expected_trig(1)),
        "`None` was not cached: the body ran again"
    );
    assert_eq!(count(&loads), 2);
    up.store(false, Ordering::SeqCst);
    let (v, outcome) = observed(aliased_option(&cache, &loads, &up, 1)).await;
    assert_eq!(v, Some(expected_trig(1)), "`Some` was cached");
    assert_eq!(outcome.unwrap().status, CacheStatus::Hit);
    assert_eq!(count(&loads), 2);
}

// ------------------------------------------------------------------ #[invalidates]

#[cached(resource = "trig", ttl = "1h", tags = ["trig:{trig_id}", "trigs:list"], cache = cache, skip = [loads])]
async fn trig_page(cache: &Cache, loads: &AtomicUsize, trig_id: u32, page: u32) -> Vec<u32> {
    loads.fetch_add(1, Ordering::SeqCst);
    vec![trig_id, page]
}

#[invalidates("trig:{trig_id}", cache = cache)]
async fn add_log(cache: &Cache, trig_id: u32, fail: bool) -> Result<u32, String> {
    if fail {
        return Err("constraint violated".into());
    }
    Ok(trig_id)
}

#[invalidates("trig:{trig_id}", "trigs:list", defer = pending)]
async fn add_log_in_tx(trig_id: u32, pending: &mut PendingInvalidation) -> Result<(), String> {
    assert!(pending.is_empty(), "tags are added after the body");
    let _ = trig_id;
    Ok(())
}

/// A transaction's body: a plain `fn`, its tags collected only on `Ok`, `?` and `return` inside.
#[invalidates("trig:{trig_id}", "log:{result}", defer = pending)]
fn add_log_sync(
    trig_id: u32,
    text: &str,
    pending: &mut PendingInvalidation,
) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty".into());
    }
    let n: u32 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    Ok(trig_id * 100 + n)
}

#[invalidates("trig:{trig_id}", cache = cache)]
async fn add_log_aliased(cache: &Cache, trig_id: u32, fail: bool) -> ApiResult<u32> {
    if fail {
        return Err(ApiError { status: 409 });
    }
    Ok(trig_id)
}

/// Regression: `#[invalidates]` read the shape from the return type's name, so an `Err` of a
/// `Result` behind a type alias counted as success and invalidated.
async fn invalidates_through_a_result_alias_only_on_ok(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    assert_eq!(trig_page(&cache, &loads, 9, 1).await, vec![9, 1]);
    assert_eq!(
        add_log_aliased(&cache, 9, true).await,
        Err(ApiError { status: 409 })
    );
    assert_eq!(trig_page(&cache, &loads, 9, 1).await, vec![9, 1]);
    assert_eq!(
        count(&loads),
        1,
        "a failed write behind an alias invalidates nothing"
    );
    assert_eq!(add_log_aliased(&cache, 9, false).await, Ok(9));
    assert_eq!(trig_page(&cache, &loads, 9, 1).await, vec![9, 1]);
    assert_eq!(count(&loads), 2, "a successful one does");
}

async fn invalidates_only_on_success(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    trig_page(&cache, &loads, 1, 1).await;
    trig_page(&cache, &loads, 1, 2).await;
    trig_page(&cache, &loads, 2, 1).await;
    assert_eq!(count(&loads), 3);

    assert!(add_log(&cache, 1, true).await.is_err());
    trig_page(&cache, &loads, 1, 1).await;
    assert_eq!(count(&loads), 3, "a failed write invalidates nothing");

    assert_eq!(add_log(&cache, 1, false).await, Ok(1));
    trig_page(&cache, &loads, 1, 1).await;
    trig_page(&cache, &loads, 1, 2).await;
    assert_eq!(count(&loads), 5, "both pages of trig 1 reload");
    trig_page(&cache, &loads, 2, 1).await;
    assert_eq!(count(&loads), 5, "trig 2 is untouched");

    let mut pending = cache.defer();
    add_log_in_tx(2, &mut pending).await.unwrap();
    assert_eq!(pending.tags(), ["trig:2", "trigs:list"]);
    trig_page(&cache, &loads, 2, 1).await;
    assert_eq!(count(&loads), 5, "deferred: nothing happens before commit");
    pending.commit().await.unwrap();
    trig_page(&cache, &loads, 2, 1).await;
    trig_page(&cache, &loads, 1, 1).await;
    assert_eq!(count(&loads), 7, "`trigs:list` tags every page");

    // A plain `fn` with `defer`: tags only on `Ok`, `{result}` formatted from the value.
    let mut pending = cache.defer();
    assert_eq!(add_log_sync(2, "", &mut pending), Err("empty".into()));
    assert_eq!(
        add_log_sync(2, "x", &mut pending),
        Err("not a number: x".into())
    );
    assert!(pending.is_empty(), "failed bodies collect nothing");
    assert_eq!(add_log_sync(2, "7", &mut pending), Ok(207));
    assert_eq!(pending.tags(), ["trig:2", "log:207"]);
    pending.commit().await.unwrap();
    trig_page(&cache, &loads, 2, 1).await;
    trig_page(&cache, &loads, 1, 1).await;
    assert_eq!(count(&loads), 8, "only trig 2 reloads");
}

// ------------------------------------------------------------------ users, keys, versions

#[cached(ttl = "1m", cache = cache, user = who, skip = [who, loads])]
async fn feed(cache: &Cache, loads: &AtomicUsize, who: &str) -> String {
    loads.fetch_add(1, Ordering::SeqCst);
    format!("feed of {who}")
}

async fn per_user_entries_are_not_shared(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    let (alice, outcome) = observed(feed(&cache, &loads, "alice")).await;
    assert_eq!(alice, "feed of alice");
    assert!(outcome.unwrap().key.ends_with(":feed:user=alice"));
    assert_eq!(feed(&cache, &loads, "bob").await, "feed of bob");
    assert_eq!(feed(&cache, &loads, "alice").await, "feed of alice");
    assert_eq!(count(&loads), 2);
}

/// Stand-ins for the Axum/Actix extractors.
struct Path<T>(T);
struct State<T>(T);
struct App {
    cache: Cache,
    loads: AtomicUsize,
}

#[cached(resource = "trig", key = "{trig_id}:{page}", version = 2, cache = &app.cache)]
async fn handler(State(app): State<&App>, Path((trig_id, page)): Path<(u32, u32)>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("{trig_id}/{page}")
}

#[cached(resource = "search", key = [q], cache = &app.cache)]
async fn search(State(app): State<&App>, q: String, request_id: u64) -> usize {
    let _ = request_id;
    app.loads.fetch_add(1, Ordering::SeqCst);
    q.len()
}

async fn key_templates_lists_and_handler_patterns(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: AtomicUsize::new(0),
    };
    let (v, outcome) = observed(handler(State(&app), Path((7, 2)))).await;
    assert_eq!(v, "7/2");
    let key = outcome.unwrap().key;
    assert!(key.ends_with(":trig#v2:7:2"), "{key}");
    handler(State(&app), Path((7, 2))).await;
    handler(State(&app), Path((7, 3))).await;
    assert_eq!(count(&app.loads), 2);

    let app = App {
        cache: ctx.cache(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(search(State(&app), "abc".into(), 1).await, 3);
    assert_eq!(search(State(&app), "abc".into(), 2).await, 3);
    assert_eq!(count(&app.loads), 1, "`request_id` is not in `key = [q]`");
}

// ------------------------------------------------------------------ path parameters

/// A stand-in for actix-web's `web::Path<T>`: not `Serialize`, derefs to the value.
mod web {
    pub(crate) struct Path<T>(pub(crate) T);

    impl<T> std::ops::Deref for Path<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }
}

/// A stand-in for axum's `Query<T>`: not a path, so a hashed parameter.
struct Query<T>(T);

#[derive(Serialize)]
struct PageParams {
    trig: u32,
    page: u32,
}

#[cached(resource = "trig", cache = &app.cache)]
async fn by_id(State(app): State<&App>, Path(id): Path<u32>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("trig {id}")
}

#[cached(resource = "page", cache = &app.cache)]
async fn by_pair(
    State(app): State<&App>,
    Path((trig, page)): Path<(u32, u32)>,
    Query(sort): Query<String>,
) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("{trig}/{page} by {sort}")
}

#[cached(resource = "page", cache = &app.cache)]
async fn by_struct(State(app): State<&App>, path: web::Path<PageParams>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("{}/{}", path.trig, path.page)
}

#[cached(resource = "name", cache = &app.cache)]
async fn by_name(State(app): State<&App>, Path(name): Path<String>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("name {name}")
}

#[cached(resource = "name", cache = &app.cache)]
async fn by_names(State(app): State<&App>, path: web::Path<(String, String)>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    let (a, b) = &*path;
    format!("names {a} {b}")
}

#[cached(resource = "list", cache = &app.cache)]
async fn by_list(State(app): State<&App>, Path(ids): Path<Vec<u32>>) -> String {
    app.loads.fetch_add(1, Ordering::SeqCst);
    format!("{ids:?}")
}

/// Without `key`, what comes from the URL path is readable id segments, in argument order,
/// before the hashed parameters of the other arguments; a path value with `:` is escaped and
/// never collides with two segments; a value with no readable form is hashed.
async fn path_parameters_are_readable_id_segments_in_the_key(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: AtomicUsize::new(0),
    };
    let prefix = app
        .cache
        .key("x")
        .build()
        .as_str()
        .strip_suffix(":x")
        .unwrap()
        .to_owned();
    let key_of = |outcome: Option<cache_core::__private::Outcome>| outcome.unwrap().key;

    let (v, outcome) = observed(by_id(State(&app), Path(123))).await;
    assert_eq!(v, "trig 123");
    assert_eq!(key_of(outcome), format!("{prefix}:trig:123"));
    let (v, outcome) = observed(by_id(State(&app), Path(124))).await;
    assert_eq!(
        (v.as_str(), key_of(outcome)),
        ("trig 124", format!("{prefix}:trig:124"))
    );
    let (v, outcome) = observed(by_id(State(&app), Path(123))).await;
    assert_eq!(v, "trig 123");
    assert_eq!(outcome.unwrap().status, CacheStatus::Hit);
    assert_eq!(count(&app.loads), 2, "two ids, two entries");

    let (v, outcome) = observed(by_pair(State(&app), Path((123, 2)), Query("name".into()))).await;
    assert_eq!(v, "123/2 by name");
    let expected = app
        .cache
        .key("page")
        .id(123)
        .id(2)
        .param("sort", "\"name\"")
        .build();
    assert_eq!(key_of(outcome), expected.as_str());
    assert!(expected
        .as_str()
        .starts_with(&format!("{prefix}:page:123:2:q=")));
    let (v, _) = observed(by_pair(State(&app), Path((123, 2)), Query("date".into()))).await;
    assert_eq!(v, "123/2 by date", "the query is in the key");

    let (v, outcome) = observed(by_struct(
        State(&app),
        web::Path(PageParams { trig: 5, page: 3 }),
    ))
    .await;
    assert_eq!(v, "5/3");
    assert_eq!(key_of(outcome), format!("{prefix}:page:5:3"));

    // `1:2` in one segment, `1` and `2` in two: two keys, each with its own body.
    let loads = count(&app.loads);
    let (one, k1) = observed(by_name(State(&app), Path("1:2".into()))).await;
    let (two, k2) = observed(by_names(State(&app), web::Path(("1".into(), "2".into())))).await;
    let (k1, k2) = (key_of(k1), key_of(k2));
    assert_eq!((one.as_str(), two.as_str()), ("name 1:2", "names 1 2"));
    assert_eq!(k1, format!("{prefix}:name:1%3A2"));
    assert_eq!(k2, format!("{prefix}:name:1:2"));
    let (one_again, _) = observed(by_name(State(&app), Path("1:2".into()))).await;
    let (two_again, _) = observed(by_names(State(&app), web::Path(("1".into(), "2".into())))).await;
    assert_eq!((one_again, two_again), (one, two));
    assert_eq!(count(&app.loads), loads + 2);
    // Control characters are escaped; an over-long value gives a hashed key of bounded length.
    let (_, k) = observed(by_name(State(&app), Path("a\nb".into()))).await;
    assert_eq!(key_of(k), format!("{prefix}:name:a%0Ab"));
    let long = "x".repeat(1000);
    let (v, k) = observed(by_name(State(&app), Path(long.clone()))).await;
    assert_eq!(v, format!("name {long}"));
    let k = key_of(k);
    assert!(k.len() <= 256 && k.contains(":name:h="), "{k}");

    // A `Vec` has no fixed number of segments: hashed.
    let (_, k) = observed(by_list(State(&app), Path(vec![1, 2]))).await;
    assert_eq!(
        key_of(k),
        app.cache.key("list").param("ids", "[1,2]").build().as_str()
    );
}

/// A tuple of serializable values is not a response tuple: it is cached as a value.
#[cached(resource = "pair", cache = cache, skip = [loads])]
async fn pair(cache: &Cache, loads: &AtomicUsize, id: u32) -> (u32, String) {
    loads.fetch_add(1, Ordering::SeqCst);
    (id, format!("trig {id}"))
}

async fn serializable_tuples_are_cached_as_values(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    assert_eq!(pair(&cache, &loads, 1).await, (1, "trig 1".to_owned()));
    let (v, outcome) = observed(pair(&cache, &loads, 1)).await;
    assert_eq!(v, (1, "trig 1".to_owned()));
    assert_eq!(outcome.unwrap().status, CacheStatus::Hit);
    assert_eq!(count(&loads), 1);
}

// ------------------------------------------------------------------ what is in the default key

/// Serializable arguments whose types the old name-based handle rule left out of the key
/// (`Arc<..>`, a name ending in `State`): two calls that differ only in them must not share an
/// entry.
#[derive(Debug, Serialize)]
struct Filter {
    tag: String,
    min: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
enum ViewState {
    Open,
    Archived,
}

fn expected_filtered(id: u32, filter: &Filter, region: &str, view: ViewState) -> Vec<String> {
    (filter.min..filter.min + 2)
        .map(|n| format!("{id}/{region}/{view:?}/{}-{n}", filter.tag))
        .collect()
}

#[cached(ttl = "1m", cache = cache, skip = [loads])]
async fn filtered(
    cache: &Cache,
    loads: &AtomicUsize,
    id: u32,
    filter: Arc<Filter>,
    region: &Arc<str>,
    view: ViewState,
) -> Vec<String> {
    loads.fetch_add(1, Ordering::SeqCst);
    expected_filtered(id, &filter, region, view)
}

async fn arc_and_state_named_arguments_are_in_the_key(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    let (a, b) = (
        Arc::new(Filter {
            tag: "a".into(),
            min: 1,
        }),
        Arc::new(Filter {
            tag: "b".into(),
            min: 5,
        }),
    );
    let (eu, us): (Arc<str>, Arc<str>) = ("eu".into(), "us".into());
    let open = ViewState::Open;
    let calls = [
        (a.clone(), eu.clone(), open),
        (b.clone(), eu.clone(), open),
        (a.clone(), us.clone(), open),
        (a.clone(), eu.clone(), ViewState::Archived),
    ];
    for round in 0..2 {
        for (filter, region, view) in &calls {
            assert_eq!(
                filtered(&cache, &loads, 7, filter.clone(), region, *view).await,
                expected_filtered(7, filter, region, *view),
                "round {round}: {filter:?} {region} {view:?}"
            );
        }
    }
    assert_eq!(
        count(&loads),
        calls.len(),
        "one entry per distinct argument set"
    );
    // `Arc<Filter>` is keyed by the `Filter` inside: an equal filter in another `Arc` hits.
    let same_as_a = Arc::new(Filter {
        tag: "a".into(),
        min: 1,
    });
    let (v, outcome) = observed(filtered(&cache, &loads, 7, same_as_a, &eu, open)).await;
    assert_eq!(v, expected_filtered(7, &a, &eu, open));
    assert_eq!(outcome.unwrap().status, CacheStatus::Hit);
}

/// Stand-ins for axum's `Extension<T>` and actix-web's `web::Data<T>` (`State` is above).
struct Extension<T>(T);
struct Data<T>(T);

/// A handle that is not `Serialize`.
struct Handle(&'static str);

/// Serializable, so with a name-based or missing rule a different value would be another key.
#[derive(Serialize)]
struct Session(u32);

#[cached(resource = "handles", ttl = "1m", cache = store, skip = [trace, loads])]
#[allow(clippy::too_many_arguments)]
async fn with_handles(
    State(state): State<Handle>,
    data: Data<&Handle>,
    Extension(session): Extension<Session>,
    ext: &Extension<Handle>,
    store: Option<&Cache>,
    loads: &AtomicUsize,
    trace: String,
    id: u32,
) -> String {
    loads.fetch_add(1, Ordering::SeqCst);
    format!(
        "{id} {} {} {} {} {trace}",
        state.0, data.0 .0, session.0, ext.0 .0
    )
}

async fn handles_cache_argument_and_skip_are_left_out(ctx: Ctx) {
    let (one, two) = (ctx.cache(), ctx.cache()); // two instances on the same storage
    let loads = AtomicUsize::new(0);
    let (h1, h2) = (Handle("h1"), Handle("h2"));
    let (v, first) = observed(with_handles(
        State(Handle("s1")),
        Data(&h1),
        Extension(Session(1)),
        &Extension(Handle("e1")),
        Some(&one),
        &loads,
        "t1".into(),
        7,
    ))
    .await;
    assert_eq!(v, "7 s1 h1 1 e1 t1");
    let first = first.unwrap();
    assert_eq!(first.status, CacheStatus::Miss);
    assert!(first.key.contains(":handles:q="), "{}", first.key);
    let (v, second) = observed(with_handles(
        State(Handle("s2")),
        Data(&h2),
        Extension(Session(2)),
        &Extension(Handle("e2")),
        Some(&two),
        &loads,
        "t2".into(),
        7,
    ))
    .await;
    let second = second.unwrap();
    assert_eq!(
        (v.as_str(), second.status, &second.key),
        ("7 s1 h1 1 e1 t1", CacheStatus::Hit, &first.key),
        "handles, the cache argument and `skip`ped arguments do not change the key"
    );
    assert_eq!(count(&loads), 1);
    let (v, third) = observed(with_handles(
        State(Handle("s2")),
        Data(&h2),
        Extension(Session(2)),
        &Extension(Handle("e2")),
        Some(&two),
        &loads,
        "t2".into(),
        8,
    ))
    .await;
    assert_eq!(v, "8 s2 h2 2 e2 t2");
    assert_ne!(third.unwrap().key, first.key, "`id` is in the key");
    assert_eq!(count(&loads), 2);
}

// ------------------------------------------------------------------ cache selection

#[cached(ttl = "1m", cache = which, skip = [which, loads])]
async fn selected(which: Option<&Cache>, loads: &AtomicUsize, id: u32) -> u32 {
    loads.fetch_add(1, Ordering::SeqCst);
    id
}

async fn cache_expression_selects_the_instance(ctx: Ctx) {
    let (one, two) = (
        ctx.cache(),
        ctx.builder().namespace("other").build().unwrap(),
    );
    let loads = AtomicUsize::new(0);
    selected(Some(&one), &loads, 1).await;
    selected(Some(&two), &loads, 1).await;
    assert_eq!(count(&loads), 2, "each cache has its own entries");
    selected(Some(&one), &loads, 1).await;
    selected(Some(&two), &loads, 1).await;
    assert_eq!(count(&loads), 2);
    selected(None, &loads, 1).await;
    selected(None, &loads, 1).await;
    assert_eq!(count(&loads), 4, "no cache: the body runs every time");
}

// ------------------------------------------------------------------ request context

// Not `lease = true`: with a lease, the engine's double-check after taking the lease serves the
// fresh entry even on a bypass (reported to the engine author).
#[cached(ttl = "1m", stale_while_revalidate = "30s", stale_if_error = "10m", cache = cache, skip = [loads])]
async fn refreshed(cache: &Cache, loads: &AtomicUsize) -> u32 {
    loads.fetch_add(1, Ordering::SeqCst) as u32
}

async fn bypass_and_outcome_from_the_request_context(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = AtomicUsize::new(0);
    assert_eq!(refreshed(&cache, &loads).await, 0);
    let (v, outcome) = observed(refreshed(&cache, &loads)).await;
    let outcome = outcome.unwrap();
    assert_eq!((v, outcome.status), (0, CacheStatus::Hit));
    assert!(outcome.ttl > std::time::Duration::from_secs(50));
    let (v, outcome) =
        observed_with(RequestContext::new(true, None), refreshed(&cache, &loads)).await;
    assert_eq!((v, outcome.unwrap().status), (1, CacheStatus::Bypass));
    assert_eq!(
        refreshed(&cache, &loads).await,
        1,
        "the bypass refreshed the entry"
    );
}

on_both_backends!(
    free_fn_miss_then_hit,
    method_miss_then_hit,
    result_errors_are_not_cached,
    none_and_unless_are_not_cached,
    invalidates_only_on_success,
    invalidates_through_a_result_alias_only_on_ok,
    per_user_entries_are_not_shared,
    key_templates_lists_and_handler_patterns,
    path_parameters_are_readable_id_segments_in_the_key,
    serializable_tuples_are_cached_as_values,
    cache_expression_selects_the_instance,
    bypass_and_outcome_from_the_request_context,
    arc_and_state_named_arguments_are_in_the_key,
    handles_cache_argument_and_skip_are_left_out,
    result_alias_caches_ok_only,
    option_alias_caches_some_only,
);
// The same suite over TLS (rustls, the test CA given to the cache).
on_tls_backend!(
    free_fn_miss_then_hit,
    method_miss_then_hit,
    result_errors_are_not_cached,
    none_and_unless_are_not_cached,
    invalidates_only_on_success,
    invalidates_through_a_result_alias_only_on_ok,
    per_user_entries_are_not_shared,
    key_templates_lists_and_handler_patterns,
    cache_expression_selects_the_instance,
    bypass_and_outcome_from_the_request_context,
    arc_and_state_named_arguments_are_in_the_key,
    handles_cache_argument_and_skip_are_left_out,
    result_alias_caches_ok_only,
    option_alias_caches_some_only,
);

// ------------------------------------------------------------------ process-wide default

static DEFAULT_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m")]
async fn with_default(id: u32) -> u32 {
    DEFAULT_LOADS.fetch_add(1, Ordering::SeqCst);
    id * 2
}

#[invalidates("default:{id}")]
async fn invalidate_default(id: u32) {
    let _ = id;
}

#[cached(ttl = "1m", tags = ["default:{id}"])]
async fn tagged_default(id: u32) -> u32 {
    DEFAULT_LOADS.fetch_add(1, Ordering::SeqCst);
    id
}

/// The only test of this binary that uses the process-wide default.
#[tokio::test]
async fn default_cache_is_used_once_installed() {
    assert_eq!(with_default(1).await, 2);
    assert_eq!(with_default(1).await, 2);
    assert_eq!(
        DEFAULT_LOADS.load(Ordering::SeqCst),
        2,
        "no default: pass-through"
    );
    invalidate_default(1).await; // no default: nothing to do, no panic
    cache_core::install_default(Cache::memory()).unwrap();
    with_default(1).await;
    with_default(1).await;
    assert_eq!(DEFAULT_LOADS.load(Ordering::SeqCst), 3);
    tagged_default(1).await;
    tagged_default(1).await;
    assert_eq!(DEFAULT_LOADS.load(Ordering::SeqCst), 4);
    invalidate_default(1).await;
    tagged_default(1).await;
    assert_eq!(DEFAULT_LOADS.load(Ordering::SeqCst), 5);
}

// ------------------------------------------------------------------ generated futures

#[test]
fn generated_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = Cache::memory();
    let loads = AtomicUsize::new(0);
    assert_send(&load_trig(&cache, &loads, 1));
    assert_send(&number(&cache, &loads, String::new()));
    assert_send(&add_log(&cache, 1, false));
}

// ------------------------------------------------------------------ hygiene

/// The generated code uses absolute paths only: shadowing prelude names and `core` in the
/// user's module changes nothing.
#[allow(dead_code, non_camel_case_types)]
mod hygiene {
    use ::cache_core::{cached, invalidates, Cache};
    use ::std::sync::atomic::{AtomicUsize, Ordering};

    type Result = ();
    struct Option;
    struct Vec;
    struct String;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    struct Box;
    struct Duration;
    struct Policy;
    mod core {}
    mod std {}
    mod cache_core {}

    #[cached(ttl = "1m", tags = ["h:{id}"], cache = cache, skip = [loads])]
    pub(super) async fn shadowed(
        cache: &Cache,
        loads: &AtomicUsize,
        id: u32,
    ) -> ::std::result::Result<u32, ::std::string::String> {
        loads.fetch_add(1, Ordering::SeqCst);
        ::std::result::Result::Ok(id)
    }

    #[invalidates("h:{id}", cache = cache)]
    pub(super) async fn shadowed_write(
        cache: &Cache,
        id: u32,
    ) -> ::std::result::Result<(), ::std::string::String> {
        let _ = id;
        ::std::result::Result::Ok(())
    }
}

#[tokio::test]
async fn hygiene_shadowed_names_do_not_matter() {
    let cache = Cache::memory();
    let loads = AtomicUsize::new(0);
    assert_eq!(hygiene::shadowed(&cache, &loads, 1).await, Ok(1));
    assert_eq!(hygiene::shadowed(&cache, &loads, 1).await, Ok(1));
    assert_eq!(count(&loads), 1);
    hygiene::shadowed_write(&cache, 1).await.unwrap();
    hygiene::shadowed(&cache, &loads, 1).await.unwrap();
    assert_eq!(count(&loads), 2);
}
