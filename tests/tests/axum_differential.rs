#![allow(missing_docs)]
//! `cache_axum::ResponseCacheLayer` against the origin, on Redis and memory: the same items API
//! (`common/items_api.rs`) twice, cached and uncached, each with its own database from the same
//! seed, fed the same seeded random requests; every answer of the cached copy must be the
//! origin's. Then focused reproductions of what that finds, privacy headers, and a cold
//! stampede.
//!
//! Sizes: `DIFF_STEPS` (default 300 requests per backend), `DIFF_SEED` (default: the clock;
//! printed on failure).

mod common;

#[path = "common/items_api.rs"]
mod items_api;

#[path = "common/items_axum.rs"]
mod items_axum;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::Ctx;
use items_api::{cache_control, differential, Origin, Req, Target};
use items_axum::{cached_routes, layer, reply, request, respond, routes, AxumTarget};
use tower::ServiceExt;

/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ the app (common/items_axum.rs)

async fn copies(ctx: &Ctx) -> (AxumTarget, AxumTarget) {
    let cached = AxumTarget::start(cached_routes(ctx.cache(), Arc::new(Origin::seeded()))).await;
    let uncached = AxumTarget::start(routes(Arc::new(Origin::seeded()))).await;
    (cached, uncached)
}

// ------------------------------------------------------------------ differential

// Regression (issue 11; failed before the fix): `/items/5` and `/items/6` share one entry (the layer keys by route
// template); `?page=` (and `?a` / `?a=` / `?%41=1`...) served the entry of another query; HEAD
// hits answer `Content-Length: 0`.
async fn the_cached_copy_answers_every_request_like_the_origin(ctx: Ctx) {
    let seed = items_api::seed();
    let (cached, uncached) = copies(&ctx).await;
    let outcome = differential(&cached, &uncached, seed, items_api::steps()).await;
    println!(
        "axum on {:?}: {} requests, {} hits, {} not-modified, {} mismatches (seed {seed})",
        ctx.kind,
        outcome.steps,
        outcome.hits,
        outcome.not_modified,
        outcome.mismatches.len()
    );
    outcome.assert_clean(&format!("axum on {:?}", ctx.kind), seed);
}

/// Sends each request to both copies in turn; returns the disagreements.
async fn disagreements(cached: &AxumTarget, uncached: &AxumTarget, reqs: &[Req]) -> Vec<String> {
    let mut out = Vec::new();
    for req in reqs {
        let c = cached.send(req).await;
        let u = uncached.send(req).await;
        if (c.status, &c.body, c.h("content-type")) != (u.status, &u.body, u.h("content-type")) {
            out.push(format!(
                "{}: cached {} / origin {}",
                req.describe(),
                c.brief(),
                u.brief()
            ));
        }
    }
    out
}

// Regression (issue 11; failed before the fix): the layer keys by route template, so `/items/6` is served the
// entry of `/items/5`.
async fn distinct_paths_of_one_route_are_distinct_entries(ctx: Ctx) {
    let (cached, uncached) = copies(&ctx).await;
    let reqs: Vec<Req> = ["/items/5", "/items/6", "/items/99", "/items/5", "/items/6"]
        .into_iter()
        .map(Req::get)
        .collect();
    let bad = disagreements(&cached, &uncached, &reqs).await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// Regression (issue 11; failed before the fix): queries that differ share an entry (empty values and valueless
// flags are dropped from the key, names are decoded): `?page=` is served the cached 200 of
// `/items` instead of the origin's 400.
async fn queries_the_origin_tells_apart_are_not_merged(ctx: Ctx) {
    let (cached, uncached) = copies(&ctx).await;
    let reqs: Vec<Req> = [
        "/items",
        "/items?page=",
        "/items?page",
        "/items?a",
        "/items?a=",
        "/items?A=1",
        "/items?%41=1",
        "/items?a=1&b=2",
        "/items?a=1&&b=2",
        "/items?tag=a&tag=b",
        "/items?tag=b&tag=a",
    ]
    .into_iter()
    .map(Req::get)
    .collect();
    let bad = disagreements(&cached, &uncached, &reqs).await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// Regression (issue 11; failed before the fix): a HEAD answered from the cache carries `Content-Length: 0`.
async fn head_hits_carry_the_length_of_the_get_body(ctx: Ctx) {
    let (cached, uncached) = copies(&ctx).await;
    let get = cached.send(&Req::get("/items/3")).await;
    assert_eq!(get.status, 200);
    let head = Req {
        method: "HEAD",
        ..Req::get("/items/3")
    };
    let c = cached.send(&head).await;
    let u = uncached.send(&head).await;
    assert_eq!(
        u.h("content-length"),
        Some(get.body.len().to_string().as_str()),
        "harness: the origin's HEAD"
    );
    assert_eq!(
        (c.status, c.body.len()),
        (200, 0),
        "a HEAD answer has no body"
    );
    assert_eq!(
        c.h("content-length"),
        Some(get.body.len().to_string().as_str()),
        "HEAD {} over TCP (x-cache-status {:?}) must announce the GET body's length",
        head.uri,
        c.h("x-cache-status")
    );
}

// ------------------------------------------------------------------ privacy

// Regression (issue 11; failed before the fix): a per-user MISS, and a per-user 404, carry no `Cache-Control:
// private` (only hits do).
async fn per_user_answers_are_private_on_miss_hit_and_404(ctx: Ctx) {
    let (cached, _) = copies(&ctx).await;
    let as_alice = |uri: &str| Req::get(uri).header("x-user", "alice");
    let mut bad = Vec::new();
    // Item 1 is alice's, item 2 is bob's. The 404 comes first, while nothing is stored.
    for (what, req, status) in [
        ("404 for another user's item", as_alice("/me/items/2"), 404),
        ("MISS", as_alice("/me/items/1"), 200),
        ("HIT", as_alice("/me/items/1"), 200),
    ] {
        let r = cached.send(&req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let (directives, _) = cache_control(r.h("cache-control"));
        if !directives.iter().any(|d| d == "private") {
            bad.push(format!(
                "{what} ({}, x-cache-status {:?}): cache-control {:?}",
                req.describe(),
                r.h("x-cache-status"),
                r.h("cache-control")
            ));
        }
        if what == "HIT" {
            assert_eq!(r.h("x-cache-status"), Some("HIT"));
        }
    }
    assert!(
        bad.is_empty(),
        "per-user answers without `private`:\n{}",
        bad.join("\n")
    );
}

// Regression (issue 11; failed before the fix): a shared route's MISS carries no `Cache-Control`, its HIT carries
// `public, max-age=N`.
async fn a_shared_route_sends_the_same_cache_control_on_miss_and_hit(ctx: Ctx) {
    let (cached, _) = copies(&ctx).await;
    let miss = cached.send(&Req::get("/items/4")).await;
    let hit = cached.send(&Req::get("/items/4")).await;
    assert_eq!(
        (miss.h("x-cache-status"), hit.h("x-cache-status")),
        (Some("MISS"), Some("HIT"))
    );
    let (m, m_age) = cache_control(miss.h("cache-control"));
    let (h, h_age) = cache_control(hit.h("cache-control"));
    let same_age = match (m_age, h_age) {
        (Some(a), Some(b)) => a.abs_diff(b) <= 1,
        (a, b) => a == b,
    };
    assert!(
        m == h && same_age,
        "MISS cache-control {:?} / HIT cache-control {:?}",
        miss.h("cache-control"),
        hit.h("cache-control")
    );
}

// ------------------------------------------------------------------ stampede

#[derive(Clone)]
struct Arrivals {
    arrived: Arc<AtomicUsize>,
    expected: usize,
    all_in: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn count_arrival(State(a): State<Arrivals>, req: Request, next: Next) -> Response {
    if a.arrived.fetch_add(1, Ordering::SeqCst) + 1 == a.expected {
        a.all_in.send_replace(true);
    }
    next.run(req).await
}

// Regression (issue 11; failed before the fix): the layer has no single-flight, every cold request runs the
// handler (up to 1,000 runs).
async fn a_cold_stampede_runs_the_handler_once(ctx: Ctx) {
    const N: usize = 1000;
    let cache = ctx
        .builder()
        .command_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let origin = Arc::new(Origin::seeded());
    let (all_in, all_in_rx) = tokio::sync::watch::channel(false);
    let arrivals = Arrivals {
        arrived: Arc::new(AtomicUsize::new(0)),
        expected: N,
        all_in: Arc::new(all_in),
    };
    // The handler counts its run, then waits until every request has reached the app.
    let handler = move |State(o): State<Arc<Origin>>, Path(id): Path<String>| {
        let mut all_in = all_in_rx.clone();
        async move {
            let out = o.get_item(&id);
            let _ = tokio::time::timeout(WAIT, all_in.wait_for(|all| *all)).await;
            respond(out)
        }
    };
    let app = Router::new()
        .route("/items/{id}", get(handler))
        .with_state(origin.clone())
        .layer(layer(cache))
        .layer(axum::middleware::from_fn_with_state(
            arrivals.clone(),
            count_arrival,
        ));
    let expected = Origin::seeded().get_item("1");
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let (app, barrier) = (app.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            reply(app.oneshot(request(&Req::get("/items/1"))).await.unwrap()).await
        }));
    }
    let mut wrong = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(WAIT * 3, t).await.unwrap().unwrap();
        if r.status != expected.status || r.text() != expected.body {
            wrong.push(format!("{} {}", r.status, r.text()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers differ from the origin's, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    assert_eq!(
        origin.runs(),
        1,
        "the handler ran {} times for {N} concurrent cold requests",
        origin.runs()
    );
}

on_both_backends!(
    the_cached_copy_answers_every_request_like_the_origin,
    distinct_paths_of_one_route_are_distinct_entries,
    queries_the_origin_tells_apart_are_not_merged,
    head_hits_carry_the_length_of_the_get_body,
    per_user_answers_are_private_on_miss_hit_and_404,
    a_shared_route_sends_the_same_cache_control_on_miss_and_hit,
    a_cold_stampede_runs_the_handler_once,
);

/// The harness itself: two uncached copies never disagree (the sequence and the origin are
/// deterministic, `HEAD` lengths agree with `GET` bodies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_two_uncached_copies_always_agree() {
    let seed = items_api::seed();
    let a = AxumTarget::start(routes(Arc::new(Origin::seeded()))).await;
    let b = AxumTarget::start(routes(Arc::new(Origin::seeded()))).await;
    let outcome = differential(&a, &b, seed, items_api::steps()).await;
    outcome.assert_clean("axum, uncached vs uncached", seed);
}
