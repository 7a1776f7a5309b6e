//! Cache hit vs raw redis-rs: what does the engine cost on top of `GET` + `serde_json`?
//!
//! Run with `cargo bench -p cache-tests --bench hit_path`. Starts its own `redis-server` (or
//! uses `REDIS_URL`), then for a ~1 KiB and a ~16 KiB JSON payload measures, sequentially and
//! interleaved in rounds so that machine noise hits every variant alike:
//!
//! * `raw`: `redis::cmd("GET")` on a `MultiplexedConnection` + `serde_json::from_slice`;
//! * `ours get (JSON)`: [`Cache::get`] hit with the JSON codec;
//! * `ours get_or_load hit`: [`Cache::get_or_load`] hit (the loader never runs: asserted);
//! * `ours get (MessagePack)`: [`Cache::get`] hit with the MessagePack codec;
//!
//! then the throughput of 64 concurrent tasks doing hits, ours vs raw.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheKey, Codec};
use cache_tests::{unique_namespace, RedisServer};
use redis::aio::MultiplexedConnection;

#[path = "support/payload.rs"]
mod payload;
use payload::{payload, Payload, Samples};

const COMMAND: &str = "cargo bench -p cache-tests --bench hit_path";
/// Measured operations per variant and payload.
const N: usize = 20_000;
/// Unmeasured operations per variant and payload before the rounds.
const WARMUP: usize = 2_000;
/// The measured operations are split into this many interleaved rounds.
const ROUNDS: usize = 10;
/// Tasks of the throughput test.
const TASKS: usize = 64;
/// Total time each side of the throughput test runs.
const THROUGHPUT_FOR: Duration = Duration::from_secs(2);
/// Slices per side; raw and ours alternate in ABBA order.
const THROUGHPUT_SLICES: usize = 8;
const TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    OursGet,
    OursGetOrLoad,
    OursMsgpack,
    OursByHand,
    OursMacro,
}

/// The page read through `#[cached]`: the macro builds the key from `id` and `page`.
#[cache_core::cached(resource = "trigs", ttl = "5m", cache = cache, skip = [loads, fill])]
async fn cached_page(
    cache: &Cache,
    loads: &AtomicUsize,
    fill: &Payload,
    id: u32,
    page: u32,
) -> Payload {
    loads.fetch_add(1, Ordering::Relaxed);
    let _ = (id, page);
    fill.clone()
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::Raw,
        Variant::OursGet,
        Variant::OursGetOrLoad,
        Variant::OursMsgpack,
        Variant::OursByHand,
        Variant::OursMacro,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Raw => "raw redis-rs GET + serde_json",
            Variant::OursGet => "ours get (JSON)",
            Variant::OursGetOrLoad => "ours get_or_load hit (JSON)",
            Variant::OursMsgpack => "ours get (MessagePack)",
            Variant::OursByHand => "ours by hand: key + get_or_load",
            Variant::OursMacro => "ours #[cached] fn (same work)",
        }
    }
}

/// Everything one payload size needs.
#[derive(Clone)]
struct Fixture {
    json: Cache,
    msgpack: Cache,
    key: CacheKey,
    mp_key: CacheKey,
    raw: MultiplexedConnection,
    raw_key: String,
    expected: Arc<Payload>,
    loads: Arc<AtomicUsize>,
    /// Loader runs of the `#[cached]` fn: none, since it reads the hand-written code's entry.
    macro_loads: Arc<AtomicUsize>,
}

impl Fixture {
    async fn new(url: &str, ns: &str, label: &str, target: usize) -> Fixture {
        let builder = |codec: Codec, suffix: &str| {
            Cache::builder()
                .namespace(format!("{ns}-{label}-{suffix}"))
                .redis_url(url)
                // Generous deadline so that a noisy machine never turns a hit into a miss.
                .command_timeout(Duration::from_secs(1))
                .codec(codec)
                .build()
                .expect("valid cache configuration")
        };
        let json = builder(Codec::Json, "json");
        let msgpack = builder(Codec::MessagePack, "mp");
        let key = json.key("trigs").id(1).param("page", 1).build();
        let mp_key = msgpack.key("trigs").id(1).param("page", 1).build();
        assert_eq!(
            key.as_str().replace("-json:", "-mp:"),
            mp_key.as_str(),
            "keys differ only by namespace"
        );
        let expected = Arc::new(payload(target));
        json.set(&key, &*expected, TTL)
            .await
            .expect("store JSON entry");
        msgpack
            .set(&mp_key, &*expected, TTL)
            .await
            .expect("store MessagePack entry");

        let client = redis::Client::open(url).expect("valid url");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        let raw_key = format!("{ns}-{label}-raw:trigs:1");
        let bytes = serde_json::to_vec(&*expected).expect("encode");
        redis::cmd("SET")
            .arg(&raw_key)
            .arg(&bytes)
            .query_async::<()>(&mut raw)
            .await
            .expect("raw SET");

        let f = Fixture {
            json,
            msgpack,
            key,
            mp_key,
            raw,
            raw_key,
            expected,
            loads: Arc::new(AtomicUsize::new(0)),
            macro_loads: Arc::new(AtomicUsize::new(0)),
        };
        // Fill the entries the by-hand and macro variants read (one load each).
        let key = f
            .json
            .key("trigs")
            .param("id", 1u32)
            .param("page", 1u32)
            .build();
        f.json
            .set(&key, &*f.expected, TTL)
            .await
            .expect("store by-hand entry");
        cached_page(&f.json, &f.macro_loads, &f.expected, 1, 1).await;
        // Every variant must return the very same value.
        for v in Variant::ALL {
            assert_eq!(
                f.op(v).await,
                *f.expected,
                "{} returns the payload",
                v.label()
            );
        }
        f
    }

    /// One read through `v`.
    async fn op(&self, v: Variant) -> Payload {
        match v {
            Variant::Raw => {
                let mut con = self.raw.clone();
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(&self.raw_key)
                    .query_async(&mut con)
                    .await
                    .expect("raw GET");
                serde_json::from_slice(&bytes).expect("raw decode")
            }
            Variant::OursGet => self.json.get(&self.key).await.expect("JSON hit"),
            Variant::OursGetOrLoad => {
                self.json
                    .get_or_load(&self.key, TTL, || async {
                        self.loads.fetch_add(1, Ordering::Relaxed);
                        (*self.expected).clone()
                    })
                    .await
            }
            Variant::OursMsgpack => self
                .msgpack
                .get(&self.mp_key)
                .await
                .expect("MessagePack hit"),
            Variant::OursByHand => {
                let (id, page) = (1u32, 1u32);
                let key = self
                    .json
                    .key("trigs")
                    .param("id", id)
                    .param("page", page)
                    .build();
                self.json
                    .get_or_load(&key, TTL, || async {
                        self.loads.fetch_add(1, Ordering::Relaxed);
                        (*self.expected).clone()
                    })
                    .await
            }
            Variant::OursMacro => {
                cached_page(&self.json, &self.macro_loads, &self.expected, 1, 1).await
            }
        }
    }

    async fn stored_len(&self, cache: &Cache, key: &CacheKey) -> usize {
        cache.get_raw(key).await.map_or(0, |b| b.len())
    }
}

async fn measure(f: &Fixture, v: Variant, n: usize, out: Option<&mut Samples>) {
    match out {
        Some(out) => {
            out.0.reserve(n);
            for _ in 0..n {
                let t = Instant::now();
                let value = f.op(v).await;
                let ns = t.elapsed().as_nanos() as u64;
                black_box(value);
                out.0.push(ns);
            }
        }
        None => {
            for _ in 0..n {
                black_box(f.op(v).await);
            }
        }
    }
}

/// Ops/s of `TASKS` tasks doing `v` hits for `dur`.
async fn throughput(f: &Fixture, v: Variant, dur: Duration) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (f, stop, ops) = (f.clone(), stop.clone(), ops.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(f.op(v).await);
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
    (ops.load(Ordering::Relaxed), started.elapsed())
}

struct SizeResult {
    label: &'static str,
    json_len: usize,
    items: usize,
    stored_json: usize,
    stored_mp: usize,
    samples: Vec<(Variant, Samples)>,
    raw_ops_s: f64,
    ours_ops_s: f64,
}

async fn run_size(url: &str, ns: &str, label: &'static str, target: usize) -> SizeResult {
    let f = Fixture::new(url, ns, label, target).await;
    let json_len = serde_json::to_vec(&*f.expected).map_or(0, |v| v.len());
    let stored_json = f.stored_len(&f.json, &f.key).await;
    let stored_mp = f.stored_len(&f.msgpack, &f.mp_key).await;

    for v in Variant::ALL {
        measure(&f, v, WARMUP, None).await;
    }
    let mut samples: Vec<(Variant, Samples)> = Variant::ALL
        .iter()
        .map(|&v| (v, Samples::default()))
        .collect();
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..samples.len()).collect()
        } else {
            (0..samples.len()).rev().collect()
        };
        for i in order {
            let v = samples[i].0;
            measure(&f, v, N / ROUNDS, Some(&mut samples[i].1)).await;
        }
    }

    // Throughput in short slices, ABBA order repeated, so that drift hits both alike.
    let slice = THROUGHPUT_FOR / THROUGHPUT_SLICES as u32;
    throughput(&f, Variant::Raw, slice / 2).await; // warm-up
    throughput(&f, Variant::OursGet, slice / 2).await;
    let (mut raw_ops, mut raw_t, mut ours_ops, mut ours_t) = (0, Duration::ZERO, 0, Duration::ZERO);
    for i in 0..2 * THROUGHPUT_SLICES {
        let v = if matches!(i % 4, 0 | 3) {
            Variant::Raw
        } else {
            Variant::OursGet
        };
        let (n, t) = throughput(&f, v, slice).await;
        if v == Variant::Raw {
            raw_ops += n;
            raw_t += t;
        } else {
            ours_ops += n;
            ours_t += t;
        }
    }

    assert_eq!(
        f.loads.load(Ordering::Relaxed),
        0,
        "get_or_load ran its loader on a hit"
    );
    assert_eq!(
        f.macro_loads.load(Ordering::Relaxed),
        0,
        "the #[cached] fn derives the same key as the hand-written code, so it never loads"
    );
    let stats = f.json.stats();
    assert_eq!(stats.total.errors, 0, "no cache errors during the bench");

    SizeResult {
        label,
        json_len,
        items: f.expected.items.len(),
        stored_json,
        stored_mp,
        samples,
        raw_ops_s: raw_ops as f64 / raw_t.as_secs_f64(),
        ours_ops_s: ours_ops as f64 / ours_t.as_secs_f64(),
    }
}

fn main() {
    println!("# cache hit vs raw redis-rs");
    println!("# reproduce: {COMMAND}");
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let ns = unique_namespace("bench-hit");
    let started = Instant::now();
    let results = rt.block_on(async {
        let mut con = server.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await
            .expect("INFO");
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        println!(
            "# redis {version} at {url} ({}), tokio multi-thread runtime with {workers} workers",
            if server.is_external() {
                "REDIS_URL"
            } else {
                "owned redis-server"
            }
        );
        println!(
            "# sequential: {N} ops per variant after {WARMUP} warm-up, {ROUNDS} interleaved rounds \
             (order alternates); ratio = ours / raw"
        );
        let mut results = Vec::new();
        for (label, target) in [("1KiB", 1024), ("16KiB", 16 * 1024)] {
            results.push(run_size(&url, &ns, label, target).await);
        }
        results
    });

    for r in &results {
        let raw = &r.samples[0].1;
        let (raw_mean, raw_p50) = (raw.mean_us(), raw.pct_us(0.50));
        println!();
        println!(
            "## payload ~{}: JSON {} B ({} items); stored envelope JSON {} B, MessagePack {} B",
            r.label, r.json_len, r.items, r.stored_json, r.stored_mp
        );
        println!(
            "{:<31} {:>9} {:>9} {:>9} {:>11} {:>10}",
            "variant", "mean µs", "p50 µs", "p99 µs", "mean ratio", "p50 ratio"
        );
        for (v, s) in &r.samples {
            let (mean, p50) = (s.mean_us(), s.pct_us(0.50));
            let ratios = if *v == Variant::Raw {
                format!("{:>11} {:>10}", "1.00", "1.00")
            } else {
                format!("{:>11.2} {:>10.2}", mean / raw_mean, p50 / raw_p50)
            };
            println!(
                "{:<31} {:>9.1} {:>9.1} {:>9.1} {ratios}",
                v.label(),
                mean,
                p50,
                s.pct_us(0.99)
            );
        }
    }
    println!();
    println!(
        "## concurrent throughput: {TASKS} tasks doing hits, {} s per side in {THROUGHPUT_SLICES} \
         slices (ABBA order)",
        THROUGHPUT_FOR.as_secs()
    );
    println!(
        "{:<8} {:>14} {:>16} {:>7}",
        "payload", "raw ops/s", "ours get ops/s", "ratio"
    );
    for r in &results {
        println!(
            "{:<8} {:>14.0} {:>16.0} {:>7.2}",
            r.label,
            r.raw_ops_s,
            r.ours_ops_s,
            r.ours_ops_s / r.raw_ops_s
        );
    }
    println!();
    println!(
        "# get_or_load loader runs: 0 (asserted); total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
