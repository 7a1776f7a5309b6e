//! A throw-away local Redis Cluster for tests: 3 masters and 3 replicas.
//!
//! [`RedisCluster::start`] spawns six `redis-server` processes with `--cluster-enabled yes` on
//! free loopback ports, joins them with `redis-cli --cluster create ... --cluster-replicas 1`
//! and waits until every node reports `cluster_state:ok`, all 16384 slots are served and every
//! replica is attached to its master. Dropping the handle kills every process and removes the
//! temporary directory (node configs, logs).
//!
//! [`RedisCluster::start_tls`] / [`RedisCluster::start_mutual_tls`] spawn the same cluster
//! speaking TLS only (client port, replication and cluster bus; certificates from
//! [`TestCerts`]), and [`RedisCluster::start_with_password`] one that requires a password
//! (`requirepass` and `masterauth`); [`RedisCluster::acl_setuser`] adds an ACL user on every
//! node. Every helper below works on those clusters too.
//!
//! Faults act on the processes: [`kill_master`](RedisCluster::kill_master) (`SIGKILL`),
//! [`wait_failover`](RedisCluster::wait_failover) (until a replica of the dead master has taken
//! over its slots), [`restart_node`](RedisCluster::restart_node) (the node rejoins with its
//! node id, as a replica of whoever serves its former slots), and
//! [`pause_node`](RedisCluster::pause_node) / [`resume_node`](RedisCluster::resume_node)
//! (`SIGSTOP` / `SIGCONT`).
//!
//! The nodes run with a short `cluster-node-timeout` ([`NODE_TIMEOUT`]) so that a failover
//! takes about two seconds, `cluster-replica-validity-factor 0` (a replica always may take
//! over) and `repl-diskless-sync-delay 0` (replicas attach at once).
//!
//! # Environment
//!
//! | Variable             | Effect                                                               |
//! |----------------------|----------------------------------------------------------------------|
//! | `REDIS_CLUSTER_URLS` | [`RedisCluster::start`] uses this cluster (comma-separated seeds)    |
//! | `REDIS_SERVER_BIN`   | the `redis-server` binary (see [`find_redis_server`])                |
//! | `REDIS_CLI_BIN`      | the `redis-cli` binary (see [`find_redis_cli`])                      |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::certs::TestCerts;
use crate::server::{
    debug_command_option, find_redis_server, free_port, is_executable, ping_pid, read_lossy,
};

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// Masters of a cluster started by [`RedisCluster::start_owned`].
pub const MASTERS: usize = 3;
/// Replicas per master of a cluster started by [`RedisCluster::start_owned`].
pub const REPLICAS_PER_MASTER: usize = 1;
/// `cluster-node-timeout` of the spawned nodes: a node that does not answer for this long is
/// suspected (`PFAIL`), then failed over once a majority of masters agree.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long [`RedisCluster::start_owned`] waits for the cluster to become healthy after
/// `redis-cli --cluster create` returned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on `redis-cli --cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one spawned node may take to answer `PING`.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisCluster::restart_node`] waits for the node to rejoin.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`RedisCluster::external`] waits for the seeds to report `cluster_state:ok`.
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restarted node keeps retrying when its port is still busy.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding free ports when the chosen ones were taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// Pause between two polls of the cluster's state.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a node may take to stop or continue after `SIGSTOP` / `SIGCONT`.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two `PING`s of a starting node.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Connect timeout of the admin connections.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Reply timeout of the admin connections.
const REPLY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Install locations tried after the directory of `redis-server` and `PATH`.
const CLI_FALLBACK_PATHS: [&str; 2] = ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"];
/// Lines of each node log shown in a panic message.
const LOG_TAIL_LINES: usize = 15;

/// The hash slot of `key`, computed as Redis does: CRC16 (XMODEM) of the key modulo 16384,
/// where a key containing a hash tag — the bytes between the first `{` and the first `}` after
/// it, if there is at least one — is hashed by that tag only. `{user1}:a` and `{user1}:b` share
/// a slot; `{}:a` is hashed whole.
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum of Redis Cluster's
/// key hashing (`crc16.c` in the Redis sources).
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Locates the `redis-cli` binary: `$REDIS_CLI_BIN`, else `redis-cli` in the directory of
/// `server_bin` (the `redis-server` in use), else on `PATH`, else `/usr/bin/redis-cli`, else
/// `/usr/local/bin/redis-cli`.
///
/// # Errors
///
/// A message explaining what was searched and how to install `redis-cli`, point
/// `REDIS_CLI_BIN` at it, or use an existing cluster through `REDIS_CLUSTER_URLS`.
pub fn find_redis_cli(server_bin: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("REDIS_CLI_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "REDIS_CLI_BIN={} is not an executable file. Point it at a redis-cli binary, \
                 or unset it to search next to redis-server and on PATH.",
                bin.display()
            ))
        };
    }
    let mut candidates = Vec::new();
    if let Some(server) = server_bin {
        // Next to the binary as named (e.g. /usr/bin/redis-server, a symlink on Debian) and
        // next to what it points to (a source build's src/ directory).
        candidates.extend(server.parent().map(|dir| dir.join("redis-cli")));
        if let Ok(real) = fs::canonicalize(server) {
            candidates.extend(real.parent().map(|dir| dir.join("redis-cli")));
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("redis-cli")));
    }
    candidates.extend(CLI_FALLBACK_PATHS.iter().map(PathBuf::from));
    candidates
        .into_iter()
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            format!(
                "redis-cli not found (searched $REDIS_CLI_BIN, the directory of redis-server{}, \
                 PATH, {}).\n\
                 The cluster tests create their cluster with `redis-cli --cluster create`. \
                 Either:\n  \
                 - install it: `sudo apt-get install redis-tools` (Debian/Ubuntu; this \
                 workspace's `make test` does it as root) or `brew install redis` (macOS);\n  \
                 - set REDIS_CLI_BIN=/path/to/redis-cli;\n  \
                 - or set REDIS_CLUSTER_URLS=redis://host:port,... to use a running cluster \
                 (fault tests still need redis-server and redis-cli).",
                server_bin
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default(),
                CLI_FALLBACK_PATHS.join(", ")
            )
        })
}

/// One node's view of the live nodes: slot range -> id of the master serving it, and port ->
/// role (`None` for a master, the master's id for a replica).
type Topology = (BTreeMap<(u16, u16), String>, BTreeMap<u16, Option<String>>);

/// A node as `CLUSTER NODES` describes it, from the point of view of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id (40 hex characters); it survives restarts (it is kept in the node's
    /// `nodes-<port>.conf`).
    pub id: String,
    /// The node's client port.
    pub port: u16,
    /// The flags: `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, ...
    pub flags: Vec<String>,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// Whether the cluster bus link to the node is up (`connected`).
    pub connected: bool,
    /// The slot ranges the node serves, inclusive (`0-5460` is `(0, 5460)`); empty for a
    /// replica. Slots being imported or migrated (`[...]`) are not listed.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// Whether the node is a master (flag `master`).
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// Whether the node is a replica (flag `slave`).
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave")
    }

    /// Whether the cluster has marked the node as failed (flag `fail`, agreed by a majority of
    /// masters; not the local suspicion `fail?`).
    pub fn is_failed(&self) -> bool {
        self.has_flag("fail")
    }

    /// Whether the node carries `flag` (as written by `CLUSTER NODES`, e.g. `fail?`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Number of slots the node serves.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }

    /// Parses one line of `CLUSTER NODES`:
    /// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let addr = fields[1].split(['@', ',']).next()?;
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        let slots = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(Self {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            connected: fields[7] == "connected",
            slots,
        })
    }
}

/// A Redis Cluster for one test: six `redis-server` processes owned by the test (3 masters,
/// 3 replicas), or the existing cluster named by `REDIS_CLUSTER_URLS`.
///
/// Fault injection ([`kill_master`](Self::kill_master), [`restart_node`](Self::restart_node),
/// [`pause_node`](Self::pause_node), ...) needs processes owned by the test: **fault tests must
/// use [`start_owned`](Self::start_owned)**. On an external cluster these methods panic.
///
/// The methods block (the cluster is driven through short-lived synchronous admin
/// connections); from an async test use a multi-threaded runtime, and
/// `tokio::task::block_in_place` around the long waits.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use cache_testing::RedisCluster;
///
/// # async fn demo() -> redis::RedisResult<()> {
/// let mut cluster = RedisCluster::start_owned();
/// let mut con = cluster.connection().await;
/// redis::cmd("SET").arg("{user1}:name").arg("ann").query_async::<()>(&mut con).await?;
/// // Keys sharing a hash tag live on one master.
/// let master = cluster.node_for_key("{user1}:name");
/// assert_eq!(cluster.node_for_key("{user1}:email"), master);
///
/// cluster.kill_master(master);
/// let took = cluster.wait_failover(master, Duration::from_secs(15));
/// println!("failover in {took:?}, slots now on {}", cluster.node_for_key("{user1}:name"));
/// cluster.restart_node(master); // back as a replica of the promoted one
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    seeds: Vec<String>,
    owned: Option<Owned>,
}

/// The processes of a cluster spawned by [`RedisCluster`].
#[derive(Debug)]
struct Owned {
    server_bin: PathBuf,
    /// Whether the server knows `--cluster-port` (Redis 7): otherwise the bus port is
    /// `port + 10000`.
    cluster_port_option: bool,
    debug_command: bool,
    dir: TempDir,
    nodes: Vec<Node>,
    flavor: Flavor,
}

/// How the nodes of a spawned cluster are reached (clients, replication and the cluster bus
/// alike).
#[derive(Debug, Clone)]
enum Flavor {
    /// Plain TCP, no password.
    Plain,
    /// TLS only (`--port 0 --tls-port P --tls-cluster yes --tls-replication yes`), certificates
    /// from the test CA; client certificates required when `auth_clients`.
    Tls {
        certs: Box<TestCerts>,
        auth_clients: bool,
        /// The host of the URLs: a name of the server certificate that resolves to the
        /// loopback address.
        host: String,
    },
    /// Plain TCP, `--requirepass` and `--masterauth`.
    Password(String),
}

/// One spawned node.
#[derive(Debug)]
struct Node {
    port: u16,
    bus_port: u16,
    /// Node id, read once the cluster is created (empty before).
    id: String,
    child: Option<Child>,
    paused: bool,
    /// The last fault injected by [`RedisCluster::kill_master`] or
    /// [`RedisCluster::pause_node`] while the node was a master.
    fault: Option<MasterFault>,
}

/// What a master served when it was killed or paused: what [`RedisCluster::wait_failover`]
/// waits for a replica to take over.
#[derive(Debug, Clone)]
struct MasterFault {
    at: Instant,
    slots: Vec<(u16, u16)>,
    replica_ids: Vec<String>,
}

/// Why one node spawn did not produce a ready server.
enum SpawnError {
    Exited(ExitStatus),
    NotReady,
}

impl RedisCluster {
    /// Starts a cluster for a test.
    ///
    /// If `REDIS_CLUSTER_URLS` is set (comma-separated seed URLs, e.g.
    /// `redis://127.0.0.1:7000,redis://127.0.0.1:7001`), returns a handle on that existing
    /// cluster after checking that the seeds report `cluster_state:ok`; nothing is spawned and
    /// nothing is flushed, so give each test its own keys (see
    /// [`unique_namespace`](crate::unique_namespace)). Otherwise behaves like
    /// [`start_owned`](Self::start_owned).
    ///
    /// # Panics
    ///
    /// If the external cluster does not answer or is not healthy, or in the cases listed under
    /// [`start_owned`](Self::start_owned).
    pub fn start() -> Self {
        match std::env::var("REDIS_CLUSTER_URLS") {
            Ok(urls) if !seed_list(&urls).is_empty() => Self::external(seed_list(&urls)),
            _ => Self::start_owned(),
        }
    }

    /// Spawns a new cluster owned by this handle, ignoring `REDIS_CLUSTER_URLS`: 6 nodes on
    /// free loopback ports (`--cluster-enabled yes`, no persistence, `cluster-node-timeout`
    /// of [`NODE_TIMEOUT`], each with `nodes-<port>.conf` and `redis-<port>.log` in one
    /// temporary directory), joined with `redis-cli --cluster create ... --cluster-replicas 1
    /// --cluster-yes`.
    ///
    /// Returns once every node reports `cluster_state:ok` with all 16384 slots served, the
    /// nodes agree on the topology (3 masters serving slots, each with one replica) and every
    /// replica's link to its master is up (at most 20 s after the creation).
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` cannot be found (the message says how to install them
    /// or how to use `REDIS_CLUSTER_URLS`), a node does not start, the creation fails, or the
    /// cluster does not become healthy in time; the message then includes the output of
    /// `redis-cli` or the last state seen, and the tail of every node's log.
    pub fn start_owned() -> Self {
        Self::spawn_cluster(|_| Flavor::Plain)
    }

    /// Spawns a cluster whose nodes speak TLS only, to clients and to each other: every node
    /// runs with `--port 0 --tls-port P --tls-cluster yes --tls-replication yes` and the
    /// certificates of [`tls_certs`](Self::tls_certs) (the server certificate names
    /// `127.0.0.1` and `localhost`, and is signed by a test CA that no client trusts by
    /// default). Clients need no certificate of their own (`--tls-auth-clients no`). The
    /// cluster is created with `redis-cli --tls --cacert <CA> --cluster create ...`.
    ///
    /// [`urls`](Self::urls) are `rediss://127.0.0.1:PORT`; [`client`](Self::client),
    /// [`node_client`](Self::node_client) and every helper (health, slots, faults,
    /// [`acl_setuser`](Self::acl_setuser)) trust the test CA and present its client
    /// certificate.
    ///
    /// # Panics
    /// As [`start_owned`](Self::start_owned), and if the certificates cannot be written.
    pub fn start_tls() -> Self {
        Self::spawn_cluster(|dir| Flavor::Tls {
            certs: Box::new(TestCerts::generate(dir)),
            auth_clients: false,
            host: "127.0.0.1".into(),
        })
    }

    /// Like [`start_tls`](Self::start_tls), with server certificates naming only `names`
    /// ([`TestCerts::generate_for`]), e.g. `&["localhost"]`: the nodes announce their IP
    /// address (`127.0.0.1`) in `CLUSTER SLOTS`, which such a certificate does not name.
    /// [`urls`](Self::urls) and the helpers of this handle use the first of `names` that is
    /// `127.0.0.1` or `localhost` as the host.
    ///
    /// # Panics
    /// As [`start_tls`](Self::start_tls), and if `names` holds neither `127.0.0.1` nor
    /// `localhost`.
    pub fn start_tls_naming(names: &[&str]) -> Self {
        let host = names
            .iter()
            .find(|n| matches!(**n, "127.0.0.1" | "localhost"))
            .unwrap_or_else(|| panic!("{names:?}: name 127.0.0.1 or localhost"))
            .to_string();
        Self::spawn_cluster(|dir| Flavor::Tls {
            certs: Box::new(TestCerts::generate_for(dir, names)),
            auth_clients: false,
            host,
        })
    }

    /// Like [`start_tls`](Self::start_tls), but every node requires a client certificate
    /// signed by its CA (`--tls-auth-clients yes`, mutual TLS): [`TestCerts::client`] is one.
    /// The nodes present their server certificate to each other (it is also a client
    /// certificate), and `redis-cli` presents it too.
    ///
    /// # Panics
    /// As [`start_tls`](Self::start_tls).
    pub fn start_mutual_tls() -> Self {
        Self::spawn_cluster(|dir| Flavor::Tls {
            certs: Box::new(TestCerts::generate(dir)),
            auth_clients: true,
            host: "127.0.0.1".into(),
        })
    }

    /// Spawns a cluster whose nodes require `password` for the `default` user
    /// (`--requirepass`), and use it towards their masters (`--masterauth`). The cluster is
    /// created with `redis-cli -a <password> --cluster create ...`.
    ///
    /// [`urls`](Self::urls) carry the password (`redis://:PASSWORD@127.0.0.1:PORT`), so every
    /// helper works; add ACL users on every node with [`acl_setuser`](Self::acl_setuser) and
    /// build URLs for them from [`ports`](Self::ports).
    ///
    /// # Panics
    /// As [`start_owned`](Self::start_owned).
    pub fn start_with_password(password: &str) -> Self {
        let password = password.to_owned();
        Self::spawn_cluster(move |_| Flavor::Password(password))
    }

    fn spawn_cluster(flavor: impl FnOnce(&Path) -> Flavor) -> Self {
        let server_bin = find_redis_server().unwrap_or_else(|msg| panic!("{msg}"));
        let cli_bin = find_redis_cli(Some(&server_bin)).unwrap_or_else(|msg| panic!("{msg}"));
        let dir = tempfile::Builder::new()
            .prefix("cache-testing-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for the cluster: {e}"));
        let cluster_port_option = redis_major(&server_bin) >= 7;
        let debug_command = debug_command_option(&server_bin);
        let flavor = flavor(dir.path());
        let mut cluster = Self {
            seeds: Vec::new(),
            owned: Some(Owned {
                server_bin,
                cluster_port_option,
                debug_command,
                dir,
                nodes: Vec::new(),
                flavor,
            }),
        };
        let nodes = MASTERS * (1 + REPLICAS_PER_MASTER);
        for _ in 0..nodes {
            cluster.owned_mut("start_owned").spawn_new_node();
        }
        let owned = cluster.owned_mut("start_owned");
        owned.create(&cli_bin);
        for i in 0..owned.nodes.len() {
            let port = owned.nodes[i].port;
            let id = owned.cluster_myid(port).unwrap_or_else(|e| {
                owned.fail(&format!("CLUSTER MYID on 127.0.0.1:{port} failed: {e}"))
            });
            owned.nodes[i].id = id;
        }
        let seeds = owned.nodes.iter().map(|n| owned.url(n.port)).collect();
        cluster.seeds = seeds;
        cluster.wait_until(READY_TIMEOUT, "become healthy after its creation", |c| {
            c.check_healthy()?;
            c.check_full_shape()
        });
        cluster
    }

    /// A handle on an existing cluster reached through `seeds` (what [`start`](Self::start)
    /// returns when `REDIS_CLUSTER_URLS` is set). Nothing is spawned; fault injection panics.
    ///
    /// # Panics
    ///
    /// If `seeds` is empty, a seed is not a valid URL, or no seed reports `cluster_state:ok`
    /// within 10 s.
    pub fn external<S: AsRef<str>>(seeds: impl IntoIterator<Item = S>) -> Self {
        let seeds: Vec<String> = seeds.into_iter().map(|s| s.as_ref().to_owned()).collect();
        assert!(
            !seeds.is_empty(),
            "RedisCluster::external needs at least one seed URL (REDIS_CLUSTER_URLS?)"
        );
        for seed in &seeds {
            if let Err(e) = redis::Client::open(seed.as_str()) {
                panic!("{seed} (REDIS_CLUSTER_URLS?) is not a valid Redis URL: {e}");
            }
        }
        let cluster = Self { seeds, owned: None };
        let deadline = Instant::now() + EXTERNAL_TIMEOUT;
        loop {
            let state = cluster
                .query_any(cluster_info)
                .map(|info| info.get("cluster_state").cloned().unwrap_or_default());
            match state {
                Ok(state) if state == "ok" => return cluster,
                _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                other => panic!(
                    "the Redis Cluster at {} is not usable (cluster_state: {other:?}).\n\
                     If it comes from REDIS_CLUSTER_URLS, unset REDIS_CLUSTER_URLS to let the \
                     tests spawn their own cluster.",
                    cluster.seeds.join(",")
                ),
            }
        }
    }

    /// The seed URLs: `redis://127.0.0.1:PORT` of every spawned node (`rediss://` for a
    /// [TLS cluster](Self::start_tls), `redis://:PASSWORD@` for one
    /// [with a password](Self::start_with_password)), or the URLs of `REDIS_CLUSTER_URLS`.
    pub fn urls(&self) -> Vec<String> {
        self.seeds.clone()
    }

    /// The client ports of the spawned nodes, in start order (for an external cluster: the
    /// ports of the seed URLs).
    pub fn ports(&self) -> Vec<u16> {
        match &self.owned {
            Some(owned) => owned.nodes.iter().map(|n| n.port).collect(),
            None => self.seeds.iter().filter_map(|s| url_port(s)).collect(),
        }
    }

    /// Whether this handle points to the external cluster of `REDIS_CLUSTER_URLS` (no process of
    /// ours; fault injection impossible).
    pub fn is_external(&self) -> bool {
        self.owned.is_none()
    }

    /// The temporary directory of a spawned cluster (node configs and logs; removed on drop).
    pub fn dir(&self) -> Option<&Path> {
        self.owned.as_ref().map(|o| o.dir.path())
    }

    /// Process id of the node on `port`, if it is a running process of ours.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.owned
            .as_ref()
            .and_then(|o| o.nodes.iter().find(|n| n.port == port))
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
    }

    /// Path of the log of the node on `port` (`None` for an external cluster).
    pub fn log_path(&self, port: u16) -> Option<PathBuf> {
        self.owned.as_ref().map(|o| o.log_path(port))
    }

    /// The URL of the node on `port`, for a direct (non-cluster) connection to that node:
    /// `redis://127.0.0.1:PORT` (with the scheme and password of [`urls`](Self::urls)), or for an
    /// external cluster the first seed's URL with `port`.
    pub fn node_url(&self, port: u16) -> String {
        match &self.owned {
            Some(owned) => owned.url(port),
            None => self
                .seeds
                .iter()
                .find(|s| url_port(s) == Some(port))
                .cloned()
                .unwrap_or_else(|| with_port(&self.seeds[0], port)),
        }
    }

    /// A [`redis::Client`] for a direct (non-cluster) connection to the node on `port`. Commands
    /// on keys of slots the node does not serve are answered with `MOVED`.
    ///
    /// # Panics
    ///
    /// If the URL cannot be parsed (only possible with a bad `REDIS_CLUSTER_URLS`).
    pub fn node_client(&self, port: u16) -> redis::Client {
        if let Some(owned) = &self.owned {
            return owned.client(port);
        }
        let url = self.node_url(port);
        redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("invalid Redis URL {url}: {e}"))
    }

    /// The certificates of a cluster started with [`start_tls`](Self::start_tls) or
    /// [`start_mutual_tls`](Self::start_mutual_tls).
    pub fn tls_certs(&self) -> Option<&TestCerts> {
        match self.owned.as_ref().map(|o| &o.flavor) {
            Some(Flavor::Tls { certs, .. }) => Some(certs),
            _ => None,
        }
    }

    /// Creates or changes the ACL user `user` on **every running node**
    /// (`ACL SETUSER user reset <rules>`; a cluster does not propagate ACL users), e.g.
    /// `&["on", ">secret", "~ns:*", "+get"]`. A node restarted later
    /// ([`restart_node`](Self::restart_node)) does not have the user.
    ///
    /// # Panics
    /// If a node refuses the rules or cannot be reached.
    pub fn acl_setuser(&self, user: &str, rules: &[&str]) {
        for port in self.live_ports() {
            let mut con = self
                .admin(port)
                .unwrap_or_else(|e| panic!("ACL SETUSER {user}: {e}"));
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(user)
                .arg("reset")
                .arg(rules)
                .query::<()>(&mut con)
                .unwrap_or_else(|e| {
                    panic!("ACL SETUSER {user} {rules:?} failed on 127.0.0.1:{port}: {e}")
                });
        }
    }

    /// A redis-rs cluster client seeded with [`urls`](Self::urls) (default settings: it
    /// follows `MOVED`/`ASK`, refreshes its slot map and retries).
    ///
    /// # Panics
    ///
    /// If the client cannot be built from the seeds.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        let mut builder = redis::cluster::ClusterClientBuilder::new(self.urls());
        if let Some(certs) = self.tls_certs() {
            builder = builder.certs(tls_certificates(certs));
        }
        builder
            .build()
            .unwrap_or_else(|e| panic!("cannot build a cluster client for {:?}: {e}", self.seeds))
    }

    /// Opens a new async cluster connection ([`client`](Self::client)).
    ///
    /// # Panics
    ///
    /// If the connection fails.
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        self.client()
            .get_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster {:?}: {e}", self.seeds))
    }

    /// The hash slot of `key` ([`key_slot`]).
    pub fn slot(&self, key: impl AsRef<[u8]>) -> u16 {
        key_slot(key)
    }

    /// The nodes as `CLUSTER NODES` of one reachable node (the first running, not paused one)
    /// describes them, sorted by port.
    ///
    /// # Panics
    ///
    /// If no node answers.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let mut nodes = self
            .query_any(cluster_nodes)
            .unwrap_or_else(|e| panic!("CLUSTER NODES failed on every node: {e}"));
        nodes.sort_by_key(|n| n.port);
        nodes
    }

    /// The ports of the current masters, re-read from the cluster ([`nodes`](Self::nodes)):
    /// nodes flagged `master` and not marked failed. A killed master stays in this list until
    /// the cluster has marked it `fail` (about [`NODE_TIMEOUT`] after the kill).
    ///
    /// # Panics
    ///
    /// If no node answers.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes()
            .iter()
            .filter(|n| n.is_master() && !n.is_failed())
            .map(|n| n.port)
            .collect()
    }

    /// The ports of the current replicas (flag `slave`, not marked failed), re-read from the
    /// cluster like [`masters`](Self::masters).
    ///
    /// # Panics
    ///
    /// If no node answers.
    pub fn replicas(&self) -> Vec<u16> {
        self.nodes()
            .iter()
            .filter(|n| n.is_replica() && !n.is_failed())
            .map(|n| n.port)
            .collect()
    }

    /// The replicas of the master on `master_port` (ports, sorted), re-read from the cluster.
    ///
    /// # Panics
    ///
    /// If no node answers.
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let nodes = self.nodes();
        let Some(master) = nodes.iter().find(|n| n.port == master_port) else {
            return Vec::new();
        };
        nodes
            .iter()
            .filter(|n| n.is_replica() && n.master_id.as_deref() == Some(master.id.as_str()))
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master serving the slot of `key` ([`key_slot`], hash tags honoured),
    /// from `CLUSTER SLOTS` of one reachable node.
    ///
    /// # Panics
    ///
    /// If no node answers or no node serves the slot.
    pub fn node_for_key(&self, key: impl AsRef<[u8]>) -> u16 {
        let slot = key_slot(key);
        let ranges = self
            .query_any(cluster_slots)
            .unwrap_or_else(|e| panic!("CLUSTER SLOTS failed on every node: {e}"));
        ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|&(_, _, port)| port)
            .unwrap_or_else(|| panic!("no node serves slot {slot} (CLUSTER SLOTS: {ranges:?})"))
    }

    /// Kills the master on `port` with `SIGKILL` and waits until the process has exited, like a
    /// crash; its data is lost. Its replicas take over after about [`NODE_TIMEOUT`] plus an
    /// election: see [`wait_failover`](Self::wait_failover).
    ///
    /// # Panics
    ///
    /// On an external cluster, if `port` is not a node of ours, or if the cluster does not
    /// see it as a live master.
    pub fn kill_master(&mut self, port: u16) {
        let fault = self.master_fault(port, "kill_master");
        let node = self.owned_mut("kill_master").node_mut(port);
        node.kill();
        node.fault = Some(MasterFault {
            at: Instant::now(),
            ..fault
        });
    }

    /// Kills the node on `port` with `SIGKILL` (any role) and waits until it has exited. Does
    /// nothing if it is not running.
    ///
    /// # Panics
    ///
    /// On an external cluster or if `port` is not a node of ours.
    pub fn kill_node(&mut self, port: u16) {
        self.owned_mut("kill_node").node_mut(port).kill();
    }

    /// Waits until a replica of the master on `old_master_port` (stopped by
    /// [`kill_master`](Self::kill_master) or [`pause_node`](Self::pause_node)) serves all of
    /// its former slots in the view of every other running node, and every such node reports
    /// `cluster_state:ok` with all 16384 slots served. Returns the time from the fault to that
    /// moment (the failover time, detection included).
    ///
    /// # Panics
    ///
    /// On an external cluster, if the node was not stopped while a master by this handle, or
    /// if the failover does not complete within `timeout` (the message gives the last state seen
    /// and the node logs).
    pub fn wait_failover(&self, old_master_port: u16, timeout: Duration) -> Duration {
        let owned = self.owned_ref("wait_failover");
        let fault = owned
            .node(old_master_port)
            .fault
            .clone()
            .unwrap_or_else(|| {
                panic!(
                    "wait_failover({old_master_port}): that node was not stopped by kill_master() \
                 or pause_node() while it was a master"
                )
            });
        assert!(
            !fault.replica_ids.is_empty(),
            "wait_failover({old_master_port}): the master had no replica when it was stopped, \
             nothing can take over its slots"
        );
        let what = format!("fail over the master 127.0.0.1:{old_master_port}");
        self.wait_until(timeout, &what, |c| {
            for port in c.live_ports() {
                c.check_node_state(port)?;
                let view = cluster_nodes(&mut c.admin(port)?)?;
                for &(start, end) in &fault.slots {
                    let owner = view
                        .iter()
                        .find(|n| n.slots.iter().any(|&(a, b)| a <= start && end <= b))
                        .ok_or_else(|| format!("{port} sees no owner of slots {start}-{end}"))?;
                    if !fault.replica_ids.contains(&owner.id) || !owner.is_master() {
                        return Err(format!(
                            "{port} sees slots {start}-{end} on {} ({}), not on a promoted \
                             replica of {old_master_port}",
                            owner.port,
                            owner.flags.join(",")
                        ));
                    }
                }
            }
            Ok(())
        });
        fault.at.elapsed()
    }

    /// Starts the node on `port` again (after [`kill_master`](Self::kill_master) or
    /// [`kill_node`](Self::kill_node); a running node is killed first) on the same port with its
    /// `nodes-<port>.conf`, so that it keeps its node id and rejoins. It starts without data.
    /// A former master whose slots were failed over comes back as a replica of the promoted
    /// node.
    ///
    /// Returns once the cluster is healthy again ([`wait_healthy`](Self::wait_healthy)): the
    /// node is known to every running node and not flagged failed, and if it is a replica its
    /// link to its master is up. Waits at most 20 s.
    ///
    /// # Panics
    ///
    /// On an external cluster, if `port` is not a node of ours, or if the node does not start or
    /// rejoin in time (the message includes the node logs).
    pub fn restart_node(&mut self, port: u16) {
        let owned = self.owned_mut("restart_node");
        let node = owned.node_mut(port);
        node.kill();
        node.fault = None;
        // The node comes back empty, as after a crash of a server without persistence (a
        // replica may have left the RDB of its last full sync in its directory).
        let _ = fs::remove_file(owned.data_dir(port).join("dump.rdb"));
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match owned.spawn(port, owned.node(port).bus_port) {
                Ok(child) => {
                    owned.node_mut(port).child = Some(child);
                    break;
                }
                Err(SpawnError::Exited(_))
                    if owned.port_was_busy(port) && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(err) => owned.fail_spawn(port, &err),
            }
        }
        self.wait_healthy(REJOIN_TIMEOUT);
    }

    /// Freezes the node on `port` with `SIGSTOP` and waits until it is stopped (state `T` in
    /// `/proc`, where there is one): it keeps its connections but answers nothing, not even the
    /// cluster bus, until [`resume_node`](Self::resume_node). A master paused for
    /// longer than [`NODE_TIMEOUT`] is failed over ([`wait_failover`](Self::wait_failover)).
    ///
    /// # Panics
    ///
    /// On an external cluster, if `port` is not a node of ours, if the node is not running, or
    /// if it has not stopped 5 s after the signal.
    pub fn pause_node(&mut self, port: u16) {
        // A master's slots and replicas, for `wait_failover`.
        let fault = self
            .nodes()
            .iter()
            .any(|n| n.port == port && n.is_master() && !n.is_failed())
            .then(|| self.master_fault(port, "pause_node"));
        let node = self.owned_mut("pause_node").node_mut(port);
        node.signal("STOP");
        node.paused = true;
        node.fault = fault.map(|f| MasterFault {
            at: Instant::now(),
            ..f
        });
    }

    /// Lets a node frozen by [`pause_node`](Self::pause_node) run again (`SIGCONT`, then waits
    /// until it is no longer stopped, where `/proc` tells). A master
    /// that was failed over meanwhile turns into a replica of the promoted node; call
    /// [`wait_healthy`](Self::wait_healthy) to wait for that.
    ///
    /// # Panics
    ///
    /// On an external cluster, if `port` is not a node of ours, if the node is not running, or
    /// if it is still stopped 5 s after the signal.
    pub fn resume_node(&mut self, port: u16) {
        let node = self.owned_mut("resume_node").node_mut(port);
        node.signal("CONT");
        node.paused = false;
    }

    /// Waits until the cluster is healthy in the view of every running, not paused node (for an
    /// external cluster: of every seed): `cluster_state:ok` with all 16384 slots served by such
    /// nodes, every such node known, connected and not flagged failed or suspected, each of them
    /// either a master serving slots or a replica of such a master, the nodes agreeing on who
    /// serves which slots and who follows whom, and every such replica's link to its master up.
    /// Killed and paused nodes may be flagged failed. Returns how long it waited.
    ///
    /// # Panics
    ///
    /// If that does not happen within `timeout` (the message gives the last state seen and the
    /// node logs).
    pub fn wait_healthy(&self, timeout: Duration) -> Duration {
        let start = Instant::now();
        self.wait_until(timeout, "become healthy", Self::check_healthy);
        start.elapsed()
    }

    /// The slots and replicas of the live master on `port`, before a fault.
    fn master_fault(&self, port: u16, what: &str) -> MasterFault {
        self.owned_ref(what).node(port);
        let nodes = self.nodes();
        let master = nodes
            .iter()
            .find(|n| n.port == port && n.is_master() && !n.is_failed())
            .unwrap_or_else(|| {
                panic!(
                    "{what}({port}): 127.0.0.1:{port} is not a live master of the cluster \
                     (masters: {:?})",
                    self.masters()
                )
            });
        MasterFault {
            at: Instant::now(),
            slots: master.slots.clone(),
            replica_ids: nodes
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(master.id.as_str()))
                .map(|n| n.id.clone())
                .collect(),
        }
    }

    /// Ports of the nodes to ask: running and not paused nodes of ours, else the seeds' ports.
    fn live_ports(&self) -> Vec<u16> {
        match &self.owned {
            Some(owned) => owned
                .nodes
                .iter()
                .filter(|n| n.child.is_some() && !n.paused)
                .map(|n| n.port)
                .collect(),
            None => self.ports(),
        }
    }

    /// Runs `f` on the first node that answers.
    fn query_any<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match self.admin(port).and_then(|mut con| f(&mut con)) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(format!("{port}: {e}")),
            }
        }
        Err(if errors.is_empty() {
            "no node is running".to_owned()
        } else {
            errors.join("; ")
        })
    }

    fn admin(&self, port: u16) -> Result<redis::Connection, String> {
        match &self.owned {
            Some(owned) => owned.admin(port),
            None => connect(&self.node_client(port)),
        }
    }

    /// `cluster_state:ok` and all slots served, in the view of the node on `port`.
    fn check_node_state(&self, port: u16) -> Result<(), String> {
        let info = cluster_info(&mut self.admin(port)?)?;
        let field = |name: &str| info.get(name).map(String::as_str).unwrap_or("?");
        let all = SLOTS.to_string();
        if field("cluster_state") != "ok"
            || field("cluster_slots_assigned") != all
            || field("cluster_slots_ok") != all
        {
            return Err(format!(
                "{port}: cluster_state:{} cluster_slots_assigned:{} cluster_slots_ok:{} \
                 cluster_slots_pfail:{} cluster_slots_fail:{}",
                field("cluster_state"),
                field("cluster_slots_assigned"),
                field("cluster_slots_ok"),
                field("cluster_slots_pfail"),
                field("cluster_slots_fail"),
            ));
        }
        Ok(())
    }

    /// The condition of [`wait_healthy`](Self::wait_healthy).
    fn check_healthy(&self) -> Result<(), String> {
        let live = self.live_ports();
        if live.is_empty() {
            return Err("no node is running".to_owned());
        }
        let mut first_view: Option<(u16, Topology)> = None;
        for &port in &live {
            self.check_node_state(port)?;
            let view = cluster_nodes(&mut self.admin(port)?)?;
            let by_id: BTreeMap<&str, &ClusterNode> =
                view.iter().map(|n| (n.id.as_str(), n)).collect();
            // Every live node of ours is known, healthy and connected.
            if self.owned.is_some() {
                for &other in &live {
                    let node = view
                        .iter()
                        .find(|n| n.port == other)
                        .ok_or_else(|| format!("{port} does not know {other} yet"))?;
                    if let Some(bad) = ["fail", "fail?", "handshake", "noaddr"]
                        .iter()
                        .find(|f| node.has_flag(f))
                    {
                        return Err(format!("{port} flags {other} as {bad}"));
                    }
                    if !node.connected {
                        return Err(format!("{port} has no bus link to {other}"));
                    }
                }
            }
            // Every slot is served by a live master of this view.
            let mut owners = BTreeMap::new();
            for node in view.iter().filter(|n| !n.slots.is_empty()) {
                if !node.is_master() || node.is_failed() || node.has_flag("fail?") {
                    return Err(format!(
                        "{port} sees slots {:?} on {} ({})",
                        node.slots,
                        node.port,
                        node.flags.join(",")
                    ));
                }
                if self.owned.is_some() && !live.contains(&node.port) {
                    return Err(format!(
                        "{port} sees slots {:?} on the stopped node {}",
                        node.slots, node.port
                    ));
                }
                for &range in &node.slots {
                    owners.insert(range, node.id.clone());
                }
            }
            // Every replica follows a live master.
            for node in view.iter().filter(|n| n.is_replica() && !n.is_failed()) {
                let master = node
                    .master_id
                    .as_deref()
                    .and_then(|id| by_id.get(id))
                    .ok_or_else(|| format!("{port}: replica {} has no known master", node.port))?;
                if !master.is_master() || master.is_failed() {
                    return Err(format!(
                        "{port}: replica {} follows {} ({})",
                        node.port,
                        master.port,
                        master.flags.join(",")
                    ));
                }
            }
            // A node of ours is a master serving slots or a replica: a master without slots is
            // a former master that has not learnt yet that its slots moved on (or a view that
            // has not learnt it turned into a replica).
            let mut roles = BTreeMap::new();
            if self.owned.is_some() {
                for node in view.iter().filter(|n| live.contains(&n.port)) {
                    if node.is_master() && node.slots.is_empty() {
                        return Err(format!(
                            "{port} sees {} as a master without slots",
                            node.port
                        ));
                    }
                    roles.insert(node.port, node.master_id.clone());
                }
            }
            // The nodes agree on who serves what and who follows whom.
            let topology = (owners, roles);
            match &first_view {
                None => first_view = Some((port, topology)),
                Some((first, theirs)) if *theirs != topology => {
                    return Err(format!(
                        "{port} and {first} disagree on the topology: {topology:?} vs {theirs:?}"
                    ));
                }
                Some(_) => {}
            }
            // A replica has finished its sync with its master.
            let me = view
                .iter()
                .find(|n| n.has_flag("myself"))
                .ok_or_else(|| format!("{port}: no `myself` line in CLUSTER NODES"))?;
            if me.is_replica() {
                let link = info_field(&mut self.admin(port)?, "replication", "master_link_status")?;
                if link != "up" {
                    return Err(format!("{port}: replica link to its master is {link}"));
                }
            }
        }
        Ok(())
    }

    /// 3 masters serving slots, each with its replica, every node of ours running.
    fn check_full_shape(&self) -> Result<(), String> {
        let nodes = self.nodes();
        let masters: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.is_master() && n.slot_count() > 0)
            .collect();
        let replicas = nodes.iter().filter(|n| n.is_replica()).count();
        if masters.len() != MASTERS || replicas != MASTERS * REPLICAS_PER_MASTER {
            return Err(format!(
                "{} masters serving slots and {replicas} replicas, expected {MASTERS} and {}",
                masters.len(),
                MASTERS * REPLICAS_PER_MASTER
            ));
        }
        for master in masters {
            let count = nodes
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(master.id.as_str()))
                .count();
            if count != REPLICAS_PER_MASTER {
                return Err(format!("master {} has {count} replicas", master.port));
            }
        }
        Ok(())
    }

    /// Polls `check` until it passes, panicking after `timeout` with its last error and the
    /// node logs.
    fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check(self) {
                Ok(()) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let logs = self
                    .owned
                    .as_ref()
                    .map(Owned::log_tails)
                    .unwrap_or_default();
                panic!(
                    "the Redis Cluster ({}) did not {what} within {:.1} s; last state: \
                     {last}{logs}",
                    self.seeds.join(","),
                    timeout.as_secs_f64()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn owned_ref(&self, what: &str) -> &Owned {
        match &self.owned {
            Some(owned) => owned,
            None => panic!("{}", external_fault(what, &self.seeds)),
        }
    }

    fn owned_mut(&mut self, what: &str) -> &mut Owned {
        match self.owned.as_mut() {
            Some(owned) => owned,
            None => panic!("{}", external_fault(what, &self.seeds)),
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if let Some(owned) = self.owned.as_mut() {
            for node in &mut owned.nodes {
                node.kill();
            }
        }
        // The `TempDir` of `owned` is removed after this.
    }
}

impl Owned {
    /// The URL of the node on `port`, as the flavor says: `redis://127.0.0.1:PORT`,
    /// `rediss://127.0.0.1:PORT` or `redis://:PASSWORD@127.0.0.1:PORT`.
    fn url(&self, port: u16) -> String {
        match &self.flavor {
            Flavor::Plain => local_url(port),
            Flavor::Tls { host, .. } => format!("rediss://{host}:{port}"),
            Flavor::Password(password) => format!("redis://:{password}@127.0.0.1:{port}"),
        }
    }

    /// A client for the node on `port`, with the credentials or certificates it needs.
    fn client(&self, port: u16) -> redis::Client {
        let url = self.url(port);
        let client = match &self.flavor {
            Flavor::Tls { certs, .. } => {
                redis::Client::build_with_tls(url.as_str(), tls_certificates(certs))
            }
            _ => redis::Client::open(url.as_str()),
        };
        client.unwrap_or_else(|e| panic!("cannot make a client for {url}: {e}"))
    }

    fn admin(&self, port: u16) -> Result<redis::Connection, String> {
        connect(&self.client(port))
    }

    fn cluster_myid(&self, port: u16) -> Result<String, String> {
        let mut con = self.admin(port)?;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut con)
            .map_err(|e| e.to_string())
    }

    /// The `redis-server` arguments that make a node listen on `port` the way the flavor says.
    fn listen_args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let port = port.to_string();
        match &self.flavor {
            Flavor::Plain => vec!["--port".into(), port.into()],
            Flavor::Password(password) => vec![
                "--port".into(),
                port.into(),
                "--requirepass".into(),
                password.into(),
                "--masterauth".into(),
                password.into(),
            ],
            Flavor::Tls {
                certs,
                auth_clients,
                ..
            } => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.into(),
                "--tls-cluster".into(),
                "yes".into(),
                "--tls-replication".into(),
                "yes".into(),
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

    /// The `redis-cli` arguments that reach the nodes the way the flavor says.
    fn cli_args(&self) -> Vec<std::ffi::OsString> {
        match &self.flavor {
            Flavor::Plain => Vec::new(),
            Flavor::Password(password) => {
                vec!["-a".into(), password.into(), "--no-auth-warning".into()]
            }
            Flavor::Tls { certs, .. } => vec![
                "--tls".into(),
                "--cacert".into(),
                certs.ca.cert_file.clone().into(),
                // Accepted by every node (`tls-auth-clients yes` included).
                "--cert".into(),
                certs.server.cert_file.clone().into(),
                "--key".into(),
                certs.server.key_file.clone().into(),
            ],
        }
    }

    /// Spawns one more node on fresh free ports (retrying when a port was taken meanwhile).
    fn spawn_new_node(&mut self) {
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let (port, bus_port) = self.pick_ports();
            match self.spawn(port, bus_port) {
                Ok(child) => {
                    self.nodes.push(Node {
                        port,
                        bus_port,
                        id: String::new(),
                        child: Some(child),
                        paused: false,
                        fault: None,
                    });
                    return;
                }
                Err(SpawnError::Exited(status)) if self.port_was_busy(port) => {
                    last_failure = format!("port {port} or {bus_port} was taken ({status})");
                }
                Err(err) => self.fail_spawn(port, &err),
            }
        }
        self.fail(&format!(
            "a cluster node could not bind free ports after {PORT_ATTEMPTS} attempts (last: \
             {last_failure})"
        ));
    }

    /// A client port and a cluster bus port, free a moment ago and not used by another node.
    /// Without `--cluster-port` (Redis 6) the bus port is `port + 10000`.
    fn pick_ports(&self) -> (u16, u16) {
        let taken = |p: u16| self.nodes.iter().any(|n| n.port == p || n.bus_port == p);
        for _ in 0..1000 {
            if self.cluster_port_option {
                let (port, bus) = (free_port(), free_port());
                if port != bus && !taken(port) && !taken(bus) {
                    return (port, bus);
                }
            } else {
                let port = 20_000 + random_u16() % 25_000;
                let bus = port + 10_000;
                if !taken(port) && !taken(bus) && bindable(port) && bindable(bus) {
                    return (port, bus);
                }
            }
        }
        self.fail("cannot find free loopback ports for a cluster node")
    }

    fn log_path(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("redis-{port}.log"))
    }

    fn stdio_path(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("redis-{port}.stdio.log"))
    }

    fn data_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("data-{port}"))
    }

    /// Spawns `redis-server` in cluster mode on `port` and waits until it answers `PING`.
    fn spawn(&self, port: u16, bus_port: u16) -> Result<Child, SpawnError> {
        let dir = self.dir.path();
        let data = self.data_dir(port);
        fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        let stdio = File::options()
            .create(true)
            .append(true)
            .open(self.stdio_path(port))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.stdio_path(port).display()));
        let stderr = stdio
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        let mut cmd = Command::new(&self.server_bin);
        cmd.args(self.listen_args(port))
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT.as_millis().to_string())
            // A replica always may take over, however long it was cut off from its master.
            .args(["--cluster-replica-validity-factor", "0"])
            // Replicas sync at once (Redis 7 waits 5 s for more replicas by default).
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "notice"])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(self.log_path(port));
        if self.cluster_port_option {
            cmd.arg("--cluster-port").arg(bus_port.to_string());
        }
        if self.debug_command {
            cmd.args(["--enable-debug-command", "local"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.server_bin.display()));

        let client = self.client(port);
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        let result = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(SpawnError::Exited(status));
            }
            // Another process may have grabbed the port first: check it is ours answering.
            if ping_pid(&client).is_ok_and(|pid| pid == child.id()) {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(SpawnError::NotReady);
            }
            thread::sleep(PROBE_INTERVAL);
        };
        match result {
            Ok(()) => Ok(child),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// `redis-cli --cluster create <all nodes> --cluster-replicas 1 --cluster-yes`, bounded.
    fn create(&self, cli_bin: &Path) {
        let out_path = self.dir.path().join("cluster-create.log");
        let out = File::create(&out_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_path.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        let mut child = Command::new(cli_bin)
            .args(self.cli_args())
            .args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &REPLICAS_PER_MASTER.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli_bin.display()));
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if status.is_some_and(|s| s.success()) {
            return;
        }
        let why = match status {
            Some(status) => format!("failed ({status})"),
            None => format!("did not finish within {} s", CREATE_TIMEOUT.as_secs()),
        };
        self.fail(&format!(
            "`{} --cluster create ...` {why}; its output:\n{}",
            cli_bin.display(),
            read_lossy(&out_path)
        ));
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a node of this cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a node of this cluster"))
    }

    /// Whether the last spawn on `port` failed because a port was in use.
    fn port_was_busy(&self, port: u16) -> bool {
        let log = read_lossy(&self.log_path(port)) + &read_lossy(&self.stdio_path(port));
        log.contains("Address already in use") || log.contains("Could not create server TCP")
    }

    fn fail_spawn(&self, port: u16, err: &SpawnError) -> ! {
        let why = match err {
            SpawnError::Exited(status) => format!("exited during startup ({status})"),
            SpawnError::NotReady => format!(
                "did not answer PING within {} s",
                NODE_START_TIMEOUT.as_secs()
            ),
        };
        self.fail(&format!(
            "cluster node {} on 127.0.0.1:{port} {why}",
            self.server_bin.display()
        ))
    }

    /// Panics with `msg` and the tail of every node's log.
    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}{}", self.log_tails())
    }

    /// The last lines of every node's log and captured output.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        let ports: BTreeSet<u16> = self.nodes.iter().map(|n| n.port).collect();
        let mut paths: Vec<PathBuf> = ports
            .iter()
            .flat_map(|&p| [self.log_path(p), self.stdio_path(p)])
            .collect();
        // A node that failed to start is not in `nodes`: show every log of the directory.
        if let Ok(entries) = fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") && !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        for path in paths {
            let text = read_lossy(&path);
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            let _ = write!(out, "\n--- last lines of {} ---", path.display());
            for line in &lines[start..] {
                out.push('\n');
                out.push_str(line);
            }
        }
        out
    }
}

impl Node {
    /// SIGKILL and reap the process, if any.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Sends `SIGSTOP`/`SIGCONT` (`sig` without the `SIG` prefix).
    fn signal(&mut self, sig: &str) {
        let port = self.port;
        let Some(child) = self.child.as_mut() else {
            panic!("cannot send SIG{sig} to 127.0.0.1:{port}: the node is not running (killed?)");
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!("cannot send SIG{sig} to 127.0.0.1:{port}: the node has exited ({status})");
        }
        let pid = child.id().to_string();
        // The shell builtin avoids depending on a `kill` binary (procps).
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} \"$1\""), "sh", &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `sh` to send SIG{sig}: {e}"));
        assert!(status.success(), "`kill -{sig} {pid}` failed ({status})");
        // `kill` only queues the signal: wait until the process has actually stopped or
        // continued (a loaded machine may take a while to schedule it), where /proc tells.
        let stopped = sig == "STOP";
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        while let Some(state) = process_state(child.id()) {
            if (state == 'T') == stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "127.0.0.1:{port} (pid {pid}) is still in state {state} {} s after SIG{sig}",
                SIGNAL_TIMEOUT.as_secs()
            );
            thread::sleep(PROBE_INTERVAL);
        }
    }
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` for stopped, ...), `None` if unknown
/// (no such process, or no `/proc`).
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`; comm may contain spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn external_fault(what: &str, seeds: &[String]) -> String {
    format!(
        "RedisCluster::{what}() needs redis-server processes owned by the test, but this handle \
         points to the external cluster {} (REDIS_CLUSTER_URLS); fault tests must use \
         RedisCluster::start_owned()",
        seeds.join(",")
    )
}

/// The URLs of a comma-separated `REDIS_CLUSTER_URLS`, trimmed, empty entries dropped.
fn seed_list(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// The certificates a client of a TLS cluster presents and trusts: the test CA, and the
/// client certificate (accepted with `--tls-auth-clients yes` too).
fn tls_certificates(certs: &TestCerts) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: certs.client.cert_pem.clone().into_bytes(),
            client_key: certs.client.key_pem.clone().into_bytes(),
        }),
        root_cert: Some(certs.ca.cert_pem.clone().into_bytes()),
    }
}

fn local_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// The port of a `redis://[user:pass@]host:port[/db]` URL.
fn url_port(url: &str) -> Option<u16> {
    let client = redis::Client::open(url).ok()?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(_, port) => Some(*port),
        redis::ConnectionAddr::TcpTls { port, .. } => Some(*port),
        _ => None,
    }
}

/// `url` with its port replaced by `port` (scheme, credentials, host and path kept).
fn with_port(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (auth, host_port) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let host = match host_port.rsplit_once(':') {
        Some((host, p)) if p.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_port,
    };
    format!("{scheme}://{auth}{host}:{port}{path}")
}

/// A blocking connection with short timeouts through `client`.
fn connect(client: &redis::Client) -> Result<redis::Connection, String> {
    let url = client.get_connection_info().addr().to_string();
    let con = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    con.set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| con.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(con)
}

/// `CLUSTER INFO` as a map.
fn cluster_info(con: &mut redis::Connection) -> Result<BTreeMap<String, String>, String> {
    let text: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(con)
        .map_err(|e| format!("CLUSTER INFO: {e}"))?;
    Ok(parse_info(&text))
}

/// One field of `INFO <section>`.
fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> Result<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(con)
        .map_err(|e| format!("INFO {section}: {e}"))?;
    Ok(parse_info(&text).remove(field).unwrap_or_default())
}

fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn cluster_nodes(con: &mut redis::Connection) -> Result<Vec<ClusterNode>, String> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(con)
        .map_err(|e| format!("CLUSTER NODES: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            ClusterNode::parse(l).ok_or_else(|| format!("unexpected CLUSTER NODES line {l:?}"))
        })
        .collect()
}

/// `CLUSTER SLOTS` as `(first slot, last slot, master port)`.
fn cluster_slots(con: &mut redis::Connection) -> Result<Vec<(u16, u16, u16)>, String> {
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(con)
        .map_err(|e| format!("CLUSTER SLOTS: {e}"))?;
    ranges
        .iter()
        .map(|range| {
            let parsed = match range {
                // [start, end, [ip, port, id, ...], replica...]
                redis::Value::Array(items) if items.len() >= 3 => {
                    let master_port = match &items[2] {
                        redis::Value::Array(node) if node.len() >= 2 => int(&node[1]),
                        _ => None,
                    };
                    int(&items[0]).zip(int(&items[1])).zip(master_port)
                }
                _ => None,
            };
            parsed
                .map(|((start, end), port)| (start, end, port))
                .ok_or_else(|| format!("unexpected CLUSTER SLOTS entry {range:?}"))
        })
        .collect()
}

fn int(value: &redis::Value) -> Option<u16> {
    match value {
        redis::Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    }
}

/// The major version of a `redis-server` binary (`Redis server v=7.0.15 ...`), 0 if unknown.
fn redis_major(bin: &Path) -> u32 {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split("v=")
                .nth(1)?
                .split('.')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A pseudo-random number for port picking (`RandomState` is seeded randomly per instance).
fn random_u16() -> u16 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_reference_check_value() {
        // The CRC16/XMODEM check value, also in Redis' crc16.c ("123456789" -> 0x31C3).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags_follow_the_redis_rules() {
        assert_eq!(key_slot("{user1}:a"), key_slot("user1"));
        assert_eq!(key_slot("x{user1}y"), key_slot("user1"));
        // Only the first `{` and the first `}` after it count.
        assert_eq!(key_slot("{a}{b}"), key_slot("a"));
        assert_eq!(key_slot("{a{b}c"), key_slot("a{b"));
        // An empty tag or no closing brace: the whole key.
        assert_eq!(key_slot("{}a"), crc16_xmodem(b"{}a") % SLOTS);
        assert_eq!(key_slot("{abc"), crc16_xmodem(b"{abc") % SLOTS);
        assert_eq!(key_slot("}{a}"), key_slot("a"));
    }

    #[test]
    fn cluster_nodes_lines_parse() {
        let line = "d412c2 127.0.0.1:21004@21104 myself,master - 0 1795999115577 7 connected \
                    0-5460 5462 [5461->-e96be8]";
        let node = ClusterNode::parse(line).unwrap();
        assert_eq!(node.port, 21004);
        assert!(node.is_master() && node.has_flag("myself") && !node.is_failed());
        assert_eq!(node.master_id, None);
        assert_eq!(node.slots, [(0, 5460), (5462, 5462)]);
        assert_eq!(node.slot_count(), 5462);
        let replica = ClusterNode::parse(
            "bfc921 127.0.0.1:21005@21105,host slave,fail e96be8 0 1 2 disconnected",
        )
        .unwrap();
        assert!(replica.is_replica() && replica.is_failed() && !replica.connected);
        assert_eq!(replica.master_id.as_deref(), Some("e96be8"));
        assert_eq!(replica.port, 21005);
    }

    #[test]
    fn cluster_urls_are_split_on_commas() {
        assert_eq!(
            seed_list(" redis://127.0.0.1:7000, redis://127.0.0.1:7001,,"),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert!(seed_list(" , ").is_empty());
    }

    #[test]
    fn with_port_keeps_everything_but_the_port() {
        assert_eq!(
            with_port("redis://u:p@h:7000/0", 7001),
            "redis://u:p@h:7001/0"
        );
        assert_eq!(
            with_port("rediss://[::1]:7000", 7002),
            "rediss://[::1]:7002"
        );
        assert_eq!(with_port("redis://h", 7003), "redis://h:7003");
    }
}
