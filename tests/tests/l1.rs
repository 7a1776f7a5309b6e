#![allow(missing_docs)]
//! The in-process tier (L1): hits without a round trip, coherence across instances (two `Cache`
//! values on one storage and namespace are two instances), the fill race, a lost subscription,
//! expiry and the byte bound. The origin is the oracle: every value served is compared with what
//! the loader returns at that moment.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::backend::{Backend, BackendInfo, Invalidation, NoticeSink, Put, VersionRead};
use cache_core::{Cache, CacheError, CacheKey, Fragment, Policy, Tier};
use common::Ctx;
use tokio::sync::Notify;

const MINUTE: Duration = Duration::from_secs(60);
/// How long a notice may take to reach another instance before a test fails (generous: the
/// machine is shared; the bench measures the real delay).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(5);

/// The origin: a value per version.
#[derive(Default)]
struct Origin(AtomicU64);

impl Origin {
    fn value(&self) -> String {
        format!("v{}", self.0.load(Ordering::SeqCst))
    }
    fn change(&self) -> String {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.value()
    }
}

fn l1_cache(ctx: &Ctx) -> Cache {
    ctx.builder().l1(16 * 1024 * 1024).build().unwrap()
}

/// Waits (polling, with a deadline) until the cache's L1 is subscribed.
async fn until_live(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cache.l1_status().expect("L1 configured").live {
        assert!(Instant::now() < deadline, "L1 never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn read(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    origin: &Origin,
) -> (String, Option<Tier>) {
    let f = cache
        .fetch(key, policy.clone(), || async {
            Ok::<_, std::convert::Infallible>(origin.value())
        })
        .await
        .unwrap();
    (f.value, f.tier)
}

/// Reads on `cache` until it serves `new` (each value served before is `old`), within the
/// propagation deadline; then once more, which must be `new` too.
async fn until_serves(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    origin: &Origin,
    old: &str,
    new: &str,
) {
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    loop {
        let (v, _) = read(cache, key, policy, origin).await;
        if v == new {
            break;
        }
        assert_eq!(
            v, old,
            "only the old value may be served while the notice travels"
        );
        assert!(
            Instant::now() < deadline,
            "the other instance still serves {old} after {PROPAGATION_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(read(cache, key, policy, origin).await.0, new);
}

/// Fills both instances' L1 with the current value and checks that the next reads are L1 hits.
async fn warm(a: &Cache, b: &Cache, key: &CacheKey, policy: &Policy, origin: &Origin) {
    for cache in [a, b] {
        let first = read(cache, key, policy, origin).await;
        assert_eq!(first.0, origin.value());
        let second = read(cache, key, policy, origin).await;
        assert_eq!(
            second,
            (origin.value(), Some(Tier::L1)),
            "second read is an L1 hit"
        );
    }
}

/// A backend that counts calls and forwards everything (notices included).
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Backend>,
    calls: AtomicU64,
}

impl Counting {
    fn take(&self) -> u64 {
        self.calls.swap(0, Ordering::SeqCst)
    }
    fn note(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Backend for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        self.note();
        self.inner.get(key).await
    }
    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<bytes::Bytes>, Vec<u64>), CacheError> {
        self.note();
        self.inner.get_checked(key, ids).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.note();
        self.inner.get_many(keys).await
    }
    async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.note();
        self.inner.versions(ids).await
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.note();
        self.inner.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.note();
        self.inner.invalidate(inv).await
    }
    async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
        self.note();
        self.inner.delete_pattern(p, b).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.inner.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.note();
        self.inner.try_lock(k, t, ttl).await
    }
    async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
        self.note();
        self.inner.unlock(k, t).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.inner.info().await
    }
    fn notifies(&self) -> bool {
        self.inner.notifies()
    }
    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn NoticeSink,
    ) -> Result<(), CacheError> {
        self.inner.listen(channel, heartbeat, sink).await
    }
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        self.note();
        self.inner.publish(channel, payload).await
    }
}

async fn an_l1_hit_makes_no_backend_call(ctx: Ctx) {
    let counting = Arc::new(Counting {
        inner: ctx.raw_backend(),
        calls: AtomicU64::new(0),
    });
    let cache = ctx
        .builder()
        .backend(counting.clone())
        .l1(1 << 20)
        .build()
        .unwrap();
    until_live(&cache).await;
    let origin = Origin::default();
    let key = cache.key("item").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("items");
    assert_eq!(
        read(&cache, &key, &policy, &origin).await,
        (origin.value(), None)
    );
    assert!(counting.take() > 0, "the miss went to the backend");
    for _ in 0..10 {
        assert_eq!(
            read(&cache, &key, &policy, &origin).await,
            (origin.value(), Some(Tier::L1))
        );
    }
    assert_eq!(counting.take(), 0, "L1 hits make no backend call");
    let stats = cache.stats();
    assert_eq!(stats.total.l1_hits, 10);
    assert_eq!(stats.resources["item"].l1_hits, 10);
    assert_eq!(stats.total.hits, 10);
    // Fragments (the multi-get path) are served from L1 too.
    let frags: Vec<Fragment> = (0..4u32)
        .map(|i| Fragment::new(cache.key("frag").id(i).build(), Policy::ttl(MINUTE)))
        .collect();
    let load = |missing: Vec<usize>| async move {
        Ok::<_, std::convert::Infallible>(
            missing.iter().map(|i| format!("f{i}")).collect::<Vec<_>>(),
        )
    };
    let first = cache.fetch_many(&frags, load).await.unwrap();
    assert!(first.iter().all(|f| f.tier.is_none()));
    counting.take();
    let second = cache.fetch_many(&frags, load).await.unwrap();
    let values: Vec<&str> = second.iter().map(|f| f.value.as_str()).collect();
    assert_eq!(values, ["f0", "f1", "f2", "f3"]);
    assert!(second.iter().all(|f| f.tier == Some(Tier::L1)));
    assert_eq!(counting.take(), 0, "fragments in L1 make no backend call");
}

/// One kind of invalidation, made on instance A.
async fn coherence(ctx: &Ctx, kind: &str) {
    let (a, b) = (l1_cache(ctx), l1_cache(ctx));
    until_live(&a).await;
    until_live(&b).await;
    let origin = Origin::default();
    let key = a.key("item").id(7).build();
    let other = a.key("other").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("item:7");
    for round in 0..3 {
        warm(&a, &b, &key, &policy, &origin).await;
        let other_before = read(&b, &other, &Policy::ttl(MINUTE), &origin).await.0;
        let old = origin.value();
        let new = origin.change();
        match kind {
            "tag" => {
                a.invalidate_tags(&["item:7"]).await.unwrap();
            }
            "key" => {
                a.delete(&key).await.unwrap();
            }
            "pattern" => {
                a.delete_pattern("item:*").await.unwrap();
            }
            "clear" => {
                a.clear().await.unwrap();
            }
            "set" => a.set(&key, &new, policy.clone()).await.unwrap(),
            _ => unreachable!(),
        }
        // Read your writes: A serves the new value at once, every time.
        assert_eq!(
            read(&a, &key, &policy, &origin).await.0,
            new,
            "{kind} round {round}: A is stale"
        );
        until_serves(&b, &key, &policy, &origin, &old, &new).await;
        if kind == "tag" || kind == "key" || kind == "set" {
            // What the invalidation did not concern stays in B's L1.
            assert_eq!(
                read(&b, &other, &Policy::ttl(MINUTE), &origin).await,
                (other_before, Some(Tier::L1)),
                "{kind}: unrelated entry kept"
            );
        }
    }
}

async fn a_tag_invalidation_evicts_every_instances_l1(ctx: Ctx) {
    coherence(&ctx, "tag").await;
}

async fn a_key_delete_evicts_every_instances_l1(ctx: Ctx) {
    coherence(&ctx, "key").await;
}

async fn a_pattern_delete_evicts_every_instances_l1(ctx: Ctx) {
    coherence(&ctx, "pattern").await;
}

async fn clear_evicts_every_instances_l1(ctx: Ctx) {
    coherence(&ctx, "clear").await;
}

async fn a_set_evicts_every_instances_l1(ctx: Ctx) {
    coherence(&ctx, "set").await;
}

/// A backend whose `get` pauses after reading, until released (for the fill race).
#[derive(Debug)]
struct PausingGet {
    inner: Arc<dyn Backend>,
    armed: Mutex<bool>,
    read_done: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl Backend for PausingGet {
    fn kind(&self) -> &'static str {
        "pausing"
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        let got = self.inner.get(key).await;
        let armed = std::mem::replace(&mut *self.armed.lock().unwrap(), false);
        if armed {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        got
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.inner.get_many(keys).await
    }
    async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.inner.versions(ids).await
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.inner.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.inner.invalidate(inv).await
    }
    async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
        self.inner.delete_pattern(p, b).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.inner.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.try_lock(k, t, ttl).await
    }
    async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
        self.inner.unlock(k, t).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.inner.info().await
    }
    fn notifies(&self) -> bool {
        self.inner.notifies()
    }
    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn NoticeSink,
    ) -> Result<(), CacheError> {
        self.inner.listen(channel, heartbeat, sink).await
    }
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        self.inner.publish(channel, payload).await
    }
}

async fn notices_seen(cache: &Cache, before: u64) {
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    while cache.l1_status().unwrap().notices <= before {
        assert!(Instant::now() < deadline, "the notice never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A value read from the backend before an invalidation, whose L1 insert comes after the
/// invalidation's notice (or before it), is never served after the invalidation.
async fn a_fill_racing_an_invalidation_never_leaves_the_old_value_in_l1(ctx: Ctx) {
    let pausing = Arc::new(PausingGet {
        inner: ctx.raw_backend(),
        armed: Mutex::new(false),
        read_done: Notify::new(),
        release: Notify::new(),
    });
    let a = l1_cache(&ctx);
    let b = Arc::new(
        ctx.builder()
            .backend(pausing.clone())
            .l1(1 << 20)
            .build()
            .unwrap(),
    );
    until_live(&a).await;
    until_live(&b).await;
    let origin = Arc::new(Origin::default());
    let policy = Policy::ttl(MINUTE).tag("raced");
    for (round, notice_first) in [(10u32, true), (11, false)] {
        // A key B never read: its read goes to the backend (and pauses there).
        let key = a.key("raced").id(round).build();
        // The entry is in the backend, not in B's L1.
        assert_eq!(read(&a, &key, &policy, &origin).await.0, origin.value());
        let old = origin.value();
        *pausing.armed.lock().unwrap() = true;
        let reader = {
            let (b, key, policy, origin) = (b.clone(), key.clone(), policy.clone(), origin.clone());
            tokio::spawn(async move { read(&b, &key, &policy, &origin).await })
        };
        pausing.read_done.notified().await;
        // B has read the old entry; now the origin changes and A invalidates.
        let notices = b.l1_status().unwrap().notices;
        let new = origin.change();
        a.invalidate_tags(&["raced"]).await.unwrap();
        if notice_first {
            notices_seen(&b, notices).await;
            pausing.release.notify_one();
        } else {
            pausing.release.notify_one();
        }
        let (served, _) = reader.await.unwrap();
        // The read overlapped the invalidation: either value is right for it.
        assert!(served == old || served == new, "served {served}");
        notices_seen(&b, notices).await;
        for _ in 0..3 {
            assert_eq!(
                read(&b, &key, &policy, &origin).await.0,
                new,
                "old value left in L1 (notice first: {notice_first})"
            );
        }
    }
    // A loader that ran before the invalidation: its value is refused at the store, and never
    // enters L1 either.
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let fresh_key = a.key("raced").id(2).build();
    let loader = {
        let (b, key, policy, origin, gate, started) = (
            b.clone(),
            fresh_key.clone(),
            policy.clone(),
            origin.clone(),
            gate.clone(),
            started.clone(),
        );
        tokio::spawn(async move {
            b.fetch(&key, policy, || async {
                let v = origin.value();
                started.notify_one();
                gate.notified().await;
                Ok::<_, std::convert::Infallible>(v)
            })
            .await
            .unwrap()
            .value
        })
    };
    started.notified().await;
    let new = origin.change();
    a.invalidate_tags(&["raced"]).await.unwrap();
    gate.notify_one();
    let _ = loader.await.unwrap();
    for _ in 0..3 {
        assert_eq!(read(&b, &fresh_key, &policy, &origin).await.0, new);
    }
}

/// Entries leave L1 no later than their fresh lifetime in the backend ends.
async fn l1_entries_expire_no_later_than_the_backend_entry(ctx: Ctx) {
    let cache = l1_cache(&ctx);
    until_live(&cache).await;
    let origin = Origin::default();
    let key = cache.key("short").id(1).build();
    let ttl = Duration::from_millis(800);
    let policy = Policy::ttl(ttl);
    let old = read(&cache, &key, &policy, &origin).await.0;
    // The entry was created before its first read returned: its freshness ends before this
    // instant plus its TTL.
    let loaded_at = Instant::now();
    // The origin changes without an invalidation: only expiry brings the new value.
    let new = origin.change();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut l1_hits = 0;
    loop {
        let asked = Instant::now();
        let (v, tier) = read(&cache, &key, &policy, &origin).await;
        if v == new {
            break;
        }
        assert_eq!(v, old);
        // A little slack for the millisecond clock of the envelope.
        assert!(
            asked < loaded_at + ttl + Duration::from_millis(5),
            "old value served {:?} after its load (TTL {ttl:?}) from {tier:?}",
            asked - loaded_at
        );
        l1_hits += u32::from(tier == Some(Tier::L1));
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(l1_hits > 0, "the entry was served from L1 while fresh");
}

/// The tier never holds more than its bound.
async fn l1_respects_its_byte_bound(ctx: Ctx) {
    let max = 64 * 1024;
    let cache = ctx.builder().l1(max).build().unwrap();
    until_live(&cache).await;
    let policy = Policy::ttl(MINUTE);
    for i in 0..100u32 {
        let key = cache.key("big").id(i).build();
        let value = format!("{i}:{}", "x".repeat(4096));
        let got: String = cache
            .get_or_load(&key, policy.clone(), || async { value.clone() })
            .await;
        assert_eq!(got, value);
        let got: String = cache
            .get_or_load(&key, policy.clone(), || async { value.clone() })
            .await;
        assert_eq!(got, value);
    }
    let status = cache.l1_status().unwrap();
    assert!(
        status.bytes <= max,
        "{} bytes held, bound {max}",
        status.bytes
    );
    assert!(
        status.entries > 0 && status.entries < 100,
        "{} entries",
        status.entries
    );
    // Every value still served is the origin's.
    for i in 0..100u32 {
        let key = cache.key("big").id(i).build();
        let value = format!("{i}:{}", "x".repeat(4096));
        let got: String = cache
            .get_or_load(&key, policy.clone(), || async { value.clone() })
            .await;
        assert_eq!(got, value);
    }
}

/// Closes the subscriber connections of a server (`CLIENT KILL TYPE pubsub`).
fn kill_subscribers(server: &cache_tests::RedisServer) -> u64 {
    let mut con = server.client().get_connection().unwrap();
    ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query::<u64>(&mut con)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_bypasses_l1_until_it_is_back() {
    let ctx = Ctx::new(common::Kind::Redis);
    let server = ctx.server.as_ref().unwrap();
    let counting = Arc::new(Counting {
        inner: ctx.raw_backend(),
        calls: AtomicU64::new(0),
    });
    let b = ctx
        .builder()
        .backend(counting.clone())
        .l1(1 << 20)
        .build()
        .unwrap();
    let a = l1_cache(&ctx);
    until_live(&a).await;
    until_live(&b).await;
    let origin = Origin::default();
    let key = b.key("item").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("item:1");
    warm(&a, &b, &key, &policy, &origin).await;
    counting.take();
    assert!(kill_subscribers(server) >= 2);
    // The loss is seen (the connection closes), and L1 is bypassed at once.
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    while b.l1_status().unwrap().losses == 0 {
        assert!(Instant::now() < deadline, "loss never seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // An invalidation while B may not be subscribed: B must not serve the old value.
    let new = origin.change();
    a.invalidate_tags(&["item:1"]).await.unwrap();
    let (v, tier) = read(&b, &key, &policy, &origin).await;
    assert_eq!(v, new);
    assert_ne!(tier, Some(Tier::L1));
    // It subscribes again by itself and serves L1 hits again.
    until_live(&b).await;
    assert_eq!(read(&b, &key, &policy, &origin).await.0, new);
    counting.take();
    assert_eq!(
        read(&b, &key, &policy, &origin).await,
        (new.clone(), Some(Tier::L1))
    );
    assert_eq!(counting.take(), 0);
    // And it is coherent again.
    let newer = origin.change();
    a.invalidate_tags(&["item:1"]).await.unwrap();
    until_serves(&b, &key, &policy, &origin, &new, &newer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_clears_l1_and_it_comes_back() {
    cache_tests::init_tracing();
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(cache_tests::unique_namespace("l1r"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(500))
        .l1(1 << 20)
        .build()
        .unwrap();
    until_live(&cache).await;
    let origin = Origin::default();
    let key = cache.key("item").id(1).build();
    let policy = Policy::ttl(MINUTE);
    read(&cache, &key, &policy, &origin).await;
    assert_eq!(read(&cache, &key, &policy, &origin).await.1, Some(Tier::L1));
    server.kill();
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    while cache.l1_status().unwrap().live {
        assert!(Instant::now() < deadline, "loss never seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Down: the loader answers (fail-open), L1 is not used.
    let new = origin.change();
    let (v, tier) = read(&cache, &key, &policy, &origin).await;
    assert_eq!((v.as_str(), tier), (new.as_str(), None));
    server.restart();
    until_live(&cache).await;
    assert_eq!(read(&cache, &key, &policy, &origin).await.0, new);
    assert_eq!(
        read(&cache, &key, &policy, &origin).await,
        (new, Some(Tier::L1))
    );
}

/// An invalidation queued because the backend does not answer still evicts this instance's L1
/// before it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_invalidation_evicts_the_own_l1_before_returning() {
    cache_tests::init_tracing();
    let mut server = cache_tests::RedisServer::start_owned();
    let cache = Cache::builder()
        .namespace(cache_tests::unique_namespace("l1q"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(200))
        .invalidation_timeout(Duration::from_millis(200))
        .l1(1 << 20)
        .build()
        .unwrap();
    until_live(&cache).await;
    let origin = Origin::default();
    let key = cache.key("item").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("item:1");
    read(&cache, &key, &policy, &origin).await;
    assert_eq!(read(&cache, &key, &policy, &origin).await.1, Some(Tier::L1));
    server.pause();
    let new = origin.change();
    let r = cache.invalidate_tags(&["item:1"]).await;
    assert!(matches!(r, Err(CacheError::Queued)), "{r:?}");
    let (v, tier) = read(&cache, &key, &policy, &origin).await;
    server.resume();
    assert_eq!(v, new);
    assert_ne!(tier, Some(Tier::L1));
}

/// A backend whose subscriber never delivers a notice (the subscription itself is established):
/// the instance's L1 learns of an invalidation only from its own local eviction.
#[derive(Debug)]
struct Deaf(Arc<dyn Backend>);

/// Forwards `subscribed`, withholds every notice.
struct DeafSink<'a>(&'a dyn NoticeSink);

impl NoticeSink for DeafSink<'_> {
    fn subscribed(&self) {
        self.0.subscribed();
    }
    fn notice(&self, _: &[u8]) {}
}

#[async_trait::async_trait]
impl Backend for Deaf {
    fn kind(&self) -> &'static str {
        "deaf"
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
        self.0.get(key).await
    }
    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<bytes::Bytes>, Vec<u64>), CacheError> {
        self.0.get_checked(key, ids).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
        self.0.get_many(keys).await
    }
    async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        self.0.versions(ids).await
    }
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        self.0.put(puts).await
    }
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        self.0.invalidate(inv).await
    }
    async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
        self.0.delete_pattern(p, b).await
    }
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        self.0.scan(pattern, batch, visit).await
    }
    async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.0.try_lock(k, t, ttl).await
    }
    async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
        self.0.unlock(k, t).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.0.ping().await
    }
    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.0.info().await
    }
    fn notifies(&self) -> bool {
        self.0.notifies()
    }
    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn NoticeSink,
    ) -> Result<(), CacheError> {
        self.0.listen(channel, heartbeat, &DeafSink(sink)).await
    }
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        self.0.publish(channel, payload).await
    }
}

/// Read your writes holds without the instance's own notice: A's subscriber delivers none, and
/// after each kind of invalidation made on A, A's next read is the origin's new value.
async fn read_your_writes_on_the_invalidating_instance_needs_no_notice(ctx: Ctx) {
    let a = ctx
        .builder()
        .backend(Arc::new(Deaf(ctx.raw_backend())))
        .l1(1 << 20)
        .build()
        .unwrap();
    until_live(&a).await;
    let origin = Origin::default();
    let key = a.key("item").id(7).build();
    let policy = Policy::ttl(MINUTE).tag("item:7");
    for kind in ["tag", "key", "pattern", "clear", "set"] {
        read(&a, &key, &policy, &origin).await;
        assert_eq!(
            read(&a, &key, &policy, &origin).await,
            (origin.value(), Some(Tier::L1)),
            "{kind}: warm"
        );
        let new = origin.change();
        match kind {
            "tag" => {
                a.invalidate_tags(&["item:7"]).await.unwrap();
            }
            "key" => {
                a.delete(&key).await.unwrap();
            }
            "pattern" => {
                a.delete_pattern("item:*").await.unwrap();
            }
            "clear" => {
                a.clear().await.unwrap();
            }
            "set" => a.set(&key, &new, policy.clone()).await.unwrap(),
            _ => unreachable!(),
        }
        assert_eq!(
            read(&a, &key, &policy, &origin).await.0,
            new,
            "{kind}: A is stale"
        );
    }
    assert_eq!(a.l1_status().unwrap().notices, 0, "no notice reached A");
}

/// Closes the subscriber connections on every node of a cluster.
fn kill_cluster_subscribers(cluster: &cache_tests::RedisCluster) -> u64 {
    cluster
        .ports()
        .into_iter()
        .map(|port| {
            let mut con = cluster.node_client(port).get_connection().unwrap();
            ::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query::<u64>(&mut con)
                .unwrap()
        })
        .sum()
}

/// On Redis Cluster too, a lost subscription bypasses L1 (an invalidation made meanwhile is
/// never hidden by it), and L1 serves again, coherently, once the subscription is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_on_the_cluster_bypasses_l1_until_it_is_back() {
    cache_tests::init_tracing();
    let cluster = cache_tests::RedisCluster::start_owned();
    let namespace = cache_tests::unique_namespace("l1c");
    let instance = || {
        Cache::builder()
            .namespace(namespace.clone())
            .redis_cluster(cluster.urls())
            .command_timeout(Duration::from_secs(2))
            .invalidation_timeout(Duration::from_secs(2))
            .l1(1 << 20)
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    until_live(&a).await;
    until_live(&b).await;
    let origin = Origin::default();
    let key = b.key("item").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("item:1");
    warm(&a, &b, &key, &policy, &origin).await;
    assert!(kill_cluster_subscribers(&cluster) >= 2);
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    while b.l1_status().unwrap().losses == 0 {
        assert!(Instant::now() < deadline, "loss never seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let new = origin.change();
    a.invalidate_tags(&["item:1"]).await.unwrap();
    let (v, tier) = read(&b, &key, &policy, &origin).await;
    assert_eq!(v, new);
    assert_ne!(tier, Some(Tier::L1));
    until_live(&b).await;
    // L1 fills again: every read serves the new value, and within a few reads one comes from
    // L1 (a notice that lands during a fill, such as a late echo of the resubscription, makes
    // that fill skip L1: the next one fills it).
    let mut from_l1 = false;
    for _ in 0..20 {
        let (v, tier) = read(&b, &key, &policy, &origin).await;
        assert_eq!(v, new);
        if tier == Some(Tier::L1) {
            from_l1 = true;
            break;
        }
    }
    assert!(
        from_l1,
        "L1 never served again after the subscription came back"
    );
    let newer = origin.change();
    a.invalidate_tags(&["item:1"]).await.unwrap();
    until_serves(&b, &key, &policy, &origin, &new, &newer).await;
}

/// `get_or_load_arc`/`fetch_arc`: the hits of one L1 entry share one decoded value (the same
/// `Arc`), and it leaves with the entry: after an invalidation on the other instance (once the
/// notice arrived) or on this one (at once), the origin's new value is served.
async fn arc_reads_share_the_decoded_l1_value_and_it_leaves_with_the_entry(ctx: Ctx) {
    let (a, b) = (l1_cache(&ctx), l1_cache(&ctx));
    until_live(&a).await;
    until_live(&b).await;
    let origin = Origin::default();
    let key = a.key("item").id(3).build();
    let policy = Policy::ttl(MINUTE).tag("item:3");
    let arc = |c: &Cache| {
        let (c, key, policy, value) = (c.clone(), key.clone(), policy.clone(), origin.value());
        async move {
            c.fetch_arc(&key, policy, || async {
                Ok::<_, std::convert::Infallible>(value)
            })
            .await
            .unwrap()
        }
    };
    for round in 0..2 {
        let first = arc(&a).await;
        assert_eq!(*first.value, origin.value());
        let hit = arc(&a).await;
        assert_eq!(
            (hit.value.as_str(), hit.tier),
            (origin.value().as_str(), Some(Tier::L1))
        );
        let again = a
            .get_or_load_arc(&key, policy.clone(), || async { origin.value() })
            .await;
        assert!(
            Arc::ptr_eq(&hit.value, &again),
            "round {round}: one decoded value shared"
        );
        // A read of the same entry as an owned value is still decoded from the bytes.
        let owned: String = a
            .get_or_load(&key, policy.clone(), || async { origin.value() })
            .await;
        assert_eq!(owned, origin.value());
        let old = origin.value();
        let new = origin.change();
        if round == 0 {
            // Invalidated on the other instance: A serves the new value once the notice arrived.
            b.invalidate_tags(&["item:3"]).await.unwrap();
            let deadline = Instant::now() + PROPAGATION_DEADLINE;
            loop {
                let got = arc(&a).await;
                if *got.value == new {
                    break;
                }
                assert_eq!(
                    *got.value, old,
                    "only the old value while the notice travels"
                );
                assert!(Instant::now() < deadline, "A still serves {old}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            // Invalidated here: at once.
            a.invalidate_tags(&["item:3"]).await.unwrap();
            assert_eq!(*arc(&a).await.value, new);
        }
        let after = arc(&a).await;
        assert_eq!(*after.value, new);
        assert!(
            !Arc::ptr_eq(&after.value, &again),
            "the old decoded value left with its entry"
        );
    }
}

/// A backend without notices keeps L1 off: reads go to the backend.
async fn a_backend_without_notices_keeps_l1_off(ctx: Ctx) {
    #[derive(Debug)]
    struct Plain(Arc<dyn Backend>);
    #[async_trait::async_trait]
    impl Backend for Plain {
        fn kind(&self) -> &'static str {
            "plain"
        }
        async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, CacheError> {
            self.0.get(key).await
        }
        async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<bytes::Bytes>>, CacheError> {
            self.0.get_many(keys).await
        }
        async fn versions(&self, ids: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
            self.0.versions(ids).await
        }
        async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
            self.0.put(puts).await
        }
        async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
            self.0.invalidate(inv).await
        }
        async fn delete_pattern(&self, p: &str, b: usize) -> Result<u64, CacheError> {
            self.0.delete_pattern(p, b).await
        }
        async fn scan(
            &self,
            pattern: &str,
            batch: usize,
            visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
        ) -> Result<u64, CacheError> {
            self.0.scan(pattern, batch, visit).await
        }
        async fn try_lock(&self, k: &str, t: &str, ttl: Duration) -> Result<bool, CacheError> {
            self.0.try_lock(k, t, ttl).await
        }
        async fn unlock(&self, k: &str, t: &str) -> Result<(), CacheError> {
            self.0.unlock(k, t).await
        }
        async fn ping(&self) -> Result<(), CacheError> {
            self.0.ping().await
        }
        async fn info(&self) -> Result<BackendInfo, CacheError> {
            self.0.info().await
        }
    }
    let cache = ctx
        .builder()
        .backend(Arc::new(Plain(ctx.raw_backend())))
        .l1(1 << 20)
        .build()
        .unwrap();
    assert!(cache.l1_status().is_none());
    let origin = Origin::default();
    let key = cache.key("item").id(1).build();
    read(&cache, &key, &Policy::ttl(MINUTE), &origin).await;
    assert_eq!(
        read(&cache, &key, &Policy::ttl(MINUTE), &origin).await,
        (origin.value(), Some(Tier::Redis))
    );
}

on_both_backends!(
    an_l1_hit_makes_no_backend_call,
    a_tag_invalidation_evicts_every_instances_l1,
    a_key_delete_evicts_every_instances_l1,
    a_pattern_delete_evicts_every_instances_l1,
    clear_evicts_every_instances_l1,
    a_set_evicts_every_instances_l1,
    a_fill_racing_an_invalidation_never_leaves_the_old_value_in_l1,
    l1_entries_expire_no_later_than_the_backend_entry,
    l1_respects_its_byte_bound,
    a_backend_without_notices_keeps_l1_off,
    read_your_writes_on_the_invalidating_instance_needs_no_notice,
    arc_reads_share_the_decoded_l1_value_and_it_leaves_with_the_entry,
);
