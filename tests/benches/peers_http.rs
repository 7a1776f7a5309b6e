//! The same Axum app cached by ours, by hitbox and by tower-http-cache, on one Redis, in one run,
//! next to the app uncached and a static handler: requests/s and p50/p99 over loopback HTTP with
//! keep-alive, and every response checked against the origin's body for its id.
//!
//! Run with `make bench-peers` (`cargo bench -p cache-tests --bench peers_http`). The app has one
//! route, `GET /items/{id}`: a simulated database call ([`DB_LATENCY`]), then the JSON page of
//! `id` (`support/records.rs`, 1 KiB and 16 KiB). Each variant is its own server on loopback:
//!
//! * `static`: the page's JSON bytes, precomputed (the ceiling of server + client here);
//! * `uncached`: the app as it is;
//! * `ours`: `cache_axum::ResponseCacheLayer` with the route at a one-hour TTL;
//! * `ours + L1`: the same, with the in-process tier on (`Cache::builder().l1(..)`, [`L1_BYTES`]):
//!   hits are served from the process's memory, without a round trip to Redis; the share of its
//!   hits served by L1 during the measured slices is printed;
//! * `hitbox`: `hitbox_tower::Cache` with `hitbox_redis::RedisBackend`, the key from the path's
//!   `{id}`, a one-hour TTL;
//! * `tower-http-cache`: `CacheLayer` with its Redis backend, keyed by the path, a one-hour TTL.
//!
//! Every id is requested once before the measurement (so the cached variants serve hits).
//! [`TASKS`] clients, one keep-alive connection each ([`cache_tests::http::HttpClient`]), run in
//! slices interleaved in rounds (the order alternates). **Every response body is compared with
//! the origin's JSON for the requested id**: a variant that serves a wrong body is reported as
//! failing with its first wrong answer, not benchmarked. The origin calls made during the
//! measured slices are counted (a cache that serves hits makes none).
//!
//! | Variable              | Effect                                                             |
//! |-----------------------|--------------------------------------------------------------------|
//! | `PEERS_HTTP_ROUNDS`   | rounds (default 3)                                                 |
//! | `PEERS_HTTP_SLICE_MS` | length of one measured slice (default 1000 ms)                     |
//! | `PEERS_HTTP_VARIANTS` | the variants to run, by name, comma-separated: `static`, `uncached`, `ours`, `ours-l1`, `hitbox`, `tower-http-cache` (default: all; ratios to a variant not run print NaN) |
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_axum::{ResponseCacheLayer, RoutePolicy};
use cache_core::Cache;
use cache_tests::http::HttpClient;
use cache_tests::{unique_namespace, RedisServer};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

#[path = "support/records.rs"]
mod records;

use records::{page, SIZES};

const COMMAND: &str = "make bench-peers";
/// Concurrent clients, one keep-alive connection each.
const TASKS: usize = 64;
/// Distinct ids (all cached after the warm-up).
const IDS: u64 = 64;
/// Simulated database latency of the origin handler.
const DB_LATENCY: Duration = Duration::from_millis(20);
/// One measured slice (`PEERS_HTTP_SLICE_MS` overrides).
const SLICE: Duration = Duration::from_secs(1);
/// Rounds; each runs every variant for one slice, the order alternating (`PEERS_HTTP_ROUNDS`
/// overrides).
const ROUNDS: usize = 3;
const TTL: Duration = Duration::from_secs(3600);
/// The L1 bound of the `ours + L1` variant (every page of both sizes fits).
const L1_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Static,
    Uncached,
    Ours,
    OursL1,
    Hitbox,
    TowerHttpCache,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::Static,
        Variant::Uncached,
        Variant::Ours,
        Variant::OursL1,
        Variant::Hitbox,
        Variant::TowerHttpCache,
    ];

    /// The index of `self` in [`Variant::ALL`].
    fn index(self) -> usize {
        Variant::ALL
            .iter()
            .position(|v| *v == self)
            .expect("every variant is in ALL")
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Static => "static (precomputed body)",
            Variant::Uncached => "uncached (20 ms handler)",
            Variant::Ours => "ours (cache-axum layer)",
            Variant::OursL1 => "ours + L1 (cache-axum layer)",
            Variant::Hitbox => "hitbox 0.2 (hitbox-tower, Redis)",
            Variant::TowerHttpCache => "tower-http-cache 0.6 (Redis)",
        }
    }

    /// The name `PEERS_HTTP_VARIANTS` selects it by.
    fn name(self) -> &'static str {
        match self {
            Variant::Static => "static",
            Variant::Uncached => "uncached",
            Variant::Ours => "ours",
            Variant::OursL1 => "ours-l1",
            Variant::Hitbox => "hitbox",
            Variant::TowerHttpCache => "tower-http-cache",
        }
    }
}

/// The origin: the expected body of every id, and a count of handler runs.
#[derive(Clone)]
struct Origin {
    bodies: Arc<Vec<Bytes>>,
    calls: Arc<AtomicUsize>,
    size: usize,
}

impl Origin {
    fn new(size: usize) -> Origin {
        let bodies = (0..IDS)
            .map(|id| Bytes::from(serde_json::to_vec(&page(id, size)).expect("encode")))
            .collect();
        Origin {
            bodies: Arc::new(bodies),
            calls: Arc::default(),
            size,
        }
    }
}

/// `GET /items/{id}`: the database call, then the page as JSON.
async fn item(State(o): State<Origin>, Path(id): Path<u64>) -> axum::Json<records::Page> {
    o.calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(DB_LATENCY).await;
    axum::Json(page(id, o.size))
}

fn app(o: &Origin) -> Router {
    Router::new()
        .route("/items/{id}", get(item))
        .with_state(o.clone())
}

fn static_app(o: &Origin) -> Router {
    let bodies = o.bodies.clone();
    Router::new().route(
        "/items/{id}",
        get(move |Path(id): Path<u64>| {
            let body = bodies[id as usize].clone();
            async move {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .expect("response")
            }
        }),
    )
}

/// Builds the server of `v` on `url` (and, for ours, returns its cache); `Err` says why this
/// peer could not be set up.
async fn serve(
    v: Variant,
    o: &Origin,
    url: &str,
    ns: &str,
) -> Result<(SocketAddr, Option<Cache>), String> {
    let mut ours = None;
    let router = match v {
        Variant::Static => static_app(o),
        Variant::Uncached => app(o),
        Variant::Ours | Variant::OursL1 => {
            let b = Cache::builder()
                // Its own namespace: the L1 variant fills its tier from its own misses.
                .namespace(format!("{ns}-{v:?}"))
                .redis_url(url)
                // A generous deadline, so that a noisy machine never turns a hit into a miss.
                .command_timeout(Duration::from_secs(1));
            let b = if v == Variant::OursL1 {
                b.l1(L1_BYTES)
            } else {
                b
            };
            let cache = b.build().map_err(|e| e.to_string())?;
            if v == Variant::OursL1 {
                // L1 serves and fills only once its invalidation notices are subscribed.
                let deadline = Instant::now() + Duration::from_secs(15);
                while !cache.l1_status().is_some_and(|s| s.live) {
                    if Instant::now() > deadline {
                        return Err("L1 never subscribed".to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            ours = Some(cache.clone());
            app(o).layer(
                ResponseCacheLayer::builder(cache)
                    .route("/items/{id}", RoutePolicy::ttl(TTL))
                    .build(),
            )
        }
        Variant::Hitbox => {
            use hitbox_http::extractors::Path as KeyPath;
            use hitbox_http::predicates::{NeutralRequestPredicate, NeutralResponsePredicate};
            let backend = hitbox_redis::RedisBackend::builder()
                .connection(hitbox_redis::ConnectionMode::single(url))
                .build()
                .map_err(|e| e.to_string())?;
            let config = hitbox::Config::builder()
                .request_predicate(NeutralRequestPredicate::new())
                .response_predicate(NeutralResponsePredicate::new())
                .extractor(KeyPath::new("/items/{id}"))
                .policy(hitbox::policy::PolicyConfig::builder().ttl(TTL).build())
                .build();
            let layer = hitbox_tower::Cache::builder()
                .backend(backend)
                .config(config)
                .build();
            let svc = ServiceBuilder::new()
                .layer(layer)
                .map_request(|r: Request<hitbox_http::BufferedBody<Body>>| r.map(Body::new))
                .service(app(o))
                .map_response(|r| r.map(Body::new));
            Router::new().fallback_service(svc)
        }
        Variant::TowerHttpCache => {
            use tower_http_cache::prelude::*;
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            let manager = client
                .get_connection_manager()
                .await
                .map_err(|e| e.to_string())?;
            let layer = CacheLayer::builder(RedisBackend::new(manager))
                .ttl(TTL)
                .key_extractor(KeyExtractor::path())
                .build();
            // Its inner service's body must be `Sync` (axum's is not): the app's responses are
            // collected into `Full<Bytes>` first.
            let inner =
                ServiceExt::<Request<Body>>::and_then(app(o), |r: Response<Body>| async move {
                    let (parts, body) = r.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(Response::from_parts(
                        parts,
                        http_body_util::Full::new(bytes),
                    ))
                });
            let svc = ServiceExt::<Request<Body>>::map_response(
                ServiceBuilder::new().layer(layer).service(inner),
                |r| r.map(Body::new),
            );
            let svc =
                axum::error_handling::HandleError::new(svc, |e: tower::BoxError| async move {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("tower-http-cache error: {e}"),
                    )
                });
            Router::new().fallback_service(svc)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("axum::serve");
    });
    Ok((addr, ours))
}

/// What one slice produced.
#[derive(Default)]
struct Tally {
    ok: u64,
    /// Wrong answers: `(id, what)`.
    wrong: Vec<(u64, String)>,
    lat_us: Vec<u32>,
    elapsed: Duration,
}

/// Checks one answer against the origin's body for `id`.
fn check(o: &Origin, id: u64, status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    let want = &o.bodies[id as usize];
    if body != want.as_ref() {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        return Err(format!(
            "body of {} B differs from the origin's {} B for id {id}: {shown}",
            body.len(),
            want.len()
        ));
    }
    Ok(())
}

async fn slice(addr: SocketAddr, o: &Origin, dur: Duration) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (stop, o) = (stop.clone(), o.clone());
        tasks.spawn(async move {
            let mut out = Tally::default();
            let mut client = HttpClient::connect(addr).await.ok();
            let mut id = (t as u64 * 37) % IDS;
            while !stop.load(Ordering::Relaxed) {
                let Some(c) = client.as_mut() else {
                    out.wrong.push((id, "cannot connect".to_owned()));
                    break;
                };
                let t0 = Instant::now();
                match c.get(&format!("/items/{id}")).await {
                    Ok(r) => match check(&o, id, r.status, &r.body) {
                        Ok(()) => {
                            out.ok += 1;
                            out.lat_us
                                .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        }
                        Err(e) => out.wrong.push((id, e)),
                    },
                    Err(e) => {
                        out.wrong.push((id, format!("request: {e}")));
                        client = HttpClient::connect(addr).await.ok();
                    }
                }
                id = (id + 1) % IDS;
            }
            out
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    while let Some(r) = tasks.join_next().await {
        let t = r.expect("client task panicked");
        total.ok += t.ok;
        total.wrong.extend(t.wrong);
        total.lat_us.extend(t.lat_us);
    }
    total.elapsed = started.elapsed();
    total
}

fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1_000.0
}

/// One variant's results over the rounds.
#[derive(Default)]
struct Row {
    setup: Option<String>,
    rps: Vec<f64>,
    lat_us: Vec<u32>,
    wrong: Vec<(u64, String)>,
    origin_calls: usize,
    /// Ours: hits served during the measured slices, and of those, by L1.
    hits: u64,
    l1_hits: u64,
}

fn main() {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let rounds: usize = env("PEERS_HTTP_ROUNDS").map_or(ROUNDS, |v| {
        v.trim().parse().expect("PEERS_HTTP_ROUNDS: a number")
    });
    let slice_len = env("PEERS_HTTP_SLICE_MS").map_or(SLICE, |v| {
        Duration::from_millis(v.trim().parse().expect("PEERS_HTTP_SLICE_MS: milliseconds"))
    });
    let selected: Vec<Variant> = match env("PEERS_HTTP_VARIANTS") {
        None => Variant::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|name| {
                let name = name.trim();
                Variant::ALL
                    .into_iter()
                    .find(|v| v.name() == name)
                    .unwrap_or_else(|| panic!("PEERS_HTTP_VARIANTS: unknown variant {name:?}"))
            })
            .collect(),
    };
    println!("# HTTP: the same Axum app cached by ours, hitbox and tower-http-cache, one Redis");
    println!("# reproduce: {COMMAND}");
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let ns = unique_namespace("bench-peers-http");
    let started = Instant::now();
    rt.block_on(async {
        println!(
            "# redis at {url}; servers and {TASKS} keep-alive clients on one tokio runtime \
             ({workers} workers); {IDS} ids; {rounds} rounds of {:.1} s slices, order alternating; \
             origin: {} ms database call + JSON",
            slice_len.as_secs_f64(),
            DB_LATENCY.as_millis()
        );
        let mut goals = Vec::new();
        for (db, (label, size)) in SIZES.into_iter().enumerate() {
            // The peers key entries by path alone: each size gets its own database, so that
            // one size's entries are not served for the other's.
            let url = with_db(&url, db);
            let o = Origin::new(size);
            let mut rows: Vec<Row> = Variant::ALL.iter().map(|_| Row::default()).collect();
            let mut addrs = Vec::new();
            let mut caches = Vec::new();
            for (i, v) in Variant::ALL.iter().enumerate() {
                if !selected.contains(v) {
                    rows[i].setup = Some("not selected (PEERS_HTTP_VARIANTS)".to_owned());
                    addrs.push(None);
                    caches.push(None);
                    continue;
                }
                match serve(*v, &o, &url, &format!("{ns}-{size}")).await {
                    Ok((addr, cache)) => {
                        addrs.push(Some(addr));
                        caches.push(cache);
                    }
                    Err(e) => {
                        rows[i].setup = Some(e);
                        addrs.push(None);
                        caches.push(None);
                    }
                }
            }
            // Warm-up: every id once (fills the caches), checked; then a short unmeasured run.
            for (i, addr) in addrs.iter().enumerate() {
                let Some(addr) = *addr else { continue };
                let mut c = HttpClient::connect(addr).await.expect("connect");
                for id in 0..IDS {
                    let r = c
                        .get(&format!("/items/{id}"))
                        .await
                        .expect("warm-up request");
                    if let Err(e) = check(&o, id, r.status, &r.body) {
                        rows[i].wrong.push((id, format!("warm-up: {e}")));
                    }
                }
                let _ = slice(addr, &o, Duration::from_millis(300)).await;
            }
            for round in 0..rounds {
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..Variant::ALL.len()).collect()
                } else {
                    (0..Variant::ALL.len()).rev().collect()
                };
                for i in order {
                    let Some(addr) = addrs[i] else { continue };
                    let before = o.calls.load(Ordering::Relaxed);
                    let hits = |c: &Option<Cache>| {
                        c.as_ref()
                            .map_or((0, 0), |c| (c.stats().total.hits, c.stats().total.l1_hits))
                    };
                    let (h0, l0) = hits(&caches[i]);
                    let t = slice(addr, &o, slice_len).await;
                    let (h1, l1) = hits(&caches[i]);
                    rows[i].hits += h1 - h0;
                    rows[i].l1_hits += l1 - l0;
                    let after = o.calls.load(Ordering::Relaxed);
                    if Variant::ALL[i] != Variant::Uncached {
                        rows[i].origin_calls += after - before;
                    }
                    rows[i].rps.push(t.ok as f64 / t.elapsed.as_secs_f64());
                    rows[i].lat_us.extend(t.lat_us);
                    rows[i].wrong.extend(t.wrong);
                }
            }
            println!();
            println!("## {label} page ({} B of JSON)", o.bodies[0].len());
            println!(
                "{:<34} {:>26} {:>8} {:>8} {:>12} {:>8}  bodies",
                "variant", "requests/s (min-max)", "p50 ms", "p99 ms", "origin calls", "/static",
            );
            let static_rps = median(&rows[0].rps);
            let mut medians = Vec::new();
            for (i, v) in Variant::ALL.iter().enumerate() {
                let r = &mut rows[i];
                if let Some(e) = &r.setup {
                    println!("{:<34} NOT BENCHMARKED: setup failed: {e}", v.label());
                    medians.push(f64::NAN);
                    continue;
                }
                r.lat_us.sort_unstable();
                let m = median(&r.rps);
                let min = r.rps.iter().copied().fold(f64::INFINITY, f64::min);
                let max = r.rps.iter().copied().fold(0.0, f64::max);
                let bodies = if r.wrong.is_empty() {
                    "all right for their id".to_owned()
                } else {
                    let (id, e) = &r.wrong[0];
                    let mut e = e.clone();
                    e.truncate(160);
                    format!(
                        "FAILED: {} wrong answers (first, id {id}: {e})",
                        r.wrong.len()
                    )
                };
                let calls = if *v == Variant::Uncached {
                    "(every)".to_owned()
                } else {
                    r.origin_calls.to_string()
                };
                if r.wrong.is_empty() {
                    println!(
                        "{:<34} {:>26} {:>8.2} {:>8.2} {:>12} {:>8.2}  {bodies}",
                        v.label(),
                        format!("{m:.0} ({min:.0}-{max:.0})"),
                        pct_ms(&r.lat_us, 0.50),
                        pct_ms(&r.lat_us, 0.99),
                        calls,
                        m / static_rps
                    );
                    medians.push(m);
                } else {
                    println!("{:<34} NOT BENCHMARKED: {bodies}", v.label());
                    medians.push(f64::NAN);
                }
            }
            let m = |v: Variant| medians[v.index()];
            let (hitbox, tower) = (m(Variant::Hitbox), m(Variant::TowerHttpCache));
            let ours = m(Variant::Ours);
            let ours_l1 = m(Variant::OursL1);
            let l1_row = &rows[Variant::OursL1.index()];
            println!(
                "ours + L1: {} of {} hits in the measured slices served by L1",
                l1_row.l1_hits, l1_row.hits
            );
            println!(
                "ratios: ours / static {:.2}, ours / uncached {:.2}, ours / hitbox {:.2}, ours / \
                 tower-http-cache {:.2} (NaN: that peer failed or was not selected)",
                ours / static_rps,
                ours / m(Variant::Uncached),
                ours / hitbox,
                ours / tower
            );
            println!(
                "ratios: ours + L1 / static {:.2}, ours + L1 / ours {:.2}, ours + L1 / hitbox \
                 {:.2}, ours + L1 / tower-http-cache {:.2}",
                ours_l1 / static_rps,
                ours_l1 / ours,
                ours_l1 / hitbox,
                ours_l1 / tower
            );
            goals.push((
                label,
                [ours, ours_l1].map(|x| [x / static_rps, x / hitbox, x / tower]),
            ));
        }
        println!();
        let verdict = |x: f64, goal: f64| if x >= goal { "met" } else { "MISSED" };
        for (label, [[s, h, t], [ls, lh, lt]]) in goals {
            println!(
                "goals at {label}: ours + L1 / static {ls:.2} (goal >= 0.8: {}), ours + L1 / \
                 hitbox {lh:.2}, ours + L1 / tower-http-cache {lt:.2} (goals >= 1.5: {}, {}); \
                 without L1: ours / static {s:.2}, ours / hitbox {h:.2}, ours / \
                 tower-http-cache {t:.2}",
                verdict(ls, 0.8),
                verdict(lh, 1.5),
                verdict(lt, 1.5)
            );
        }
    });
    println!("# total {:.1} s", started.elapsed().as_secs_f64());
    drop(server);
}

/// `url` pointed at database `db`.
fn with_db(url: &str, db: usize) -> String {
    let base = match url.rsplit_once('/') {
        Some((head, tail)) if !head.ends_with('/') && tail.chars().all(|c| c.is_ascii_digit()) => {
            head
        }
        _ => url.trim_end_matches('/'),
    };
    format!("{base}/{db}")
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}
