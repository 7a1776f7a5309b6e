//! The in-process tier (L1) against a Redis hit, side by side in one run on one `redis-server`
//! (`REDIS_URL`, or one started for the run), and the propagation delay of an invalidation.
//!
//! Run: `cargo bench -p cache-tests --bench l1` (`L1_BENCH_QUICK=1` for a short run).
//!
//! * **Hit latency**: `get_or_load` hits of the same key and payload (10 JSON rows, about 1 KiB,
//!   and 160 rows, about 16 KiB) through a cache without L1 and one with L1, in interleaved
//!   rounds; p50/p99 per variant and the ratios.
//!   Variants: `redis` (no L1), `l1` (`get_or_load`: the L1 bytes decoded on every hit),
//!   `l1-arc` (`get_or_load_arc`: the decoded value shared by the entry's hits, an `Arc` clone)
//!   and `l1-arc+clone` (`get_or_load_arc` then a clone of the value: the cost of returning an
//!   owned `T` from the decoded tier, against `l1`'s decode).
//! * **Throughput**: 64 tasks doing hits for a fixed time, per variant, interleaved rounds.
//! * **Propagation**: two instances (two caches with L1 on the same namespace). Repeatedly:
//!   B has the entry in its L1; A changes the origin and invalidates the entry's tag; from the
//!   moment `invalidate_tags` returned on A, B is polled until its L1 no longer serves the old
//!   value. p50/p99/max over the invalidations.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, Policy, Tier};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Row {
    id: u64,
    name: String,
    lat: f64,
    lon: f64,
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|id| Row {
            id,
            name: format!("trig point number {id}"),
            lat: 55.398_430_706_246_76,
            lon: -4.123,
        })
        .collect()
}

const VARIANTS: [&str; 4] = ["redis", "l1", "l1-arc", "l1-arc+clone"];

/// One hit through variant `v` (see the module docs); returns the number of rows.
async fn hit(
    cache: &Cache,
    v: usize,
    key: &cache_core::CacheKey,
    policy: &Policy,
    n: u64,
) -> usize {
    let load = || async move { rows(n) };
    match v {
        0 | 1 => cache
            .get_or_load::<Vec<Row>, _, _>(key, policy.clone(), load)
            .await
            .len(),
        2 => cache
            .get_or_load_arc::<Vec<Row>, _, _>(key, policy.clone(), load)
            .await
            .len(),
        _ => {
            let shared = cache
                .get_or_load_arc::<Vec<Row>, _, _>(key, policy.clone(), load)
                .await;
            let owned: Vec<Row> = (*shared).clone();
            owned.len()
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let quick = std::env::var("L1_BENCH_QUICK").is_ok();
    let server = cache_tests::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ns = cache_tests::unique_namespace("l1bench");
        let build = |l1: bool| {
            let b = Cache::builder()
                .namespace(ns.clone())
                .redis_url(server.url())
                .command_timeout(Duration::from_secs(2));
            let b = if l1 { b.l1(256 * 1024 * 1024) } else { b };
            b.build().unwrap()
        };
        let redis = build(false);
        let l1 = build(true);
        let other = build(true);
        for c in [&l1, &other] {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !c.l1_status().unwrap().live {
                assert!(Instant::now() < deadline, "L1 never subscribed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        println!("# L1 vs Redis hit, one redis-server ({}), same run", server.url());
        for (label, n_rows) in [("1KiB", 10u64), ("16KiB", 160)] {
            let payload = rows(n_rows);
            let size = serde_json::to_vec(&payload).unwrap().len();
            let key = redis.key("bench").id(label).build();
            let policy = Policy::ttl(Duration::from_secs(3600));
            let load = || async { rows(n_rows) };
            let _: Vec<Row> = redis.get_or_load(&key, policy.clone(), load).await;
            let warm: Vec<Row> = l1.get_or_load(&key, policy.clone(), load).await;
            assert_eq!(warm.len(), payload.len());
            let f = l1
                .fetch(&key, policy.clone(), || async { Ok::<_, ()>(rows(n_rows)) })
                .await
                .unwrap();
            assert_eq!(f.tier, Some(Tier::L1));
            // Latency, interleaved rounds.
            let per_round = if quick { 2_000 } else { 10_000 };
            let rounds = if quick { 2 } else { 5 };
            let mut lat: [Vec<Duration>; 4] = Default::default();
            for _ in 0..rounds {
                for (i, cache) in [&redis, &l1, &l1, &l1].into_iter().enumerate() {
                    for _ in 0..per_round {
                        let t = Instant::now();
                        let n = hit(cache, i, &key, &policy, n_rows).await;
                        lat[i].push(t.elapsed());
                        assert_eq!(n, payload.len());
                    }
                }
            }
            for l in &mut lat {
                l.sort();
            }
            let (r50, r99) = (pct(&lat[0], 0.5), pct(&lat[0], 0.99));
            for (i, name) in VARIANTS.iter().enumerate().skip(1) {
                let (l50, l99) = (pct(&lat[i], 0.5), pct(&lat[i], 0.99));
                println!(
                    "hit latency {label} ({size} B JSON): redis p50 {:.1} µs p99 {:.1} µs | {name} p50 {:.2} µs p99 {:.2} µs | {name}/redis p50 = 1/{:.0}, p99 = 1/{:.0} (goal <= 1/30)",
                    us(r50), us(r99), us(l50), us(l99),
                    us(r50) / us(l50), us(r99) / us(l99)
                );
            }
            // Throughput: 64 tasks, interleaved rounds.
            let window = if quick { Duration::from_millis(500) } else { Duration::from_secs(2) };
            let mut ops: [Vec<f64>; 4] = Default::default();
            for _ in 0..if quick { 2 } else { 3 } {
                for (i, cache) in [&redis, &l1, &l1, &l1].into_iter().enumerate() {
                    let count = Arc::new(AtomicU64::new(0));
                    let stop = Arc::new(AtomicBool::new(false));
                    let mut tasks = Vec::new();
                    for _ in 0..64 {
                        let (cache, key, policy, count, stop) =
                            (cache.clone(), key.clone(), policy.clone(), count.clone(), stop.clone());
                        tasks.push(tokio::spawn(async move {
                            while !stop.load(Ordering::Relaxed) {
                                let n = hit(&cache, i, &key, &policy, n_rows).await;
                                assert_eq!(n as u64, n_rows);
                                count.fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await;
                            }
                        }));
                    }
                    let started = Instant::now();
                    tokio::time::sleep(window).await;
                    stop.store(true, Ordering::Relaxed);
                    for t in tasks {
                        t.await.unwrap();
                    }
                    ops[i].push(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64());
                }
            }
            let spread = |v: &[f64]| {
                let min = v.iter().cloned().fold(f64::MAX, f64::min);
                let max = v.iter().cloned().fold(0.0, f64::max);
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                (mean, min, max)
            };
            let (rm, rmin, rmax) = spread(&ops[0]);
            for (i, name) in VARIANTS.iter().enumerate().skip(1) {
                let (lm, lmin, lmax) = spread(&ops[i]);
                println!(
                    "throughput {label}, 64 tasks: redis {rm:.0} ops/s [{rmin:.0}-{rmax:.0}] | {name} {lm:.0} ops/s [{lmin:.0}-{lmax:.0}] | {name}/redis = {:.1}x (goal >= 10x)",
                    lm / rm
                );
            }
        }
        // Propagation: A invalidates, B's L1 stops serving the old value.
        let version = Arc::new(AtomicU64::new(0));
        let a = &other;
        let b = &l1;
        let key = a.key("prop").id(1).build();
        let policy = Policy::ttl(Duration::from_secs(3600)).tag("prop");
        let n = if quick { 200 } else { 1_000 };
        let mut delays = Vec::with_capacity(n);
        let read = |c: &Cache| {
            let (c, key, policy, version) = (c.clone(), key.clone(), policy.clone(), version.clone());
            async move {
                c.fetch(&key, policy, || async { Ok::<_, ()>(version.load(Ordering::SeqCst)) })
                    .await
                    .unwrap()
            }
        };
        for _ in 0..n {
            // B holds the current value in L1.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let f = read(b).await;
                if f.tier == Some(Tier::L1) {
                    break;
                }
                assert!(Instant::now() < deadline, "B never filled its L1");
            }
            let old = version.fetch_add(1, Ordering::SeqCst);
            a.invalidate_tags(&["prop"]).await.unwrap();
            let returned = Instant::now();
            loop {
                let f = read(b).await;
                if f.value != old {
                    assert_eq!(f.value, old + 1);
                    break;
                }
                assert_eq!(f.tier, Some(Tier::L1), "the old value can only come from L1");
                assert!(returned.elapsed() < Duration::from_secs(10), "never propagated");
                tokio::task::yield_now().await;
            }
            delays.push(returned.elapsed());
        }
        delays.sort();
        println!(
            "propagation (invalidate_tags returned on A -> B's L1 no longer serves the old value), {n} invalidations: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs (goal p99 < 5 ms)",
            us(pct(&delays, 0.5)),
            us(pct(&delays, 0.99)),
            us(*delays.last().unwrap())
        );
    });
}
