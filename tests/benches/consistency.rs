//! Randomized concurrent consistency checker at scale: do reads ever return a value whose
//! invalidation had already returned when they began?
//!
//! Run with `cargo bench -p cache-tests --bench consistency`. Starts its own `redis-server` (or
//! uses `REDIS_URL`). Four variants: Redis (four `Cache` instances on one server, each with its
//! own connection and single-flight map) and memory (four instances on one `MemoryBackend`),
//! each read-heavy (5% writes) and write-heavy (30% writes); 64 concurrent tasks over 32 ids.
//! The checker itself (database as oracle, read paths, loaders) is `support/consistency.rs`,
//! shared with `tests/consistency.rs`.
//!
//! | Variable             | Effect                                                  |
//! |----------------------|---------------------------------------------------------|
//! | `CONSISTENCY_OPS`    | operations per variant (default 100 000)                |
//! | `CONSISTENCY_SEED`   | seed of the operation generators (default: the clock)   |
//! | `CONSISTENCY_STRICT` | `1`: exit with status 1 when any stale read was seen    |
#![allow(missing_docs)]

#[path = "support/consistency.rs"]
mod consistency;

use std::sync::Arc;
use std::time::Duration;

use cache_core::backend::MemoryBackend;
use cache_core::Cache;
use cache_tests::{unique_namespace, RedisServer};

use consistency::{Config, Method, Report};

const COMMAND: &str = "cargo bench -p cache-tests --bench consistency";
const TASKS: usize = 64;
const IDS: u32 = 32;
const CACHES: usize = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    Redis,
    Memory,
}

fn main() {
    let ops: usize = env_or("CONSISTENCY_OPS", 100_000);
    let seed: u64 = env_or(
        "CONSISTENCY_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    let strict = std::env::var("CONSISTENCY_STRICT").is_ok_and(|v| v.trim() == "1");
    println!("# consistency: reads must see every invalidation that returned before they began");
    println!(
        "# reproduce: CONSISTENCY_OPS={ops} CONSISTENCY_SEED={seed} {COMMAND}   \
         ({TASKS} tasks, {IDS} ids, {CACHES} caches per variant)"
    );
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // `build()` spawns the connection manager's task: it needs the runtime's context.
    let _guard = rt.enter();
    let mut rows: Vec<(String, Report)> = Vec::new();
    let mut namespaces = Vec::new();
    for backing in [Backing::Redis, Backing::Memory] {
        for write_percent in [5u32, 30] {
            let ns = unique_namespace("bench-consistency");
            let memory = Arc::new(MemoryBackend::new(256 * 1024 * 1024));
            let caches: Vec<Cache> = (0..CACHES)
                .map(|_| {
                    let b = Cache::builder()
                        .namespace(ns.clone())
                        .command_timeout(Duration::from_secs(5));
                    match backing {
                        Backing::Redis => b.redis_url(url.clone()),
                        Backing::Memory => b.backend(memory.clone()),
                    }
                    .build()
                    .expect("valid cache configuration")
                })
                .collect();
            if backing == Backing::Redis {
                namespaces.push(caches[0].clone());
            }
            let cfg = Config {
                ops,
                tasks: TASKS,
                ids: IDS,
                write_percent,
                seed,
            };
            let label = format!("{backing:?}, {write_percent}% writes");
            let report = rt.block_on(consistency::run(caches, cfg));
            println!("{}", report.summary(&label));
            rows.push((label, report));
        }
    }
    if server.is_external() {
        for cache in &namespaces {
            let n = rt.block_on(cache.clear()).expect("clean up the namespace");
            println!("# removed {n} keys from the external server");
        }
    }

    println!();
    println!(
        "{:<20} | {:>7} | {:>7} | {:>6} | {:>11} | {:>11} | {:>8} | {:>9} | {:>12} | {:>7}",
        "variant",
        "ops",
        "reads",
        "writes",
        "stale reads",
        "loader runs",
        "misses",
        "runs/miss",
        "fetch miss %",
        "ops/s"
    );
    println!(
        "{:-<20}-|-{:->7}-|-{:->7}-|-{:->6}-|-{:->11}-|-{:->11}-|-{:->8}-|-{:->9}-|-{:->12}-|-{:->7}",
        "", "", "", "", "", "", "", "", "", ""
    );
    for (label, r) in &rows {
        let fetch_miss = if r.status_reads == 0 {
            0.0
        } else {
            r.status_misses as f64 * 100.0 / r.status_reads as f64
        };
        println!(
            "{label:<20} | {:>7} | {:>7} | {:>6} | {:>11} | {:>11} | {:>8} | {:>9.2} | {:>12.1} | {:>7.0}",
            r.ops,
            r.reads,
            r.writes,
            r.stale_reads,
            r.loader_runs,
            r.engine_misses,
            r.runs_per_miss(),
            fetch_miss,
            r.ops as f64 / r.elapsed.as_secs_f64()
        );
    }
    println!();
    println!("stale reads / reads per read path:");
    print!("{:<20}", "variant");
    for m in Method::ALL {
        print!(" | {:>18}", m.label());
    }
    println!();
    for (label, r) in &rows {
        print!("{label:<20}");
        for (reads, stale) in r.per_method {
            print!(" | {:>18}", format!("{stale}/{reads}"));
        }
        println!();
    }
    println!(
        "# misses: lookups that found nothing, counted by the caches (Cache::stats); fetch miss %: \
         reads through fetch/fetch_detached whose status was not a hit"
    );
    let stale: u64 = rows.iter().map(|(_, r)| r.stale_reads).sum();
    let future: u64 = rows.iter().map(|(_, r)| r.from_the_future).sum();
    assert_eq!(future, 0, "harness error: values above the database's");
    if stale == 0 {
        println!("# OK: no stale read in {} operations", rows.len() * ops);
    } else {
        println!("# STALE READS: {stale} (must be 0)");
        if strict {
            std::process::exit(1);
        }
    }
    drop(server);
}
