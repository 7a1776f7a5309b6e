#![allow(missing_docs)]
//! `cache_actix::ResponseCacheLayer` against the origin, on Redis and memory: the cases of
//! `axum_differential.rs` (same items API from `common/items_api.rs`, same sequence, same
//! checks). Requests go in-process (`test::init_service` + `call_service`), except `HEAD`, which
//! goes through a real `HttpServer` of the same copy: Actix's dispatcher, not the service,
//! strips `HEAD` bodies and writes `Content-Length`.
//!
//! Sizes: `DIFF_STEPS` (default 300 requests per backend), `DIFF_SEED` (default: the clock;
//! printed on failure).

mod common;

#[path = "common/items_api.rs"]
mod items_api;

#[path = "common/items_actix.rs"]
mod items_actix;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, Service, ServiceResponse};
use actix_web::test;
use actix_web::{web, App, HttpServer};
use common::Ctx;
use items_actix::{call, layer, respond, routes};
use items_api::{cache_control, differential, Origin, Reply, Req, Target};

/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ the app (common/items_actix.rs)

/// Starts a real server (one worker) for the app built by `$factory`.
macro_rules! serve {
    ($factory:expr) => {{
        let server = HttpServer::new($factory)
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (addr, handle)
    }};
}

/// A copy of the app: in-process for everything but `HEAD`, which goes to a real server of the
/// same copy (same database, same cache).
struct ActixTarget<S> {
    svc: S,
    addr: SocketAddr,
    server: ServerHandle,
}

impl<S> ActixTarget<S> {
    async fn stop(self) {
        self.server.stop(true).await;
    }
}

impl<S, B> Target for ActixTarget<S>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    async fn send(&self, req: &Req) -> Reply {
        if req.method == "HEAD" {
            items_api::tcp_send(self.addr, req).await
        } else {
            call(&self.svc, req).await
        }
    }
}

/// The cached copy, in-process and served, with its own database.
macro_rules! cached_copy {
    ($cache:expr) => {{
        let data = web::Data::new(Origin::seeded());
        let layer = layer($cache);
        let (addr, server) = {
            let (data, layer) = (data.clone(), layer.clone());
            serve!(move || App::new()
                .wrap(layer.clone())
                .app_data(data.clone())
                .configure(routes))
        };
        let svc = test::init_service(App::new().wrap(layer).app_data(data).configure(routes)).await;
        ActixTarget { svc, addr, server }
    }};
}

/// The uncached copy, in-process and served, with its own database.
macro_rules! uncached_copy {
    () => {{
        let data = web::Data::new(Origin::seeded());
        let (addr, server) = {
            let data = data.clone();
            serve!(move || App::new().app_data(data.clone()).configure(routes))
        };
        let svc = test::init_service(App::new().app_data(data).configure(routes)).await;
        ActixTarget { svc, addr, server }
    }};
}

// ------------------------------------------------------------------ differential

// Regression (issue 11; failed before the fix): `/items/5` and `/items/6` share one entry (the layer keys by route
// template); `?page=` (and `?a` / `?a=` / `?%41=1`...) served the entry of another query; HEAD
// hits answer `Content-Length: 0`.
async fn the_cached_copy_answers_every_request_like_the_origin(ctx: Ctx) {
    let seed = items_api::seed();
    let cached = cached_copy!(ctx.cache());
    let uncached = uncached_copy!();
    let outcome = differential(&cached, &uncached, seed, items_api::steps()).await;
    println!(
        "actix on {:?}: {} requests, {} hits, {} not-modified, {} mismatches (seed {seed})",
        ctx.kind,
        outcome.steps,
        outcome.hits,
        outcome.not_modified,
        outcome.mismatches.len()
    );
    cached.stop().await;
    uncached.stop().await;
    outcome.assert_clean(&format!("actix on {:?}", ctx.kind), seed);
}

/// Sends each request to both copies in turn; returns the disagreements.
async fn disagreements<C: Target, U: Target>(
    cached: &C,
    uncached: &U,
    reqs: &[Req],
) -> Vec<String> {
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
    let cached = cached_copy!(ctx.cache());
    let uncached = uncached_copy!();
    let reqs: Vec<Req> = ["/items/5", "/items/6", "/items/99", "/items/5", "/items/6"]
        .into_iter()
        .map(Req::get)
        .collect();
    let bad = disagreements(&cached, &uncached, &reqs).await;
    cached.stop().await;
    uncached.stop().await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// Regression (issue 11; failed before the fix): queries that differ share an entry (empty values and valueless
// flags are dropped from the key, names are decoded): `?page=` is served the cached 200 of
// `/items` instead of the origin's 400.
async fn queries_the_origin_tells_apart_are_not_merged(ctx: Ctx) {
    let cached = cached_copy!(ctx.cache());
    let uncached = uncached_copy!();
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
    cached.stop().await;
    uncached.stop().await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// Regression (issue 11; failed before the fix): a HEAD answered from the cache carries `Content-Length: 0`.
async fn head_hits_carry_the_length_of_the_get_body(ctx: Ctx) {
    let cached = cached_copy!(ctx.cache());
    let uncached = uncached_copy!();
    let get = cached.send(&Req::get("/items/3")).await;
    assert_eq!(get.status, 200);
    let head = Req {
        method: "HEAD",
        ..Req::get("/items/3")
    };
    let c = cached.send(&head).await;
    let u = uncached.send(&head).await;
    cached.stop().await;
    uncached.stop().await;
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
    let cached = cached_copy!(ctx.cache());
    let as_alice = |uri: &str| Req::get(uri).header("x-user", "alice");
    let mut bad = Vec::new();
    let mut statuses = Vec::new();
    // Item 1 is alice's, item 2 is bob's. The 404 comes first, while nothing is stored.
    for (what, req, status) in [
        ("404 for another user's item", as_alice("/me/items/2"), 404),
        ("MISS", as_alice("/me/items/1"), 200),
        ("HIT", as_alice("/me/items/1"), 200),
    ] {
        let r = cached.send(&req).await;
        statuses.push((
            what,
            r.status,
            status,
            r.h("x-cache-status").map(str::to_owned),
        ));
        let (directives, _) = cache_control(r.h("cache-control"));
        if !directives.iter().any(|d| d == "private") {
            bad.push(format!(
                "{what} ({}, x-cache-status {:?}): cache-control {:?}",
                req.describe(),
                r.h("x-cache-status"),
                r.h("cache-control")
            ));
        }
    }
    cached.stop().await;
    for (what, got, want, _) in &statuses {
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(statuses[2].3.as_deref(), Some("HIT"));
    assert!(
        bad.is_empty(),
        "per-user answers without `private`:\n{}",
        bad.join("\n")
    );
}

// Regression (issue 11; failed before the fix): a shared route's MISS carries no `Cache-Control`, its HIT carries
// `public, max-age=N`.
async fn a_shared_route_sends_the_same_cache_control_on_miss_and_hit(ctx: Ctx) {
    let cached = cached_copy!(ctx.cache());
    let miss = cached.send(&Req::get("/items/4")).await;
    let hit = cached.send(&Req::get("/items/4")).await;
    cached.stop().await;
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

// Regression (issue 11; failed before the fix): the layer has no single-flight, every cold request runs the
// handler (up to 1,000 runs).
async fn a_cold_stampede_runs_the_handler_once(ctx: Ctx) {
    const N: usize = 1000;
    let cache = ctx
        .builder()
        .command_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let origin = web::Data::new(Origin::seeded());
    let (all_in, all_in_rx) = tokio::sync::watch::channel(false);
    let all_in = Arc::new(all_in);
    let arrived = Arc::new(AtomicUsize::new(0));
    // The handler counts its run, then waits until every request has reached the app.
    let handler = move |o: web::Data<Origin>, id: web::Path<String>| {
        let mut all_in = all_in_rx.clone();
        async move {
            let out = o.get_item(&id);
            let _ = tokio::time::timeout(WAIT, all_in.wait_for(|all| *all)).await;
            respond(out)
        }
    };
    let app = test::init_service(
        App::new()
            .app_data(origin.clone())
            .wrap(layer(cache))
            // Outermost: counts the requests that reached the app.
            .wrap_fn(move |req, srv| {
                if arrived.fetch_add(1, Ordering::SeqCst) + 1 == N {
                    all_in.send_replace(true);
                }
                srv.call(req)
            })
            .route("/items/{id}", web::get().to(handler)),
    )
    .await;
    let app = Rc::new(app);
    let expected = Origin::seeded().get_item("1");
    // The service is not `Send`: the requests run concurrently as local tasks.
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let app = app.clone();
            actix_web::rt::spawn(async move { call(&*app, &Req::get("/items/1")).await })
        })
        .collect();
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

on_both_backends_actix!(
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
#[actix_web::test]
async fn harness_two_uncached_copies_always_agree() {
    let seed = items_api::seed();
    let a = uncached_copy!();
    let b = uncached_copy!();
    let outcome = differential(&a, &b, seed, items_api::steps()).await;
    a.stop().await;
    b.stop().await;
    outcome.assert_clean("actix, uncached vs uncached", seed);
}
