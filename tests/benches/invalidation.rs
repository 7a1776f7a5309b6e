//! Tag invalidation cost is independent of keyspace size.
//!
//! Run with `cargo bench -p cache-tests --bench invalidation`. Starts its own `redis-server`
//! (or uses `REDIS_URL`). For 10 000 and then 1 000 000 unrelated background keys it stores
//! 1 000 entries tagged `bench:tag` through the cache and times
//! [`Cache::invalidate_tags`] (per-tag index, one atomic script), then stores them again and
//! times the baseline: a `SCAN 0 MATCH <entries> COUNT 1000` loop + `DEL` of what it finds.
//! Each is repeated 5 times per size; the medians are compared.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use cache_core::key::sanitize_segment;
use cache_core::{Cache, CacheKey, Policy};
use cache_tests::{unique_namespace, RedisServer};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

const COMMAND: &str = "cargo bench -p cache-tests --bench invalidation";
const SIZES: [u64; 2] = [10_000, 1_000_000];
const TAGGED: u64 = 1_000;
const REPS: usize = 5;
const TAG: &str = "bench:tag";
const TTL: Duration = Duration::from_secs(3600);
/// `COUNT` of the baseline's `SCAN`.
const SCAN_COUNT: u64 = 1_000;
/// Keys per `MSET` when `DEBUG POPULATE` is refused; `PIPELINE_MSETS` of them per round trip.
const MSET_KEYS: u64 = 1_000;
const PIPELINE_MSETS: u64 = 10;

/// A small cached row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
    score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    DebugPopulate,
    PipelinedMset,
}

struct Bench {
    cache: Cache,
    con: MultiplexedConnection,
    keys: Vec<CacheKey>,
    /// `MATCH` pattern of exactly the tagged entries.
    pattern: String,
    /// Prefix of the background keys (`{prefix}:N`).
    bg_prefix: String,
    /// The tag's version and index keys.
    bookkeeping: [String; 2],
    fill: Option<Fill>,
}

impl Bench {
    async fn dbsize(&mut self) -> u64 {
        redis::cmd("DBSIZE")
            .query_async(&mut self.con)
            .await
            .expect("DBSIZE")
    }

    /// Keys that are neither tagged entries nor tag bookkeeping (entries must be gone).
    async fn others(&mut self) -> u64 {
        let bookkeeping: u64 = redis::cmd("EXISTS")
            .arg(&self.bookkeeping)
            .query_async(&mut self.con)
            .await
            .expect("EXISTS");
        self.dbsize().await - bookkeeping
    }

    async fn existing_entries(&mut self) -> u64 {
        let names: Vec<&str> = self.keys.iter().map(CacheKey::as_str).collect();
        redis::cmd("EXISTS")
            .arg(&names)
            .query_async(&mut self.con)
            .await
            .expect("EXISTS")
    }

    /// Grows the background to `to` keys `{bg_prefix}:0..to`.
    async fn fill_to(&mut self, from: u64, to: u64) -> Fill {
        if self.fill != Some(Fill::PipelinedMset) {
            let r: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("POPULATE")
                .arg(to)
                .arg(&self.bg_prefix)
                .arg(32)
                .query_async(&mut self.con)
                .await;
            match r {
                Ok(()) => {
                    self.fill = Some(Fill::DebugPopulate);
                    return Fill::DebugPopulate;
                }
                Err(e) => {
                    let why = if e.to_string().contains("enable-debug-command") {
                        "enable-debug-command is off".to_owned()
                    } else {
                        e.to_string()
                    };
                    println!("# DEBUG POPULATE refused ({why}); filling with pipelined MSET");
                    self.fill = Some(Fill::PipelinedMset);
                }
            }
        }
        let value = "x".repeat(32);
        let mut i = from;
        while i < to {
            let mut pipe = redis::pipe();
            for _ in 0..PIPELINE_MSETS {
                if i >= to {
                    break;
                }
                let end = (i + MSET_KEYS).min(to);
                let cmd = pipe.cmd("MSET");
                for n in i..end {
                    cmd.arg(format!("{}:{n}", self.bg_prefix)).arg(&value);
                }
                pipe.ignore();
                i = end;
            }
            pipe.query_async::<()>(&mut self.con)
                .await
                .expect("pipelined MSET");
        }
        Fill::PipelinedMset
    }

    /// Stores the tagged entries concurrently through the cache.
    async fn store_tagged(&mut self) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            let (cache, key) = (self.cache.clone(), key.clone());
            tasks.spawn(async move {
                let row = Row {
                    id: i as u64,
                    name: format!("entry number {i}"),
                    score: i as f64 * 0.5,
                };
                cache
                    .set(&key, &row, Policy::ttl(TTL).tag(TAG))
                    .await
                    .expect("tagged set");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("store task panicked");
        }
        assert_eq!(self.existing_entries().await, TAGGED, "all entries stored");
    }

    async fn time_invalidate(&mut self) -> Duration {
        let t = Instant::now();
        let n = self
            .cache
            .invalidate_tags(&[TAG])
            .await
            .expect("invalidate_tags");
        let elapsed = t.elapsed();
        assert_eq!(n, TAGGED, "invalidate_tags deleted every tagged entry");
        elapsed
    }

    /// The baseline: what the seeds did.
    async fn time_scan_del(&mut self) -> Duration {
        let t = Instant::now();
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.con)
                .await
                .expect("SCAN");
            if !keys.is_empty() {
                deleted += redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<u64>(&mut self.con)
                    .await
                    .expect("DEL");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let elapsed = t.elapsed();
        assert_eq!(deleted, TAGGED, "SCAN+DEL deleted every tagged entry");
        elapsed
    }

    /// The entries are gone (through the API and on the server), the background is intact.
    async fn check_deleted(&mut self, others: u64) {
        for key in self.keys.iter().step_by(50) {
            assert_eq!(
                self.cache.get::<Row>(key).await,
                None,
                "{} survived",
                key.as_str()
            );
        }
        assert_eq!(self.existing_entries().await, 0, "tagged entries remain");
        assert_eq!(self.others().await, others, "background keys were touched");
    }
}

fn median_ms(runs: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = runs.iter().map(|d| d.as_secs_f64() * 1_000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn list_ms(runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64() * 1_000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    println!("# tag invalidation cost vs keyspace size");
    println!("# reproduce: {COMMAND}");
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let ns = unique_namespace("bench-inv");
    // `build()` spawns the connection manager's task: it needs the runtime's context.
    let _guard = rt.enter();
    let cache = Cache::builder()
        .namespace(ns.clone())
        .redis_url(url.clone())
        .admin_timeout(Duration::from_secs(60))
        .command_timeout(Duration::from_secs(5))
        .build()
        .expect("valid cache configuration");
    let keys: Vec<CacheKey> = (0..TAGGED)
        .map(|i| cache.key("item").id(i).build())
        .collect();
    let pattern = format!("{}item:*", cache.keyspace().prefix());
    let tag_id = format!("{}{}", cache.keyspace().tag_prefix(), sanitize_segment(TAG));
    let rows = rt.block_on(async {
        let con = server.connection().await;
        let mut b = Bench {
            cache: cache.clone(),
            con,
            keys,
            pattern,
            bg_prefix: format!("{ns}:bg"),
            bookkeeping: [format!("{tag_id}:v"), format!("{tag_id}:k")],
            fill: None,
        };
        println!(
            "# redis at {url} ({}); {TAGGED} entries tagged `{TAG}`, {REPS} runs per size; \
             baseline SCAN MATCH {} COUNT {SCAN_COUNT} + DEL",
            if server.is_external() {
                "REDIS_URL"
            } else {
                "owned redis-server"
            },
            b.pattern
        );
        let mut rows = Vec::new();
        let mut filled = 0;
        for size in SIZES {
            let before = b.others().await;
            let t = Instant::now();
            let how = b.fill_to(filled, size).await;
            let fill_time = t.elapsed();
            let others = b.others().await;
            assert_eq!(others, before + (size - filled), "background filled");
            filled = size;
            println!(
                "# background {size} keys ready via {how:?} in {:.1} s (DBSIZE {})",
                fill_time.as_secs_f64(),
                b.dbsize().await
            );
            let (mut inv, mut scan) = (Vec::new(), Vec::new());
            for rep in 0..REPS {
                // Alternate which method runs first.
                for first in [rep % 2 == 0, rep % 2 != 0] {
                    b.store_tagged().await;
                    if first {
                        inv.push(b.time_invalidate().await);
                    } else {
                        scan.push(b.time_scan_del().await);
                    }
                    b.check_deleted(others).await;
                }
            }
            rows.push((size, inv, scan));
        }
        if server.is_external() {
            let n = b.cache.clear().await.expect("clean up the namespace");
            println!("# removed {n} keys of namespace {ns} from the external server");
        }
        rows
    });

    println!();
    println!(
        "{:>10} | {:>23} | {:>15}",
        "size", "tag invalidation ms", "SCAN+DEL ms"
    );
    println!("{:->10}-|-{:->23}-|-{:->15}", "", "", "");
    for (size, inv, scan) in &rows {
        println!(
            "{size:>10} | {:>23.2} | {:>15.2}",
            median_ms(inv),
            median_ms(scan)
        );
    }
    let (small, large) = (&rows[0], &rows[rows.len() - 1]);
    println!(
        "{:>10} | {:>22.2}x | {:>14.2}x",
        "1M / 10k",
        median_ms(&large.1) / median_ms(&small.1),
        median_ms(&large.2) / median_ms(&small.2)
    );
    println!("(medians of {REPS} runs; each run deletes {TAGGED} entries)");
    println!();
    for (size, inv, scan) in &rows {
        println!(
            "# runs at {size}: invalidate_tags [{}] ms; SCAN+DEL [{}] ms",
            list_ms(inv),
            list_ms(scan)
        );
    }
    println!(
        "# checks: every run deleted exactly {TAGGED} entries, sampled get() -> None, \
         EXISTS on all {TAGGED} -> 0, other keys (DBSIZE minus tag bookkeeping) unchanged; \
         total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
