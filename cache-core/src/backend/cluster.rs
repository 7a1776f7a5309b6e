//! The Redis Cluster backend: the single-node scripts, run on keys laid out in slot buckets.
//!
//! # Layout
//! Every multi-key step of the engine concerns **one entry** and its bookkeeping: a guarded
//! store reads the versions it depends on (the namespace generation, the entry's key id, its
//! tags) and adds the entry to its tags' indexes; a hit under eviction reads the same versions.
//! So each entry is given a *bucket* (`xxh3(entry key) % buckets`, 32 by default), and the entry
//! and every bookkeeping key it touches are stored under the bucket's hash tag:
//!
//! ```text
//! logical                        physical (bucket 7 of namespace `gallery`)
//! gallery:v1:content_item:5      gallery:{gallery.7}:v1:content_item:5
//! gallery:t:cat:v   (version)    gallery:{gallery.7}:t:cat:v
//! gallery:t:cat:k   (index)      gallery:{gallery.7}:t:cat:k
//! gallery:g:v       (generation) gallery:{gallery.7}:g:v
//! ```
//!
//! Keys keep the namespace as their first segment (an ACL rule `~gallery:*` still covers them),
//! and the first `{...}` of a physical key is always the bucket's (the key builder escapes braces
//! in logical keys). A tag thus has one version and one index per bucket.
//!
//! * A guarded store runs the single-node script in its entry's bucket: one slot, atomic.
//! * Invalidating a tag runs the single-node invalidation script once per bucket (bump the tag's
//!   version there, delete the entries of its index there), concurrently; the call returns when
//!   every bucket has answered. Race-safety holds bucket by bucket: a fill in bucket `b` and the
//!   invalidation's step in `b` are both atomic on `b`'s node, so the fill either lands before
//!   (and is deleted) or sees the bumped version (and is refused). **Cost:** `buckets` script
//!   calls per invalidation, each proportional to the entries of that tag in that bucket; it
//!   never grows with the total keyspace.
//! * A key delete runs in the key's bucket; a generation bump (pattern delete, `clear`) in every
//!   bucket.
//! * Reads of several entries (`MGET`) are split by slot by the cluster client. Pattern deletes
//!   `SCAN` every master. Statistics add up every master.
//!
//! Leases are single keys, placed in their own bucket.
//!
//! # Reads go straight to the slot's node
//! redis-rs's cluster client routes every command through one task of its own (a channel to
//! the task, the node's connection, a channel back): one hop more than a plain connection, which
//! made a cluster hit measurably slower than a one-node hit. So the single-slot reads of a hit
//! (`GET`, and the checked get's `GET` + `MGET` pipeline, one bucket, one slot) are sent on a
//! direct multiplexed connection to the node that serves the slot, learnt from `CLUSTER SLOTS`
//! (with the seeds' TLS settings and credentials). Everything else (stores, scripts, pattern
//! deletes, leases) goes through the cluster client.
//!
//! This cannot serve a wrong value: a node answers only for the slots it serves, and answers
//! `MOVED` / `ASK` for any other (a demoted master too). Any such answer, a connection error,
//! or a read abandoned at the caller's deadline drops the direct routes: the read is sent again
//! through the cluster client (which follows the redirect and refreshes its slot map), and the
//! routes are learnt anew in the background, at most once per 100 ms. Until they are, reads go
//! through the cluster client. The direct connections are named [`DIRECT_CLIENT_NAME`]
//! (`annocache-direct`) in `CLIENT LIST`, when the Redis user may name them (`CLIENT SETNAME`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Script;
use tokio::sync::Notify;

use super::redis::{redact_url, ttl_ms, INVALIDATE, PUT, UNLOCK};
use super::{index_key, version_key, Backend, BackendInfo, Invalidation, Put, VersionRead};
use crate::error::CacheError;

/// The state of the connection attempts.
enum Attempt {
    Idle,
    Running,
    /// When the last attempt failed, and why (kept whole, so that every caller gets the
    /// classified error: [`CacheError::Tls`], [`CacheError::Auth`], ...).
    Failed((Instant, redis::RedisError)),
}

/// Buckets per namespace unless configured otherwise.
pub const DEFAULT_BUCKETS: u16 = 32;

/// Least time between two topology refreshes (see [`RedisClusterBackend::spawn_refresh`]).
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// The bucket of an entry key.
pub(crate) fn bucket_of(anchor: &str, buckets: u16) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(anchor.as_bytes()) % u64::from(buckets.max(1))) as u16
}

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// The hash slot of a (physical) key: CRC16-XMODEM of its hash tag (the first non-empty `{...}`),
/// or of the whole key without one, modulo [`SLOTS`].
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|&c| c == b'}')
            .filter(|&len| len > 0)
            .map(|len| &rest[..len])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS as u16
}

/// Direct connections to the masters, and which one serves each slot (see "Reads go straight
/// to the slot's node" in the module docs).
struct Routes {
    /// The index in `nodes` of each slot's master, or [`NO_NODE`].
    owners: Vec<u16>,
    nodes: Vec<MultiplexedConnection>,
}

/// The name of the direct read connections in `CLIENT LIST`.
pub const DIRECT_CLIENT_NAME: &str = "annocache-direct";

/// A slot with no known master in [`Routes::owners`].
const NO_NODE: u16 = u16::MAX;

/// Learns the [`Routes`]: one task at a time, at most one per [`REFRESH_EVERY`].
struct Router {
    routes: RwLock<Option<Routes>>,
    /// The first seed's settings (credentials, TLS mode), with each master's address put in.
    base: redis::ConnectionInfo,
    certs: Option<redis::TlsCertificates>,
    config: redis::AsyncConnectionConfig,
    running: std::sync::atomic::AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Router {
    /// Forgets the routes (a read on them failed) and learns them anew.
    fn forget(self: &Arc<Self>, conn: &Arc<RwLock<Option<ClusterConnection>>>) {
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = None;
        self.spawn_learn(conn);
    }

    /// Learns the routes in a task of its own, unless one runs; waits out [`REFRESH_EVERY`]
    /// since the last one first.
    fn spawn_learn(self: &Arc<Self>, conn: &Arc<RwLock<Option<ClusterConnection>>>) {
        use std::sync::atomic::Ordering;
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let (router, conn) = (Arc::clone(self), Arc::clone(conn));
        handle.spawn(async move {
            let wait = {
                let mut last = router.last.lock().unwrap_or_else(PoisonError::into_inner);
                let wait = last.map_or(Duration::ZERO, |t| {
                    REFRESH_EVERY.saturating_sub(t.elapsed())
                });
                *last = Some(Instant::now() + wait);
                wait
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let current = conn.read().unwrap_or_else(PoisonError::into_inner).clone();
            let learnt = match current {
                Some(mut c) => router.learn(&mut c).await,
                None => None,
            };
            if let Some(routes) = learnt {
                *router
                    .routes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(routes);
            }
            router.running.store(false, Ordering::Release);
        });
    }

    /// A new connection to the node at `host:port`, with the seeds' credentials and TLS settings.
    async fn connect(&self, host: String, port: u16) -> redis::RedisResult<MultiplexedConnection> {
        let addr = match self.base.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => redis::ConnectionAddr::Tcp(host, port),
        };
        let info = self.base.clone().set_addr(addr);
        let client = match &self.certs {
            None => redis::Client::open(info),
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
        }?;
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    /// The masters from `CLUSTER SLOTS`, each with a new direct connection; `None` when the slot
    /// map cannot be read or a master cannot be reached.
    async fn learn(&self, conn: &mut ClusterConnection) -> Option<Routes> {
        let slots: redis::Value = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await
            .ok()?;
        let mut owners = vec![NO_NODE; SLOTS];
        let mut addrs: Vec<(String, u16)> = Vec::new();
        for (start, end, master) in slot_ranges(slots) {
            let node = match addrs.iter().position(|a| *a == master) {
                Some(i) => i,
                None => {
                    addrs.push(master);
                    addrs.len() - 1
                }
            };
            for slot in start..=end.min(SLOTS as u16 - 1) {
                owners[usize::from(slot)] = node as u16;
            }
        }
        let mut nodes = Vec::with_capacity(addrs.len());
        for (host, port) in addrs {
            let mut node = self.connect(host, port).await.ok()?;
            // Named, so that an operator can tell these connections in `CLIENT LIST`; a user
            // that may not name its connections keeps them unnamed.
            let _ = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(DIRECT_CLIENT_NAME)
                .query_async::<()>(&mut node)
                .await;
            nodes.push(node);
        }
        Some(Routes { owners, nodes })
    }
}

/// The `(first slot, last slot, master (host, port))` ranges of a `CLUSTER SLOTS` reply; ranges
/// whose master has no usable address (an empty or `?` host) are left out.
fn slot_ranges(reply: redis::Value) -> Vec<(u16, u16, (String, u16))> {
    let mut out = Vec::new();
    let redis::Value::Array(ranges) = reply else {
        return out;
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        // [start, end, [host, port, id, ...] (master), replicas...]
        let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
            (parts.first(), parts.get(1))
        else {
            continue;
        };
        let Some(redis::Value::Array(node)) = parts.get(2) else {
            continue;
        };
        let host = match node.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(redis::Value::Int(port)) = node.get(1) else {
            continue;
        };
        if host.is_empty() || host == "?" {
            continue;
        }
        let (Ok(start), Ok(end), Ok(port)) = (
            u16::try_from(*start),
            u16::try_from(*end),
            u16::try_from(*port),
        ) else {
            continue;
        };
        out.push((start, end, (host, port)));
    }
    out
}

/// Forgets the direct routes when dropped before [`done`](Self::done): the read on them failed,
/// or was abandoned at the caller's deadline.
struct ForgetUnlessDone<'a>(Option<&'a RedisClusterBackend>);

impl ForgetUnlessDone<'_> {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for ForgetUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(backend) = self.0 {
            backend.router.forget(&backend.conn);
        }
    }
}

/// The pattern of the physical keys of the logical keys matching `pattern`: `ns:rest` matches
/// `ns:{ns.<any bucket>}:rest`.
fn physical_pattern(pattern: &str) -> String {
    match pattern.split_once(':') {
        Some((ns, rest)) => format!("{ns}:{{{ns}.*}}:{rest}"),
        None => pattern.to_owned(),
    }
}

/// The logical key of a physical key (the inverse of [`place`]).
fn logical(physical: &str) -> String {
    match physical.split_once(":{") {
        Some((ns, rest)) => match rest.split_once("}:") {
            Some((_, key)) if !ns.is_empty() => format!("{ns}:{key}"),
            Some((_, key)) => key.to_owned(),
            None => physical.to_owned(),
        },
        None => match physical.strip_prefix('{').and_then(|r| r.split_once("}:")) {
            Some((_, key)) => key.to_owned(),
            None => physical.to_owned(),
        },
    }
}

/// The physical key of `key` (namespace first) in bucket `b`.
pub(crate) fn place(key: &str, b: u16) -> String {
    match key.split_once(':') {
        Some((ns, rest)) => format!("{ns}:{{{ns}.{b}}}:{rest}"),
        None => format!("{{{key}.{b}}}:{key}"),
    }
}

/// Redis Cluster storage through redis-rs's async cluster client (slot routing, `MOVED`/`ASK`,
/// reconnection, topology refresh). See the module docs for the key layout.
///
/// The connection is made on first use and retried on the next call after a failure, so a
/// service starts (and answers, without the cache) while the cluster is unreachable.
///
/// **Failover.** redis-rs's client re-reads the slot map when a node answers `MOVED`, not when a
/// node is gone: after a master dies and its replica takes over, requests for its slots reach
/// the promoted replica through the client's same-shard fallback, but a command sent to every
/// master (`PING`) still goes to the dead one, for good. So when `PING` does not answer (the
/// breaker's probe, the health check) or the masters cannot be listed, a new connection is
/// opened in the background; it reads the topology anew, and replaces the current one once
/// every master it names answers.
pub struct RedisClusterBackend {
    client: ClusterClient,
    /// The connection, once made; replaced by a topology refresh.
    conn: Arc<RwLock<Option<ClusterConnection>>>,
    /// When the last topology refresh started.
    refreshed: Arc<Mutex<Option<Instant>>>,
    /// A connection attempt runs in a task of its own, so that a caller's deadline never
    /// cancels it (a cluster connection takes a few round trips to every node).
    connecting: Arc<Mutex<Attempt>>,
    attempt_done: Arc<Notify>,
    buckets: u16,
    seeds_redacted: Vec<String>,
    evicts: std::sync::atomic::AtomicU8,
    /// Commands the ACL user may not run that were already logged: bit 0 `INFO`, bit 1 `PING`,
    /// bit 2 `DBSIZE` (as [`RedisBackend`](super::RedisBackend)).
    refused: std::sync::atomic::AtomicU8,
    /// One plain client per seed, for the invalidation subscription (classic Pub/Sub reaches
    /// every node of a cluster, so any one node will do); tried in turn.
    listeners: Vec<redis::Client>,
    next_listener: std::sync::atomic::AtomicUsize,
    /// Deadline of the subscription's connection and checks.
    deadline: Duration,
    /// Direct connections for single-slot reads.
    router: Arc<Router>,
}

impl fmt::Debug for RedisClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterBackend")
            .field("seeds", &self.seeds_redacted)
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl RedisClusterBackend {
    /// A backend for the cluster reachable through `seeds` (any nodes of it), without
    /// connecting.
    ///
    /// # Errors
    /// [`CacheError::Redis`] if a seed URL cannot be parsed.
    pub fn new<S: AsRef<str>>(
        seeds: &[S],
        options: &super::RedisOptions,
        buckets: u16,
    ) -> Result<RedisClusterBackend, CacheError> {
        let urls: Vec<&str> = seeds.iter().map(AsRef::as_ref).collect();
        if urls.is_empty() {
            return Err(CacheError::InvalidArgument(
                "a Redis Cluster needs at least one seed URL".into(),
            ));
        }
        let mut nodes: Vec<redis::ConnectionInfo> = Vec::with_capacity(urls.len());
        let mut certs = None;
        let mut listeners = Vec::with_capacity(urls.len());
        for url in &urls {
            let (info, c) = super::redis::connection_parts(url, options)?;
            listeners.push(match c.clone() {
                None => redis::Client::open(info.clone())?,
                Some(certs) => redis::Client::build_with_tls(info.clone(), certs)?,
            });
            nodes.push(info);
            certs = certs.or(c);
        }
        let tls = match nodes[0].addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => Some(if *insecure {
                redis::TlsMode::Insecure
            } else {
                redis::TlsMode::Secure
            }),
            _ => None,
        };
        let router = Arc::new(Router {
            routes: RwLock::new(None),
            base: nodes[0].clone(),
            certs: certs.clone(),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.response_timeout)),
            running: std::sync::atomic::AtomicBool::new(false),
            last: Mutex::new(None),
        });
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(2);
        // The nodes a seed names in `CLUSTER SLOTS` are reached with the seeds' TLS mode,
        // certificates and credentials.
        if let Some(mode) = tls {
            builder = builder.tls(mode);
        }
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        if let Some(user) = &options.username {
            builder = builder.username(user);
        }
        if let Some(password) = &options.password {
            builder = builder.password(password);
        }
        let client = builder.build()?;
        Ok(RedisClusterBackend {
            client,
            conn: Arc::new(RwLock::new(None)),
            refreshed: Arc::new(Mutex::new(None)),
            connecting: Arc::new(Mutex::new(Attempt::Idle)),
            attempt_done: Arc::new(Notify::new()),
            buckets: buckets.max(1),
            seeds_redacted: urls.iter().map(|u| redact_url(u)).collect(),
            evicts: std::sync::atomic::AtomicU8::new(0),
            refused: std::sync::atomic::AtomicU8::new(0),
            listeners,
            next_listener: std::sync::atomic::AtomicUsize::new(0),
            deadline: options.connect_timeout + options.response_timeout,
            router,
        })
    }

    /// The ACL rules of a Redis user that may do everything this backend does in `namespace`
    /// on a cluster, and nothing else: the rules of [`RedisBackend::acl_rules`] plus
    /// `+cluster|slots`, which the cluster client sends to learn the slot map (at connection,
    /// after a `MOVED`) and this backend to find the masters (pattern deletes, stats, the
    /// direct read connections), and `+client|setname`, which names the direct read
    /// connections `annocache-direct` (a user without it works: its connections stay unnamed,
    /// and each refusal is an entry in the node's `ACL LOG`). Create
    /// the user on **every node** (a cluster does not propagate ACL users):
    /// `ACL SETUSER <user> on ><password> <rules>`.
    ///
    /// As on one node, `INFO`, `DBSIZE` and `PING` may be left out: the backend then assumes
    /// that Redis may evict (every hit is verified), stats show no server figures, and a
    /// refused `PING` counts as an answer; each is logged once (`cache_redis_acl_limited`).
    ///
    /// [`RedisBackend::acl_rules`]: super::RedisBackend::acl_rules
    ///
    /// ```
    /// use cache_core::backend::{RedisBackend, RedisClusterBackend};
    /// assert_eq!(
    ///     RedisClusterBackend::acl_rules("gallery"),
    ///     format!(
    ///         "{} +cluster|slots +client|setname",
    ///         RedisBackend::acl_rules("gallery")
    ///     )
    /// );
    /// ```
    pub fn acl_rules(namespace: &str) -> String {
        format!(
            "{} +cluster|slots +client|setname",
            super::RedisBackend::acl_rules(namespace)
        )
    }

    /// Logs, once per backend, that the ACL user may not run `command`.
    fn refused_once(&self, bit: u8, command: &str, consequence: &str) {
        if self
            .refused
            .fetch_or(bit, std::sync::atomic::Ordering::Relaxed)
            & bit
            == 0
        {
            tracing::warn!(name: "cache_redis_acl_limited", event = "cache_redis_acl_limited", command, "the Redis user may not run {command}: {consequence}; see the minimal ACL rule in the README");
        }
    }

    /// The seed URLs, with passwords replaced by `***`.
    pub fn seeds(&self) -> &[String] {
        &self.seeds_redacted
    }

    /// Buckets per namespace.
    pub fn buckets(&self) -> u16 {
        self.buckets
    }

    /// The current connection, if one is made.
    fn current(&self) -> Option<ClusterConnection> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) async fn conn(&self) -> Result<ClusterConnection, CacheError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        // A caller that waited for an attempt gets that attempt's error, however long it took
        // to be woken (a loaded machine): it never starts attempts in a loop.
        let mut waited = false;
        loop {
            let done = self.attempt_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if let Some(c) = self.current() {
                return Ok(c);
            }
            {
                let mut state = self
                    .connecting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match std::mem::replace(&mut *state, Attempt::Running) {
                    Attempt::Running => {}
                    Attempt::Failed(e) if waited || !self.waited_after(&e) => {
                        let err = CacheError::from(e.1.clone());
                        *state = Attempt::Failed(e);
                        return Err(err);
                    }
                    Attempt::Idle | Attempt::Failed(_) => self.spawn_attempt(),
                }
            }
            done.await;
            waited = true;
        }
    }

    /// Whether the last failed attempt is old enough to try again (10 ms: reconnection is
    /// driven by the callers, and a dead cluster must not be dialled once per call).
    fn waited_after(&self, failed: &(Instant, redis::RedisError)) -> bool {
        failed.0.elapsed() >= Duration::from_millis(10)
    }

    fn spawn_attempt(&self) {
        let (client, cell, state, done, router) = (
            self.client.clone(),
            Arc::clone(&self.conn),
            Arc::clone(&self.connecting),
            Arc::clone(&self.attempt_done),
            Arc::clone(&self.router),
        );
        let finish = move |next: Attempt| {
            *state.lock().unwrap_or_else(PoisonError::into_inner) = next;
            done.notify_waiters();
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            finish(Attempt::Failed((
                Instant::now(),
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the Redis Cluster backend must be used inside a tokio runtime",
                )),
            )));
            return;
        };
        handle.spawn(async move {
            match client.get_async_connection().await {
                Ok(c) => {
                    cell.write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(c);
                    finish(Attempt::Idle);
                    router.spawn_learn(&cell);
                }
                Err(e) => finish(Attempt::Failed((Instant::now(), e))),
            }
        });
    }

    /// Opens a new connection in a task of its own (it reads the slot map anew from the nodes)
    /// and makes it the connection if every master it names answers `PING`: see "Failover" in
    /// the type's docs. At most one refresh starts per [`REFRESH_EVERY`]; nothing happens
    /// before the first connection is made (that is the connection attempt's job).
    fn spawn_refresh(&self) {
        if self.current().is_none() {
            return;
        }
        {
            let mut last = self
                .refreshed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, cell, router) = (
            self.client.clone(),
            Arc::clone(&self.conn),
            Arc::clone(&self.router),
        );
        handle.spawn(async move {
            let Ok(mut fresh) = client.get_async_connection().await else {
                return;
            };
            if redis::cmd("PING")
                .query_async::<()>(&mut fresh)
                .await
                .is_ok()
            {
                *cell.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh);
                // The direct routes may name the master that is gone.
                router.forget(&cell);
                tracing::debug!(
                    name: "cache_redis_cluster_topology_refreshed", event = "cache_redis_cluster_topology_refreshed",
                    "Redis Cluster connection reopened with the current slot map"
                );
            }
        });
    }

    /// The direct connection to the master serving `physical`'s slot, when the routes are
    /// known; when they are not, they are learnt in the background (see the module docs).
    fn direct(&self, physical: &str) -> Option<MultiplexedConnection> {
        {
            let routes = self
                .router
                .routes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(routes) = routes.as_ref() {
                let node = *routes
                    .owners
                    .get(usize::from(slot_of(physical.as_bytes())))?;
                return routes.nodes.get(usize::from(node)).cloned();
            }
        }
        if self.current().is_some() {
            self.router.spawn_learn(&self.conn);
        }
        None
    }

    fn at(&self, key: &str) -> String {
        place(key, bucket_of(key, self.buckets))
    }

    /// Current masters as `(host, port)`, from `CLUSTER SHARDS`' older sibling `CLUSTER SLOTS`.
    async fn masters(&self) -> Result<Vec<(String, u16)>, CacheError> {
        let mut conn = self.conn().await?;
        // A master named by a stale slot map may be gone.
        let refresh = RefreshUnlessDone::new(self);
        let slots: redis::Value = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await?;
        refresh.done();
        let mut out: Vec<(String, u16)> = Vec::new();
        for (_, _, master) in slot_ranges(slots) {
            if !out.contains(&master) {
                out.push(master);
            }
        }
        Ok(out)
    }

    async fn on_node<T: redis::FromRedisValue>(
        &self,
        host: &str,
        port: u16,
        cmd: redis::Cmd,
    ) -> Result<T, CacheError> {
        let mut conn = self.conn().await?;
        let v = conn
            .route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                }),
            )
            .await?
            // A refusal (`NOPERM`, ...) comes back as a value: an error like any other.
            .extract_error()?;
        redis::from_redis_value(v).map_err(|e| CacheError::Redis(e.into()))
    }
}

/// Whether a node refused a command to the ACL user (`NOPERM`): an answer, not a sign that the
/// direct routes are wrong.
fn is_refusal(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
}

/// Whether a node refused a command to the ACL user (`NOPERM`).
fn is_noperm(e: &CacheError) -> bool {
    matches!(e, CacheError::Redis(r) if r.code() == Some("NOPERM"))
}

/// Starts a topology refresh when dropped before [`done`](Self::done): the call failed, or its
/// caller gave up on it at its deadline (a paused node does not answer at all).
struct RefreshUnlessDone<'a>(Option<&'a RedisClusterBackend>);

impl<'a> RefreshUnlessDone<'a> {
    fn new(backend: &'a RedisClusterBackend) -> Self {
        RefreshUnlessDone(Some(backend))
    }

    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for RefreshUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(backend) = self.0 {
            backend.spawn_refresh();
        }
    }
}

/// Runs one script invocation per group concurrently; the results in group order.
async fn run_all<T>(
    conn: &ClusterConnection,
    invocations: Vec<redis::ScriptInvocation<'static>>,
) -> Result<Vec<T>, CacheError>
where
    T: redis::FromRedisValue + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, inv) in invocations.into_iter().enumerate() {
        let mut conn = conn.clone();
        set.spawn(async move { (i, inv.invoke_async::<T>(&mut conn).await) });
    }
    let mut out: Vec<Option<T>> = Vec::new();
    out.resize_with(set.len(), || None);
    while let Some(done) = set.join_next().await {
        let (i, r) = done.map_err(|e| CacheError::Backend(Box::new(e)))?;
        out[i] = Some(r?);
    }
    Ok(out
        .into_iter()
        .map(|v| v.expect("every task reported"))
        .collect())
}

/// Indices of `items` grouped by bucket, in first-seen order of the buckets.
fn groups<I: Iterator<Item = u16>>(buckets: I) -> Vec<(u16, Vec<usize>)> {
    let mut out: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, b) in buckets.enumerate() {
        match out.iter_mut().find(|(x, _)| *x == b) {
            Some((_, v)) => v.push(i),
            None => out.push((b, vec![i])),
        }
    }
    out
}

#[async_trait]
impl Backend for RedisClusterBackend {
    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let physical = self.at(key);
        if let Some(mut node) = self.direct(&physical) {
            let watch = ForgetUnlessDone(Some(self));
            match redis::cmd("GET")
                .arg(&physical)
                .query_async(&mut node)
                .await
            {
                Ok(v) => {
                    watch.done();
                    return Ok(v);
                }
                Err(e) if is_refusal(&e) => {
                    watch.done();
                    return Err(e.into());
                }
                Err(_) => {}
            }
        }
        let mut conn = self.conn().await?;
        Ok(redis::cmd("GET")
            .arg(&physical)
            .query_async(&mut conn)
            .await?)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let physical: Vec<String> = keys.iter().map(|k| self.at(k)).collect();
        let mut conn = self.conn().await?;
        // The cluster client splits a multi-slot MGET by slot and reassembles it in order.
        Ok(redis::cmd("MGET")
            .arg(&physical)
            .query_async(&mut conn)
            .await?)
    }

    async fn versions(&self, reads: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = reads
            .iter()
            .map(|r| version_key(&place(r.id, bucket_of(r.anchor, self.buckets))))
            .collect();
        let mut conn = self.conn().await?;
        let v: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(v.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn versions_or_create(
        &self,
        reads: &[VersionRead<'_>],
        create: &[bool],
        retention: Duration,
    ) -> Result<Vec<u64>, CacheError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let groups = groups(reads.iter().map(|r| bucket_of(r.anchor, self.buckets)));
        let mut invocations = Vec::with_capacity(groups.len());
        for (b, members) in &groups {
            invocations.push(super::redis::versions_invocation(
                members
                    .iter()
                    .map(|&i| version_key(&place(reads[i].id, *b))),
                members
                    .iter()
                    .map(|&i| create.get(i).copied().unwrap_or(false)),
                retention,
            ));
        }
        let conn = self.conn().await?;
        let results: Vec<Vec<u64>> = run_all(&conn, invocations).await?;
        let mut out = vec![0; reads.len()];
        for ((_, members), values) in groups.iter().zip(results) {
            for (&i, v) in members.iter().zip(values) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<Bytes>, Vec<u64>), CacheError> {
        let b = bucket_of(key, self.buckets);
        // One slot: a pipeline on the bucket's node.
        let physical = place(key, b);
        let keys: Vec<String> = ids.iter().map(|id| version_key(&place(id, b))).collect();
        if let Some(mut node) = self.direct(&physical) {
            let watch = ForgetUnlessDone(Some(self));
            match super::redis::get_checked_on(&mut node, &physical, &keys).await {
                Ok(v) => {
                    watch.done();
                    return Ok(v);
                }
                Err(CacheError::Redis(e)) if is_refusal(&e) => {
                    watch.done();
                    return Err(CacheError::Redis(e));
                }
                Err(_) => {}
            }
        }
        let mut conn = self.conn().await?;
        super::redis::get_checked_on(&mut conn, &physical, &keys).await
    }

    fn eviction_hint(&self) -> Option<bool> {
        super::redis::eviction_hint_of(&self.evicts)
    }

    async fn may_evict(&self) -> Result<bool, CacheError> {
        let mut evicts = false;
        for (host, port) in self.masters().await? {
            let info: String = match self
                .on_node(&host, port, redis::cmd("INFO").arg("memory").clone())
                .await
            {
                Ok(info) => info,
                Err(e) if is_noperm(&e) => {
                    self.refused_once(
                        1,
                        "INFO",
                        "its eviction policy is unknown, so every hit is verified (as under eviction)",
                    );
                    return Ok(true);
                }
                Err(e) => return Err(e),
            };
            evicts |= super::redis::info_may_evict(&info);
        }
        Ok(evicts)
    }

    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        let groups = groups(puts.iter().map(|p| bucket_of(p.key, self.buckets)));
        let mut invocations = Vec::with_capacity(groups.len());
        for (b, members) in &groups {
            let mut inv = PUT.prepare_invoke();
            inv.arg(members.len());
            for &i in members {
                let p = &puts[i];
                inv.key(place(p.key, *b));
                let (ids, expected): (&[String], &[u64]) = match &p.guard {
                    Some(g) => (g.ids, g.versions),
                    None => (&[], &[]),
                };
                for id in ids {
                    inv.key(version_key(&place(id, *b)));
                }
                for tag in p.tags {
                    inv.key(index_key(&place(tag, *b)));
                }
                inv.arg(p.value)
                    .arg(ttl_ms(p.ttl))
                    .arg(ids.len())
                    .arg(p.tags.len());
                for j in 0..ids.len() {
                    inv.arg(expected.get(j).copied().unwrap_or(0));
                }
            }
            invocations.push(inv);
        }
        let conn = self.conn().await?;
        let results: Vec<Vec<i64>> = run_all(&conn, invocations).await?;
        let mut out = vec![false; puts.len()];
        for ((_, members), stored) in groups.iter().zip(results) {
            for (&i, s) in members.iter().zip(stored) {
                out[i] = s == 1;
            }
        }
        Ok(out)
    }

    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        if inv.tags.is_empty() && inv.keys.is_empty() && inv.bump.is_empty() {
            return Ok(0);
        }
        // Tags and bumps concern every bucket; a key only its own.
        let everywhere = !inv.tags.is_empty() || !inv.bump.is_empty();
        let mut invocations = Vec::new();
        for b in 0..self.buckets {
            let keys: Vec<&(&str, &str)> = inv
                .keys
                .iter()
                .filter(|(key, _)| bucket_of(key, self.buckets) == b)
                .collect();
            if !everywhere && keys.is_empty() {
                continue;
            }
            let mut call = INVALIDATE.prepare_invoke();
            for tag in inv.tags {
                let t = place(tag, b);
                call.key(version_key(&t)).key(index_key(&t));
            }
            for (key, id) in &keys {
                call.key(place(key, b)).key(version_key(&place(id, b)));
            }
            for id in inv.bump {
                call.key(version_key(&place(id, b)));
            }
            // One bucket reads the eviction policy (for the hint); the others skip `INFO`.
            call.arg(ttl_ms(inv.retention))
                .arg(inv.tags.len())
                .arg(keys.len())
                .arg(inv.bump.len())
                .arg(if invocations.is_empty() { "1" } else { "0" })
                .arg(inv.channel);
            // Each bucket's script publishes the notice of what it deleted, after deleting it:
            // a listener that drops its entries on one bucket's notice cannot refill them from
            // another bucket not yet invalidated.
            if !inv.channel.is_empty() {
                call.arg(super::notice_parts(
                    inv.tags.iter().copied(),
                    keys.iter().map(|(k, _)| *k),
                    inv.bump.iter().copied(),
                ));
            }
            invocations.push(call);
        }
        let conn = self.conn().await?;
        let results: Vec<(u64, u8)> = run_all(&conn, invocations).await?;
        let evicts = results.iter().any(|(_, e)| *e != 0);
        self.evicts
            .store(1 + u8::from(evicts), std::sync::atomic::Ordering::Relaxed);
        Ok(results.iter().map(|(n, _)| n).sum())
    }

    fn notifies(&self) -> bool {
        true
    }

    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn super::NoticeSink,
    ) -> Result<(), CacheError> {
        let i = self
            .next_listener
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client = &self.listeners[i % self.listeners.len()];
        super::redis::listen_on(client, self.deadline, channel, heartbeat, sink).await
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await?)
    }

    async fn delete_pattern(&self, pattern: &str, batch: usize) -> Result<u64, CacheError> {
        let physical = physical_pattern(pattern);
        let mut deleted = 0u64;
        for (host, port) in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = self
                    .on_node(
                        &host,
                        port,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&physical)
                            .arg("COUNT")
                            .arg(batch.max(1))
                            .clone(),
                    )
                    .await?;
                if !keys.is_empty() {
                    let mut conn = self.conn().await?;
                    // Split by slot by the cluster client.
                    let n: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await?;
                    deleted += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        let physical = physical_pattern(pattern);
        let mut seen = 0u64;
        for (host, port) in self.masters().await? {
            let mut node = self.router.connect(host, port).await?;
            let (n, stopped) = super::redis::scan_on(&mut node, &physical, batch, &mut |keys| {
                Some(visit(keys.iter().map(|k| logical(k)).collect()))
            })
            .await?;
            seen += n;
            if stopped {
                break;
            }
        }
        Ok(seen)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.at(key))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let script: &Script = &UNLOCK;
        script
            .key(self.at(key))
            .arg(token)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        // `PING` goes to every master of the client's slot map: one that failed over and is gone
        // never answers again, so a failed (or abandoned: the caller's deadline) `PING` reopens
        // the connection with the current topology.
        let refresh = RefreshUnlessDone::new(self);
        match redis::cmd("PING").query_async::<()>(&mut conn).await {
            Ok(()) => {
                refresh.done();
                Ok(())
            }
            // The node answered (the connection and AUTH work): that is what a ping asks.
            Err(e) if e.code() == Some("NOPERM") => {
                refresh.done();
                self.refused_once(2, "PING", "health checks take its refusal as an answer");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let mut total = BackendInfo {
            backend: "redis-cluster".into(),
            ..BackendInfo::default()
        };
        for (host, port) in self.masters().await? {
            // What the ACL user may not run reads as empty.
            let info: String = match self.on_node(&host, port, redis::cmd("INFO")).await {
                Ok(info) => info,
                Err(e) if is_noperm(&e) => {
                    self.refused_once(1, "INFO", "stats report no server figures");
                    String::new()
                }
                Err(e) => return Err(e),
            };
            let dbsize: u64 = match self.on_node(&host, port, redis::cmd("DBSIZE")).await {
                Ok(n) => n,
                Err(e) if is_noperm(&e) => {
                    self.refused_once(4, "DBSIZE", "stats report no key count");
                    0
                }
                Err(e) => return Err(e),
            };
            let field = |name: &str| -> Option<&str> {
                info.lines().find_map(|line| {
                    line.strip_prefix(name)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .map(str::trim)
                })
            };
            let num = |name: &str| -> u64 { field(name).and_then(|v| v.parse().ok()).unwrap_or(0) };
            total.total_keys += dbsize;
            total.memory_used_bytes += num("used_memory");
            total.keyspace_hits += num("keyspace_hits");
            total.keyspace_misses += num("keyspace_misses");
            total.connected_clients += num("connected_clients");
            if total.version.is_empty() {
                total.version = field("redis_version").unwrap_or_default().to_owned();
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_namespace_first_and_take_the_buckets_hash_tag() {
        assert_eq!(
            place("gallery:v1:content_item:5", 7),
            "gallery:{gallery.7}:v1:content_item:5"
        );
        assert_eq!(place("gallery:t:cat", 0), "gallery:{gallery.0}:t:cat");
        assert_eq!(
            version_key(&place("gallery:g", 3)),
            "gallery:{gallery.3}:g:v"
        );
        for key in ["gallery:v1:content_item:5", "gallery:t:cat:k", "single"] {
            assert_eq!(logical(&place(key, 7)), key);
        }
    }

    #[test]
    fn buckets_spread_keys() {
        let mut seen = [0u32; 32];
        for i in 0..3200 {
            seen[usize::from(bucket_of(&format!("ns:v1:item:{i}"), 32))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
