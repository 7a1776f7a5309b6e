#![allow(missing_docs)]
//! `Cache-Control` and validators of `#[cached]` Axum handlers through `CacheContextLayer`
//! (built without a `.user()` closure), on Redis and memory: a per-user handler is `private` on
//! MISS, HIT and 404; a shared handler sends the same `public, max-age` on MISS as on HIT; a 404
//! built after a shared helper's HIT is never `public`; per-user data is never `public` because a
//! shared helper ran after it; `If-None-Match` with a `#[cached]` `Json<T>` handler's ETag
//! answers 304 on a hit. Every body is checked against the origin's answer.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::CacheContextLayer;
use cache_core::{cached, Cache};
use common::Ctx;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

/// The stand-in database: trig names, and a load counter per label.
#[derive(Default)]
struct Db {
    names: Mutex<HashMap<u32, String>>,
    loads: Mutex<HashMap<String, usize>>,
}

impl Db {
    fn load(&self, label: &str) {
        *self
            .loads
            .lock()
            .unwrap()
            .entry(label.to_owned())
            .or_default() += 1;
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
}

#[derive(Clone)]
struct App {
    cache: Cache,
    db: Arc<Db>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trig {
    id: u32,
    name: String,
    height: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dashboard {
    notes: Vec<String>,
    motd: String,
}

// The origin's answers.
fn inbox_of(who: &str) -> Vec<String> {
    vec![
        format!("hello {who}"),
        format!("{who}, your trig was logged"),
    ]
}
fn trig_of(db: &Db, id: u32) -> Trig {
    Trig {
        id,
        name: db.name(id),
        height: 55.398430706246764 * f64::from(id),
    }
}
/// Ids 1..=10 exist.
const KNOWN: u32 = 10;

/// Per-user (the key has the user scope), a 404 for `nobody`.
#[cached(resource = "inbox", ttl = "1h", user = who, cache = &app.cache)]
async fn inbox(
    State(app): State<App>,
    Path(who): Path<String>,
) -> Result<Json<Vec<String>>, StatusCode> {
    app.db.load("inbox");
    if who == "nobody" {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Json(inbox_of(&who)))
}

/// Shared.
#[cached(resource = "trig", ttl = "1h", tags = ["trig:{id}"], cache = &app.cache)]
async fn trig(State(app): State<App>, Path(id): Path<u32>) -> Json<Trig> {
    app.db.load("trig");
    Json(trig_of(&app.db, id))
}

/// A shared helper: the ids that exist.
#[cached(resource = "known_ids", ttl = "1h", cache = cache, skip = [db])]
async fn known_ids(cache: &Cache, db: &Db) -> Vec<u32> {
    db.load("known_ids");
    (1..=KNOWN).collect()
}

/// Not cached itself: asks the shared helper, then answers 404 or the trig.
async fn checked_trig(
    State(app): State<App>,
    Path(id): Path<u32>,
) -> Result<Json<Trig>, StatusCode> {
    if !known_ids(&app.cache, &app.db).await.contains(&id) {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Json(trig_of(&app.db, id)))
}

/// A per-user helper.
#[cached(resource = "notes", ttl = "1h", user = who, cache = cache)]
async fn notes_of(cache: &Cache, who: String) -> Vec<String> {
    vec![format!("{who}'s private note")]
}

/// A shared helper.
#[cached(resource = "motd", ttl = "1h", cache = cache)]
async fn motd(cache: &Cache) -> String {
    "Summit weather: clear".to_owned()
}

/// Not cached itself: one user's notes, then the shared message of the day.
async fn dashboard(State(app): State<App>, Path(who): Path<String>) -> Json<Dashboard> {
    let notes = notes_of(&app.cache, who).await;
    let motd = motd(&app.cache).await;
    Json(Dashboard { notes, motd })
}

fn router(app: &App) -> Router {
    Router::new()
        .route("/inbox/{who}", get(inbox))
        .route("/trigs/{id}", get(trig))
        .route("/checked/{id}", get(checked_trig))
        .route("/dashboard/{who}", get(dashboard))
        .with_state(app.clone())
        // No `.user()`: per-user keys come from the handlers' `user = ...`.
        .layer(CacheContextLayer::builder().build())
}

fn app(ctx: &Ctx) -> App {
    App {
        cache: ctx.cache(),
        db: Arc::default(),
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn label(&self) -> &str {
        self.h("x-cache-status")
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: body {:?}", String::from_utf8_lossy(&self.body)))
    }
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get_(router: &Router, uri: &str) -> Reply {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_if_none_match(router: &Router, uri: &str, etag: &str) -> Reply {
    let req = Request::get(uri)
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    send(router, req).await
}

/// `(first directive, max-age)` of a `Cache-Control` value.
fn cache_control(value: &str) -> (String, Option<u64>) {
    let mut parts = value.split(',').map(str::trim);
    let kind = parts.next().unwrap_or("").to_owned();
    let max_age = value
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.parse().ok());
    (kind, max_age)
}

async fn a_per_user_cached_handler_is_private_on_miss_hit_and_404_without_a_user_closure(ctx: Ctx) {
    let app = app(&ctx);
    let r = router(&app);
    for (n, label) in [(1, "MISS"), (2, "HIT")] {
        let alice = get_(&r, "/inbox/alice").await;
        assert_eq!((alice.status, alice.label()), (StatusCode::OK, label));
        assert_eq!(alice.json::<Vec<String>>(), inbox_of("alice"));
        assert!(
            alice.h("cache-control").starts_with("private"),
            "request {n} ({label}) of a per-user #[cached] handler: cache-control {:?}",
            alice.h("cache-control")
        );
    }
    assert_eq!(app.db.loads("inbox"), 1);
    let bob = get_(&r, "/inbox/bob").await;
    assert_eq!(
        bob.json::<Vec<String>>(),
        inbox_of("bob"),
        "users never share"
    );
    assert!(bob.h("cache-control").starts_with("private"));
    let nobody = get_(&r, "/inbox/nobody").await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    assert_eq!(
        nobody.h("cache-control"),
        "private",
        "a per-user handler's 404 is private too"
    );
}

async fn a_shared_cached_handler_sends_the_same_cache_control_on_miss_and_hit(ctx: Ctx) {
    let app = app(&ctx);
    let r = router(&app);
    let miss = get_(&r, "/trigs/4").await;
    let hit = get_(&r, "/trigs/4").await;
    assert_eq!((miss.label(), hit.label()), ("MISS", "HIT"));
    assert_eq!(miss.json::<Trig>(), trig_of(&app.db, 4));
    assert_eq!(hit.body, miss.body);
    let (m_kind, m_age) = cache_control(miss.h("cache-control"));
    let (h_kind, h_age) = cache_control(hit.h("cache-control"));
    assert_eq!(
        (m_kind.as_str(), h_kind.as_str()),
        ("public", "public"),
        "MISS cache-control {:?} / HIT cache-control {:?}",
        miss.h("cache-control"),
        hit.h("cache-control")
    );
    let (m_age, h_age) = (m_age.unwrap(), h_age.unwrap());
    assert!(
        m_age.abs_diff(h_age) <= 1 && m_age > 3590,
        "max-age MISS {m_age} / HIT {h_age}"
    );
}

async fn a_404_after_a_shared_cached_helper_hit_is_not_public(ctx: Ctx) {
    let app = app(&ctx);
    let r = router(&app);
    for (n, helper) in [(1, "MISS"), (2, "HIT")] {
        let missing = get_(&r, "/checked/99").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "request {n}");
        assert_eq!(
            missing.label(),
            helper,
            "the outcome is the helper's ({helper})"
        );
        assert!(
            !missing.h("cache-control").contains("public"),
            "a 404 answered after the shared helper's {helper}: cache-control {:?}",
            missing.h("cache-control")
        );
    }
    assert_eq!(app.db.loads("known_ids"), 1);
    // The same handler's 200 after the helper's hit is built from a stored value: public.
    let found = get_(&r, "/checked/3").await;
    assert_eq!((found.status, found.label()), (StatusCode::OK, "HIT"));
    assert_eq!(found.json::<Trig>(), trig_of(&app.db, 3));
    assert!(
        found.h("cache-control").starts_with("public, max-age="),
        "{:?}",
        found.h("cache-control")
    );
}

// Regression (found by this suite, fixed): per-user data is sent `public, max-age=...` when a shared `#[cached]` helper runs after
// the per-user one: `RequestContext::record` (cache-core/src/private.rs) keeps only the last
// call's outcome, so its `per_user` is lost, and `outcome_headers`
// (cache-core/src/http/engine.rs) marks the response public, though it documents that per-user
// data is never marked shareable.
async fn per_user_data_is_not_public_when_a_shared_helper_runs_after_it(ctx: Ctx) {
    let app = app(&ctx);
    let r = router(&app);
    for n in 1..=2 {
        let alice = get_(&r, "/dashboard/alice").await;
        assert_eq!(alice.status, StatusCode::OK);
        assert_eq!(
            alice.json::<Dashboard>(),
            Dashboard {
                notes: vec!["alice's private note".into()],
                motd: "Summit weather: clear".into(),
            }
        );
        assert!(
            alice.h("cache-control").starts_with("private"),
            "request {n}: a response holding alice's per-user #[cached] data is sent with \
             cache-control {:?} (x-cache-status {})",
            alice.h("cache-control"),
            alice.label()
        );
    }
}

async fn if_none_match_with_the_etag_of_a_cached_json_handler_answers_304_on_a_hit(ctx: Ctx) {
    let app = app(&ctx);
    let r = router(&app);
    let miss = get_(&r, "/trigs/1").await;
    let etag = miss.h("etag").to_owned();
    assert_eq!(miss.label(), "MISS");
    assert!(
        etag.starts_with('"') && etag.len() > 2,
        "MISS etag {etag:?}"
    );
    assert_eq!(miss.json::<Trig>(), trig_of(&app.db, 1));
    let hit = get_(&r, "/trigs/1").await;
    assert_eq!((hit.label(), hit.h("etag")), ("HIT", etag.as_str()));
    assert_eq!(hit.body, miss.body);

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let nm = get_if_none_match(&r, "/trigs/1", &inm).await;
        assert_eq!(
            (nm.status, nm.label(), nm.body.len()),
            (StatusCode::NOT_MODIFIED, "HIT", 0),
            "If-None-Match {inm:?}"
        );
        assert_eq!(nm.h("etag"), etag);
    }
    let other = get_if_none_match(&r, "/trigs/1", "\"0000000000000000\"").await;
    assert_eq!(
        (other.status, other.body.clone()),
        (StatusCode::OK, miss.body.clone())
    );
    assert_eq!(app.db.loads("trig"), 1);

    // The trig changes: the old ETag no longer matches, the new body is sent.
    app.db.names.lock().unwrap().insert(1, "Renamed".into());
    app.cache.invalidate_tags(&["trig:1"]).await.unwrap();
    let changed = get_if_none_match(&r, "/trigs/1", &etag).await;
    assert_eq!((changed.status, changed.label()), (StatusCode::OK, "MISS"));
    assert_eq!(changed.json::<Trig>(), trig_of(&app.db, 1));
    assert_ne!(changed.h("etag"), etag);
    assert!(!changed.h("etag").is_empty());
}

on_both_backends!(
    a_per_user_cached_handler_is_private_on_miss_hit_and_404_without_a_user_closure,
    a_shared_cached_handler_sends_the_same_cache_control_on_miss_and_hit,
    a_404_after_a_shared_cached_helper_hit_is_not_public,
    per_user_data_is_not_public_when_a_shared_helper_runs_after_it,
    if_none_match_with_the_etag_of_a_cached_json_handler_answers_304_on_a_hit,
);
