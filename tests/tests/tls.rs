#![allow(missing_docs)]
//! TLS (rustls) on real `redis-server`s that speak TLS only, with certificates generated for
//! each test (`RedisServer::start_tls`, `start_mutual_tls`):
//!
//! * without the server's CA, or with another CA, the connection fails with a clear, logged
//!   error (`CacheError::Tls`, naming the fix), `health()` reports it, and every call is still
//!   answered by its loader (fail-open);
//! * with the CA, the cache works over TLS (the behaviour suites also run over TLS: the `tls`
//!   modules of engine.rs, invalidation.rs, freshness.rs, macros.rs, axum_layer.rs and
//!   actix_layer.rs);
//! * mutual TLS works with the client certificate and fails clearly without one or with one
//!   the server does not trust;
//! * the `REDIS_TLS_*` variables configure the same, and a bad file is a `ConfigError` naming
//!   its variable (never the key's path or contents);
//! * verification is turned off only by `redis_tls_insecure_skip_verify()` /
//!   `REDIS_TLS_INSECURE`, never by a `#insecure` URL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::error::ConfigError;
use cache_core::{Cache, CacheBuilder, CacheError, HealthStatus, Policy};
use cache_tests::{unique_namespace, LogCapture, RedisServer, TestCerts};

const MINUTE: Duration = Duration::from_secs(60);

fn builder(server: &RedisServer) -> CacheBuilder {
    Cache::builder()
        .namespace(unique_namespace("tls"))
        .redis_url(server.url())
        .command_timeout(Duration::from_millis(500))
        .breaker_threshold(2)
}

fn certs(server: &RedisServer) -> TestCerts {
    server.tls_certs().expect("a TLS server").clone()
}

/// Two reads of one key: returns how many times the loader ran, after checking that both
/// reads answered the loader's value.
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

/// A cache that cannot connect: each read is answered by the loader (nothing is cached), an
/// explicit write reports `expect` (a TLS error whose message contains `hint`), health is down
/// with the same error, and the first failure was logged at ERROR with the clear message.
async fn assert_fails_open_with(cache: &Cache, log: &LogCapture, hint: &str) {
    assert_eq!(
        loads_of_two_reads(cache).await,
        2,
        "no TLS connection: every read runs its loader"
    );
    let err = cache
        .set(&cache.key("item").id(2).build(), &1u32, MINUTE)
        .await
        .unwrap_err();
    let err = match err {
        // Past the breaker threshold the call is skipped; the health ping still tries.
        CacheError::CircuitOpen => None,
        other => Some(other),
    };
    if let Some(err) = &err {
        assert!(err.is_tls(), "{err:?}");
        assert_eq!(err.kind(), "tls");
        assert!(err.to_string().contains(hint), "{err}");
    }
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Down, "{health:?}");
    let error = health.error.expect("health names the error");
    assert!(
        error.starts_with("TLS connection to Redis failed"),
        "{error}"
    );
    assert!(error.contains(hint), "{error}");
    let logged = log.lines_with("cache_redis_connection_failed");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("ERROR") && l.contains(hint)),
        "the TLS failure is logged at ERROR with its fix: {logged:?}\n{}",
        log.text()
    );
}

#[tokio::test]
async fn a_client_without_the_ca_fails_with_a_clear_logged_error_and_the_cache_still_answers() {
    let log = LogCapture::start();
    let server = RedisServer::start_tls();
    // The bundled Mozilla roots do not hold the test CA.
    let cache = builder(&server).build().unwrap();
    assert_fails_open_with(&cache, &log, "not signed by a CA this client trusts").await;
    let err = cache.health().await.error.unwrap();
    assert!(
        err.contains("UnknownIssuer"),
        "the TLS layer's reason: {err}"
    );
    assert!(err.contains("REDIS_TLS_CA_FILE"), "names the fix: {err}");
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_with_a_clear_error_and_the_cache_still_answers() {
    let log = LogCapture::start();
    let server = RedisServer::start_tls();
    let cache = builder(&server)
        .redis_tls_ca_pem(certs(&server).other_ca.cert_pem)
        .build()
        .unwrap();
    assert_fails_open_with(&cache, &log, "not signed by a CA this client trusts").await;
}

#[tokio::test]
async fn with_the_ca_the_cache_hits_over_tls() {
    let server = RedisServer::start_tls();
    let cache = builder(&server)
        .redis_tls_ca_pem(certs(&server).ca.cert_pem)
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
    assert_eq!(cache.invalidate_tags(&["item:1"]).await.unwrap(), 1);
    assert_eq!(
        loads_of_two_reads(&cache).await,
        1,
        "invalidated, then a hit"
    );
    assert_eq!(cache.health().await.status, HealthStatus::Up);
    // The server has no plain port (`--port 0`): all of this went over TLS.
    assert!(server.url().starts_with("rediss://"));
}

#[tokio::test]
async fn the_ca_file_option_reads_a_pem_file() {
    let server = RedisServer::start_tls();
    let cache = builder(&server)
        .redis_tls_ca_file(certs(&server).ca.cert_file)
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1);
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate() {
    let server = RedisServer::start_mutual_tls();
    let c = certs(&server);
    let cache = builder(&server)
        .redis_tls_ca_pem(c.ca.cert_pem)
        .redis_tls_client_cert_pem(c.client.cert_pem, c.client.key_pem)
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
    let files = builder(&server)
        .redis_tls_ca_file(c.ca.cert_file)
        .redis_tls_client_cert_files(c.client.cert_file, c.client.key_file)
        .build()
        .unwrap();
    assert_eq!(loads_of_two_reads(&files).await, 1);
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_fails_clearly_and_the_cache_still_answers() {
    let log = LogCapture::start();
    let server = RedisServer::start_mutual_tls();
    let cache = builder(&server)
        .redis_tls_ca_pem(certs(&server).ca.cert_pem)
        .build()
        .unwrap();
    assert_fails_open_with(&cache, &log, "requires a client certificate").await;
}

#[tokio::test]
async fn mutual_tls_with_a_certificate_of_another_ca_is_refused_clearly() {
    let log = LogCapture::start();
    let server = RedisServer::start_mutual_tls();
    let c = certs(&server);
    let cache = builder(&server)
        .redis_tls_ca_pem(c.ca.cert_pem)
        .redis_tls_client_cert_pem(c.rogue_client.cert_pem, c.rogue_client.key_pem)
        .build()
        .unwrap();
    assert_fails_open_with(&cache, &log, "refused this client's certificate").await;
}

fn from_env(vars: &[(&str, String)]) -> Result<CacheBuilder, ConfigError> {
    CacheBuilder::from_env_with(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

#[tokio::test]
async fn the_tls_variables_configure_mutual_tls() {
    let server = RedisServer::start_mutual_tls();
    let c = certs(&server);
    let path = |p: &std::path::Path| p.display().to_string();
    let cache = from_env(&[
        ("REDIS_URL", server.url()),
        ("CACHE_NAMESPACE", unique_namespace("tls")),
        ("REDIS_TLS_CA_FILE", path(&c.ca.cert_file)),
        ("REDIS_TLS_CERT_FILE", path(&c.client.cert_file)),
        ("REDIS_TLS_KEY_FILE", path(&c.client.key_file)),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
}

#[test]
fn a_bad_tls_file_is_a_config_error_naming_its_variable_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCerts::generate(dir.path());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing_ca = dir.path().join("missing-ca.pem");
    let missing = dir.path().join("missing-secret-key.pem");
    let path = |p: &std::path::Path| p.display().to_string();
    let url = ("REDIS_URL", "rediss://127.0.0.1:6380".to_owned());
    // (variables, the variable the error must name, what it must say)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![url.clone(), ("REDIS_TLS_CA_FILE", path(&missing_ca))],
            "REDIS_TLS_CA_FILE",
            "cannot read",
        ),
        (
            vec![url.clone(), ("REDIS_TLS_CA_FILE", path(&not_pem))],
            "REDIS_TLS_CA_FILE",
            "no PEM certificate",
        ),
        (
            // A key where the CA belongs.
            vec![url.clone(), ("REDIS_TLS_CA_FILE", path(&c.ca.key_file))],
            "REDIS_TLS_CA_FILE",
            "no PEM certificate",
        ),
        (
            vec![
                url.clone(),
                ("REDIS_TLS_CERT_FILE", path(&c.client.cert_file)),
                ("REDIS_TLS_KEY_FILE", path(&missing)),
            ],
            "REDIS_TLS_KEY_FILE",
            "cannot read the file",
        ),
        (
            // A certificate where the key belongs.
            vec![
                url.clone(),
                ("REDIS_TLS_CERT_FILE", path(&c.client.cert_file)),
                ("REDIS_TLS_KEY_FILE", path(&c.client.cert_file)),
            ],
            "REDIS_TLS_KEY_FILE",
            "no PEM private key",
        ),
        (
            vec![
                url.clone(),
                ("REDIS_TLS_CERT_FILE", path(&not_pem)),
                ("REDIS_TLS_KEY_FILE", path(&c.client.key_file)),
            ],
            "REDIS_TLS_CERT_FILE",
            "no PEM certificate",
        ),
        (
            vec![
                url.clone(),
                ("REDIS_TLS_CERT_FILE", path(&c.client.cert_file)),
            ],
            "REDIS_TLS_KEY_FILE",
            "not the file of its private key",
        ),
        (
            vec![url.clone(), ("REDIS_TLS_INSECURE", "sometimes".into())],
            "REDIS_TLS_INSECURE",
            "expected",
        ),
        (
            // TLS files for a plain URL: the URL is at fault.
            vec![
                ("REDIS_URL", "redis://127.0.0.1:6379".into()),
                ("REDIS_TLS_CA_FILE", path(&c.ca.cert_file)),
            ],
            "REDIS_URL",
            "rediss://",
        ),
        (
            // TLS files without a Redis URL: the cache would silently stay in memory.
            vec![("REDIS_TLS_CA_FILE", path(&c.ca.cert_file))],
            "REDIS_URL",
            "REDIS_TLS_",
        ),
    ];
    for (vars, variable, says) in cases {
        let err = from_env(&vars).and_then(CacheBuilder::build).unwrap_err();
        assert_eq!(err.source_name(), variable, "{vars:?}: {err}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(says), "{vars:?}: {text}");
        assert!(!text.contains("missing-secret-key"), "a key's path: {text}");
        assert!(!text.contains(&path(&c.client.key_file)), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "a key's contents: {text}");
    }
}

#[test]
fn bad_tls_builder_options_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let c = TestCerts::generate(dir.path());
    let tls = || Cache::builder().redis_url("rediss://127.0.0.1:6380");
    let err = tls().redis_tls_ca_pem("nope").build().unwrap_err();
    assert_eq!(err.source_name(), "redis_tls_ca_pem", "{err}");
    let err = tls()
        .redis_tls_ca_file(dir.path().join("absent.pem"))
        .build()
        .unwrap_err();
    assert_eq!(err.source_name(), "redis_tls_ca_file", "{err}");
    assert!(err.to_string().contains("absent.pem"), "{err}");
    let err = tls()
        .redis_tls_client_cert_pem(c.client.cert_pem.clone(), "not a key")
        .build()
        .unwrap_err();
    assert_eq!(err.source_name(), "redis_tls_client_cert_pem", "{err}");
    let err = Cache::builder()
        .redis_url("redis://127.0.0.1:6379")
        .redis_tls_ca_pem(c.ca.cert_pem.clone())
        .build()
        .unwrap_err();
    assert_eq!(err.source_name(), "redis_tls_ca_pem", "{err}");
    assert!(err.to_string().contains("rediss://"), "{err}");
    // Good PEMs build.
    tls()
        .redis_tls_ca_pem(c.ca.cert_pem)
        .redis_tls_client_cert_pem(c.client.cert_pem, c.client.key_pem)
        .build()
        .unwrap();
}

#[tokio::test]
async fn verification_is_off_only_when_asked_for_by_name() {
    let server = RedisServer::start_tls();
    // A `#insecure` URL (redis-rs' way) is refused: it is too easy to paste by accident.
    let err = Cache::builder()
        .redis_url(format!("{}/#insecure", server.url()))
        .build()
        .unwrap_err();
    assert_eq!(err.source_name(), "redis_url");
    assert!(
        err.to_string().contains("redis_tls_insecure_skip_verify"),
        "{err}"
    );
    // By name: any certificate is accepted (here one of a CA the client does not know), and a
    // warning is logged.
    let log = LogCapture::start();
    let cache = builder(&server)
        .redis_tls_insecure_skip_verify()
        .build()
        .unwrap();
    assert!(
        !log.lines_with("cache_redis_tls_insecure").is_empty(),
        "{}",
        log.text()
    );
    assert_eq!(loads_of_two_reads(&cache).await, 1, "the second read hits");
    // The same from the environment.
    let env = from_env(&[
        ("REDIS_URL", server.url()),
        ("CACHE_NAMESPACE", unique_namespace("tls")),
        ("REDIS_TLS_INSECURE", "true".into()),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(loads_of_two_reads(&env).await, 1);
}
