//! Throw-away `redis-server` processes for tests.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::certs::TestCerts;

/// How long to wait for a server to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Attempts at finding a free port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How long [`RedisServer::restart`] keeps retrying when its port is busy.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Well-known install locations tried after `PATH`.
const FALLBACK_PATHS: [&str; 2] = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];
/// Name of the server log inside the server's directory.
const LOG_FILE: &str = "redis.log";
/// Captured stdout/stderr of the server (early startup errors land here).
const STDIO_FILE: &str = "redis.stdio.log";

/// A Redis server for one test: a `redis-server` process owned by the test,
/// or the external server named by `REDIS_URL`.
///
/// An owned process listens on `127.0.0.1` on a free port, keeps no data on
/// disk (`--save "" --appendonly no`), works in its own temporary directory
/// (which also holds its log) and is killed (`SIGKILL`) when the handle is
/// dropped.
///
/// Fault injection ([`kill`](Self::kill), [`pause`](Self::pause),
/// [`resume`](Self::resume), [`restart`](Self::restart)) is only possible on
/// an owned process: **fault tests must use [`start_owned`](Self::start_owned)**,
/// which ignores `REDIS_URL`. On an external server these methods panic.
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    port: u16,
    owned: Option<Owned>,
}

/// State of a `redis-server` process spawned by [`RedisServer`].
#[derive(Debug)]
struct Owned {
    bin: PathBuf,
    dir: TempDir,
    child: Option<Child>,
    flavor: Flavor,
}

/// How an owned server is reached.
#[derive(Debug, Clone)]
enum Flavor {
    /// Plain TCP, no password.
    Plain,
    /// TLS only (`--port 0 --tls-port P`), certificates from the test CA; client certificates
    /// required when `auth_clients`.
    Tls {
        certs: Box<TestCerts>,
        auth_clients: bool,
    },
    /// Plain TCP, `--requirepass`.
    Password(String),
}

/// Why one spawn attempt did not produce a ready server.
enum SpawnError {
    /// The process exited during startup (typically: port already in use).
    Exited(ExitStatus),
    /// The process is running but did not answer `PING` in time.
    NotReady,
}

impl RedisServer {
    /// Starts a server for a test.
    ///
    /// If the environment variable `REDIS_URL` is set (and not empty), returns
    /// a handle on that existing server, after checking that it answers
    /// `PING`; nothing is spawned and nothing is flushed, so give each test
    /// its own key namespace (see [`unique_namespace`](crate::unique_namespace)).
    /// Otherwise behaves like [`start_owned`](Self::start_owned).
    ///
    /// # Panics
    ///
    /// If `REDIS_URL` is invalid or does not answer, or in the cases listed
    /// under [`start_owned`](Self::start_owned).
    pub fn start() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Self::external(url.trim()),
            _ => Self::start_owned(),
        }
    }

    /// Spawns a new `redis-server` process owned by this handle, ignoring
    /// `REDIS_URL`. Use this in fault tests ([`kill`](Self::kill),
    /// [`pause`](Self::pause), [`restart`](Self::restart), ...).
    ///
    /// Blocks until the server answers `PING` (at most 10 s).
    ///
    /// # Panics
    ///
    /// If no `redis-server` binary can be found (the message says how to
    /// install one or how to use `REDIS_URL`), or the server does not start;
    /// the message then includes the tail of the server log.
    pub fn start_owned() -> Self {
        Self::spawn_new(|_| Flavor::Plain)
    }

    /// Spawns a server that speaks TLS only (`--port 0 --tls-port <free port>`), with
    /// certificates generated for this server ([`tls_certs`](Self::tls_certs)): its
    /// certificate for `127.0.0.1` and `localhost` is signed by a test CA that no client trusts
    /// by default. Clients need no certificate of their own (`--tls-auth-clients no`).
    ///
    /// [`url`](Self::url) is `rediss://127.0.0.1:PORT`; [`client`](Self::client) trusts the
    /// test CA.
    ///
    /// # Panics
    /// As [`start_owned`](Self::start_owned), and if the certificates cannot be written.
    pub fn start_tls() -> Self {
        Self::spawn_new(|dir| Flavor::Tls {
            certs: Box::new(TestCerts::generate(dir)),
            auth_clients: false,
        })
    }

    /// Like [`start_tls`](Self::start_tls), but the server requires a client certificate signed
    /// by its CA (`--tls-auth-clients yes`, mutual TLS): [`TestCerts::client`] is one.
    ///
    /// # Panics
    /// As [`start_tls`](Self::start_tls).
    pub fn start_mutual_tls() -> Self {
        Self::spawn_new(|dir| Flavor::Tls {
            certs: Box::new(TestCerts::generate(dir)),
            auth_clients: true,
        })
    }

    /// Spawns a server that requires `password` for the `default` user (`--requirepass`).
    /// [`url`](Self::url) carries the password (`redis://:PASSWORD@127.0.0.1:PORT`), so the
    /// admin helpers work; add ACL users with [`acl_setuser`](Self::acl_setuser) and build
    /// URLs for them from [`address`](Self::address).
    ///
    /// # Panics
    /// As [`start_owned`](Self::start_owned).
    pub fn start_with_password(password: &str) -> Self {
        Self::spawn_new(|_| Flavor::Password(password.to_owned()))
    }

    fn spawn_new(flavor: impl FnOnce(&Path) -> Flavor) -> Self {
        let bin = find_redis_server().unwrap_or_else(|msg| panic!("{msg}"));
        let dir = tempfile::Builder::new()
            .prefix("cache-testing-redis-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for redis-server: {e}")
            });
        let flavor = flavor(dir.path());
        let mut owned = Owned {
            bin,
            dir,
            child: None,
            flavor,
        };

        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match owned.spawn(port) {
                Ok(()) => {
                    return Self {
                        url: owned.url(port),
                        port,
                        owned: Some(owned),
                    };
                }
                Err(SpawnError::Exited(status)) if owned.port_was_busy() => {
                    // Someone grabbed the port between our probe and the
                    // server's bind: try another one.
                    last_failure = format!("port {port} was taken ({status})");
                }
                Err(err) => owned.fail(port, &err),
            }
        }
        panic!(
            "redis-server could not bind a free port after {PORT_ATTEMPTS} attempts \
             (last: {last_failure}){}",
            owned.log_tail()
        );
    }

    /// A handle on an existing server at `url` (what [`start`](Self::start)
    /// returns when `REDIS_URL` is set). Nothing is spawned; fault injection
    /// panics.
    ///
    /// # Panics
    ///
    /// If `url` is invalid or the server does not answer `PING` within 10 s.
    pub fn external(url: &str) -> Self {
        let client = redis::Client::open(url)
            .unwrap_or_else(|e| panic!("{url} (REDIS_URL?) is not a valid Redis URL: {e}"));
        let port = match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(_, port) => *port,
            redis::ConnectionAddr::TcpTls { port, .. } => *port,
            _ => 0,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match ping_sync(&client) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => panic!(
                    "the Redis server at {url} does not answer PING: {e}\n\
                     If it comes from REDIS_URL, unset REDIS_URL to let the tests spawn \
                     their own redis-server."
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
        Self {
            url: url.to_owned(),
            port,
            owned: None,
        }
    }

    /// The server's URL, `redis://127.0.0.1:PORT` for an owned server (or
    /// the value of `REDIS_URL`); `rediss://127.0.0.1:PORT` for a TLS server,
    /// `redis://:PASSWORD@127.0.0.1:PORT` for one with a password.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `127.0.0.1:PORT` (or the host and port of `REDIS_URL`), to build URLs with other
    /// credentials or schemes.
    pub fn address(&self) -> String {
        match self.client().get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
            other => format!("{other}"),
        }
    }

    /// The certificates of a server started with [`start_tls`](Self::start_tls) or
    /// [`start_mutual_tls`](Self::start_mutual_tls).
    pub fn tls_certs(&self) -> Option<&TestCerts> {
        match self.owned.as_ref().map(|o| &o.flavor) {
            Some(Flavor::Tls { certs, .. }) => Some(certs),
            _ => None,
        }
    }

    /// Creates or changes the ACL user `user` (`ACL SETUSER user reset <rules>`), e.g.
    /// `&["on", ">secret", "~ns:*", "+get"]`.
    ///
    /// # Panics
    /// If the server refuses the rules or cannot be reached.
    pub fn acl_setuser(&self, user: &str, rules: &[&str]) {
        let mut con = connect_sync(&self.client())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url));
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg(rules)
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("ACL SETUSER {user} {rules:?} failed: {e}"));
    }

    /// The TCP port the server listens on (0 if an external server is reached
    /// through a Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this handle points to the external server of `REDIS_URL`
    /// (no process of ours; fault injection impossible).
    pub fn is_external(&self) -> bool {
        self.owned.is_none()
    }

    /// Process id of the running server process, if any (none for an
    /// external server or after [`kill`](Self::kill)).
    pub fn pid(&self) -> Option<u32> {
        self.owned
            .as_ref()
            .and_then(|o| o.child.as_ref())
            .map(Child::id)
    }

    /// Path of the server's log file (`None` for an external server).
    pub fn log_path(&self) -> Option<PathBuf> {
        self.owned.as_ref().map(|o| o.dir.path().join(LOG_FILE))
    }

    /// A new [`redis::Client`] for this server (for a TLS server: trusting its CA and
    /// presenting its client certificate).
    ///
    /// # Panics
    ///
    /// If the URL cannot be parsed (only possible with a bad `REDIS_URL`).
    pub fn client(&self) -> redis::Client {
        match &self.owned {
            Some(owned) => owned.client(self.port),
            None => redis::Client::open(self.url.as_str())
                .unwrap_or_else(|e| panic!("invalid Redis URL {}: {e}", self.url)),
        }
    }

    /// Opens a new multiplexed async connection to this server.
    ///
    /// # Panics
    ///
    /// If the connection fails.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// Deletes every key of every database (`FLUSHALL`).
    ///
    /// On an external server (`REDIS_URL`) this wipes that whole server.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub async fn flushall(&self) {
        let mut con = self.connection().await;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut con)
            .await
            .unwrap_or_else(|e| panic!("FLUSHALL on {} failed: {e}", self.url));
    }

    /// Number of keys in the current database (`DBSIZE`).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub async fn dbsize(&self) -> u64 {
        let mut con = self.connection().await;
        redis::cmd("DBSIZE")
            .query_async::<u64>(&mut con)
            .await
            .unwrap_or_else(|e| panic!("DBSIZE on {} failed: {e}", self.url))
    }

    /// Kills the server with `SIGKILL` and waits until it has exited, like a
    /// crash: connections are reset and new ones are refused. The data is
    /// lost. Does nothing if the server is already dead.
    ///
    /// # Panics
    ///
    /// On an external server (use [`start_owned`](Self::start_owned)).
    pub fn kill(&mut self) {
        self.owned_mut("kill").kill();
    }

    /// Freezes the server with `SIGSTOP`: connections stay open and new ones
    /// are still accepted by the kernel, but no command is answered until
    /// [`resume`](Self::resume). Simulates a hung or unreachable server.
    ///
    /// # Panics
    ///
    /// On an external server, if the server is not running, or if the
    /// signal cannot be sent.
    pub fn pause(&mut self) {
        self.owned_mut("pause").signal("STOP");
    }

    /// Lets a server frozen by [`pause`](Self::pause) run again (`SIGCONT`).
    ///
    /// # Panics
    ///
    /// On an external server, if the server is not running, or if the
    /// signal cannot be sent.
    pub fn resume(&mut self) {
        self.owned_mut("resume").signal("CONT");
    }

    /// Starts the server again on the **same port** (typically after
    /// [`kill`](Self::kill); a still running server is killed first) and
    /// waits until it answers `PING`. The new server starts empty.
    ///
    /// # Panics
    ///
    /// On an external server, or if the server does not come back (the
    /// message includes the tail of the server log).
    pub fn restart(&mut self) {
        let port = self.port;
        let owned = self.owned_mut("restart");
        owned.kill();
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match owned.spawn(port) {
                Ok(()) => return,
                Err(SpawnError::Exited(_))
                    if owned.port_was_busy() && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(err) => owned.fail(port, &err),
            }
        }
    }

    fn owned_mut(&mut self, what: &str) -> &mut Owned {
        match self.owned.as_mut() {
            Some(owned) => owned,
            None => panic!(
                "RedisServer::{what}() needs a redis-server process owned by the test, but this \
                 handle points to the external server {} (REDIS_URL); fault tests must use \
                 RedisServer::start_owned()",
                self.url
            ),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(owned) = self.owned.as_mut() {
            owned.kill();
        }
    }
}

impl Owned {
    /// Spawns the server on `port` and waits until it answers `PING`.
    fn spawn(&mut self, port: u16) -> Result<(), SpawnError> {
        let dir = self.dir.path();
        let stdio = File::options()
            .create(true)
            .append(true)
            .open(dir.join(STDIO_FILE))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.join(STDIO_FILE).display()));
        let stderr = stdio
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        // Start each attempt with a fresh log so that `port_was_busy` and
        // `log_tail` only see this attempt.
        let _ = fs::remove_file(dir.join(LOG_FILE));

        let mut child = Command::new(&self.bin)
            .args(self.listen_args(port))
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "notice"])
            // `DEBUG SLEEP` for `debug_sleep` (Redis 7 refuses `DEBUG` by default; older
            // servers allow it and do not know the option).
            .args(if debug_command_option(&self.bin) {
                &["--enable-debug-command", "local"][..]
            } else {
                &[][..]
            })
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join(LOG_FILE))
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));

        let client = self.client(port);
        let deadline = Instant::now() + READY_TIMEOUT;
        let result = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(SpawnError::Exited(status));
            }
            // Check the process id: if another process grabbed the port
            // first, it answers instead of ours (which is about to exit).
            if ping_pid(&client).is_ok_and(|pid| pid == child.id()) {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(SpawnError::NotReady);
            }
            thread::sleep(PROBE_INTERVAL);
        };
        match result {
            Ok(()) => self.child = Some(child),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        result
    }

    /// The arguments that make the server listen on `port` the way its flavor says.
    fn listen_args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let port = port.to_string();
        match &self.flavor {
            Flavor::Plain => vec!["--port".into(), port.into()],
            Flavor::Password(password) => vec![
                "--port".into(),
                port.into(),
                "--requirepass".into(),
                password.into(),
            ],
            Flavor::Tls {
                certs,
                auth_clients,
            } => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.into(),
                "--tls-cert-file".into(),
                certs.server.cert_file.clone().into(),
                "--tls-key-file".into(),
                certs.server.key_file.clone().into(),
                "--tls-ca-cert-file".into(),
                certs.ca.cert_file.clone().into(),
                "--tls-auth-clients".into(),
                if *auth_clients { "yes" } else { "no" }.into(),
            ],
        }
    }

    /// The server's URL on `port`.
    fn url(&self, port: u16) -> String {
        match &self.flavor {
            Flavor::Plain => format!("redis://127.0.0.1:{port}"),
            Flavor::Password(password) => format!("redis://:{password}@127.0.0.1:{port}"),
            Flavor::Tls { .. } => format!("rediss://127.0.0.1:{port}"),
        }
    }

    /// A client for the server on `port`, with the credentials or certificates it needs.
    fn client(&self, port: u16) -> redis::Client {
        let url = self.url(port);
        let client = match &self.flavor {
            Flavor::Tls { certs, .. } => redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig {
                        client_cert: certs.client.cert_pem.clone().into_bytes(),
                        client_key: certs.client.key_pem.clone().into_bytes(),
                    }),
                    root_cert: Some(certs.ca.cert_pem.clone().into_bytes()),
                },
            ),
            _ => redis::Client::open(url.as_str()),
        };
        client.unwrap_or_else(|e| panic!("cannot make a client for {url}: {e}"))
    }

    /// Whether the last spawn failed because the port was in use.
    fn port_was_busy(&self) -> bool {
        let log = read_lossy(&self.dir.path().join(LOG_FILE));
        log.contains("Address already in use") || log.contains("Could not create server TCP")
    }

    /// Panics with the reason `err` and the server log.
    fn fail(&self, port: u16, err: &SpawnError) -> ! {
        let why = match err {
            SpawnError::Exited(status) => format!("exited during startup ({status})"),
            SpawnError::NotReady => {
                format!("did not answer PING within {} s", READY_TIMEOUT.as_secs())
            }
        };
        panic!(
            "redis-server ({}) on 127.0.0.1:{port} {why}{}",
            self.bin.display(),
            self.log_tail()
        );
    }

    /// SIGKILL and reap the process, if any.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if the process was already reaped; `wait`
            // then returns its status at once.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `SIGSTOP`/`SIGCONT` (`sig` without the `SIG` prefix).
    fn signal(&mut self, sig: &str) {
        let child = match self.child.as_mut() {
            Some(child) => child,
            None => {
                panic!("cannot send SIG{sig}: the redis-server process is not running (killed?)")
            }
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "cannot send SIG{sig}: redis-server has exited ({status}){}",
                self.log_tail()
            );
        }
        let pid = child.id().to_string();
        // The shell builtin avoids depending on a `kill` binary (procps).
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} \"$1\""), "sh", &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `sh` to send SIG{sig}: {e}"));
        assert!(status.success(), "`kill -{sig} {pid}` failed ({status})");
    }

    /// The last lines of the server's log and captured output, for panics.
    fn log_tail(&self) -> String {
        const LINES: usize = 30;
        let mut out = String::new();
        for name in [LOG_FILE, STDIO_FILE] {
            let path = self.dir.path().join(name);
            let text = read_lossy(&path);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LINES);
            let _ = write!(out, "\n--- last lines of {} ---", path.display());
            if lines.is_empty() {
                out.push_str("\n(empty)");
            }
            for line in &lines[start..] {
                out.push('\n');
                out.push_str(line);
            }
        }
        out
    }
}

/// Locates the `redis-server` binary: `$REDIS_SERVER_BIN`, else
/// `redis-server` on `PATH`, else `/usr/bin/redis-server`, else
/// `/usr/local/bin/redis-server`.
///
/// # Errors
///
/// A message explaining what was searched and how to fix it: install
/// redis-server, point `REDIS_SERVER_BIN` at it, or set `REDIS_URL`.
pub fn find_redis_server() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "REDIS_SERVER_BIN={} is not an executable file. Point it at a redis-server \
                 binary, or unset it to search PATH.",
                bin.display()
            ))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("redis-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(FALLBACK_PATHS.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            format!(
                "redis-server not found (searched $REDIS_SERVER_BIN, PATH, {}).\n\
                 The tests need a real Redis. Either:\n  \
                 - install it: `sudo apt-get install redis-server` (Debian/Ubuntu; this \
                 workspace's `make test` does it as root) or `brew install redis` (macOS);\n  \
                 - set REDIS_SERVER_BIN=/path/to/redis-server;\n  \
                 - or set REDIS_URL=redis://host:port to use a running server \
                 (fault tests still need redis-server).",
                FALLBACK_PATHS.join(", ")
            )
        })
}

/// Whether `bin` knows `--enable-debug-command` (Redis 7 and later), from `--version`; asked
/// once per binary and process.
pub(crate) fn debug_command_option(bin: &Path) -> bool {
    static KNOWN: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, yes)) = known.iter().find(|(b, _)| b == bin) {
        return *yes;
    }
    // `Redis server v=7.0.15 sha=...`
    let major = Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let v = text
                .split("v=")
                .nth(1)?
                .split('.')
                .next()?
                .trim()
                .to_owned();
            v.parse::<u32>().ok()
        })
        .unwrap_or(0);
    let yes = major >= 7;
    known.push((bin.to_owned(), yes));
    yes
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"))
}

/// One blocking `PING` with short timeouts.
fn ping_sync(client: &redis::Client) -> redis::RedisResult<()> {
    let mut con = connect_sync(client)?;
    redis::cmd("PING").query::<()>(&mut con)
}

/// The `process_id` the server reports (`INFO server`), or 0 if absent.
pub(crate) fn ping_pid(client: &redis::Client) -> redis::RedisResult<u32> {
    let mut con = connect_sync(client)?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or(0))
}

fn connect_sync(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(Duration::from_millis(200))?;
    con.set_read_timeout(Some(Duration::from_millis(500)))?;
    con.set_write_timeout(Some(Duration::from_millis(500)))?;
    Ok(con)
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
