#![allow(missing_docs)]
//! Read-your-invalidations consistency under concurrency, with the database as the oracle, on
//! Redis (four `Cache` instances on one server) and memory (four instances on one
//! `MemoryBackend`): the randomized checker of `benches/support/consistency.rs` in a bounded
//! form, without and with L1 (each instance its own in-process tier and its own subscriber to
//! the invalidation notices), a deterministic reproduction of its main finding, and a failing
//! loader under concurrency.
//!
//! Sizes: `CONSISTENCY_TEST_OPS` (default 8000 operations per run), `CONSISTENCY_SEED` (default:
//! from the clock; printed). The bench form is `cargo bench -p cache-tests --bench consistency`.

mod common;

#[path = "../benches/support/consistency.rs"]
mod checker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, Policy};
use common::{Ctx, Kind};

const HOUR: Duration = Duration::from_secs(3600);
/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);
/// With L1, how long after an invalidation returned a stale read on *another* instance may still
/// begin: the time its notice takes to reach that instance. Generous (the machine running the
/// tests is loaded; on loopback the notice takes well under 5 ms at p99, see `benches/l1.rs`),
/// but finite: an instance that never applied the notice fails.
const CROSS_INSTANCE_BOUND: Duration = Duration::from_secs(1);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Four instances on this test's storage, each with its own single-flight map (and, on Redis,
/// its own connection). Generous command and invalidation deadlines: a timed-out (queued)
/// invalidation would fail the harness, not the cache (with the default 250 ms invalidation
/// deadline, a loaded test machine did that now and then).
fn four_caches(ctx: &Ctx) -> Vec<Cache> {
    (0..4)
        .map(|_| {
            ctx.builder()
                .command_timeout(Duration::from_secs(5))
                .invalidation_timeout(Duration::from_secs(5))
                .build()
                .expect("valid test configuration")
        })
        .collect()
}

/// Four instances with L1, each its own tier and its own subscriber. On one `redis-server` and
/// on memory, each backend is wrapped in a [`checker::NoticeCounter`] (its own connection on
/// Redis), so that the checker knows when each instance applied each notice; a cluster's nodes
/// deliver notices in no common order, so there the propagation delay alone is checked.
fn four_l1_caches(ctx: &Ctx) -> (Vec<Cache>, Vec<Option<checker::NoticeCounter>>) {
    (0..4)
        .map(|_| {
            let b = ctx
                .builder()
                .command_timeout(Duration::from_secs(5))
                .invalidation_timeout(Duration::from_secs(5))
                .l1(16 * 1024 * 1024);
            let counter =
                (ctx.kind != Kind::Cluster).then(|| checker::NoticeCounter::new(ctx.raw_backend()));
            let b = match &counter {
                Some(counter) => b.backend(Arc::new(counter.clone())),
                None => b,
            };
            (b.build().expect("valid test configuration"), counter)
        })
        .unzip()
}

async fn check(ctx: Ctx, write_percent: u32) {
    let (report, summary) = run_checker(&ctx, write_percent, false).await;
    assert_eq!(report.stale_reads, 0, "stale reads: {summary}");
}

/// Runs the checker on four instances (with or without L1) and checks the harness.
async fn run_checker(ctx: &Ctx, write_percent: u32, l1: bool) -> (checker::Report, String) {
    let seed = env_or(
        "CONSISTENCY_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    let cfg = checker::Config {
        ops: env_or("CONSISTENCY_TEST_OPS", 8000),
        tasks: 64,
        ids: 32,
        write_percent,
        seed,
    };
    let label = format!(
        "{:?}{}, {write_percent}% writes, seed {seed}",
        ctx.kind,
        if l1 { "+L1" } else { "" }
    );
    let report = if l1 {
        let (caches, counters) = four_l1_caches(ctx);
        checker::until_l1_live(&caches).await;
        checker::run_counted(caches, counters, cfg).await
    } else {
        checker::run(four_caches(ctx), cfg).await
    };
    let summary = report.summary(&label);
    println!("{summary}");
    assert_eq!(report.ops, cfg.ops as u64, "every operation ran");
    assert_eq!(
        report.from_the_future, 0,
        "harness: a value above the database's: {summary}"
    );
    (report, summary)
}

/// With L1 on four instances: no stale read on the instance that made the invalidation (read
/// your writes), and a stale read on another instance only while the notice travels: it began
/// before that instance applied the notice (where the notices are counted) and within
/// [`CROSS_INSTANCE_BOUND`] of the invalidation's return. The tier must have served.
async fn check_l1(ctx: Ctx, write_percent: u32) {
    let (report, summary) = run_checker(&ctx, write_percent, true).await;
    assert_eq!(
        report.notices_counted,
        ctx.kind != Kind::Cluster,
        "harness: notices counted where their order is known"
    );
    assert_eq!(
        report.same_instance_stale, 0,
        "stale reads on the invalidating instance: {summary}"
    );
    assert_eq!(
        report.after_notice, 0,
        "stale reads on another instance after it applied the notice: {summary}"
    );
    assert_eq!(
        report.cross_later_than(CROSS_INSTANCE_BOUND),
        0,
        "stale reads on another instance more than {CROSS_INSTANCE_BOUND:?} after the \
         invalidation returned: {summary}"
    );
    assert_eq!(
        report.stale_reads,
        report.same_instance_stale + report.cross_instance_stale,
        "harness: every stale read is classified"
    );
    assert!(report.l1_hits > 0, "L1 never served a hit: {summary}");
}

async fn with_l1_no_stale_read_on_the_invalidating_instance_others_only_while_the_notice_travels_read_heavy(
    ctx: Ctx,
) {
    check_l1(ctx, 5).await;
}

async fn with_l1_no_stale_read_on_the_invalidating_instance_others_only_while_the_notice_travels_write_heavy(
    ctx: Ctx,
) {
    check_l1(ctx, 30).await;
}

// Regression (issue 11; failed before the fix): stale value handed over by single-flight (a read that starts after
// an invalidation returned joins an older in-flight load and gets its pre-write value).
async fn randomized_reads_never_see_an_invalidated_version_read_heavy(ctx: Ctx) {
    check(ctx, 5).await;
}

// Regression (issue 11; failed before the fix): stale value handed over by single-flight.
async fn randomized_reads_never_see_an_invalidated_version_write_heavy(ctx: Ctx) {
    check(ctx, 30).await;
}

/// Polls `done` (cheap, non-blocking checks) until it holds, yielding in between; panics with
/// `what` after [`WAIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

// Regression (issue 11; failed before the fix): stale value handed over by single-flight. The leader's value was
// read before the write; the store is rejected by the tag guard, but the in-process flight still
// hands it to the read that joined after the invalidation returned.
async fn a_read_started_after_an_invalidation_never_gets_the_older_in_flight_value(ctx: Ctx) {
    let cache = ctx.cache();
    let db = Arc::new(AtomicU64::new(1));
    let key = cache.key("item").id(1).build();
    let policy = Policy::ttl(HOUR).tag("item:1");

    // 1. The leader's loader reads v1, then waits.
    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (db, release) = (db.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, policy, || async move {
                    let v = db.load(Ordering::SeqCst);
                    let _ = read_tx.send(());
                    release.notified().await;
                    v
                })
                .await
        })
    };
    tokio::time::timeout(WAIT, read_rx)
        .await
        .expect("the leader's loader ran")
        .unwrap();

    // 2. A write commits v2 and its invalidation returns.
    db.store(2, Ordering::SeqCst);
    cache.invalidate_tags(&["item:1"]).await.unwrap();

    // 3. A read starts now: it must see v2 at least.
    let second_loaded = Arc::new(AtomicUsize::new(0));
    let second = {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (db, second_loaded) = (db.clone(), second_loaded.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, policy, || async move {
                    second_loaded.fetch_add(1, Ordering::SeqCst);
                    db.load(Ordering::SeqCst)
                })
                .await
        })
    };
    // It either joins the in-flight load or loads (or finishes) on its own.
    until(
        "the second read joined the in-flight load or loaded itself",
        || {
            cache.waiting_on(&key) >= 1
                || second_loaded.load(Ordering::SeqCst) > 0
                || second.is_finished()
        },
    )
    .await;
    let joined = cache.waiting_on(&key) >= 1;

    // 4. The leader finishes with its old value.
    release.notify_one();
    let led = tokio::time::timeout(WAIT, leader).await.unwrap().unwrap();
    let got = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(
        led, 1,
        "the leader's read began before the write: v1 is fine for it"
    );
    assert_eq!(
        got, 2,
        "a read that began after the invalidation of v1 returned got v{got} (joined the \
         in-flight load: {joined})"
    );
    assert_ne!(
        cache.get::<u64>(&key).await,
        Some(1),
        "the pre-write value must not be stored"
    );
}

// Regression (issue 11; failed before the fix): failing loader under concurrency (when the leader fails, every
// waiting caller runs its own loader at once).
/// A failing loader under concurrency. `try_get_or_load` cannot hand its (non-`Clone`) error to
/// the waiting callers, so they load again one flight at a time: never two loaders at once on
/// one key. `try_get_with` (below) shares the error: one run in all.
async fn failing_loader(ctx: Ctx, shared: bool) -> (usize, usize) {
    const CALLERS: usize = 32;
    let cache = ctx.cache();
    let key = cache.key("item").id(7).build();
    let policy = Policy::ttl(HOUR).tag("item:7");
    let runs = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (runs, running, max_running) = (runs.clone(), running.clone(), max_running.clone());
        let mut release_rx = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let load = || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                // The database is down: the call takes a moment, then fails.
                let _ = release_rx.wait_for(|released| *released).await;
                for _ in 0..16 {
                    tokio::task::yield_now().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
                Err::<u64, String>("database down".into())
            };
            if shared {
                cache.try_get_with(&key, policy, load).await
            } else {
                cache.try_get_or_load(&key, policy, load).await
            }
        }));
    }
    // Every caller is in: one loads, the others wait on it (or, without coalescing, all load).
    until("all callers joined the load", || {
        cache.waiting_on(&key) >= CALLERS - 1 || runs.load(Ordering::SeqCst) >= CALLERS
    })
    .await;
    release_tx.send_replace(true);
    for t in tasks {
        let r = tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(r, Err("database down".to_owned()));
    }
    let (runs, max) = (
        runs.load(Ordering::SeqCst),
        max_running.load(Ordering::SeqCst),
    );
    (runs, max)
}

async fn a_failing_loader_runs_one_at_a_time_under_concurrency(ctx: Ctx) {
    let (runs, max) = failing_loader(ctx, false).await;
    assert_eq!(
        max, 1,
        "loaders ran concurrently on one key: {runs} runs, at most {max} at once"
    );
}

async fn a_failing_loader_shared_by_try_get_with_runs_once(ctx: Ctx) {
    let (runs, max) = failing_loader(ctx, true).await;
    assert_eq!(
        (runs, max),
        (1, 1),
        "{runs} runs, at most {max} at once for 32 callers"
    );
}

on_both_backends!(
    randomized_reads_never_see_an_invalidated_version_read_heavy,
    randomized_reads_never_see_an_invalidated_version_write_heavy,
    with_l1_no_stale_read_on_the_invalidating_instance_others_only_while_the_notice_travels_read_heavy,
    with_l1_no_stale_read_on_the_invalidating_instance_others_only_while_the_notice_travels_write_heavy,
    a_read_started_after_an_invalidation_never_gets_the_older_in_flight_value,
    a_failing_loader_runs_one_at_a_time_under_concurrency,
    a_failing_loader_shared_by_try_get_with_runs_once,
);
