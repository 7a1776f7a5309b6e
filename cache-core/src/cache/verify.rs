//! Verified hits, for a Redis that may evict keys.
//!
//! Under `maxmemory` with a policy other than `noeviction` (`allkeys-lru`, `volatile-ttl`, ...),
//! Redis may evict a tag's index while entries carrying the tag stay: an invalidation of the tag
//! then cannot find them. It may also evict a version counter, which would then read as it did
//! before an invalidation. So, when the backend says it may evict
//! ([`Backend::may_evict`](crate::backend::Backend::may_evict), read at first use and every 30 s):
//!
//! * a fill's snapshot **creates** the missing version counters of the namespace generation and
//!   of its tags with a fresh value (never reused), and the entry **records** those versions in
//!   its envelope;
//! * every **hit checks** them: the entry is served only if the namespace generation and each of
//!   its tags still have the recorded (non-zero) version. The versions are fetched in the same
//!   round trip as the entry (a pipelined `MGET`) when the caller names the entry's tags (every
//!   read-through does), else in a second one.
//!
//! An invalidation bumps the versions even when it finds no index, and a vanished version reads
//! as `0`, which no recorded version is: either way the old entry is a miss, never a stale hit.
//! Without eviction (`noeviction`, the recommended setting, or no `maxmemory`) none of this runs:
//! a hit stays one `GET`. Once an instance has seen Redis evicting it keeps verifying, even if
//! the policy goes back to `noeviction`: entries left behind while it evicted may still be
//! there. (An instance that never saw the evicting period, because it was shorter than the one
//! second between checks and no invalidation of its own ran meanwhile, cannot know; keep the
//! policy stable.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use super::Cache;
use crate::backend::VersionRead;
use crate::codec::{now_ms, Header};
use crate::key::CacheKey;
use crate::policy::Policy;
use crate::stats::inc;

/// `verify` states.
const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

/// How often the eviction policy is read again (it may change at runtime; each invalidation
/// also reports it).
const RECHECK: Duration = Duration::from_secs(1);

impl Cache {
    /// Whether hits are verified (the backend may evict keys). Reads the policy at first use
    /// (inline) and every 30 s (in the background).
    pub(crate) async fn verifying(&self) -> bool {
        let state = self.inner.verify.load(Ordering::Acquire);
        let due = now_ms().saturating_sub(self.inner.verify_checked_ms.load(Ordering::Relaxed))
            >= RECHECK.as_millis() as u64;
        match state {
            UNKNOWN => self.check_eviction().await,
            _ if due => {
                self.inner
                    .verify_checked_ms
                    .store(now_ms(), Ordering::Relaxed);
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let cache = self.clone();
                    handle.spawn(async move {
                        cache.check_eviction().await;
                    });
                }
                state == ON
            }
            _ => state == ON,
        }
    }

    /// Takes what the last invalidation said of eviction into account.
    pub(crate) fn note_eviction_hint(&self) {
        if let Some(evicts) = self.inner.backend.eviction_hint() {
            self.set_verifying(evicts);
        }
    }

    /// Verification is sticky: once Redis was seen evicting, entries it left behind (a tag
    /// index evicted, so an invalidation could not delete them) may still be there when the
    /// policy goes back to `noeviction`, so this instance keeps verifying.
    fn set_verifying(&self, evicts: bool) {
        if !evicts {
            let _ = self.inner.verify.compare_exchange(
                UNKNOWN,
                OFF,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return;
        }
        let old = self.inner.verify.swap(ON, Ordering::AcqRel);
        if old != ON {
            info!(name: "cache_verified_hits", event = "cache_verified_hits", "Redis may evict keys (maxmemory with a policy other than noeviction): every hit is checked against the versions it was stored with; prefer maxmemory-policy noeviction");
        }
    }

    async fn check_eviction(&self) -> bool {
        let backend = &self.inner.backend;
        let evicts = match self.call(self.deadline(), || backend.may_evict()).await {
            Ok(evicts) => evicts,
            // Unknown (the backend does not answer): decided at the next call.
            Err(_) => return self.inner.verify.load(Ordering::Acquire) == ON,
        };
        self.inner
            .verify_checked_ms
            .store(now_ms(), Ordering::Relaxed);
        self.set_verifying(evicts);
        evicts
    }

    /// Reads the versions of a fill's ids; under eviction, creates the missing ones, except key
    /// ids (a deleted entry is gone, it needs no version to be found stale).
    pub(crate) async fn snapshot_versions(
        &self,
        ids: &[String],
        key: &CacheKey,
    ) -> Option<Vec<u64>> {
        let reads = super::store::anchored(key.as_str(), ids);
        self.snapshot_versions_at(&reads, key).await
    }

    /// [`snapshot_versions`](Self::snapshot_versions) of reads made for several entries.
    pub(crate) async fn snapshot_versions_at(
        &self,
        reads: &[VersionRead<'_>],
        key: &CacheKey,
    ) -> Option<Vec<u64>> {
        if reads.is_empty() || !self.verifying().await {
            return self.read_versions_at(reads, key).await;
        }
        let create: Vec<bool> = reads
            .iter()
            .map(|r| !r.id.starts_with(&self.inner.key_id_prefix))
            .collect();
        let retention = self.inner.settings.tag_version_retention;
        let backend = &self.inner.backend;
        match self
            .call(self.deadline(), || {
                backend.versions_or_create(reads, &create, retention)
            })
            .await
        {
            Ok(v) if v.len() == reads.len() => Some(v),
            Ok(_) => None,
            Err(e) => {
                self.record_error(key.resource(), "versions", key.as_str(), &e);
                None
            }
        }
    }

    /// Verifies entries read together (one more round trip for all of them): `false` for those
    /// whose versions changed.
    pub(crate) async fn verify_many(&self, keys: &[CacheKey], raws: &[Option<Bytes>]) -> Vec<bool> {
        let mut tags: Vec<String> = Vec::new();
        let mut parsed: Vec<Option<Header>> = Vec::with_capacity(raws.len());
        for raw in raws {
            let header = raw.as_ref().and_then(|b| Header::parse(b).ok());
            if let (Some(bytes), Some(h)) = (raw, &header) {
                for t in crate::codec::Envelope::with_header(bytes, *h).tags() {
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_owned());
                    }
                }
            }
            parsed.push(header);
        }
        let ids: Vec<String> = std::iter::once(self.inner.generation_id.clone())
            .chain(tags.iter().map(|t| self.tag_id(t)))
            .collect();
        // Each entry's versions are read where its bookkeeping lives (its anchor).
        let reads: Vec<VersionRead<'_>> = keys
            .iter()
            .flat_map(|k| super::store::anchored(k.as_str(), &ids))
            .collect();
        let current = match keys.first() {
            Some(first) => self.read_versions_at(&reads, first).await,
            None => None,
        };
        raws.iter()
            .zip(&parsed)
            .zip(keys)
            .enumerate()
            .map(|(i, ((raw, header), key))| {
                let (Some(bytes), Some(header), Some(current)) = (raw, header, &current) else {
                    return raw.is_none();
                };
                let current = &current[i * ids.len()..(i + 1) * ids.len()];
                let valid = Self::matches_recorded(bytes, header, &tags, current) == Some(true);
                if !valid {
                    self.inner
                        .stats
                        .record(key.resource(), |c| inc(&c.rejected_hits));
                }
                valid
            })
            .collect()
    }

    /// The versions an entry records: the namespace generation, then one per tag of the policy
    /// (from a fill snapshot ordered generation, key id, tags).
    pub(crate) fn recorded_versions(snapshot: Option<&[u64]>) -> Vec<u64> {
        match snapshot {
            Some(v) if v.len() >= 2 => std::iter::once(v[0])
                .chain(v[2..].iter().copied())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The ids a verified lookup under `policy` reads with the entry: the generation, then the
    /// policy's tags.
    pub(crate) fn lookup_ids(&self, policy: &Policy) -> Vec<String> {
        std::iter::once(self.inner.generation_id.clone())
            .chain(policy.tags.iter().map(|t| self.tag_id(t)))
            .collect()
    }

    /// Whether the entry's recorded versions match `current` (the generation, then the versions
    /// of `tags`): `Some(true)` valid, `Some(false)` stale, `None` when the entry carries a tag
    /// not in `tags` (it must be checked with [`verify_entry`](Self::verify_entry)).
    pub(crate) fn matches_recorded(
        bytes: &[u8],
        header: &Header,
        tags: &[String],
        current: &[u64],
    ) -> Option<bool> {
        let Some(mut recorded) = header.versions(bytes) else {
            return Some(false); // not recorded: cannot be verified
        };
        let gen = recorded.next().unwrap_or(0);
        if gen == 0 || current.first() != Some(&gen) {
            return Some(false);
        }
        let env = crate::codec::Envelope::with_header(bytes, *header);
        for (tag, version) in env.tags().zip(recorded) {
            let i = tags.iter().position(|t| t == tag)?;
            if version == 0 || current.get(i + 1) != Some(&version) {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Checks an entry against the current versions of its own tags (one more round trip).
    pub(crate) async fn verify_entry(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
        header: &Header,
    ) -> bool {
        let tags: Vec<String> = crate::codec::Envelope::with_header(bytes, *header)
            .tags()
            .map(str::to_owned)
            .collect();
        let ids: Vec<String> = std::iter::once(self.inner.generation_id.clone())
            .chain(tags.iter().map(|t| self.tag_id(t)))
            .collect();
        let Some(current) = self.read_versions(&ids, key).await else {
            return false;
        };
        let valid = Self::matches_recorded(bytes, header, &tags, &current) == Some(true);
        if !valid {
            self.inner
                .stats
                .record(key.resource(), |c| inc(&c.rejected_hits));
        }
        valid
    }
}
