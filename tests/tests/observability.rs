#![allow(missing_docs)]
//! Secrets and events, with a capturing `tracing` subscriber (one test in this binary: it
//! installs the global subscriber).
//!
//! * No password from the Redis URL or the builder (`redis_password`, `REDIS_PASSWORD`), and no
//!   TLS client key nor its path (`redis_tls_client_cert_*`, `REDIS_TLS_KEY_FILE`), appears in
//!   any log line, error, `Debug` output, health report, stats or admin reply, whether the
//!   password is right, wrong, or the URL malformed, and whether TLS connects or not.
//! * Every `tracing` event the README names is emitted, under that name.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::durable::{Outbox, OutboxEntry};
use cache_core::error::BoxError;
use cache_core::{admin, Cache, CacheBuilder, Policy};
use cache_tests::{unique_namespace, RedisServer};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const GOOD: &str = "s3cretPassw0rd";
const WRONG: &str = "Wr0ngPassw0rd";
const MINUTE: Duration = Duration::from_secs(60);

/// Everything the fmt layer prints, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The names of the events emitted (`tracing`'s `name:`).
#[derive(Clone, Default)]
struct Names(Arc<Mutex<BTreeSet<String>>>);

impl<S: Subscriber> Layer<S> for Names {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        self.0
            .lock()
            .unwrap()
            .insert(event.metadata().name().to_owned());
    }
}

/// An outbox in memory.
#[derive(Debug, Default)]
struct MemOutbox(Mutex<Vec<OutboxEntry>>);

#[async_trait::async_trait]
impl Outbox for MemOutbox {
    async fn undelivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, BoxError> {
        Ok(self.0.lock().unwrap().iter().take(limit).cloned().collect())
    }
    async fn delivered(&self, ids: &[u64]) -> Result<(), BoxError> {
        self.0.lock().unwrap().retain(|e| !ids.contains(&e.id));
        Ok(())
    }
}

async fn acl(server: &RedisServer, args: &[&str]) {
    let mut con = server.connection().await;
    redis::cmd("ACL")
        .arg(args)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}

fn url_with(server: &RedisServer, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_and_every_readme_event_is_emitted() {
    let log = Captured::default();
    let names = Names::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::registry().with(names.clone()).with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut server = RedisServer::start_owned();
    // An ACL user with every right, and one that may read but not write.
    acl(
        &server,
        &[
            "SETUSER",
            "app",
            "on",
            &format!(">{GOOD}"),
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    acl(
        &server,
        &[
            "SETUSER",
            "reader",
            "on",
            &format!(">{GOOD}"),
            "~*",
            "+@read",
            "+@connection",
            "+info",
            "+evalsha",
            "+eval",
            "+script",
        ],
    )
    .await;
    let mut outputs: Vec<String> = Vec::new();
    // Passwords; the client key's path and contents are added below.
    let mut secrets: Vec<String> = vec![GOOD.to_owned(), WRONG.to_owned()];

    // The right password: misses, hits, a bypass, an invalidation, a value too large.
    let cache = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(url_with(&server, "app", GOOD))
        .max_entry_size(1024)
        .build()
        .unwrap();
    outputs.push(format!("{cache:?}"));
    let key = cache.key("trig").id(1).build();
    let policy = Policy::ttl(MINUTE).tag("trig:1");
    let v: String = cache
        .get_or_load(&key, policy.clone(), || async { "v1".to_owned() })
        .await;
    assert_eq!(v, "v1");
    let v: String = cache
        .get_or_load(&key, policy.clone(), || async { "v2".to_owned() })
        .await;
    assert_eq!(v, "v1", "a hit");
    let f = cache
        .fetch(&key, policy.clone().bypass(true), || async {
            Ok::<_, ()>("v3".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(f.value, "v3");
    cache.invalidate_tags(&["trig:1"]).await.unwrap();
    let big = cache.key("trig").id(2).build();
    let v: String = cache
        .get_or_load(&big, MINUTE, || async { "x".repeat(4096) })
        .await;
    assert_eq!(v.len(), 4096, "too large: returned, not stored");
    outputs.push(serde_json::to_string(&cache.stats()).unwrap());
    outputs.push(format!("{:?}", cache.health().await));
    for reply in [
        admin::stats(&cache).await,
        admin::health(&cache).await,
        admin::invalidate(&cache, vec!["trig:1".into()]).await,
    ] {
        outputs.push(reply.body.to_string());
    }

    // A user that may not write: the stores fail (`cache_store_error`).
    let reader = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(url_with(&server, "reader", GOOD))
        .build()
        .unwrap();
    let rkey = reader.key("trig").id(3).build();
    let v: String = reader
        .get_or_load(&rkey, MINUTE, || async { "loaded".to_owned() })
        .await;
    assert_eq!(v, "loaded");

    // The wrong password: every call falls through, the errors are reported.
    let wrong = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(url_with(&server, "app", WRONG))
        .breaker_threshold(2)
        .build()
        .unwrap();
    for _ in 0..3 {
        let v: String = wrong
            .get_or_load(&key, MINUTE, || async { "origin".to_owned() })
            .await;
        assert_eq!(v, "origin");
    }
    let health = wrong.health().await;
    assert!(health.error.is_some(), "{health:?}");
    outputs.push(format!("{health:?}"));
    outputs.push(format!("{wrong:?}"));
    if let Err(e) = wrong.invalidate_tags(&["trig:1"]).await {
        outputs.push(e.to_string());
    }
    for reply in [admin::stats(&wrong).await, admin::health(&wrong).await] {
        outputs.push(reply.body.to_string());
    }

    // Credentials from the builder (right, then wrong), never printed.
    let by_builder = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(format!("redis://127.0.0.1:{}", server.port()))
        .redis_username("app")
        .redis_password(GOOD)
        .build()
        .unwrap();
    let v: String = by_builder
        .get_or_load(&key, MINUTE, || async { "b".to_owned() })
        .await;
    assert_eq!(v, "b");
    let wrong_builder = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(url_with(&server, "app", GOOD))
        .redis_password(WRONG);
    outputs.push(format!("{wrong_builder:?}"));
    let wrong_builder = wrong_builder.breaker_threshold(2).build().unwrap();
    for cache in [&by_builder, &wrong_builder] {
        let _: String = cache
            .get_or_load(&key, MINUTE, || async { "origin".to_owned() })
            .await;
        outputs.push(format!("{cache:?}"));
        outputs.push(format!("{:?}", cache.health().await));
        outputs.push(serde_json::to_string(&cache.stats()).unwrap());
        for reply in [admin::stats(cache).await, admin::health(cache).await] {
            outputs.push(reply.body.to_string());
        }
    }
    let e = wrong_builder.set(&key, &1u32, MINUTE).await.unwrap_err();
    assert!(e.is_auth() || e.is_circuit_open(), "{e:?}");
    outputs.push(format!("{e} {e:?}"));

    // Mutual TLS with key files, from the builder and the environment, once trusted and once
    // without the server's CA: neither the key nor its path is ever printed.
    let tls_server = RedisServer::start_mutual_tls();
    let certs = tls_server.tls_certs().unwrap().clone();
    let key_path = certs.client.key_file.display().to_string();
    let key_body: String = certs.client.key_pem.lines().nth(1).unwrap().to_owned();
    secrets.push(key_path.clone());
    secrets.push(key_body);
    let env = [
        ("REDIS_URL", tls_server.url()),
        ("CACHE_NAMESPACE", unique_namespace("obs")),
        (
            "REDIS_TLS_CA_FILE",
            certs.ca.cert_file.display().to_string(),
        ),
        (
            "REDIS_TLS_CERT_FILE",
            certs.client.cert_file.display().to_string(),
        ),
        ("REDIS_TLS_KEY_FILE", key_path.clone()),
        ("REDIS_PASSWORD", GOOD.to_owned()),
    ];
    let from_env = CacheBuilder::from_env_with(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    outputs.push(format!("{from_env:?}"));
    let untrusted = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(tls_server.url())
        .redis_tls_client_cert_files(&certs.client.cert_file, &certs.client.key_file)
        .breaker_threshold(2);
    outputs.push(format!("{untrusted:?}"));
    let trusted = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(tls_server.url())
        .redis_tls_ca_pem(certs.ca.cert_pem.clone())
        .redis_tls_client_cert_pem(certs.client.cert_pem.clone(), certs.client.key_pem.clone());
    outputs.push(format!("{trusted:?}"));
    // A key file that is not a key: the error names the variable, not the path.
    let bad_key = CacheBuilder::from_env_with(|name| match name {
        "REDIS_TLS_KEY_FILE" => Some(certs.client.cert_file.display().to_string()),
        _ => env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()),
    })
    .unwrap()
    .build()
    .unwrap_err();
    outputs.push(format!("{bad_key} {bad_key:?}"));
    for cache in [
        untrusted.build().unwrap(),
        trusted.build().unwrap(),
        from_env.build().unwrap(),
    ] {
        let _: String = cache
            .get_or_load(&key, MINUTE, || async { "origin".to_owned() })
            .await;
        outputs.push(format!("{cache:?}"));
        outputs.push(format!("{:?}", cache.health().await));
        outputs.push(serde_json::to_string(&cache.stats()).unwrap());
        for reply in [admin::stats(&cache).await, admin::health(&cache).await] {
            outputs.push(reply.body.to_string());
        }
        if let Err(e) = cache.set(&key, &1u32, MINUTE).await {
            outputs.push(format!("{e} {e:?}"));
        }
    }
    // Verification off, by name (`cache_redis_tls_insecure`).
    let insecure = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(tls_server.url())
        .redis_tls_client_cert_pem(certs.client.cert_pem.clone(), certs.client.key_pem.clone())
        .redis_tls_insecure_skip_verify()
        .build()
        .unwrap();
    outputs.push(format!("{insecure:?}"));
    drop(tls_server);

    // An ACL user that may not run PING (`cache_redis_acl_limited`).
    let ns = unique_namespace("obs");
    let rules = cache_core::backend::RedisBackend::acl_rules(&ns).replace(" +ping", "");
    let mut args = vec!["SETUSER", "limited", "on"];
    let password = format!(">{GOOD}");
    args.push(&password);
    args.extend(rules.split(' '));
    acl(&server, &args).await;
    let limited = Cache::builder()
        .namespace(ns)
        .redis_url(url_with(&server, "limited", GOOD))
        .build()
        .unwrap();
    assert_eq!(
        limited.health().await.status,
        cache_core::HealthStatus::Up,
        "a refused PING is an answer"
    );

    // Malformed URLs in the environment and the builder.
    for url in [
        format!("redis://app:{GOOD}@127.0.0.1:notaport"),
        format!("http://app:{GOOD}@127.0.0.1:6379"),
    ] {
        let env = [("REDIS_URL", url.clone())];
        let err = CacheBuilder::from_env_with(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .unwrap_err();
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
        if let Err(e) = Cache::builder().redis_url(url).build() {
            outputs.push(e.to_string());
        }
    }

    // An outbox with one record: delivered at start (`cache_outbox_delivered`).
    let outbox = Arc::new(MemOutbox::default());
    outbox
        .0
        .lock()
        .unwrap()
        .push(OutboxEntry::new(1, ["trig:1"]));
    let with_outbox = Cache::builder()
        .namespace(unique_namespace("obs"))
        .redis_url(url_with(&server, "app", GOOD))
        .outbox(outbox.clone())
        .build()
        .unwrap();
    for _ in 0..500 {
        if outbox.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        outbox.0.lock().unwrap().is_empty(),
        "the record is delivered"
    );
    drop(with_outbox);

    // Redis gone: the connection failure and the reconnection are logged; a write's
    // invalidation is queued (`cache_invalidation_queued`), then replayed
    // (`cache_invalidations_replayed`).
    server.kill();
    for _ in 0..6 {
        let _: String = cache
            .get_or_load(&key, MINUTE, || async { "origin".to_owned() })
            .await;
    }
    assert!(cache
        .invalidate_tags(&["trig:1"])
        .await
        .unwrap_err()
        .is_queued());
    server.restart();
    acl(
        &server,
        &[
            "SETUSER",
            "app",
            "on",
            &format!(">{GOOD}"),
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    for _ in 0..500 {
        let f = cache
            .fetch(&key, MINUTE, || async { Ok::<_, ()>("origin".to_owned()) })
            .await
            .unwrap();
        if f.status == cache_core::CacheStatus::Hit && cache.pending_invalidations() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache.pending_invalidations(), 0, "replayed");

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(!text.is_empty());
    outputs.push(text);
    for out in &outputs {
        for secret in &secrets {
            assert!(
                !out.contains(secret.as_str()),
                "a secret leaked into: {out}"
            );
        }
    }

    // The events the README names.
    let seen = names.0.lock().unwrap().clone();
    for name in [
        "cache_hit",
        "cache_miss_stored",
        "cache_bypass",
        "cache_skip",
        "cache_store_error",
        "cache_invalidated",
        "cache_redis_connected",
        "cache_redis_connection_failed",
        "cache_invalidation_queued",
        "cache_invalidations_replayed",
        "cache_outbox_delivered",
        "cache_redis_acl_limited",
        "cache_redis_tls_insecure",
    ] {
        assert!(
            seen.contains(name),
            "event {name} not emitted; seen: {seen:?}"
        );
    }
}
