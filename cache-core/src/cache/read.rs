//! The read-through engine. Every cached read goes through [`Cache::read_through`]: typed values
//! (`get_or_load`, `fetch`, ...), `#[cached]` functions, and whole HTTP responses (the response
//! layers and `#[cached]` handlers returning a response). What differs between them is only how
//! a value is encoded and decoded, a [`Format`].
//!
//! One call:
//! 1. **Lookup** (one `GET`, the envelope parsed once). [`Header::freshness`] classifies the
//!    entry: fresh (served), stale (served while one refresh runs), usable only if the loader
//!    fails, or expired.
//! 2. **Miss**: join the key's flight ([`crate::flight`]). The leader reads the versions its
//!    entry depends on, runs the loader, stores the value guarded by those versions, seals its
//!    flight and hands the followers the value only if no invalidation happened meanwhile;
//!    otherwise they load again, one flight at a time. A failed loader's error is shared when the
//!    format can share it, else the followers load one at a time.
//! 3. **Stale-if-error**: when the loader fails and the entry is inside its stale-if-error
//!    window, the stale value is served instead of the error.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tracing::debug;

use super::lease::LeaseOutcome;
use super::Cache;
use crate::codec::{now_ms, Codec, EnvelopeMeta, Freshness, Header};
use crate::error::CacheError;
use crate::flight::{Landing, LeaderGuard, Role, Shared};
use crate::key::CacheKey;
use crate::policy::{CacheStatus, Fetched, Policy, Tier};
use crate::stats::inc;

/// How one kind of value is stored: encoding into an envelope, decoding from one, and what may
/// be shared of a loader's error.
pub(crate) trait Format {
    /// The value cached.
    type Value;
    /// The loader's error (not cached).
    type Error;

    /// Encodes `value` into a complete envelope described by `meta`.
    fn encode(&self, value: &Self::Value, meta: &EnvelopeMeta<'_>) -> Result<Vec<u8>, CacheError>;

    /// Decodes the value of an envelope (`header` is its parsed header).
    fn decode(&self, bytes: &Bytes, header: &Header) -> Result<Self::Value, CacheError>;

    /// Decodes the value of an entry served by L1, whose decoded-value cell is `decoded`
    /// (formats that can share a decoded value use it; the others decode the bytes).
    fn decode_from(
        &self,
        decoded: Option<&super::l1::Decoded>,
        bytes: &Bytes,
        header: &Header,
    ) -> Result<Self::Value, CacheError> {
        let _ = decoded;
        self.decode(bytes, header)
    }

    /// A copy of `error` for the followers of a failed flight, if it can be shared.
    fn share(&self, _error: &Self::Error) -> Option<Shared> {
        None
    }

    /// Rebuilds a shared error.
    fn unshare(&self, _shared: &Shared) -> Option<Self::Error> {
        None
    }

    /// Whether `error` is a failure that a stale-if-error value may replace (an HTTP 404 is an
    /// answer, not a failure).
    fn is_failure(&self, _error: &Self::Error) -> bool {
        true
    }
}

/// Values serialized with the cache's codec. `S` says whether a loader's error is shared with
/// the callers waiting on it ([`Cloned`]) or not ([`Unshared`]: they load one at a time).
pub(crate) struct Serde<T, E, S = Unshared> {
    codec: Codec,
    _value: Types<T, E, S>,
}

/// The types a [`Serde`] format is for (it holds none of them).
type Types<T, E, S> = PhantomData<fn() -> (T, E, S)>;

/// Errors are not shared: callers waiting on a failed load load again, one flight at a time.
#[derive(Debug)]
pub(crate) enum Unshared {}

/// Errors are cloned to the callers waiting on the failed load.
#[derive(Debug)]
pub(crate) enum Cloned {}

/// How a [`Serde`] format shares errors.
pub(crate) trait ShareErrors<E> {
    fn share(error: &E) -> Option<Shared>;
    fn unshare(shared: &Shared) -> Option<E>;
}

impl<E> ShareErrors<E> for Unshared {
    fn share(_: &E) -> Option<Shared> {
        None
    }
    fn unshare(_: &Shared) -> Option<E> {
        None
    }
}

impl<E: Clone + Send + Sync + 'static> ShareErrors<E> for Cloned {
    fn share(error: &E) -> Option<Shared> {
        Some(std::sync::Arc::new(error.clone()))
    }
    fn unshare(shared: &Shared) -> Option<E> {
        let any: &(dyn std::any::Any + Send + Sync) = &**shared;
        any.downcast_ref::<E>().cloned()
    }
}

impl<T, E, S> Clone for Serde<T, E, S> {
    fn clone(&self) -> Self {
        Serde {
            codec: self.codec,
            _value: PhantomData,
        }
    }
}

impl<T, E, S> Serde<T, E, S> {
    pub(crate) fn new(codec: Codec) -> Self {
        Serde {
            codec,
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned, E, S: ShareErrors<E>> Format for Serde<T, E, S> {
    type Value = T;
    type Error = E;

    fn encode(&self, value: &T, meta: &EnvelopeMeta<'_>) -> Result<Vec<u8>, CacheError> {
        self.codec.encode_checked(value, meta)
    }

    fn decode(&self, bytes: &Bytes, header: &Header) -> Result<T, CacheError> {
        crate::codec::Envelope::with_header(bytes, *header).decode()
    }

    fn share(&self, error: &E) -> Option<Shared> {
        S::share(error)
    }

    fn unshare(&self, shared: &Shared) -> Option<E> {
        S::unshare(shared)
    }
}

/// Values serialized with the cache's codec and handed out as `Arc<T>`: an L1 hit shares the
/// value decoded by the first hit on that entry (see [`super::l1::Decoded`]) instead of decoding
/// the bytes again.
pub(crate) struct ArcSerde<T, E> {
    codec: Codec,
    _value: Types<T, E, Unshared>,
}

impl<T, E> ArcSerde<T, E> {
    pub(crate) fn new(codec: Codec) -> Self {
        ArcSerde {
            codec,
            _value: PhantomData,
        }
    }
}

impl<T, E> Clone for ArcSerde<T, E> {
    fn clone(&self) -> Self {
        ArcSerde::new(self.codec)
    }
}

impl<T, E> Format for ArcSerde<T, E>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Value = Arc<T>;
    type Error = E;

    fn encode(&self, value: &Self::Value, meta: &EnvelopeMeta<'_>) -> Result<Vec<u8>, CacheError> {
        self.codec.encode_checked(&**value, meta)
    }

    fn decode(&self, bytes: &Bytes, header: &Header) -> Result<Self::Value, CacheError> {
        crate::codec::Envelope::with_header(bytes, *header)
            .decode()
            .map(Arc::new)
    }

    fn decode_from(
        &self,
        decoded: Option<&super::l1::Decoded>,
        bytes: &Bytes,
        header: &Header,
    ) -> Result<Self::Value, CacheError> {
        let Some(cell) = decoded else {
            return self.decode(bytes, header);
        };
        if let Some((id, value)) = cell.get() {
            if *id == std::any::TypeId::of::<T>() {
                if let Ok(value) = Arc::clone(value).downcast::<T>() {
                    return Ok(value);
                }
            }
            return self.decode(bytes, header);
        }
        let value = self.decode(bytes, header)?;
        let shared: Arc<dyn std::any::Any + Send + Sync> = value.clone();
        let _ = cell.set((std::any::TypeId::of::<T>(), shared));
        Ok(value)
    }
}

/// A format whose decoded values come with their stored JSON payload (a zero-copy slice of the
/// entry), for `#[cached]` handlers returning `Json<T>`: the context layer sends those bytes as
/// the body, so a hit is byte for byte what the miss sent even for types whose serialization is
/// not deterministic (a `HashMap`'s key order).
pub(crate) struct WithPayload<F>(pub(crate) F);

impl<F: Clone> Clone for WithPayload<F> {
    fn clone(&self) -> Self {
        WithPayload(self.0.clone())
    }
}

impl<F: Format> Format for WithPayload<F> {
    type Value = (F::Value, Option<Bytes>);
    type Error = F::Error;

    fn encode(&self, value: &Self::Value, meta: &EnvelopeMeta<'_>) -> Result<Vec<u8>, CacheError> {
        self.0.encode(&value.0, meta)
    }

    fn decode(&self, bytes: &Bytes, header: &Header) -> Result<Self::Value, CacheError> {
        let value = self.0.decode(bytes, header)?;
        let payload = (header.is_json() && !header.is_compressed())
            .then(|| bytes.slice(header.payload_offset()..));
        Ok((value, payload))
    }

    fn share(&self, error: &F::Error) -> Option<Shared> {
        self.0.share(error)
    }

    fn unshare(&self, shared: &Shared) -> Option<F::Error> {
        self.0.unshare(shared)
    }

    fn is_failure(&self, error: &F::Error) -> bool {
        self.0.is_failure(error)
    }
}

/// How a refresh of a still-servable entry is run.
pub(crate) trait RefreshMode<Fm, F> {
    /// Spawns the refresh of the entry `seen` and returns `None`, or hands the loader back to
    /// run inline.
    fn spawn(
        self,
        cache: &Cache,
        key: &CacheKey,
        policy: &Policy,
        fmt: &Fm,
        seen: Header,
        loader: F,
    ) -> Option<F>;
}

/// Refreshes inline: the single-flight leader refreshes, the other callers get what is cached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inline;

impl<Fm, F> RefreshMode<Fm, F> for Inline {
    fn spawn(self, _: &Cache, _: &CacheKey, _: &Policy, _: &Fm, _: Header, loader: F) -> Option<F> {
        Some(loader)
    }
}

/// Refreshes in a background task: every caller is answered from the cache at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detached;

impl<Fm, F, Fut> RefreshMode<Fm, F> for Detached
where
    Fm: Format + Clone + Send + Sync + 'static,
    Fm::Value: Send + 'static,
    Fm::Error: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Fm::Value, Fm::Error>> + Send + 'static,
{
    fn spawn(
        self,
        cache: &Cache,
        key: &CacheKey,
        policy: &Policy,
        fmt: &Fm,
        seen: Header,
        loader: F,
    ) -> Option<F> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Some(loader);
        };
        let (cache, key, policy, fmt) = (cache.clone(), key.clone(), policy.clone(), fmt.clone());
        handle.spawn(async move {
            let Role::Leader(leader) = cache.inner.flights.join(key.as_str()) else {
                return; // a refresh is already running
            };
            if cache.replaced_since(&key, &seen).await.is_some() {
                // Another refresh landed after this caller read the entry.
                leader.land(Landing::Retry);
                return;
            }
            let _ = cache.lead(&key, &policy, &fmt, loader, leader).await;
        });
        None
    }
}

/// What a lookup found.
enum Lookup {
    /// Nothing to serve now; `fallback` is an entry usable if the loader fails.
    Miss { fallback: Option<(Bytes, Header)> },
    /// An entry to serve now; `refresh` says a refresh should run.
    Serve {
        bytes: Bytes,
        header: Header,
        status: CacheStatus,
        age: Duration,
        refresh: bool,
        tier: Tier,
        /// The decoded-value cell of an L1 hit.
        decoded: Option<super::l1::Decoded>,
    },
    /// The backend is unavailable.
    Unavailable,
}

/// A loader's error, with the outcome the request had (`MISS`, `BYPASS`, `SKIP`).
#[derive(Debug)]
pub(crate) struct Failed<E> {
    pub(crate) error: E,
    pub(crate) status: CacheStatus,
}

fn failed<T, E>(status: CacheStatus) -> impl FnOnce(E) -> Result<T, Failed<E>> {
    move |error| Err(Failed { error, status })
}

impl<T> Fetched<T> {
    /// A value served from the entry `header`.
    fn served(value: T, status: CacheStatus, age: Duration, header: &Header) -> Fetched<T> {
        Fetched {
            value,
            status,
            age,
            ttl: header.ttl().saturating_sub(age),
            etag: Some(header.etag()),
            tier: Some(Tier::Redis),
        }
    }
}

impl Cache {
    /// The read-through engine (see the module docs). Never fails because of the cache: an
    /// error is the loader's, with the outcome of the request.
    pub(crate) async fn read_through<Fm, F, Fut, M>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        fmt: &Fm,
        loader: F,
        mode: M,
    ) -> Result<Fetched<Fm::Value>, Failed<Fm::Error>>
    where
        Fm: Format,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fm::Value, Fm::Error>>,
        M: RefreshMode<Fm, F>,
    {
        let resource = key.resource();
        if !self.is_enabled() {
            return loader()
                .await
                .map(|value| Fetched::new(value, CacheStatus::Skip))
                .or_else(failed(CacheStatus::Skip));
        }
        if policy.bypass {
            self.inner.stats.record(resource, |c| inc(&c.bypasses));
            debug!(name: "cache_bypass", event = "cache_bypass", key = key.as_str(), "cache lookup bypassed; refreshing");
            let loaded = match self.inner.flights.join(key.as_str()) {
                Role::Leader(leader) => self.lead(key, policy, fmt, loader, leader).await,
                // A load in flight may predate this request: load fresh, without storing.
                Role::Follower(_) => {
                    self.inner.stats.record(resource, |c| inc(&c.loads));
                    loader().await.map(|v| Fetched::new(v, CacheStatus::Miss))
                }
            };
            return loaded
                .map(|mut f| {
                    f.status = CacheStatus::Bypass;
                    f
                })
                .or_else(failed(CacheStatus::Bypass));
        }
        let stored_before = self.inner.flights.stored_count(key.as_str());
        let fallback = match self.lookup(key, policy).await {
            Lookup::Serve {
                bytes,
                header,
                status,
                age,
                refresh,
                tier,
                decoded,
            } => match fmt.decode_from(decoded.as_ref(), &bytes, &header) {
                Ok(value) => {
                    let served = |value| {
                        self.count_served_from(key, status, bytes.len(), age, tier);
                        let mut fetched = Fetched::served(value, status, age, &header);
                        fetched.tier = Some(tier);
                        fetched
                    };
                    if !refresh {
                        return Ok(served(value));
                    }
                    let Some(loader) = mode.spawn(self, key, policy, fmt, header, loader) else {
                        return Ok(served(value));
                    };
                    // Inline refresh: the single-flight leader refreshes, the rest are served
                    // what is cached.
                    let Role::Leader(leader) = self.inner.flights.join(key.as_str()) else {
                        return Ok(served(value));
                    };
                    // Another refresh may have landed since this caller read the entry.
                    if let Some((bytes, header)) = self.replaced_since(key, &header).await {
                        leader.land(Landing::Retry);
                        if let Ok(value) = fmt.decode(&bytes, &header) {
                            let age = header.age_at(now_ms());
                            self.count_served(key, CacheStatus::Hit, bytes.len(), age);
                            return Ok(Fetched::served(value, CacheStatus::Hit, age, &header));
                        }
                        return Ok(served(value));
                    }
                    return match self.lead(key, policy, fmt, loader, leader).await {
                        Ok(fetched) => Ok(fetched),
                        // An early refresh failed: the value is still fresh.
                        Err(e) if status == CacheStatus::Hit && fmt.is_failure(&e) => {
                            Ok(served(value))
                        }
                        Err(e)
                            if fmt.is_failure(&e)
                                && age < header.ttl() + header.stale_if_error() =>
                        {
                            Ok(served(value))
                        }
                        Err(e) => Err(Failed {
                            error: e,
                            status: CacheStatus::Miss,
                        }),
                    };
                }
                Err(e) => {
                    self.record_error(resource, "decode", key.as_str(), &e);
                    None
                }
            },
            Lookup::Miss { fallback } => fallback,
            Lookup::Unavailable => {
                self.inner.stats.record(resource, |c| {
                    inc(&c.skips);
                    inc(&c.loads);
                });
                debug!(name: "cache_skip", event = "cache_skip", key = key.as_str(), reason = "backend unavailable", "cache skipped");
                return loader()
                    .await
                    .map(|v| Fetched::new(v, CacheStatus::Skip))
                    .or_else(failed(CacheStatus::Skip));
            }
        };
        self.inner.stats.record(resource, |c| inc(&c.misses));
        let mut fallback = fallback;
        let mut retry = false;
        loop {
            if retry {
                // The flight this caller waited on could not hand it a value: a newer fill may
                // have stored one meanwhile.
                match self.lookup(key, policy).await {
                    Lookup::Serve {
                        bytes,
                        header,
                        status,
                        age,
                        tier,
                        decoded,
                        ..
                    } => {
                        if let Ok(value) = fmt.decode_from(decoded.as_ref(), &bytes, &header) {
                            self.count_served_from(key, status, bytes.len(), age, tier);
                            let mut fetched = Fetched::served(value, status, age, &header);
                            fetched.tier = Some(tier);
                            return Ok(fetched);
                        }
                    }
                    Lookup::Miss { fallback: Some(f) } => fallback = Some(f),
                    Lookup::Miss { fallback: None } | Lookup::Unavailable => {}
                }
            }
            match self.inner.flights.join(key.as_str()) {
                Role::Leader(leader) => {
                    if !retry && self.inner.flights.stored_count(key.as_str()) != stored_before {
                        // A flight this caller did not join stored a value after its lookup.
                        if let Lookup::Serve {
                            bytes,
                            header,
                            status,
                            age,
                            tier,
                            decoded,
                            ..
                        } = self.lookup(key, policy).await
                        {
                            if let Ok(value) = fmt.decode_from(decoded.as_ref(), &bytes, &header) {
                                leader.land(Landing::Retry);
                                self.count_served_from(key, status, bytes.len(), age, tier);
                                let mut fetched = Fetched::served(value, status, age, &header);
                                fetched.tier = Some(tier);
                                return Ok(fetched);
                            }
                        }
                    }
                    let loaded = self.lead(key, policy, fmt, loader, leader).await;
                    return loaded
                        .or_else(|e| self.stale_if_error(key, fmt, fallback.as_ref(), e))
                        .or_else(failed(CacheStatus::Miss));
                }
                Role::Follower(follower) => {
                    retry = true;
                    match follower.wait().await {
                        Landing::Value(bytes) => {
                            let decoded = Header::parse(&bytes)
                                .and_then(|h| fmt.decode(&bytes, &h).map(|v| (v, h)));
                            if let Ok((value, header)) = decoded {
                                let mut fetched = Fetched::served(
                                    value,
                                    CacheStatus::Miss,
                                    Duration::ZERO,
                                    &header,
                                );
                                fetched.age = header.age_at(now_ms());
                                return Ok(fetched);
                            }
                        }
                        Landing::Error(shared) => {
                            if let Some(e) = fmt.unshare(&shared) {
                                return self
                                    .stale_if_error(key, fmt, fallback.as_ref(), e)
                                    .or_else(failed(CacheStatus::Miss));
                            }
                        }
                        Landing::Failed => {
                            // The leader failed: serve the stale-if-error value rather than load
                            // again, if there is one; else load, one flight at a time.
                            if let Some(fetched) = self.fallback_value(key, fmt, fallback.as_ref())
                            {
                                return Ok(fetched);
                            }
                        }
                        Landing::Retry => {}
                    }
                }
            }
        }
    }

    fn stale_if_error<Fm: Format>(
        &self,
        key: &CacheKey,
        fmt: &Fm,
        fallback: Option<&(Bytes, Header)>,
        e: Fm::Error,
    ) -> Result<Fetched<Fm::Value>, Fm::Error> {
        if !fmt.is_failure(&e) {
            return Err(e);
        }
        match self.fallback_value(key, fmt, fallback) {
            Some(fetched) => {
                debug!(name: "cache_stale_if_error", event = "cache_stale_if_error", key = key.as_str(), age_ms = fetched.age.as_millis() as u64, "loader failed; serving stale value");
                Ok(fetched)
            }
            None => Err(e),
        }
    }

    /// The stale-if-error value of `fallback`, if it is still inside its window.
    fn fallback_value<Fm: Format>(
        &self,
        key: &CacheKey,
        fmt: &Fm,
        fallback: Option<&(Bytes, Header)>,
    ) -> Option<Fetched<Fm::Value>> {
        let (bytes, header) = fallback?;
        let age = header.age_at(now_ms());
        if age >= header.ttl() + header.stale_if_error() {
            return None;
        }
        let value = fmt.decode(bytes, header).ok()?;
        self.count_served(key, CacheStatus::Stale, bytes.len(), age);
        let mut fetched = Fetched::served(value, CacheStatus::Stale, age, header);
        fetched.ttl = Duration::ZERO;
        Some(fetched)
    }

    /// The entry under `key` if it is fresh and is not the one `seen` was read from (another
    /// refresh replaced it).
    async fn replaced_since(&self, key: &CacheKey, seen: &Header) -> Option<(Bytes, Header)> {
        let backend = &self.inner.backend;
        let bytes = self
            .call(self.deadline(), || backend.get(key.as_str()))
            .await
            .ok()??;
        let header = Header::parse(&bytes).ok()?;
        if self.withheld(key, &bytes, &header)
            || (self.verifying().await && !self.verify_entry(key, &bytes, &header).await)
        {
            return None;
        }
        let replaced = header.created_at_ms() != seen.created_at_ms()
            && header.freshness(now_ms()).0 == Freshness::Fresh;
        replaced.then_some((bytes, header))
    }

    /// One `GET`, the envelope parsed once, classified by [`Header::freshness`].
    async fn lookup(&self, key: &CacheKey, policy: &Policy) -> Lookup {
        self.before_read().await;
        // The in-process tier first; a fill's ticket is taken before the backend is read.
        let l1 = self.l1();
        let mut ticket = None;
        if let Some(l1) = l1 {
            if let Some((bytes, header, decoded)) = l1.get(key.as_str()) {
                if self.withheld(key, &bytes, &header) {
                    return Lookup::Miss { fallback: None };
                }
                // Only fresh: stale windows are served from the backend.
                if let found @ Lookup::Serve {
                    status: CacheStatus::Hit,
                    ..
                } = Cache::classify(bytes, header, policy, Tier::L1, Some(decoded))
                {
                    return found;
                }
            }
            ticket = l1.ticket();
        }
        let backend = &self.inner.backend;
        // Under eviction, the entry and the versions of its tags in one round trip.
        let verify = self.verifying().await;
        let ids = if verify {
            self.lookup_ids(policy)
        } else {
            Vec::new()
        };
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (bytes, current) = match self
            .call(self.deadline(), || backend.get_checked(key.as_str(), &refs))
            .await
        {
            Ok((Some(bytes), current)) => (bytes, current),
            Ok((None, _)) => return Lookup::Miss { fallback: None },
            Err(e) => {
                self.record_error(key.resource(), "get", key.as_str(), &e);
                return Lookup::Unavailable;
            }
        };
        let header = match Header::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                return Lookup::Miss { fallback: None };
            }
        };
        if self.withheld(key, &bytes, &header) {
            // An invalidation of this entry is still queued: not served, not even as a fallback.
            return Lookup::Miss { fallback: None };
        }
        if verify {
            let valid = match Cache::matches_recorded(&bytes, &header, &policy.tags, &current) {
                Some(valid) => valid,
                None => self.verify_entry(key, &bytes, &header).await,
            };
            if !valid {
                self.inner
                    .stats
                    .record(key.resource(), |c| inc(&c.rejected_hits));
                return Lookup::Miss { fallback: None };
            }
        }
        if let (Some(l1), Some(ticket)) = (l1, ticket) {
            l1.insert(ticket, key.as_str(), &bytes, &header, || {
                self.entry_tag_ids(&bytes, &header)
            });
        }
        Cache::classify(bytes, header, policy, Tier::Redis, None)
    }

    /// The tag ids of an entry, from its envelope.
    pub(crate) fn entry_tag_ids(&self, bytes: &Bytes, header: &Header) -> Vec<String> {
        crate::codec::Envelope::with_header(bytes, *header)
            .tags()
            .map(|t| self.tag_id(t))
            .collect()
    }

    /// Classifies an entry by [`Header::freshness`].
    fn classify(
        bytes: Bytes,
        header: Header,
        policy: &Policy,
        tier: Tier,
        decoded: Option<super::l1::Decoded>,
    ) -> Lookup {
        let (freshness, age) = header.freshness(now_ms());
        match freshness {
            Freshness::Fresh => {
                let refresh = policy.early_refresh.is_some_and(|beta| {
                    // XFetch: refresh early with probability rising as expiry nears, scaled by
                    // the measured recompute time.
                    let delta = header.recompute().as_secs_f64();
                    let r = fastrand::f64().max(f64::MIN_POSITIVE);
                    let remaining = (header.ttl() - age).as_secs_f64();
                    delta * beta * -r.ln() >= remaining
                });
                Lookup::Serve {
                    bytes,
                    header,
                    status: CacheStatus::Hit,
                    age,
                    refresh,
                    tier,
                    decoded,
                }
            }
            Freshness::Stale => Lookup::Serve {
                bytes,
                header,
                status: CacheStatus::Stale,
                age,
                refresh: true,
                tier,
                decoded,
            },
            Freshness::IfError => Lookup::Miss {
                fallback: Some((bytes, header)),
            },
            Freshness::Expired => Lookup::Miss { fallback: None },
        }
    }

    /// The leader's work: read the versions, take the lease if asked, run the loader, store the
    /// value guarded by the versions, land the flight.
    pub(crate) async fn lead<Fm, F, Fut>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        fmt: &Fm,
        loader: F,
        leader: LeaderGuard<'_>,
    ) -> Result<Fetched<Fm::Value>, Fm::Error>
    where
        Fm: Format,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fm::Value, Fm::Error>>,
    {
        let resource = key.resource();
        // 1. Versions before the loader reads anything (and the L1 ticket before them).
        let ticket = self.l1().and_then(|l1| l1.ticket());
        let epoch = self.epoch();
        let ids = self.fill_ids(key, policy);
        let before = self.snapshot_versions(ids.all(), key).await;
        // 2. Cross-instance lease. A bypass refreshes now: it must not be answered by the value
        // it bypasses.
        let lease = if policy.lease && before.is_some() && !policy.bypass {
            self.acquire_lease(key).await
        } else {
            LeaseOutcome::NotUsed
        };
        if let LeaseOutcome::FilledByOther(bytes, header) = &lease {
            if let Ok(value) = fmt.decode(bytes, header) {
                let age = header.age_at(now_ms());
                self.count_served(key, CacheStatus::Hit, bytes.len(), age);
                let landing = Landing::Value(bytes.clone());
                self.land(leader, &ids, before.as_deref(), epoch, key, landing)
                    .await;
                return Ok(Fetched::served(value, CacheStatus::Hit, age, header));
            }
        }
        // 3. Load.
        self.inner.stats.record(resource, |c| inc(&c.loads));
        let started = Instant::now();
        let value = match loader().await {
            Ok(v) => v,
            Err(e) => {
                leader.land(fmt.share(&e).map_or(Landing::Failed, Landing::Error));
                if let LeaseOutcome::Held(token) = &lease {
                    self.release_lease(key, token).await;
                }
                return Err(e);
            }
        };
        let recompute = started.elapsed();
        // 4. Encode, store guarded, hand the value to the followers if it is still fresh.
        let mut fetched = Fetched::new(value, CacheStatus::Miss);
        let recorded = Cache::recorded_versions(before.as_deref());
        match fmt.encode(
            &fetched.value,
            &self.envelope_meta(policy, recompute, &recorded),
        ) {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                if let Ok(header) = Header::parse(&bytes) {
                    fetched.etag = Some(header.etag());
                    let (stored, landing) =
                        self.store_fill(key, &bytes, &ids, before.as_deref()).await;
                    if stored {
                        fetched.ttl = header.ttl();
                        if let (Some(l1), Some(ticket)) = (self.l1(), ticket) {
                            l1.insert(ticket, key.as_str(), &bytes, &header, || {
                                self.entry_tag_ids(&bytes, &header)
                            });
                        }
                    }
                    self.land(leader, &ids, before.as_deref(), epoch, key, landing)
                        .await;
                } else {
                    leader.land(Landing::Failed);
                }
            }
            Err(e) => {
                self.record_error(resource, "encode", key.as_str(), &e);
                leader.land(Landing::Failed);
            }
        }
        if let LeaseOutcome::Held(token) = &lease {
            self.release_lease(key, token).await;
        }
        Ok(fetched)
    }

    /// A lookup without loading: the value if the entry is fresh or inside its
    /// stale-while-revalidate window (no refresh is started), counted as served; `None`
    /// otherwise (counted as a miss, or a skip when the backend is unavailable).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) async fn peek<Fm: Format>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        fmt: &Fm,
    ) -> Result<Option<Fetched<Fm::Value>>, CacheStatus> {
        if !self.is_enabled() {
            return Err(CacheStatus::Skip);
        }
        match self.lookup(key, policy).await {
            Lookup::Serve {
                bytes,
                header,
                status,
                age,
                tier,
                decoded,
                ..
            } => match fmt.decode_from(decoded.as_ref(), &bytes, &header) {
                Ok(value) => {
                    self.count_served_from(key, status, bytes.len(), age, tier);
                    let mut fetched = Fetched::served(value, status, age, &header);
                    fetched.tier = Some(tier);
                    Ok(Some(fetched))
                }
                Err(e) => {
                    self.record_error(key.resource(), "decode", key.as_str(), &e);
                    self.record_status(key, CacheStatus::Miss, 0);
                    Ok(None)
                }
            },
            Lookup::Miss { .. } => {
                self.record_status(key, CacheStatus::Miss, 0);
                Ok(None)
            }
            Lookup::Unavailable => {
                self.record_status(key, CacheStatus::Skip, 0);
                Err(CacheStatus::Skip)
            }
        }
    }

    // ---------------------------------------------------------------- typed reads

    /// Reads a fresh or stale value; `None` on a miss, an error or when disabled.
    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Option<T> {
        self.get_entry(key).await.map(|e| e.value)
    }

    /// Reads a value with its age, remaining TTL and ETag. An entry past its TTL is returned as
    /// `Stale` while inside either stale window.
    pub async fn get_entry<T: DeserializeOwned>(&self, key: &CacheKey) -> Option<super::Entry<T>> {
        let bytes = self.get_raw(key).await?;
        let header = match Header::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                return None;
            }
        };
        if self.withheld(key, &bytes, &header)
            || (self.verifying().await && !self.verify_entry(key, &bytes, &header).await)
        {
            return None;
        }
        let status = match header.freshness(now_ms()).0 {
            Freshness::Fresh => CacheStatus::Hit,
            Freshness::Stale | Freshness::IfError => CacheStatus::Stale,
            Freshness::Expired => return None,
        };
        let age = header.age_at(now_ms());
        match crate::codec::Envelope::with_header(&bytes, header).decode() {
            Ok(value) => {
                self.count_served(key, status, bytes.len(), age);
                Some(super::Entry {
                    value,
                    status,
                    age,
                    ttl: header.ttl().saturating_sub(age),
                    etag: header.etag(),
                })
            }
            Err(e) => {
                self.record_error(key.resource(), "decode", key.as_str(), &e);
                None
            }
        }
    }

    /// Reads the raw envelope bytes of an entry; `None` on a miss, an error or when disabled.
    #[doc(hidden)]
    pub async fn get_raw(&self, key: &CacheKey) -> Option<Bytes> {
        if !self.is_enabled() {
            return None;
        }
        self.before_read().await;
        let backend = &self.inner.backend;
        self.call(self.deadline(), || backend.get(key.as_str()))
            .await
            .inspect_err(|e| self.record_error(key.resource(), "get", key.as_str(), e))
            .ok()
            .flatten()
    }

    // ---------------------------------------------------------------- read-through API

    /// Returns the cached value, or runs `loader`, stores its value and returns it.
    /// Concurrent misses on one key run the loader once (single-flight).
    ///
    /// `policy` is a TTL (`Duration`) or a full [`Policy`] (tags, stale windows, lease, ...).
    pub async fn get_or_load<T, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let fmt = Serde::<T, std::convert::Infallible>::new(self.inner.settings.codec);
        let policy = policy.into();
        let result = self
            .read_through(key, &policy, &fmt, || async { Ok(loader().await) }, Inline)
            .await;
        match result {
            Ok(f) => f.value,
            Err(never) => match never.error {},
        }
    }

    /// Like [`get_or_load`](Self::get_or_load) for fallible loaders: only `Ok` values are cached;
    /// errors are returned untouched (unless a stale-if-error window serves a stale value).
    ///
    /// Concurrent misses share one loader run. When it fails, the callers that waited on it
    /// cannot be handed its error (`E` need not be `Clone`): they load again **one at a time**
    /// (a failing database sees one query per key at a time, never one per waiting caller), or
    /// get the stale-if-error value when there is one. [`try_get_with`](Self::try_get_with)
    /// hands them a clone of the error instead.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn try_get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.fetch(key, policy, loader).await.map(|f| f.value)
    }

    /// Like [`try_get_or_load`](Self::try_get_or_load), and the callers waiting on a load that
    /// fails get a clone of its error (or the stale-if-error value), so a failing loader runs
    /// **once** for any number of concurrent callers (moka's `try_get_with`).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::time::Duration;
    /// use cache_core::Cache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::memory();
    /// let key = cache.key("trig").id(1).build();
    /// let runs = AtomicUsize::new(0);
    /// let load = || async {
    ///     runs.fetch_add(1, Ordering::SeqCst);
    ///     tokio::task::yield_now().await;
    ///     Err::<String, String>("database down".into())
    /// };
    /// let ttl = Duration::from_secs(60);
    /// let (a, b) = tokio::join!(cache.try_get_with(&key, ttl, load), cache.try_get_with(&key, ttl, load));
    /// assert_eq!((a.unwrap_err(), b.unwrap_err()), ("database down".into(), "database down".into()));
    /// assert_eq!(runs.load(Ordering::SeqCst), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    /// The loader's error, or a clone of the error of the load this call waited on.
    pub async fn try_get_with<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let fmt = Serde::<T, E, Cloned>::new(self.inner.settings.codec);
        self.read_through(key, &policy.into(), &fmt, loader, Inline)
            .await
            .map(|f| f.value)
            .map_err(|f| f.error)
    }

    /// The full read-through: returns the value with its [`CacheStatus`], age and TTL.
    ///
    /// The loader may borrow. When an entry is in its stale-while-revalidate window, one caller
    /// (elected by single-flight) refreshes it inline while every other caller gets the stale
    /// value at once; use [`fetch_detached`](Self::fetch_detached) to refresh in the background.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn fetch<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let fmt = Serde::<T, E>::new(self.inner.settings.codec);
        self.read_through(key, &policy.into(), &fmt, loader, Inline)
            .await
            .map_err(|f| f.error)
    }

    /// Like [`get_or_load`](Self::get_or_load), returning the value as an `Arc<T>`: a hit in the
    /// in-process tier ([`CacheBuilder::l1`](crate::CacheBuilder::l1)) shares the value decoded
    /// by the first hit on that entry, so it costs neither a decode nor a clone of `T`. The
    /// decoded value lives in the L1 entry and leaves with it (same invalidation notices,
    /// expiry and bound); hits from the backend decode as usual.
    pub async fn get_or_load_arc<T, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Arc<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let fmt = ArcSerde::<T, std::convert::Infallible>::new(self.inner.settings.codec);
        let policy = policy.into();
        let result = self
            .read_through(
                key,
                &policy,
                &fmt,
                || async { Ok(Arc::new(loader().await)) },
                Inline,
            )
            .await;
        match result {
            Ok(f) => f.value,
            Err(never) => match never.error {},
        }
    }

    /// Like [`fetch`](Self::fetch), returning the value as an `Arc<T>` shared by the hits of one
    /// L1 entry (see [`get_or_load_arc`](Self::get_or_load_arc)).
    ///
    /// # Errors
    /// The loader's error.
    pub async fn fetch_arc<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<Fetched<Arc<T>>, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let fmt = ArcSerde::<T, E>::new(self.inner.settings.codec);
        self.read_through(
            key,
            &policy.into(),
            &fmt,
            || async { loader().await.map(Arc::new) },
            Inline,
        )
        .await
        .map_err(|f| f.error)
    }

    /// Like [`fetch`](Self::fetch) with an owned (`'static`) loader, so refreshes of stale
    /// entries (stale-while-revalidate, early refresh) run in a background task and every caller
    /// is answered from the cache at once.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn fetch_detached<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: impl Into<Policy>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let fmt = Serde::<T, E>::new(self.inner.settings.codec);
        self.read_through(key, &policy.into(), &fmt, loader, Detached)
            .await
            .map_err(|f| f.error)
    }
}
