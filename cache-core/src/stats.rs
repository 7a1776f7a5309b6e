//! Counters, in total and per resource.
//!
//! Every operation of the engine updates a few relaxed atomic counters: once for the total and
//! once for the resource the key belongs to. [`Cache::stats`](crate::Cache::stats) returns a
//! [`StatsSnapshot`] (serializable, used by the admin endpoints).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// The counters kept for the total and for each resource.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) l1_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) bypasses: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skips: AtomicU64,
    pub(crate) rejected_fills: AtomicU64,
    pub(crate) rejected_hits: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
}

/// One set of counter values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CounterValues {
    /// Fresh values served from the cache.
    pub hits: u64,
    /// Of the hits (fresh and stale), those served by the in-process tier (L1) without a round
    /// trip; the rest came from the shared backend.
    pub l1_hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Stale values served (stale-while-revalidate or stale-if-error).
    pub stale: u64,
    /// Lookups skipped on request (bypass), entry refreshed.
    pub bypasses: u64,
    /// Entries stored.
    pub sets: u64,
    /// Entries deleted by key or pattern.
    pub deletes: u64,
    /// Tag invalidations (entries removed through tags).
    pub invalidations: u64,
    /// Backend errors, timeouts and undecodable entries.
    pub errors: u64,
    /// Values not stored: too large, or the cache was unavailable.
    pub skips: u64,
    /// Fills not stored because a tag they carry was invalidated while they loaded.
    pub rejected_fills: u64,
    /// Entries found but not served: an invalidation concerning them is queued, or (when Redis
    /// may evict keys) their versions changed since they were stored.
    pub rejected_hits: u64,
    /// Loader runs.
    pub loads: u64,
    /// Bytes read from the backend on hits (L1 hits read none).
    pub bytes_read: u64,
    /// Bytes written to the backend.
    pub bytes_written: u64,
}

impl CounterValues {
    /// Hits (fresh and stale) as a percentage of lookups, `0.0` when there were none.
    pub fn hit_rate_percent(&self) -> f64 {
        let served = self.hits + self.stale;
        let total = served + self.misses;
        if total == 0 {
            0.0
        } else {
            (served as f64 * 10_000.0 / total as f64).round() / 100.0
        }
    }
}

impl Counters {
    fn values(&self) -> CounterValues {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            hits: l(&self.hits),
            l1_hits: l(&self.l1_hits),
            misses: l(&self.misses),
            stale: l(&self.stale),
            bypasses: l(&self.bypasses),
            sets: l(&self.sets),
            deletes: l(&self.deletes),
            invalidations: l(&self.invalidations),
            errors: l(&self.errors),
            skips: l(&self.skips),
            rejected_fills: l(&self.rejected_fills),
            rejected_hits: l(&self.rejected_hits),
            loads: l(&self.loads),
            bytes_read: l(&self.bytes_read),
            bytes_written: l(&self.bytes_written),
        }
    }

    fn reset(&self) {
        for c in [
            &self.hits,
            &self.l1_hits,
            &self.misses,
            &self.stale,
            &self.bypasses,
            &self.sets,
            &self.deletes,
            &self.invalidations,
            &self.errors,
            &self.skips,
            &self.rejected_fills,
            &self.rejected_hits,
            &self.loads,
            &self.bytes_read,
            &self.bytes_written,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Totals over all resources.
    pub total: CounterValues,
    /// Per resource name.
    pub resources: BTreeMap<String, CounterValues>,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    total: Counters,
    resources: RwLock<HashMap<Box<str>, Counters>>,
}

impl Stats {
    /// Applies `f` to the total and to the resource's counters.
    #[inline]
    pub(crate) fn record(&self, resource: &str, f: impl Fn(&Counters)) {
        f(&self.total);
        // Common case: the resource is known; increment under the shared lock, no clone.
        if let Some(counters) = self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
        {
            f(counters);
            return;
        }
        let mut map = self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(resource.into()).or_default());
    }

    pub(crate) fn total(&self) -> &Counters {
        &self.total
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let resources = self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.to_string(), v.values()))
            .collect();
        StatsSnapshot {
            total: self.total.values(),
            resources,
        }
    }

    pub(crate) fn reset(&self) {
        self.total.reset();
        for c in self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            c.reset();
        }
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_total_and_per_resource() {
        let s = Stats::default();
        s.record("trig", |c| inc(&c.hits));
        s.record("trig", |c| inc(&c.misses));
        s.record("user", |c| inc(&c.hits));
        let snap = s.snapshot();
        assert_eq!(snap.total.hits, 2);
        assert_eq!(snap.resources["trig"].hits, 1);
        assert_eq!(snap.resources["trig"].misses, 1);
        assert_eq!(snap.resources["trig"].hit_rate_percent(), 50.0);
        s.reset();
        assert_eq!(s.snapshot().total, CounterValues::default());
    }
}
