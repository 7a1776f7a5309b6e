//! Recording overhead of route analytics: requests/s of a static Axum route without and with
//! `cache_axum::AnalyticsLayer` (analytics stored in memory, and on Redis), in interleaved rounds
//! of one run, over loopback HTTP with concurrent keep-alive clients.
//!
//! Run with `make bench-analytics` (or `cargo bench -p cache-tests --bench analytics`). Starts
//! its own `redis-server` (`REDIS_SERVER_BIN`). `ANALYTICS_BENCH_SECS` sets the length of a
//! round (default 2 s), `ANALYTICS_BENCH_ROUNDS` the rounds per variant (default 5). Prints each
//! round, the median requests/s per variant, the ratio of the medians to the plain route's and
//! the median of the per-round ratios (each round's variant over that round's plain route), and
//! the recorder's
//! counters (events written and dropped: a dropped event costs nothing on the request path, so
//! the ratio is only honest when nothing was dropped).
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use cache_axum::AnalyticsLayer;
use cache_core::Cache;
use cache_tests::http::HttpClient;
use cache_tests::RedisServer;

const TASKS: usize = 32;
const BODY: &str = "ok";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn app(analytics: Option<&Cache>) -> Router {
    let router = Router::new().route("/static", get(|| async { BODY }));
    match analytics {
        Some(cache) => router.layer(AnalyticsLayer::new(cache).user(|p| {
            p.headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })),
        None => router,
    }
}

/// `TASKS` clients requesting `/static` for `dur`: successful requests per second.
async fn round(addr: SocketAddr, dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..TASKS {
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut client = HttpClient::connect(addr).await.expect("connect");
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = client.get("/static").await.expect("request");
                assert_eq!(r.text(), BODY, "the origin's body");
                ok += 1;
            }
            ok
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    while let Some(n) = tasks.join_next().await {
        ok += n.expect("client task");
    }
    ok as f64 / started.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let secs = env_u64("ANALYTICS_BENCH_SECS", 2);
        let rounds = env_u64("ANALYTICS_BENCH_ROUNDS", 5) as usize;
        let redis = RedisServer::start();
        let memory_cache = Cache::builder().namespace("bench").build().unwrap();
        let redis_cache = Cache::builder()
            .namespace("bench")
            .redis_url(redis.url())
            .build()
            .unwrap();
        let variants: Vec<(&str, SocketAddr, Option<Cache>)> = vec![
            ("plain", serve(app(None)).await, None),
            (
                "analytics (memory)",
                serve(app(Some(&memory_cache))).await,
                Some(memory_cache.clone()),
            ),
            (
                "analytics (redis)",
                serve(app(Some(&redis_cache))).await,
                Some(redis_cache.clone()),
            ),
        ];
        println!(
            "analytics overhead: GET /static (2-byte body), {TASKS} keep-alive clients over \
             loopback, {rounds} interleaved rounds of {secs} s per variant, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        // Warm-up of every server.
        for (_, addr, _) in &variants {
            round(*addr, Duration::from_millis(300)).await;
        }
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for r in 0..rounds {
            // Rotate the order each round, so no variant always runs first or last.
            for k in 0..variants.len() {
                let i = (r + k) % variants.len();
                let (name, addr, _) = &variants[i];
                let rps = round(*addr, Duration::from_secs(secs)).await;
                println!("  round {r} {name:<20} {rps:>10.0} req/s");
                results[i].push(rps);
            }
        }
        // Per round, each variant over the plain route of the same round (adjacent in time,
        // so a slow spell of the machine affects both): the median of those ratios.
        let paired: Vec<f64> = results
            .iter()
            .map(|v| {
                let mut ratios: Vec<f64> = v
                    .iter()
                    .zip(&results[0])
                    .map(|(x, plain)| x / plain)
                    .collect();
                median(&mut ratios)
            })
            .collect();
        let medians: Vec<f64> = results.iter_mut().map(|v| median(v)).collect();
        println!("median req/s:");
        for (i, (name, _, cache)) in variants.iter().enumerate() {
            let ratio = medians[i] / medians[0];
            let recorder = match cache {
                Some(c) => {
                    c.analytics().flush().await;
                    let s = c.analytics().stats();
                    format!("  (events written {}, dropped {})", s.written, s.dropped)
                }
                None => String::new(),
            };
            println!(
                "  {name:<20} {:>10.0} req/s  ratio of medians {ratio:.3} ({:+.1} %), \
                 median of per-round ratios {:.3}{recorder}",
                medians[i],
                (ratio - 1.0) * 100.0,
                paired[i]
            );
        }
    });
}
