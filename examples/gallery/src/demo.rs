//! The demo walk: real HTTP requests against a running gallery, each step printed with its status
//! and `X-Cache-*` headers **and asserted**; the walk stops with an error at the first failed
//! assertion. Used by the `gallery-demo` binary and by the end-to-end test.
//!
//! Steps: flush (admin API), miss, hit, bypass (query flag and `Cache-Control: no-cache`), 304
//! (`If-None-Match`), a `#[cached]` item and list, writes (tags update, create, delete) each
//! followed by the misses that show fresh data (and the hit that shows a write did *not*
//! invalidate what it could not change), per-user lists for two users (different keys, no
//! leakage), the merged view (shared community fragments), the stats and metrics endpoints, and
//! finally Redis stopped with the service still answering (`X-Cache-Status: SKIP`).
//!
//! [`freshness_check`] adds a randomized check: warm every read a write can affect, write, and
//! compare each cached read with a bypassed one (fresh from the database).

use std::fmt;
use std::future::Future;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::UserGallery;
use crate::model::{ContentItem, Page};

/// A failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoError(pub String);

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DemoError {}

fn fail<T>(msg: impl Into<String>) -> Result<T, DemoError> {
    Err(DemoError(msg.into()))
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), DemoError> {
    if cond {
        Ok(())
    } else {
        fail(msg())
    }
}

/// What to walk against.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Base URL, e.g. `http://127.0.0.1:3001`.
    pub base: String,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Print each step to stdout.
    pub print: bool,
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: bytes::Bytes,
}

impl Reply {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Cache-Status`, or `-`.
    pub fn cache_status(&self) -> &str {
        self.header("x-cache-status").unwrap_or("-")
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// When it is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DemoError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            DemoError(format!(
                "body is not the expected JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            ))
        })
    }
}

/// A small HTTP client for the gallery.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    base: String,
    print: bool,
}

impl Api {
    /// A client for `base`.
    pub fn new(base: &str, print: bool) -> Api {
        Api {
            client: Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            print,
        }
    }

    /// Sends a request; `headers` are `(name, value)` pairs.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Reply, DemoError> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| DemoError(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| DemoError(format!("header value: {e}")))?;
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| DemoError(format!("{method} {path}: {e}")))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| DemoError(format!("{method} {path}: reading the body: {e}")))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn get(&self, path: &str, headers: &[(&str, String)]) -> Result<Reply, DemoError> {
        self.send(Method::GET, path, headers, None).await
    }

    fn print(&self, step: &str, method: &str, path: &str, r: &Reply) {
        if !self.print {
            return;
        }
        let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
        println!(
            "  [ok] {step}\n       {method} {path} -> {} | X-Cache-Status: {} | X-Cache-Key: {} | \
             X-Cache-Age: {} | X-Cache-TTL: {}{}",
            r.status.as_u16(),
            h("x-cache-status"),
            h("x-cache-key"),
            h("x-cache-age"),
            h("x-cache-ttl"),
            r.header("x-cache-fragments")
                .map(|f| format!(" | X-Cache-Fragments: {f}"))
                .unwrap_or_default()
        );
    }
}

fn user(id: i64) -> (&'static str, String) {
    ("x-user-id", id.to_string())
}

/// Checks status and `X-Cache-Status`, prints the step.
fn check(
    api: &Api,
    step: &str,
    method: &str,
    path: &str,
    r: &Reply,
    status: u16,
    cache: Option<&str>,
) -> Result<(), DemoError> {
    ensure(r.status.as_u16() == status, || {
        format!(
            "{step}: {method} {path}: expected status {status}, got {} ({})",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        )
    })?;
    if let Some(expected) = cache {
        ensure(r.cache_status() == expected, || {
            format!(
                "{step}: {method} {path}: expected X-Cache-Status {expected}, got {}",
                r.cache_status()
            )
        })?;
    }
    api.print(step, method, path, r);
    Ok(())
}

/// What the walk saw.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Steps passed.
    pub steps: usize,
    /// The cache backend the service reported.
    pub backend: String,
    /// Whether the Redis-down step ran.
    pub redis_stopped: bool,
}

/// Runs the walk. `stop_redis`, when given and the service uses Redis, is called near the end
/// to stop the Redis server (e.g. `SHUTDOWN NOSAVE`, or killing a test server); the service must
/// then still answer, with `X-Cache-Status: SKIP`.
///
/// # Errors
/// The first failed assertion or transport error.
pub async fn run<F, Fut>(
    opts: &DemoOptions,
    stop_redis: Option<F>,
) -> Result<DemoSummary, DemoError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let api = Api::new(&opts.base, opts.print);
    let admin = [("authorization", format!("Bearer {}", opts.admin_token))];
    let mut steps = 0usize;
    macro_rules! step {
        ($name:expr, $method:literal, $path:expr, $reply:expr, $status:expr, $cache:expr) => {{
            let r = $reply;
            check(&api, $name, $method, &$path, &r, $status, $cache)?;
            steps += 1;
            r
        }};
    }
    let say = |s: &str| {
        if opts.print {
            println!("\n== {s}");
        }
    };

    say("The service");
    let r = step!(
        "what is running",
        "GET",
        "/",
        api.get("/", &[]).await?,
        200,
        None
    );
    let info: Value = r.json()?;
    let backend = info["cache_backend"].as_str().unwrap_or("?").to_owned();
    ensure(info["cache_enabled"] == Value::Bool(true), || {
        "the demo needs caching on (CACHE_ENABLED is false)".into()
    })?;
    if opts.print {
        println!("       backend: {backend}, database: {}", info["database"]);
    }

    say("Admin API: flush the namespace so the walk starts cold");
    let r = step!(
        "flush without a token is refused",
        "DELETE",
        "/admin/cache",
        api.send(Method::DELETE, "/admin/cache", &[], None).await?,
        401,
        None
    );
    drop(r);
    let r = step!(
        "flush with the bearer token",
        "DELETE",
        "/admin/cache",
        api.send(Method::DELETE, "/admin/cache", &admin, None)
            .await?,
        200,
        None
    );
    let flushed: Value = r.json()?;
    ensure(flushed["deleted"].is_u64(), || {
        format!("flush reply: {flushed}")
    })?;

    say("GET /gallery: whole-response cache (ResponseCacheLayer)");
    let miss = step!(
        "first request: MISS",
        "GET",
        "/gallery",
        api.get("/gallery", &[]).await?,
        200,
        Some("MISS")
    );
    let etag = miss
        .header("etag")
        .ok_or_else(|| DemoError("the MISS carries no ETag".into()))?
        .to_owned();
    ensure(miss.header("x-cache-key").is_some(), || {
        "no X-Cache-Key".into()
    })?;
    let gallery: Page<ContentItem> = miss.json()?;
    ensure(!gallery.items.is_empty(), || "the gallery is empty".into())?;
    let hit = step!(
        "second request: HIT",
        "GET",
        "/gallery",
        api.get("/gallery", &[]).await?,
        200,
        Some("HIT")
    );
    ensure(hit.body == miss.body, || {
        "the HIT body differs from the MISS body".into()
    })?;
    let ttl: u64 = hit
        .header("x-cache-ttl")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| DemoError("the HIT has no X-Cache-TTL".into()))?;
    ensure(ttl > 0 && ttl <= 300, || {
        format!("X-Cache-TTL {ttl} not in 1..=300")
    })?;
    ensure(hit.header("x-cache-age").is_some(), || {
        "the HIT has no X-Cache-Age".into()
    })?;
    let r = step!(
        "bypass with ?cache_bypass=1",
        "GET",
        "/gallery?cache_bypass=1",
        api.get("/gallery?cache_bypass=1", &[]).await?,
        200,
        Some("BYPASS")
    );
    ensure(r.body == miss.body, || "the bypassed body differs".into())?;
    step!(
        "bypass with Cache-Control: no-cache",
        "GET",
        "/gallery",
        api.get("/gallery", &[("cache-control", "no-cache".into())])
            .await?,
        200,
        Some("BYPASS")
    );
    let r = step!(
        "revalidation: If-None-Match answered 304 from the cache",
        "GET",
        "/gallery",
        api.get("/gallery", &[("if-none-match", etag.clone())])
            .await?,
        304,
        Some("HIT")
    );
    ensure(r.body.is_empty(), || "a 304 with a body".into())?;

    // The item and owner the writes use: the hottest item of the gallery (engaged, public).
    let x = gallery.items[0].clone();
    let a = x.owner_id;
    let other = gallery
        .items
        .iter()
        .map(|i| i.owner_id)
        .find(|&o| o != a)
        .unwrap_or(if a == 1 { 2 } else { 1 });
    let b = other;

    say("GET /content/{id}: #[cached] query function, shared entry, authorization per request");
    let item_path = format!("/content/{}", x.id);
    step!(
        "item: MISS",
        "GET",
        item_path,
        api.get(&item_path, &[]).await?,
        200,
        Some("MISS")
    );
    let r = step!(
        "item: HIT",
        "GET",
        item_path,
        api.get(&item_path, &[]).await?,
        200,
        Some("HIT")
    );
    ensure(r.json::<ContentItem>()? == x, || {
        "the item differs from the gallery's".into()
    })?;

    let nonce = format!("demo-{:x}", fastrand::u64(..));
    let tag_path = format!("/content?tag={nonce}");
    say("GET /content?tag=...: #[cached] on the canonical filter (a new tag: no items yet)");
    let r = step!(
        "tag list: MISS",
        "GET",
        tag_path,
        api.get(&tag_path, &[]).await?,
        200,
        Some("MISS")
    );
    ensure(r.json::<Page<ContentItem>>()?.total == 0, || {
        "a new tag already has items".into()
    })?;
    let canonical = format!("/content?page=1&tag={}", nonce.to_uppercase());
    let r = step!(
        "an equivalent query (other case, explicit page 1): the same entry, HIT",
        "GET",
        canonical,
        api.get(&canonical, &[]).await?,
        200,
        Some("HIT")
    );
    ensure(r.json::<Page<ContentItem>>()?.total == 0, || {
        "hit body".into()
    })?;

    say("Write: PUT /content/{id}/tags (invalidates content:{id}, tag:{old and new}, user:{owner}:items, gallery, ...)");
    let mut new_tags = x.tags.clone();
    new_tags.push(nonce.clone());
    let tags_path = format!("{item_path}/tags");
    step!(
        "someone else may not edit it",
        "PUT",
        tags_path,
        api.send(
            Method::PUT,
            &tags_path,
            &[user(b)],
            Some(serde_json::json!({ "tags": new_tags }))
        )
        .await?,
        403,
        None
    );
    let r = step!(
        "the owner adds a tag",
        "PUT",
        tags_path,
        api.send(
            Method::PUT,
            &tags_path,
            &[user(a)],
            Some(serde_json::json!({ "tags": new_tags }))
        )
        .await?,
        200,
        None
    );
    ensure(r.json::<ContentItem>()?.tags.contains(&nonce), || {
        "the write's reply lacks the tag".into()
    })?;
    let r = step!(
        "item after the write: MISS, fresh",
        "GET",
        item_path,
        api.get(&item_path, &[]).await?,
        200,
        Some("MISS")
    );
    ensure(r.json::<ContentItem>()?.tags.contains(&nonce), || {
        "stale item: the new tag is missing".into()
    })?;
    let r = step!(
        "tag list after the write: MISS, fresh",
        "GET",
        tag_path,
        api.get(&tag_path, &[]).await?,
        200,
        Some("MISS")
    );
    let list: Page<ContentItem> = r.json()?;
    ensure(list.total == 1 && list.items[0].id == x.id, || {
        format!("stale tag list: {} items", list.total)
    })?;
    let r = step!(
        "gallery after the write (the item is on it): MISS, fresh",
        "GET",
        "/gallery",
        api.get("/gallery", &[]).await?,
        200,
        Some("MISS")
    );
    let g: Page<ContentItem> = r.json()?;
    ensure(
        g.items
            .iter()
            .any(|i| i.id == x.id && i.tags.contains(&nonce)),
        || "stale gallery: the item's new tag is missing".into(),
    )?;
    let ga = step!(
        "gallery again: HIT",
        "GET",
        "/gallery",
        api.get("/gallery", &[]).await?,
        200,
        Some("HIT")
    );

    say("Per-user lists: #[cached(user = ...)] on the handler, authorization in an extractor");
    let a_list = format!("/users/{a}/content_items");
    let r = step!(
        "user A's own items: MISS",
        "GET",
        a_list,
        api.get(&a_list, &[user(a)]).await?,
        200,
        Some("MISS")
    );
    let a_items: Page<ContentItem> = r.json()?;
    let key_a = r.header("x-cache-key").unwrap_or_default().to_owned();
    ensure(key_a.contains(&format!("user={a}")), || {
        format!("key {key_a} has no user={a}")
    })?;
    ensure(a_items.items.iter().all(|i| i.owner_id == a), || {
        "A's list has someone else's item".into()
    })?;
    step!(
        "user A's own items: HIT",
        "GET",
        a_list,
        api.get(&a_list, &[user(a)]).await?,
        200,
        Some("HIT")
    );
    let b_list = format!("/users/{b}/content_items");
    let r = step!(
        "user B's own items: MISS (another key)",
        "GET",
        b_list,
        api.get(&b_list, &[user(b)]).await?,
        200,
        Some("MISS")
    );
    let key_b = r.header("x-cache-key").unwrap_or_default().to_owned();
    ensure(
        key_b != key_a && key_b.contains(&format!("user={b}")),
        || format!("keys {key_a} / {key_b}"),
    )?;
    let b_items: Page<ContentItem> = r.json()?;
    ensure(b_items.items.iter().all(|i| i.owner_id == b), || {
        "B's list has someone else's item".into()
    })?;
    step!(
        "user B asking for A's list: 403, before any cache lookup",
        "GET",
        a_list,
        api.get(&a_list, &[user(b)]).await?,
        403,
        None
    );
    step!(
        "no X-User-Id: 401",
        "GET",
        a_list,
        api.get(&a_list, &[]).await?,
        401,
        None
    );
    let a_auto = format!("/users/{a}/content_items_auto");
    step!(
        "user A's auto items: MISS",
        "GET",
        a_auto,
        api.get(&a_auto, &[user(a)]).await?,
        200,
        Some("MISS")
    );
    let r = step!(
        "user A's auto items: HIT",
        "GET",
        a_auto,
        api.get(&a_auto, &[user(a)]).await?,
        200,
        Some("HIT")
    );
    ensure(
        r.json::<Page<ContentItem>>()?
            .items
            .iter()
            .all(|i| i.owner_id == a && i.source == "auto"),
        || "auto list".into(),
    )?;

    say("Write: POST /content (a new item has no views or likes: the gallery is not invalidated)");
    let r = step!(
        "user A creates an item",
        "POST",
        "/content",
        api.send(
            Method::POST,
            "/content",
            &[user(a)],
            Some(serde_json::json!({
                "title": "Demo item", "generation_type": "image", "tags": [nonce], "is_public": true
            }))
        )
        .await?,
        201,
        None
    );
    let y: ContentItem = r.json()?;
    let r = step!(
        "A's list after the create: MISS, fresh",
        "GET",
        a_list,
        api.get(&a_list, &[user(a)]).await?,
        200,
        Some("MISS")
    );
    let after: Page<ContentItem> = r.json()?;
    ensure(
        after.total == a_items.total + 1 && after.items[0].id == y.id,
        || {
            format!(
                "stale list: total {} (before {}), first {:?}",
                after.total,
                a_items.total,
                after.items.first().map(|i| i.id)
            )
        },
    )?;
    let r = step!(
        "tag list after the create: MISS, fresh",
        "GET",
        tag_path,
        api.get(&tag_path, &[]).await?,
        200,
        Some("MISS")
    );
    ensure(r.json::<Page<ContentItem>>()?.total == 2, || {
        "stale tag list after the create".into()
    })?;
    let r = step!(
        "B's list: still a HIT (another user's write)",
        "GET",
        b_list,
        api.get(&b_list, &[user(b)]).await?,
        200,
        Some("HIT")
    );
    ensure(
        r.body
            == api
                .get(&format!("{b_list}?cache_bypass=1"), &[user(b)])
                .await?
                .body,
        || "B's list is stale".into(),
    )?;
    let r = step!(
        "gallery: still a HIT (the create cannot change it)",
        "GET",
        "/gallery",
        api.get("/gallery", &[]).await?,
        200,
        Some("HIT")
    );
    ensure(r.body == ga.body, || "gallery body changed".into())?;
    let fresh = api.get("/gallery?cache_bypass=1", &[]).await?;
    ensure(fresh.body == r.body, || {
        "the cached gallery differs from the database's".into()
    })?;

    say("Write: DELETE /content/{id}");
    let y_path = format!("/content/{}", y.id);
    step!(
        "the new item: MISS",
        "GET",
        y_path,
        api.get(&y_path, &[]).await?,
        200,
        Some("MISS")
    );
    step!(
        "the new item: HIT",
        "GET",
        y_path,
        api.get(&y_path, &[]).await?,
        200,
        Some("HIT")
    );
    step!(
        "someone else may not delete it",
        "DELETE",
        y_path,
        api.send(Method::DELETE, &y_path, &[user(b)], None).await?,
        403,
        None
    );
    step!(
        "the owner deletes it",
        "DELETE",
        y_path,
        api.send(Method::DELETE, &y_path, &[user(a)], None).await?,
        204,
        None
    );
    step!(
        "the deleted item: 404 at once",
        "GET",
        y_path,
        api.get(&y_path, &[]).await?,
        404,
        None
    );
    let r = step!(
        "A's list after the delete: MISS, fresh",
        "GET",
        a_list,
        api.get(&a_list, &[user(a)]).await?,
        200,
        Some("MISS")
    );
    ensure(
        r.json::<Page<ContentItem>>()?.total == a_items.total,
        || "stale list after the delete".into(),
    )?;
    let r = step!(
        "restore the item's tags",
        "PUT",
        tags_path,
        api.send(
            Method::PUT,
            &tags_path,
            &[user(a)],
            Some(serde_json::json!({ "tags": x.tags }))
        )
        .await?,
        200,
        None
    );
    ensure(r.json::<ContentItem>()?.tags == x.tags, || "restore".into())?;
    let r = step!(
        "tag list: MISS, empty again",
        "GET",
        tag_path,
        api.get(&tag_path, &[]).await?,
        200,
        Some("MISS")
    );
    ensure(r.json::<Page<ContentItem>>()?.total == 0, || {
        "stale tag list after the restore".into()
    })?;

    say("Merged view: GET /users/{id}/gallery, own and community fragments per type (get_many_or_load)");
    let fa = format!("/users/{a}/gallery");
    let r = step!(
        "A's merged view",
        "GET",
        fa,
        api.get(&fa, &[user(a)]).await?,
        200,
        None
    );
    ensure(r.cache_status() == "MISS", || {
        format!("A's first merged view: {}", r.cache_status())
    })?;
    let merged: UserGallery = r.json()?;
    ensure(merged.sections.len() == 4, || "4 sections".into())?;
    ensure(
        merged
            .sections
            .iter()
            .all(|s| s.own.iter().all(|i| i.owner_id == a)),
        || "someone else's item among A's own".into(),
    )?;
    let r = step!(
        "A's merged view again: every fragment from the cache",
        "GET",
        fa,
        api.get(&fa, &[user(a)]).await?,
        200,
        Some("HIT")
    );
    ensure(
        r.header("x-cache-fragments") == Some("total=8, loaded=0"),
        || format!("{:?}", r.header("x-cache-fragments")),
    )?;
    // A's own items (private ones included): never for a shared cache.
    ensure(
        r.header("cache-control")
            .is_some_and(|v| v.contains("private")),
        || format!("merged view Cache-Control: {:?}", r.header("cache-control")),
    )?;
    let fb = format!("/users/{b}/gallery");
    let r = step!(
        "B's merged view: only B's 4 own fragments are loaded, the community ones are shared",
        "GET",
        fb,
        api.get(&fb, &[user(b)]).await?,
        200,
        Some("MISS")
    );
    ensure(
        r.header("x-cache-fragments") == Some("total=8, loaded=4"),
        || format!("{:?}", r.header("x-cache-fragments")),
    )?;
    let mb: UserGallery = r.json()?;
    ensure(
        mb.sections
            .iter()
            .zip(&merged.sections)
            .all(|(x, y)| x.community == y.community),
        || "the community fragments differ between users".into(),
    )?;
    ensure(
        mb.sections
            .iter()
            .all(|s| s.own.iter().all(|i| i.owner_id == b)),
        || "leak into B's view".into(),
    )?;
    let one = format!("{fb}?type=audio");
    let r = step!(
        "one type only: 2 fragments",
        "GET",
        one,
        api.get(&one, &[user(b)]).await?,
        200,
        Some("HIT")
    );
    ensure(
        r.header("x-cache-fragments") == Some("total=2, loaded=0"),
        || format!("{:?}", r.header("x-cache-fragments")),
    )?;

    say("Observability: admin stats and Prometheus metrics");
    step!(
        "stats without a token",
        "GET",
        "/admin/cache/stats",
        api.get("/admin/cache/stats", &[]).await?,
        401,
        None
    );
    let r = step!(
        "stats",
        "GET",
        "/admin/cache/stats",
        api.get("/admin/cache/stats", &admin).await?,
        200,
        None
    );
    let stats: Value = r.json()?;
    let hits = stats["counters"]["hits"].as_u64().unwrap_or(0);
    let misses = stats["counters"]["misses"].as_u64().unwrap_or(0);
    ensure(hits >= 5, || format!("stats: {hits} hits"))?;
    ensure(
        stats["resources"]["gallery"]["hits"].as_u64().unwrap_or(0) >= 1,
        || "no gallery hits in the stats".into(),
    )?;
    if opts.print {
        println!(
            "       hits {hits}, misses {misses}, sets {}, invalidations {}, hit rate {:.1}%, keys {}, memory {}",
            stats["counters"]["sets"], stats["counters"]["invalidations"],
            hits as f64 * 100.0 / (hits + misses).max(1) as f64,
            stats["total_keys"], stats["memory_used_human"]
        );
    }
    let r = step!(
        "metrics",
        "GET",
        "/metrics",
        api.get("/metrics", &[]).await?,
        200,
        None
    );
    let text = String::from_utf8_lossy(&r.body);
    ensure(
        text.contains("cache_hits_total") && text.contains("cache_request_duration_seconds"),
        || "metrics text".into(),
    )?;

    let mut redis_stopped = false;
    match stop_redis {
        Some(stop) if backend == "redis" => {
            say("Redis stopped: the service keeps answering, uncached (fail-open)");
            stop()
                .await
                .map_err(|e| DemoError(format!("stopping Redis: {e}")))?;
            redis_stopped = true;
            if opts.print {
                println!("  [ok] Redis is down");
            }
            let r = step!(
                "gallery with Redis down",
                "GET",
                "/gallery",
                api.get("/gallery", &[]).await?,
                200,
                Some("SKIP")
            );
            ensure(!r.json::<Page<ContentItem>>()?.items.is_empty(), || {
                "empty gallery".into()
            })?;
            let r = step!(
                "item with Redis down",
                "GET",
                item_path,
                api.get(&item_path, &[]).await?,
                200,
                Some("SKIP")
            );
            ensure(r.json::<ContentItem>()?.tags == x.tags, || {
                "item with Redis down".into()
            })?;
            step!(
                "A's list with Redis down",
                "GET",
                a_list,
                api.get(&a_list, &[user(a)]).await?,
                200,
                Some("SKIP")
            );
            let r = step!(
                "stats with Redis down: health reported",
                "GET",
                "/admin/cache/stats",
                api.get("/admin/cache/stats", &admin).await?,
                200,
                None
            );
            let s: Value = r.json()?;
            ensure(s["health"]["status"] != Value::String("up".into()), || {
                format!("health: {}", s["health"])
            })?;
        }
        _ => {
            if opts.print {
                println!(
                    "\n== Redis stop step skipped (backend: {backend}, stop callback given: no)"
                );
            }
        }
    }
    if opts.print {
        println!("\nall {steps} steps passed");
    }
    Ok(DemoSummary {
        steps,
        backend,
        redis_stopped,
    })
}

/// Randomized freshness check: `rounds` writes (tag updates, creates, deletes) by the owners of
/// gallery items; before each, every read the write can affect is warmed, and after it each
/// cached read must equal the same read bypassing the cache (fresh from the database).
///
/// # Errors
/// The first stale read, unexpected status or transport error.
pub async fn freshness_check(base: &str, rounds: usize, seed: u64) -> Result<usize, DemoError> {
    let api = Api::new(base, false);
    let mut rng = fastrand::Rng::with_seed(seed);
    let r = api.get("/gallery?limit=50", &[]).await?;
    let gallery: Page<ContentItem> = r.json()?;
    let mut created: Vec<ContentItem> = Vec::new();
    let mut compared = 0;
    for round in 0..rounds {
        // Pick the target of this round.
        let kind = rng.u32(0..3);
        let (owner, target): (i64, Option<ContentItem>) = match kind {
            0 => {
                let x = &gallery.items[rng.usize(..gallery.items.len())];
                let fresh: ContentItem = api
                    .get(&format!("/content/{}?cache_bypass=1", x.id), &[])
                    .await?
                    .json()?;
                (x.owner_id, Some(fresh))
            }
            1 => (
                gallery.items[rng.usize(..gallery.items.len())].owner_id,
                None,
            ),
            _ => match created.pop() {
                Some(c) => (c.owner_id, Some(c)),
                None => (gallery.items[0].owner_id, None),
            },
        };
        let new_tag = format!("fresh-{round}-{}", rng.u32(..));
        let gt = target
            .as_ref()
            .map(|t| t.generation_type.clone())
            .unwrap_or_else(|| "video".into());
        let mut tags: Vec<String> = target.as_ref().map(|t| t.tags.clone()).unwrap_or_default();
        tags.push(new_tag.clone());
        let mut reads: Vec<(String, Option<i64>)> = vec![
            ("/gallery".into(), None),
            ("/gallery?type=".to_owned() + &gt, None),
            ("/tags".into(), None),
            ("/content".into(), None),
            (format!("/content?type={gt}"), None),
            (format!("/content?user={owner}"), None),
            (format!("/content?tag={new_tag}"), None),
            (format!("/users/{owner}/content_items"), Some(owner)),
            (format!("/users/{owner}/content_items_auto"), Some(owner)),
            (format!("/users/{owner}/gallery"), Some(owner)),
        ];
        for t in &tags {
            reads.push((format!("/content?tag={t}&sort=popular"), None));
        }
        if let Some(t) = &target {
            reads.push((format!("/content/{}", t.id), None));
        }
        let hdr = |who: Option<i64>| who.map(|u| vec![user(u)]).unwrap_or_default();
        for (path, who) in &reads {
            api.get(path, &hdr(*who)).await?;
        }
        // The write.
        let w = match (kind, &target) {
            (0 | 2, Some(t)) if kind == 0 || rng.bool() => {
                let path = format!("/content/{}/tags", t.id);
                let r = api
                    .send(
                        Method::PUT,
                        &path,
                        &[user(owner)],
                        Some(serde_json::json!({ "tags": tags })),
                    )
                    .await?;
                ensure(r.status == StatusCode::OK, || {
                    format!("PUT {path}: {}", r.status)
                })?;
                if kind == 2 {
                    created.push(r.json()?);
                }
                format!("PUT {path}")
            }
            (2, Some(t)) => {
                let path = format!("/content/{}", t.id);
                let r = api
                    .send(Method::DELETE, &path, &[user(owner)], None)
                    .await?;
                ensure(r.status == StatusCode::NO_CONTENT, || {
                    format!("DELETE {path}: {}", r.status)
                })?;
                format!("DELETE {path}")
            }
            _ => {
                let r = api
                    .send(
                        Method::POST,
                        "/content",
                        &[user(owner)],
                        Some(serde_json::json!({
                            "title": format!("Fresh {round}"), "generation_type": gt,
                            "tags": tags, "auto": rng.bool(), "is_public": rng.u32(0..10) > 0
                        })),
                    )
                    .await?;
                ensure(r.status == StatusCode::CREATED, || {
                    format!("POST /content: {}", r.status)
                })?;
                let c: ContentItem = r.json()?;
                reads.push((format!("/content/{}", c.id), Some(owner)));
                created.push(c);
                "POST /content".to_owned()
            }
        };
        for (path, who) in &reads {
            let cached = api.get(path, &hdr(*who)).await?;
            let sep = if path.contains('?') { '&' } else { '?' };
            let fresh = api
                .get(&format!("{path}{sep}cache_bypass=1"), &hdr(*who))
                .await?;
            ensure(cached.status == fresh.status, || {
                format!(
                    "after {w}: GET {path}: cached status {} but fresh {}",
                    cached.status, fresh.status
                )
            })?;
            ensure(cached.body == fresh.body, || {
                format!(
                    "after {w}: GET {path} is stale (X-Cache-Status {}):\n cached {}\n fresh  {}",
                    cached.cache_status(),
                    String::from_utf8_lossy(&cached.body[..cached.body.len().min(400)]),
                    String::from_utf8_lossy(&fresh.body[..fresh.body.len().min(400)])
                )
            })?;
            compared += 1;
        }
    }
    Ok(compared)
}
