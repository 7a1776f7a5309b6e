//! Randomized concurrent consistency checker at scale: do reads ever return a value whose
//! invalidation had already returned when they began?
//!
//! Run with `cargo bench -p cache-tests --bench consistency`. Starts its own `redis-server` (or
//! uses `REDIS_URL`). Six variants: Redis (four `Cache` instances on one server, each with its
//! own connection and single-flight map), Redis+L1 (the same four instances, each with its own
//! in-process tier, `Cache::builder().l1(..)`, and its own subscriber to the invalidation
//! notices) and memory (four instances on one `MemoryBackend`), each read-heavy (5% writes) and
//! write-heavy (30% writes); 64 concurrent tasks over 32 ids. The checker itself (database as
//! oracle, read paths, loaders, who made a read stale) is `support/consistency.rs`, shared with
//! `tests/consistency.rs`.
//!
//! Stale reads are classified by instance. On the instance that made an invalidation the read
//! missed, none is allowed (read your writes). On another instance, none is allowed without L1;
//! with L1, one is allowed while the invalidation's notice travels to that instance: the bench
//! prints, for every such read, how long after the invalidation returned it began (count,
//! p50/p99/max), to compare with the propagation delay of `benches/l1.rs`, and how many began
//! after that instance had applied the invalidation's notice (the checker counts the notices
//! each L1 applied; must be 0).
//!
//! | Variable                  | Effect                                                  |
//! |---------------------------|---------------------------------------------------------|
//! | `CONSISTENCY_OPS`         | operations per variant (default 100 000)                |
//! | `CONSISTENCY_SEED`        | seed of the operation generators (default: the clock)   |
//! | `CONSISTENCY_STRICT`      | `1`: exit with status 1 on any stale read on the invalidating instance, any stale read without L1, any cross-instance stale read with L1 that began after the notice was applied or more than the bound after the invalidation returned |
//! | `CONSISTENCY_L1_BOUND_MS` | that bound (default 50 ms: ten times the propagation goal, p99 < 5 ms, for a loaded machine) |
#![allow(missing_docs)]

#[path = "support/consistency.rs"]
mod consistency;

use std::sync::Arc;
use std::time::Duration;

use cache_core::backend::{MemoryBackend, RedisBackend, RedisOptions};
use cache_core::Cache;
use cache_tests::{unique_namespace, RedisServer};

use consistency::{Config, Method, NoticeCounter, Report};

const COMMAND: &str = "cargo bench -p cache-tests --bench consistency";
const TASKS: usize = 64;
const IDS: u32 = 32;
const CACHES: usize = 4;
/// The L1 tier of each instance.
const L1_BYTES: u64 = 64 * 1024 * 1024;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    Redis,
    RedisL1,
    Memory,
}

impl Backing {
    fn label(self) -> &'static str {
        match self {
            Backing::Redis => "Redis",
            Backing::RedisL1 => "Redis+L1",
            Backing::Memory => "Memory",
        }
    }
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
    let bound = Duration::from_millis(env_or("CONSISTENCY_L1_BOUND_MS", 50));
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
    let mut rows: Vec<(String, Backing, Report)> = Vec::new();
    let mut namespaces = Vec::new();
    for backing in [Backing::Redis, Backing::RedisL1, Backing::Memory] {
        for write_percent in [5u32, 30] {
            let ns = unique_namespace("bench-consistency");
            let memory = Arc::new(MemoryBackend::new(256 * 1024 * 1024));
            let (caches, counters): (Vec<Cache>, Vec<Option<NoticeCounter>>) = (0..CACHES)
                .map(|_| {
                    // Generous deadlines: a queued invalidation would fail the harness.
                    let b = Cache::builder()
                        .namespace(ns.clone())
                        .command_timeout(Duration::from_secs(5))
                        .invalidation_timeout(Duration::from_secs(5));
                    let mut counter = None;
                    let b = match backing {
                        Backing::Redis => b.redis_url(url.clone()),
                        // Its own connection, wrapped to count the notices its L1 applied.
                        Backing::RedisL1 => {
                            let redis = RedisBackend::new(&url, &RedisOptions::default())
                                .expect("valid url");
                            let c = NoticeCounter::new(Arc::new(redis));
                            counter = Some(c.clone());
                            b.backend(Arc::new(c)).l1(L1_BYTES)
                        }
                        Backing::Memory => b.backend(memory.clone()),
                    };
                    (b.build().expect("valid cache configuration"), counter)
                })
                .unzip();
            if backing != Backing::Memory {
                namespaces.push(caches[0].clone());
            }
            if backing == Backing::RedisL1 {
                rt.block_on(consistency::until_l1_live(&caches));
            }
            let cfg = Config {
                ops,
                tasks: TASKS,
                ids: IDS,
                write_percent,
                seed,
            };
            let label = format!("{}, {write_percent}% writes", backing.label());
            let report = rt.block_on(consistency::run_counted(caches, counters, cfg));
            println!("{}", report.summary(&label));
            rows.push((label, backing, report));
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
    for (label, _, r) in &rows {
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
    for (label, _, r) in &rows {
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
    println!();
    println!(
        "stale reads by instance (delay: how long after the invalidation it missed returned a \
         stale read on another instance began):"
    );
    println!(
        "{:<20} | {:>7} | {:>11} | {:>13} | {:>15} | {:>9} | {:>9} | {:>9} | {:>8} | {:>12} | {:>8}",
        "variant",
        "reads",
        "stale reads",
        "same instance",
        "other instances",
        "delay p50",
        "delay p99",
        "delay max",
        format!("> {} ms", bound.as_millis()),
        "after notice",
        "L1 hit %"
    );
    println!(
        "{:-<20}-|-{:->7}-|-{:->11}-|-{:->13}-|-{:->15}-|-{:->9}-|-{:->9}-|-{:->9}-|-{:->8}-|-{:->12}-|-{:->8}",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    let ms =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.3}", d.as_secs_f64() * 1e3));
    for (label, _, r) in &rows {
        println!(
            "{label:<20} | {:>7} | {:>11} | {:>13} | {:>15} | {:>9} | {:>9} | {:>9} | {:>8} | {:>12} | {:>8.1}",
            r.reads,
            r.stale_reads,
            r.same_instance_stale,
            r.cross_instance_stale,
            ms(r.cross_delay(0.5)),
            ms(r.cross_delay(0.99)),
            ms(r.cross_delay(1.0)),
            r.cross_later_than(bound),
            if r.notices_counted {
                r.after_notice.to_string()
            } else {
                "-".to_owned()
            },
            r.l1_hits as f64 * 100.0 / r.reads.max(1) as f64
        );
    }
    println!(
        "# delays in ms; after notice: stale reads on another instance that began after it had \
         applied the notice of the invalidation they missed (must be 0); L1 hit %: reads served \
         by an instance's L1"
    );
    let future: u64 = rows.iter().map(|(_, _, r)| r.from_the_future).sum();
    assert_eq!(future, 0, "harness error: values above the database's");
    let mut failures = Vec::new();
    for (label, backing, r) in &rows {
        if r.same_instance_stale > 0 {
            failures.push(format!(
                "{label}: {} stale reads on the invalidating instance (must be 0)",
                r.same_instance_stale
            ));
        }
        if r.after_notice > 0 {
            failures.push(format!(
                "{label}: {} stale reads on another instance after it applied the notice (must \
                 be 0)",
                r.after_notice
            ));
        }
        if *backing == Backing::RedisL1 {
            let late = r.cross_later_than(bound);
            if late > 0 {
                failures.push(format!(
                    "{label}: {late} stale reads on another instance began more than {} ms after \
                     the invalidation returned",
                    bound.as_millis()
                ));
            }
        } else if r.cross_instance_stale > 0 {
            failures.push(format!(
                "{label}: {} stale reads on another instance without L1 (must be 0)",
                r.cross_instance_stale
            ));
        }
    }
    if failures.is_empty() {
        println!(
            "# OK in {} operations: no stale read without L1, none on the invalidating instance, \
             and with L1 every stale read on another instance began within {} ms of the \
             invalidation",
            rows.len() * ops,
            bound.as_millis()
        );
    } else {
        for f in &failures {
            println!("# FAILED: {f}");
        }
        if strict {
            std::process::exit(1);
        }
    }
    drop(server);
}
