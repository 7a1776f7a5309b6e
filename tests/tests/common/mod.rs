//! Shared fixtures for the behaviour suites: every suite runs against a real `redis-server`
//! started for the test, a real Redis Cluster (3 masters, 3 replicas; the one named by
//! `REDIS_CLUSTER_URLS`, which `make test` starts once for the whole run, or one started for the
//! test) and the in-memory backend; the core suites (engine, invalidation, freshness, macros,
//! both HTTP layers) also run over TLS ([`on_tls_backend!`], [`on_tls_backend_actix!`]).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::sync::Arc;

use cache_core::backend::MemoryBackend;
use cache_core::{Cache, CacheBuilder};
use cache_tests::cluster::RedisCluster;
use cache_tests::{unique_namespace, RedisServer};

/// Which backend a suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Cluster,
    Memory,
    /// A `redis-server` speaking TLS only, certificates from a test CA the cache is given.
    Tls,
}

/// A backend for one test: caches built from it share the same storage.
pub struct Ctx {
    pub kind: Kind,
    pub server: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
    memory: Arc<MemoryBackend>,
    pub namespace: String,
}

impl Ctx {
    pub fn new(kind: Kind) -> Ctx {
        cache_tests::init_tracing();
        Ctx {
            kind,
            server: match kind {
                Kind::Redis => Some(RedisServer::start()),
                Kind::Tls => Some(RedisServer::start_tls()),
                Kind::Memory | Kind::Cluster => None,
            },
            cluster: (kind == Kind::Cluster).then(RedisCluster::start),
            memory: Arc::new(MemoryBackend::new(64 * 1024 * 1024)),
            namespace: unique_namespace("t"),
        }
    }

    /// A builder pointed at this test's storage and namespace.
    pub fn builder(&self) -> CacheBuilder {
        let b = Cache::builder().namespace(self.namespace.clone());
        match (&self.server, &self.cluster) {
            (Some(server), _) => {
                let b = b
                    .redis_url(server.url())
                    .command_timeout(std::time::Duration::from_millis(500));
                match server.tls_certs() {
                    Some(certs) => b.redis_tls_ca_pem(certs.ca.cert_pem.clone()),
                    None => b,
                }
            }
            // A cluster connection is made to every node on first use, and a debug build of
            // the cluster client routes each command through one task: under a loaded test
            // machine, 1,000 calls on a fresh connection take longer than 500 ms.
            (_, Some(cluster)) => b
                .redis_cluster(cluster.urls())
                .command_timeout(std::time::Duration::from_secs(2))
                .invalidation_timeout(std::time::Duration::from_secs(2)),
            (None, None) => b.backend(self.memory.clone()),
        }
    }

    /// This test's storage as a bare backend (for wrapping, e.g. to count calls).
    pub fn raw_backend(&self) -> Arc<dyn cache_core::backend::Backend> {
        match (&self.server, &self.cluster) {
            (Some(server), _) => {
                let mut options = cache_core::backend::RedisOptions::default();
                options.tls.ca_pem = server
                    .tls_certs()
                    .map(|certs| certs.ca.cert_pem.clone().into_bytes());
                Arc::new(
                    cache_core::backend::RedisBackend::new(&server.url(), &options)
                        .expect("valid url"),
                )
            }
            (_, Some(cluster)) => Arc::new(
                cache_core::backend::RedisClusterBackend::new(
                    &cluster.urls(),
                    &Default::default(),
                    cache_core::backend::DEFAULT_BUCKETS,
                )
                .expect("valid urls"),
            ),
            (None, None) => self.memory.clone(),
        }
    }

    /// A cache with the default settings on this test's storage.
    pub fn cache(&self) -> Cache {
        self.builder().build().expect("valid test configuration")
    }

    /// A cache with an in-process tier (L1) on this test's storage, once its L1 is subscribed
    /// (serves hits).
    pub async fn l1_cache(&self) -> Cache {
        let cache = self
            .builder()
            .l1(16 * 1024 * 1024)
            .build()
            .expect("valid test configuration");
        until_l1_live(&cache).await;
        cache
    }
}

/// Waits (polling, with a generous deadline) until the cache's L1 is subscribed.
pub async fn until_l1_live(cache: &Cache) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !cache.l1_status().expect("L1 configured").live {
        assert!(std::time::Instant::now() < deadline, "L1 never subscribed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Declares `mod redis` and `mod memory`, each running every listed `async fn(Ctx)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Redis)).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Cluster)).await
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Memory)).await
                }
            )*
        }
    };
}

/// Declares `mod tls`, running every listed `async fn(Ctx)` on a TLS `redis-server` (the cache
/// trusts the test CA). Used next to [`on_both_backends!`] with the same list by the core suites.
#[macro_export]
macro_rules! on_tls_backend {
    ($($test:ident),* $(,)?) => {
        mod tls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Tls)).await
                }
            )*
        }
    };
}

/// Like [`on_both_backends!`], on actix's runtime (`#[actix_web::test]`: a current-thread tokio
/// runtime in a `LocalSet`), for suites whose services are not `Send`.
#[macro_export]
macro_rules! on_both_backends_actix {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(
                #[actix_web::test]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Redis)).await
                }
            )*
        }
        mod cluster {
            $(
                #[actix_web::test]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Cluster)).await
                }
            )*
        }
        mod memory {
            $(
                #[actix_web::test]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Memory)).await
                }
            )*
        }
    };
}

/// [`on_tls_backend!`] on actix's runtime.
#[macro_export]
macro_rules! on_tls_backend_actix {
    ($($test:ident),* $(,)?) => {
        mod tls {
            $(
                #[actix_web::test]
                async fn $test() {
                    super::$test($crate::common::Ctx::new($crate::common::Kind::Tls)).await
                }
            )*
        }
    };
}
