//! Test support for the workspace.
//!
//! Integration tests, fault tests and benches of every crate use this
//! library to talk to a **real** Redis. The real-Redis helpers (servers, clusters,
//! certificates, faults, the proxy) are the publishable crate
//! [`cache-testing`](cache_testing), re-exported here under the same names; the HTTP client,
//! [`LogCapture`] and [`init_tracing`] are this workspace's own.
//!
//! * [`RedisServer`] starts a throw-away `redis-server` process on a free
//!   loopback port (no persistence, own temporary directory) and stops it
//!   when dropped. Starting one takes a few milliseconds, so every test
//!   starts its own server: tests never share keys and need no cleanup.
//! * [`RedisServer::start_owned`] always spawns a process and supports fault
//!   injection: [`kill`](RedisServer::kill), [`pause`](RedisServer::pause),
//!   [`resume`](RedisServer::resume) and [`restart`](RedisServer::restart).
//!   Fault tests must use it.
//! * [`RedisServer::start`] honours `REDIS_URL`: when it is set, tests run
//!   against that existing server instead of spawning one. Use
//!   [`unique_namespace`] for key prefixes so concurrent tests do not collide
//!   on a shared server.
//! * Faults through Redis' own commands ([`faults`]): a blocked server
//!   ([`RedisServer::debug_sleep`]), paused clients ([`RedisServer::client_pause`]),
//!   a full server ([`RedisServer::fill_to_maxmemory`], undone by
//!   [`RedisServer::reset_memory`]) and dropped connections
//!   ([`RedisServer::kill_clients`]).
//! * [`RedisCluster`] starts a throw-away local Redis Cluster (3 masters, 3 replicas, created
//!   with `redis-cli --cluster create`) and injects faults on its nodes: a killed master and
//!   its failover ([`RedisCluster::kill_master`], [`RedisCluster::wait_failover`]), a restarted
//!   node rejoining ([`RedisCluster::restart_node`]), a frozen node
//!   ([`RedisCluster::pause_node`]). [`key_slot`] and [`RedisCluster::node_for_key`] tell
//!   which slot and master a key lands on. [`RedisCluster::start`] honours
//!   `REDIS_CLUSTER_URLS`.
//! * Deployment flavors: [`RedisServer::start_tls`] (TLS only, certificates generated for the
//!   test by a test CA, [`TestCerts`]), [`RedisServer::start_mutual_tls`] (client certificate
//!   required) and [`RedisServer::start_with_password`] (`requirepass`; ACL users with
//!   [`RedisServer::acl_setuser`]); the same for a cluster: [`RedisCluster::start_tls`] (TLS on
//!   every port and on the cluster bus), [`RedisCluster::start_mutual_tls`],
//!   [`RedisCluster::start_tls_naming`] (certificates that do not name the nodes' IP
//!   addresses), [`RedisCluster::start_with_password`] (`requirepass` + `masterauth`) and
//!   [`RedisCluster::acl_setuser`] (on every node).
//! * [`http::HttpClient`]: a minimal keep-alive HTTP/1.1 client for load and
//!   fault tests over loopback (the throughput benches and the chaos suite).
//! * [`LogCapture`] records what the library logs on the current thread (messages, secrets).
//! * [`init_tracing`] installs a `tracing` subscriber that writes through the
//!   test harness, filtered by `RUST_LOG`.
//!
//! # Environment
//!
//! | Variable             | Effect                                                                |
//! |----------------------|-----------------------------------------------------------------------|
//! | `REDIS_URL`          | [`RedisServer::start`] uses this server instead of spawning           |
//! | `REDIS_CLUSTER_URLS` | [`RedisCluster::start`] uses this cluster (comma-separated seed URLs) |
//! | `REDIS_SERVER_BIN`   | path of the `redis-server` binary to spawn                            |
//! | `REDIS_CLI_BIN`      | path of `redis-cli` (creates the clusters of [`RedisCluster`])        |
//! | `RUST_LOG`           | filter for [`init_tracing`] (default `warn`)                          |
//!
//! Without `REDIS_SERVER_BIN` the binary is looked up on `PATH`, then at
//! `/usr/bin/redis-server` and `/usr/local/bin/redis-server`; without
//! `REDIS_CLI_BIN`, `redis-cli` is looked up next to `redis-server`, on `PATH`,
//! then at `/usr/bin/redis-cli` and `/usr/local/bin/redis-cli`. `make test`
//! installs both when missing (see `scripts/ensure-redis.sh`).
//!
//! # Example
//!
//! ```no_run
//! use cache_tests::RedisServer;
//!
//! # async fn demo() -> redis::RedisResult<()> {
//! let server = RedisServer::start();
//! let mut con = server.client().get_multiplexed_async_connection().await?;
//! let pong: String = redis::cmd("PING").query_async(&mut con).await?;
//! assert_eq!(pong, "PONG");
//! # Ok(())
//! # }
//! ```

pub mod http;
mod logs;
mod trace;

// The real-Redis helpers live in the publishable `cache-testing` crate; re-exported here so that
// every `cache_tests::...` path of the suites keeps working.
pub use cache_testing::{cluster, faults, proxy};
pub use cache_testing::{
    find_redis_cli, find_redis_server, key_slot, unique_namespace, CertKey, ClusterNode,
    EvictionPolicy, FillReport, PauseMode, RedisCluster, RedisServer, ServerBlock, TestCerts,
};
pub use logs::LogCapture;
pub use trace::init_tracing;
