//! The Redis backend.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, Script};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::warn;

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
if ARGV[6] and ARGV[6] ~= '' then
  redis.pcall('PUBLISH', ARGV[6], ARGV[7])
end
local evicts = 0
if ARGV[5] ~= '0' then
  local info = redis.pcall('INFO', 'memory')
  evicts = 2
  if type(info) == 'string' then
    local limit = tonumber(string.match(info, 'maxmemory:(%d+)')) or 0
    local policy = string.match(info, 'maxmemory_policy:(%S+)') or 'noeviction'
    evicts = 0
    if limit > 0 and policy ~= 'noeviction' then evicts = 1 end
  end
end
return {total, evicts}
"
    };
}

/// Bumps versions and deletes entries, atomically; returns `{deleted, evicts}` where `evicts`
/// says whether Redis may evict keys now (`maxmemory` with a policy other than `noeviction`), so
/// that the writer switches to verified hits at once when the policy changed at runtime: `0` no,
/// `1` yes, `2` unknown (`INFO` refused to an ACL user; taken as yes, the safe side).
/// `ARGV` = version retention ms, tag count `nt`, key count `nk`, bump count `nb`, whether to
/// read the eviction policy (`0`: do not, and `evicts` is `0`; absent: do), then the channel and
/// the notice to publish on it once the entries are deleted (absent or empty channel: none; see
/// [`super::notice`]). The notice is published inside the script, so it is atomic with the
/// invalidation: a replay of a queued invalidation publishes too. `PUBLISH` is called with
/// `pcall`: a user without the channel permission still invalidates.
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
static VERSIONS: LazyLock<Script> = LazyLock::new(|| Script::new(VERSIONS_SCRIPT));

/// Connection settings for [`RedisBackend`].
///
/// `Debug` never prints the password nor the client key.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one response at the connection level. The engine applies its own,
    /// usually shorter, command deadline on top.
    pub response_timeout: Duration,
    /// Upper bound of the reconnection back-off.
    pub max_reconnect_delay: Duration,
    /// ACL user name; replaces the URL's user when set.
    pub username: Option<String>,
    /// Password (of the ACL user, or of `requirepass`); replaces the URL's password when set.
    pub password: Option<String>,
    /// TLS settings of a `rediss://` URL.
    pub tls: RedisTls,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_millis(250),
            response_timeout: Duration::from_secs(2),
            max_reconnect_delay: Duration::from_secs(1),
            username: None,
            password: None,
            tls: RedisTls::default(),
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// TLS settings of a `rediss://` connection (rustls; no OpenSSL).
///
/// By default the server's certificate is verified against the Mozilla root store bundled in
/// the binary (`webpki-roots`), which holds the CAs of the managed services (ElastiCache, Azure
/// Cache for Redis, Upstash, ...), and must name the URL's host. `Debug` never prints the client
/// key.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RedisTls {
    /// CA certificates (PEM, one or more) trusted for the server's certificate, **instead of**
    /// the bundled roots: a private CA, or a service's own CA (Redis Cloud's, a self-managed
    /// server's).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain (PEM) for mutual TLS; needs [`client_key_pem`](Self::client_key_pem).
    pub client_cert_pem: Option<Vec<u8>>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of the client certificate.
    pub client_key_pem: Option<Vec<u8>>,
    /// Accept any server certificate, without verification. Anyone on the path can then read
    /// and change the traffic: only for a test server with a throw-away certificate.
    pub insecure_skip_verify: bool,
}

impl RedisTls {
    /// Whether any setting differs from the default.
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some()
            || self.client_cert_pem.is_some()
            || self.client_key_pem.is_some()
            || self.insecure_skip_verify
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<Vec<u8>>| v.as_ref().map(|_| "<set>");
        f.debug_struct("RedisTls")
            .field("ca_pem", &set(&self.ca_pem))
            .field("client_cert_pem", &set(&self.client_cert_pem))
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// Checks a PEM bundle of CA certificates: at least one, each a usable trust anchor.
pub(crate) fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    let certs = parse_certs(pem)?;
    let mut store = rustls::RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| format!("a certificate is not a usable CA certificate ({e})"))?;
    }
    Ok(())
}

/// Checks a PEM certificate chain: at least one certificate.
pub(crate) fn check_cert_pem(pem: &[u8]) -> Result<(), String> {
    parse_certs(pem).map(drop)
}

/// Checks a PEM private key. The message never quotes the key.
pub(crate) fn check_key_pem(pem: &[u8]) -> Result<(), String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|_| "no PEM private key (PKCS#8, PKCS#1 or SEC1) found".to_owned())
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned());
    }
    Ok(certs)
}

/// Installs rustls' `ring` provider as the process default unless the application installed
/// one: rustls refuses to pick one itself when several are compiled in.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only if another thread installed one meanwhile, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Redis storage through a `redis::aio::ConnectionManager`.
///
/// The connection is made lazily and re-made automatically after failures, so constructing the
/// backend never blocks and never fails because Redis is down. Credentials come from the URL
/// (`redis://user:pass@host:6379/0`) or from [`RedisOptions`], which win; `rediss://` connects
/// with TLS ([`RedisTls`]).
///
/// Under an ACL user that may not run `INFO` the backend assumes Redis may evict (hits are
/// verified, the safe side) and stats report zeros; one that may not run `PING` is taken as up
/// when it answers the refusal. Each is logged once (`cache_redis_acl_limited`).
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
    /// Commands the ACL user may not run that were already logged: bit 0 `INFO`, bit 1 `PING`,
    /// bit 2 `DBSIZE`.
    refused: AtomicU8,
    /// Deadline of the invalidation subscription's connection and checks.
    deadline: Duration,
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
    /// [`CacheError::Redis`] if the URL cannot be parsed; [`CacheError::InvalidArgument`] if the
    /// TLS settings are unusable (a PEM without a certificate or key, a certificate without its
    /// key, TLS settings for a `redis://` URL, or a `#insecure` URL without
    /// [`RedisTls::insecure_skip_verify`]).
    pub fn new(url: &str, options: &RedisOptions) -> Result<RedisBackend, CacheError> {
        let client = client(url, options)?;
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
            refused: AtomicU8::new(0),
            deadline: options.connect_timeout + options.response_timeout,
        })
    }

    /// Logs, once per backend, that the ACL user may not run `command`.
    fn refused_once(&self, bit: u8, command: &str, consequence: &str) {
        if self.refused.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            warn!(name: "cache_redis_acl_limited", event = "cache_redis_acl_limited", command, "the Redis user may not run {command}: {consequence}; see the minimal ACL rule in the README");
        }
    }

    /// The ACL rules of a Redis user that may do everything this library does in `namespace`
    /// and nothing else: its keys (`~{namespace}:*`, every key the library writes starts with
    /// it), one Pub/Sub channel (`{namespace}:l1`, the invalidation notices of the in-process
    /// tier, see [`crate::l1`]), and only the commands the library sends (scripts included).
    /// Append a password and create the user with
    /// `ACL SETUSER <user> on ><password> <rules>`. Add `+select` if the URL names a database
    /// other than 0.
    ///
    /// `INFO`, `DBSIZE` and `PING` may be left out: the backend then assumes that Redis may
    /// evict (every hit is verified), stats show no server figures, and a refused `PING` counts
    /// as an answer.
    ///
    /// ```
    /// use cache_core::backend::RedisBackend;
    /// assert_eq!(
    ///     RedisBackend::acl_rules("gallery"),
    ///     "resetkeys ~gallery:* resetchannels &gallery:l1 -@all +get +mget +set +del +unlink \
    ///      +incr +pexpire +pttl +zadd +zrange +zremrangebyscore +time +evalsha +script|load \
    ///      +scan +publish +subscribe +ping +info +dbsize"
    /// );
    /// ```
    pub fn acl_rules(namespace: &str) -> String {
        format!(
            "resetkeys ~{namespace}:* resetchannels &{namespace}:l1 -@all +get +mget +set +del \
             +unlink +incr +pexpire +pttl +zadd +zrange +zremrangebyscore +time +evalsha \
             +script|load +scan +publish +subscribe +ping +info +dbsize"
        )
    }

    /// The URL with any password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url_redacted
    }

    pub(crate) fn conn(&self) -> Result<ConnectionManager, CacheError> {
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

/// The redis-rs client for `url` with the credentials and TLS settings of `options`.
fn client(url: &str, options: &RedisOptions) -> Result<Client, CacheError> {
    Ok(match connection_parts(url, options)? {
        (info, None) => Client::open(info)?,
        (info, Some(certs)) => Client::build_with_tls(info, certs)?,
    })
}

/// The connection settings of `url` with the credentials and TLS settings of `options` applied,
/// and the certificates to give redis-rs when there are any (a custom CA or a client
/// certificate). One rule for a single node and for every seed of a cluster.
pub(super) fn connection_parts(
    url: &str,
    options: &RedisOptions,
) -> Result<(redis::ConnectionInfo, Option<redis::TlsCertificates>), CacheError> {
    let invalid = |m: &str| CacheError::InvalidArgument(m.to_owned());
    let mut info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &options.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &options.password {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    let tls = &options.tls;
    let (host, port, insecure) = match info.addr() {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => (host.clone(), *port, *insecure),
        _ if tls.is_set() => {
            return Err(invalid(
                "TLS settings (CA, client certificate, insecure) need a rediss:// URL",
            ))
        }
        _ => return Ok((info, None)),
    };
    if insecure && !tls.insecure_skip_verify {
        return Err(invalid(
            "the URL's #insecure fragment turns off certificate verification; it is refused: \
             call CacheBuilder::redis_tls_insecure_skip_verify() (or REDIS_TLS_INSECURE=true) \
             if that is really meant",
        ));
    }
    if let Some(ca) = &tls.ca_pem {
        check_ca_pem(ca).map_err(|m| invalid(&format!("TLS CA: {m}")))?;
    }
    let client_tls = match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            check_cert_pem(cert).map_err(|m| invalid(&format!("TLS client certificate: {m}")))?;
            check_key_pem(key).map_err(|m| invalid(&format!("TLS client key: {m}")))?;
            Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            })
        }
        (None, None) => None,
        _ => {
            return Err(invalid(
                "mutual TLS needs both the client certificate and its private key",
            ))
        }
    };
    ensure_crypto_provider();
    info = info.set_addr(ConnectionAddr::TcpTls {
        host,
        port,
        insecure: tls.insecure_skip_verify,
        tls_params: None,
    });
    if client_tls.is_none() && tls.ca_pem.is_none() {
        return Ok((info, None));
    }
    Ok((
        info,
        Some(redis::TlsCertificates {
            client_tls,
            root_cert: tls.ca_pem.clone(),
        }),
    ))
}

/// Whether the `INFO memory` reply `info` says Redis may evict keys (`maxmemory` set with a policy
/// other than `noeviction`).
pub(super) fn info_may_evict(info: &str) -> bool {
    let field = |name: &str| {
        info.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    };
    let limited = field("maxmemory").is_some_and(|v| v != "0");
    let evicting = field("maxmemory_policy").is_some_and(|p| p != "noeviction");
    limited && evicting
}

/// The eviction hint kept by a backend: `0` unknown, `1` no eviction, `2` eviction (see
/// [`Backend::eviction_hint`]).
pub(super) fn eviction_hint_of(evicts: &AtomicU8) -> Option<bool> {
    match evicts.load(Ordering::Relaxed) {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// The `VERSIONS` script reading (and creating where `create` says so) the version keys `keys`.
pub(super) fn versions_invocation(
    keys: impl Iterator<Item = String>,
    create: impl Iterator<Item = bool>,
    retention: Duration,
) -> redis::ScriptInvocation<'static> {
    let mut inv = VERSIONS.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv.arg(ttl_ms(retention));
    for c in create {
        inv.arg(if c { "1" } else { "0" });
    }
    inv
}

/// Reads the entry `entry` and the versions `version_keys` in one round trip (one pipeline; on a
/// cluster the keys share one slot). Absent versions read as `0`.
pub(super) async fn get_checked_on<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    entry: &str,
    version_keys: &[String],
) -> Result<(Option<Bytes>, Vec<u64>), CacheError> {
    if version_keys.is_empty() {
        let value = redis::cmd("GET").arg(entry).query_async(conn).await?;
        return Ok((value, Vec::new()));
    }
    let (value, versions): (Option<Bytes>, Vec<Option<u64>>) = redis::pipe()
        .cmd("GET")
        .arg(entry)
        .cmd("MGET")
        .arg(version_keys)
        .query_async(conn)
        .await?;
    Ok((
        value,
        versions
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
    ))
}

/// One `SCAN` step from `cursor`: the next cursor (0 at the end) and the keys.
async fn scan_step<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    cursor: u64,
    pattern: &str,
    batch: usize,
) -> Result<(u64, Vec<Vec<u8>>), CacheError> {
    Ok(redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(batch.max(1))
        .query_async(conn)
        .await?)
}

/// `SCAN`s the keys matching `pattern` on one connection, handing each batch to `visit`
/// (`Some(false)` stops). Returns how many keys were handed over, and whether the scan stopped
/// early. One loop for a single node and for each master of a cluster.
pub(super) async fn scan_on<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    pattern: &str,
    batch: usize,
    visit: &mut (dyn FnMut(Vec<String>) -> Option<bool> + Send),
) -> Result<(u64, bool), CacheError> {
    let mut cursor: u64 = 0;
    let mut seen = 0u64;
    loop {
        let (next, keys) = scan_step(conn, cursor, pattern, batch).await?;
        if !keys.is_empty() {
            seen += keys.len() as u64;
            let keys = keys
                .into_iter()
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .collect();
            if visit(keys) == Some(false) {
                return Ok((seen, true));
            }
        }
        if next == 0 {
            return Ok((seen, false));
        }
        cursor = next;
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
        let inv = versions_invocation(
            reads.iter().map(|r| version_key(r.id)),
            (0..reads.len()).map(|i| create.get(i).copied().unwrap_or(false)),
            retention,
        );
        let mut conn = self.conn()?;
        Ok(inv.invoke_async(&mut conn).await?)
    }

    async fn get_checked(
        &self,
        key: &str,
        ids: &[&str],
    ) -> Result<(Option<Bytes>, Vec<u64>), CacheError> {
        let mut conn = self.conn()?;
        let keys: Vec<String> = ids.iter().map(|t| version_key(t)).collect();
        get_checked_on(&mut conn, key, &keys).await
    }

    fn eviction_hint(&self) -> Option<bool> {
        eviction_hint_of(&self.evicts)
    }

    async fn may_evict(&self) -> Result<bool, CacheError> {
        let mut conn = self.conn()?;
        let info: String = match redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
        {
            Ok(info) => info,
            Err(e) if is_noperm(&e) => {
                self.refused_once(
                    1,
                    "INFO",
                    "its eviction policy is unknown, so every hit is verified (as under eviction)",
                );
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(info_may_evict(&info))
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
            .arg(inv.bump.len())
            .arg("1")
            .arg(inv.channel);
        if !inv.channel.is_empty() {
            call.arg(super::notice(inv));
        }
        let mut conn = self.conn()?;
        match call.invoke_async::<(u64, u8)>(&mut conn).await {
            Ok((n, evicts)) => {
                if evicts == 2 {
                    self.refused_once(
                        1,
                        "INFO",
                        "its eviction policy is unknown, so every hit is verified (as under eviction)",
                    );
                }
                self.evicts
                    .store(1 + u8::from(evicts != 0), Ordering::Relaxed);
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
            let (next, keys) = scan_step(&mut conn, cursor, pattern, batch).await?;
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

    async fn scan(
        &self,
        pattern: &str,
        batch: usize,
        visit: &mut (dyn FnMut(Vec<String>) -> bool + Send),
    ) -> Result<u64, CacheError> {
        let mut conn = self.conn()?;
        scan_on(&mut conn, pattern, batch, &mut |keys| Some(visit(keys)))
            .await
            .map(|(seen, _)| seen)
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
        match redis::cmd("PING").query_async::<()>(&mut conn).await {
            Ok(()) => Ok(()),
            // The server answered (the connection and AUTH work): that is what a ping asks.
            Err(e) if is_noperm(&e) => {
                self.refused_once(2, "PING", "health checks take its refusal as an answer");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn notifies(&self) -> bool {
        true
    }

    async fn listen(
        &self,
        channel: &str,
        heartbeat: Duration,
        sink: &dyn super::NoticeSink,
    ) -> Result<(), CacheError> {
        listen_on(&self.client, self.deadline, channel, heartbeat, sink).await
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), CacheError> {
        let mut conn = self.conn()?;
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await?)
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let mut conn = self.conn()?;
        let (info, dbsize): (String, u64) = match redis::pipe()
            .cmd("INFO")
            .cmd("DBSIZE")
            .query_async(&mut conn)
            .await
        {
            Ok(both) => both,
            Err(e) if is_noperm(&e) => {
                // Each alone; what is refused reads as empty.
                let info = match redis::cmd("INFO").query_async::<String>(&mut conn).await {
                    Ok(info) => info,
                    Err(e) if is_noperm(&e) => {
                        self.refused_once(1, "INFO", "stats report no server figures");
                        String::new()
                    }
                    Err(e) => return Err(e.into()),
                };
                let dbsize = match redis::cmd("DBSIZE").query_async::<u64>(&mut conn).await {
                    Ok(n) => n,
                    Err(e) if is_noperm(&e) => {
                        self.refused_once(4, "DBSIZE", "stats report no key count");
                        0
                    }
                    Err(e) => return Err(e.into()),
                };
                (info, dbsize)
            }
            Err(e) => return Err(e.into()),
        };
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

/// Whether Redis refused a command to the ACL user (`NOPERM`).
fn is_noperm(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
}

/// Whether a script error says the server does not understand script flags (Redis before 7).
fn rejects_script_flags(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("shebang") || text.contains("Error compiling script")
}

/// Milliseconds for `PX`, at least 1 (Redis rejects 0).
/// One subscription to `channel` on the node of `client` (a dedicated RESP2 Pub/Sub
/// connection): established within `deadline`, checked by a `PING` every `heartbeat` (answered
/// within `deadline`), until the connection closes or a check fails.
pub(super) async fn listen_on(
    client: &Client,
    deadline: Duration,
    channel: &str,
    heartbeat: Duration,
    sink: &dyn super::NoticeSink,
) -> Result<(), CacheError> {
    let timeout = || CacheError::Timeout(deadline);
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(deadline, connect)
        .await
        .map_err(|_| timeout())??;
    let (mut control, mut stream) = pubsub.split();
    sink.subscribed();
    let messages = async {
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)
            })
            .await;
            match next {
                Some(msg) => sink.notice(msg.get_payload_bytes()),
                None => {
                    return CacheError::Backend("the invalidation subscription was closed".into())
                }
            }
        }
    };
    let checks = async {
        loop {
            tokio::time::sleep(heartbeat).await;
            match tokio::time::timeout(deadline, control.ping::<()>()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return CacheError::from(e),
                Err(_) => return timeout(),
            }
        }
    };
    Err(tokio::select! {
        e = messages => e,
        e = checks => e,
    })
}

pub(super) fn ttl_ms(d: Duration) -> u64 {
    crate::codec::duration_ms(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::{redact_url, RedisBackend, RedisOptions};

    #[test]
    fn debug_never_prints_the_password_nor_the_client_key() {
        let options = RedisOptions {
            username: Some("app".into()),
            password: Some("hunter2-secret".into()),
            tls: super::RedisTls {
                ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                client_cert_pem: Some(b"CERT".to_vec()),
                client_key_pem: Some(b"-----BEGIN PRIVATE KEY----- keybytes".to_vec()),
                insecure_skip_verify: false,
            },
            ..RedisOptions::default()
        };
        let debug = format!("{options:?}");
        assert!(debug.contains("app") && debug.contains("***"), "{debug}");
        for secret in ["hunter2", "PRIVATE KEY", "keybytes", "BEGIN"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        let backend = RedisBackend::new("redis://app:hunter2-secret@127.0.0.1:1", &options);
        // TLS settings for a plain URL are refused; the error does not quote the password.
        let err = backend.unwrap_err().to_string();
        assert!(
            err.contains("rediss://") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn an_insecure_url_fragment_is_refused_unless_asked_for_by_name() {
        let err = RedisBackend::new("rediss://127.0.0.1:1/#insecure", &RedisOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis_tls_insecure_skip_verify"), "{err}");
        let options = RedisOptions {
            tls: super::RedisTls {
                insecure_skip_verify: true,
                ..super::RedisTls::default()
            },
            ..RedisOptions::default()
        };
        RedisBackend::new("rediss://127.0.0.1:1/#insecure", &options).unwrap();
        RedisBackend::new("rediss://127.0.0.1:1", &options).unwrap();
    }

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
