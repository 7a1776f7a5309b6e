//! Looking into the store, for operators (the `annocache` CLI, admin tools): one entry's
//! envelope, a census of a namespace's keys, and the dry runs of the deletes. Every scan is a
//! `SCAN` (every master of a cluster), never `KEYS`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ops::escape_glob;
use super::Cache;
use crate::codec::{now_ms, Envelope};
use crate::error::CacheError;

/// Keys handed over per `SCAN` step.
const SCAN_BATCH: usize = 500;
/// Example keys kept per resource in a [`KeyCensus`].
const EXAMPLES: usize = 3;

/// One entry's envelope, as [`Cache::inspect`] read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The key.
    pub key: String,
    /// Stored size in bytes (envelope included).
    pub bytes: usize,
    /// When the entry was stored (Unix milliseconds).
    pub created_at_ms: u64,
    /// Age in milliseconds.
    pub age_ms: u64,
    /// Time to live in milliseconds (the fresh window).
    pub ttl_ms: u64,
    /// How much longer it is fresh, in milliseconds (0 once stale).
    pub fresh_for_ms: u64,
    /// Stale-while-revalidate window after the TTL, in milliseconds.
    pub stale_while_revalidate_ms: u64,
    /// Stale-if-error window after the TTL, in milliseconds.
    pub stale_if_error_ms: u64,
    /// `fresh`, `stale` (inside a stale window) or `expired` (past every window, not yet
    /// removed by Redis).
    pub state: &'static str,
    /// The entry's tags.
    pub tags: Vec<String>,
    /// The payload's MIME type (`application/json`, `application/x-postcard`, ... or the HTTP
    /// response's own for the response layers).
    pub content_type: String,
    /// Whether the payload is LZ4-compressed.
    pub compressed: bool,
    /// The entry's ETag.
    pub etag: String,
}

/// How many keys of each kind a namespace holds, from a `SCAN` ([`Cache::key_census`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyCensus {
    /// The namespace.
    pub namespace: String,
    /// Keys scanned.
    pub scanned: u64,
    /// Whether every key was scanned (`false`: the limit was reached first, and the counts are
    /// a sample).
    pub complete: bool,
    /// Entries per resource.
    pub resources: BTreeMap<String, ResourceKeys>,
    /// Tag bookkeeping keys (a version and an index per tag).
    pub tag_keys: u64,
    /// Key versions (`delete` / `#[invalidates(keys)]`) and the namespace generation.
    pub version_keys: u64,
    /// Leases (`lock:`) and anything else under the namespace.
    pub other_keys: u64,
}

/// The entries of one resource in a [`KeyCensus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResourceKeys {
    /// Entries seen.
    pub entries: u64,
    /// The first few keys seen.
    pub examples: Vec<String>,
}

impl KeyCensus {
    fn count(&mut self, namespace: &str, key: String) {
        self.scanned += 1;
        let rest = key
            .strip_prefix(namespace)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or("");
        let (first, tail) = rest.split_once(':').unwrap_or((rest, ""));
        let entry = first.len() > 1
            && first.starts_with('v')
            && first[1..].bytes().all(|b| b.is_ascii_digit());
        if entry {
            let resource = tail.split([':', '#']).next().unwrap_or_default().to_owned();
            let r = self.resources.entry(resource).or_default();
            r.entries += 1;
            if r.examples.len() < EXAMPLES {
                r.examples.push(key);
            }
        } else if first == "t" {
            self.tag_keys += 1;
        } else if first == "k" || first == "g" {
            self.version_keys += 1;
        } else {
            self.other_keys += 1;
        }
    }
}

impl Cache {
    /// Reads the envelope of the entry stored under `key` (a full key of this namespace, as
    /// [`CacheKey::as_str`](crate::CacheKey::as_str) or a key listed by
    /// [`key_census`](Self::key_census) gives it): age, TTL, windows, tags, size, format.
    /// `None` when there is no such entry.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a key outside this namespace, [`CacheError::Decode`]
    /// for bytes that are not an envelope, or the backend failure.
    pub async fn inspect(&self, key: &str) -> Result<Option<EntryInfo>, CacheError> {
        let ns = self.inner.keyspace.namespace();
        if !key.strip_prefix(ns).is_some_and(|r| r.starts_with(':')) {
            return Err(CacheError::InvalidArgument(format!(
                "`{key}` is not a key of the namespace `{ns}`"
            )));
        }
        let backend = &self.inner.backend;
        let Some(bytes) = self
            .call(self.inner.settings.admin_timeout, || backend.get(key))
            .await?
        else {
            return Ok(None);
        };
        let e = Envelope::parse(&bytes)?;
        let now = now_ms();
        let age = e.age_at(now);
        let ttl = e.ttl();
        let window = e.stale_while_revalidate().max(e.stale_if_error());
        let state = if age < ttl {
            "fresh"
        } else if age < ttl + window {
            "stale"
        } else {
            "expired"
        };
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Some(EntryInfo {
            key: key.to_owned(),
            bytes: bytes.len(),
            created_at_ms: e.created_at_ms(),
            age_ms: ms(age),
            ttl_ms: ms(ttl),
            fresh_for_ms: ms(ttl.saturating_sub(age)),
            stale_while_revalidate_ms: ms(e.stale_while_revalidate()),
            stale_if_error_ms: ms(e.stale_if_error()),
            state,
            tags: e.tags().map(str::to_owned).collect(),
            content_type: e.content_type().to_owned(),
            compressed: e.is_compressed(),
            etag: e.etag_header(),
        }))
    }

    /// Counts this namespace's keys by kind (entries per resource, tag bookkeeping, versions,
    /// other) with `SCAN` in batches (every master of a cluster), never `KEYS`, stopping after
    /// `limit` keys (the counts are then a sample: [`KeyCensus::complete`] is `false`).
    /// `progress` is called with the running count after each batch. The in-memory backend
    /// keeps tag and version bookkeeping beside its entries rather than as keys: it lists
    /// entries only.
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn key_census(
        &self,
        limit: u64,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<KeyCensus, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        let ns = self.inner.keyspace.namespace().to_owned();
        let mut census = KeyCensus {
            namespace: ns.clone(),
            complete: true,
            ..KeyCensus::default()
        };
        let pattern = format!("{}:*", escape_glob(&ns));
        let backend = &self.inner.backend;
        let census_ref = &mut census;
        let mut visit = |keys: Vec<String>| {
            for key in keys {
                if census_ref.scanned >= limit {
                    census_ref.complete = false;
                    return false;
                }
                census_ref.count(&ns, key);
            }
            progress(census_ref.scanned);
            true
        };
        self.call(self.inner.settings.admin_timeout, || {
            backend.scan(&pattern, SCAN_BATCH, &mut visit)
        })
        .await?;
        Ok(census)
    }

    /// How many keys [`delete_pattern`](Self::delete_pattern) would delete for `pattern` now
    /// (its dry run: a `SCAN`, nothing deleted).
    ///
    /// # Errors
    /// As [`delete_pattern`](Self::delete_pattern).
    pub async fn count_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let full = self.full_pattern(pattern)?;
        self.count_matching(&[full]).await
    }

    /// How many keys [`clear`](Self::clear) would delete now (its dry run: a `SCAN`, nothing
    /// deleted).
    ///
    /// # Errors
    /// The backend failure, or [`CacheError::Disabled`].
    pub async fn count_namespace(&self) -> Result<u64, CacheError> {
        if !self.is_enabled() {
            return Err(CacheError::Disabled);
        }
        self.count_matching(&super::ops::clear_patterns(self.inner.keyspace.namespace()))
            .await
    }

    async fn count_matching(&self, patterns: &[String]) -> Result<u64, CacheError> {
        let backend = &self.inner.backend;
        let mut n = 0;
        let mut visit = |_: Vec<String>| true;
        for pattern in patterns {
            n += self
                .call(self.inner.settings.admin_timeout, || {
                    backend.scan(pattern, SCAN_BATCH, &mut visit)
                })
                .await?;
        }
        Ok(n)
    }
}
