//! Redis Cluster vs one Redis: the cost of a hit, and tag invalidation vs keyspace size.
//!
//! Run with `cargo bench -p cache-tests --bench cluster` (or `make bench-cluster`). Starts its own
//! `redis-server` and its own local Redis Cluster (3 masters + 3 replicas,
//! [`RedisCluster::start_owned`]) and stops both at the end; takes one to two minutes.
//!
//! **A. A hit.** For a ~1 KiB and a ~16 KiB JSON payload, the same [`KEYS`] entries (spread over
//! every master of the cluster) are stored in a cache on the single node and in a cache on the
//! cluster, then read sequentially in rounds interleaved (order alternating) so that machine
//! noise hits every variant alike:
//!
//! * `raw single`: `GET` on a redis-rs `MultiplexedConnection` + `serde_json::from_slice`;
//! * `raw cluster`: `GET` on a redis-rs `cluster_async::ClusterConnection` + `serde_json`;
//! * `ours single`: [`Cache::get`] hit on the node;
//! * `ours cluster`: [`Cache::get`] hit on the cluster;
//!
//! p50/p99 of each, and the ratio cluster / single (goal: at most 1.1 for `ours` at p50). Then the
//! throughput of 1 task and of [`TASKS`] tasks doing hits, every variant in slices interleaved
//! (ABCD DCBA ...). The raw pair tells the cluster client's own cost from the cache's: redis-rs's
//! cluster client sends every command through its routing task (a channel to the task, then the
//! node's connection, then a channel back), one hop more than a `MultiplexedConnection`; the
//! cache's hits skip it (direct connections to the slots' masters, named `annocache-direct`:
//! the bench prints their last command on each master).
//!
//! **B. Tag invalidation on the cluster vs keyspace size.** With 10 000 and with 1 000 000
//! unrelated background keys on the cluster (`DEBUG POPULATE` on every master under hash tags
//! that master serves, or pipelined `MSET`s when `DEBUG` is refused; shrunk back with pipelined
//! `UNLINK`s), [`TAGGED`] entries tagged `bench:tag` are stored through the cache and
//! [`Cache::invalidate_tags`] is timed, [`REPS`] times per size, the sizes alternating (after one
//! unmeasured run of each); the medians are compared (goal: 1M / 10k at most 1.3). Every run must
//! delete exactly the tagged entries and leave the background alone (the key count of the
//! masters).
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::backend::DIRECT_CLIENT_NAME;
use cache_core::{Cache, CacheKey, Policy};
use cache_tests::{key_slot, unique_namespace, RedisCluster, RedisServer};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use serde::{Deserialize, Serialize};

#[path = "support/payload.rs"]
mod payload;
use payload::{payload, Payload, Samples};

const COMMAND: &str = "cargo bench -p cache-tests --bench cluster";
/// Entries read by part A (ids `0..KEYS`), spread over the cluster's masters.
const KEYS: u64 = 64;
/// Measured operations per variant and payload.
const N: usize = 20_000;
/// Unmeasured operations per variant and payload before the rounds.
const WARMUP: usize = 2_000;
/// The measured operations are split into this many interleaved rounds.
const ROUNDS: usize = 10;
/// Tasks of the concurrent throughput test.
const TASKS: usize = 64;
/// Total time each variant runs in a throughput test, in [`SLICES`] slices.
const THROUGHPUT_FOR: Duration = Duration::from_secs(2);
const SLICES: usize = 4;
const TTL: Duration = Duration::from_secs(3600);

/// Background sizes of part B.
const SIZES: [u64; 2] = [10_000, 1_000_000];
/// Tagged entries invalidated per run.
const TAGGED: u64 = 1_000;
const REPS: usize = 9;
const TAG: &str = "bench:tag";
/// Hash tags per master under which the background keys are made.
const TAGS_PER_MASTER: u64 = 16;
/// Keys per `MSET` when `DEBUG POPULATE` is refused; `PIPELINE_MSETS` of them per round trip.
const MSET_KEYS: u64 = 1_000;
const PIPELINE_MSETS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    RawSingle,
    RawCluster,
    OursSingle,
    OursCluster,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::RawSingle,
        Variant::RawCluster,
        Variant::OursSingle,
        Variant::OursCluster,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::RawSingle => "raw single (GET + serde_json)",
            Variant::RawCluster => "raw cluster (GET + serde_json)",
            Variant::OursSingle => "ours single (Cache::get)",
            Variant::OursCluster => "ours cluster (Cache::get)",
        }
    }
}

/// Both caches, the raw connections and the keys, for one payload size.
#[derive(Clone)]
struct Fixture {
    single: Cache,
    cluster: Cache,
    single_keys: Arc<Vec<CacheKey>>,
    cluster_keys: Arc<Vec<CacheKey>>,
    raw_single: MultiplexedConnection,
    raw_cluster: ClusterConnection,
    raw_keys: Arc<Vec<String>>,
    expected: Arc<Payload>,
}

impl Fixture {
    async fn new(
        server: &RedisServer,
        cluster: &RedisCluster,
        ns: &str,
        label: &str,
        target: usize,
    ) -> Fixture {
        let builder = || {
            Cache::builder()
                .namespace(format!("{ns}-{label}"))
                // Generous deadline so that a noisy machine never turns a hit into a miss.
                .command_timeout(Duration::from_secs(1))
        };
        let single = builder()
            .redis_url(server.url())
            .build()
            .expect("valid single-node configuration");
        let cluster_cache = builder()
            .redis_cluster(cluster.urls())
            .build()
            .expect("valid cluster configuration");
        let single_keys: Vec<CacheKey> = (0..KEYS)
            .map(|i| single.key("trigs").id(i).build())
            .collect();
        let cluster_keys: Vec<CacheKey> = (0..KEYS)
            .map(|i| cluster_cache.key("trigs").id(i).build())
            .collect();
        let expected = Arc::new(payload(target));
        let bytes = serde_json::to_vec(&*expected).expect("encode");
        let mut raw_single = server.connection().await;
        let mut raw_cluster = cluster.connection().await;
        let raw_keys: Vec<String> = (0..KEYS).map(|i| format!("{ns}-{label}-raw:{i}")).collect();
        for i in 0..KEYS as usize {
            single
                .set(&single_keys[i], &*expected, TTL)
                .await
                .expect("store on the node");
            cluster_cache
                .set(&cluster_keys[i], &*expected, TTL)
                .await
                .expect("store on the cluster");
            redis::cmd("SET")
                .arg(&raw_keys[i])
                .arg(&bytes)
                .query_async::<()>(&mut raw_single)
                .await
                .expect("raw SET on the node");
            redis::cmd("SET")
                .arg(&raw_keys[i])
                .arg(&bytes)
                .query_async::<()>(&mut raw_cluster)
                .await
                .expect("raw SET on the cluster");
        }
        let f = Fixture {
            single,
            cluster: cluster_cache,
            single_keys: Arc::new(single_keys),
            cluster_keys: Arc::new(cluster_keys),
            raw_single,
            raw_cluster,
            raw_keys: Arc::new(raw_keys),
            expected,
        };
        for v in Variant::ALL {
            for i in 0..KEYS as usize {
                assert_eq!(
                    f.op(v, i).await,
                    *f.expected,
                    "{} returns the payload",
                    v.label()
                );
            }
        }
        f
    }

    /// One read of entry `i` through `v`.
    async fn op(&self, v: Variant, i: usize) -> Payload {
        match v {
            Variant::RawSingle => {
                let mut con = self.raw_single.clone();
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(&self.raw_keys[i])
                    .query_async(&mut con)
                    .await
                    .expect("raw GET on the node");
                serde_json::from_slice(&bytes).expect("raw decode")
            }
            Variant::RawCluster => {
                let mut con = self.raw_cluster.clone();
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(&self.raw_keys[i])
                    .query_async(&mut con)
                    .await
                    .expect("raw GET on the cluster");
                serde_json::from_slice(&bytes).expect("raw decode")
            }
            Variant::OursSingle => self
                .single
                .get(&self.single_keys[i])
                .await
                .expect("hit on the node"),
            Variant::OursCluster => self
                .cluster
                .get(&self.cluster_keys[i])
                .await
                .expect("hit on the cluster"),
        }
    }
}

async fn measure(f: &Fixture, v: Variant, n: usize, start: usize, out: Option<&mut Samples>) {
    match out {
        Some(out) => {
            out.0.reserve(n);
            for k in 0..n {
                let i = (start + k) % KEYS as usize;
                let t = Instant::now();
                let value = f.op(v, i).await;
                let ns = t.elapsed().as_nanos() as u64;
                black_box(value);
                out.0.push(ns);
            }
        }
        None => {
            for k in 0..n {
                black_box(f.op(v, (start + k) % KEYS as usize).await);
            }
        }
    }
}

/// Operations done by `tasks` tasks doing `v` hits for `dur`, and the time taken.
async fn throughput(f: &Fixture, v: Variant, tasks: usize, dur: Duration) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (f, stop, ops) = (f.clone(), stop.clone(), ops.clone());
        set.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(f.op(v, (t + n as usize) % KEYS as usize).await);
                n += 1;
            }
            ops.fetch_add(n, Ordering::Relaxed);
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r.expect("throughput task panicked");
    }
    (ops.load(Ordering::Relaxed), started.elapsed())
}

/// Ops/s of each variant (in `Variant::ALL` order) with `tasks` tasks, in interleaved slices.
async fn throughputs(f: &Fixture, tasks: usize) -> Vec<f64> {
    let slice = THROUGHPUT_FOR / SLICES as u32;
    for v in Variant::ALL {
        throughput(f, v, tasks, slice / 4).await; // warm-up
    }
    let mut ops = [0u64; 4];
    let mut took = [Duration::ZERO; 4];
    for s in 0..SLICES {
        let order: Vec<usize> = if s % 2 == 0 {
            (0..4).collect()
        } else {
            (0..4).rev().collect()
        };
        for i in order {
            let (n, t) = throughput(f, Variant::ALL[i], tasks, slice).await;
            ops[i] += n;
            took[i] += t;
        }
    }
    (0..4)
        .map(|i| ops[i] as f64 / took[i].as_secs_f64())
        .collect()
}

struct HitResult {
    label: &'static str,
    json_len: usize,
    samples: Vec<(Variant, Samples)>,
    one_task: Vec<f64>,
    many_tasks: Vec<f64>,
    /// [`direct_last_commands`] after the measurements.
    direct: String,
}

/// The last command of the cache's direct read connections (named `annocache-direct`) on each
/// master: the cluster hits went there, not through the cluster client (`cluster_direct.rs`).
fn direct_last_commands(cluster: &RedisCluster) -> String {
    cluster
        .masters()
        .into_iter()
        .map(|port| {
            let mut con = cluster
                .node_client(port)
                .get_connection_with_timeout(Duration::from_secs(2))
                .expect("connect to a master");
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut con)
                .expect("CLIENT LIST");
            let last: Vec<&str> = list
                .lines()
                .filter(|l| l.contains(&format!(" name={DIRECT_CLIENT_NAME} ")))
                .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("cmd=")))
                .collect();
            format!("{port}: {last:?}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn run_hits(
    server: &RedisServer,
    cluster: &RedisCluster,
    ns: &str,
    label: &'static str,
    target: usize,
) -> HitResult {
    let f = Fixture::new(server, cluster, ns, label, target).await;
    let json_len = serde_json::to_vec(&*f.expected).map_or(0, |v| v.len());
    for v in Variant::ALL {
        measure(&f, v, WARMUP, 0, None).await;
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
            measure(&f, v, N / ROUNDS, round, Some(&mut samples[i].1)).await;
        }
    }
    let one_task = throughputs(&f, 1).await;
    let many_tasks = throughputs(&f, TASKS).await;
    let direct = direct_last_commands(cluster);
    for cache in [&f.single, &f.cluster] {
        let stats = cache.stats();
        assert_eq!(stats.total.errors, 0, "no cache errors during the bench");
        assert_eq!(stats.total.misses, 0, "every read was a hit");
    }
    HitResult {
        label,
        json_len,
        samples,
        one_task,
        many_tasks,
        direct,
    }
}

/// A small cached row of part B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
}

/// Part B's state: the cache on the cluster, its tagged keys, the masters and their hash tags.
struct Invalidation {
    cache: Cache,
    keys: Vec<CacheKey>,
    /// `(port, connection, hash tags served by that master)`.
    masters: Vec<(u16, MultiplexedConnection, Vec<String>)>,
    debug_populate: Option<bool>,
}

impl Invalidation {
    async fn new(cluster: &RedisCluster, ns: &str) -> Invalidation {
        let cache = Cache::builder()
            .namespace(format!("{ns}-inv"))
            .redis_cluster(cluster.urls())
            .command_timeout(Duration::from_secs(5))
            .invalidation_timeout(Duration::from_secs(10))
            .admin_timeout(Duration::from_secs(60))
            .build()
            .expect("valid cluster configuration");
        let keys = (0..TAGGED)
            .map(|i| cache.key("item").id(i).build())
            .collect();
        let nodes = cluster.nodes();
        let mut masters = Vec::new();
        for node in nodes
            .iter()
            .filter(|n| n.is_master() && !n.slots.is_empty())
        {
            let serves = |tag: &str| {
                let slot = key_slot(format!("{{{tag}}}"));
                node.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            };
            let tags: Vec<String> = (0u64..)
                .map(|n| format!("{ns}.bg.{n}"))
                .filter(|t| serves(t))
                .take(TAGS_PER_MASTER as usize)
                .collect();
            let con = cluster
                .node_client(node.port)
                .get_multiplexed_async_connection()
                .await
                .expect("connection to a master");
            masters.push((node.port, con, tags));
        }
        assert_eq!(masters.len(), 3, "three masters");
        Invalidation {
            cache,
            keys,
            masters,
            debug_populate: None,
        }
    }

    /// Keys on every master.
    async fn dbsize(&mut self) -> u64 {
        let mut total = 0;
        for (_, con, _) in &mut self.masters {
            total += redis::cmd("DBSIZE")
                .query_async::<u64>(con)
                .await
                .expect("DBSIZE");
        }
        total
    }

    /// Grows the background from `from` to (at least, rounded up to a multiple of the hash tags)
    /// `to` keys, a third on each master, spread over its hash tags (`{tag}:N`). Returns how.
    async fn fill(&mut self, from: u64, to: u64) -> &'static str {
        let per_tag = |total: u64| total.div_ceil(3 * TAGS_PER_MASTER);
        let (start, end) = (per_tag(from), per_tag(to));
        let debug = self.debug_populate;
        let mut used_debug = debug.unwrap_or(true);
        for (port, con, tags) in &mut self.masters {
            for tag in tags.iter() {
                if used_debug {
                    let r: redis::RedisResult<()> = redis::cmd("DEBUG")
                        .arg("POPULATE")
                        .arg(end)
                        .arg(format!("{{{tag}}}"))
                        .arg(32)
                        .query_async(con)
                        .await;
                    match r {
                        Ok(()) => continue,
                        Err(e) => {
                            println!(
                                "# DEBUG POPULATE refused on {port} ({e}); filling with \
                                 pipelined MSET"
                            );
                            used_debug = false;
                        }
                    }
                }
                let value = "x".repeat(32);
                let mut i = start;
                while i < end {
                    let mut pipe = redis::pipe();
                    for _ in 0..PIPELINE_MSETS {
                        if i >= end {
                            break;
                        }
                        let stop = (i + MSET_KEYS).min(end);
                        let cmd = pipe.cmd("MSET");
                        for n in i..stop {
                            cmd.arg(format!("{{{tag}}}:{n}")).arg(&value);
                        }
                        pipe.ignore();
                        i = stop;
                    }
                    pipe.query_async::<()>(con).await.expect("pipelined MSET");
                }
            }
        }
        self.debug_populate = Some(used_debug);
        if used_debug {
            "DEBUG POPULATE"
        } else {
            "pipelined MSET"
        }
    }

    /// Background keys after `fill(_, to)`.
    fn background(to: u64) -> u64 {
        to.div_ceil(3 * TAGS_PER_MASTER) * 3 * TAGS_PER_MASTER
    }

    /// Shrinks the background from `from` back to `to` keys (pipelined `UNLINK`s, one hash tag
    /// per command).
    async fn shrink(&mut self, from: u64, to: u64) {
        let per_tag = |total: u64| total.div_ceil(3 * TAGS_PER_MASTER);
        let (start, end) = (per_tag(to), per_tag(from));
        for (_, con, tags) in &mut self.masters {
            for tag in tags.iter() {
                let mut i = start;
                while i < end {
                    let mut pipe = redis::pipe();
                    for _ in 0..PIPELINE_MSETS {
                        if i >= end {
                            break;
                        }
                        let stop = (i + MSET_KEYS).min(end);
                        let cmd = pipe.cmd("UNLINK");
                        for n in i..stop {
                            cmd.arg(format!("{{{tag}}}:{n}"));
                        }
                        pipe.ignore();
                        i = stop;
                    }
                    pipe.query_async::<()>(con).await.expect("pipelined UNLINK");
                }
            }
        }
    }

    async fn store_tagged(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            let (cache, key) = (self.cache.clone(), key.clone());
            tasks.spawn(async move {
                let row = Row {
                    id: i as u64,
                    name: format!("entry number {i}"),
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
        for key in self.keys.iter().step_by(50) {
            assert!(
                self.cache.get::<Row>(key).await.is_some(),
                "{} stored",
                key.as_str()
            );
        }
    }

    async fn time_invalidate(&self) -> Duration {
        let t = Instant::now();
        let n = self
            .cache
            .invalidate_tags(&[TAG])
            .await
            .expect("invalidate_tags");
        let elapsed = t.elapsed();
        assert_eq!(n, TAGGED, "invalidate_tags deleted every tagged entry");
        for key in self.keys.iter().step_by(50) {
            assert_eq!(
                self.cache.get::<Row>(key).await,
                None,
                "{} survived",
                key.as_str()
            );
        }
        elapsed
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
    println!("# Redis Cluster vs one node: hit cost, tag invalidation vs keyspace size");
    println!("# reproduce: {COMMAND}");
    let started = Instant::now();
    let server = RedisServer::start_owned();
    let cluster = RedisCluster::start_owned();
    println!(
        "# one redis-server at {}, a 3+3 cluster ready in {:.1} s (masters {:?})",
        server.url(),
        started.elapsed().as_secs_f64(),
        cluster.masters()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let ns = unique_namespace("bench-cluster");
    // `build()` spawns the single-node connection manager's task: it needs the runtime.
    let _guard = rt.enter();

    let hits = rt.block_on(async {
        let mut out = Vec::new();
        for (label, target) in [("1KiB", 1024), ("16KiB", 16 * 1024)] {
            out.push(run_hits(&server, &cluster, &ns, label, target).await);
        }
        out
    });
    println!();
    println!(
        "## A. hit: {N} sequential reads per variant over {KEYS} keys (spread over the masters) \
         after {WARMUP} warm-up, {ROUNDS} interleaved rounds; tokio multi-thread, {workers} workers"
    );
    for r in &hits {
        println!();
        println!("### payload ~{} (JSON {} B)", r.label, r.json_len);
        println!(
            "# last command of the `{DIRECT_CLIENT_NAME}` connections on each master: {}",
            r.direct
        );
        println!(
            "{:<32} {:>9} {:>9} {:>9}",
            "variant", "mean µs", "p50 µs", "p99 µs"
        );
        for (v, s) in &r.samples {
            println!(
                "{:<32} {:>9.1} {:>9.1} {:>9.1}",
                v.label(),
                s.mean_us(),
                s.pct_us(0.50),
                s.pct_us(0.99)
            );
        }
        let s = |v: Variant| &r.samples[Variant::ALL.iter().position(|&x| x == v).unwrap()].1;
        let ratio = |a: Variant, b: Variant, p: f64| s(a).pct_us(p) / s(b).pct_us(p);
        println!(
            "ratio cluster/single: ours p50 {:.2} (goal <= 1.1), p99 {:.2}; raw p50 {:.2}, p99 {:.2}",
            ratio(Variant::OursCluster, Variant::OursSingle, 0.50),
            ratio(Variant::OursCluster, Variant::OursSingle, 0.99),
            ratio(Variant::RawCluster, Variant::RawSingle, 0.50),
            ratio(Variant::RawCluster, Variant::RawSingle, 0.99),
        );
        println!(
            "ratio ours/raw on the same storage, p50: single {:.2}, cluster {:.2} (the cache's own \
             cost on each)",
            ratio(Variant::OursSingle, Variant::RawSingle, 0.50),
            ratio(Variant::OursCluster, Variant::RawCluster, 0.50),
        );
    }
    println!();
    println!(
        "## A. throughput: hits/s, {:.1} s per variant in {SLICES} slices (order alternating)",
        THROUGHPUT_FOR.as_secs_f64()
    );
    println!(
        "{:<8} {:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "payload",
        "tasks",
        "raw single",
        "raw cluster",
        "ours single",
        "ours cluster",
        "ours c/s",
        "raw c/s"
    );
    for r in &hits {
        for (tasks, t) in [(1, &r.one_task), (TASKS, &r.many_tasks)] {
            println!(
                "{:<8} {:>6} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>10.2} {:>10.2}",
                r.label,
                tasks,
                t[0],
                t[1],
                t[2],
                t[3],
                t[3] / t[2],
                t[1] / t[0]
            );
        }
    }

    let b_started = Instant::now();
    let rows = rt.block_on(async {
        let mut b = Invalidation::new(&cluster, &ns).await;
        let base = b.dbsize().await;
        let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); SIZES.len()];
        // Keys of the tag's bookkeeping left after an invalidation (versions), once known.
        let mut bookkeeping: Option<u64> = None;
        let mut filled = 0;
        // Sizes alternate (10k, 1M, 10k, 1M, ...: the background is grown, then shrunk back),
        // after one unmeasured run of each, so that machine noise hits both alike.
        for rep in 0..=REPS {
            for (s, &size) in SIZES.iter().enumerate() {
                let t = Instant::now();
                let how = if size >= filled {
                    b.fill(filled, size).await
                } else {
                    b.shrink(filled, size).await;
                    "UNLINK"
                };
                let resized = t.elapsed();
                filled = size;
                let now = b.dbsize().await;
                assert!(
                    now >= base + Invalidation::background(size),
                    "background of {size}: {now} keys on the masters"
                );
                if rep <= 1 {
                    println!(
                        "# background {size} keys via {how} in {:.1} s (keys on the masters: {now})",
                        resized.as_secs_f64()
                    );
                }
                b.store_tagged().await;
                let took = b.time_invalidate().await;
                // Only the tag's bookkeeping is left besides the background, the same each time.
                let left = b.dbsize().await - base - Invalidation::background(size);
                assert_eq!(
                    *bookkeeping.get_or_insert(left),
                    left,
                    "keys left besides the background after an invalidation at {size}"
                );
                if rep > 0 {
                    runs[s].push(took);
                }
            }
        }
        let rows: Vec<(u64, Vec<Duration>)> = SIZES.iter().copied().zip(runs).collect();
        rows
    });
    println!();
    println!(
        "## B. tag invalidation on the cluster: {TAGGED} entries tagged `{TAG}`, {REPS} runs per \
         size ({} buckets: one script per bucket, concurrently)",
        cache_core::backend::DEFAULT_BUCKETS
    );
    println!("{:>10} | {:>23}", "background", "invalidate_tags ms");
    println!("{:->10}-|-{:->23}", "", "");
    for (size, runs) in &rows {
        println!("{size:>10} | {:>23.2}", median_ms(runs));
    }
    let (small, large) = (&rows[0], &rows[rows.len() - 1]);
    println!(
        "{:>10} | {:>22.2}x  (goal <= 1.3)",
        "1M / 10k",
        median_ms(&large.1) / median_ms(&small.1)
    );
    for (size, runs) in &rows {
        println!("# runs at {size}: [{}] ms", list_ms(runs));
    }
    println!(
        "# checks: every hit equal to the stored payload, no miss, no cache error; every \
         invalidation deleted exactly {TAGGED} entries (sampled get() -> None), keys on the \
         masters = background + the same bookkeeping after every run; part B {:.1} s, total {:.1} s",
        b_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(cluster);
    drop(server);
}
