//! The shared half of the HTTP throughput benches (`axum_throughput`, `actix_throughput`): the
//! document, the timed slices over keep-alive connections ([`cache_tests::http::HttpClient`])
//! and the report. Each bench provides only its framework's server.
//!
//! The server under test serves three routes:
//!
//! * `/cached/{id}`: a handler simulating a 20 ms database call ([`DB_LATENCY`]), then ~2 KiB of
//!   JSON ([`document`]), behind the framework's `ResponseCacheLayer` on a real Redis, warmed
//!   with one request per id (so all hits);
//! * `/uncached/{id}`: the same handler without caching;
//! * `/static`: [`STATIC_BODY`] (the ceiling of the server + client on this machine).
//!
//! The variants run in slices interleaved in rounds (ABC, CBA, ABC) so that machine noise hits
//! them alike. Only `200` responses are counted; any error aborts the bench; every response of
//! the cached route must carry `x-cache-status: HIT`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::Cache;
use cache_tests::http::{HttpClient, HttpResponse};
use cache_tests::{unique_namespace, RedisServer};
use serde_json::{json, Value};

/// Concurrent clients, one keep-alive connection each.
const TASKS: usize = 64;
/// Distinct ids requested (all cached after the warm-up).
const IDS: u32 = 100;
/// Simulated database latency of the data handler.
pub(crate) const DB_LATENCY: Duration = Duration::from_millis(20);
/// Length of one measured slice.
const SLICE: Duration = Duration::from_secs(2);
/// Rounds; each runs every variant for one slice, order alternating.
const ROUNDS: usize = 3;
/// Unmeasured run of each variant before the rounds.
const WARMUP: Duration = Duration::from_millis(500);
/// Smallest acceptable body of the data routes.
const MIN_DATA_BODY: usize = 2048;
pub(crate) const TTL: Duration = Duration::from_secs(3600);
pub(crate) const STATIC_BODY: &str = "ok";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Cached,
    Uncached,
    Static,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Cached, Variant::Uncached, Variant::Static];

    fn label(self) -> &'static str {
        match self {
            Variant::Cached => "cached (20 ms handler, Redis hit)",
            Variant::Uncached => "uncached (20 ms handler)",
            Variant::Static => "static (constant body)",
        }
    }

    fn path(self, id: u32) -> String {
        match self {
            Variant::Cached => format!("/cached/{id}"),
            Variant::Uncached => format!("/uncached/{id}"),
            Variant::Static => "/static".to_owned(),
        }
    }
}

/// The ~2 KiB JSON document of `id`.
pub(crate) fn document(id: u32) -> Value {
    let items: Vec<Value> = (0..13u32)
        .map(|i| {
            json!({
                "id": id * 100 + i,
                "name": format!("Trig point {id}-{i}"),
                "county": "Cumbria",
                "grid_ref": format!("NY {:05} {:05}", 21_500 + i * 13, 7_200 + i * 7),
                "latitude": 54.454_2 + f64::from(i) * 0.013,
                "longitude": -3.211_6 - f64::from(i) * 0.021,
                "height_m": 978 - i,
                "condition": "Good",
            })
        })
        .collect();
    json!({ "id": id, "page": 1, "total": 6_500, "items": items })
}

/// The data handler: a "database call", then JSON.
/// A running server under test.
pub(crate) struct Served {
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// A description for the report (framework, workers).
    pub(crate) description: String,
}

/// Checks one reply of `v`; `Err` describes what is wrong.
fn check(v: Variant, r: &HttpResponse) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    match v {
        Variant::Cached if r.cache_status() != Some("HIT") => {
            Err(format!("x-cache-status {:?}", r.cache_status()))
        }
        Variant::Cached | Variant::Uncached if r.body.len() < MIN_DATA_BODY => {
            Err(format!("short body: {} B", r.body.len()))
        }
        Variant::Static if r.body.len() != STATIC_BODY.len() => {
            Err(format!("static body: {} B", r.body.len()))
        }
        _ => Ok(()),
    }
}

/// What one slice produced.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: Vec<String>,
    /// Latencies of the successful requests, in microseconds.
    lat_us: Vec<u32>,
    elapsed: Duration,
}

/// `TASKS` clients requesting `v` for `dur`.
async fn slice(addr: SocketAddr, v: Variant, dur: Duration) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for t in 0..TASKS {
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut out = Tally::default();
            let mut client = match HttpClient::connect(addr).await {
                Ok(c) => Some(c),
                Err(e) => {
                    out.errors.push(format!("connect: {e}"));
                    None
                }
            };
            // Spread the tasks over the ids, deterministically.
            let mut id = (t as u32 * 37) % IDS;
            while !stop.load(Ordering::Relaxed) {
                let Some(c) = client.as_mut() else { break };
                let path = v.path(id);
                id = (id + 1) % IDS;
                let t0 = Instant::now();
                match c.get(&path).await {
                    Ok(r) => match check(v, &r) {
                        Ok(()) => {
                            out.ok += 1;
                            out.lat_us
                                .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        }
                        Err(e) => out.errors.push(format!("{path}: {e}")),
                    },
                    Err(e) => {
                        out.errors.push(format!("{path}: {e}"));
                        client = HttpClient::connect(addr).await.ok();
                    }
                }
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
        total.errors.extend(t.errors);
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

/// Runs the bench: `serve` starts the framework's server for a cache (inside the bench's tokio
/// runtime) and returns its address.
pub(crate) fn run(
    framework: &str,
    command: &str,
    serve: impl FnOnce(Cache, std::net::TcpListener) -> Served,
) {
    println!("# HTTP throughput ({framework}): ResponseCacheLayer hit vs 20 ms handler vs static");
    println!("# reproduce: {command}");
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let ns = unique_namespace("bench-axum");
    let started = Instant::now();
    let mut totals = rt.block_on(async {
        let cache = Cache::builder()
            .namespace(ns)
            .redis_url(&url)
            // Generous deadline so that a noisy machine never turns a hit into a miss.
            .command_timeout(Duration::from_secs(1))
            .build()
            .expect("valid cache configuration");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let Served { addr, description } = serve(cache, listener);
        println!(
            "# redis at {url} ({}), {description}; clients on a tokio multi-thread runtime with \
             {workers} workers",
            if server.is_external() {
                "REDIS_URL"
            } else {
                "owned redis-server"
            }
        );

        // Warm the cache: one request per id, then every id must be a hit.
        let mut client = HttpClient::connect(addr).await.expect("connect");
        let mut doc_len = 0;
        for id in 0..IDS {
            let r = client.get(&format!("/cached/{id}")).await.expect("fill");
            assert_eq!(r.status, 200, "fill of id {id}");
            doc_len = r.body.len();
        }
        for id in 0..IDS {
            let r = client.get(&format!("/cached/{id}")).await.expect("check");
            check(Variant::Cached, &r).unwrap_or_else(|e| panic!("id {id} after warm-up: {e}"));
        }
        println!(
            "# {TASKS} clients, each on its own keep-alive HTTP/1.1 connection; {IDS} ids \
             (JSON body {doc_len} B), warmed: all hits; {ROUNDS} rounds x {} s per variant \
             (order ABC/CBA/...) after {} ms warm-up each",
            SLICE.as_secs_f64(),
            WARMUP.as_millis()
        );

        for v in Variant::ALL {
            let t = slice(addr, v, WARMUP).await;
            assert!(t.errors.is_empty(), "{} warm-up: {:?}", v.label(), t.errors);
        }
        let mut totals: Vec<(Variant, Tally)> = Variant::ALL
            .iter()
            .map(|&v| (v, Tally::default()))
            .collect();
        for round in 0..ROUNDS {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..totals.len()).collect()
            } else {
                (0..totals.len()).rev().collect()
            };
            for i in order {
                let t = slice(addr, totals[i].0, SLICE).await;
                let acc = &mut totals[i].1;
                acc.ok += t.ok;
                acc.errors.extend(t.errors);
                acc.lat_us.extend(t.lat_us);
                acc.elapsed += t.elapsed;
            }
        }
        totals
    });

    for (v, t) in &totals {
        assert!(
            t.errors.is_empty(),
            "{}: {} errors, first: {:?}",
            v.label(),
            t.errors.len(),
            t.errors.first()
        );
        assert!(t.ok > 0, "{}: no successful request", v.label());
    }
    let rps = |t: &Tally| t.ok as f64 / t.elapsed.as_secs_f64();
    let find = |want: Variant| {
        totals
            .iter()
            .find(|(v, _)| *v == want)
            .map(|(_, t)| rps(t))
            .expect("variant measured")
    };
    let (cached, uncached, stat) = (
        find(Variant::Cached),
        find(Variant::Uncached),
        find(Variant::Static),
    );

    println!();
    println!(
        "{:<34} {:>10} {:>12} {:>8} {:>8} {:>12}",
        "variant", "requests", "requests/s", "p50 ms", "p99 ms", "vs uncached"
    );
    for (v, t) in &mut totals {
        t.lat_us.sort_unstable();
        println!(
            "{:<34} {:>10} {:>12.0} {:>8.2} {:>8.2} {:>11.1}x",
            v.label(),
            t.ok,
            rps(t),
            pct_ms(&t.lat_us, 0.50),
            pct_ms(&t.lat_us, 0.99),
            rps(t) / uncached
        );
    }
    println!();
    println!("# cached / uncached throughput: {:.1}x", cached / uncached);
    println!("# cached / static throughput:   {:.2}", cached / stat);
    println!(
        "# errors: 0 (asserted); every cached response was x-cache-status: HIT (asserted); \
         total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
