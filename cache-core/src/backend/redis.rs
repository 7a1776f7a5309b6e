//! The Redis backend.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{index_key, version_key, Backend, BackendInfo, Invalidation, Put, VersionRead};
use crate::error::CacheError;

/// Stores entries and indexes them under their tags, each entry only if its guard holds.
///
/// `ARGV[1]` = entry count; per entry `ARGV`: value, ttl ms, guard count `ng`, tag count `nt`,
/// then the `ng` expected versions. `KEYS` per entry: the entry key, the `ng` version keys of its
/// guard, then the `nt` index keys of its tags. Server time is used for index scores, so clock
/// skew between application instances cannot prune live members.
const PUT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ki, ai = 1, 2
local out = {}
for e = 1, tonumber(ARGV[1]) do
  local key = KEYS[ki]
  local val = ARGV[ai]
  local ttl = tonumber(ARGV[ai + 1])
  local ng = tonumber(ARGV[ai + 2])
  local nt = tonumber(ARGV[ai + 3])
  ai = ai + 4
  local ok = true
  for j = 0, ng - 1 do
    local cur = tonumber(redis.call('GET', KEYS[ki + 1 + j]) or '0') or 0
    if cur ~= tonumber(ARGV[ai + j]) then ok = false end
  end
  ai = ai + ng
  if ok then
    redis.call('SET', key, val, 'PX', ttl)
    for j = 0, nt - 1 do
      local idx = KEYS[ki + 1 + ng + j]
      redis.call('ZADD', idx, now + ttl, key)
      redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. now)
      if redis.call('PTTL', idx) < ttl + 1000 then
        redis.call('PEXPIRE', idx, ttl + 1000)
      end
    end
    out[e] = 1
  else
    out[e] = 0
  end
  ki = ki + 1 + ng + nt
end
return out
";

/// The body of the invalidation script (a macro, so that both variants share one literal).
macro_rules! invalidate_body {
    () => {
        r"
local ret = ARGV[1]
local nt, nk, nb = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local total = 0
local i = 1
for _ = 1, nt do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ret)
  local members = redis.call('ZRANGE', KEYS[i + 1], 0, -1)
  for s = 1, #members, 1000 do
    total = total + redis.call('UNLINK', unpack(members, s, math.min(s + 999, #members)))
  end
  redis.call('DEL', KEYS[i + 1])
  i = i + 2
end
for _ = 1, nk do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ret)
  total = total + redis.call('UNLINK', KEYS[i])
  i = i + 2
end
for _ = 1, nb do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ret)
  i = i + 1
end
local evicts = 0
if ARGV[5] ~= '0' then
  local info = redis.call('INFO', 'memory')
  local limit = tonumber(string.match(info, 'maxmemory:(%d+)')) or 0
  local policy = string.match(info, 'maxmemory_policy:(%S+)') or 'noeviction'
  if limit > 0 and policy ~= 'noeviction' then evicts = 1 end
end
return {total, evicts}
"
    };
}

/// Bumps versions and deletes entries, atomically; returns `{deleted, evicts}` where `evicts`
/// says whether Redis may evict keys now (`maxmemory` with a policy other than `noeviction`), so
/// that the writer switches to verified hits at once when the policy changed at runtime.
/// `ARGV` = version retention ms, tag count `nt`, key count `nk`, bump count `nb`, and whether to
/// read the eviction policy (`0`: do not; absent: do).
/// `KEYS` = per tag (version key, index key), per key (entry key, version key), then the `nb`
/// version keys to bump.
///
/// Declared `allow-oom` (Redis 7 script flags): an invalidation must succeed on a full Redis
/// (`maxmemory` with `noeviction`), where it frees memory; the few bytes of a version bump are
/// allowed past the limit. Redis 6 does not know flags: [`INVALIDATE_LEGACY`] is used there.
const INVALIDATE_SCRIPT: &str = concat!("#!lua flags=allow-oom\n", invalidate_body!());

/// The invalidation script without flags, for servers older than Redis 7.
const INVALIDATE_LEGACY_SCRIPT: &str = invalidate_body!();

/// Reads versions and creates the missing ones marked in `ARGV[i + 1]` (`1`) with a fresh value:
/// the server time in microseconds (never reused by a later creation). `ARGV[1]` = retention ms.
const VERSIONS_SCRIPT: &str = r"
local t = redis.call('TIME')
local fresh = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v and ARGV[i + 1] == '1' then
    redis.call('SET', KEYS[i], fresh, 'PX', ARGV[1])
    v = fresh
  end
  out[i] = tonumber(v) or 0
end
return out
";

const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub(super) static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_SCRIPT));
pub(super) static INVALIDATE: LazyLock<Script> = LazyLock::new(|| Script::new(INVALIDATE_SCRIPT));
static INVALIDATE_LEGACY: LazyLock<Script> =
    LazyLock::new(|| Script::new(INVALIDATE_LEGACY_SCRIPT));
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(UNLOCK_SCRIPT));
pub(super) static VERSIONS: LazyLock<Script> = LazyLock::new(|| Script::new(VERSIONS_SCRIPT));

/// Connection settings for [`RedisBackend`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one response at the connection level. The engine applies its own,
    /// usually shorter, command deadline on top.
    pub response_timeout: Duration,
    /// Upper bound of the reconnection back-off.
    pub max_reconnect_delay: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_millis(250),
            response_timeout: Duration::from_secs(2),
            max_reconnect_delay: Duration::from_secs(1),
        }
    }
}

/// Redis storage through a `redis::aio::ConnectionManager`.
///
/// The connection is made lazily and re-made automatically after failures, so constructing the
/// backend never blocks and never fails because Redis is down. AUTH and TLS come from the URL
/// (`redis://user:pass@host:6379/0`; `rediss://` requires a TLS feature of the `redis` crate).
pub struct RedisBackend {
    client: Client,
    config: ConnectionManagerConfig,
    /// Created on first use, inside the caller's runtime (the manager spawns a task), so that
    /// building a backend never needs a runtime and never blocks.
    conn: OnceLock<ConnectionManager>,
    url_redacted: String,
    /// The server rejected script flags (older than Redis 7): use the legacy scripts.
    legacy_scripts: AtomicBool,
    /// What the last invalidation said of eviction: 0 unknown, 1 no, 2 yes.
    evicts: AtomicU8,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url_redacted)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Creates a backend for `url` without connecting.
    ///
    /// # Errors
    /// [`CacheError::Redis`] if the URL cannot be parsed.
    pub fn new(url: &str, options: &RedisOptions) -> Result<RedisBackend, CacheError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(options.max_reconnect_delay)
            .set_number_of_retries(2);
        Ok(RedisBackend {
            client,
            config,
            conn: OnceLock::new(),
            url_redacted: redact_url(url),
            legacy_scripts: AtomicBool::new(false),
            evicts: AtomicU8::new(0),
        })
    }

    /// The URL with any password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url_redacted
    }

    fn conn(&self) -> Result<ConnectionManager, CacheError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::Backend(
                "the Redis backend must be used inside a tokio runtime".into(),
            ));
        }
        let conn =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
        // Two first calls racing may both create one; the loser's is dropped.
        Ok(self.conn.get_or_init(|| conn).clone())
    }
}

/// Replaces the password in a Redis URL with `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut conn = self.conn()?;
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        Ok(redis::cmd("MGET").arg(keys).query_async(&mut conn).await?)
    }

    async fn versions(&self, reads: &[VersionRead<'_>]) -> Result<Vec<u64>, CacheError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = reads.iter().map(|r| version_key(r.id)).collect();
        let mut conn = self.conn()?;
        let versions: Vec<Option<u64>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(versions
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    async fn versions_or_create(
        &self,
        reads: &[VersionRead<'_>],
        create: &[bool],
        retention: Duration,
    ) -> Result<Vec<u64>, CacheError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = VERSIONS.prepare_invoke();
        for r in reads {
            inv.key(version_key(r.id));
        }
        inv.arg(ttl_ms(retention));
        for i in 0..reads.len() {
            inv.arg(if create.get(i).copied().unwrap_or(false) {
                "1"
            } else {
                "0"
            });
        }
        let mut conn = self.conn()?;
        Ok(inv.invoke_async(&mut conn).await?)
    }

    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<Bytes>, Vec<u64>), CacheError> {
        let mut conn = self.conn()?;
        if ids.is_empty() {
            let value = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            return Ok((value, Vec::new()));
        }
        let keys: Vec<String> = ids.iter().map(|t| version_key(t)).collect();
        let (value, versions): (Option<Bytes>, Vec<Option<u64>>) = redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await?;
        Ok((
            value,
            versions
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        ))
    }

    fn eviction_hint(&self) -> Option<bool> {
        match self.evicts.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    async fn may_evict(&self) -> Result<bool, CacheError> {
        let mut conn = self.conn()?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await?;
        let field = |name: &str| {
            info.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let limited = field("maxmemory").is_some_and(|v| v != "0");
        let evicting = field("maxmemory_policy").is_some_and(|p| p != "noeviction");
        Ok(limited && evicting)
    }

    async fn put(&self, puts: &[Put<'_>]) -> Result<Vec<bool>, CacheError> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        // Fast path: one unguarded, untagged entry is a plain SET.
        if let [p] = puts {
            if p.tags.is_empty() && p.guard.is_none() {
                redis::cmd("SET")
                    .arg(p.key)
                    .arg(p.value)
                    .arg("PX")
                    .arg(ttl_ms(p.ttl))
                    .query_async::<()>(&mut conn)
                    .await?;
                return Ok(vec![true]);
            }
        }
        let mut inv = PUT.prepare_invoke();
        inv.arg(puts.len());
        for p in puts {
            inv.key(p.key);
            let (ids, expected): (&[String], &[u64]) = match &p.guard {
                Some(g) => (g.ids, g.versions),
                None => (&[], &[]),
            };
            for id in ids {
                inv.key(version_key(id));
            }
            for tag in p.tags {
                inv.key(index_key(tag));
            }
            inv.arg(p.value)
                .arg(ttl_ms(p.ttl))
                .arg(ids.len())
                .arg(p.tags.len());
            for i in 0..ids.len() {
                inv.arg(expected.get(i).copied().unwrap_or(0));
            }
        }
        let stored: Vec<i64> = inv.invoke_async(&mut conn).await?;
        Ok(stored.into_iter().map(|s| s == 1).collect())
    }

    async fn invalidate(&self, inv: &Invalidation<'_>) -> Result<u64, CacheError> {
        if inv.tags.is_empty() && inv.keys.is_empty() && inv.bump.is_empty() {
            return Ok(0);
        }
        let legacy = self.legacy_scripts.load(Ordering::Relaxed);
        let script: &Script = if legacy {
            &INVALIDATE_LEGACY
        } else {
            &INVALIDATE
        };
        let mut call = script.prepare_invoke();
        for tag in inv.tags {
            call.key(version_key(tag)).key(index_key(tag));
        }
        for (key, id) in inv.keys {
            call.key(*key).key(version_key(id));
        }
        for id in inv.bump {
            call.key(version_key(id));
        }
        call.arg(ttl_ms(inv.retention))
            .arg(inv.tags.len())
            .arg(inv.keys.len())
            .arg(inv.bump.len());
        let mut conn = self.conn()?;
        match call.invoke_async::<(u64, u8)>(&mut conn).await {
            Ok((n, evicts)) => {
                self.evicts
                    .store(1 + u8::from(evicts == 1), Ordering::Relaxed);
                Ok(n)
            }
            // Redis 6 and older reject the `#!lua` flags line: fall back for good.
            Err(e) if !legacy && rejects_script_flags(&e) => {
                self.legacy_scripts.store(true, Ordering::Relaxed);
                Box::pin(self.invalidate(inv)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_pattern(&self, pattern: &str, batch: usize) -> Result<u64, CacheError> {
        let mut conn = self.conn()?;
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(batch.max(1))
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn()?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        let mut conn = self.conn()?;
        UNLOCK
            .key(key)
            .arg(token)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn()?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let mut conn = self.conn()?;
        let (info, dbsize): (String, u64) = redis::pipe()
            .cmd("INFO")
            .cmd("DBSIZE")
            .query_async(&mut conn)
            .await?;
        let field = |name: &str| -> Option<&str> {
            info.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let num = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(BackendInfo {
            backend: "redis".into(),
            total_keys: dbsize,
            memory_used_bytes: num("used_memory"),
            keyspace_hits: num("keyspace_hits"),
            keyspace_misses: num("keyspace_misses"),
            connected_clients: num("connected_clients"),
            version: field("redis_version").unwrap_or_default().to_owned(),
        })
    }
}

/// Whether a script error says the server does not understand script flags (Redis before 7).
fn rejects_script_flags(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("shebang") || text.contains("Error compiling script")
}

/// Milliseconds for `PX`, at least 1 (Redis rejects 0).
pub(super) fn ttl_ms(d: Duration) -> u64 {
    crate::codec::duration_ms(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://tokenonly@host"), "redis://***@host");
    }
}
