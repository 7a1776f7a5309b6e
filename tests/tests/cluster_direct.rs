#![allow(missing_docs)]
//! Reads on a Redis Cluster go straight to the slot's master on a direct connection (one hop
//! less than redis-rs's cluster client, see "Reads go straight to the slot's node" in
//! `cache_core::backend::cluster`), and stay right when the slot moves or the connection breaks.
//!
//! Every test stores one entry through the cache and then reads it with [`Cache::fetch`]: the
//! value served must be the loader's, and a read after a slot move or a broken connection must
//! still be a hit (the loader is not called again): the read is sent again through the cluster
//! client, and the direct routes are learnt anew.
//!
//! The direct connections are told apart from the cluster client's by their name
//! ([`DIRECT_CLIENT_NAME`]) in `CLIENT LIST` on the node: the test waits (bounded) until that
//! connection's last command is the hit's read. Each test owns its cluster
//! ([`RedisCluster::start_owned`]), so that no other test's connections are listed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::backend::DIRECT_CLIENT_NAME;
use cache_core::{Cache, CacheKey, CacheStatus, Policy};
use cache_tests::{init_tracing, unique_namespace, RedisCluster};

const TTL: Duration = Duration::from_secs(300);
/// Longest wait for the direct routes to be learnt (a background task, at most one per 100 ms).
const ROUTES_WITHIN: Duration = Duration::from_secs(10);

/// The master serving the bucket of `key` (`ns:{ns.<bucket>}:rest`, 32 buckets).
fn master_of(cluster: &RedisCluster, ns: &str, key: &CacheKey) -> u16 {
    let bucket = xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()) % 32;
    cluster.node_for_key(format!("{{{ns}.{bucket}}}"))
}

/// The slot of the bucket of `key`.
fn slot_of(cluster: &RedisCluster, ns: &str, key: &CacheKey) -> u16 {
    let bucket = xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()) % 32;
    cluster.slot(format!("{{{ns}.{bucket}}}"))
}

fn node_con(cluster: &RedisCluster, port: u16) -> redis::Connection {
    cluster
        .node_client(port)
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"))
}

/// `(id, last command)` of the direct read connections on the node on `port`.
fn direct_clients(cluster: &RedisCluster, port: u16) -> Vec<(u64, String)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut node_con(cluster, port))
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            (field("name")? == DIRECT_CLIENT_NAME)
                .then(|| Some((field("id")?.parse().ok()?, field("cmd")?.to_owned())))
                .flatten()
        })
        .collect()
}

/// A cache on `cluster`, one entry stored through it, and the loader's call count.
struct Setup {
    cache: Cache,
    ns: String,
    key: CacheKey,
    loads: Arc<AtomicU64>,
}

impl Setup {
    async fn new(cluster: &RedisCluster, name: &str) -> Setup {
        let ns = unique_namespace(name);
        let cache = Cache::builder()
            .namespace(ns.clone())
            .redis_cluster(cluster.urls())
            .command_timeout(Duration::from_secs(1))
            .build()
            .expect("valid cache configuration");
        let key = cache.key("item").id(7).build();
        let setup = Setup {
            cache,
            ns,
            key,
            loads: Arc::new(AtomicU64::new(0)),
        };
        assert_eq!(setup.read().await, CacheStatus::Miss);
        setup
    }

    /// What the origin answers for the entry.
    fn origin() -> String {
        "item 7 from the origin".to_owned()
    }

    /// Reads the entry; asserts the origin's value, returns hit or miss.
    async fn read(&self) -> CacheStatus {
        let loads = Arc::clone(&self.loads);
        let got = self
            .cache
            .fetch(&self.key, Policy::ttl(TTL), || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Setup::origin())
            })
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(
            got.value,
            Setup::origin(),
            "the served value is the origin's"
        );
        got.status
    }

    /// Reads the entry (asserting hits) until a direct connection on `port` other than
    /// `except` has read it last; returns that connection's id.
    async fn read_directly_on(&self, cluster: &RedisCluster, port: u16, except: &[u64]) -> u64 {
        let started = Instant::now();
        loop {
            assert_eq!(self.read().await, CacheStatus::Hit);
            let found = direct_clients(cluster, port)
                .into_iter()
                .find(|(id, cmd)| !except.contains(id) && (cmd == "get" || cmd == "mget"));
            if let Some((id, _)) = found {
                return id;
            }
            assert!(
                started.elapsed() < ROUTES_WITHIN,
                "no direct connection on node {port} read the entry within {ROUTES_WITHIN:?}: \
                 {:?}",
                direct_clients(cluster, port)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hits_are_read_on_a_direct_connection_to_the_slots_master() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_owned)
        .await
        .expect("cluster start");
    let s = Setup::new(&cluster, "direct").await;
    let home = master_of(&cluster, &s.ns, &s.key);
    s.read_directly_on(&cluster, home, &[]).await;
    // Only the slot's master is read for it: no other master's direct connection ran the read.
    for port in cluster.masters().into_iter().filter(|&p| p != home) {
        assert!(
            direct_clients(&cluster, port)
                .iter()
                .all(|(_, cmd)| cmd != "get" && cmd != "mget"),
            "node {port} does not serve the entry's slot"
        );
    }
    assert_eq!(s.loads.load(Ordering::SeqCst), 1, "one load, then hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_whose_direct_connection_was_killed_is_still_a_hit_and_a_new_one_is_made() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_owned)
        .await
        .expect("cluster start");
    let s = Setup::new(&cluster, "direct_kill").await;
    let home = master_of(&cluster, &s.ns, &s.key);
    let first = s.read_directly_on(&cluster, home, &[]).await;
    let _: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(first)
        .query(&mut node_con(&cluster, home))
        .expect("CLIENT KILL");
    // The next read meets the closed connection, is sent again through the cluster client: a hit.
    assert_eq!(s.read().await, CacheStatus::Hit);
    let second = s.read_directly_on(&cluster, home, &[first]).await;
    assert_ne!(first, second);
    assert_eq!(s.loads.load(Ordering::SeqCst), 1, "never loaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_master_is_still_read_right_and_the_direct_route_follows_it() {
    init_tracing();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_owned)
        .await
        .expect("cluster start");
    let s = Setup::new(&cluster, "direct_moved").await;
    let from = master_of(&cluster, &s.ns, &s.key);
    let slot = slot_of(&cluster, &s.ns, &s.key);
    let to = cluster
        .masters()
        .into_iter()
        .find(|&p| p != from)
        .expect("another master");
    s.read_directly_on(&cluster, from, &[]).await;

    move_slot(&cluster, slot, from, to);

    // The direct connection to `from` is answered `MOVED`: the read goes through the cluster
    // client, which follows the redirect. The entry moved with its slot: a hit.
    assert_eq!(s.read().await, CacheStatus::Hit);
    s.read_directly_on(&cluster, to, &[]).await;
    assert_eq!(s.loads.load(Ordering::SeqCst), 1, "never loaded again");
}

/// Moves `slot` with its keys from the master on `from` to the master on `to`
/// (`CLUSTER SETSLOT ... IMPORTING/MIGRATING`, `MIGRATE`, `CLUSTER SETSLOT ... NODE`).
fn move_slot(cluster: &RedisCluster, slot: u16, from: u16, to: u16) {
    let id = |port: u16| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node_con(cluster, port))
            .expect("CLUSTER MYID")
    };
    let (from_id, to_id) = (id(from), id(to));
    let (mut src, mut dst) = (node_con(cluster, from), node_con(cluster, to));
    let setslot = |con: &mut redis::Connection, args: &[&str]| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(args)
            .query::<()>(con)
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {args:?}: {e}"));
    };
    setslot(&mut dst, &["IMPORTING", &from_id]);
    setslot(&mut src, &["MIGRATING", &to_id]);
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query(&mut src)
            .expect("CLUSTER GETKEYSINSLOT");
        if keys.is_empty() {
            break;
        }
        let _: () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut src)
            .expect("MIGRATE");
    }
    setslot(&mut dst, &["NODE", &to_id]);
    setslot(&mut src, &["NODE", &to_id]);
    for port in cluster.masters() {
        if port != from && port != to {
            setslot(&mut node_con(cluster, port), &["NODE", &to_id]);
        }
    }
}
