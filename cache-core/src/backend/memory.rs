//! The in-memory backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache as Moka;
use moka::Expiry;

use super::{Backend, BackendInfo, Invalidation, Put, VersionRead};
use crate::error::CacheError;

#[derive(Clone)]
struct MemEntry {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, MemEntry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, value: &MemEntry, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &MemEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A version counter (mirrors the Redis key `{id}:v` and its expiry).
#[derive(Default)]
struct Version {
    value: u64,
    /// When the bumped version may be forgotten.
    expires: Option<Instant>,
}

impl Version {
    fn current(&self, now: Instant) -> u64 {
        match self.expires {
            Some(at) if at <= now => 0,
            _ => self.value,
        }
    }
}

/// A tag index: the keys carrying the tag and their expiry.
#[derive(Default)]
struct Index {
    members: HashMap<String, Instant>,
    /// Member count after the last prune; pruning runs when the index doubles.
    pruned_len: usize,
}

/// Versions and tag indexes, under one lock so that a guarded store and an invalidation are
/// atomic with respect to each other (as the Lua scripts are on Redis).
#[derive(Default)]
struct Bookkeeping {
    versions: HashMap<String, Version>,
    indexes: HashMap<String, Index>,
}

impl Bookkeeping {
    fn version(&self, id: &str, now: Instant) -> u64 {
        self.versions.get(id).map_or(0, |v| v.current(now))
    }

    fn bump(&mut self, id: &str, now: Instant, retention: Duration) {
        let v = self.versions.entry(id.to_owned()).or_default();
        v.value = v.current(now) + 1;
        v.expires = Some(now + retention);
    }
}

/// In-process storage with the same semantics as [`RedisBackend`](super::RedisBackend).
///
/// Entries live in a `moka` cache bounded by total bytes (key + value) with per-entry TTLs; tag
/// indexes, versions and leases live beside it. A guarded store and a tag invalidation take the
/// same lock, so invalidation is atomic with respect to concurrent fills, as on Redis. Reads take
/// no lock.
///
/// ```
/// use cache_core::backend::{Backend, MemoryBackend, Put};
/// use std::time::Duration;
///
/// # tokio_test_block_on(async {
/// let backend = MemoryBackend::new(64 * 1024 * 1024);
/// let put = Put { key: "ns:v1:a", value: b"x", ttl: Duration::from_secs(5), tags: &[], guard: None };
/// assert_eq!(backend.put(&[put]).await.unwrap(), [true]);
/// assert_eq!(backend.get("ns:v1:a").await.unwrap().as_deref(), Some(&b"x"[..]));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub struct MemoryBackend {
    entries: Moka<String, MemEntry>,
    books: Mutex<Bookkeeping>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
    hits: AtomicU64,
    misses: AtomicU64,
    max_bytes: u64,
    /// Invalidation notices `(channel, notice)`, sent under the bookkeeping lock (atomic with
    /// the invalidation) to every cache sharing this backend.
    notices: tokio::sync::broadcast::Sender<(Arc<str>, Arc<str>)>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps in a state worse than stale
    // bookkeeping, so keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryBackend {
    /// The keys matching a Redis glob pattern.
    fn matching(&self, pattern: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(k, _)| glob_match(pattern.as_bytes(), k.as_bytes()))
            .map(|(k, _)| (*k).clone())
            .collect()
    }

    /// A store holding at most `max_bytes` of keys and values (least recently used entries are
    /// evicted first).
    pub fn new(max_bytes: u64) -> MemoryBackend {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &MemEntry| {
                u32::try_from(k.len() + v.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryBackend {
            entries,
            books: Mutex::new(Bookkeeping::default()),
            locks: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            max_bytes,
            notices: tokio::sync::broadcast::channel(4096).0,
        }
    }

    fn read(&self, key: &str) -> Option<Bytes> {
        let found = self.entries.get(key).map(|e| e.value);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new(128 * 1024 * 1024)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.read(key))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        Ok(keys.iter().map(|k| self.read(k)).collect())
    }

    async fn versions(&self, reads: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        let now = Instant::now();
        let books = lock(&self.books);
        Ok(reads.iter().map(|r| books.version(r.id, now)).collect())
    }

    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(puts.len());
        let mut books = lock(&self.books);
        for p in puts {
            if let Some(guard) = &p.guard {
                let unchanged = guard.ids.iter().enumerate().all(|(i, id)| {
                    books.version(id, now) == guard.versions.get(i).copied().unwrap_or(0)
                });
                if !unchanged {
                    out.push(false);
                    continue;
                }
            }
            let ttl = p.ttl.max(Duration::from_millis(1));
            self.entries.insert(
                p.key.to_owned(),
                MemEntry {
                    value: Bytes::copy_from_slice(p.value),
                    ttl,
                },
            );
            for tag in p.tags {
                let index = books.indexes.entry(tag.clone()).or_default();
                index.members.insert(p.key.to_owned(), now + ttl);
                if index.members.len() > 2 * index.pruned_len.max(32) {
                    index.members.retain(|_, expires| *expires > now);
                    index.pruned_len = index.members.len();
                }
            }
            out.push(true);
        }
        // Forget indexes without live members and versions past their retention.
        if books.indexes.len() > 1024 {
            books.indexes.retain(|_, index| {
                index.members.retain(|_, expires| *expires > now);
                !index.members.is_empty()
            });
        }
        if books.versions.len() > 1024 {
            books
                .versions
                .retain(|_, v| v.expires.is_none_or(|at| at > now));
        }
        Ok(out)
    }

    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        let now = Instant::now();
        let mut books = lock(&self.books);
        let mut deleted = 0;
        for tag in inv.tags {
            books.bump(tag, now, inv.retention);
            if let Some(index) = books.indexes.remove(*tag) {
                for key in index.members.into_keys() {
                    if self.entries.remove(&key).is_some() {
                        deleted += 1;
                    }
                }
            }
        }
        for (key, id) in inv.keys {
            books.bump(id, now, inv.retention);
            if self.entries.remove(*key).is_some() {
                deleted += 1;
            }
        }
        for id in inv.bump {
            books.bump(id, now, inv.retention);
        }
        if !inv.channel.is_empty() {
            // No listener is not an error.
            let _ = self
                .notices
                .send((inv.channel.into(), super::notice(inv).into()));
        }
        drop(books);
        Ok(deleted)
    }

    fn notifies(&self) -> bool {
        true
    }

    async fn listen(
        &self,
        channel: &str,
        _heartbeat: Duration,
        sink: &dyn super::NoticeSink,
    ) -> Result<(), CacheError> {
        let mut rx = self.notices.subscribe();
        sink.subscribed();
        loop {
            match rx.recv().await {
                Ok((ch, notice)) => {
                    if &*ch == channel {
                        sink.notice(notice.as_bytes());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    return Err(CacheError::Backend(
                        format!("{n} invalidation notices missed").into(),
                    ))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(CacheError::Backend("the notices were closed".into()))
                }
            }
        }
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        let _books = lock(&self.books);
        let _ = self.notices.send((channel.into(), payload.into()));
        Ok(())
    }

    async fn delete_pattern(&self, pattern: &str, _batch: usize) -> Result<u64, CacheError> {
        let matching = self.matching(pattern);
        Ok(matching
            .iter()
            .filter(|k| self.entries.remove(*k).is_some())
            .count() as u64)
    }

    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        let matching = self.matching(pattern);
        let mut seen = 0u64;
        for chunk in matching.chunks(batch.max(1)) {
            seen += chunk.len() as u64;
            if !visit(chunk.to_vec()) {
                break;
            }
        }
        Ok(seen)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        locks.retain(|_, (_, expires)| *expires > now);
        if locks.contains_key(key) {
            return Ok(false);
        }
        locks.insert(key.to_owned(), (token.to_owned(), now + ttl));
        Ok(true)
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        let mut locks = lock(&self.locks);
        if locks.get(key).is_some_and(|(t, _)| t == token) {
            locks.remove(key);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.entries.run_pending_tasks();
        Ok(BackendInfo {
            backend: "memory".into(),
            total_keys: self.entries.entry_count(),
            memory_used_bytes: self.entries.weighted_size(),
            keyspace_hits: self.hits.load(Ordering::Relaxed),
            keyspace_misses: self.misses.load(Ordering::Relaxed),
            connected_clients: 1,
            version: concat!("cache-core ", env!("CARGO_PKG_VERSION")).into(),
        })
    }
}

/// Redis `MATCH` glob semantics: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\` escapes.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star_p, mut star_t) = (usize::MAX, 0usize);
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star_p = p;
                    star_t = t;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        if star_p == usize::MAX {
            return false;
        }
        p = star_p + 1;
        star_t += 1;
        t = star_t;
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == b'['`; returns whether it matched
/// and the index after the class, or `None` if the class is unterminated.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'^' | b'!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &pc = pattern.get(i)?;
        if pc == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if pc == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            pc
        };
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&x| x != b']') {
            let hi = pattern[i + 2];
            if (lo.min(hi)..=lo.max(hi)).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_follows_redis_match_rules() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("app:*", "app:v1:trig:1"));
        assert!(!m("app:*", "other:v1"));
        assert!(m("app:v?:trig:*", "app:v1:trig:9"));
        assert!(m("a[bc]d", "acd"));
        assert!(!m("a[^bc]d", "acd"));
        assert!(m("a[a-c]d", "abd"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*trig*", "app:v1:trig:1"));
        assert!(!m("a[bc", "ab"));
    }
}
