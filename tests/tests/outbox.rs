#![allow(missing_docs)]
//! The durable outbox (issue 12), with two and three instances of the gallery example on one
//! SQLite database (its [`SqliteOutbox`]) and one real Redis: an invalidation whose transaction
//! committed reaches every instance, even when its writer cannot reach Redis (a partition, made
//! by a TCP proxy that holds the writer's bytes) or crashed before delivering it (Redis paused
//! with `SIGSTOP`, the writer dropped).
//!
//! The oracle is the database: every read of an instance is compared with the row as committed.
//! Times are measured from the write's return to the first fresh read (printed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cache_core::CacheBuilder;
use cache_tests::proxy::Proxy;
use cache_tests::{unique_namespace, RedisServer};
use gallery::app::App;
use gallery::db::{self, Db, SeedConfig};
use gallery::model::ContentItem;
use gallery::outbox::{self, SqliteOutbox};

const SEED: SeedConfig = SeedConfig {
    users: 5,
    items: 40,
    seed: 7,
};
const POLL: Duration = Duration::from_millis(100);
/// How long a test waits for an invalidation to arrive before failing.
const PATIENCE: Duration = Duration::from_secs(5);

/// One instance of the service: its own connections to the shared database, its own cache.
async fn instance(path: &Path, redis_url: &str, namespace: &str, with_outbox: bool) -> App {
    let p = path.to_owned();
    let (db, _) = tokio::task::spawn_blocking(move || Db::open(&p, SEED, 1))
        .await
        .expect("open task")
        .expect("open the database");
    let mut builder = CacheBuilder::new()
        .namespace(namespace)
        .redis_url(redis_url)
        .outbox_poll(POLL);
    if with_outbox {
        builder = builder.outbox(std::sync::Arc::new(
            SqliteOutbox::new(db.clone()).expect("outbox"),
        ));
    }
    App::new(builder.build().expect("cache"), db)
}

/// The item as committed.
async fn committed(app: &App, id: i64) -> ContentItem {
    app.db
        .read(move |c| db::content_item(c, id))
        .await
        .expect("read")
        .expect("item exists")
}

/// A private temp dir with the seeded database file; the first item with at least one tag.
async fn world() -> (tempfile::TempDir, PathBuf, ContentItem) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gallery.sqlite3");
    let p = path.clone();
    let (db, _) = tokio::task::spawn_blocking(move || Db::open(&p, SEED, 1))
        .await
        .expect("open task")
        .expect("seed the database");
    let mut item = None;
    for id in 1..=i64::from(SEED.items) {
        let it = db
            .read(move |c| db::content_item(c, id))
            .await
            .expect("read");
        if let Some(it) = it.filter(|it| !it.tags.is_empty()) {
            item = Some(it);
            break;
        }
    }
    (dir, path, item.expect("a seeded item with tags"))
}

/// Reads through `app`'s cache twice and checks the second read is a hit (the entry exists, so
/// the test can tell a stale entry from a fresh one).
///
/// Right after a replayed invalidation, the entries it concerned stay withheld for one read
/// deadline (a read sent before the replay landed may bring back the old entry), so this
/// retries for a bounded time.
async fn warm(app: &App, id: i64) -> ContentItem {
    let start = Instant::now();
    loop {
        let first = app.content_item(id).await.expect("read");
        let hits = app.cache.stats().total.hits;
        let second = app.content_item(id).await.expect("read");
        assert_eq!(first, second);
        if app.cache.stats().total.hits == hits + 1 {
            return second;
        }
        assert!(start.elapsed() < PATIENCE, "the entry is cached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads through `app` until it serves the committed item; how long that took.
async fn until_fresh(app: &App, id: i64, since: Instant) -> Duration {
    loop {
        let want = committed(app, id).await;
        let got = app.content_item(id).await.expect("read");
        if got == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < PATIENCE,
            "still stale after {PATIENCE:?}: served tags {:?}, committed {:?}",
            got.tags,
            want.tags
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn outbox_len(app: &App) -> usize {
    outbox::pending(&app.db).await.expect("outbox").len()
}

/// Waits until the outbox is empty and `app` has nothing queued; how long that took.
async fn until_delivered(app: &App, since: Instant) -> Duration {
    while outbox_len(app).await > 0 || app.cache.pending_invalidations() > 0 {
        assert!(since.elapsed() < PATIENCE, "the record is delivered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    since.elapsed()
}

/// A write on an instance partitioned from Redis is delivered by another instance's outbox
/// task within one poll; the writer's own reads are fresh at once (its queue withholds the
/// entry); the record is gone once delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_outbox_another_instance_delivers_a_partitioned_writers_invalidation_within_one_poll(
) {
    let redis = RedisServer::start();
    let (_dir, path, item) = world().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into());
    let ns = unique_namespace("outbox");
    let writer = instance(&path, &proxy.url(), &ns, true).await;
    let reader = instance(&path, &redis.url(), &ns, true).await;
    warm(&writer, item.id).await;
    warm(&reader, item.id).await;

    proxy.cut();
    let start = Instant::now();
    writer
        .update_tags(item.owner_id, item.id, vec!["outboxed".into()])
        .await
        .expect("the write succeeds while Redis is unreachable");
    let write_took = start.elapsed();
    let returned = Instant::now();
    assert!(
        write_took < Duration::from_secs(1),
        "the write waited {write_took:?} for Redis"
    );
    assert_eq!(
        writer.cache.pending_invalidations(),
        1,
        "queued on the writer"
    );
    let took = until_fresh(&reader, item.id, returned).await;
    let read_start = Instant::now();
    assert_eq!(
        writer.content_item(item.id).await.unwrap(),
        committed(&writer, item.id).await,
        "the writer never serves the old entry"
    );
    let writer_read = read_start.elapsed();
    assert!(
        writer_read < Duration::from_millis(200),
        "a read while partitioned waits for its own deadline only ({writer_read:?})"
    );
    println!(
        "partition: write returned in {write_took:?}; other instance fresh {took:?} later \
         (poll {POLL:?}); a read on the writer took {writer_read:?}"
    );
    assert!(
        took < POLL + Duration::from_millis(900),
        "delivered by the other instance within one poll (took {took:?})"
    );
    assert_eq!(
        outbox_len(&reader).await,
        0,
        "the record is marked delivered"
    );

    proxy.heal();
    let healed = Instant::now();
    until_fresh(&writer, item.id, healed).await;
    assert_eq!(
        writer.content_item(item.id).await.unwrap(),
        committed(&writer, item.id).await
    );
}

/// The limit of the guarantee without an outbox, shown: another instance serves the old entry
/// while the writer cannot reach Redis, and the fresh one within milliseconds of the writer
/// reaching Redis again (its queue is replayed at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_outbox_other_instances_get_a_partitioned_writers_invalidation_when_it_reconnects(
) {
    let redis = RedisServer::start();
    let (_dir, path, item) = world().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into());
    let ns = unique_namespace("queue");
    let writer = instance(&path, &proxy.url(), &ns, false).await;
    let reader = instance(&path, &redis.url(), &ns, false).await;
    let old = warm(&reader, item.id).await;

    proxy.cut();
    writer
        .update_tags(item.owner_id, item.id, vec!["queued".into()])
        .await
        .expect("write");
    assert_eq!(writer.cache.pending_invalidations(), 1);
    assert_eq!(
        outbox_len(&writer).await,
        0,
        "no outbox configured: nothing recorded"
    );
    // Three polls' worth of time: nobody else delivers it.
    let until = Instant::now() + 3 * POLL;
    while Instant::now() < until {
        assert_eq!(reader.content_item(item.id).await.unwrap(), old);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let healed = Instant::now();
    proxy.heal();
    let took = until_fresh(&reader, item.id, healed).await;
    println!("no outbox: other instance fresh {took:?} after the writer's link healed");
    while writer.cache.pending_invalidations() > 0 {
        assert!(
            healed.elapsed() < PATIENCE,
            "the writer's queue is replayed"
        );
        tokio::task::yield_now().await;
    }
}

/// The writer crashes with its invalidation queued (Redis paused): the other instance, which
/// was serving the entry, never serves it again once Redis answers (its breaker opened during
/// the pause, so it withholds hits until it has read the outbox), and the record is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_outbox_an_invalidation_survives_the_writers_crash() {
    let mut redis = RedisServer::start_owned();
    let (_dir, path, item) = world().await;
    let ns = unique_namespace("crash");
    let writer = instance(&path, &redis.url(), &ns, true).await;
    let survivor = instance(&path, &redis.url(), &ns, true).await;
    warm(&survivor, item.id).await;

    redis.pause();
    writer
        .update_tags(item.owner_id, item.id, vec!["crashed".into()])
        .await
        .expect("write");
    assert_eq!(writer.cache.pending_invalidations(), 1);
    drop(writer); // the crash: its queue is gone
                  // The survivor is under traffic during the pause: its reads fail open.
    assert_eq!(
        survivor.content_item(item.id).await.unwrap(),
        committed(&survivor, item.id).await
    );
    assert_eq!(outbox_len(&survivor).await, 1, "the record waits");

    redis.resume();
    let resumed = Instant::now();
    // Every read from now on is fresh: no window between Redis answering and the delivery.
    while outbox_len(&survivor).await > 0 || survivor.cache.pending_invalidations() > 0 {
        assert_eq!(
            survivor.content_item(item.id).await.unwrap(),
            committed(&survivor, item.id).await,
            "{:?} after Redis answered again",
            resumed.elapsed()
        );
        assert!(resumed.elapsed() < PATIENCE, "the record is delivered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "crash: record delivered {:?} after Redis answered",
        resumed.elapsed()
    );
    let fresh = warm(&survivor, item.id).await;
    assert_eq!(fresh, committed(&survivor, item.id).await);
}

/// An instance started after the writer crashed replays the outbox before it serves any hit:
/// its first read is already fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_later_replays_the_outbox_before_serving_hits() {
    let mut redis = RedisServer::start_owned();
    let (_dir, path, item) = world().await;
    let ns = unique_namespace("start");
    let writer = instance(&path, &redis.url(), &ns, true).await;
    warm(&writer, item.id).await;
    redis.pause();
    writer
        .update_tags(item.owner_id, item.id, vec!["restarted".into()])
        .await
        .expect("write");
    drop(writer);
    redis.resume();

    let late = instance(&path, &redis.url(), &ns, true).await;
    assert_eq!(
        late.content_item(item.id).await.unwrap(),
        committed(&late, item.id).await,
        "the first read of a new instance"
    );
    until_delivered(&late, Instant::now()).await;
    let fresh = warm(&late, item.id).await;
    assert_eq!(fresh, committed(&late, item.id).await);
}

/// Writes record their invalidation in their own transaction: a write that fails (another
/// user's item) records nothing; a write delivered at once leaves no record behind; and the
/// recorded tags are exactly those the write invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_record_their_invalidation_in_the_same_transaction() {
    let mut redis = RedisServer::start_owned();
    let (_dir, path, item) = world().await;
    let app = instance(&path, &redis.url(), &unique_namespace("tx"), true).await;
    warm(&app, item.id).await;

    let stranger = item.owner_id % i64::from(SEED.users) + 1;
    assert!(app
        .update_tags(stranger, item.id, vec!["nope".into()])
        .await
        .is_err());
    assert_eq!(outbox_len(&app).await, 0, "a failed write records nothing");

    app.update_tags(item.owner_id, item.id, vec!["delivered".into()])
        .await
        .expect("write");
    assert_eq!(
        outbox_len(&app).await,
        0,
        "delivered: the record is deleted"
    );
    assert_eq!(
        app.content_item(item.id).await.unwrap(),
        committed(&app, item.id).await
    );

    redis.pause();
    app.update_tags(item.owner_id, item.id, vec!["recorded".into()])
        .await
        .expect("write");
    let records = outbox::pending(&app.db).await.unwrap();
    assert_eq!(records.len(), 1);
    let tags = &records[0].tags;
    for t in [
        format!("content:{}", item.id),
        "content:all".to_owned(),
        "tags:list".to_owned(),
        format!("user:{}:items", item.owner_id),
        "tag:delivered".to_owned(),
        "tag:recorded".to_owned(),
    ] {
        assert!(tags.contains(&t), "{t} recorded in {tags:?}");
    }
    redis.resume();
    until_delivered(&app, Instant::now()).await;
}
