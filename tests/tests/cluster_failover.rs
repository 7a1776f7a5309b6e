#![allow(missing_docs)]
//! A Redis Cluster master dies under load: the cache fails open, stays correct, and caching
//! resumes by itself once a replica has taken over.
//!
//! One owned 3+3 cluster ([`RedisCluster::start_owned`]). `TASKS` tasks read `KEYS` keys spread
//! over all three masters through [`Cache::fetch`] (the read-through of `get_or_load`, which also
//! reports hit or miss), while a writer bumps a key's version at the origin and invalidates its
//! tag. Every value served is checked against the origin (the oracle): it must be the version
//! the origin had committed before the call started, or a newer one. Then one master is killed
//! (`SIGKILL`) while the load runs, a replica takes over ([`RedisCluster::wait_failover`]), and
//! the load goes on until hits on the keys of the killed master are back, plus a while.
//!
//! Asserted: no call returns a value other than the origin's (fail-open, never a wrong or stale
//! value), no call takes longer than [`latency_bound`], and hits on the promoted node's keys
//! return within [`HITS_RETURN_WITHIN`] of the failover. `--nocapture` shows the numbers.
//!
//! Redis replicates asynchronously: a write acknowledged by a master just before it crashes may
//! be lost with it (an invalidation then comes back undone on the promoted replica). That is
//! Redis's guarantee, not the cache's, so the writer is held still from the moment before the
//! kill until the replica has acknowledged everything the master had taken (replication
//! offsets); reads and fills go on.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheKey, CacheStatus, Policy};
use cache_tests::{init_tracing, unique_namespace, RedisCluster};
use serde::{Deserialize, Serialize};

/// Deadline of each backend call, as a service would set it.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(200);
/// Concurrent readers.
const TASKS: usize = 32;
/// Keys read (spread over the 32 slot buckets, hence over every master).
const KEYS: u64 = 96;
/// What the origin takes to answer.
const LOADER_TIME: Duration = Duration::from_millis(2);
/// Pause of the writer between two writes.
const WRITE_EVERY: Duration = Duration::from_millis(25);
/// Load before the kill.
const BEFORE_KILL: Duration = Duration::from_secs(2);
/// Upper bound on the failover (detection after the node timeout, election).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// Hits on the promoted node's keys must be back this long after the failover at the latest.
const HITS_RETURN_WITHIN: Duration = Duration::from_secs(10);
/// Load kept after hits are back on every master.
const AFTER_RECOVERY: Duration = Duration::from_secs(2);
const TTL: Duration = Duration::from_secs(120);

/// The slowest a call may be. Every backend call has the command deadline: a call that meets
/// the dead node waits one deadline and falls through to the loader (an unavailable lookup loads
/// without storing); a node dying between two backend calls of one call can cost a second
/// deadline, and a caller waiting on a load that met it (single-flight) a third; a fourth covers
/// scheduling on a contended machine.
fn latency_bound() -> Duration {
    COMMAND_TIMEOUT * 4 + LOADER_TIME * 2
}

/// The origin's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    version: u64,
    body: String,
}

/// The origin: a version per key (bumped by the writer), and its load count per key.
struct Origin {
    /// The version the origin answers with now.
    versions: Vec<AtomicU64>,
    /// The version whose invalidation has returned: no read started after may serve older.
    committed: Vec<AtomicU64>,
    loads: Vec<AtomicU64>,
}

impl Origin {
    fn new() -> Origin {
        let zeros = || (0..KEYS).map(|_| AtomicU64::new(0)).collect();
        Origin {
            versions: zeros(),
            committed: zeros(),
            loads: zeros(),
        }
    }

    async fn load(&self, i: u64) -> Item {
        self.loads[i as usize].fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(LOADER_TIME).await;
        let version = self.versions[i as usize].load(Ordering::SeqCst);
        Item {
            id: i,
            version,
            body: format!("item {i} at version {version}"),
        }
    }
}

fn tag(i: u64) -> String {
    format!("item:{i}")
}

/// One read-through call.
#[derive(Debug, Clone, Copy)]
struct Call {
    key: u64,
    /// Start, from the beginning of the load.
    at: Duration,
    took: Duration,
    status: CacheStatus,
    ok: bool,
}

/// The master port serving key `key` of the cache: the layout of `RedisClusterBackend`
/// (bucket `xxh3(key) % 32`, hash tag `{<namespace>.<bucket>}`).
fn master_of(cluster: &RedisCluster, ns: &str, key: &CacheKey) -> u16 {
    let bucket = xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()) % 32;
    cluster.node_for_key(format!("{{{ns}.{bucket}}}"))
}

/// A field of `INFO replication` of the node on `port`.
fn replication_offset(cluster: &RedisCluster, port: u16, field: &str) -> u64 {
    let mut con = cluster
        .node_client(port)
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .expect("INFO replication");
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO replication of {port}: {info}"))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_fails_no_request_and_caching_resumes_on_the_promoted_replica() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_owned)
        .await
        .expect("cluster start");
    let ns = unique_namespace("failover");
    let cache = Cache::builder()
        .namespace(ns.clone())
        .redis_cluster(cluster.urls())
        .command_timeout(COMMAND_TIMEOUT)
        .build()
        .expect("valid cache configuration");
    let keys: Arc<Vec<CacheKey>> =
        Arc::new((0..KEYS).map(|i| cache.key("item").id(i).build()).collect());
    let homes: Vec<u16> = keys.iter().map(|k| master_of(&cluster, &ns, k)).collect();
    let masters: BTreeSet<u16> = cluster.masters().into_iter().collect();
    assert_eq!(
        homes.iter().copied().collect::<BTreeSet<_>>(),
        masters,
        "the keys span every master"
    );
    // The victim: the master of key 0.
    let victim = homes[0];
    let replica = cluster.replicas_of(victim)[0];
    let on_victim: Vec<bool> = homes.iter().map(|&h| h == victim).collect();
    eprintln!(
        "cluster masters {masters:?}; killing {victim} (replica {replica}), which serves {} of \
         {KEYS} keys",
        on_victim.iter().filter(|&&v| v).count()
    );

    let origin = Arc::new(Origin::new());
    // Layout check: key 0's entry is stored on the node computed above.
    let first = cache
        .fetch(&keys[0], Policy::ttl(TTL).tag(tag(0)), || async {
            Ok::<_, std::convert::Infallible>(origin.load(0).await)
        })
        .await
        .unwrap();
    assert_eq!(first.status, CacheStatus::Miss);
    let bucket = xxhash_rust::xxh3::xxh3_64(keys[0].as_str().as_bytes()) % 32;
    let physical = keys[0]
        .as_str()
        .replacen(':', &format!(":{{{ns}.{bucket}}}:"), 1);
    let mut con = cluster
        .node_client(victim)
        .get_multiplexed_async_connection()
        .await
        .expect("connection to the victim");
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&physical)
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("EXISTS {physical} on {victim}: {e}"));
    assert_eq!(exists, 1, "{physical} is stored on {victim}");

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (cache, keys, origin, stop) =
            (cache.clone(), keys.clone(), origin.clone(), stop.clone());
        readers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(t as u64);
            let mut calls = Vec::new();
            let mut mismatches = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = rng.u64(0..KEYS);
                let committed = origin.committed[i as usize].load(Ordering::SeqCst);
                let at = started.elapsed();
                let t0 = Instant::now();
                let got = cache
                    .fetch(&keys[i as usize], Policy::ttl(TTL).tag(tag(i)), || async {
                        Ok::<_, std::convert::Infallible>(origin.load(i).await)
                    })
                    .await
                    .unwrap_or_else(|never| match never {});
                let took = t0.elapsed();
                let now = origin.versions[i as usize].load(Ordering::SeqCst);
                let v = &got.value;
                let ok = v.id == i
                    && (committed..=now).contains(&v.version)
                    && v.body == format!("item {i} at version {}", v.version);
                if !ok {
                    mismatches.push(format!(
                        "key {i} at {at:?}: served {v:?} ({:?}), origin committed {committed}, \
                         now {now}",
                        got.status
                    ));
                }
                calls.push(Call {
                    key: i,
                    at,
                    took,
                    status: got.status,
                    ok,
                });
            }
            (calls, mismatches)
        });
    }

    // The writer: bump at the origin, invalidate, then commit. Held by `write_lock` around the
    // kill.
    let write_lock = Arc::new(tokio::sync::Mutex::new(()));
    let writer = {
        let (cache, origin, stop, lock) = (
            cache.clone(),
            origin.clone(),
            stop.clone(),
            write_lock.clone(),
        );
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(99);
            let (mut writes, mut queued) = (0u64, 0u64);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                {
                    let _held = lock.lock().await;
                    let i = rng.u64(0..KEYS) as usize;
                    let v = origin.versions[i].fetch_add(1, Ordering::SeqCst) + 1;
                    match cache.invalidate_tags(&[tag(i as u64)]).await {
                        Ok(_) => {}
                        Err(e) if e.is_queued() => queued += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                    origin.committed[i].store(v, Ordering::SeqCst);
                    writes += 1;
                }
                tokio::time::sleep(WRITE_EVERY).await;
            }
            (writes, queued, errors)
        })
    };

    tokio::time::sleep(BEFORE_KILL).await;
    // Hold the writer, let the replica catch up with everything the master took, kill.
    let held = write_lock.lock().await;
    let (cluster, killed_at, caught_up_in) = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let target = replication_offset(&cluster, victim, "master_repl_offset");
        let t = Instant::now();
        while replication_offset(&cluster, replica, "slave_repl_offset") < target {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "replica {replica} did not catch up with {victim}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let caught_up_in = t.elapsed();
        cluster.kill_master(victim);
        (cluster, started.elapsed(), caught_up_in)
    })
    .await
    .expect("kill");
    drop(held);
    eprintln!("killed {victim} at {killed_at:.2?} (replica caught up in {caught_up_in:.2?})");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_failover(victim, FAILOVER_TIMEOUT);
        cluster
    })
    .await
    .expect("failover");
    let failed_over_at = started.elapsed();
    let failover_time = failed_over_at - killed_at;
    eprintln!("failover complete at {failed_over_at:.2?} ({failover_time:.2?} after the kill)");

    // Keep the load until the victim's keys are cached again (their loads only follow the
    // writer's invalidations), then for `AFTER_RECOVERY`; at most `HITS_RETURN_WITHIN`. The
    // per-call records decide the assertions.
    let victim_loads = || -> u64 {
        (0..KEYS as usize)
            .filter(|&i| on_victim[i])
            .map(|i| origin.loads[i].load(Ordering::Relaxed))
            .sum()
    };
    let deadline = Instant::now() + HITS_RETURN_WITHIN;
    let mut quiet_since: Option<Instant> = None;
    let mut last = victim_loads();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = victim_loads();
        // Loads of the victim's keys only for the writer's invalidations (~4 per 100 ms at
        // most, all keys together): caching is back.
        if now - last <= 8 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= AFTER_RECOVERY {
                break;
            }
        } else {
            quiet_since = None;
        }
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let ended_at = started.elapsed();

    let mut calls: Vec<Call> = Vec::new();
    let mut mismatches: Vec<String> = Vec::new();
    while let Some(r) = readers.join_next().await {
        let (c, m) = r.expect("reader task panicked");
        calls.extend(c);
        mismatches.extend(m);
    }
    let (writes, queued, write_errors) = writer.await.expect("writer task panicked");
    let stats = cache.stats();

    // The numbers.
    let mut all: Vec<Duration> = calls.iter().map(|c| c.took).collect();
    all.sort_unstable();
    let worst = *all.last().expect("calls were made");
    let p99 = pct(&all, 0.99);
    let p50 = pct(&all, 0.50);
    let during: Vec<Duration> = {
        let mut d: Vec<Duration> = calls
            .iter()
            .filter(|c| c.at >= killed_at && c.at < failed_over_at)
            .map(|c| c.took)
            .collect();
        d.sort_unstable();
        d
    };
    let first_hit_after_kill = calls
        .iter()
        .filter(|c| on_victim[c.key as usize] && c.at >= killed_at && c.status == CacheStatus::Hit)
        .map(|c| c.at)
        .min();
    let hits_back = first_hit_after_kill.map(|at| at.saturating_sub(failed_over_at));
    let window = |from: Duration, to: Duration, victim: bool| {
        let in_window: Vec<&Call> = calls
            .iter()
            .filter(|c| on_victim[c.key as usize] == victim && c.at >= from && c.at < to)
            .collect();
        let hits = in_window
            .iter()
            .filter(|c| c.status == CacheStatus::Hit)
            .count();
        (hits, in_window.len())
    };
    let rate = |(h, n): (usize, usize)| {
        if n == 0 {
            0.0
        } else {
            h as f64 * 100.0 / n as f64
        }
    };
    let phases = [
        ("before the kill", Duration::ZERO, killed_at),
        ("kill -> failover", killed_at, failed_over_at),
        ("after failover", failed_over_at, ended_at),
        (
            "last second",
            ended_at.saturating_sub(Duration::from_secs(1)),
            ended_at,
        ),
    ];
    eprintln!(
        "calls {}, failed (value not the origin's) {}, writes {writes} ({queued} queued, {} \
         errors)",
        calls.len(),
        mismatches.len(),
        write_errors.len()
    );
    eprintln!(
        "latency: p50 {p50:.2?}, p99 {p99:.2?}, worst {worst:.2?} (bound {:.2?}); during the \
         failover p99 {:.2?}, worst {:.2?} ({} calls)",
        latency_bound(),
        if during.is_empty() {
            Duration::ZERO
        } else {
            pct(&during, 0.99)
        },
        during.last().copied().unwrap_or_default(),
        during.len()
    );
    eprintln!(
        "failover time {failover_time:.2?} (kill -> replica serving, seen by every node); first \
         hit on the promoted node's keys {:?} after the failover completed ({:?} after the kill)",
        hits_back,
        first_hit_after_kill.map(|at| at - killed_at)
    );
    for (name, from, to) in phases {
        let (v, o) = (window(from, to, true), window(from, to, false));
        let worst_in = calls
            .iter()
            .filter(|c| c.at >= from && c.at < to)
            .map(|c| c.took)
            .max()
            .unwrap_or_default();
        eprintln!(
            "hit rate {name:<17} killed master's keys {:5.1}% of {:6}, other keys {:5.1}% of \
             {:6}; worst call {worst_in:.2?}",
            rate(v),
            v.1,
            rate(o),
            o.1
        );
    }
    eprintln!(
        "cache stats: hits {}, misses {}, skips {}, errors {}, loads {}, rejected fills {}, \
         rejected hits {}",
        stats.total.hits,
        stats.total.misses,
        stats.total.skips,
        stats.total.errors,
        stats.total.loads,
        stats.total.rejected_fills,
        stats.total.rejected_hits
    );

    assert!(
        mismatches.is_empty(),
        "{} calls served a value that is not the origin's, e.g. {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
    assert!(calls.iter().all(|c| c.ok));
    assert!(
        write_errors.is_empty(),
        "invalidations failed other than queued: {write_errors:?}"
    );
    assert!(
        worst <= latency_bound(),
        "a call took {worst:?}, more than {:?}",
        latency_bound()
    );
    assert!(
        first_hit_after_kill.is_some_and(|at| at <= failed_over_at + HITS_RETURN_WITHIN),
        "no hit on the promoted node's keys within {HITS_RETURN_WITHIN:?} of the failover"
    );
    // Caching is back to normal on the promoted node: most reads of its keys are hits again.
    let last_second = window(
        ended_at.saturating_sub(Duration::from_secs(1)),
        ended_at,
        true,
    );
    assert!(
        rate(last_second) >= 50.0,
        "hit rate of the promoted node's keys in the last second: {:.1}% of {}",
        rate(last_second),
        last_second.1
    );
    drop(cluster);
}
