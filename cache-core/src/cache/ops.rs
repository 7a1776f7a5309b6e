//! Explicit operations: stores, deletes, invalidation, pattern deletes, counters. Unlike reads,
//! these report backend failures: a lost write or invalidation must not pass silently.

use std::time::Duration;

use serde::Serialize;
use tracing::info;

use super::Cache;
use crate::backend::{BackendInfo, Invalidation};
use crate::error::CacheError;
use crate::key::CacheKey;
use crate::policy::Policy;
use crate::stats::{add, inc, StatsSnapshot};
use crate::tags::PendingInvalidation;

/// What [`Cache::clear`] deletes in `namespace`: every entry (all schema versions) and the tag
/// indexes.
pub(super) fn clear_patterns(namespace: &str) -> [String; 2] {
    let ns = escape_glob(namespace);
    [format!("{ns}:v*"), format!("{ns}:t:*:k")]
}

pub(super) fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Cache {
    /// Stores a value unconditionally with the policy's TTL, windows and tags.
    ///
    /// # Errors
    /// The backend failure, [`CacheError::TooLarge`], [`CacheError::Encode`] or
    /// [`CacheError::Disabled`].
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        policy: impl Into<Policy>,
    ) -> Result<(), CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let policy = policy.into();
        // Under eviction an entry records the versions it was stored under (see `verify.rs`).
        let recorded = if self.verifying().await {
            let ids = self.lookup_ids(&policy);
            self.snapshot_versions(&ids, key).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let meta = self.envelope_meta(&policy, Duration::ZERO, &recorded);
        let bytes = self.inner.settings.codec.encode_envelope(value, &meta)?;
        let tags: Vec<String> = policy.tags.iter().map(|t| self.tag_id(t)).collect();
        let stored = self.store(key, &bytes, &tags, None).await.map(|_| ());
        self.announce_set(key).await;
        stored
    }

    /// After an explicit store of `key`: this instance's L1 forgets the old value, and the
    /// others are told to (a `k` notice), so no L1 keeps serving what `set` replaced. A notice
    /// that cannot be published is logged: the other instances' L1 then keep the old value at
    /// most until its freshness ends.
    async fn announce_set(&self, key: &CacheKey) {
        let notice = crate::backend::notice_parts([], [key.as_str()], []);
        if let Some(l1) = self.l1() {
            l1.apply(notice.as_bytes());
        }
        let backend = &self.inner.backend;
        let channel = self.inner.channel.as_str();
        if let Err(e) = self
            .call(self.deadline(), || backend.publish(channel, &notice))
            .await
        {
            tracing::warn!(name: "cache_notice_failed", event = "cache_notice_failed", key = key.as_str(), error = %e, "could not publish the notice of a set; other instances' L1 may serve the old value until it expires");
        }
    }

    /// Deletes one entry; `Ok(true)` if it existed. A fill of `key` that began before the delete
    /// is not stored after it.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        Ok(self.delete_many(std::slice::from_ref(key)).await? > 0)
    }

    /// Deletes entries by key, atomically; returns how many existed. A fill of one of these keys
    /// that began before the delete is not stored after it.
    ///
    /// # Errors
    /// [`CacheError::Queued`] when the backend did not answer within the invalidation deadline:
    /// the delete is not lost, it is replayed as soon as the backend answers and this instance
    /// serves none of these entries until then (see [`crate::durable`]). [`CacheError::Disabled`]
    /// when caching is off.
    pub async fn delete_many(&self, keys: &[CacheKey]) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        if keys.is_empty() {
            return Ok(0);
        }
        self.begin_invalidation();
        let n = self.deliver_or_queue(&[], keys).await?;
        for key in keys {
            self.inner.stats.record(key.resource(), |c| inc(&c.deletes));
        }
        info!(name: "cache_invalidated", event = "cache_invalidated", keys = ?keys.iter().map(CacheKey::as_str).collect::<Vec<_>>(), deleted = n, "cache keys deleted");
        Ok(n)
    }

    /// Invalidates every entry carrying any of `tags`, atomically, at a cost proportional to the
    /// number of entries carrying them (never to the size of the keyspace). A fill that began
    /// before this call and finishes after it is not stored, and a read that begins after it
    /// returns never receives a value loaded before it (not even from another caller's load in
    /// flight).
    ///
    /// # Errors
    /// [`CacheError::Queued`] when the backend did not answer within the
    /// [invalidation deadline](crate::CacheBuilder::invalidation_timeout): the invalidation is
    /// **not lost**, it is replayed in order as soon as the backend answers, and this instance
    /// serves no entry carrying these tags until then (see [`crate::durable`]).
    /// [`CacheError::Disabled`] when caching is off.
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        if tags.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = tags.iter().map(|t| t.as_ref().to_owned()).collect();
        self.begin_invalidation();
        let n = self.deliver_or_queue(&names, &[]).await?;
        add(&self.inner.stats.total().invalidations, n);
        info!(name: "cache_invalidated", event = "cache_invalidated", tags = ?names, deleted = n, "cache tags invalidated");
        Ok(n)
    }

    /// One atomic invalidation on the backend within `deadline`.
    pub(crate) async fn invalidate_within(
        &self,
        inv: Invalidation<'_>,
        deadline: Duration,
    ) -> Result<u64, CacheError> {
        let backend = &self.inner.backend;
        let result = self.call(deadline, || backend.invalidate(&inv)).await;
        // Read your writes: this instance's L1 forgets the entries before the call returns,
        // delivered or not (a queued invalidation is replayed later, and publishes then).
        if let Some(l1) = self.l1() {
            l1.apply(crate::backend::notice(&inv).as_bytes());
        }
        let n = result?;
        self.note_eviction_hint();
        Ok(n)
    }

    /// One atomic invalidation for an operator call (pattern deletes, `clear`), marked in this
    /// handle's epoch first.
    async fn invalidate(&self, inv: Invalidation<'_>) -> Result<u64, CacheError> {
        self.begin_invalidation();
        self.invalidate_within(inv, self.inner.settings.admin_timeout.max(self.deadline()))
            .await
    }

    /// Bumps the namespace generation: every fill in flight in this namespace is then refused
    /// at its store (pattern deletes cannot know which keys a fill in flight will write).
    async fn bump_generation(&self) -> Result<(), CacheError> {
        let id = self.inner.generation_id.as_str();
        self.invalidate(Invalidation {
            tags: &[],
            keys: &[],
            bump: &[id],
            retention: self.inner.settings.tag_version_retention,
            channel: &self.inner.channel,
        })
        .await
        .map(|_| ())
    }

    /// Deletes every key of this namespace matching a Redis glob pattern (operators only),
    /// with `SCAN` + `UNLINK` in batches, never `KEYS`. The pattern is relative to the keyspace
    /// prefix `{namespace}:v{version}:`, so `trig:*` deletes every `trig` entry. Fills in flight
    /// when it starts are not stored.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for patterns with whitespace or control characters, or the
    /// backend failure.
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let full = self.full_pattern(pattern)?;
        self.bump_generation().await?;
        let backend = &self.inner.backend;
        let n = self
            .call(self.inner.settings.admin_timeout, || {
                backend.delete_pattern(&full, 500)
            })
            .await?;
        // Once more, now that the keys are gone: an instance that refilled its L1 from the
        // backend between the first bump's notice and the deletes drops those entries.
        self.bump_generation().await?;
        add(&self.inner.stats.total().deletes, n);
        info!(name: "cache_delete_pattern", event = "cache_delete_pattern", pattern = %full, deleted = n, "cache pattern deleted");
        self.after_flush();
        Ok(n)
    }

    /// The backend pattern of an operator's `pattern` (relative to the keyspace prefix).
    pub(super) fn full_pattern(&self, pattern: &str) -> Result<String, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        self.inner
            .keyspace
            .pattern(pattern)
            .map_err(CacheError::InvalidArgument)
    }

    /// Deletes every entry of this namespace (all schema versions) and its tag indexes. Version
    /// counters are kept, so fills in flight are still refused at their store.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn clear(&self) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        self.bump_generation().await?;
        let backend = &self.inner.backend;
        let mut n = 0;
        for pattern in clear_patterns(self.inner.keyspace.namespace()) {
            n += self
                .call(self.inner.settings.admin_timeout, || {
                    backend.delete_pattern(&pattern, 500)
                })
                .await?;
        }
        // See `delete_pattern`: entries refilled into some L1 during the deletes are dropped.
        self.bump_generation().await?;
        add(&self.inner.stats.total().deletes, n);
        info!(name: "cache_delete_pattern", event = "cache_delete_pattern", namespace = %self.inner.keyspace.namespace(), deleted = n, "cache namespace cleared");
        self.after_flush();
        Ok(n)
    }

    /// Collects tags and keys to invalidate after a database transaction commits; see
    /// [`PendingInvalidation`].
    pub fn defer(&self) -> PendingInvalidation {
        PendingInvalidation::new(self.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Resets every counter to zero.
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// Server statistics from the backend (keys, memory, keyspace hits and misses, clients).
    ///
    /// # Errors
    /// The backend failure.
    pub async fn backend_info(&self) -> Result<BackendInfo, CacheError> {
        let backend = &self.inner.backend;
        self.call(
            self.inner
                .settings
                .admin_timeout
                .min(Duration::from_secs(5)),
            || backend.info(),
        )
        .await
    }
}
