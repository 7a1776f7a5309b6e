//! Fault injection through Redis commands: a blocked server (`DEBUG SLEEP`), paused clients
//! (`CLIENT PAUSE`), a full server (`maxmemory`), dropped connections (`CLIENT KILL`).
//!
//! [`RedisServer::kill`], [`pause`](RedisServer::pause) and friends act on the process; the
//! faults here act on a running server through its own admin commands, on a separate short-lived
//! connection, so they reproduce what a real deployment sees: a server busy with a slow command,
//! a failover that pauses writers, a full `maxmemory`, a proxy or `timeout` dropping clients.
//!
//! Like the process faults they need a server owned by the test
//! ([`RedisServer::start_owned`]): they panic on the external server of `REDIS_URL`, which they
//! would otherwise block, fill or disconnect for everybody. Each is bounded: the durations are
//! the caller's, the fill stops at [`FILL_MAX_KEYS`] keys or [`FILL_MAX_TIME`].

use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::server::RedisServer;

/// Key prefix of the keys written by [`RedisServer::fill_to_maxmemory`] (and deleted by
/// [`RedisServer::reset_memory`]). No cache namespace of the tests starts with it.
pub const FILLER_PREFIX: &str = "cache-testing-filler:";
/// Size of one filler value.
pub const FILLER_VALUE_BYTES: usize = 4096;
/// Room left above the memory in use when [`RedisServer::fill_to_maxmemory`] sets
/// `maxmemory`: the fill needs a few hundred keys to reach it.
pub const FILL_MARGIN_BYTES: u64 = 512 * 1024;
/// How far below the memory in use a `noeviction` fill finally sets `maxmemory`.
const FULL_HEADROOM_BYTES: u64 = 64 * 1024;
/// Upper bound on the filler keys one fill writes.
pub const FILL_MAX_KEYS: u64 = 100_000;
/// Upper bound on the time one fill takes.
pub const FILL_MAX_TIME: Duration = Duration::from_secs(20);

/// Timeout of connecting and of each reply on the admin connections used here.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Which clients [`RedisServer::client_pause`] pauses (`CLIENT PAUSE <ms> WRITE|ALL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseMode {
    /// Every command of every normal client waits (`ALL`).
    All,
    /// Only commands that may write wait (`WRITE`): `SET`, `DEL`, `EVAL`/`EVALSHA` of scripts
    /// not flagged `no-writes`, ...; `GET`, `MGET`, `PING` answer. What a failover does.
    Write,
}

impl PauseMode {
    fn as_arg(self) -> &'static str {
        match self {
            PauseMode::All => "ALL",
            PauseMode::Write => "WRITE",
        }
    }
}

/// The eviction policy set by [`RedisServer::fill_to_maxmemory`] (`maxmemory-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// `noeviction`: writes that need memory fail with `OOM command not allowed when used
    /// memory > 'maxmemory'`; reads and deletes still work.
    NoEviction,
    /// `allkeys-lru`: every write succeeds, Redis evicts (approximately) least recently used
    /// keys of any kind to make room: entries, tag indexes, version counters.
    AllKeysLru,
    /// `volatile-lru`: evicts only keys with a TTL; with none left, like `noeviction`.
    VolatileLru,
}

impl EvictionPolicy {
    /// The `maxmemory-policy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::VolatileLru => "volatile-lru",
        }
    }
}

/// What [`RedisServer::fill_to_maxmemory`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillReport {
    /// The `maxmemory` it set (bytes).
    pub maxmemory: u64,
    /// `used_memory` when it started.
    pub used_before: u64,
    /// Filler keys written (successfully).
    pub filler_keys: u64,
    /// Writes refused with `OOM` (the fill stops at the first one).
    pub oom_errors: u64,
    /// Keys evicted during the fill (`evicted_keys` of `INFO stats`, difference).
    pub evicted_keys: u64,
    /// Whether the fill reached its goal: an `OOM` error (`noeviction`, `volatile-lru`) or an
    /// eviction (`allkeys-lru`) before [`FILL_MAX_KEYS`] / [`FILL_MAX_TIME`].
    pub full: bool,
}

/// A `DEBUG SLEEP` in progress, started by [`RedisServer::debug_sleep`].
#[derive(Debug)]
pub struct ServerBlock {
    started: Instant,
    thread: Option<JoinHandle<Result<Instant, String>>>,
}

impl ServerBlock {
    /// When the command was sent (the server blocks from about then).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits until the server answered the `DEBUG SLEEP` (it is serving again) and returns
    /// that instant.
    ///
    /// # Panics
    /// If the command failed (e.g. `DEBUG` is disabled on this server) or the thread panicked.
    pub fn wait(mut self) -> Instant {
        self.join()
    }

    fn join(&mut self) -> Instant {
        match self.thread.take() {
            Some(t) => match t.join() {
                Ok(Ok(at)) => at,
                Ok(Err(e)) => panic!("DEBUG SLEEP failed: {e}"),
                Err(_) => panic!("the DEBUG SLEEP thread panicked"),
            },
            None => Instant::now(),
        }
    }
}

impl Drop for ServerBlock {
    fn drop(&mut self) {
        // Do not leave the thread behind: the sleep is bounded by its duration.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RedisServer {
    /// A new blocking connection with short timeouts for admin commands.
    ///
    /// # Panics
    /// If the server cannot be reached within 2 s.
    pub fn admin_connection(&self) -> redis::Connection {
        self.admin_connection_with_timeout(ADMIN_TIMEOUT)
    }

    fn admin_connection_with_timeout(&self, reply_timeout: Duration) -> redis::Connection {
        let con = self
            .client()
            .get_connection_with_timeout(ADMIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()));
        con.set_read_timeout(Some(reply_timeout))
            .and_then(|()| con.set_write_timeout(Some(ADMIN_TIMEOUT)))
            .unwrap_or_else(|e| panic!("cannot set timeouts on {}: {e}", self.url()));
        con
    }

    fn require_owned(&self, what: &str) {
        assert!(
            !self.is_external(),
            "RedisServer::{what}() needs a redis-server process owned by the test, but this \
             handle points to the external server {} (REDIS_URL); fault tests must use \
             RedisServer::start_owned()",
            self.url()
        );
    }

    /// Blocks the whole server for `duration`: sends `DEBUG SLEEP <seconds>` on a new
    /// connection from a background thread and returns once the command is sent. Until it
    /// ends, the server answers nothing (like [`pause`](Self::pause), but the process is
    /// running: what a slow `KEYS *` or a long Lua script does). Every command sent meanwhile
    /// is answered after it, in order.
    ///
    /// The owned servers are started with `--enable-debug-command local` (Redis 7 disables
    /// `DEBUG` by default). Call [`ServerBlock::wait`] to learn when the server answers again.
    ///
    /// # Panics
    /// On an external server, or if the server cannot be reached.
    pub fn debug_sleep(&self, duration: Duration) -> ServerBlock {
        self.require_owned("debug_sleep");
        let mut con = self.admin_connection_with_timeout(duration + Duration::from_secs(10));
        let (sent_tx, sent_rx) = mpsc::channel();
        let secs = format!("{:.3}", duration.as_secs_f64());
        let thread = thread::spawn(move || {
            let mut cmd = redis::cmd("DEBUG");
            cmd.arg("SLEEP").arg(&secs);
            // `send_packed_command` + `recv_response` let us signal "sent" before the reply.
            let packed = cmd.get_packed_command();
            let sent = con.send_packed_command(&packed);
            let _ = sent_tx.send(());
            sent.map_err(|e| e.to_string())?;
            con.recv_response()
                .map_err(|e| e.to_string())
                .and_then(|v| match v {
                    redis::Value::Okay => Ok(()),
                    redis::Value::SimpleString(s) if s == "OK" => Ok(()),
                    other => Err(format!("unexpected reply {other:?}")),
                })?;
            Ok(Instant::now())
        });
        let _ = sent_rx.recv_timeout(ADMIN_TIMEOUT);
        // The server reads the command within microseconds; give it a moment so that a
        // command sent right after this returns is queued behind the sleep.
        thread::sleep(Duration::from_millis(5));
        ServerBlock {
            started: Instant::now(),
            thread: Some(thread),
        }
    }

    /// Pauses the server's normal clients for `duration` (`CLIENT PAUSE <ms> ALL|WRITE`) and
    /// returns at once; the server lifts the pause by itself. Paused commands wait on the
    /// server (the client sees a slow reply, not an error). There is no early end: under
    /// [`PauseMode::All`] a new connection's own setup commands would wait too.
    ///
    /// # Panics
    /// On an external server, or if the command fails (`WRITE` needs Redis 6.2).
    pub fn client_pause(&self, duration: Duration, mode: PauseMode) {
        self.require_owned("client_pause");
        let mut con = self.admin_connection();
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(duration.as_millis().max(1) as u64)
            .arg(mode.as_arg())
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("CLIENT PAUSE failed on {}: {e}", self.url()));
    }

    /// Closes the connection of every normal client but the one sending the command
    /// (`CLIENT KILL TYPE normal SKIPME yes`): what a proxy restart or the server's `timeout`
    /// does. Clients see their connection reset and must reconnect. Returns how many were
    /// closed.
    ///
    /// # Panics
    /// On an external server, or if the command fails.
    pub fn kill_clients(&self) -> u64 {
        self.require_owned("kill_clients");
        let mut con = self.admin_connection();
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query::<u64>(&mut con)
            .unwrap_or_else(|e| panic!("CLIENT KILL failed on {}: {e}", self.url()))
    }

    /// A numeric field of `INFO <section>` (`used_memory`, `evicted_keys`, ...), 0 if absent.
    ///
    /// # Panics
    /// If the server cannot be reached.
    pub fn info_field(&self, section: &str, field: &str) -> u64 {
        let mut con = self.admin_connection();
        info_field(&mut con, section, field)
            .unwrap_or_else(|e| panic!("INFO {section} on {} failed: {e}", self.url()))
    }

    /// Makes the server full: sets `maxmemory-policy` to `policy` and `maxmemory` to the memory
    /// in use plus [`FILL_MARGIN_BYTES`], then writes filler keys (`{FILLER_PREFIX}{n}`,
    /// [`FILLER_VALUE_BYTES`] each, no TTL) until a write is refused with `OOM` (`noeviction`,
    /// `volatile-lru`) or Redis evicts a key (`allkeys-lru`). Bounded by [`FILL_MAX_KEYS`] and
    /// [`FILL_MAX_TIME`]; [`FillReport::full`] says whether the goal was reached.
    ///
    /// After an `OOM`, `maxmemory` is lowered to a little below the memory in use, so that the
    /// server stays over its limit even when client buffers are freed ([`FillReport::maxmemory`]
    /// is that final value). The server stays full (writes of the code under test then fail
    /// or evict) until
    /// [`reset_memory`](Self::reset_memory).
    ///
    /// # Panics
    /// On an external server, or if a command other than a filler `SET` fails.
    pub fn fill_to_maxmemory(&self, policy: EvictionPolicy) -> FillReport {
        self.require_owned("fill_to_maxmemory");
        let mut con = self.admin_connection();
        let fail = |what: &str, e: redis::RedisError| -> ! {
            panic!("fill_to_maxmemory: {what} on {} failed: {e}", self.url())
        };
        let used_before =
            info_field(&mut con, "memory", "used_memory").unwrap_or_else(|e| fail("INFO", e));
        let evicted_before =
            info_field(&mut con, "stats", "evicted_keys").unwrap_or_else(|e| fail("INFO", e));
        let maxmemory = used_before + FILL_MARGIN_BYTES;
        config_set(&mut con, "maxmemory-policy", policy.as_str())
            .unwrap_or_else(|e| fail("CONFIG SET maxmemory-policy", e));
        config_set(&mut con, "maxmemory", &maxmemory.to_string())
            .unwrap_or_else(|e| fail("CONFIG SET maxmemory", e));

        let value = vec![b'x'; FILLER_VALUE_BYTES];
        let started = Instant::now();
        let mut report = FillReport {
            maxmemory,
            used_before,
            filler_keys: 0,
            oom_errors: 0,
            evicted_keys: 0,
            full: false,
        };
        let mut n: u64 = 0;
        while n < FILL_MAX_KEYS && started.elapsed() < FILL_MAX_TIME {
            let key = format!("{FILLER_PREFIX}{n}");
            n += 1;
            match redis::cmd("SET")
                .arg(&key)
                .arg(&value[..])
                .query::<()>(&mut con)
            {
                Ok(()) => report.filler_keys += 1,
                Err(e) if e.code() == Some("OOM") => {
                    report.oom_errors += 1;
                    report.full = true;
                    break;
                }
                Err(e) => fail("SET filler", e),
            }
            if policy != EvictionPolicy::NoEviction && n % 8 == 0 {
                let evicted = info_field(&mut con, "stats", "evicted_keys")
                    .unwrap_or_else(|e| fail("INFO", e));
                if evicted > evicted_before {
                    report.full = true;
                    break;
                }
            }
        }
        report.evicted_keys = info_field(&mut con, "stats", "evicted_keys")
            .unwrap_or_else(|e| fail("INFO", e))
            .saturating_sub(evicted_before);
        report.full |= report.evicted_keys > 0;
        if report.oom_errors > 0 {
            // Redis refuses a write only while `used_memory > maxmemory`; freeing a few client
            // buffers (this connection closing) would let the next write through. Keep the
            // server over its limit by a little.
            let used =
                info_field(&mut con, "memory", "used_memory").unwrap_or_else(|e| fail("INFO", e));
            report.maxmemory = report
                .maxmemory
                .min(used.saturating_sub(FULL_HEADROOM_BYTES));
            config_set(&mut con, "maxmemory", &report.maxmemory.to_string())
                .unwrap_or_else(|e| fail("CONFIG SET maxmemory", e));
        }
        report
    }

    /// Undoes [`fill_to_maxmemory`](Self::fill_to_maxmemory): `maxmemory 0` (no limit),
    /// `maxmemory-policy noeviction` (the default), and deletes every filler key (`SCAN` +
    /// `UNLINK`, never `KEYS`). Returns how many filler keys were deleted.
    ///
    /// # Panics
    /// On an external server, or if a command fails.
    pub fn reset_memory(&self) -> u64 {
        self.require_owned("reset_memory");
        let mut con = self.admin_connection();
        let fail = |what: &str, e: redis::RedisError| -> ! {
            panic!("reset_memory: {what} on {} failed: {e}", self.url())
        };
        config_set(&mut con, "maxmemory", "0").unwrap_or_else(|e| fail("CONFIG SET maxmemory", e));
        config_set(&mut con, "maxmemory-policy", "noeviction")
            .unwrap_or_else(|e| fail("CONFIG SET maxmemory-policy", e));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{FILLER_PREFIX}*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .unwrap_or_else(|e| fail("SCAN", e));
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query::<u64>(&mut con)
                    .unwrap_or_else(|e| fail("UNLINK", e));
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        deleted
    }
}

fn config_set(con: &mut redis::Connection, name: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(con)
}

fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg(section).query(con)?;
    let prefix = format!("{field}:");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
