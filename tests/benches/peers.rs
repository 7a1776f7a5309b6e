//! Ours against the peers, on one Redis, in one run: hit latency, 64-task hit throughput, miss +
//! store cost, a 1,000-caller cold-key stampede, and the cost of a call with Redis killed.
//!
//! Run with `make bench-peers` (`cargo bench -p cache-tests --bench peers`). Starts its own
//! `redis-server` (or uses `REDIS_URL`) and, for the 1 KiB and 16 KiB pages of
//! `support/records.rs`, reads the same value through:
//!
//! * `raw redis-rs`: `GET` on a `MultiplexedConnection` + `serde_json::from_slice`;
//! * `cached AsyncRedisCache`: the `cached` crate's Redis store (`async_cache_get`; it stores
//!   MessagePack without field names, `rmp_serde::to_vec`), used as its `#[concurrent_cached]`
//!   macro does: get, and on a miss compute and set;
//! * `ours JSON` and `ours compact`: [`Cache::get_or_load`] with [`Codec::Json`] and
//!   [`Codec::Compact`], the key built per call.
//!
//! The variants run in interleaved rounds (the order alternates) so that machine noise hits
//! them alike; each cell gives the median over rounds with the min–max spread. Every value read
//! is asserted equal to the stored page. With Redis killed (a server this bench owns), each
//! variant's call is timed under a 2 s bound: ours must return the loader's value within the
//! command deadline; a peer's error or hang is reported as it is.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, Codec};
use cache_tests::{unique_namespace, RedisServer};
use cached::{AsyncRedisCache, ConcurrentCachedAsync};
use redis::aio::MultiplexedConnection;

#[path = "support/records.rs"]
mod records;

use records::{page, Page, SIZES};

const COMMAND: &str = "make bench-peers";
/// Hit latency: measured operations per variant, split over the rounds.
const HIT_OPS: usize = 6_000;
/// Interleaved rounds of every measurement.
const ROUNDS: usize = 6;
/// Concurrent tasks of the throughput measurement.
const TASKS: usize = 64;
/// One throughput slice per variant and round.
const SLICE: Duration = Duration::from_millis(500);
/// Miss + store: fresh keys per variant and round.
const MISS_OPS: usize = 300;
/// Callers of the cold-key stampede.
const STAMPEDE: usize = 1_000;
/// The stampede's loader: a database call this long.
const LOADER: Duration = Duration::from_millis(20);
/// Calls per variant with Redis killed.
const DEAD_CALLS: usize = 200;
/// Bound on each call with Redis killed.
const DEAD_BOUND: Duration = Duration::from_secs(2);
const TTL: Duration = Duration::from_secs(3600);
/// Our command deadline outside the Redis-killed measurement (the default, 50 ms, there).
const GENEROUS: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Cached,
    OursJson,
    OursCompact,
    /// Ours with the compact codec and the in-process tier (`l1`) in front of Redis.
    OursL1,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Raw,
        Variant::Cached,
        Variant::OursJson,
        Variant::OursCompact,
        Variant::OursL1,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Raw => "raw redis-rs GET + serde_json",
            Variant::Cached => "cached AsyncRedisCache",
            Variant::OursJson => "ours JSON",
            Variant::OursCompact => "ours compact",
            Variant::OursL1 => "ours compact + L1",
        }
    }
}

/// Every client, pointed at one Redis.
#[derive(Clone)]
struct Fixture {
    raw: MultiplexedConnection,
    peer: Arc<AsyncRedisCache<u64, Page>>,
    json: Cache,
    compact: Cache,
    l1: Cache,
    ns: String,
    /// The hit page.
    hit: Arc<Page>,
    /// Fresh ids for the miss measurements.
    next_id: Arc<AtomicU64>,
}

const HIT_ID: u64 = 1;

impl Fixture {
    async fn new(url: &str, ns: &str, size: usize, command_timeout: Option<Duration>) -> Fixture {
        let ours = |codec: Codec, suffix: &str, l1: bool| {
            let mut b = Cache::builder()
                .namespace(format!("{ns}-{suffix}"))
                .redis_url(url)
                .codec(codec);
            if l1 {
                b = b.l1(64 * 1024 * 1024);
            }
            if let Some(t) = command_timeout {
                b = b.command_timeout(t);
            }
            b.build().expect("valid cache configuration")
        };
        let client = redis::Client::open(url).expect("valid url");
        let raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        let peer = AsyncRedisCache::<u64, Page>::builder(format!("{ns}-cached"))
            .namespace("peers")
            .connection_string(url)
            .ttl(TTL)
            .build()
            .await
            .expect("cached AsyncRedisCache");
        Fixture {
            raw,
            peer: Arc::new(peer),
            json: ours(Codec::Json, "json", false),
            compact: ours(Codec::Compact, "compact", false),
            l1: ours(Codec::Compact, "l1", true),
            ns: ns.to_owned(),
            hit: Arc::new(page(HIT_ID, size)),
            next_id: Arc::new(AtomicU64::new(1_000)),
        }
    }

    fn cache(&self, v: Variant) -> &Cache {
        match v {
            Variant::OursJson => &self.json,
            Variant::OursCompact => &self.compact,
            Variant::OursL1 => &self.l1,
            Variant::Raw | Variant::Cached => unreachable!("not ours"),
        }
    }

    fn raw_key(&self, id: u64) -> String {
        format!("{}-raw:items:{id}", self.ns)
    }

    /// Reads `id` through `v`; on a miss (or an error) runs `load` and stores its value.
    async fn get<F, Fut>(&self, v: Variant, id: u64, load: F) -> Result<Page, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Page>,
    {
        match v {
            Variant::Raw => {
                let mut con = self.raw.clone();
                let got: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(self.raw_key(id))
                    .query_async(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(bytes) = got {
                    return serde_json::from_slice(&bytes).map_err(|e| e.to_string());
                }
                let value = load().await;
                let bytes = serde_json::to_vec(&value).expect("encode");
                redis::cmd("SET")
                    .arg(self.raw_key(id))
                    .arg(bytes)
                    .arg("PX")
                    .arg(TTL.as_millis() as u64)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(value)
            }
            Variant::Cached => {
                if let Some(v) = self
                    .peer
                    .async_cache_get(&id)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Ok(v);
                }
                let value = load().await;
                self.peer
                    .async_cache_set(id, value.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(value)
            }
            ours => {
                let cache = self.cache(ours);
                let key = cache.key("items").id(id).build();
                Ok(cache.get_or_load(&key, TTL, load).await)
            }
        }
    }

    /// A hit of the page `HIT_ID`.
    async fn hit(&self, v: Variant) -> Page {
        self.get(v, HIT_ID, || async {
            panic!("{}: a miss on the hit path", v.label())
        })
        .await
        .expect("a hit")
    }

    /// Stored bytes of the hit entry.
    async fn stored_len(&self, v: Variant) -> usize {
        let mut con = self.raw.clone();
        let key = match v {
            Variant::Raw => self.raw_key(HIT_ID),
            // `{namespace}:{prefix}:{key}` (none of them holds `:` or `%`, so none is escaped).
            Variant::Cached => format!("peers:{}-cached:{HIT_ID}", self.ns),
            ours => {
                let cache = self.cache(ours);
                let key = cache.key("items").id(HIT_ID).build();
                return cache.get_raw(&key).await.map_or(0, |b| b.len());
            }
        };
        redis::cmd("STRLEN")
            .arg(&key)
            .query_async::<usize>(&mut con)
            .await
            .unwrap_or(0)
    }
}

/// Per-round values of one cell.
#[derive(Default, Clone)]
struct Cell(Vec<f64>);

impl Cell {
    fn median(&self) -> f64 {
        let mut s = self.0.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }
    fn show(&self, digits: usize) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median(),
            min,
            max,
            d = digits
        )
    }
}

fn pct(samples: &mut [u64], p: f64) -> f64 {
    samples.sort_unstable();
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i] as f64 / 1_000.0
}

/// Order of the variants in `round`: forwards, then backwards.
fn order(round: usize) -> Vec<usize> {
    let n = Variant::ALL.len();
    if round % 2 == 0 {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

#[derive(Default, Clone)]
struct Row {
    stored: usize,
    hit_p50: Cell,
    hit_p99: Cell,
    ops: Cell,
    miss_p50: Cell,
    miss_p99: Cell,
}

async fn throughput(f: &Fixture, v: Variant, dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (f, stop, ops) = (f.clone(), stop.clone(), ops.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let got = f.hit(v).await;
                debug_assert_eq!(got, *f.hit);
                black_box(got);
                n += 1;
            }
            ops.fetch_add(n, Ordering::Relaxed);
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("throughput task panicked");
    }
    ops.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn run_size(url: &str, ns: &str, label: &str, size: usize) -> (Vec<Row>, usize) {
    // A generous deadline, so that a noisy machine never turns a hit into a miss.
    let f = Fixture::new(url, &format!("{ns}-{label}"), size, Some(GENEROUS)).await;
    // Fill the hit entry of every variant through its own miss path, then check every hit.
    for v in Variant::ALL {
        let value = f
            .get(v, HIT_ID, || async { (*f.hit).clone() })
            .await
            .expect("fill");
        assert_eq!(value, *f.hit);
        assert_eq!(
            f.hit(v).await,
            *f.hit,
            "{} serves the stored page",
            v.label()
        );
        // Warm-up.
        for _ in 0..500 {
            black_box(f.hit(v).await);
        }
    }
    let mut rows = vec![Row::default(); Variant::ALL.len()];
    for (i, v) in Variant::ALL.iter().enumerate() {
        rows[i].stored = f.stored_len(*v).await;
    }
    for round in 0..ROUNDS {
        for i in order(round) {
            let v = Variant::ALL[i];
            // Hit latency, one task.
            let mut samples = Vec::with_capacity(HIT_OPS / ROUNDS);
            for _ in 0..HIT_OPS / ROUNDS {
                let t = Instant::now();
                let got = f.hit(v).await;
                samples.push(t.elapsed().as_nanos() as u64);
                assert!(got.id == HIT_ID && got.items.len() == f.hit.items.len());
                black_box(got);
            }
            rows[i].hit_p50.0.push(pct(&mut samples, 0.50));
            rows[i].hit_p99.0.push(pct(&mut samples, 0.99));
            // Throughput, 64 tasks.
            rows[i].ops.0.push(throughput(&f, v, SLICE).await);
            // Miss + store: a fresh key each time, the loader returns at once.
            let mut samples = Vec::with_capacity(MISS_OPS);
            for _ in 0..MISS_OPS {
                let id = f.next_id.fetch_add(1, Ordering::Relaxed);
                let value = page(id % 1_000, size); // outside the timing
                let t = Instant::now();
                let got = f
                    .get(v, id, || async { value })
                    .await
                    .expect("miss + store");
                samples.push(t.elapsed().as_nanos() as u64);
                black_box(got);
            }
            rows[i].miss_p50.0.push(pct(&mut samples, 0.50));
            rows[i].miss_p99.0.push(pct(&mut samples, 0.99));
        }
    }
    (rows, f.hit.items.len())
}

/// 1,000 callers on one cold key at once: loader runs and wall time, per variant.
async fn stampede(url: &str, ns: &str) -> Vec<(usize, Duration)> {
    let f = Fixture::new(url, &format!("{ns}-stampede"), 1024, Some(GENEROUS)).await;
    let mut out = Vec::new();
    for (n, v) in Variant::ALL.into_iter().enumerate() {
        let id = 900_000 + n as u64;
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Barrier::new(STAMPEDE));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..STAMPEDE {
            let (f, runs, gate) = (f.clone(), runs.clone(), gate.clone());
            tasks.spawn(async move {
                gate.wait().await;
                f.get(v, id, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(LOADER).await;
                    page(id, 1024)
                })
                .await
            });
        }
        let want = page(id, 1024);
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.expect("caller panicked").expect("a value"), want);
        }
        out.push((runs.load(Ordering::SeqCst), started.elapsed()));
    }
    out
}

/// Calls with Redis killed: per variant, the outcome and p50 / p99 / max of the call time.
async fn dead(ns: &str) -> Vec<(String, f64, f64, f64)> {
    let mut server = RedisServer::start_owned();
    // Ours with its default deadline (50 ms).
    let f = Fixture::new(&server.url(), &format!("{ns}-dead"), 1024, None).await;
    for v in Variant::ALL {
        f.get(v, HIT_ID, || async { (*f.hit).clone() })
            .await
            .expect("fill");
    }
    server.kill();
    let mut out = Vec::new();
    for v in Variant::ALL {
        let mut times = Vec::new();
        let (mut ok, mut errors, mut hung) = (0, 0, 0);
        let mut first_error = String::new();
        for _ in 0..DEAD_CALLS {
            let t = Instant::now();
            let r =
                tokio::time::timeout(DEAD_BOUND, f.get(v, HIT_ID, || async { (*f.hit).clone() }))
                    .await;
            times.push(t.elapsed().as_nanos() as u64);
            match r {
                Ok(Ok(value)) => {
                    assert_eq!(value, *f.hit, "{}: the loader's value", v.label());
                    ok += 1;
                }
                Ok(Err(e)) => {
                    if first_error.is_empty() {
                        first_error = e;
                    }
                    errors += 1;
                }
                Err(_) => hung += 1,
            }
            if hung >= 3 {
                break; // a hanging peer: three bounded waits are evidence enough
            }
        }
        let n = times.len();
        let max = times.iter().copied().max().unwrap_or(0) as f64 / 1_000.0;
        let outcome = if ok == n {
            format!("{ok}/{n} served the loader's value")
        } else if hung > 0 {
            format!("{hung}/{n} hung past {} s", DEAD_BOUND.as_secs())
        } else {
            let mut e = first_error.clone();
            e.truncate(60);
            format!("{errors}/{n} errors ({e})")
        };
        if matches!(
            v,
            Variant::OursJson | Variant::OursCompact | Variant::OursL1
        ) {
            assert_eq!(ok, n, "{}: every call falls back to the loader", v.label());
            assert!(
                max < 50_000.0 + 250_000.0,
                "{}: within the command deadline (plus scheduling slack): max {max} µs",
                v.label()
            );
        }
        out.push((outcome, pct(&mut times, 0.50), pct(&mut times, 0.99), max));
    }
    out
}

fn main() {
    println!("# ours vs the peers, one redis-server, one run");
    println!("# reproduce: {COMMAND}");
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let ns = unique_namespace("bench-peers");
    let started = Instant::now();
    rt.block_on(async {
        println!(
            "# redis at {url} ({}); tokio multi-thread runtime, {workers} workers; {ROUNDS} \
             interleaved rounds; cells: median over rounds (min-max)",
            if server.is_external() {
                "REDIS_URL"
            } else {
                "owned redis-server"
            }
        );
        let mut goal = Vec::new();
        for (label, size) in SIZES {
            let (rows, items) = run_size(&url, &ns, &label.replace(' ', ""), size).await;
            println!();
            println!(
                "## {label} page ({items} records); hit: 1 task, {} ops per variant; throughput: \
                 {TASKS} tasks, {} ms slices; miss+store: {MISS_OPS} fresh keys per round",
                HIT_OPS,
                SLICE.as_millis()
            );
            println!(
                "{:<31} {:>7} {:>22} {:>22} {:>26} {:>22} {:>22}",
                "variant",
                "stored",
                "hit p50 µs",
                "hit p99 µs",
                "64-task hits/s",
                "miss+store p50 µs",
                "miss+store p99 µs"
            );
            for (i, v) in Variant::ALL.iter().enumerate() {
                let r = &rows[i];
                println!(
                    "{:<31} {:>7} {:>22} {:>22} {:>26} {:>22} {:>22}",
                    v.label(),
                    r.stored,
                    r.hit_p50.show(1),
                    r.hit_p99.show(1),
                    r.ops.show(0),
                    r.miss_p50.show(1),
                    r.miss_p99.show(1)
                );
            }
            println!("ratios (medians; latency: lower is better, throughput: higher is better)");
            let peer = &rows[1];
            for (i, name) in [(2, "ours JSON"), (3, "ours compact")] {
                let r = &rows[i];
                for (against, p) in [("cached", peer), ("raw", &rows[0])] {
                    println!(
                        "  {name:<13}/ {against:<7} hit p50 {:>5.2}  hit p99 {:>5.2}  \
                         throughput {:>5.2}  miss+store p50 {:>5.2}",
                        r.hit_p50.median() / p.hit_p50.median(),
                        r.hit_p99.median() / p.hit_p99.median(),
                        r.ops.median() / p.ops.median(),
                        r.miss_p50.median() / p.miss_p50.median(),
                    );
                }
            }
            goal.push((label, rows[3].ops.median() / peer.ops.median()));
        }

        println!();
        println!(
            "## stampede: {STAMPEDE} callers on one cold key, loader {} ms",
            LOADER.as_millis()
        );
        println!("{:<31} {:>12} {:>10}", "variant", "loader runs", "wall ms");
        let runs = stampede(&url, &ns).await;
        for (v, (n, t)) in Variant::ALL.iter().zip(&runs) {
            println!(
                "{:<31} {:>12} {:>10.1}",
                v.label(),
                n,
                t.as_secs_f64() * 1_000.0
            );
            if matches!(
                v,
                Variant::OursJson | Variant::OursCompact | Variant::OursL1
            ) {
                assert_eq!(*n, 1, "{}: the loader runs once", v.label());
            }
        }

        println!();
        println!(
            "## Redis killed (a server this bench owns): {DEAD_CALLS} calls per variant, each \
             bounded by {} s; ours: default 50 ms command deadline",
            DEAD_BOUND.as_secs()
        );
        println!(
            "{:<31} {:<60} {:>9} {:>9} {:>10}",
            "variant", "outcome", "p50 µs", "p99 µs", "max µs"
        );
        for (v, (outcome, p50, p99, max)) in Variant::ALL.iter().zip(dead(&ns).await) {
            println!(
                "{:<31} {:<60} {:>9.1} {:>9.1} {:>10.1}",
                v.label(),
                outcome,
                p50,
                p99,
                max
            );
        }

        println!();
        for (label, ratio) in goal {
            println!(
                "goal: ours compact / cached, 64-task hit throughput at {label}: {ratio:.2} \
                 (goal >= 1.20: {})",
                if ratio >= 1.2 { "reached" } else { "missed" }
            );
        }
    });
    println!("# total {:.1} s", started.elapsed().as_secs_f64());
    drop(server);
}
