//! Invalidations that are never lost (see [`crate::durable`] for the guarantee), and recovery in
//! milliseconds after the backend comes back.
//!
//! * **Queue.** An invalidation not delivered within `invalidation_timeout` is queued; a
//!   background task replays the queue as soon as the backend answers, up to 64 queued
//!   invalidations per round trip (invalidations commute: version bumps and deletes, so their
//!   union has the effect of each in turn). While the queue is not empty, reads withhold every
//!   entry it concerns; neither reads nor later writes wait for it.
//! * **Prober.** When the breaker opens, a task pings the backend every few milliseconds (each
//!   ping also drives the reconnection) and closes the breaker, for every caller at once, as soon
//!   as one answers; then it replays the queue and the outbox.
//! * **Outbox.** With an [`Outbox`](crate::durable::Outbox), a task reads its records at start,
//!   every `outbox_poll`, and whenever the backend comes back: it delivers them oldest first
//!   and marks them delivered; from the first the backend does not take, it queues the rest
//!   (withheld and replayed like this instance's own). Until such a pass completes after start
//!   or after a failed backend call, this instance serves no hit at all: another instance may
//!   have recorded an invalidation meanwhile.
//!
//! The tasks hold a weak reference: they end when the last `Cache` handle is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Cache, Inner};
use crate::codec::Header;
use crate::error::CacheError;
use crate::key::CacheKey;

/// One queued invalidation.
#[derive(Debug)]
struct Op {
    /// Tag names (as given by the caller).
    tags: Vec<String>,
    /// Keys deleted by key.
    keys: Vec<CacheKey>,
    /// The outbox record this op replays (marked delivered with it).
    record: Option<u64>,
}

#[derive(Debug, Default)]
struct Queue {
    ops: VecDeque<Op>,
    /// How many queued ops name each tag / key (to withhold entries quickly).
    tags: HashMap<String, usize>,
    keys: HashMap<String, usize>,
    /// How many times an overflow emptied the queue.
    resets: u64,
    /// Tags and keys of ops delivered a moment ago, withheld until the instant given: a read
    /// sent before the delivery landed may still bring back the entry it deleted.
    recent_tags: HashMap<String, Instant>,
    recent_keys: HashMap<String, Instant>,
}

impl Queue {
    fn push(&mut self, op: Op) {
        for t in &op.tags {
            *self.tags.entry(t.clone()).or_default() += 1;
        }
        for k in &op.keys {
            *self.keys.entry(k.as_str().to_owned()).or_default() += 1;
        }
        self.ops.push_back(op);
    }

    /// Pops the oldest op, delivered: its tags and keys stay withheld until `until`.
    fn pop_delivered(&mut self, until: Instant) {
        if let Some(op) = self.ops.front() {
            for t in &op.tags {
                self.recent_tags.insert(t.clone(), until);
            }
            for k in &op.keys {
                self.recent_keys.insert(k.as_str().to_owned(), until);
            }
        }
        self.pop();
    }

    /// Forgets the delivered ops whose reads in flight are over.
    fn prune(&mut self, now: Instant) {
        self.recent_tags.retain(|_, until| *until > now);
        self.recent_keys.retain(|_, until| *until > now);
    }

    fn pop(&mut self) {
        let Some(op) = self.ops.pop_front() else {
            return;
        };
        let forget = |map: &mut HashMap<String, usize>, name: &str| {
            if let Some(n) = map.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    map.remove(name);
                }
            }
        };
        for t in &op.tags {
            forget(&mut self.tags, t);
        }
        for k in &op.keys {
            forget(&mut self.keys, k.as_str());
        }
    }
}

/// The tags of several invalidations, each once, in first-seen order.
fn union<'a>(lists: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for list in lists {
        for t in list {
            if seen.insert(t.as_str()) {
                out.push(t.clone());
            }
        }
    }
    out
}

/// The durability state of one `Cache`.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    queue: Mutex<Queue>,
    /// Fast check for the read path: something is queued, or the queue overflowed.
    pending: AtomicBool,
    /// The queue overflowed: every entry is withheld until the namespace is retired.
    overflowed: AtomicBool,
    replaying: tokio::sync::Mutex<()>,
    replayer: AtomicBool,
    prober: AtomicBool,
    outbox: AtomicBool,
    /// The outbox may hold records this instance has neither delivered nor queued (at start,
    /// and from a failed backend call until the next complete outbox pass): every hit is
    /// withheld meanwhile.
    outbox_dirty: AtomicBool,
    /// Outbox records already in the queue (not queued twice while the backend is down).
    outbox_queued: Mutex<std::collections::HashSet<u64>>,
    /// One outbox pass at a time.
    outbox_pass: tokio::sync::Mutex<()>,
}

impl Durability {
    /// The state of a cache with an outbox or without (with one, dirty until the first pass).
    pub(crate) fn new(outbox: bool) -> Durability {
        let d = Durability::default();
        d.outbox_dirty.store(outbox, Ordering::Release);
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refresh_flag(&self, q: &Queue) {
        let pending = !q.ops.is_empty()
            || !q.recent_tags.is_empty()
            || !q.recent_keys.is_empty()
            || self.overflowed.load(Ordering::Acquire);
        self.pending.store(pending, Ordering::Release);
    }
}

impl Cache {
    fn from_weak(weak: &Weak<Inner>) -> Option<Cache> {
        weak.upgrade().map(|inner| Cache { inner })
    }

    /// Whether an [`Outbox`](crate::durable::Outbox) is configured (and caching is enabled):
    /// then a write should record its invalidation in it and commit with
    /// [`PendingInvalidation::commit_recorded`](crate::PendingInvalidation::commit_recorded).
    pub fn has_outbox(&self) -> bool {
        self.inner.settings.enabled && self.inner.settings.outbox.is_some()
    }

    /// How many invalidations wait to be delivered (for health and stats).
    pub fn pending_invalidations(&self) -> usize {
        self.inner.durable.lock().ops.len()
    }

    /// Delivers an invalidation of `tags` and `keys`, or queues it. `Ok`: delivered (entries
    /// deleted). `Err(Queued)`: not delivered in time, queued for replay. Other errors are not
    /// backend failures and are returned as they are.
    pub(crate) async fn deliver_or_queue(
        &self,
        tags: &[String],
        keys: &[CacheKey],
    ) -> Result<u64, CacheError> {
        #[cfg(feature = "analytics")]
        self.analytics()
            .record_invalidation(tags, keys, |t| self.tag_id(t));
        // Invalidations commute (version bumps and deletes), so this one need not wait for the
        // queue: the replayer delivers that in the background.
        if self.inner.durable.pending.load(Ordering::Acquire) {
            self.spawn_replayer();
        }
        match self.deliver(tags, keys).await {
            Ok(n) => Ok(n),
            Err(e) if e.is_backend_failure() || e.is_oom() => {
                self.enqueue(tags, keys);
                warn!(name: "cache_invalidation_queued", event = "cache_invalidation_queued", tags = ?tags, keys = keys.len(), error = %e, "invalidation not delivered; queued, replayed when the backend answers");
                Err(CacheError::Queued)
            }
            Err(e) => Err(e),
        }
    }

    /// One delivery attempt, within the invalidation deadline.
    async fn deliver(&self, tags: &[String], keys: &[CacheKey]) -> Result<u64, CacheError> {
        let tag_ids: Vec<String> = tags.iter().map(|t| self.tag_id(t)).collect();
        let tag_refs: Vec<&str> = tag_ids.iter().map(String::as_str).collect();
        let key_ids: Vec<String> = keys.iter().map(|k| self.key_id(k)).collect();
        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .zip(&key_ids)
            .map(|(k, id)| (k.as_str(), id.as_str()))
            .collect();
        self.invalidate_within(
            crate::backend::Invalidation {
                tags: &tag_refs,
                keys: &pairs,
                bump: &[],
                retention: self.inner.settings.tag_version_retention,
                channel: &self.inner.channel,
            },
            self.inner.settings.invalidation_timeout,
        )
        .await
    }

    fn enqueue(&self, tags: &[String], keys: &[CacheKey]) {
        self.enqueue_op(tags, keys, None);
    }

    fn enqueue_op(&self, tags: &[String], keys: &[CacheKey], record: Option<u64>) {
        let d = &self.inner.durable;
        {
            let mut q = d.lock();
            if q.ops.len() >= self.inner.settings.invalidation_queue {
                if !d.overflowed.swap(true, Ordering::AcqRel) {
                    warn!(name: "cache_invalidation_queue_overflow", event = "cache_invalidation_queue_overflow", capacity = self.inner.settings.invalidation_queue, "invalidation queue full; every entry of the namespace will be retired when the backend answers");
                }
                let resets = q.resets + 1;
                *q = Queue {
                    resets,
                    ..Queue::default()
                };
            } else {
                q.push(Op {
                    tags: tags.to_vec(),
                    keys: keys.to_vec(),
                    record,
                });
            }
            d.refresh_flag(&q);
        }
        self.spawn_replayer();
    }

    /// Tries to deliver the whole queue (one replay at a time); `true` when nothing is pending
    /// any more.
    pub(crate) async fn flush_pending(&self) -> bool {
        let d = &self.inner.durable;
        if !d.pending.load(Ordering::Acquire) {
            return true;
        }
        let Ok(_turn) =
            tokio::time::timeout(self.inner.settings.invalidation_timeout, d.replaying.lock())
                .await
        else {
            return false;
        };
        // Queued ops are delivered many at once: invalidations are idempotent and commute (a
        // version bump and deletes per tag or key), so the union of several ops has the effect
        // of delivering them one by one, in one round trip.
        const BATCH: usize = 64;
        let mut delivered_any = false;
        loop {
            let (tags, keys, records, n, resets) = {
                let q = d.lock();
                let ops = || q.ops.iter().take(BATCH);
                let tags = union(ops().map(|op| op.tags.as_slice()));
                let keys: Vec<CacheKey> = ops().flat_map(|op| op.keys.iter().cloned()).collect();
                let records: Vec<u64> = ops().filter_map(|op| op.record).collect();
                (tags, keys, records, q.ops.len().min(BATCH), q.resets)
            };
            if n == 0 {
                break;
            }
            match self.deliver(&tags, &keys).await {
                Ok(_) => {
                    {
                        let mut q = d.lock();
                        // An overflow reset the queue meanwhile: the namespace is retired below.
                        if q.resets == resets {
                            // A read sent before this delivery landed ends within its deadline.
                            let until = Instant::now()
                                + self.inner.settings.command_timeout
                                + Duration::from_millis(10);
                            for _ in 0..n {
                                q.pop_delivered(until);
                            }
                        }
                        d.refresh_flag(&q);
                    }
                    delivered_any = true;
                    self.outbox_delivered(&records).await;
                }
                Err(_) => return false,
            }
        }
        if d.overflowed.load(Ordering::Acquire) {
            match self.clear().await {
                Ok(n) => {
                    info!(name: "cache_invalidation_queue_recovered", event = "cache_invalidation_queue_recovered", deleted = n, "namespace retired after the invalidation queue overflowed");
                    d.overflowed.store(false, Ordering::Release);
                }
                Err(_) => return false,
            }
        }
        let q = d.lock();
        d.refresh_flag(&q);
        let empty = q.ops.is_empty();
        if empty && delivered_any {
            // Queued outbox records were delivered: the next outbox pass marks them.
            d.outbox_queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            info!(name: "cache_invalidations_replayed", event = "cache_invalidations_replayed", "queued invalidations delivered");
        }
        empty
    }

    /// Whether this instance must not serve the entry `key` (with its envelope): an invalidation
    /// concerning it is still queued. Call after [`flush_pending`](Self::flush_pending).
    pub(crate) fn withheld(&self, key: &CacheKey, bytes: &[u8], header: &Header) -> bool {
        let d = &self.inner.durable;
        if d.outbox_dirty.load(Ordering::Acquire) {
            return true;
        }
        if !d.pending.load(Ordering::Acquire) {
            return false;
        }
        if d.overflowed.load(Ordering::Acquire) {
            return true;
        }
        let mut q = d.lock();
        q.prune(Instant::now());
        d.refresh_flag(&q);
        if q.keys.contains_key(key.as_str()) || q.recent_keys.contains_key(key.as_str()) {
            return true;
        }
        if q.tags.is_empty() && q.recent_tags.is_empty() {
            return false;
        }
        crate::codec::Envelope::with_header(bytes, *header)
            .tags()
            .any(|t| q.tags.contains_key(t) || q.recent_tags.contains_key(t))
    }

    /// Before a read: if invalidations are queued, make sure the replayer runs; if the outbox
    /// may hold unseen records, wake its task.
    ///
    /// Never waits: the entries concerned are withheld until the replay (or the outbox pass)
    /// has run, so a read during an outage costs no more than the read's own deadline.
    pub(crate) async fn before_read(&self) {
        if self.inner.durable.pending.load(Ordering::Acquire) {
            self.spawn_replayer();
        }
        if self.inner.durable.outbox_dirty.load(Ordering::Acquire) {
            self.kick_outbox();
        }
    }

    fn spawn_replayer(&self) {
        let d = &self.inner.durable;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if d.replayer.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut pause = Duration::from_millis(5);
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
                let Some(cache) = Cache::from_weak(&weak) else {
                    return;
                };
                if cache.flush_pending().await {
                    cache.inner.durable.replayer.store(false, Ordering::Release);
                    // Something may have been queued between the flush and the flag.
                    if cache.inner.durable.pending.load(Ordering::Acquire) {
                        cache.spawn_replayer();
                    }
                    return;
                }
            }
        });
    }

    /// When the breaker opened: ping the backend every few milliseconds until it answers, then
    /// close the breaker for everyone and deliver what waits.
    pub(crate) fn spawn_prober(&self) {
        let d = &self.inner.durable;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if d.prober.swap(true, Ordering::AcqRel) {
            return;
        }

        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut pause = Duration::from_millis(2);
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
                let Some(cache) = Cache::from_weak(&weak) else {
                    return;
                };
                if cache.inner.breaker.state() == crate::BreakerState::Closed {
                    break;
                }
                let deadline = cache.deadline();
                let answered = matches!(
                    tokio::time::timeout(deadline, cache.inner.backend.ping()).await,
                    Ok(Ok(()))
                );
                if answered {
                    cache.backend_answered();
                    cache.inner.durable.prober.store(false, Ordering::Release);
                    if cache.inner.durable.pending.load(Ordering::Acquire) {
                        cache.spawn_replayer();
                    }
                    cache.kick_outbox();
                    return;
                }
            }
            if let Some(cache) = Cache::from_weak(&weak) {
                cache.inner.durable.prober.store(false, Ordering::Release);
            }
        });
    }

    /// Starts the outbox task (once), if an outbox is configured.
    pub(crate) fn start_outbox(&self) {
        if self.inner.settings.outbox.is_none() {
            return;
        }
        let d = &self.inner.durable;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if d.outbox.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let notify = Arc::clone(&self.inner.outbox_kick);
        handle.spawn(async move {
            loop {
                let Some(cache) = Cache::from_weak(&weak) else {
                    return;
                };
                let every = cache.inner.settings.outbox_poll;
                cache.outbox_pass().await;
                drop(cache);
                let _ = tokio::time::timeout(every, notify.notified()).await;
            }
        });
    }

    /// One pass over the outbox (one at a time); a complete pass clears the dirty flag.
    async fn outbox_pass(&self) {
        let d = &self.inner.durable;
        let _turn = d.outbox_pass.lock().await;
        // Cleared before reading: a breaker opening during the pass sets it again.
        let was_dirty = d.outbox_dirty.swap(false, Ordering::AcqRel);
        if !self.deliver_outbox().await && was_dirty {
            d.outbox_dirty.store(true, Ordering::Release);
        }
    }

    /// Delivers the outbox's records, oldest first, marking them delivered; from the first that
    /// the backend does not take, queues the rest here (withheld by this instance, replayed with
    /// the queue, marked by a later pass). `true` when every record was delivered or queued.
    async fn deliver_outbox(&self) -> bool {
        let Some(outbox) = self.inner.settings.outbox.clone() else {
            return true;
        };
        let d = &self.inner.durable;
        let limit = self.inner.settings.invalidation_queue.max(1);
        loop {
            // The queue first (it may hold outbox records: delivered, they are marked).
            let mut down = d.pending.load(Ordering::Acquire) && !self.flush_pending().await;
            let batch = match outbox.undelivered(limit).await {
                Ok(batch) => batch,
                Err(e) => {
                    warn!(name: "cache_outbox_error", event = "cache_outbox_error", error = %e, "could not read the invalidation outbox");
                    return false;
                }
            };
            let mut done = Vec::new();
            let mut queued = 0;
            // Delivered 64 records at a time, in order (their union in one round trip, as the
            // queue replays); from the first chunk the backend refuses, queued one by one.
            for chunk in batch.chunks(64) {
                if !down {
                    let tags = union(chunk.iter().map(|e| e.tags.as_slice()));
                    match self.deliver(&tags, &[]).await {
                        Ok(_) => {
                            done.extend(chunk.iter().map(|e| e.id));
                            continue;
                        }
                        Err(_) => down = true,
                    }
                }
                for entry in chunk {
                    let fresh = d
                        .outbox_queued
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(entry.id);
                    if fresh {
                        self.enqueue_op(&entry.tags, &[], Some(entry.id));
                        queued += 1;
                    }
                }
            }
            if !done.is_empty() {
                if let Err(e) = outbox.delivered(&done).await {
                    // Every record was delivered or queued all the same; the next pass delivers
                    // them again (idempotent).
                    warn!(name: "cache_outbox_error", event = "cache_outbox_error", error = %e, "could not mark outbox records delivered");
                    return true;
                }
                info!(name: "cache_outbox_delivered", event = "cache_outbox_delivered", records = done.len(), "outbox invalidations delivered");
            }
            if queued > 0 {
                warn!(name: "cache_invalidation_queued", event = "cache_invalidation_queued", records = queued, "outbox invalidations not delivered; queued, replayed when the backend answers");
            }
            if down || batch.len() < limit {
                return true;
            }
        }
    }

    /// Marks outbox records delivered (after they were delivered from the queue, or by their
    /// writer itself).
    pub(crate) async fn outbox_delivered(&self, ids: &[u64]) {
        let Some(outbox) = self.inner.settings.outbox.clone() else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        if let Err(e) = outbox.delivered(ids).await {
            warn!(name: "cache_outbox_error", event = "cache_outbox_error", error = %e, "could not mark an outbox record delivered");
        }
    }

    /// A backend call failed: another instance may record invalidations that this one cannot
    /// deliver now (or that an outbox pass in flight delivers only later), so no hit is served
    /// until a complete outbox pass after the backend answers again.
    pub(crate) fn outbox_suspect(&self) {
        if self.inner.settings.outbox.is_some() {
            self.inner
                .durable
                .outbox_dirty
                .store(true, Ordering::Release);
        }
    }

    fn kick_outbox(&self) {
        self.inner.outbox_kick.notify_one();
    }
}
