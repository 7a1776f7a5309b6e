//! Tag-based invalidation: design, and deferred invalidation after a transaction commits.
//!
//! # Design
//! An entry is stored with any number of tags (`trig:123`, `trigs:list`, `user:42`).
//! [`Cache::invalidate_tags`] removes every entry carrying any of them. We chose **per-tag index
//! sets purged server-side, plus per-tag version counters that guard fills**:
//!
//! * **Index**: each tag has a sorted set `{ns}:t:{tag}:k` of the keys carrying it, scored by their
//!   expiry time (server clock). A store adds the key (`ZADD`) in the same Lua script that writes
//!   the entry.
//! * **Invalidate**: one Lua script increments each tag's version `{ns}:t:{tag}:v`, `UNLINK`s every
//!   member of its index and deletes the index. Lua scripts run atomically, so a reader sees all
//!   of the invalidation or none of it; the cost is proportional to the entries carrying the tag,
//!   never to the size of the keyspace (no `KEYS`, no `SCAN`).
//! * **Read**: a hit is a plain `GET`: no tag check on the hot path, one round trip.
//! * **Race safety of stores**: before its loader runs, a fill reads the versions of everything
//!   that can invalidate its entry (`MGET`, on the miss path only): each tag's `{ns}:t:{tag}:v`,
//!   the entry's own key version `{ns}:k:{key}:v` (bumped by [`Cache::delete`]), and the
//!   namespace generation `{ns}:g:v` (bumped by [`Cache::delete_pattern`] and [`Cache::clear`],
//!   which cannot know which keys a fill in flight will write). The store script writes the
//!   entry only if every version is unchanged. So a fill that started before an invalidation
//!   (loader read the database, a write committed and invalidated, then the loader tries to
//!   store its old value) is rejected and counted in `rejected_fills`. The guard is inside the
//!   store path; callers cannot forget it, and it is the same for values, fragments, `#[cached]`
//!   functions and whole HTTP responses.
//! * **Race safety of single-flight**: concurrent misses on one key in a process share one
//!   loader run (the first caller leads, the others wait). A caller
//!   that *began after* an invalidation returned may still join a load that began before it.
//!   So before handing its value to the waiting callers, the leader **seals** the flight (no
//!   one can join it any more) and reads the versions again: if any changed since its snapshot,
//!   the waiting callers load again instead of receiving the old value. Every waiting caller
//!   joined before the seal, so an invalidation that returned before it began shows in that
//!   read. The rule that holds: **a read that begins after an invalidation of its entry has
//!   returned never receives a value loaded before it**, from Redis, from the memory backend or
//!   from another caller's load (checked by `tests/tests/consistency.rs`: 64 tasks, 4 `Cache`
//!   instances on one Redis, every read path; `benches/consistency.rs` runs 100k operations).
//!   The extra read costs one round trip on a miss that had waiting callers, none on a hit.
//!
//! We preferred this to *tag versions checked on every read* (entries carry the versions they
//! were built against, readers compare with current versions): that makes every hit fetch the
//! tag counters too (a Lua read or a second round trip), which costs on the path that matters
//! most, whereas index upkeep costs only on stores.
//!
//! **Bookkeeping cleanup.** Each store prunes members whose expiry has passed
//! (`ZREMRANGEBYSCORE idx -inf now`), so a busy tag's index holds only live keys; the index key
//! itself expires with its longest-lived member (its `PEXPIRE` is raised to each new member's
//! TTL). Version counters exist only for tags, keys and namespaces that were invalidated and
//! expire after [`tag_version_retention`](crate::CacheBuilder::tag_version_retention) (24 h by
//! default); a fill whose loader outlives that retention is the one case the guard cannot see.
//! A key version costs one small Redis string per deleted key for that retention; prefer tags
//! for invalidations made on every write. `clear` keeps every version counter.
//! Entries deleted by key or expiry leave at most a dangling index member until the next prune.
//!
//! **Redis Cluster.** A tag's entries live on every node, so its bookkeeping is sharded too
//! ([`RedisClusterBackend`](crate::backend::RedisClusterBackend)). Each entry belongs to one of a
//! fixed number of *slot buckets* per namespace (32 by default, `xxh3(key) % buckets`), and the
//! entry, its key id, and the copies of the generation and of its tags' versions and indexes it
//! uses all carry the bucket's hash tag, so they share one slot: a guarded store is one atomic
//! script on one node, exactly as on a single Redis. Invalidating a tag runs the same
//! invalidation script once per bucket (bump the tag's version in that bucket, delete the
//! entries of its index there), all concurrently; it returns when every bucket has answered.
//! Race-safety holds per bucket, since a fill and the invalidation step of its bucket are both
//! atomic on the bucket's node. **Cost:** `buckets` scripts per invalidation, each proportional
//! to the tag's entries in its bucket: constant in the size of the keyspace, and one round trip
//! per node in time.
//!
//! **Redis down during invalidation.** An invalidation that the backend does not take within
//! [`invalidation_timeout`](crate::CacheBuilder::invalidation_timeout) is queued and replayed as
//! soon as it answers; [`Cache::invalidate_tags`] then returns
//! [`CacheError::Queued`] and this instance serves no entry carrying
//! the tags until the replay. A durable outbox extends the guarantee to other instances and to
//! crashes. See [`crate::durable`].
//!
//! # Deferred invalidation
//! Invalidate only after the database transaction commits: collect tags while the transaction
//! runs, then [`commit`](PendingInvalidation::commit) after the database commit. Dropping the
//! collector (rollback, early return, panic) invalidates nothing.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Cache, Policy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! let key = cache.key("trig").id(7).build();
//! cache.set(&key, &"old", Policy::ttl(Duration::from_secs(60)).tag("trig:7")).await.unwrap();
//!
//! let mut pending = cache.defer();
//! pending.tag("trig:7");
//! // ... the database transaction commits here ...
//! pending.commit().await.unwrap();
//! assert_eq!(cache.get::<String>(&key).await, None);
//! # });
//! ```

use crate::error::CacheError;
use crate::key::CacheKey;
use crate::Cache;

/// Tags and keys to invalidate once a transaction has committed.
///
/// Created by [`Cache::defer`]. Nothing happens until [`commit`](Self::commit); dropping it
/// discards the collected work.
#[derive(Debug)]
#[must_use = "nothing is invalidated until `commit` is called"]
pub struct PendingInvalidation {
    cache: Cache,
    tags: Vec<String>,
    keys: Vec<CacheKey>,
}

impl PendingInvalidation {
    pub(crate) fn new(cache: Cache) -> PendingInvalidation {
        PendingInvalidation {
            cache,
            tags: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Adds a tag to invalidate on commit.
    pub fn tag(&mut self, tag: impl Into<String>) -> &mut Self {
        let tag = tag.into();
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    /// Adds a key to delete on commit.
    pub fn key(&mut self, key: CacheKey) -> &mut Self {
        self.keys.push(key);
        self
    }

    /// The tags collected so far.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.keys.is_empty()
    }

    /// Runs the invalidation (the tags and the keys in one atomic step). Call after the
    /// database commit.
    ///
    /// Returns how many entries were deleted; `Ok(0)` also when the backend did not answer in
    /// time and the invalidation was **queued** (it is replayed as soon as the backend answers,
    /// and this instance serves none of the entries concerned until then; see
    /// [`crate::durable`]).
    ///
    /// # Errors
    /// Any other failure (caching disabled, an invalid argument); the collector is handed back
    /// inside [`CommitError`].
    pub async fn commit(self) -> Result<u64, CommitError> {
        self.run(None).await
    }

    /// [`commit`](Self::commit) for an invalidation the service recorded in its
    /// [`Outbox`](crate::durable::Outbox) as record `outbox_id`, in the write's transaction (the
    /// tags of [`tags`](Self::tags)): when the invalidation is delivered, the record is marked
    /// delivered through the cache's outbox, so no instance replays it; when it is queued, the
    /// record stays for the outbox task of every instance (see [`crate::durable`]).
    ///
    /// A failure to mark the record is logged (`cache_outbox_error`) and harmless: the record is
    /// delivered again by the next poll, and invalidations are idempotent.
    ///
    /// # Errors
    /// As [`commit`](Self::commit); the record then stays undelivered.
    pub async fn commit_recorded(self, outbox_id: u64) -> Result<u64, CommitError> {
        self.run(Some(outbox_id)).await
    }

    async fn run(self, outbox_id: Option<u64>) -> Result<u64, CommitError> {
        if self.is_empty() {
            if let Some(id) = outbox_id {
                self.cache.outbox_delivered(&[id]).await;
            }
            return Ok(0);
        }
        if !self.cache.is_enabled() {
            return Err(CommitError {
                error: CacheError::Disabled,
                pending: self,
            });
        }
        self.cache.begin_invalidation();
        match self.cache.deliver_or_queue(&self.tags, &self.keys).await {
            Ok(n) => {
                tracing::info!(name: "cache_invalidated", event = "cache_invalidated", tags = ?self.tags, keys = self.keys.len(), deleted = n, outbox_id, "deferred invalidation committed");
                if let Some(id) = outbox_id {
                    self.cache.outbox_delivered(&[id]).await;
                }
                Ok(n)
            }
            Err(CacheError::Queued) => Ok(0),
            Err(error) => Err(CommitError {
                error,
                pending: self,
            }),
        }
    }
}

/// A failed [`PendingInvalidation::commit`]: the error and what is still to be invalidated.
#[derive(Debug, thiserror::Error)]
#[error("deferred invalidation failed: {error}")]
pub struct CommitError {
    /// Why it failed.
    #[source]
    pub error: CacheError,
    /// The work still to do; call `commit` on it again to retry.
    pub pending: PendingInvalidation,
}
