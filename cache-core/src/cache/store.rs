//! Envelopes, guarded stores, version snapshots, and the freshness check that decides what a
//! flight hands its followers.
//!
//! # Why every fill is guarded
//! A fill reads the versions of everything that can invalidate its entry *before* its loader
//! runs: the namespace generation (bumped by pattern deletes and `clear`), the entry's key id
//! (bumped by deletes by key) and each of its tags. The store is conditional on those versions
//! being unchanged, atomically on the backend. So a value loaded before an invalidation is never
//! stored after the invalidation returned, whichever kind of invalidation it was.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::Cache;
use crate::backend::{Guard, Put, VersionRead};
use crate::codec::{duration_ms, EnvelopeMeta, Header};
use crate::error::CacheError;
use crate::flight::{Landing, LeaderGuard};
use crate::key::CacheKey;
use crate::policy::Policy;
use crate::stats::{add, inc};

/// The version ids a fill depends on: the namespace generation, the key id, then one per tag
/// (the tag ids are also the indexes the entry is added to).
#[derive(Debug)]
pub(crate) struct FillIds {
    ids: Vec<String>,
}

impl FillIds {
    /// Every id, in snapshot order.
    pub(crate) fn all(&self) -> &[String] {
        &self.ids
    }

    /// The tag ids.
    pub(crate) fn tags(&self) -> &[String] {
        &self.ids[2..]
    }
}

impl Cache {
    /// The ids a fill of `key` under `policy` must guard on.
    pub(crate) fn fill_ids(&self, key: &CacheKey, policy: &Policy) -> FillIds {
        let mut ids = Vec::with_capacity(2 + policy.tags.len());
        ids.push(self.inner.generation_id.clone());
        ids.push(self.key_id(key));
        ids.extend(policy.tags.iter().map(|t| self.tag_id(t)));
        FillIds { ids }
    }

    /// Reads the current versions of `ids` in one round trip. `None` when the backend failed:
    /// the fill then cannot be proven race-free and is not stored.
    pub(crate) async fn read_versions(&self, ids: &[String], key: &CacheKey) -> Option<Vec<u64>> {
        let reads = anchored(key.as_str(), ids);
        self.read_versions_at(&reads, key).await
    }

    /// Reads the versions of `reads` (each for its own entry) in one call; `key` names the
    /// request in error reports.
    pub(crate) async fn read_versions_at(
        &self,
        reads: &[VersionRead<'_>],
        key: &CacheKey,
    ) -> Option<Vec<u64>> {
        if reads.is_empty() {
            return Some(Vec::new());
        }
        let backend = &self.inner.backend;
        match self.call(self.deadline(), || backend.versions(reads)).await {
            Ok(v) if v.len() == reads.len() => Some(v),
            Ok(_) => None,
            Err(e) => {
                self.record_error(key.resource(), "versions", key.as_str(), &e);
                None
            }
        }
    }

    /// Seals the leader's flight and lands it. A value is handed to the followers only if no
    /// invalidation of the entry happened since `before` was read (the snapshot taken before the
    /// loader ran): every follower joined before the seal, so an invalidation that returned
    /// before any of them began shows in the versions read after it. When the backend cannot be
    /// asked, the check falls back on this handle's own invalidations (`epoch`).
    pub(crate) async fn land(
        &self,
        mut leader: LeaderGuard<'_>,
        ids: &FillIds,
        before: Option<&[u64]>,
        epoch: u64,
        key: &CacheKey,
        landing: Landing,
    ) {
        if !matches!(landing, Landing::Value(_)) || leader.seal() == 0 {
            leader.land(landing);
            return;
        }
        let unchanged = match before {
            Some(before) => match self.read_versions(ids.all(), key).await {
                Some(now) => now == before,
                None => self.epoch() == epoch,
            },
            None => self.epoch() == epoch,
        };
        if !unchanged {
            debug!(name: "cache_flight_retry", event = "cache_flight_retry", key = key.as_str(), "invalidated while loading; followers load again");
        }
        leader.land(if unchanged { landing } else { Landing::Retry });
    }

    /// The envelope metadata for `policy`: TTL (with jitter), windows, tags, and the versions the
    /// value was loaded under (see [`Cache::recorded_versions`]).
    pub(crate) fn envelope_meta<'p>(
        &self,
        policy: &'p Policy,
        recompute: Duration,
        versions: &'p [u64],
    ) -> EnvelopeMeta<'p> {
        let s = &self.inner.settings;
        let mut ttl = policy.ttl.unwrap_or(s.default_ttl);
        if s.ttl_jitter > 0.0 {
            ttl = crate::ttl::jitter(ttl, s.ttl_jitter);
        }
        EnvelopeMeta {
            created_at_ms: 0,
            ttl,
            stale_while_revalidate: policy.stale_while_revalidate,
            stale_if_error: policy.stale_if_error,
            recompute,
            tags: &policy.tags,
            versions,
            compress_above: s.compress_above,
        }
    }

    /// How long the backend keeps an entry stored under `policy` (TTL plus stale windows).
    pub(crate) fn keep_for(&self, header: &Header) -> Duration {
        header.ttl() + header.stale_while_revalidate().max(header.stale_if_error())
    }

    /// Whether an encoded entry fits the maximum entry size; a larger one is counted and logged.
    pub(crate) fn fits(&self, key: &CacheKey, len: usize) -> Result<(), CacheError> {
        let max = self.inner.settings.max_entry_size;
        if len <= max {
            return Ok(());
        }
        self.inner.stats.record(key.resource(), |c| inc(&c.skips));
        info!(name: "cache_skip", event = "cache_skip", key = key.as_str(), size = len, max, reason = "too_large", "value larger than max entry size; not cached");
        Err(CacheError::TooLarge { size: len, max })
    }

    /// Stores an encoded envelope, guarded by `guard` when given. `Ok(false)`: the guard saw an
    /// invalidation and the value was not stored.
    pub(crate) async fn store(
        &self,
        key: &CacheKey,
        bytes: &[u8],
        tags: &[String],
        guard: Option<Guard<'_>>,
    ) -> Result<bool, CacheError> {
        self.fits(key, bytes.len())?;
        let header = Header::parse(bytes)?;
        let put = Put {
            key: key.as_str(),
            value: bytes,
            ttl: self.keep_for(&header),
            tags,
            guard,
        };
        let backend = &self.inner.backend;
        match self
            .call(self.deadline(), || backend.put(std::slice::from_ref(&put)))
            .await
        {
            Ok(stored) if stored.first() == Some(&true) => {
                self.inner.stats.record(key.resource(), |c| {
                    inc(&c.sets);
                    add(&c.bytes_written, bytes.len() as u64);
                });
                if self.inner.oom.swap(false, Ordering::Relaxed) {
                    info!(name: "cache_store_recovered", event = "cache_store_recovered", "the backend stores values again");
                }
                debug!(name: "cache_miss_stored", event = "cache_miss_stored", key = key.as_str(), size = bytes.len(), ttl_ms = duration_ms(header.ttl()), "value stored");
                #[cfg(feature = "analytics")]
                self.analytics().record_store(key, tags);
                Ok(true)
            }
            Ok(_) => {
                self.inner
                    .stats
                    .record(key.resource(), |c| inc(&c.rejected_fills));
                debug!(name: "cache_skip", event = "cache_skip", key = key.as_str(), reason = "invalidated_during_load", "invalidated while loading; value not stored");
                Ok(false)
            }
            Err(e) => {
                self.inner.stats.record(key.resource(), |c| inc(&c.errors));
                if !e.is_oom() {
                    warn!(name: "cache_store_error", event = "cache_store_error", key = key.as_str(), error = %e, "could not store value");
                } else if !self.inner.oom.swap(true, Ordering::Relaxed) {
                    // Once per episode, not per request: every store fails until memory frees.
                    warn!(name: "cache_store_oom", event = "cache_store_oom", key = key.as_str(), error = %e, "Redis is full (maxmemory, noeviction): values are not stored until memory frees; reads and invalidations go on");
                }
                Err(e)
            }
        }
    }

    /// Stores a fill's envelope guarded by the versions read before its loader ran, and says
    /// what its flight may hand the followers: the bytes (checked again by [`land`](Self::land))
    /// unless the guard already saw an invalidation.
    pub(crate) async fn store_fill(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
        ids: &FillIds,
        before: Option<&[u64]>,
    ) -> (bool, Landing) {
        let Some(versions) = before else {
            return (false, Landing::Value(bytes.clone()));
        };
        let guard = Guard {
            ids: ids.all(),
            versions,
        };
        match self.store(key, bytes, ids.tags(), Some(guard)).await {
            Ok(true) => {
                self.inner.flights.note_stored(key.as_str());
                (true, Landing::Value(bytes.clone()))
            }
            Ok(false) => (false, Landing::Retry),
            Err(_) => (false, Landing::Value(bytes.clone())),
        }
    }
}

/// The reads of `ids`, all for the entry `anchor`.
pub(crate) fn anchored<'a>(anchor: &'a str, ids: &'a [String]) -> Vec<VersionRead<'a>> {
    ids.iter().map(|id| VersionRead { anchor, id }).collect()
}
