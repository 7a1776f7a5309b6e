//! The storage trait of the analytics, the shapes both implementations keep, and the in-memory
//! implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::hist::Histogram;
use super::{Event, Outcome, StorageUsage};
use crate::error::CacheError;

/// A route as recorded: method and template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RouteKey {
    pub(crate) method: String,
    pub(crate) route: String,
}

impl RouteKey {
    /// The route's id in Redis keys: 16 hex digits of xxh3-64 of `METHOD template`.
    pub(crate) fn id(&self) -> String {
        let joined = format!("{} {}", self.method, self.route);
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(joined.as_bytes()))
    }

    /// `METHOD template`, the member of the route index.
    pub(crate) fn member(&self) -> String {
        format!("{} {}", self.method, self.route)
    }

    pub(crate) fn from_member(member: &str) -> Option<RouteKey> {
        let (method, route) = member.split_once(' ')?;
        Some(RouteKey {
            method: method.to_owned(),
            route: route.to_owned(),
        })
    }
}

/// One route's counts over one minute (or, merged, over a window). On Redis, a hash whose
/// fields are [`MinuteAgg::fields`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MinuteAgg {
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
    pub(crate) private: u64,
    pub(crate) outcomes: [u64; Outcome::COUNT],
    pub(crate) latency_sum_us: [u64; Outcome::COUNT],
    pub(crate) hist: [Histogram; Outcome::COUNT],
    /// Requests per cache resource (from the response's cache key).
    pub(crate) resources: BTreeMap<String, u64>,
    /// Start of the first request (ms since the epoch; 0: none). On Redis the hash field `f`,
    /// set by the minute's first write (`HSETNX`).
    pub(crate) first_ms: u64,
}

impl MinuteAgg {
    pub(crate) fn add(&mut self, e: &Event) {
        let o = e.outcome.index();
        let us = u64::try_from(e.latency.as_micros()).unwrap_or(u64::MAX);
        self.first_ms = earliest(self.first_ms, e.start_ms);
        self.requests += 1;
        self.bytes += e.bytes;
        self.errors += u64::from(e.status >= 500);
        self.private += u64::from(e.private);
        self.outcomes[o] += 1;
        self.latency_sum_us[o] = self.latency_sum_us[o].saturating_add(us);
        self.hist[o].add(us);
        // The resource of a response the cache served (a route whose cache is off still
        // names its key, with `SKIP`).
        let served = matches!(e.outcome, Outcome::Hit | Outcome::Miss | Outcome::Stale);
        if let Some(r) = e
            .cache_key
            .as_deref()
            .filter(|_| served)
            .and_then(crate::key::resource_of)
        {
            if let Some(n) = self.resources.get_mut(r) {
                *n += 1;
            } else if self.resources.len() < RESOURCES_PER_ROUTE {
                self.resources.insert(r.to_owned(), 1);
            }
        }
    }

    pub(crate) fn merge(&mut self, other: &MinuteAgg) {
        self.first_ms = earliest(self.first_ms, other.first_ms);
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.private += other.private;
        for o in 0..Outcome::COUNT {
            self.outcomes[o] += other.outcomes[o];
            self.latency_sum_us[o] = self.latency_sum_us[o].saturating_add(other.latency_sum_us[o]);
            self.hist[o].merge(&other.hist[o]);
        }
        for (r, n) in &other.resources {
            *self.resources.entry(r.clone()).or_default() += n;
        }
    }

    /// The non-zero counters as hash fields: `n` requests, `b` bytes, `e` 5xx responses,
    /// `p` private responses, `o:<outcome>` requests, `s:<outcome>` latency sum (µs),
    /// `h:<outcome>:<bucket>` latency histogram counts, `k:<resource>` requests per cache
    /// resource.
    pub(crate) fn fields(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (name, v) in [
            ("n", self.requests),
            ("b", self.bytes),
            ("e", self.errors),
            ("p", self.private),
        ] {
            if v > 0 {
                out.push((name.to_owned(), v));
            }
        }
        for outcome in Outcome::ALL {
            let o = outcome.index();
            if self.outcomes[o] == 0 {
                continue;
            }
            let code = outcome.code();
            out.push((format!("o:{code}"), self.outcomes[o]));
            out.push((format!("s:{code}"), self.latency_sum_us[o]));
            for (b, n) in &self.hist[o].counts {
                out.push((format!("h:{code}:{b}"), *n));
            }
        }
        for (r, n) in &self.resources {
            out.push((format!("k:{r}"), *n));
        }
        out
    }

    /// Adds fields read back from a hash (unknown fields are ignored).
    pub(crate) fn add_field(&mut self, name: &str, v: u64) {
        match name {
            "n" => self.requests += v,
            "b" => self.bytes += v,
            "e" => self.errors += v,
            "p" => self.private += v,
            "f" => self.first_ms = earliest(self.first_ms, v),
            _ if name.starts_with("k:") => {
                *self.resources.entry(name[2..].to_owned()).or_default() += v;
            }
            _ => {
                let mut parts = name.splitn(3, ':');
                let (Some(kind), Some(code)) = (parts.next(), parts.next()) else {
                    return;
                };
                let Some(o) = Outcome::from_code(code).map(Outcome::index) else {
                    return;
                };
                match (kind, parts.next()) {
                    ("o", None) => self.outcomes[o] += v,
                    ("s", None) => {
                        self.latency_sum_us[o] = self.latency_sum_us[o].saturating_add(v)
                    }
                    ("h", Some(b)) => {
                        if let Ok(b) = b.parse() {
                            self.hist[o].add_count(b, v);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Cache resources counted per route and minute at most (a route reads a few).
pub(crate) const RESOURCES_PER_ROUTE: usize = 16;

/// Request targets kept per route and hour (the most requested; see [`Store::top_targets`]).
pub(crate) const TARGETS_PER_ROUTE_HOUR: usize = 256;

/// One route's minute in a batch: counters, distinct users, distinct keys (keyed hashes of the
/// request target), and the shared cacheable targets with their request counts.
#[derive(Debug, Default)]
pub(crate) struct RouteMinute {
    pub(crate) agg: MinuteAgg,
    pub(crate) users: BTreeSet<String>,
    pub(crate) keys: BTreeSet<u64>,
    pub(crate) targets: BTreeMap<String, u64>,
}

/// The earlier of two start times, 0 meaning none.
fn earliest(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

/// What the writer hands a store: the raw events, and the same events grouped per route and
/// minute, plus invalidation counts per minute.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) events: Vec<Event>,
    pub(crate) routes: BTreeMap<(RouteKey, u64), RouteMinute>,
    /// Per minute: `t:<tag>` / `r:<resource>` -> invalidations.
    pub(crate) invalidations: BTreeMap<u64, BTreeMap<String, u64>>,
}

/// A route's counts merged over a window, with its distinct users and keys.
#[derive(Debug, Clone)]
pub(crate) struct RouteWindow {
    pub(crate) key: RouteKey,
    pub(crate) agg: MinuteAgg,
    pub(crate) users: u64,
    pub(crate) keys: u64,
}

/// Keeps the `keep` largest counts of `targets` (ties: the smaller target first).
pub(crate) fn top_n(
    targets: impl IntoIterator<Item = (String, u64)>,
    keep: usize,
) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = targets.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(keep);
    v
}

/// The storage of the analytics. Both implementations keep the same shapes (see the module docs
/// of [`crate::analytics`]) and are run by the same tests.
#[async_trait]
pub(crate) trait Store: Send + Sync + fmt::Debug {
    /// Stores a batch. `now_min` is the current minute; minutes older than `now_min -
    /// retention` are already filtered out by the writer.
    async fn write(&self, batch: &Batch, now_min: u64, offset_ms: i64) -> Result<(), CacheError>;
    /// Every route with traffic in the minutes `from..=to`, merged.
    async fn routes(&self, from: u64, to: u64) -> Result<Vec<RouteWindow>, CacheError>;
    /// Invalidation counts (`t:<tag>` / `r:<resource>`) per minute in `from..=to`.
    async fn invalidations(
        &self,
        from: u64,
        to: u64,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, CacheError>;
    /// The most recent raw events, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<Event>, CacheError>;
    /// The most requested shared, cacheable targets (path and query) of `route` in the hours
    /// covering the minutes `from..=to`, most requested first, at most `limit`.
    async fn top_targets(
        &self,
        route: &RouteKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, CacheError>;
    /// What is stored now.
    async fn usage(&self, now_min: u64) -> Result<StorageUsage, CacheError>;
    /// The counters of each route with traffic in the minutes `from..=to`, per minute (minutes
    /// without traffic may be left out), for [`Analytics::timeline`](super::Analytics::timeline).
    /// `route`: only the route it names (see `RouteKey::matches`).
    async fn route_minutes(
        &self,
        from: u64,
        to: u64,
        route: Option<&str>,
    ) -> Result<Vec<RouteMinutes>, CacheError>;
}

/// A route and its counters per minute.
pub(crate) type RouteMinutes = (RouteKey, Vec<(u64, MinuteAgg)>);

/// Distinct users kept per route and minute by the memory store (beyond that, new users of that
/// minute are not counted).
pub(crate) const MEMORY_USERS_PER_MINUTE: usize = 10_000;

#[derive(Debug, Default)]
struct MemMinute {
    agg: MinuteAgg,
    users: HashSet<String>,
    keys: HashSet<u64>,
}

#[derive(Debug, Default)]
struct MemState {
    events: VecDeque<Event>,
    routes: HashMap<RouteKey, BTreeMap<u64, MemMinute>>,
    /// Per route and hour: target -> requests, the [`TARGETS_PER_ROUTE_HOUR`] largest.
    targets: HashMap<RouteKey, BTreeMap<u64, HashMap<String, u64>>>,
    invalidations: BTreeMap<u64, HashMap<String, u64>>,
}

/// The in-memory store: a ring of raw events, per-route minute maps, per-minute invalidation
/// maps, pruned to the retention on every write.
pub(crate) struct MemoryStore {
    state: Mutex<MemState>,
    stream_len: usize,
    retention_min: u64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("stream_len", &self.stream_len)
            .field("retention_min", &self.retention_min)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub(crate) fn new(stream_len: usize, retention_min: u64) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(MemState::default()),
            stream_len,
            retention_min,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prune(&self, s: &mut MemState, now_min: u64) {
        let oldest = now_min.saturating_sub(self.retention_min);
        s.routes.retain(|_, minutes| {
            minutes.retain(|m, _| *m >= oldest);
            !minutes.is_empty()
        });
        s.invalidations.retain(|m, _| *m >= oldest);
        s.targets.retain(|_, hours| {
            hours.retain(|h, _| (h + 1) * 60 > oldest);
            !hours.is_empty()
        });
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn write(&self, batch: &Batch, now_min: u64, _offset_ms: i64) -> Result<(), CacheError> {
        let mut s = self.lock();
        for e in &batch.events {
            if s.events.len() >= self.stream_len {
                s.events.pop_front();
            }
            if self.stream_len > 0 {
                s.events.push_back(e.clone());
            }
        }
        for ((route, minute), m) in &batch.routes {
            let slot = s
                .routes
                .entry(route.clone())
                .or_default()
                .entry(*minute)
                .or_default();
            slot.agg.merge(&m.agg);
            for u in &m.users {
                if slot.users.len() < MEMORY_USERS_PER_MINUTE {
                    slot.users.insert(u.clone());
                }
            }
            for k in &m.keys {
                if slot.keys.len() < MEMORY_USERS_PER_MINUTE {
                    slot.keys.insert(*k);
                }
            }
            if !m.targets.is_empty() {
                let hour = s
                    .targets
                    .entry(route.clone())
                    .or_default()
                    .entry(minute / 60)
                    .or_default();
                for (t, n) in &m.targets {
                    *hour.entry(t.clone()).or_default() += n;
                }
                if hour.len() > TARGETS_PER_ROUTE_HOUR {
                    let kept = top_n(hour.drain(), TARGETS_PER_ROUTE_HOUR);
                    hour.extend(kept);
                }
            }
        }
        for (minute, fields) in &batch.invalidations {
            let slot = s.invalidations.entry(*minute).or_default();
            for (f, n) in fields {
                *slot.entry(f.clone()).or_default() += n;
            }
        }
        self.prune(&mut s, now_min);
        Ok(())
    }

    async fn routes(&self, from: u64, to: u64) -> Result<Vec<RouteWindow>, CacheError> {
        let s = self.lock();
        let mut out = Vec::new();
        for (key, minutes) in &s.routes {
            let mut agg = MinuteAgg::default();
            let mut users: HashSet<&String> = HashSet::new();
            let mut keys: HashSet<&u64> = HashSet::new();
            for (_, m) in minutes.range(from..=to) {
                agg.merge(&m.agg);
                users.extend(m.users.iter());
                keys.extend(m.keys.iter());
            }
            if agg.requests > 0 {
                out.push(RouteWindow {
                    key: key.clone(),
                    agg,
                    users: users.len() as u64,
                    keys: keys.len() as u64,
                });
            }
        }
        Ok(out)
    }

    async fn invalidations(
        &self,
        from: u64,
        to: u64,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, CacheError> {
        let s = self.lock();
        let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for (minute, fields) in s.invalidations.range(from..=to) {
            for (f, n) in fields {
                out.entry(f.clone()).or_default().push((*minute, *n));
            }
        }
        Ok(out)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Event>, CacheError> {
        let s = self.lock();
        Ok(s.events.iter().rev().take(limit).cloned().collect())
    }

    async fn top_targets(
        &self,
        route: &RouteKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, CacheError> {
        let s = self.lock();
        let mut sum: HashMap<&String, u64> = HashMap::new();
        if let Some(hours) = s.targets.get(route) {
            for (_, targets) in hours.range(from / 60..=to / 60) {
                for (t, n) in targets {
                    *sum.entry(t).or_default() += n;
                }
            }
        }
        Ok(top_n(sum.into_iter().map(|(t, n)| (t.clone(), n)), limit))
    }

    async fn usage(&self, now_min: u64) -> Result<StorageUsage, CacheError> {
        let mut s = self.lock();
        self.prune(&mut s, now_min);
        let buckets: usize = s.routes.values().map(BTreeMap::len).sum();
        Ok(StorageUsage {
            raw_events: s.events.len() as u64,
            routes: s.routes.len() as u64,
            route_minutes: buckets as u64,
            invalidation_minutes: s.invalidations.len() as u64,
        })
    }

    async fn route_minutes(
        &self,
        from: u64,
        to: u64,
        route: Option<&str>,
    ) -> Result<Vec<RouteMinutes>, CacheError> {
        let s = self.lock();
        Ok(s.routes
            .iter()
            .filter(|(key, _)| route.is_none_or(|r| key.matches(r)))
            .map(|(key, minutes)| {
                let minutes = minutes
                    .range(from..=to)
                    .map(|(m, slot)| (*m, slot.agg.clone()))
                    .collect();
                (key.clone(), minutes)
            })
            .collect())
    }
}
