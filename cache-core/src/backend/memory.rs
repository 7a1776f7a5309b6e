//! The in-memory backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache as Moka;
use moka::Expiry;

use super::{Backend, BackendInfo, Put};
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

#[derive(Default)]
struct TagState {
    version: u64,
    /// When the bumped version may be forgotten (mirrors the Redis key's expiry).
    version_expires: Option<Instant>,
    /// Indexed keys and their expiry.
    members: HashMap<String, Instant>,
    /// Member count after the last prune; pruning runs when the index doubles.
    pruned_len: usize,
}

impl TagState {
    fn current_version(&self, now: Instant) -> u64 {
        match self.version_expires {
            Some(at) if at <= now => 0,
            _ => self.version,
        }
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
    tags: Mutex<HashMap<String, TagState>>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
    hits: AtomicU64,
    misses: AtomicU64,
    max_bytes: u64,
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
            tags: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            max_bytes,
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

    async fn tag_versions(&self, tags: &[&str]) -> Result<Vec<u64>, CacheError> {
        let now = Instant::now();
        let map = lock(&self.tags);
        Ok(tags
            .iter()
            .map(|t| map.get(*t).map_or(0, |s| s.current_version(now)))
            .collect())
    }

    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(puts.len());
        let mut map = lock(&self.tags);
        for p in puts {
            if let Some(expected) = p.guard {
                let unchanged = p.tags.iter().enumerate().all(|(i, tag)| {
                    let current = map.get(tag).map_or(0, |s| s.current_version(now));
                    current == expected.get(i).copied().unwrap_or(0)
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
                let state = map.entry(tag.clone()).or_default();
                state.members.insert(p.key.to_owned(), now + ttl);
                if state.members.len() > 2 * state.pruned_len.max(32) {
                    state.members.retain(|_, expires| *expires > now);
                    state.pruned_len = state.members.len();
                }
            }
            out.push(true);
        }
        // Forget tags with neither live members nor a remembered version.
        if map.len() > 1024 {
            map.retain(|_, s| {
                s.members.retain(|_, expires| *expires > now);
                !s.members.is_empty() || s.version_expires.is_some_and(|at| at > now)
            });
        }
        Ok(out)
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64, CacheError> {
        Ok(keys
            .iter()
            .filter(|k| self.entries.remove(**k).is_some())
            .count() as u64)
    }

    async fn invalidate_tags(
        &self,
        tags: &[&str],
        version_retention: Duration,
    ) -> Result<u64, CacheError> {
        let now = Instant::now();
        let mut map = lock(&self.tags);
        let mut deleted = 0;
        for tag in tags {
            let state = map.entry((*tag).to_owned()).or_default();
            state.version = state.current_version(now) + 1;
            state.version_expires = Some(now + version_retention);
            for (key, _) in state.members.drain() {
                if self.entries.remove(&key).is_some() {
                    deleted += 1;
                }
            }
            state.pruned_len = 0;
        }
        Ok(deleted)
    }

    async fn delete_pattern(&self, pattern: &str, _batch: usize) -> Result<u64, CacheError> {
        let matching: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, _)| glob_match(pattern.as_bytes(), k.as_bytes()))
            .map(|(k, _)| (*k).clone())
            .collect();
        Ok(matching
            .iter()
            .filter(|k| self.entries.remove(*k).is_some())
            .count() as u64)
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
