//! Fragments: many entries read in one round trip, the missing ones loaded together and stored
//! in one round trip, each guarded like any fill (see [`crate::fragments`]).

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tracing::warn;

use super::store::FillIds;
use super::Cache;
use crate::backend::{Guard, Put};
use crate::codec::{now_ms, Freshness, Header};
use crate::fragments::Fragment;
use crate::key::CacheKey;
use crate::policy::{CacheStatus, Fetched, Tier};
use crate::stats::{add, inc};

/// What a multi-get found: one slot per key, whether it came from L1, and the L1 ticket taken
/// before the backend was read (for the fills of the missing ones).
pub(crate) struct Found {
    slots: Vec<Option<Bytes>>,
    from_l1: Vec<bool>,
    ticket: Option<u64>,
}

/// A loaded fragment ready to store: index, ids, envelope, expected versions, header.
type EncodedFragment<'a> = (usize, &'a FillIds, Vec<u8>, Vec<u64>, Header);

impl Cache {
    /// Reads many entries in one round trip; one slot per key, `None` for misses, errors and
    /// entries past every window.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[CacheKey]) -> Vec<Option<T>> {
        let Some(raw) = self.get_many_raw(keys).await else {
            return keys.iter().map(|_| None).collect();
        };
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        for (slot, (key, l1)) in raw.slots.into_iter().zip(keys.iter().zip(raw.from_l1)) {
            out.push(match (slot, key) {
                (Some(bytes), key) => self.decode_servable(key, &bytes, l1).map(|f| f.value),
                (None, key) => {
                    self.inner.stats.record(key.resource(), |c| inc(&c.misses));
                    None
                }
            });
        }
        out
    }

    /// Reads many fragments in one round trip, calls `loader` once with the indices of the
    /// missing ones (it returns their values in that order), stores those in one round trip and
    /// returns every value in fragment order. See [`crate::fragments`] for a worked example, and
    /// [`fetch_many`](Self::fetch_many) for the status of each fragment.
    ///
    /// Fragments are not single-flighted against each other; each store is guarded by the
    /// versions of its key and tags read before the loader ran, like every fill.
    ///
    /// # Errors
    /// The loader's error (nothing is stored then).
    ///
    /// # Panics
    /// If the loader returns a different number of values than it was asked for.
    pub async fn get_many_or_load<T, E, F, Fut>(
        &self,
        fragments: &[Fragment],
        loader: F,
    ) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
    {
        let fetched = self.fetch_many(fragments, loader).await?;
        Ok(fetched.into_iter().map(|f| f.value).collect())
    }

    /// [`get_many_or_load`](Self::get_many_or_load) with each fragment's outcome: `Hit` or
    /// `Stale` when served from the cache, `Miss` when loaded, `Skip` when loaded because the
    /// cache was unavailable or off (then nothing is stored). An HTTP route built from fragments
    /// answers `X-Cache-Status` from them (`SKIP` if any was skipped, `HIT` if all hit).
    ///
    /// # Errors
    /// The loader's error (nothing is stored then).
    ///
    /// # Panics
    /// If the loader returns a different number of values than it was asked for.
    pub async fn fetch_many<T, E, F, Fut>(
        &self,
        fragments: &[Fragment],
        loader: F,
    ) -> Result<Vec<Fetched<T>>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
    {
        let keys: Vec<CacheKey> = fragments.iter().map(|f| f.key.clone()).collect();
        let raw = self.get_many_raw(&keys).await;
        let available = raw.is_some();
        let raw = raw.unwrap_or_else(|| Found {
            slots: vec![None; keys.len()],
            from_l1: vec![false; keys.len()],
            ticket: None,
        });
        let ticket = raw.ticket;
        let mut values: Vec<Option<Fetched<T>>> = Vec::with_capacity(fragments.len());
        let mut missing = Vec::new();
        for (i, (slot, key)) in raw.slots.iter().zip(&keys).enumerate() {
            let found = match slot {
                Some(bytes) => self.decode_servable::<T>(key, bytes, raw.from_l1[i]),
                None => {
                    if available {
                        self.inner.stats.record(key.resource(), |c| inc(&c.misses));
                    } else if self.is_enabled() {
                        self.inner.stats.record(key.resource(), |c| inc(&c.skips));
                    }
                    None
                }
            };
            if found.is_none() {
                missing.push(i);
            }
            values.push(found);
        }
        if missing.is_empty() {
            return Ok(values.into_iter().flatten().collect());
        }
        let loaded_status = if available {
            CacheStatus::Miss
        } else {
            CacheStatus::Skip
        };
        // The versions every missing fragment depends on, read in one round trip.
        let fills: Vec<FillIds> = missing
            .iter()
            .map(|&i| self.fill_ids(&keys[i], &fragments[i].policy))
            .collect();
        // Each fragment's versions, read where its bookkeeping lives (its own key).
        let reads: Vec<crate::backend::VersionRead<'_>> = missing
            .iter()
            .zip(&fills)
            .flat_map(|(&i, f)| super::store::anchored(keys[i].as_str(), f.all()))
            .collect();
        let versions = if available {
            self.snapshot_versions_at(&reads, &keys[missing[0]]).await
        } else {
            None
        };
        for &i in &missing {
            self.inner
                .stats
                .record(keys[i].resource(), |c| inc(&c.loads));
        }
        let started = Instant::now();
        let loaded = loader(missing.clone()).await?;
        let recompute = started.elapsed();
        assert_eq!(
            loaded.len(),
            missing.len(),
            "get_many_or_load: the loader must return one value per missing index"
        );
        if let Some(versions) = versions {
            let codec = self.inner.settings.codec;
            let mut encoded: Vec<EncodedFragment<'_>> = Vec::new();
            let mut at = 0;
            for ((&i, value), ids) in missing.iter().zip(&loaded).zip(&fills) {
                let n = ids.all().len();
                let expected: Vec<u64> = versions[at..at + n].to_vec();
                at += n;
                let recorded = Cache::recorded_versions(Some(&expected));
                let meta = self.envelope_meta(&fragments[i].policy, recompute, &recorded);
                let Ok(bytes) = codec.encode_checked(value, &meta) else {
                    continue;
                };
                if self.fits(&keys[i], bytes.len()).is_err() {
                    continue;
                }
                let Ok(header) = Header::parse(&bytes) else {
                    continue;
                };
                encoded.push((i, ids, bytes, expected, header));
            }
            let puts: Vec<Put<'_>> = encoded
                .iter()
                .map(|(i, ids, bytes, expected, header)| Put {
                    key: keys[*i].as_str(),
                    value: bytes,
                    ttl: self.keep_for(header),
                    tags: ids.tags(),
                    guard: Some(Guard {
                        ids: ids.all(),
                        versions: expected,
                    }),
                })
                .collect();
            let backend = &self.inner.backend;
            match self.call(self.deadline(), || backend.put(&puts)).await {
                Ok(stored) => {
                    for ((i, ids, bytes, _, header), ok) in encoded.iter().zip(stored) {
                        if let (true, Some(l1), Some(ticket)) = (ok, self.l1(), ticket) {
                            let bytes = Bytes::copy_from_slice(bytes);
                            l1.insert(ticket, keys[*i].as_str(), &bytes, header, || {
                                self.entry_tag_ids(&bytes, header)
                            });
                        }
                        #[cfg(feature = "analytics")]
                        if ok {
                            self.analytics().record_store(&keys[*i], ids.tags());
                        }
                        #[cfg(not(feature = "analytics"))]
                        let _ = ids;
                        let len = bytes.len() as u64;
                        self.inner.stats.record(keys[*i].resource(), |c| {
                            if ok {
                                inc(&c.sets);
                                add(&c.bytes_written, len);
                            } else {
                                inc(&c.rejected_fills);
                            }
                        });
                    }
                }
                Err(e) => {
                    self.inner
                        .stats
                        .record(keys[missing[0]].resource(), |c| inc(&c.errors));
                    warn!(name: "cache_store_error", event = "cache_store_error", keys = missing.len(), error = %e, "could not store fragments");
                }
            }
        }
        let mut loaded = loaded.into_iter();
        Ok(values
            .into_iter()
            .map(|v| match v {
                Some(v) => v,
                None => Fetched::new(
                    loaded
                        .next()
                        .unwrap_or_else(|| unreachable!("one loaded value per missing index")),
                    loaded_status,
                ),
            })
            .collect())
    }

    /// Reads many entries: those L1 holds from it, the others in one round trip (entering L1 when
    /// fresh). `None` when the backend is unavailable or caching is off.
    pub(crate) async fn get_many_raw(&self, keys: &[CacheKey]) -> Option<Found> {
        if !self.is_enabled() {
            return None;
        }
        let mut found = Found {
            slots: vec![None; keys.len()],
            from_l1: vec![false; keys.len()],
            ticket: None,
        };
        if keys.is_empty() {
            return Some(found);
        }
        self.before_read().await;
        let l1 = self.l1();
        let mut ask: Vec<usize> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match l1.and_then(|l1| l1.get(key.as_str())) {
                Some((bytes, _, _)) => {
                    found.slots[i] = Some(bytes);
                    found.from_l1[i] = true;
                }
                None => ask.push(i),
            }
        }
        found.ticket = l1.and_then(|l1| l1.ticket());
        if ask.is_empty() {
            return Some(found);
        }
        let asked: Vec<CacheKey> = ask.iter().map(|&i| keys[i].clone()).collect();
        let refs: Vec<&str> = asked.iter().map(CacheKey::as_str).collect();
        let backend = &self.inner.backend;
        match self.call(self.deadline(), || backend.get_many(&refs)).await {
            Ok(mut got) if got.len() == asked.len() => {
                if self.verifying().await {
                    let valid = self.verify_many(&asked, &got).await;
                    for (slot, ok) in got.iter_mut().zip(valid) {
                        if !ok {
                            *slot = None;
                        }
                    }
                }
                for (&i, slot) in ask.iter().zip(got) {
                    if let (Some(bytes), Some(l1), Some(ticket)) = (&slot, l1, found.ticket) {
                        if let Ok(header) = Header::parse(bytes) {
                            if !self.withheld(&keys[i], bytes, &header) {
                                l1.insert(ticket, keys[i].as_str(), bytes, &header, || {
                                    self.entry_tag_ids(bytes, &header)
                                });
                            }
                        }
                    }
                    found.slots[i] = slot;
                }
                Some(found)
            }
            Ok(_) => Some(found),
            Err(e) => {
                self.record_error(keys[0].resource(), "get_many", keys[0].as_str(), &e);
                None
            }
        }
    }

    /// Decodes an entry if it is fresh or inside its stale-while-revalidate window, counting the
    /// outcome.
    fn decode_servable<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
        l1: bool,
    ) -> Option<Fetched<T>> {
        let header = match Header::parse(bytes) {
            Ok(h) => h,
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                return None;
            }
        };
        if self.withheld(key, bytes, &header) {
            self.inner.stats.record(key.resource(), |c| inc(&c.misses));
            return None;
        }
        let (freshness, age) = header.freshness(now_ms());
        let status = match freshness {
            Freshness::Fresh => CacheStatus::Hit,
            Freshness::Stale => CacheStatus::Stale,
            Freshness::IfError | Freshness::Expired => {
                self.inner.stats.record(key.resource(), |c| inc(&c.misses));
                return None;
            }
        };
        match crate::codec::Envelope::with_header(bytes, header).decode() {
            Ok(value) => {
                let tier = if l1 { Tier::L1 } else { Tier::Redis };
                self.count_served_from(key, status, bytes.len(), age, tier);
                Some(Fetched {
                    value,
                    status,
                    age,
                    ttl: header.ttl().saturating_sub(age),
                    etag: Some(header.etag()),
                    tier: Some(tier),
                })
            }
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                None
            }
        }
    }
}
