//! Real `redis-server` processes for your integration tests.
//!
//! Test a service that caches in Redis against a **real** Redis, not a mock: [`RedisServer`]
//! starts a throw-away `redis-server` on a free loopback port in a few milliseconds, and stops it
//! when the handle is dropped. Every test can have its own server, so tests never share keys and
//! need no cleanup. [`RedisCluster`] does the same for a local Redis Cluster.
//!
//! ```toml
//! [dev-dependencies]
//! cache-testing = "0.1"
//! ```
//!
//! # Quick start: an Axum app against a real Redis
//!
//! A test that starts a server, runs an Axum app whose handler is cached with
//! [`cache-core`](https://docs.rs/cache-core)'s `#[cached]` on that server, sends the same
//! request twice and sees the second one served from Redis (the same test is
//! `tests/axum_app.rs` in this crate's repository):
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! use axum::body::{to_bytes, Body};
//! use axum::extract::{Path, State};
//! use axum::http::Request;
//! use axum::{routing::get, Json, Router};
//! use cache_axum::CacheContextLayer;
//! use cache_core::{cached, Cache};
//! use cache_testing::{unique_namespace, RedisServer};
//! use tower::ServiceExt; // `oneshot`
//!
//! static CALLS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[cached(resource = "greeting", ttl = "1m", cache = &cache)]
//! async fn greeting(State(cache): State<Cache>, Path(name): Path<String>) -> Json<String> {
//!     CALLS.fetch_add(1, Ordering::SeqCst);
//!     Json(format!("hello {name}"))
//! }
//!
//! # async fn the_test() {
//! // In your test: `#[tokio::test] async fn second_request_is_a_hit() { ... }`.
//! let server = RedisServer::start(); // a new redis-server, or the one of REDIS_URL
//! let cache = Cache::builder()
//!     .redis_url(server.url())
//!     .namespace(unique_namespace("myapp")) // no collisions on a shared REDIS_URL server
//!     .build()
//!     .unwrap();
//! let app = Router::new()
//!     .route("/greetings/{name}", get(greeting))
//!     .with_state(cache)
//!     .layer(CacheContextLayer::builder().build());
//!
//! let mut bodies = Vec::new();
//! for expected in ["MISS", "HIT"] {
//!     let request = Request::get("/greetings/ann").body(Body::empty()).unwrap();
//!     let response = app.clone().oneshot(request).await.unwrap();
//!     assert_eq!(response.headers()["x-cache-status"], expected);
//!     bodies.push(to_bytes(response.into_body(), usize::MAX).await.unwrap());
//! }
//! assert_eq!(bodies[0], "\"hello ann\""); // what the handler returns
//! assert_eq!(bodies[1], bodies[0]); // the hit: the same body, from Redis
//! assert_eq!(CALLS.load(Ordering::SeqCst), 1);
//! assert!(server.dbsize().await > 0, "the entry is in this server");
//! // `server` is dropped here: the redis-server process is killed, its directory removed.
//! # }
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_all()
//! #     .build()
//! #     .unwrap()
//! #     .block_on(the_test());
//! ```
//!
//! # What it starts
//!
//! * [`RedisServer::start`]: a server for one test. When `REDIS_URL` is set it returns a
//!   handle on that existing server instead (nothing spawned, nothing flushed): give each test
//!   its own key prefix with [`unique_namespace`].
//! * [`RedisServer::start_owned`]: always a new process, ignoring `REDIS_URL`, with process
//!   faults: [`kill`](RedisServer::kill) (a crash), [`pause`](RedisServer::pause) /
//!   [`resume`](RedisServer::resume) (a hung server, `SIGSTOP` / `SIGCONT`) and
//!   [`restart`](RedisServer::restart) (same port, empty). Fault tests must use it.
//! * Faults through Redis' own commands ([`faults`]): a blocked server
//!   ([`RedisServer::debug_sleep`]), paused clients ([`RedisServer::client_pause`]), a full
//!   server ([`RedisServer::fill_to_maxmemory`], undone by [`RedisServer::reset_memory`]) and
//!   dropped connections ([`RedisServer::kill_clients`]); a network partition between one
//!   client and the server ([`proxy::Proxy`]).
//! * Deployment flavors: [`RedisServer::start_tls`] (TLS only, certificates generated for the
//!   test by a test CA, [`TestCerts`]), [`RedisServer::start_mutual_tls`] (client certificate
//!   required) and [`RedisServer::start_with_password`] (`requirepass`; ACL users with
//!   [`RedisServer::acl_setuser`]). [`RedisServer::client`] returns a [`redis::Client`] that
//!   reaches any of them (trusting the test CA).
//! * [`RedisCluster`]: a throw-away local Redis Cluster (3 masters, 3 replicas, created with
//!   `redis-cli --cluster create`), with faults on its nodes: a killed master and its failover
//!   ([`RedisCluster::kill_master`], [`RedisCluster::wait_failover`]), a restarted node
//!   rejoining ([`RedisCluster::restart_node`]), a frozen node ([`RedisCluster::pause_node`]).
//!   [`key_slot`] and [`RedisCluster::node_for_key`] tell which slot and master a key lands on.
//!   The same flavors: [`RedisCluster::start_tls`], [`RedisCluster::start_mutual_tls`],
//!   [`RedisCluster::start_tls_naming`], [`RedisCluster::start_with_password`].
//!   [`RedisCluster::start`] honours `REDIS_CLUSTER_URLS`.
//!
//! **Stopped on drop.** An owned server runs on `127.0.0.1` with no persistence
//! (`--save "" --appendonly no`) in its own temporary directory, which also holds its log
//! ([`RedisServer::log_path`]; a server that fails to start panics with the tail of it).
//! Dropping the [`RedisServer`] or [`RedisCluster`] kills its processes (`SIGKILL`) and removes
//! the directory, also when the test panics. A test process killed with `SIGKILL` cannot run
//! destructors: its servers are left running.
//!
//! The handles are synchronous (they block while a server starts, at most 10 s); they work from
//! any test, async or not. In an async test prefer a multi-threaded runtime for the long cluster
//! waits (failover), under `tokio::task::block_in_place`.
//!
//! # Installing `redis-server`
//!
//! The processes are real `redis-server` binaries (tested with Redis 7.0), so the machine running
//! the tests needs one:
//!
//! * Debian / Ubuntu: `apt-get install redis-server` (and `redis-tools`, for `redis-cli`, which
//!   [`RedisCluster`] uses to create its cluster);
//! * macOS: `brew install redis`;
//! * anywhere else: build Redis and point `REDIS_SERVER_BIN` at the binary.
//!
//! # Environment
//!
//! | Variable             | Effect                                                                |
//! |----------------------|-----------------------------------------------------------------------|
//! | `REDIS_SERVER_BIN`   | path of the `redis-server` binary to spawn                            |
//! | `REDIS_CLI_BIN`      | path of `redis-cli` (creates the clusters of [`RedisCluster`])        |
//! | `REDIS_URL`          | [`RedisServer::start`] uses this server instead of spawning           |
//! | `REDIS_CLUSTER_URLS` | [`RedisCluster::start`] uses this cluster (comma-separated seed URLs) |
//!
//! Without `REDIS_SERVER_BIN` the binary is looked up on `PATH`, then at
//! `/usr/bin/redis-server` and `/usr/local/bin/redis-server` ([`find_redis_server`]); without
//! `REDIS_CLI_BIN`, `redis-cli` is looked up next to `redis-server`, on `PATH`, then at
//! `/usr/bin/redis-cli` and `/usr/local/bin/redis-cli` ([`find_redis_cli`]). When none is found,
//! starting a server panics with a message saying how to install one.
//!
//! The [`redis`] crate of the handles' clients is re-exported: `cache_testing::redis`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod certs;
pub mod cluster;
pub mod faults;
pub mod proxy;
mod server;

pub use certs::{CertKey, TestCerts};
pub use cluster::{find_redis_cli, key_slot, ClusterNode, RedisCluster};
pub use faults::{EvictionPolicy, FillReport, PauseMode, ServerBlock};
pub use redis;
pub use server::{find_redis_server, RedisServer};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns a key namespace unique to this call, `"{prefix}-{pid}-{nanos}-{n}"`.
///
/// Use it as the cache namespace (or key prefix) of a test so that tests running
/// concurrently against one shared server (`REDIS_URL`) never see each
/// other's keys. It contains no glob characters (`*`, `?`, `[`, `]`).
pub fn unique_namespace(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}
