//! Storage backends.
//!
//! A [`Backend`] is the small async interface the [`Cache`](crate::Cache) engine talks to. Two
//! implementations ship with the crate and pass the same behaviour suite:
//!
//! * [`RedisBackend`]: Redis through a `redis` connection manager (automatic reconnection,
//!   connection made lazily so a service starts even when Redis is down).
//! * [`MemoryBackend`]: an in-process store on `moka` with the same semantics (TTL, tags, guarded
//!   stores, locks, patterns). It is the embedded default for development and single-instance
//!   services, not a mock.
//!
//! Backends see fully built keys; namespacing, deadlines, the circuit breaker, statistics and
//! fail-open all live in the engine, so a custom backend only implements storage.
//!
//! # Versions, guards and invalidation (shared by both backends)
//! A *version id* names a counter kept at `{id}:v`, incremented by every invalidation that
//! concerns it. The engine uses three kinds, all namespaced:
//! * a tag id (`{namespace}:t:{tag}`), which also owns an index `{id}:k`: a sorted set of the
//!   entry keys carrying the tag, scored by their expiry time (ms);
//! * a key id (`{namespace}:k:{entry key}`), bumped when that entry is deleted by key;
//! * the namespace generation (`{namespace}:g`), bumped by pattern deletes and `clear`.
//!
//! A guarded [`Put`] carries the versions of its ids read before its loader ran and is stored
//! only if they are unchanged, atomically with adding the key to each tag index. An
//! [`Invalidation`] bumps versions and deletes entries in one atomic step, so a fill that began
//! before it can never be stored after it. See [`crate::tags`] for the design.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::CacheError;

mod cluster;
mod memory;
mod redis;

pub use self::cluster::{RedisClusterBackend, DEFAULT_BUCKETS, DIRECT_CLIENT_NAME};
pub use self::memory::MemoryBackend;
pub(crate) use self::redis::{check_ca_pem, check_cert_pem, check_key_pem, redact_url};
pub use self::redis::{RedisBackend, RedisOptions, RedisTls};

/// One entry to store.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
    /// Full entry key.
    pub key: &'a str,
    /// Encoded envelope.
    pub value: &'a [u8],
    /// How long the backend keeps the entry (fresh TTL plus stale windows).
    pub ttl: Duration,
    /// Tag ids (already namespaced) the entry is indexed under.
    pub tags: &'a [String],
    /// The versions the entry depends on; `None` stores unconditionally.
    pub guard: Option<Guard<'a>>,
}

/// One version to read (see [`Backend::versions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRead<'a> {
    /// The entry key the version is read for.
    pub anchor: &'a str,
    /// The version id (namespaced).
    pub id: &'a str,
}

/// The condition of a guarded [`Put`]: every version id still has the version read before the
/// value was loaded.
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    /// Version ids (namespaced), in any order.
    pub ids: &'a [String],
    /// The expected version of each id, in the same order (`0`: never bumped).
    pub versions: &'a [u64],
}

/// What one atomic invalidation does (see [`Backend::invalidate`]).
#[derive(Debug, Clone, Copy)]
pub struct Invalidation<'a> {
    /// Tag ids: bump each version, delete every entry in its index, delete the index.
    pub tags: &'a [&'a str],
    /// Entries to delete, each with its key id whose version is bumped: `(entry key, key id)`.
    pub keys: &'a [(&'a str, &'a str)],
    /// Version ids that are only bumped (the namespace generation).
    pub bump: &'a [&'a str],
    /// How long a bumped version is remembered (it must outlive any fill in flight).
    pub retention: Duration,
    /// The channel the backend publishes the invalidation's [`notice`] on, atomically with
    /// it (empty: none). Instances keeping an in-process tier (L1) listen to it
    /// ([`Backend::listen`]).
    pub channel: &'a str,
}

/// The invalidation notice of `tags`, `keys` and `bump` (see [`notice`]).
pub fn notice_parts<'a>(
    tags: impl IntoIterator<Item = &'a str>,
    keys: impl IntoIterator<Item = &'a str>,
    bump: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut out = String::new();
    let mut push = |kind: char, id: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push(kind);
        out.push_str(id);
    };
    for t in tags {
        push('t', t);
    }
    for k in keys {
        push('k', k);
    }
    for b in bump {
        push('g', b);
    }
    out
}

/// The notice a backend publishes for `inv` on [`Invalidation::channel`]: one line per id,
/// separated by `\n`, each a kind letter followed by the id as the engine gave it: `t` a tag id
/// (every entry carrying the tag), `k` an entry key, `g` a bumped version id (the namespace
/// generation: every entry of the namespace). Ids never contain whitespace (see
/// [`crate::key`]). A listener that meets a kind it does not know drops every entry.
///
/// ```
/// use std::time::Duration;
/// use cache_core::backend::{notice, Invalidation};
/// let inv = Invalidation {
///     tags: &["ns:t:trig"],
///     keys: &[("ns:v1:trig:1", "ns:k:ns:v1:trig:1")],
///     bump: &[],
///     retention: Duration::from_secs(60),
///     channel: "ns:l1",
/// };
/// assert_eq!(notice(&inv), "tns:t:trig\nkns:v1:trig:1");
/// ```
pub fn notice(inv: &Invalidation<'_>) -> String {
    notice_parts(
        inv.tags.iter().copied(),
        inv.keys.iter().map(|(k, _)| *k),
        inv.bump.iter().copied(),
    )
}

/// Receives the notices of one subscription (see [`Backend::listen`]).
pub trait NoticeSink: Send + Sync {
    /// The subscription is established: every notice published from now on is delivered.
    fn subscribed(&self);
    /// One notice, as published (see [`notice`]), in publication order.
    fn notice(&self, payload: &[u8]);
}

/// Server-side facts for the stats endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BackendInfo {
    /// `redis` or `memory`.
    pub backend: String,
    /// Number of keys (Redis `DBSIZE`: the whole database, not only this namespace).
    pub total_keys: u64,
    /// Memory used, in bytes.
    pub memory_used_bytes: u64,
    /// Lookups that found a key (Redis `keyspace_hits`).
    pub keyspace_hits: u64,
    /// Lookups that found nothing (Redis `keyspace_misses`).
    pub keyspace_misses: u64,
    /// Connected clients (Redis `connected_clients`; `1` for memory).
    pub connected_clients: u64,
    /// Server version, when known.
    pub version: String,
}

/// The storage interface behind a [`Cache`](crate::Cache).
///
/// Every method may fail; the engine applies deadlines and the circuit breaker around them and
/// turns failures into fall-through on read paths.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Short name for logs and stats (`redis`, `memory`).
    fn kind(&self) -> &'static str;

    /// Reads one entry.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Reads many entries in one round trip; the result has one slot per key, in order.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError>;

    /// Current versions of the given version ids (`0` for an id never bumped), in one result
    /// slot per read, in order. Each read names the entry key it is made for (its *anchor*): a
    /// backend that keeps an entry's bookkeeping next to the entry (Redis Cluster) reads the
    /// version there; the others ignore it.
    async fn versions(&self, reads: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError>;

    /// Like [`versions`](Self::versions), and creates each id marked in `create` that has no
    /// version yet with a fresh value (unique to that creation) kept for `retention`, in one
    /// atomic step per anchor. Used when the backend may evict keys: a version that exists when
    /// a value is loaded and stored can then only change or vanish, never come back to the value
    /// it had (see [`may_evict`](Self::may_evict)). The default reads without creating (a
    /// backend that never evicts its bookkeeping needs no more).
    async fn versions_or_create(
        &self,
        reads: &[VersionRead<'_>],
        create: &[bool],
        retention: Duration,
    ) -> Result<Vec<u64>, CacheError> {
        let _ = (create, retention);
        self.versions(reads).await
    }

    /// Reads an entry and the current versions of `ids` in one round trip (the default makes
    /// two calls).
    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<Bytes>, Vec<u64>), CacheError> {
        let value = self.get(key).await?;
        let reads: Vec<VersionRead<'_>> = ids
            .iter()
            .map(|id| VersionRead { anchor: key, id })
            .collect();
        Ok((value, self.versions(&reads).await?))
    }

    /// Whether the backend may evict keys of its own accord (Redis with `maxmemory` and a policy
    /// other than `noeviction`): then a tag index or a version may vanish while its entries
    /// stay, and every hit is checked against the versions it was stored with. The default:
    /// `false`.
    async fn may_evict(&self) -> Result<bool, CacheError> {
        Ok(false)
    }

    /// What the backend learned about eviction during its last invalidation, if anything (the
    /// Redis backend reads it in the invalidation script): lets the writer switch to verified
    /// hits at once when the policy changes at runtime. The default: `None`.
    fn eviction_hint(&self) -> Option<bool> {
        None
    }

    /// Stores entries in one round trip. Returns, per entry, whether it was stored (`false`:
    /// its guard saw a changed version).
    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError>;

    /// Atomically bumps every version of `inv` and deletes the entries it names (the keys, and
    /// every entry indexed under the tags). Returns how many entries were deleted.
    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError>;

    /// Deletes every key matching a Redis glob pattern, `batch` keys at a time, without blocking
    /// the server (Redis: `SCAN` + `UNLINK`, never `KEYS`). Returns how many were deleted.
    async fn delete_pattern(&self, pattern: &str, batch: usize) -> Result<u64, CacheError>;

    /// Visits the keys matching a Redis glob pattern, about `batch` at a time, without blocking
    /// the server (Redis: `SCAN`, never `KEYS`; every master of a cluster), handing each batch
    /// to `visit`, which returns `false` to stop. The keys are the logical keys the other
    /// methods take. Returns how many keys were handed over.
    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError>;

    /// Takes a lease (`SET NX PX`): `true` if acquired.
    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// Releases a lease if `token` still holds it.
    async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), CacheError>;

    /// Server statistics.
    async fn info(&self) -> Result<BackendInfo, CacheError>;

    /// Whether this backend publishes invalidation notices and can [`listen`](Self::listen) to
    /// them. The default: `false`, and an in-process tier (L1) in front of it stays bypassed.
    fn notifies(&self) -> bool {
        false
    }

    /// Subscribes to the notices published on `channel` (by [`invalidate`](Self::invalidate)
    /// and [`publish`](Self::publish), on any instance): calls [`NoticeSink::subscribed`] once
    /// the subscription is established, then [`NoticeSink::notice`] for each notice, and returns
    /// when the subscription is lost (an error; the engine then bypasses its L1 and calls again
    /// with backoff). Every call it makes has a deadline, and a connection that stops answering
    /// is noticed within `heartbeat` plus that deadline. The default: an error at once.
    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn NoticeSink,
    ) -> Result<(), CacheError> {
        let _ = (channel, heartbeat, sink);
        Err(CacheError::Backend(
            "this backend publishes no invalidation notices".into(),
        ))
    }

    /// Publishes `payload` on `channel` (a notice that some entries changed outside an
    /// invalidation, e.g. an explicit `set`). The default does nothing.
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        let _ = (channel, payload);
        Ok(())
    }
}

pub(crate) fn version_key(tag_id: &str) -> String {
    format!("{tag_id}:v")
}

pub(crate) fn index_key(tag_id: &str) -> String {
    format!("{tag_id}:k")
}
