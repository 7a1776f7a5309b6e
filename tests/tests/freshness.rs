#![allow(missing_docs)]
//! Fills guarded against invalidations made while their loader ran, at the engine level, on
//! Redis and memory: a read-through load (`get_or_load`) or a fragment fill
//! (`get_many_or_load`) whose loader read the database before a `delete`, a `delete_pattern`
//! or a `clear` returned, and finishes after it, is not stored; and a read that began after the
//! invalidation returned never receives the older value, not even by joining the load in
//! flight. (Tag invalidation of plain values is covered by `invalidation.rs` and
//! `consistency.rs`; here tags appear in the fragment fill only.)
//!
//! The "database" is an `AtomicU64` per entry: the origin's answer at any moment is its value.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheKey, CacheStatus, Fragment, Policy};
use common::Ctx;
use tokio::sync::{oneshot, Notify};

const HOUR: Duration = Duration::from_secs(3600);
/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);

/// The invalidations that must refuse a fill in flight.
#[derive(Debug, Clone, Copy)]
enum Invalidation {
    /// `cache.delete(&key)`.
    Key,
    /// `cache.delete_pattern("res:*")`.
    Pattern,
    /// `cache.clear()`.
    Clear,
}

async fn invalidate(cache: &Cache, key: &CacheKey, how: Invalidation) {
    match how {
        Invalidation::Key => {
            cache.delete(key).await.unwrap();
        }
        Invalidation::Pattern => {
            cache.delete_pattern("res:*").await.unwrap();
        }
        Invalidation::Clear => {
            cache.clear().await.unwrap();
        }
    }
}

/// Polls `done` until it holds, yielding in between; panics with `what` after [`WAIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

/// A `get_or_load` of `key` whose loader reads `db`, says so on `read`, then waits for
/// `release` before returning what it read.
fn slow_fill(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    db: &Arc<AtomicU64>,
    release: &Arc<Notify>,
) -> (tokio::task::JoinHandle<u64>, oneshot::Receiver<()>) {
    let (read_tx, read_rx) = oneshot::channel::<()>();
    let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
    let (db, release) = (db.clone(), release.clone());
    let task = tokio::spawn(async move {
        cache
            .get_or_load(&key, policy, || async move {
                let v = db.load(Ordering::SeqCst);
                let _ = read_tx.send(());
                release.notified().await;
                v
            })
            .await
    });
    (task, read_rx)
}

/// (a)/(b): the loader read v1, the write of v2 and the invalidation returned, then the loader
/// finished: its caller gets v1, nothing is stored, and the next read loads v2.
async fn a_fill_that_began_before(ctx: &Ctx, how: Invalidation) {
    let cache = ctx.cache();
    let db = Arc::new(AtomicU64::new(1));
    let key = cache.key("res").id(1).build();
    let policy = Policy::ttl(HOUR);
    let release = Arc::new(Notify::new());
    let (fill, read) = slow_fill(&cache, &key, &policy, &db, &release);
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the loader ran")
        .unwrap();

    db.store(2, Ordering::SeqCst);
    invalidate(&cache, &key, how).await;
    release.notify_one();
    let led = tokio::time::timeout(WAIT, fill).await.unwrap().unwrap();
    assert_eq!(
        led, 1,
        "the loader read v1 before the write: its caller gets v1"
    );

    assert_eq!(
        cache.get::<u64>(&key).await,
        None,
        "a value loaded before the {how:?} returned was stored after it"
    );
    let loads = AtomicUsize::new(0);
    let next = cache
        .fetch(&key, policy.clone(), || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(db.load(Ordering::SeqCst))
        })
        .await
        .unwrap();
    assert_eq!(
        (next.status, next.value, loads.load(Ordering::SeqCst)),
        (CacheStatus::Miss, 2, 1),
        "the next read after the {how:?} runs the loader and gets the database's v2"
    );
    let hit = cache
        .fetch(&key, policy, || async { Err::<u64, ()>(()) })
        .await
        .unwrap();
    assert_eq!((hit.status, hit.value), (CacheStatus::Hit, 2));
}

/// (d): a read that began after the invalidation returned joins the load in flight (which read
/// v1): it must get v2, by loading again.
async fn a_read_that_began_after(ctx: &Ctx, how: Invalidation) {
    let cache = ctx.cache();
    let db = Arc::new(AtomicU64::new(1));
    let key = cache.key("res").id(1).build();
    let policy = Policy::ttl(HOUR);
    let release = Arc::new(Notify::new());
    let (fill, read) = slow_fill(&cache, &key, &policy, &db, &release);
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the loader ran")
        .unwrap();

    db.store(2, Ordering::SeqCst);
    invalidate(&cache, &key, how).await;

    let second_loads = Arc::new(AtomicUsize::new(0));
    let second = {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (db, second_loads) = (db.clone(), second_loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, policy, || async move {
                    second_loads.fetch_add(1, Ordering::SeqCst);
                    db.load(Ordering::SeqCst)
                })
                .await
        })
    };
    until(
        "the second read joined the load in flight or loaded",
        || {
            cache.waiting_on(&key) >= 1
                || second_loads.load(Ordering::SeqCst) > 0
                || second.is_finished()
        },
    )
    .await;
    let joined = cache.waiting_on(&key) >= 1;

    release.notify_one();
    let led = tokio::time::timeout(WAIT, fill).await.unwrap().unwrap();
    let got = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(
        led, 1,
        "the first read began before the write: v1 is its answer"
    );
    assert_eq!(
        got, 2,
        "a read that began after the {how:?} returned got v{got} (joined the load in flight: \
         {joined})"
    );
    assert!(
        joined,
        "harness: the second read must have joined the load in flight"
    );
    assert_eq!(
        cache.get::<u64>(&key).await,
        Some(2),
        "the second read's own load is stored"
    );
}

async fn a_fill_that_began_before_a_key_delete_is_not_stored(ctx: Ctx) {
    a_fill_that_began_before(&ctx, Invalidation::Key).await;
}

async fn a_fill_that_began_before_a_pattern_delete_is_not_stored(ctx: Ctx) {
    a_fill_that_began_before(&ctx, Invalidation::Pattern).await;
}

async fn a_fill_that_began_before_clear_is_not_stored(ctx: Ctx) {
    a_fill_that_began_before(&ctx, Invalidation::Clear).await;
}

async fn a_read_after_a_key_delete_never_gets_the_older_in_flight_value(ctx: Ctx) {
    a_read_that_began_after(&ctx, Invalidation::Key).await;
}

async fn a_read_after_a_pattern_delete_never_gets_the_older_in_flight_value(ctx: Ctx) {
    a_read_that_began_after(&ctx, Invalidation::Pattern).await;
}

async fn a_read_after_clear_never_gets_the_older_in_flight_value(ctx: Ctx) {
    a_read_that_began_after(&ctx, Invalidation::Clear).await;
}

// ------------------------------------------------------------------ fragments

/// Four fragments `res:0..4`, fragment `i` tagged `frag:{i}`, each with its own database value.
struct Fragments {
    cache: Cache,
    frags: Vec<Fragment>,
    db: Arc<Vec<AtomicU64>>,
}

impl Fragments {
    fn new(ctx: &Ctx) -> Fragments {
        let cache = ctx.cache();
        let frags = (0..4u32)
            .map(|i| {
                Fragment::new(
                    cache.key("res").id(i).build(),
                    Policy::ttl(HOUR).tag(format!("frag:{i}")),
                )
            })
            .collect();
        Fragments {
            cache,
            frags,
            db: Arc::new((0..4).map(|_| AtomicU64::new(1)).collect()),
        }
    }

    fn keys(&self) -> Vec<CacheKey> {
        self.frags.iter().map(|f| f.key.clone()).collect()
    }

    /// A fragment fill that reads the database for the missing fragments, says so, and waits
    /// for `release`.
    fn slow_fill(
        &self,
        release: &Arc<Notify>,
    ) -> (tokio::task::JoinHandle<Vec<u64>>, oneshot::Receiver<()>) {
        let (read_tx, read_rx) = oneshot::channel::<()>();
        let (cache, frags, db, release) = (
            self.cache.clone(),
            self.frags.clone(),
            self.db.clone(),
            release.clone(),
        );
        let task = tokio::spawn(async move {
            cache
                .get_many_or_load(&frags, |missing| async move {
                    let values: Vec<u64> = missing
                        .iter()
                        .map(|&i| db[i].load(Ordering::SeqCst))
                        .collect();
                    let _ = read_tx.send(());
                    release.notified().await;
                    Ok::<_, ()>(values)
                })
                .await
                .unwrap()
        });
        (task, read_rx)
    }

    /// A fragment read now: which fragments were loaded, and every value.
    async fn read(&self) -> (Vec<usize>, Vec<u64>) {
        let mut asked = Vec::new();
        let got = self
            .cache
            .get_many_or_load(&self.frags, |missing| {
                asked = missing.clone();
                let db = self.db.clone();
                async move {
                    Ok::<_, ()>(
                        missing
                            .iter()
                            .map(|&i| db[i].load(Ordering::SeqCst))
                            .collect::<Vec<_>>(),
                    )
                }
            })
            .await
            .unwrap();
        (asked, got)
    }
}

async fn a_fragment_fill_stores_only_the_fragments_not_invalidated_while_it_loaded(ctx: Ctx) {
    let f = Fragments::new(&ctx);
    let release = Arc::new(Notify::new());
    let (fill, read) = f.slow_fill(&release);
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the loader ran")
        .unwrap();

    // Fragment 0 is rewritten and deleted by key, fragment 1 rewritten and invalidated by tag.
    f.db[0].store(2, Ordering::SeqCst);
    f.cache.delete(&f.frags[0].key).await.unwrap();
    f.db[1].store(2, Ordering::SeqCst);
    f.cache.invalidate_tags(&["frag:1"]).await.unwrap();
    release.notify_one();
    let led = tokio::time::timeout(WAIT, fill).await.unwrap().unwrap();
    assert_eq!(
        led,
        [1, 1, 1, 1],
        "the fill read every fragment before the writes"
    );

    assert_eq!(
        f.cache.get_many::<u64>(&f.keys()).await,
        [None, None, Some(1), Some(1)],
        "fragments invalidated (by key, by tag) while the fill loaded must not be stored; the \
         others must"
    );
    let (asked, got) = f.read().await;
    assert_eq!(
        asked,
        [0, 1],
        "only the invalidated fragments are loaded again"
    );
    assert_eq!(got, [2, 2, 1, 1], "the database's values");
}

async fn fragment_fill_refused_by(ctx: &Ctx, how: Invalidation) {
    let f = Fragments::new(ctx);
    let release = Arc::new(Notify::new());
    let (fill, read) = f.slow_fill(&release);
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the loader ran")
        .unwrap();

    f.db[2].store(2, Ordering::SeqCst);
    invalidate(&f.cache, &f.frags[2].key, how).await;
    release.notify_one();
    let led = tokio::time::timeout(WAIT, fill).await.unwrap().unwrap();
    assert_eq!(led, [1, 1, 1, 1]);

    assert_eq!(
        f.cache.get_many::<u64>(&f.keys()).await,
        [None, None, None, None],
        "a fragment fill that began before the {how:?} returned stored its values after it"
    );
    let (asked, got) = f.read().await;
    assert_eq!(asked, [0, 1, 2, 3]);
    assert_eq!(got, [1, 1, 2, 1], "the database's values");
}

async fn a_fragment_fill_that_began_before_a_pattern_delete_is_not_stored(ctx: Ctx) {
    fragment_fill_refused_by(&ctx, Invalidation::Pattern).await;
}

async fn a_fragment_fill_that_began_before_clear_is_not_stored(ctx: Ctx) {
    fragment_fill_refused_by(&ctx, Invalidation::Clear).await;
}

on_both_backends!(
    a_fill_that_began_before_a_key_delete_is_not_stored,
    a_fill_that_began_before_a_pattern_delete_is_not_stored,
    a_fill_that_began_before_clear_is_not_stored,
    a_read_after_a_key_delete_never_gets_the_older_in_flight_value,
    a_read_after_a_pattern_delete_never_gets_the_older_in_flight_value,
    a_read_after_clear_never_gets_the_older_in_flight_value,
    a_fragment_fill_stores_only_the_fragments_not_invalidated_while_it_loaded,
    a_fragment_fill_that_began_before_a_pattern_delete_is_not_stored,
    a_fragment_fill_that_began_before_clear_is_not_stored,
);
// The same suite over TLS (rustls, the test CA given to the cache).
on_tls_backend!(
    a_fill_that_began_before_a_key_delete_is_not_stored,
    a_fill_that_began_before_a_pattern_delete_is_not_stored,
    a_fill_that_began_before_clear_is_not_stored,
    a_read_after_a_key_delete_never_gets_the_older_in_flight_value,
    a_read_after_a_pattern_delete_never_gets_the_older_in_flight_value,
    a_read_after_clear_never_gets_the_older_in_flight_value,
    a_fragment_fill_stores_only_the_fragments_not_invalidated_while_it_loaded,
    a_fragment_fill_that_began_before_a_pattern_delete_is_not_stored,
    a_fragment_fill_that_began_before_clear_is_not_stored,
);
