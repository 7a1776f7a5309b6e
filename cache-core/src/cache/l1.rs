//! The in-process tier (L1): the implementation. The design, its guarantees and the notice
//! format are documented in [`crate::l1`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache as Moka;
use moka::Expiry;
use tracing::{info, warn};

use crate::backend::{Backend, NoticeSink};
use crate::codec::{now_ms, Freshness, Header};

/// How often the subscriber connection is checked.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// Tags remembered for the lazy check before the whole tier is cleared instead.
const MAX_MARKS: usize = 10_000;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The decoded value of an L1 entry, kept beside its bytes (the decoded-value tier): filled by
/// the first hit of a typed `*_arc` read ([`Cache::get_or_load_arc`](crate::Cache::get_or_load_arc),
/// [`Cache::fetch_arc`](crate::Cache::fetch_arc)), shared by the next ones without decoding, and
/// dropped with the entry (the same eviction, expiry and notice rules: it lives in the slot).
/// One type per entry: a read of another type decodes the bytes.
pub(crate) type Decoded = Arc<OnceLock<(TypeId, Arc<dyn Any + Send + Sync>)>>;

/// One entry of the tier.
#[derive(Debug)]
struct Slot {
    bytes: Bytes,
    decoded: Decoded,
    header: Header,
    /// Tag ids (namespaced) of the entry.
    tags: Box<[String]>,
    /// The ticket of the fill that inserted it.
    ticket: u64,
    expires: Instant,
}

struct UntilExpiry;

impl Expiry<Arc<str>, Arc<Slot>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        slot: &Arc<Slot>,
        now: std::time::Instant,
    ) -> Option<Duration> {
        Some(slot.expires.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        slot: &Arc<Slot>,
        now: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.expires.saturating_duration_since(now))
    }
}

/// The tier, its sequence and its subscription state.
pub(crate) struct L1 {
    entries: Moka<Arc<str>, Arc<Slot>>,
    /// Bumped by every eviction (notice, local invalidation, loss or gain of the channel).
    seq: AtomicU64,
    /// The sequence number of the last clear: entries with an older ticket are dead.
    cleared: AtomicU64,
    /// Tag id -> sequence number of its last notice.
    marks: Mutex<HashMap<String, u64>>,
    /// The subscription is established: L1 is served and filled only then.
    live: AtomicBool,
    /// The engine's cache was dropped: the subscriber task ends.
    shutdown: tokio::sync::Notify,
    max_bytes: u64,
    pub(crate) channel: String,
    notices: AtomicU64,
    losses: AtomicU64,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("max_bytes", &self.max_bytes)
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// The state of the tier, as reported by [`Cache::l1_status`](crate::Cache::l1_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct L1Status {
    /// The subscription to invalidation notices is established: L1 serves hits.
    pub live: bool,
    /// Entries held (approximate: counted by the tier's housekeeping).
    pub entries: u64,
    /// Bytes held (approximate), at most `max_bytes`.
    pub bytes: u64,
    /// The bound in bytes.
    pub max_bytes: u64,
    /// Notices applied since start.
    pub notices: u64,
    /// Times the subscription was lost since start.
    pub losses: u64,
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, channel: String) -> L1 {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, s: &Arc<Slot>| {
                let tags: usize = s.tags.iter().map(|t| t.len() + 24).sum();
                u32::try_from(k.len() + s.bytes.len() + tags + 96).unwrap_or(u32::MAX)
            })
            .expire_after(UntilExpiry)
            .build();
        L1 {
            entries,
            seq: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            marks: Mutex::new(HashMap::new()),
            live: AtomicBool::new(false),
            shutdown: tokio::sync::Notify::new(),
            max_bytes,
            channel,
            notices: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// A ticket for a fill about to read the backend; `None` when L1 is bypassed.
    pub(crate) fn ticket(&self) -> Option<u64> {
        if !self.is_live() {
            return None;
        }
        Some(self.seq.load(Ordering::SeqCst))
    }

    /// The entry under `key` (its bytes, header and decoded-value cell), if L1 holds it fresh
    /// and no notice concerned it since its fill.
    pub(crate) fn get(&self, key: &str) -> Option<(Bytes, Header, Decoded)> {
        if !self.is_live() {
            return None;
        }
        let slot = self.entries.get(key)?;
        let dead = slot.ticket < self.cleared.load(Ordering::SeqCst)
            || Instant::now() >= slot.expires
            || (!slot.tags.is_empty() && {
                let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
                slot.tags
                    .iter()
                    .any(|t| marks.get(t).is_some_and(|&m| m > slot.ticket))
            });
        if dead {
            self.entries.invalidate(key);
            return None;
        }
        Some((slot.bytes.clone(), slot.header, Arc::clone(&slot.decoded)))
    }

    /// Inserts a fresh entry filled under `ticket`, unless an eviction happened since.
    pub(crate) fn insert(
        &self,
        ticket: u64,
        key: &str,
        bytes: &Bytes,
        header: &Header,
        tags: impl FnOnce() -> Vec<String>,
    ) {
        if self.seq.load(Ordering::SeqCst) != ticket || !self.is_live() {
            return;
        }
        let now = now_ms();
        let (freshness, age) = header.freshness(now);
        if freshness != Freshness::Fresh {
            return;
        }
        let remaining = header.ttl().saturating_sub(age);
        if remaining.is_zero() {
            return;
        }
        let key: Arc<str> = key.into();
        let slot = Arc::new(Slot {
            bytes: bytes.clone(),
            decoded: Decoded::default(),
            header: *header,
            tags: tags().into_boxed_slice(),
            ticket,
            expires: Instant::now() + remaining,
        });
        self.entries.insert(key.clone(), slot);
        // An eviction that ran between the check above and the insert: undo it.
        if self.seq.load(Ordering::SeqCst) != ticket {
            self.entries.invalidate(&key);
        }
    }

    /// Applies one notice (see [`crate::backend::notice`]).
    pub(crate) fn apply(&self, notice: &[u8]) {
        let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(text) = std::str::from_utf8(notice) else {
            self.clear_at(s);
            return;
        };
        for line in text.split('\n') {
            let (kind, id) = line.split_at(line.len().min(1));
            match kind {
                "k" => self.entries.invalidate(id),
                "t" => {
                    let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
                    if marks.len() >= MAX_MARKS && !marks.contains_key(id) {
                        drop(marks);
                        self.clear_at(s);
                    } else {
                        marks.insert(id.to_owned(), s);
                    }
                }
                "" => {}
                // `g`, and any kind this version does not know: every entry.
                _ => self.clear_at(s),
            }
        }
    }

    /// Drops every entry (their tickets are older than `s`).
    fn clear_at(&self, s: u64) {
        self.cleared.fetch_max(s, Ordering::SeqCst);
        // Marks made after this clear (by a notice applied concurrently) stay.
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, m| *m > s);
        self.entries.invalidate_all();
    }

    fn clear(&self) {
        let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.clear_at(s);
    }

    fn lose(&self) {
        if self.live.swap(false, Ordering::AcqRel) {
            self.losses.fetch_add(1, Ordering::Relaxed);
        }
        self.clear();
    }

    pub(crate) fn status(&self) -> L1Status {
        self.entries.run_pending_tasks();
        L1Status {
            live: self.is_live(),
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            max_bytes: self.max_bytes,
            notices: self.notices.load(Ordering::Relaxed),
            losses: self.losses.load(Ordering::Relaxed),
        }
    }

    /// Keeps the subscription: listens, and on loss bypasses L1 and listens again with backoff,
    /// until the cache is dropped.
    pub(crate) async fn run(self: Arc<Self>, backend: Arc<dyn Backend>) {
        let mut backoff = BACKOFF_MIN;
        let mut logged = false;
        loop {
            let listen = backend.listen(&self.channel, HEARTBEAT, &*self);
            let result = tokio::select! {
                r = listen => r,
                () = self.shutdown.notified() => return,
            };
            let was_live = self.is_live();
            self.lose();
            if was_live {
                backoff = BACKOFF_MIN;
            }
            if was_live || !logged {
                logged = true;
                let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                warn!(name: "cache_l1_lost", event = "cache_l1_lost", channel = %self.channel, error = %error, "invalidation notices lost; the in-process tier is bypassed until they are back");
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.shutdown.notified() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    pub(crate) fn stop(&self) {
        self.shutdown.notify_one();
    }
}

impl NoticeSink for L1 {
    fn subscribed(&self) {
        self.clear();
        self.live.store(true, Ordering::Release);
        info!(name: "cache_l1_subscribed", event = "cache_l1_subscribed", channel = %self.channel, "invalidation notices subscribed; the in-process tier serves hits");
    }

    fn notice(&self, payload: &[u8]) {
        self.notices.fetch_add(1, Ordering::Relaxed);
        self.apply(payload);
    }
}

/// The tier of a cache and its subscriber task (started on first use inside a runtime, stopped
/// when the cache is dropped).
#[derive(Debug)]
pub(crate) struct L1Handle {
    pub(crate) l1: Arc<L1>,
    started: AtomicBool,
}

impl L1Handle {
    pub(crate) fn new(l1: L1) -> L1Handle {
        L1Handle {
            l1: Arc::new(l1),
            started: AtomicBool::new(false),
        }
    }

    /// Starts the subscriber task once (inside a runtime).
    pub(crate) fn start(&self, backend: &Arc<dyn Backend>) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(Arc::clone(&self.l1).run(Arc::clone(backend)));
    }
}

impl Drop for L1Handle {
    fn drop(&mut self) {
        self.l1.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, EnvelopeMeta};

    fn envelope(ttl: Duration) -> (Bytes, Header) {
        let meta = EnvelopeMeta {
            created_at_ms: 0,
            ttl,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            recompute: Duration::ZERO,
            tags: &[],
            versions: &[],
            compress_above: None,
        };
        let bytes = Bytes::from(Codec::Json.encode_envelope(&1u32, &meta).unwrap());
        let header = Header::parse(&bytes).unwrap();
        (bytes, header)
    }

    fn live() -> L1 {
        let l1 = L1::new(1 << 20, "ns:l1".into());
        l1.subscribed();
        l1
    }

    #[test]
    fn an_insert_after_an_eviction_since_its_ticket_is_dropped() {
        let l1 = live();
        let (b, h) = envelope(Duration::from_secs(60));
        let t = l1.ticket().unwrap();
        l1.apply(b"kns:other");
        l1.insert(t, "ns:a", &b, &h, Vec::new);
        assert!(l1.get("ns:a").is_none());
        let t = l1.ticket().unwrap();
        l1.insert(t, "ns:a", &b, &h, Vec::new);
        assert!(l1.get("ns:a").is_some());
    }

    #[test]
    fn tag_key_and_generation_notices_evict() {
        let l1 = live();
        let (b, h) = envelope(Duration::from_secs(60));
        let t = l1.ticket().unwrap();
        l1.insert(t, "ns:a", &b, &h, || vec!["ns:t:x".into()]);
        l1.insert(t, "ns:b", &b, &h, Vec::new);
        l1.insert(t, "ns:c", &b, &h, Vec::new);
        l1.apply(b"tns:t:x");
        assert!(l1.get("ns:a").is_none());
        assert!(l1.get("ns:b").is_some());
        l1.apply(b"kns:b");
        assert!(l1.get("ns:b").is_none());
        assert!(l1.get("ns:c").is_some());
        l1.apply(b"gns:g");
        assert!(l1.get("ns:c").is_none());
    }

    #[test]
    fn nothing_is_served_or_filled_while_not_subscribed() {
        let l1 = live();
        let (b, h) = envelope(Duration::from_secs(60));
        let t = l1.ticket().unwrap();
        l1.insert(t, "ns:a", &b, &h, Vec::new);
        l1.lose();
        assert!(l1.get("ns:a").is_none());
        assert!(l1.ticket().is_none());
        l1.subscribed();
        assert!(l1.get("ns:a").is_none(), "cleared when subscribed again");
    }
}
