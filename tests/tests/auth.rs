#![allow(missing_docs)]
//! Authentication on a real `redis-server` with `requirepass` and ACL users
//! (`RedisServer::start_with_password`, `acl_setuser`):
//!
//! * a wrong password, or none, is a clear, logged error (`CacheError::Auth`) that never holds
//!   the password, and every call is still answered by its loader (fail-open);
//! * the right password works from the URL, from the builder (which wins over the URL) and from
//!   `REDIS_USERNAME` / `REDIS_PASSWORD`;
//! * an ACL user with the documented minimal rules (`RedisBackend::acl_rules`: only the
//!   namespace's keys and the library's commands) runs every operation, under both eviction
//!   policies, without one refusal in the server's `ACL LOG`, and every key written starts with
//!   `<namespace>:`;
//! * a user that may not run `INFO`, `DBSIZE` or `PING` still works: it is logged once, hits are
//!   verified (the safe assumption about eviction) and health stays up;
//! * the rules are enforced: the same user in another namespace is refused, and the cache falls
//!   through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::backend::RedisBackend;
use cache_core::{admin, Cache, CacheBuilder, CacheStatus, Fragment, HealthStatus, Policy};
use cache_tests::{unique_namespace, LogCapture, RedisServer};

const MINUTE: Duration = Duration::from_secs(60);
const ADMIN_PASSWORD: &str = "adm1n-Pa55";
const APP_PASSWORD: &str = "app-S3cret-pw";
const WRONG: &str = "wr0ng-Pa55word";

fn server() -> RedisServer {
    RedisServer::start_with_password(ADMIN_PASSWORD)
}

fn url(server: &RedisServer, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@{}", server.address())
}

fn builder(namespace: &str) -> CacheBuilder {
    Cache::builder()
        .namespace(namespace)
        .command_timeout(Duration::from_millis(500))
        .breaker_threshold(2)
}

/// Two reads of one key; returns how many times the loader ran (both reads answer its value).
async fn loads_of_two_reads(cache: &Cache) -> usize {
    let loads = AtomicUsize::new(0);
    let key = cache.key("item").id(1).build();
    for _ in 0..2 {
        let v: String = cache
            .get_or_load(&key, Policy::ttl(MINUTE).tag("item:1"), || async {
                loads.fetch_add(1, Ordering::SeqCst);
                "from the loader".to_owned()
            })
            .await;
        assert_eq!(v, "from the loader");
    }
    loads.load(Ordering::SeqCst)
}

/// A cache whose credentials are refused: reads run their loaders, writes and health report an
/// authentication error saying `says`, logged at ERROR; the password is nowhere.
async fn assert_refused_and_fails_open(cache: &Cache, log: &LogCapture, says: &str) {
    assert_eq!(
        loads_of_two_reads(cache).await,
        2,
        "every read runs its loader"
    );
    let mut texts = vec![format!("{cache:?}")];
    let err = cache.invalidate_tags(&["item:1"]).await.unwrap_err();
    texts.push(format!("{err} {err:?}"));
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Down, "{health:?}");
    let error = health.error.clone().expect("health names the error");
    assert!(error.starts_with("Redis authentication failed"), "{error}");
    assert!(error.contains(says), "{error}");
    texts.push(format!("{health:?}"));
    texts.push(admin::stats(cache).await.body.to_string());
    texts.push(admin::health(cache).await.body.to_string());
    let logged = log.lines_with("cache_redis_connection_failed");
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("Redis authentication failed")),
        "logged at ERROR: {logged:?}"
    );
    texts.push(log.text());
    for text in &texts {
        for secret in [WRONG, APP_PASSWORD, ADMIN_PASSWORD] {
            assert!(!text.contains(secret), "a password leaked: {text}");
        }
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_logged_redacted_error_and_the_cache_still_answers() {
    let log = LogCapture::start();
    let server = server();
    let cache = builder(&unique_namespace("auth"))
        .redis_url(url(&server, "default", WRONG))
        .build()
        .unwrap();
    assert_refused_and_fails_open(&cache, &log, "rejected the user or password").await;
    let err = cache
        .set(&cache.key("item").id(3).build(), &1u32, MINUTE)
        .await
        .unwrap_err();
    assert!(err.is_auth() || err.is_circuit_open(), "{err:?}");
}

#[tokio::test]
async fn no_password_for_a_server_that_requires_one_is_a_clear_error() {
    let log = LogCapture::start();
    let server = server();
    let cache = builder(&unique_namespace("auth"))
        .redis_url(format!("redis://{}", server.address()))
        .build()
        .unwrap();
    assert_refused_and_fails_open(&cache, &log, "requires a password").await;
}

#[tokio::test]
async fn the_right_password_from_the_url_caches() {
    let server = server();
    let cache = builder(&unique_namespace("auth"))
        .redis_url(url(&server, "", ADMIN_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
    assert_eq!(cache.health().await.status, HealthStatus::Up);
}

#[tokio::test]
async fn builder_credentials_win_over_the_url() {
    let log = LogCapture::start();
    let server = server();
    let ns = unique_namespace("auth");
    create_user(&server, "app", &RedisBackend::acl_rules(&ns));
    // The URL's password is wrong; the builder's is right.
    let fixed = builder(&ns)
        .redis_url(url(&server, "app", WRONG))
        .redis_password(APP_PASSWORD)
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&fixed).await, 1, "the second read hits");
    // No credentials in the URL: user and password from the builder.
    let both = builder(&ns)
        .redis_url(format!("redis://{}", server.address()))
        .redis_username("app")
        .redis_password(APP_PASSWORD)
        .build()
        .unwrap();
    assert_eq!(
        loads_of_two_reads(&both).await,
        0,
        "hits what `fixed` stored"
    );
    // The URL is right, the builder's password wrong: the builder wins, and is refused.
    let wrong = builder(&ns)
        .redis_url(url(&server, "app", APP_PASSWORD))
        .redis_password(WRONG)
        .build()
        .unwrap();
    let debug = format!("{:?}", builder(&ns).redis_password(WRONG));
    assert!(debug.contains("***") && !debug.contains(WRONG), "{debug}");
    assert_refused_and_fails_open(&wrong, &log, "rejected the user or password").await;
}

#[tokio::test]
async fn the_credential_variables_configure_the_user() {
    let server = server();
    let ns = unique_namespace("auth");
    create_user(&server, "app", &RedisBackend::acl_rules(&ns));
    let env = [
        ("REDIS_URL", format!("redis://{}", server.address())),
        ("CACHE_NAMESPACE", ns),
        ("REDIS_USERNAME", "app".to_owned()),
        ("REDIS_PASSWORD", APP_PASSWORD.to_owned()),
    ];
    let cache = CacheBuilder::from_env_with(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
    assert!(!format!("{cache:?}").contains(APP_PASSWORD));
}

/// Every operation of the library, each checked for its effect: misses and hits with tags,
/// explicit set/get/delete, tag invalidation, leases, stale-while-revalidate, fragments (MGET),
/// pattern deletes, clear, stats, health.
async fn every_operation(cache: &Cache) {
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, Ordering::SeqCst);
        async { "v".to_owned() }
    };
    let k1 = cache.key("item").id(1).build();
    let tagged = Policy::ttl(MINUTE).tag("item:1").tag("list");
    let v: String = cache.get_or_load(&k1, tagged.clone(), load).await;
    assert_eq!(v, "v");
    let v: String = cache.get_or_load(&k1, tagged.clone(), load).await;
    assert_eq!(v, "v");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "miss, then hit");

    // Explicit writes.
    let k2 = cache.key("item").id(2).build();
    cache.set(&k2, &2u32, MINUTE).await.unwrap();
    assert_eq!(cache.get::<u32>(&k2).await, Some(2));
    assert!(cache.delete(&k2).await.unwrap());
    assert_eq!(cache.get::<u32>(&k2).await, None);

    // Tag invalidation.
    assert_eq!(cache.invalidate_tags(&["item:1"]).await.unwrap(), 1);
    let v: String = cache.get_or_load(&k1, tagged.clone(), load).await;
    assert_eq!(v, "v");
    assert_eq!(loads.load(Ordering::SeqCst), 2, "invalidated: loaded again");

    // A lease (SET NX, then the release script).
    let k3 = cache.key("item").id(3).build();
    let f = cache
        .fetch(&k3, Policy::ttl(MINUTE).lease(true), || async {
            Ok::<_, ()>(3u32)
        })
        .await
        .unwrap();
    assert_eq!((f.value, f.status), (3, CacheStatus::Miss));
    let f = cache
        .fetch(&k3, Policy::ttl(MINUTE).lease(true), || async {
            Ok::<_, ()>(4u32)
        })
        .await
        .unwrap();
    assert_eq!((f.value, f.status), (3, CacheStatus::Hit));

    // Stale-while-revalidate: an entry past its TTL is served stale, then refreshed in the
    // background.
    let k4 = cache.key("item").id(4).build();
    let swr = Policy::ttl(Duration::from_millis(50)).stale_while_revalidate(MINUTE);
    cache.set(&k4, &1u32, swr.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await; // the TTL passes
    let f = cache
        .fetch_detached(&k4, swr.clone(), || async { Ok::<_, ()>(2u32) })
        .await
        .unwrap();
    assert_eq!((f.value, f.status), (1, CacheStatus::Stale));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.get_entry::<u32>(&k4).await.map(|e| e.value) != Some(2) {
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        tokio::task::yield_now().await;
    }

    // Fragments: one MGET, the missing ones stored in one call.
    let frags: Vec<Fragment> = (10..14u32)
        .map(|i| Fragment::new(cache.key("frag").id(i).build(), tagged.clone()))
        .collect();
    let first: Vec<u32> = cache
        .get_many_or_load(&frags, |missing| async move {
            Ok::<_, ()>(missing.iter().map(|&i| i as u32).collect())
        })
        .await
        .unwrap();
    let again = cache
        .fetch_many(&frags, |missing| async move {
            Ok::<_, ()>(missing.iter().map(|_| 99u32).collect())
        })
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|f| f.value).collect::<Vec<_>>(),
        first,
        "all hits"
    );
    assert!(again.iter().all(|f| f.status == CacheStatus::Hit));

    // A tag spanning several entries.
    assert!(cache.invalidate_tags(&["list"]).await.unwrap() >= 4);

    // Pattern delete, clear.
    cache
        .set(&cache.key("doomed").id(1).build(), &1u32, MINUTE)
        .await
        .unwrap();
    assert_eq!(cache.delete_pattern("doomed:*").await.unwrap(), 1);
    cache.clear().await.unwrap();
    assert_eq!(cache.get::<u32>(&k2).await, None);

    // Stats and health.
    let info = cache.backend_info().await.unwrap();
    assert_eq!(info.backend, "redis");
    let stats = admin::stats(cache).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(cache.health().await.status, HealthStatus::Up);
}

/// `ACL LOG` of the server: the refusals since it started, each as text. Without the
/// `CLIENT SETINFO` that redis-rs sends on connecting (Redis 7.2 and later refuse it to a user
/// without `+client|setinfo`, and redis-rs ignores the refusal).
fn acl_log(server: &RedisServer) -> Vec<String> {
    let mut con = server.admin_connection();
    let entries: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut con).unwrap();
    entries
        .iter()
        .map(|e| format!("{e:?}"))
        .filter(|e| !e.contains("setinfo"))
        .collect()
}

fn all_keys(server: &RedisServer) -> Vec<String> {
    let mut con = server.admin_connection();
    redis::cmd("KEYS").arg("*").query(&mut con).unwrap()
}

fn set_policy(server: &RedisServer, maxmemory: &str, policy: &str) {
    let mut con = server.admin_connection();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(maxmemory)
        .arg("maxmemory-policy")
        .arg(policy)
        .query::<()>(&mut con)
        .unwrap();
}

fn create_user(server: &RedisServer, user: &str, rules: &str) {
    let rules = format!("on >{APP_PASSWORD} {rules}");
    server.acl_setuser(user, &rules.split(' ').collect::<Vec<_>>());
}

#[tokio::test]
async fn an_acl_user_limited_to_the_namespace_runs_every_operation() {
    let server = server();
    for (maxmemory, policy) in [("0", "noeviction"), ("512mb", "allkeys-lru")] {
        set_policy(&server, maxmemory, policy);
        let ns = unique_namespace("acl");
        create_user(&server, "app", &RedisBackend::acl_rules(&ns));
        let cache = builder(&ns)
            .redis_url(url(&server, "app", APP_PASSWORD))
            .build()
            .unwrap();
        every_operation(&cache).await;
        assert_eq!(
            cache.stats().total.errors,
            0,
            "{policy}: {:?}",
            cache.stats()
        );
        assert_eq!(
            acl_log(&server),
            Vec::<String>::new(),
            "{policy}: no command or key was refused"
        );
        // The bookkeeping keys exist (version counters, under eviction more of them)...
        let keys = all_keys(&server);
        assert!(!keys.is_empty());
        // ... and every key of every run so far is in a namespace.
        for key in &keys {
            assert!(key.starts_with("acl-"), "{key}");
        }
        let mine: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("{ns}:")))
            .collect();
        assert!(!mine.is_empty(), "{policy}: {keys:?}");
    }
}

#[tokio::test]
async fn an_acl_user_without_info_dbsize_or_ping_degrades_gracefully() {
    let log = LogCapture::start();
    let server = server();
    let ns = unique_namespace("acl");
    let rules = RedisBackend::acl_rules(&ns)
        .replace(" +ping", "")
        .replace(" +info", "")
        .replace(" +dbsize", "");
    create_user(&server, "app", &rules);
    let cache = builder(&ns)
        .redis_url(url(&server, "app", APP_PASSWORD))
        .build()
        .unwrap();
    // Redis does not evict here (no maxmemory), but this user cannot tell: it verifies hits,
    // which creates the namespace's generation counter at the first fill.
    every_operation(&cache).await;
    assert_eq!(cache.stats().total.errors, 0, "{:?}", cache.stats());
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Up, "{health:?}");
    assert_eq!(health.consecutive_failures, 0);
    let info = cache.backend_info().await.unwrap();
    assert_eq!((info.total_keys, info.version.as_str()), (0, ""));
    let limited = log.lines_with("cache_redis_acl_limited");
    for command in ["INFO", "PING", "DBSIZE"] {
        assert_eq!(
            limited
                .iter()
                .filter(|l| l.contains(&format!("command={command}")))
                .count(),
            1,
            "{command} logged once: {limited:?}"
        );
    }
    let refused = acl_log(&server);
    assert!(
        refused
            .iter()
            .all(|r| ["info", "ping", "dbsize"].iter().any(|c| r.contains(c))),
        "only the three left-out commands were refused: {refused:?}"
    );
    // The safe assumption: verified hits (they create the generation counter).
    assert!(
        all_keys(&server).contains(&format!("{ns}:g:v")),
        "{:?}",
        all_keys(&server)
    );

    // With INFO allowed and no eviction, no hit is verified: no generation counter.
    let ns = unique_namespace("acl");
    create_user(&server, "full", &RedisBackend::acl_rules(&ns));
    let full = builder(&ns)
        .redis_url(url(&server, "full", APP_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&full).await, 1);
    assert!(!all_keys(&server).contains(&format!("{ns}:g:v")));
}

#[tokio::test]
async fn the_acl_rules_are_enforced_outside_the_namespace_and_the_cache_falls_through() {
    let server = server();
    let allowed = unique_namespace("acl");
    create_user(&server, "app", &RedisBackend::acl_rules(&allowed));
    let other = builder(&unique_namespace("acl"))
        .redis_url(url(&server, "app", APP_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&other).await, 2, "nothing cached");
    assert!(other.stats().total.errors > 0);
    assert!(
        !acl_log(&server).is_empty(),
        "the server refused the other namespace's keys"
    );
    assert!(all_keys(&server).is_empty());
}
