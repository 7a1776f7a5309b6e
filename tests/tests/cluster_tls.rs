#![allow(missing_docs)]
//! A Redis Cluster behind TLS and behind a password / ACL users, on real local clusters started
//! per test (`RedisCluster::start_tls`, `start_mutual_tls`, `start_with_password`; six nodes each,
//! never the shared `REDIS_CLUSTER_URLS` cluster):
//!
//! * with the CA (builder or `REDIS_CLUSTER_URLS` + `REDIS_TLS_CA_FILE`), the cache works over
//!   TLS on every node: hits, guarded stores, tag invalidation across masters, pattern deletes,
//!   stats and health (`redis-cluster`);
//! * without the CA, the connection fails with a clear, logged TLS error (`CacheError::Tls`,
//!   also in `health()`), and every call is still answered by its loader, within a bound;
//! * mutual TLS works with the client certificate, and fails clearly without one;
//! * a wrong password is a clear, logged authentication error that never holds the password,
//!   and the cache still answers; the right one (builder, URL or `REDIS_PASSWORD`) works;
//! * an ACL user with `RedisClusterBackend::acl_rules` runs every operation on the cluster
//!   without one refusal in any node's `ACL LOG`, and cannot touch keys outside its namespace;
//!   the single-node rules lack what the cluster client needs (`CLUSTER SLOTS`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::backend::{RedisBackend, RedisClusterBackend};
use cache_core::error::ConfigError;
use cache_core::{admin, Cache, CacheBuilder, CacheError, CacheStatus, Fragment, HealthStatus};
use cache_core::{CacheKey, Policy};
use cache_tests::{unique_namespace, LogCapture, RedisCluster, TestCerts};

const MINUTE: Duration = Duration::from_secs(60);
const ADMIN_PASSWORD: &str = "clu5ter-Adm1n";
const APP_PASSWORD: &str = "clu5ter-App-pw";
const WRONG: &str = "wr0ng-clu5ter-pw";
/// Bound on any single call while the cluster cannot be reached (fail-open, no hang): the
/// command deadline plus the connection attempt, with room for a loaded machine.
const CALL_BOUND: Duration = Duration::from_secs(10);

fn builder(namespace: &str) -> CacheBuilder {
    // As in the behaviour suites: a fresh cluster connection on a loaded debug build needs more
    // than the single-node deadlines.
    Cache::builder()
        .namespace(namespace)
        .command_timeout(Duration::from_secs(2))
        .invalidation_timeout(Duration::from_secs(2))
        .breaker_threshold(2)
}

fn certs(cluster: &RedisCluster) -> TestCerts {
    cluster.tls_certs().expect("a TLS cluster").clone()
}

fn from_env(vars: &[(&str, String)]) -> Result<CacheBuilder, ConfigError> {
    CacheBuilder::from_env_with(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

/// `redis://user:password@127.0.0.1:PORT` for every node.
fn urls_for(cluster: &RedisCluster, user: &str, password: &str) -> Vec<String> {
    cluster
        .ports()
        .iter()
        .map(|p| format!("redis://{user}:{password}@127.0.0.1:{p}"))
        .collect()
}

/// Runs `call` and checks it returned within [`CALL_BOUND`].
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(CALL_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {CALL_BOUND:?}"));
    assert!(started.elapsed() < CALL_BOUND, "{what}");
    out
}

/// Two reads of one key; returns how many times the loader ran (both reads answer its value).
async fn loads_of_two_reads(cache: &Cache) -> usize {
    let loads = AtomicUsize::new(0);
    let key = cache.key("item").id(1).build();
    for _ in 0..2 {
        let v: String = bounded(
            "a read",
            cache.get_or_load(&key, Policy::ttl(MINUTE).tag("item:1"), || async {
                loads.fetch_add(1, Ordering::SeqCst);
                "from the loader".to_owned()
            }),
        )
        .await;
        assert_eq!(v, "from the loader");
    }
    loads.load(Ordering::SeqCst)
}

/// The keys of `namespace` on each master, read on the node itself (`SCAN`, admin credentials).
fn keys_by_master(cluster: &RedisCluster, namespace: &str) -> BTreeMap<u16, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for port in cluster.masters() {
        let mut con = cluster
            .node_client(port)
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let mut keys = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{namespace}:*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.insert(port, keys);
    }
    out
}

/// The master holding the physical key of the entry `key` (`ns:{ns.<bucket>}:rest` for the
/// logical `ns:rest`), if it exists anywhere.
fn master_of(keys: &BTreeMap<u16, BTreeSet<String>>, key: &CacheKey) -> Option<u16> {
    let (ns, rest) = key.as_str().split_once(':').unwrap();
    keys.iter()
        .find(|(_, ks)| {
            ks.iter().any(|k| {
                k.strip_prefix(&format!("{ns}:{{{ns}."))
                    .and_then(|k| k.split_once("}:"))
                    .is_some_and(|(_, r)| r == rest)
            })
        })
        .map(|(port, _)| *port)
}

/// The core behaviours on a cluster, each checked for its effect, with the origin (the loader)
/// as the oracle: a miss then a hit; a guarded store (a fill that started before an
/// invalidation is not stored); tag invalidation spanning entries on at least two masters
/// (their keys are gone from those nodes); a pattern delete; stats and health naming
/// `redis-cluster`.
async fn core_behaviours(cache: &Cache, cluster: &RedisCluster, namespace: &str) {
    assert_eq!(loads_of_two_reads(cache).await, 1, "miss, then hit");

    // A guarded store: the loader's value, read before an invalidation, is not stored.
    let key = cache.key("trig").id(42).build();
    let policy = Policy::ttl(MINUTE).tag("trig:42");
    let loader_started = Arc::new(tokio::sync::Notify::new());
    let invalidated = Arc::new(tokio::sync::Notify::new());
    let slow_fill = {
        let (cache, key, policy) = (cache.clone(), key.clone(), policy.clone());
        let (loader_started, invalidated) = (loader_started.clone(), invalidated.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, policy, || async move {
                    loader_started.notify_one();
                    invalidated.notified().await;
                    "read before the write".to_owned()
                })
                .await
        })
    };
    loader_started.notified().await;
    cache.invalidate_tags(&["trig:42"]).await.unwrap();
    invalidated.notify_one();
    assert_eq!(slow_fill.await.unwrap(), "read before the write");
    assert_eq!(
        cache.get::<String>(&key).await,
        None,
        "the stale fill is refused"
    );
    assert_eq!(cache.stats().resources["trig"].rejected_fills, 1);
    let fresh: String = cache
        .get_or_load(&key, policy, || async { "new".to_owned() })
        .await;
    assert_eq!(fresh, "new");
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("new"));

    // Tag invalidation across slots and masters.
    let logs: Vec<CacheKey> = (0..24u32).map(|i| cache.key("log").id(i).build()).collect();
    for (i, key) in logs.iter().enumerate() {
        let v: u32 = cache
            .get_or_load(key, Policy::ttl(MINUTE).tag("logs"), || async { i as u32 })
            .await;
        assert_eq!(v, i as u32);
    }
    let before = keys_by_master(cluster, namespace);
    let holders: BTreeSet<u16> = logs
        .iter()
        .map(|k| master_of(&before, k).unwrap_or_else(|| panic!("{k} is stored nowhere")))
        .collect();
    assert!(
        holders.len() >= 2,
        "the tagged entries span several masters: {holders:?}"
    );
    assert_eq!(cache.invalidate_tags(&["logs"]).await.unwrap(), 24);
    let after = keys_by_master(cluster, namespace);
    for key in &logs {
        assert_eq!(
            master_of(&after, key),
            None,
            "{key} is gone from its master"
        );
        assert_eq!(cache.get::<u32>(key).await, None);
    }
    // Reads after the invalidation answer the loader's current value.
    let v: u32 = cache
        .get_or_load(&logs[0], Policy::ttl(MINUTE).tag("logs"), || async { 100 })
        .await;
    assert_eq!(v, 100);

    // Pattern delete (SCAN on every master).
    for i in 0..10u32 {
        cache
            .set(&cache.key("doomed").id(i).build(), &i, MINUTE)
            .await
            .unwrap();
    }
    assert_eq!(cache.delete_pattern("doomed:*").await.unwrap(), 10);
    for i in 0..10u32 {
        assert_eq!(
            cache.get::<u32>(&cache.key("doomed").id(i).build()).await,
            None
        );
    }

    // Stats and health.
    let info = cache.backend_info().await.unwrap();
    assert_eq!(info.backend, "redis-cluster");
    assert!(info.total_keys > 0, "{info:?}");
    let stats = admin::stats(cache).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["backend"], "redis-cluster", "{}", stats.body);
    assert_eq!(stats.body["health"]["status"], "up", "{}", stats.body);
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Up, "{health:?}");
    assert_eq!(health.backend, "redis-cluster");
    assert_eq!(cache.stats().total.errors, 0, "{:?}", cache.stats());
}

#[tokio::test]
async fn a_tls_cluster_with_the_ca_serves_the_core_behaviours_from_the_builder_and_from_the_env() {
    let cluster = RedisCluster::start_tls();
    let urls = cluster.urls();
    assert!(urls.iter().all(|u| u.starts_with("rediss://")), "{urls:?}");
    let c = certs(&cluster);

    let ns = unique_namespace("ctls");
    let cache = builder(&ns)
        .redis_cluster(urls.clone())
        .redis_tls_ca_pem(c.ca.cert_pem.clone())
        .build()
        .unwrap();
    core_behaviours(&cache, &cluster, &ns).await;

    // The same from the environment: REDIS_CLUSTER_URLS + REDIS_TLS_CA_FILE. One seed only:
    // the other masters, learnt from `CLUSTER SLOTS`, are reached over TLS with the same CA.
    let ns = unique_namespace("ctls");
    let env = from_env(&[
        ("REDIS_CLUSTER_URLS", urls[0].clone()),
        ("REDIS_TLS_CA_FILE", c.ca.cert_file.display().to_string()),
        ("CACHE_NAMESPACE", ns.clone()),
        ("CACHE_COMMAND_TIMEOUT", "2s".into()),
    ])
    .unwrap()
    .build()
    .unwrap();
    core_behaviours(&env, &cluster, &ns).await;
}

/// A cache that cannot reach the cluster: every read is answered by its loader within a bound,
/// explicit calls fail with `check` (or the open breaker), health is down with an error saying
/// `starts` and `hint`, and the first failure was logged at ERROR with it.
async fn assert_fails_open(
    cache: &Cache,
    log: &LogCapture,
    starts: &str,
    hint: &str,
    check: fn(&CacheError) -> bool,
) {
    assert_eq!(
        loads_of_two_reads(cache).await,
        2,
        "every read runs its loader"
    );
    let err = bounded(
        "a set",
        cache.set(&cache.key("item").id(2).build(), &1u32, MINUTE),
    )
    .await
    .unwrap_err();
    assert!(check(&err) || err.is_circuit_open(), "{err:?}");
    if !err.is_circuit_open() {
        assert!(err.to_string().contains(hint), "{err}");
    }
    let health = bounded("health", cache.health()).await;
    assert_eq!(health.status, HealthStatus::Down, "{health:?}");
    assert_eq!(health.backend, "redis-cluster");
    let error = health.error.expect("health names the error");
    assert!(error.starts_with(starts), "{error}");
    assert!(error.contains(hint), "{error}");
    let logged = log.lines_with("cache_redis_connection_failed");
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains(hint)),
        "the failure is logged at ERROR with its fix: {logged:?}\n{}",
        log.text()
    );
}

#[tokio::test]
async fn a_tls_cluster_without_the_ca_is_a_clear_tls_error_and_the_cache_still_answers() {
    let log = LogCapture::start();
    let cluster = RedisCluster::start_tls();
    // The bundled Mozilla roots do not hold the test CA.
    let cache = builder(&unique_namespace("ctls"))
        .redis_cluster(cluster.urls())
        .build()
        .unwrap();
    assert_fails_open(
        &cache,
        &log,
        "TLS connection to Redis failed",
        "not signed by a CA this client trusts",
        CacheError::is_tls,
    )
    .await;
    let error = cache.health().await.error.unwrap();
    assert!(
        error.contains("UnknownIssuer"),
        "the TLS layer's reason: {error}"
    );
}

#[tokio::test]
async fn a_mutual_tls_cluster_works_with_the_client_certificate_and_refuses_a_client_without_one() {
    let log = LogCapture::start();
    let cluster = RedisCluster::start_mutual_tls();
    let c = certs(&cluster);
    let ns = unique_namespace("cmtls");
    let cache = builder(&ns)
        .redis_cluster(cluster.urls())
        .redis_tls_ca_pem(c.ca.cert_pem.clone())
        .redis_tls_client_cert_pem(c.client.cert_pem.clone(), c.client.key_pem.clone())
        .build()
        .unwrap();
    core_behaviours(&cache, &cluster, &ns).await;

    let without = builder(&unique_namespace("cmtls"))
        .redis_cluster(cluster.urls())
        .redis_tls_ca_pem(c.ca.cert_pem.clone())
        .build()
        .unwrap();
    assert_fails_open(
        &without,
        &log,
        "TLS connection to Redis failed",
        "requires a client certificate",
        CacheError::is_tls,
    )
    .await;
}

/// Every text the service could show or log about `cache`: none holds a password.
async fn assert_no_password_anywhere(cache: &Cache, log: &LogCapture, extra: &[String]) {
    let mut texts = extra.to_vec();
    texts.push(format!("{cache:?}"));
    texts.push(format!("{:?}", cache.health().await));
    texts.push(admin::stats(cache).await.body.to_string());
    texts.push(admin::health(cache).await.body.to_string());
    texts.push(format!("{:?}", cache.stats()));
    texts.push(log.text());
    for text in &texts {
        for secret in [WRONG, APP_PASSWORD, ADMIN_PASSWORD] {
            assert!(!text.contains(secret), "a password leaked: {text}");
        }
    }
}

#[tokio::test]
async fn a_password_cluster_refuses_a_wrong_password_clearly_without_leaking_it_and_accepts_the_right_one(
) {
    let log = LogCapture::start();
    let cluster = RedisCluster::start_with_password(ADMIN_PASSWORD);

    // Wrong password in the URLs.
    let wrong = builder(&unique_namespace("cauth"))
        .redis_cluster(urls_for(&cluster, "default", WRONG))
        .build()
        .unwrap();
    assert_fails_open(
        &wrong,
        &log,
        "Redis authentication failed",
        "rejected the user or password",
        CacheError::is_auth,
    )
    .await;
    let err = wrong
        .delete(&wrong.key("item").id(1).build())
        .await
        .unwrap_err();
    let wrong_builder = builder("x")
        .redis_cluster(urls_for(&cluster, "default", WRONG))
        .redis_password(WRONG);
    assert_no_password_anywhere(
        &wrong,
        &log,
        &[format!("{err} {err:?}"), format!("{wrong_builder:?}")],
    )
    .await;

    // Wrong password from the builder, over password-less URLs.
    let plain_urls: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    let wrong = builder(&unique_namespace("cauth"))
        .redis_cluster(plain_urls.clone())
        .redis_password(WRONG)
        .build()
        .unwrap();
    assert_fails_open(
        &wrong,
        &log,
        "Redis authentication failed",
        "rejected the user or password",
        CacheError::is_auth,
    )
    .await;
    assert_no_password_anywhere(&wrong, &log, &[]).await;

    // No password at all.
    let none = builder(&unique_namespace("cauth"))
        .redis_cluster(plain_urls.clone())
        .build()
        .unwrap();
    assert_fails_open(
        &none,
        &log,
        "Redis authentication failed",
        "requires a password",
        CacheError::is_auth,
    )
    .await;

    // The right password: in the URLs, from the builder, from REDIS_PASSWORD.
    let ns = unique_namespace("cauth");
    let from_urls = builder(&ns)
        .redis_cluster(urls_for(&cluster, "", ADMIN_PASSWORD))
        .build()
        .unwrap();
    core_behaviours(&from_urls, &cluster, &ns).await;
    let ns = unique_namespace("cauth");
    // One seed: the other masters are reached with the same credentials.
    let from_builder = builder(&ns)
        .redis_cluster(plain_urls[..1].to_vec())
        .redis_password(ADMIN_PASSWORD)
        .build()
        .unwrap();
    core_behaviours(&from_builder, &cluster, &ns).await;
    let from_env = from_env(&[
        ("REDIS_CLUSTER_URLS", plain_urls.join(",")),
        ("REDIS_PASSWORD", ADMIN_PASSWORD.into()),
        ("CACHE_NAMESPACE", ns),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(
        loads_of_two_reads(&from_env).await,
        0,
        "hits what from_builder stored"
    );
    assert_no_password_anywhere(&from_env, &log, &[]).await;
}

/// Every operation of the library on a cluster, each checked for its effect: misses and hits
/// with tags, explicit set/get/delete, tag invalidation, leases, fragments (MGET across slots),
/// pattern deletes, clear.
async fn every_operation_but_server_figures(cache: &Cache) {
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

    let k2 = cache.key("item").id(2).build();
    cache.set(&k2, &2u32, MINUTE).await.unwrap();
    assert_eq!(cache.get::<u32>(&k2).await, Some(2));
    assert!(cache.delete(&k2).await.unwrap());
    assert_eq!(cache.get::<u32>(&k2).await, None);

    assert_eq!(cache.invalidate_tags(&["item:1"]).await.unwrap(), 1);
    let v: String = cache.get_or_load(&k1, tagged.clone(), load).await;
    assert_eq!(v, "v");
    assert_eq!(loads.load(Ordering::SeqCst), 2, "invalidated: loaded again");

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

    let frags: Vec<Fragment> = (10..22u32)
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
    assert_eq!(again.iter().map(|f| f.value).collect::<Vec<_>>(), first);
    assert!(again.iter().all(|f| f.status == CacheStatus::Hit));
    assert!(cache.invalidate_tags(&["list"]).await.unwrap() >= 12);

    cache
        .set(&cache.key("doomed").id(1).build(), &1u32, MINUTE)
        .await
        .unwrap();
    assert_eq!(cache.delete_pattern("doomed:*").await.unwrap(), 1);
    cache.clear().await.unwrap();
    assert_eq!(cache.get::<String>(&k1).await, None);
}

/// [`every_operation_but_server_figures`], then stats with the server's figures and health.
async fn every_operation(cache: &Cache) {
    every_operation_but_server_figures(cache).await;
    let info = cache.backend_info().await.unwrap();
    assert_eq!(info.backend, "redis-cluster");
    assert!(!info.version.is_empty(), "{info:?}");
    let stats = admin::stats(cache).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(cache.health().await.status, HealthStatus::Up);
}

/// The `ACL LOG` of every running master and replica: the refusals since they started. Without the
/// `CLIENT SETINFO` redis-rs sends on connecting (refused by Redis 7.2+ to a user without
/// `+client|setinfo`, and ignored by redis-rs).
fn acl_log(cluster: &RedisCluster) -> Vec<String> {
    let mut out = Vec::new();
    for port in cluster
        .ports()
        .into_iter()
        .filter(|&p| cluster.pid(p).is_some())
    {
        let mut con = cluster
            .node_client(port)
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let entries: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut con).unwrap();
        out.extend(
            entries
                .iter()
                .map(|e| format!("{port}: {e:?}"))
                .filter(|e| !e.contains("setinfo")),
        );
    }
    out
}

fn create_user(cluster: &RedisCluster, user: &str, rules: &str) {
    let rules = format!("on >{APP_PASSWORD} {rules}");
    cluster.acl_setuser(user, &rules.split(' ').collect::<Vec<_>>());
}

#[tokio::test]
async fn an_acl_user_with_the_cluster_rules_runs_every_operation_and_cannot_read_outside_its_namespace(
) {
    let cluster = RedisCluster::start_with_password(ADMIN_PASSWORD);
    let ns = unique_namespace("cacl");
    create_user(&cluster, "app", &RedisClusterBackend::acl_rules(&ns));
    // One seed: the user's credentials also reach the masters learnt from `CLUSTER SLOTS`.
    let cache = builder(&ns)
        .redis_cluster(urls_for(&cluster, "app", APP_PASSWORD)[..1].to_vec())
        .build()
        .unwrap();
    every_operation(&cache).await;
    assert_eq!(cache.stats().total.errors, 0, "{:?}", cache.stats());
    assert_eq!(
        acl_log(&cluster),
        Vec::<String>::new(),
        "nothing was refused"
    );
    // Every key written is in the namespace.
    let all = keys_by_master(&cluster, "*");
    assert!(
        all.values()
            .flatten()
            .all(|k| k.starts_with(&format!("{ns}:"))),
        "{all:?}"
    );

    // Outside the namespace: a key of another namespace cannot be read (the server refuses it).
    let other = unique_namespace("cacl");
    let mut admin_con = cluster.client().get_connection().unwrap();
    redis::cmd("SET")
        .arg(format!("{other}:secret"))
        .arg("s")
        .query::<()>(&mut admin_con)
        .unwrap();
    let app = redis::cluster::ClusterClientBuilder::new(urls_for(&cluster, "app", APP_PASSWORD))
        .build()
        .unwrap();
    let mut app_con = app.get_connection().unwrap();
    let err = redis::cmd("GET")
        .arg(format!("{other}:secret"))
        .query::<Option<String>>(&mut app_con)
        .unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err:?}");
    // A cache of the other namespace with this user falls through to its loader.
    let elsewhere = builder(&other)
        .redis_cluster(urls_for(&cluster, "app", APP_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&elsewhere).await, 2, "nothing cached");
    assert!(elsewhere.stats().total.errors > 0);
}

#[tokio::test]
async fn the_single_node_acl_rules_are_not_enough_for_a_cluster() {
    let cluster = RedisCluster::start_with_password(ADMIN_PASSWORD);
    let ns = unique_namespace("cacl");
    create_user(&cluster, "app", &RedisBackend::acl_rules(&ns));
    let cache = builder(&ns)
        .redis_cluster(urls_for(&cluster, "app", APP_PASSWORD))
        .build()
        .unwrap();
    // The cluster client cannot read the slot map (`CLUSTER SLOTS` is refused): nothing is
    // cached, the loader answers.
    assert_eq!(loads_of_two_reads(&cache).await, 2);
    assert!(
        acl_log(&cluster).iter().any(|e| e.contains("slots")),
        "{:?}",
        acl_log(&cluster)
    );
}

/// Upper bound on a failover after `kill_master` (detection after the node timeout, election).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound on the cache's recovery once the cluster has failed over.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the master holding an entry, waits for its replica to take over, and checks that the
/// cache writes and reads that entry again on the promoted node: a node the client had not
/// talked to as a master, reached with the same TLS settings and credentials.
async fn the_cache_recovers_after_a_failover(cache: &Cache, cluster: &mut RedisCluster, ns: &str) {
    let keys: Vec<CacheKey> = (0..12u32).map(|i| cache.key("fo").id(i).build()).collect();
    for (i, key) in keys.iter().enumerate() {
        cache.set(key, &(i as u32), MINUTE).await.unwrap();
    }
    let victim = master_of(&keys_by_master(cluster, ns), &keys[0]).expect("stored");
    cluster.kill_master(victim);
    cluster.wait_failover(victim, FAILOVER_TIMEOUT);
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let stored = cache.set(&keys[0], &1000u32, MINUTE).await;
        if stored.is_ok() && cache.get::<u32>(&keys[0]).await == Some(1000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not recover within {RECOVERY_TIMEOUT:?} of the failover: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let owner = master_of(&keys_by_master(cluster, ns), &keys[0]).expect("stored again");
    assert_ne!(owner, victim, "the entry lives on the promoted replica");
    assert_eq!(cache.health().await.status, HealthStatus::Up);
    // The killed node rejoins as a replica (the test support reaches it the same way).
    cluster.restart_node(victim);
    assert!(
        cluster.replicas().contains(&victim),
        "{:?}",
        cluster.nodes()
    );
    assert_eq!(cache.get::<u32>(&keys[0]).await, Some(1000));
}

#[tokio::test]
async fn after_a_failover_the_promoted_replica_of_a_tls_cluster_is_reached_over_tls() {
    let mut cluster = RedisCluster::start_tls();
    let ns = unique_namespace("ctls");
    let cache = builder(&ns)
        .breaker_cooldown(Duration::from_millis(100))
        .redis_cluster(cluster.urls())
        .redis_tls_ca_pem(certs(&cluster).ca.cert_pem)
        .build()
        .unwrap();
    the_cache_recovers_after_a_failover(&cache, &mut cluster, &ns).await;
}

#[tokio::test]
async fn after_a_failover_the_promoted_replica_of_a_password_cluster_is_reached_with_the_acl_user()
{
    let mut cluster = RedisCluster::start_with_password(ADMIN_PASSWORD);
    let ns = unique_namespace("cacl");
    create_user(&cluster, "app", &RedisClusterBackend::acl_rules(&ns));
    let cache = builder(&ns)
        .breaker_cooldown(Duration::from_millis(100))
        .redis_cluster(urls_for(&cluster, "app", APP_PASSWORD))
        .build()
        .unwrap();
    the_cache_recovers_after_a_failover(&cache, &mut cluster, &ns).await;
    assert_eq!(
        acl_log(&cluster),
        Vec::<String>::new(),
        "nothing was refused"
    );
}

#[test]
fn cluster_seeds_mixing_tls_and_plain_or_tls_settings_for_plain_seeds_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCerts::generate(dir.path());
    let err = Cache::builder()
        .redis_cluster(["rediss://127.0.0.1:7000", "redis://127.0.0.1:7001"])
        .build()
        .unwrap_err();
    assert_eq!(err.source_name(), "redis_cluster", "{err}");
    assert!(err.to_string().contains("the same scheme"), "{err}");
    // TLS files for plain seeds: the seeds are at fault.
    let err = from_env(&[
        ("REDIS_CLUSTER_URLS", "redis://127.0.0.1:7000".into()),
        ("REDIS_TLS_CA_FILE", c.ca.cert_file.display().to_string()),
    ])
    .and_then(CacheBuilder::build)
    .unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
    // A password in a seed URL never shows in the error.
    let err = Cache::builder()
        .redis_cluster([
            "rediss://127.0.0.1:7000".to_owned(),
            format!("redis://app:{APP_PASSWORD}@127.0.0.1:7001"),
        ])
        .build()
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(APP_PASSWORD), "{err}");
}

/// Whether `CLUSTER SLOTS` of every node gives `host` as the endpoint of every master.
fn every_node_announces(cluster: &RedisCluster, host: &str) -> bool {
    cluster.ports().into_iter().all(|port| {
        let mut con = cluster
            .node_client(port)
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        ranges.iter().all(|range| match range {
            redis::Value::Array(parts) => match parts.get(2) {
                Some(redis::Value::Array(node)) => matches!(
                    node.first(),
                    Some(redis::Value::BulkString(b)) if b == host.as_bytes()
                ),
                _ => false,
            },
            _ => false,
        })
    })
}

/// Sets `name` to `value` on every running node (`CONFIG SET`).
fn config_set(cluster: &RedisCluster, name: &str, value: &str) {
    for port in cluster
        .ports()
        .into_iter()
        .filter(|&p| cluster.pid(p).is_some())
    {
        let mut con = cluster
            .node_client(port)
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("CONFIG SET {name} {value} on {port}: {e}"));
    }
}

#[tokio::test]
async fn node_certificates_must_name_the_announced_address_or_the_nodes_must_announce_hostnames() {
    let log = LogCapture::start();
    // Certificates for `localhost` only; the nodes announce 127.0.0.1.
    let cluster = RedisCluster::start_tls_naming(&["localhost"]);
    let urls = cluster.urls();
    assert!(urls[0].starts_with("rediss://localhost:"), "{urls:?}");
    let ca = certs(&cluster).ca.cert_pem;
    let cache = builder(&unique_namespace("ctls"))
        .redis_cluster(urls.clone())
        .redis_tls_ca_pem(ca.clone())
        .build()
        .unwrap();
    // The seeds verify (`localhost`), the nodes of the slot map (127.0.0.1) do not: nothing is
    // cached, every read answers from its loader, health is down.
    assert_eq!(
        loads_of_two_reads(&cache).await,
        2,
        "every read runs its loader"
    );
    let err = bounded(
        "a set",
        cache.set(&cache.key("item").id(2).build(), &1u32, MINUTE),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_circuit_open() || err.to_string().contains("ClusterConnectionNotFound"),
        "{err:?}"
    );
    let health = bounded("health", cache.health()).await;
    assert_eq!(health.status, HealthStatus::Down, "{health:?}");
    // The cluster client reports only that it has no connection to the nodes; the reason is in
    // its own log (the `log` crate, target `redis::cluster_handling`), at WARN.
    assert!(
        health
            .error
            .as_deref()
            .is_some_and(|e| e.contains("ClusterConnectionNotFound")),
        "{health:?}"
    );
    assert!(
        log.lines_with("Failed to connect to node: 127.0.0.1:")
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("not valid for name \"127.0.0.1\"")),
        "{}",
        log.text()
    );

    // The nodes announce the name their certificates carry: the cache works.
    config_set(&cluster, "cluster-announce-hostname", "localhost");
    config_set(&cluster, "cluster-preferred-endpoint-type", "hostname");
    // Each node learns the others' hostnames by gossip: wait until every node's slot map names
    // every master `localhost`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !every_node_announces(&cluster, "localhost") {
        assert!(
            Instant::now() < deadline,
            "the nodes never announced their hostnames"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = unique_namespace("ctls");
    let named = builder(&ns)
        .redis_cluster(urls)
        .redis_tls_ca_pem(ca)
        .build()
        .unwrap();
    core_behaviours(&named, &cluster, &ns).await;
}

#[tokio::test]
async fn an_acl_user_without_info_dbsize_or_ping_still_runs_every_operation_on_the_cluster() {
    let log = LogCapture::start();
    let cluster = RedisCluster::start_with_password(ADMIN_PASSWORD);
    let ns = unique_namespace("cacl");
    let rules = RedisClusterBackend::acl_rules(&ns)
        .replace(" +ping", "")
        .replace(" +info", "")
        .replace(" +dbsize", "");
    create_user(&cluster, "app", &rules);
    let cache = builder(&ns)
        .redis_cluster(urls_for(&cluster, "app", APP_PASSWORD))
        .build()
        .unwrap();
    every_operation_but_server_figures(&cache).await;
    assert_eq!(cache.stats().total.errors, 0, "{:?}", cache.stats());
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Up, "{health:?}");
    let info = cache.backend_info().await.unwrap();
    assert_eq!(
        (
            info.backend.as_str(),
            info.total_keys,
            info.version.as_str()
        ),
        ("redis-cluster", 0, "")
    );
    let limited = log.lines_with("cache_redis_acl_limited");
    for command in ["INFO", "DBSIZE", "PING"] {
        assert_eq!(
            limited
                .iter()
                .filter(|l| l.contains(&format!("command={command}")))
                .count(),
            1,
            "{command} logged once: {limited:?}"
        );
    }
    let refused = acl_log(&cluster);
    assert!(
        refused
            .iter()
            .all(|r| ["info", "ping", "dbsize"].iter().any(|c| r.contains(c))),
        "only the three left-out commands were refused: {refused:?}"
    );

    // The safe assumption about eviction: hits are verified, which creates the namespace's
    // generation counter at the first fill; a user that may read INFO on a cluster that does
    // not evict creates none.
    let generation = |ns: &str| {
        keys_by_master(&cluster, ns)
            .values()
            .flatten()
            .any(|k| k.ends_with(":g:v"))
    };
    let limited_ns = unique_namespace("cacl");
    create_user(
        &cluster,
        "limited",
        &RedisClusterBackend::acl_rules(&limited_ns).replace(" +info", ""),
    );
    let limited = builder(&limited_ns)
        .redis_cluster(urls_for(&cluster, "limited", APP_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&limited).await, 1);
    assert!(
        generation(&limited_ns),
        "{:?}",
        keys_by_master(&cluster, &limited_ns)
    );
    let full_ns = unique_namespace("cacl");
    create_user(&cluster, "full", &RedisClusterBackend::acl_rules(&full_ns));
    let full = builder(&full_ns)
        .redis_cluster(urls_for(&cluster, "full", APP_PASSWORD))
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&full).await, 1);
    assert!(
        !generation(&full_ns),
        "{:?}",
        keys_by_master(&cluster, &full_ns)
    );
}
