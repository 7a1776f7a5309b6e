//! The Redis store of the analytics (single node and Redis Cluster).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, FromRedisValue, Pipeline};

use super::store::{
    top_n, Batch, MinuteAgg, RouteKey, RouteMinutes, RouteWindow, Store, TARGETS_PER_ROUTE_HOUR,
};
use super::{Event, Outcome, StorageUsage};
use crate::backend::{RedisBackend, RedisClusterBackend};
use crate::error::CacheError;

/// Minutes before the retention pruned by each write (the writer runs many times a minute; a
/// gap longer than this leaves older keys to their expiry).
const PRUNE: u64 = 5;

/// Where the connection comes from: the cache's own backend.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Single(Arc<RedisBackend>),
    Cluster(Arc<RedisClusterBackend>),
}

/// The Redis store. Keys (all under the namespace, every key of one route under one hash tag so
/// that a route's commands go to one node of a cluster in one pipeline):
///
/// | key | type | content |
/// | --- | --- | --- |
/// | `{ns}:an:events` | stream, `MAXLEN ~ N` | raw events |
/// | `{ns}:an:routes` | sorted set | `METHOD template` -> last minute seen |
/// | `{ns}:an:{r.<id>}:m:<minute>` | hash, expires after the retention | counters of one route-minute |
/// | `{ns}:an:{r.<id>}:u:<minute>` | HyperLogLog, same expiry | distinct pseudonymous users |
/// | `{ns}:an:{r.<id>}:k:<minute>` | HyperLogLog, same expiry | distinct keys (keyed hashes of path and query) |
/// | `{ns}:an:{r.<id>}:t:<hour>` | sorted set, the 256 largest, expires after the retention | shared cacheable targets -> requests |
/// | `{ns}:an:{inv}:m:<minute>` | hash, same expiry | invalidations per `t:<tag>` / `r:<resource>` |
pub(crate) struct RedisStore {
    source: Source,
    prefix: String,
    stream_len: usize,
    retention_min: u64,
    deadline: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("stream_len", &self.stream_len)
            .field("retention_min", &self.retention_min)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(
        source: Source,
        namespace: &str,
        stream_len: usize,
        retention_min: u64,
        deadline: Duration,
    ) -> RedisStore {
        RedisStore {
            source,
            prefix: format!("{namespace}:an:"),
            stream_len,
            retention_min,
            deadline,
        }
    }

    fn stream(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}routes", self.prefix)
    }

    fn minute_key(&self, id: &str, minute: u64) -> String {
        format!("{}{{r.{id}}}:m:{minute}", self.prefix)
    }

    fn users_key(&self, id: &str, minute: u64) -> String {
        format!("{}{{r.{id}}}:u:{minute}", self.prefix)
    }

    fn keys_key(&self, id: &str, minute: u64) -> String {
        format!("{}{{r.{id}}}:k:{minute}", self.prefix)
    }

    fn targets_key(&self, id: &str, hour: u64) -> String {
        format!("{}{{r.{id}}}:t:{hour}", self.prefix)
    }

    fn inv_key(&self, minute: u64) -> String {
        format!("{}{{inv}}:m:{minute}", self.prefix)
    }

    /// Runs groups of commands: one pipeline on a single node; one pipeline per group (one
    /// hash slot each) on a cluster. Returns each group's replies.
    async fn run<T: FromRedisValue>(&self, groups: Vec<Vec<Cmd>>) -> Result<Vec<T>, CacheError> {
        let fut = async {
            let mut out = Vec::with_capacity(groups.len());
            match &self.source {
                Source::Single(b) => {
                    let mut conn = b.conn()?;
                    let mut pipe = Pipeline::new();
                    let mut sizes = Vec::new();
                    for g in &groups {
                        sizes.push(g.len());
                        for c in g {
                            pipe.add_command(c.clone());
                        }
                    }
                    if sizes.iter().all(|n| *n == 0) {
                        return Ok(out);
                    }
                    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                    let mut it = replies.into_iter();
                    for n in sizes {
                        let part: Vec<redis::Value> = it.by_ref().take(n).collect();
                        out.push(parse(redis::Value::Array(part))?);
                    }
                }
                Source::Cluster(b) => {
                    let mut conn = b.conn().await?;
                    for g in groups {
                        if g.is_empty() {
                            out.push(parse(redis::Value::Array(Vec::new()))?);
                            continue;
                        }
                        let mut pipe = Pipeline::new();
                        for c in g {
                            pipe.add_command(c);
                        }
                        out.push(pipe.query_async(&mut conn).await?);
                    }
                }
            }
            Ok::<_, CacheError>(out)
        };
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout(self.deadline)),
        }
    }

    /// The routes of the index seen since the minute `from`.
    async fn active_routes(&self, from: u64) -> Result<Vec<RouteKey>, CacheError> {
        let mut c = redis::cmd("ZRANGE");
        c.arg(self.index()).arg(from).arg("+inf").arg("BYSCORE");
        let members: Vec<Vec<Vec<String>>> = self.run(vec![vec![c]]).await?;
        Ok(members
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|m| RouteKey::from_member(&m))
            .collect())
    }

    fn expire_at_ms(&self, minute: u64, offset_ms: i64) -> i64 {
        let end = ((minute + self.retention_min + 1) * 60_000) as i64;
        end - offset_ms
    }
}

fn parse<T: FromRedisValue>(v: redis::Value) -> Result<T, CacheError> {
    T::from_redis_value(v).map_err(|e| CacheError::from(redis::RedisError::from(e)))
}

fn parse_u64(v: &str) -> u64 {
    v.parse().unwrap_or(0)
}

#[async_trait]
impl Store for RedisStore {
    async fn write(&self, batch: &Batch, now_min: u64, offset_ms: i64) -> Result<(), CacheError> {
        let mut groups: Vec<Vec<Cmd>> = Vec::new();
        if self.stream_len > 0 && !batch.events.is_empty() {
            let stream = self.stream();
            let mut g = Vec::with_capacity(batch.events.len());
            for e in &batch.events {
                let mut c = redis::cmd("XADD");
                c.arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.stream_len)
                    .arg("*")
                    .arg("r")
                    .arg(&e.route)
                    .arg("m")
                    .arg(&e.method)
                    .arg("u")
                    .arg(e.user.as_deref().unwrap_or(""))
                    .arg("t")
                    .arg(e.start_ms)
                    .arg("s")
                    .arg(e.status)
                    .arg("l")
                    .arg(u64::try_from(e.latency.as_micros()).unwrap_or(u64::MAX))
                    .arg("o")
                    .arg(e.outcome.code())
                    .arg("b")
                    .arg(e.bytes)
                    .arg("p")
                    .arg(u8::from(e.private));
                g.push(c);
            }
            groups.push(g);
        }
        if !batch.routes.is_empty() {
            let index = self.index();
            let mut g = Vec::new();
            let mut last: BTreeMap<&RouteKey, u64> = BTreeMap::new();
            for (route, minute) in batch.routes.keys() {
                let e = last.entry(route).or_default();
                *e = (*e).max(*minute);
            }
            for (route, minute) in last {
                let mut c = redis::cmd("ZADD");
                c.arg(&index).arg("GT").arg(minute).arg(route.member());
                g.push(c);
            }
            let mut c = redis::cmd("ZREMRANGEBYSCORE");
            c.arg(&index)
                .arg("-inf")
                .arg(format!("({}", now_min.saturating_sub(self.retention_min)));
            g.push(c);
            groups.push(g);
        }
        let mut per_route: BTreeMap<String, Vec<Cmd>> = BTreeMap::new();
        let mut hours: BTreeMap<(String, u64), u64> = BTreeMap::new();
        for ((route, minute), m) in &batch.routes {
            let (agg, users) = (&m.agg, &m.users);
            let id = route.id();
            let g = per_route.entry(id.clone()).or_default();
            let key = self.minute_key(&id, *minute);
            let at = self.expire_at_ms(*minute, offset_ms);
            for (hll, members) in [(self.keys_key(&id, *minute), &m.keys)] {
                if !members.is_empty() {
                    let mut c = redis::cmd("PFADD");
                    c.arg(&hll);
                    for k in members {
                        c.arg(format!("{k:016x}"));
                    }
                    g.push(c);
                    let mut c = redis::cmd("PEXPIREAT");
                    c.arg(&hll).arg(at);
                    g.push(c);
                }
            }
            if !m.targets.is_empty() {
                let tkey = self.targets_key(&id, minute / 60);
                for (t, n) in &m.targets {
                    let mut c = redis::cmd("ZINCRBY");
                    c.arg(&tkey).arg(*n).arg(t);
                    g.push(c);
                }
                let end = self.expire_at_ms(minute / 60 * 60 + 59, offset_ms);
                let e = hours.entry((id.clone(), minute / 60)).or_default();
                *e = (*e).max(end as u64);
            }
            if agg.first_ms > 0 {
                // The first batch of the minute sets it: the minute's first request to within
                // a batch (200 ms), on every instance.
                let mut c = redis::cmd("HSETNX");
                c.arg(&key).arg("f").arg(agg.first_ms);
                g.push(c);
            }
            for (field, v) in agg.fields() {
                let mut c = redis::cmd("HINCRBY");
                c.arg(&key).arg(field).arg(v);
                g.push(c);
            }
            let mut c = redis::cmd("PEXPIREAT");
            c.arg(&key).arg(at);
            g.push(c);
            if !users.is_empty() {
                let ukey = self.users_key(&id, *minute);
                let mut c = redis::cmd("PFADD");
                c.arg(&ukey);
                for u in users {
                    c.arg(u);
                }
                g.push(c);
                let mut c = redis::cmd("PEXPIREAT");
                c.arg(&ukey).arg(at);
                g.push(c);
            }
        }
        // Minutes that just left the retention go now, not at their expiry: the store holds the
        // retention in the analytics clock, as the memory store does (the expiry stays the bound
        // for routes no longer written).
        let gone = |m: u64| m + self.retention_min < now_min;
        let stale: Vec<u64> = (now_min.saturating_sub(self.retention_min + PRUNE)..now_min)
            .filter(|m| gone(*m))
            .collect();
        for ((id, hour), end) in hours {
            let tkey = self.targets_key(&id, hour);
            let g = per_route.entry(id).or_default();
            let mut c = redis::cmd("ZREMRANGEBYRANK");
            c.arg(&tkey)
                .arg(0)
                .arg(-(TARGETS_PER_ROUTE_HOUR as i64) - 1);
            g.push(c);
            let mut c = redis::cmd("PEXPIREAT");
            c.arg(&tkey).arg(end);
            g.push(c);
        }
        for (id, g) in &mut per_route {
            if !stale.is_empty() {
                let mut c = redis::cmd("UNLINK");
                for m in &stale {
                    c.arg(self.minute_key(id, *m))
                        .arg(self.users_key(id, *m))
                        .arg(self.keys_key(id, *m));
                }
                g.push(c);
            }
        }
        groups.extend(per_route.into_values());
        if !batch.invalidations.is_empty() {
            let mut g = Vec::new();
            for (minute, fields) in &batch.invalidations {
                let key = self.inv_key(*minute);
                for (f, n) in fields {
                    let mut c = redis::cmd("HINCRBY");
                    c.arg(&key).arg(f).arg(*n);
                    g.push(c);
                }
                let mut c = redis::cmd("PEXPIREAT");
                c.arg(&key).arg(self.expire_at_ms(*minute, offset_ms));
                g.push(c);
            }
            if !stale.is_empty() {
                let mut c = redis::cmd("UNLINK");
                for m in &stale {
                    c.arg(self.inv_key(*m));
                }
                g.push(c);
            }
            groups.push(g);
        }
        self.run::<redis::Value>(groups).await.map(|_| ())
    }

    async fn routes(&self, from: u64, to: u64) -> Result<Vec<RouteWindow>, CacheError> {
        let routes = self.active_routes(from).await?;
        let mut groups = Vec::with_capacity(routes.len());
        for route in &routes {
            let id = route.id();
            let mut g = Vec::new();
            for minute in from..=to {
                let mut c = redis::cmd("HGETALL");
                c.arg(self.minute_key(&id, minute));
                g.push(c);
            }
            let mut c = redis::cmd("PFCOUNT");
            for minute in from..=to {
                c.arg(self.users_key(&id, minute));
            }
            g.push(c);
            let mut c = redis::cmd("PFCOUNT");
            for minute in from..=to {
                c.arg(self.keys_key(&id, minute));
            }
            g.push(c);
            groups.push(g);
        }
        let replies: Vec<Vec<redis::Value>> = self.run(groups).await?;
        let mut out = Vec::new();
        for (route, mut reply) in routes.into_iter().zip(replies) {
            let mut count = || match reply.pop() {
                Some(v) => u64::from_redis_value(v).unwrap_or(0),
                None => 0,
            };
            let keys = count();
            let users = count();
            let mut agg = MinuteAgg::default();
            for v in reply {
                let fields: HashMap<String, String> =
                    HashMap::from_redis_value(v).unwrap_or_default();
                for (f, n) in fields {
                    agg.add_field(&f, parse_u64(&n));
                }
            }
            if agg.requests > 0 {
                out.push(RouteWindow {
                    key: route,
                    agg,
                    users,
                    keys,
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
        let g: Vec<Cmd> = (from..=to)
            .map(|m| {
                let mut c = redis::cmd("HGETALL");
                c.arg(self.inv_key(m));
                c
            })
            .collect();
        let replies: Vec<Vec<HashMap<String, String>>> = self.run(vec![g]).await?;
        let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for (minute, fields) in (from..=to).zip(replies.into_iter().flatten()) {
            for (f, n) in fields {
                out.entry(f).or_default().push((minute, parse_u64(&n)));
            }
        }
        Ok(out)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Event>, CacheError> {
        let mut c = redis::cmd("XREVRANGE");
        c.arg(self.stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit);
        let replies: Vec<Vec<Vec<(String, Vec<String>)>>> = self.run(vec![vec![c]]).await?;
        let mut out = Vec::new();
        for (_, kv) in replies.into_iter().flatten().flatten() {
            let mut fields: HashMap<&str, &str> = HashMap::new();
            for pair in kv.chunks(2) {
                if let [k, v] = pair {
                    fields.insert(k, v);
                }
            }
            let get = |k: &str| fields.get(k).copied().unwrap_or("");
            let user = get("u");
            out.push(Event {
                route: get("r").to_owned(),
                method: get("m").to_owned(),
                user: (!user.is_empty()).then(|| user.to_owned()),
                start_ms: parse_u64(get("t")),
                status: get("s").parse().unwrap_or(0),
                latency: Duration::from_micros(parse_u64(get("l"))),
                outcome: Outcome::from_code(get("o")).unwrap_or(Outcome::None),
                bytes: parse_u64(get("b")),
                private: get("p") == "1",
                target: None,
                target_key: None,
                cache_key: None,
            });
        }
        Ok(out)
    }

    async fn top_targets(
        &self,
        route: &RouteKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, CacheError> {
        let id = route.id();
        let g: Vec<Cmd> = (from / 60..=to / 60)
            .map(|h| {
                let mut c = redis::cmd("ZRANGE");
                c.arg(self.targets_key(&id, h))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
                c
            })
            .collect();
        let replies: Vec<Vec<Vec<(String, f64)>>> = self.run(vec![g]).await?;
        let mut sum: HashMap<String, u64> = HashMap::new();
        for (t, n) in replies.into_iter().flatten().flatten() {
            *sum.entry(t).or_default() += n as u64;
        }
        Ok(top_n(sum, limit))
    }

    async fn usage(&self, now_min: u64) -> Result<StorageUsage, CacheError> {
        let mut xlen = redis::cmd("XLEN");
        xlen.arg(self.stream());
        let mut members = redis::cmd("ZRANGE");
        members.arg(self.index()).arg(0).arg(-1);
        let first: Vec<redis::Value> = self.run(vec![vec![xlen], vec![members]]).await?;
        let mut first = first.into_iter();
        let raw_events = first
            .next()
            .and_then(|v| Vec::<u64>::from_redis_value(v).ok())
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        let routes: Vec<RouteKey> = first
            .next()
            .and_then(|v| Vec::<Vec<String>>::from_redis_value(v).ok())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|m| RouteKey::from_member(&m))
            .collect();
        // Every minute a key of the retention may still cover (one more on each side).
        let from = now_min.saturating_sub(self.retention_min + 1);
        let to = now_min + 1;
        let mut groups = Vec::new();
        for route in &routes {
            let id = route.id();
            let mut c = redis::cmd("EXISTS");
            for m in from..=to {
                c.arg(self.minute_key(&id, m));
            }
            groups.push(vec![c]);
        }
        let mut c = redis::cmd("EXISTS");
        for m in from..=to {
            c.arg(self.inv_key(m));
        }
        groups.push(vec![c]);
        let counts: Vec<Vec<u64>> = self.run(groups).await?;
        let mut counts: Vec<u64> = counts.into_iter().map(|v| v.iter().sum()).collect();
        let invalidation_minutes = counts.pop().unwrap_or(0);
        Ok(StorageUsage {
            raw_events,
            routes: routes.len() as u64,
            route_minutes: counts.iter().sum(),
            invalidation_minutes,
        })
    }

    async fn route_minutes(
        &self,
        from: u64,
        to: u64,
        route: Option<&str>,
    ) -> Result<Vec<RouteMinutes>, CacheError> {
        let routes: Vec<RouteKey> = self
            .active_routes(from)
            .await?
            .into_iter()
            .filter(|k| route.is_none_or(|r| k.matches(r)))
            .collect();
        // One group (one hash slot, one pipeline on a cluster) per route.
        let groups: Vec<Vec<Cmd>> = routes
            .iter()
            .map(|route| {
                let id = route.id();
                (from..=to)
                    .map(|minute| {
                        let mut c = redis::cmd("HGETALL");
                        c.arg(self.minute_key(&id, minute));
                        c
                    })
                    .collect()
            })
            .collect();
        let replies: Vec<Vec<redis::Value>> = self.run(groups).await?;
        let mut out = Vec::with_capacity(routes.len());
        for (route, reply) in routes.into_iter().zip(replies) {
            let mut minutes = Vec::new();
            for (minute, v) in (from..=to).zip(reply) {
                let fields: HashMap<String, String> =
                    HashMap::from_redis_value(v).unwrap_or_default();
                if fields.is_empty() {
                    continue;
                }
                let mut agg = MinuteAgg::default();
                for (f, n) in fields {
                    agg.add_field(&f, parse_u64(&n));
                }
                minutes.push((minute, agg));
            }
            out.push((route, minutes));
        }
        Ok(out)
    }
}
