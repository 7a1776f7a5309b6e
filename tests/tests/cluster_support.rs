#![allow(missing_docs)]
//! Tests of the cluster test support: a real local Redis Cluster (six `redis-server` processes,
//! created with `redis-cli --cluster create`), reached with redis-rs' async cluster client,
//! with a master killed and failed over, nodes paused and restarted; and the same helpers on
//! clusters that speak TLS only or require a password.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use cache_tests::{init_tracing, key_slot, RedisCluster};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// Upper bound on a failover after `kill_master` (detection after `NODE_TIMEOUT`, election).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound on the cluster client's recovery after a failover.
const CLIENT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);

fn start() -> (RedisCluster, Duration) {
    init_tracing();
    let started = Instant::now();
    let cluster = RedisCluster::start_owned();
    let took = started.elapsed();
    eprintln!("cluster of 6 nodes ready in {took:.2?}");
    (cluster, took)
}

/// A direct (non-cluster) blocking connection to one node, with short timeouts.
fn node_con(cluster: &RedisCluster, port: u16) -> redis::Connection {
    let con = cluster
        .node_client(port)
        .get_connection_with_timeout(Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
    con.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    con.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    con
}

fn cluster_info(con: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER").arg("INFO").query(con).unwrap()
}

fn info_value<'a>(info: &'a str, field: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A cluster client that gives up quickly: a failed command is retried a few times with short
/// waits (the default retries 16 times from 1.28 s on).
fn quick_client(cluster: &RedisCluster) -> ClusterClient {
    ClusterClient::builder(cluster.urls())
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(1))
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
        .unwrap()
}

/// One key per master: `{prefix}-<n>` for the first n landing on each master.
fn keys_on_every_master(cluster: &RedisCluster, prefix: &str) -> Vec<(String, u16)> {
    let masters: BTreeSet<u16> = cluster.masters().into_iter().collect();
    let mut found: Vec<(String, u16)> = Vec::new();
    for n in 0..1000 {
        let key = format!("{prefix}-{n}");
        let port = cluster.node_for_key(&key);
        if !found.iter().any(|(_, p)| *p == port) {
            found.push((key, port));
        }
        if found.len() == masters.len() {
            break;
        }
    }
    let hit: BTreeSet<u16> = found.iter().map(|(_, p)| *p).collect();
    assert_eq!(hit, masters, "node_for_key must reach every master");
    found
}

async fn set_get(con: &mut ClusterConnection, key: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(con)
        .await?;
    let got: Option<String> = redis::cmd("GET").arg(key).query_async(con).await?;
    assert_eq!(got.as_deref(), Some(value), "GET {key} after SET");
    Ok(())
}

#[test]
fn starts_three_masters_with_one_replica_each_and_drop_stops_them_all() {
    let (cluster, _) = start();
    let ports = cluster.ports();
    assert_eq!(ports.len(), 6);
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 6, "{ports:?}");
    assert_eq!(
        cluster.urls(),
        ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
    );
    assert!(!cluster.is_external());

    let masters = cluster.masters();
    let replicas = cluster.replicas();
    assert_eq!(masters.len(), 3, "masters {masters:?}");
    assert_eq!(replicas.len(), 3, "replicas {replicas:?}");
    let all: BTreeSet<u16> = masters.iter().chain(&replicas).copied().collect();
    assert_eq!(all, ports.iter().copied().collect());

    // Every node, asked directly, sees a healthy cluster of 6 nodes and 3 shards.
    for &port in &ports {
        let mut con = node_con(&cluster, port);
        let info = cluster_info(&mut con);
        assert_eq!(info_value(&info, "cluster_state"), "ok", "{port}: {info}");
        assert_eq!(info_value(&info, "cluster_slots_assigned"), "16384");
        assert_eq!(info_value(&info, "cluster_slots_ok"), "16384");
        assert_eq!(info_value(&info, "cluster_known_nodes"), "6");
        assert_eq!(info_value(&info, "cluster_size"), "3");
        let timeout: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("cluster-node-timeout")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            timeout[1],
            cache_tests::cluster::NODE_TIMEOUT.as_millis().to_string()
        );
        let save: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut con)
            .unwrap();
        assert_eq!(save, ["save", ""]);
    }

    // The masters' slots cover 0..16384 exactly once.
    let nodes = cluster.nodes();
    let mut ranges: Vec<(u16, u16)> = nodes
        .iter()
        .filter(|n| n.is_master())
        .flat_map(|n| n.slots.clone())
        .collect();
    ranges.sort_unstable();
    let mut next = 0u32;
    for (a, b) in ranges {
        assert_eq!(u32::from(a), next, "gap or overlap before slot {a}");
        next = u32::from(b) + 1;
    }
    assert_eq!(next, 16384);

    // Every replica is attached to a distinct master and its replication link is up.
    let mut followed = BTreeSet::new();
    for &replica in &replicas {
        let mut con = node_con(&cluster, replica);
        let role: (String, String, u16, String, i64) = redis::cmd("ROLE").query(&mut con).unwrap();
        assert_eq!(role.0, "slave", "{replica}: {role:?}");
        assert!(masters.contains(&role.2), "{replica} follows {role:?}");
        assert_eq!(role.3, "connected", "{replica}: {role:?}");
        followed.insert(role.2);
        assert_eq!(cluster.replicas_of(role.2), [replica]);
    }
    assert_eq!(followed, masters.iter().copied().collect());

    // Drop kills every node, a stopped one too, and removes the directory.
    let mut cluster = cluster;
    cluster.pause_node(replicas[0]);
    cluster.kill_node(masters[0]);
    assert_eq!(cluster.pid(masters[0]), None);
    let pids: Vec<u32> = ports.iter().filter_map(|&p| cluster.pid(p)).collect();
    assert_eq!(pids.len(), 5, "one node killed, five running");
    let dir = cluster.dir().unwrap().to_owned();
    assert!(dir.join(format!("nodes-{}.conf", ports[0])).is_file());
    drop(cluster);
    for pid in pids {
        assert_eq!(process_state(pid), None, "process {pid} outlived the drop");
    }
    for port in ports {
        assert!(
            !accepts_connections(port),
            "port {port} still accepts connections"
        );
    }
    assert!(
        !Path::new(&dir).exists(),
        "{} was not removed",
        dir.display()
    );
}

#[test]
fn slots_and_key_owners_match_what_the_servers_say() {
    let (cluster, _) = start();
    let masters = cluster.masters();
    let mut con = node_con(&cluster, masters[0]);
    let mut keys: Vec<String> = [
        "",
        "a",
        "{",
        "}",
        "{}",
        "{}a",
        "a{}b",
        "{a",
        "a}",
        "}{a}",
        "{a}{b}",
        "{a{b}c",
        "x{user1}y",
        "{user1}:a",
        "{user1}:b",
        "123456789",
        "ключ",
        "🦀{🦀}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    keys.extend((0..200).map(|n| format!("key:{n}:{}", n * 7919)));
    for key in &keys {
        let server: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap();
        assert_eq!(key_slot(key), server, "slot of {key:?}");
        assert_eq!(cluster.slot(key), server);
    }

    // Each node answers a key's GET itself only if it is the owner `node_for_key` names;
    // the others redirect there.
    for key in keys.iter().take(60) {
        let owner = cluster.node_for_key(key);
        assert!(masters.contains(&owner), "{key:?} on {owner}");
        for &port in &masters {
            let mut con = node_con(&cluster, port);
            let reply = redis::cmd("GET").arg(key).query::<Option<String>>(&mut con);
            if port == owner {
                assert_eq!(reply.unwrap(), None, "{key:?} on its owner {port}");
            } else {
                let err = reply.expect_err("a non-owner must redirect");
                assert_eq!(err.code(), Some("MOVED"), "{key:?} on {port}: {err}");
                let (addr, slot) = err.redirect_node().expect("MOVED names a node");
                assert_eq!(slot, key_slot(key));
                assert_eq!(addr, format!("127.0.0.1:{owner}"));
            }
        }
    }

    // A handle on the same cluster as an external one (REDIS_CLUSTER_URLS) reads the same
    // topology and refuses faults with a clear message.
    let mut external = RedisCluster::external(cluster.urls());
    assert!(external.is_external());
    assert_eq!(external.masters(), masters);
    assert_eq!(external.replicas(), cluster.replicas());
    assert_eq!(external.node_for_key("k"), cluster.node_for_key("k"));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        external.kill_master(masters[0]);
    }))
    .expect_err("kill_master on an external cluster must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("REDIS_CLUSTER_URLS") && msg.contains("start_owned"),
        "{msg}"
    );
    drop(external);
    // Dropping the external handle stopped nothing.
    assert!(masters.iter().all(|&p| accepts_connections(p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_client_reaches_all_three_masters_and_hash_tags_colocate() {
    let (cluster, _) = start();
    let mut con = cluster.connection().await;

    // Keys on all three masters, through the cluster client.
    let keys = keys_on_every_master(&cluster, "spread");
    for (key, owner) in &keys {
        set_get(&mut con, key, &format!("v-{key}")).await.unwrap();
        // The key is stored on the master `node_for_key` names.
        let mut direct = node_con(&cluster, *owner);
        let stored: Option<String> = redis::cmd("GET").arg(key).query(&mut direct).unwrap();
        assert_eq!(stored, Some(format!("v-{key}")), "{key} on {owner}");
        let dbsize: u64 = redis::cmd("DBSIZE").query(&mut direct).unwrap();
        assert_eq!(dbsize, 1, "only {key} lives on {owner}");
    }

    // Keys sharing a hash tag share a slot and a node: multi-key commands work on them.
    let tagged = ["{user42}:name", "{user42}:email", "{user42}:visits"];
    let slot = key_slot(tagged[0]);
    assert!(tagged.iter().all(|k| key_slot(k) == slot));
    let owner = cluster.node_for_key(tagged[0]);
    redis::cmd("MSET")
        .arg(tagged[0])
        .arg("ann")
        .arg(tagged[1])
        .arg("ann@example.com")
        .arg(tagged[2])
        .arg(3)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&tagged[..])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            Some("ann".to_owned()),
            Some("ann@example.com".to_owned()),
            Some("3".to_owned())
        ]
    );
    // Atomic on the owner itself: a transaction over the three keys.
    let mut direct = node_con(&cluster, owner);
    let (visits, deleted): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg(tagged[2])
        .cmd("DEL")
        .arg(tagged[0])
        .arg(tagged[1])
        .query(&mut direct)
        .unwrap();
    assert_eq!((visits, deleted), (4, 2));
    // Without the shared tag the same multi-key command is refused by the node.
    let untagged = ["user42:name", "user42:email"];
    assert_ne!(key_slot(untagged[0]), key_slot(untagged[1]));
    let err = redis::cmd("MSET")
        .arg(untagged[0])
        .arg(1)
        .arg(untagged[1])
        .arg(2)
        .query::<()>(&mut node_con(&cluster, cluster.node_for_key(untagged[0])))
        .expect_err("keys of two slots in one command");
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_master_promotes_its_replica_and_the_client_keeps_working() {
    let (mut cluster, _) = start();
    let client = quick_client(&cluster);
    let mut con = client.get_async_connection().await.unwrap();
    let keys = keys_on_every_master(&cluster, "fo");
    for (key, _) in &keys {
        set_get(&mut con, key, "before").await.unwrap();
    }

    let (victim_key, victim) = keys[0].clone();
    let replica = cluster.replicas_of(victim)[0];
    // A write the replica has acknowledged (WAIT) survives the failover. The hash tag puts it
    // in the slot of `victim_key`.
    let acked_key = format!("{{{victim_key}}}:acked");
    assert_eq!(cluster.node_for_key(&acked_key), victim);
    let mut direct = node_con(&cluster, victim);
    redis::cmd("SET")
        .arg(&acked_key)
        .arg("acknowledged")
        .query::<()>(&mut direct)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut direct)
        .unwrap();
    assert_eq!(acked, 1);
    drop(direct);

    cluster.kill_master(victim);
    assert!(
        !accepts_connections(victim),
        "the killed master still listens"
    );
    let failover = tokio::task::block_in_place(|| cluster.wait_failover(victim, FAILOVER_TIMEOUT));
    eprintln!(
        "failover of master {victim} to replica {replica}: {failover:.2?} after SIGKILL \
         (cluster-node-timeout {:?})",
        cache_tests::cluster::NODE_TIMEOUT
    );
    assert!(
        failover >= cache_tests::cluster::NODE_TIMEOUT,
        "{failover:?}"
    );

    // The replica serves the slots now, in the cluster's view and in its own.
    assert_eq!(cluster.node_for_key(&victim_key), replica);
    let masters = cluster.masters();
    assert!(
        masters.contains(&replica) && !masters.contains(&victim),
        "{masters:?}"
    );
    assert_eq!(masters.len(), 3);
    let dead = cluster
        .nodes()
        .into_iter()
        .find(|n| n.port == victim)
        .unwrap();
    assert!(dead.is_failed(), "{dead:?}");
    let role: (String, i64, Vec<redis::Value>) = redis::cmd("ROLE")
        .query(&mut node_con(&cluster, replica))
        .unwrap();
    assert_eq!(role.0, "master");

    // The client keeps working on every master's slots, after retries at most.
    let recovering = Instant::now();
    let mut failures = 0u32;
    for (key, _) in &keys {
        loop {
            match set_get(&mut con, key, "after").await {
                Ok(()) => break,
                Err(e) if recovering.elapsed() < CLIENT_RECOVERY_TIMEOUT => {
                    failures += 1;
                    eprintln!("cluster client after the failover, {key}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!(
                    "the cluster client did not recover within {CLIENT_RECOVERY_TIMEOUT:?}: {e}"
                ),
            }
        }
    }
    eprintln!(
        "cluster client served all 3 masters {:.2?} after the failover ({failures} failed calls)",
        recovering.elapsed()
    );
    let mut fresh = quick_client(&cluster).get_async_connection().await.unwrap();
    let survived: Option<String> = redis::cmd("GET")
        .arg(&acked_key)
        .query_async(&mut fresh)
        .await
        .unwrap();
    assert_eq!(survived.as_deref(), Some("acknowledged"));

    // The old master comes back as a replica of the promoted one, and syncs its data.
    let restarting = Instant::now();
    tokio::task::block_in_place(|| cluster.restart_node(victim));
    eprintln!(
        "old master {victim} rejoined in {:.2?}",
        restarting.elapsed()
    );
    assert_eq!(cluster.replicas_of(replica), [victim]);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    let mut rejoined = node_con(&cluster, victim);
    redis::cmd("READONLY").query::<()>(&mut rejoined).unwrap();
    let synced: (Option<String>, Option<String>) = redis::cmd("MGET")
        .arg(&victim_key)
        .arg(&acked_key)
        .query(&mut rejoined)
        .unwrap_or_else(|e| panic!("MGET on the rejoined replica {victim}: {e}"));
    assert_eq!(
        synced,
        (Some("after".to_owned()), Some("acknowledged".to_owned()))
    );
}

#[test]
fn pausing_a_master_fails_it_over_and_resuming_turns_it_into_a_replica() {
    let (mut cluster, _) = start();
    let master = cluster.masters()[0];
    let replica = cluster.replicas_of(master)[0];
    let pid = cluster.pid(master).unwrap();

    cluster.pause_node(master);
    assert_eq!(process_state(pid), Some('T'), "SIGSTOP");
    // The kernel still accepts the connection; the node answers nothing (redis-rs' own setup
    // commands or the PING time out).
    let frozen = cluster
        .node_client(master)
        .get_connection_with_timeout(Duration::from_millis(300))
        .and_then(|mut con| {
            con.set_read_timeout(Some(Duration::from_millis(300)))?;
            redis::cmd("PING").query::<String>(&mut con)
        });
    assert!(frozen.is_err(), "a paused node answered: {frozen:?}");

    let failover = cluster.wait_failover(master, FAILOVER_TIMEOUT);
    eprintln!("failover of the paused master {master} to {replica}: {failover:.2?} after SIGSTOP");
    let masters = cluster.masters();
    assert!(
        masters.contains(&replica) && !masters.contains(&master),
        "{masters:?}"
    );

    cluster.resume_node(master);
    assert_ne!(process_state(pid), Some('T'));
    let resumed = Instant::now();
    cluster.wait_healthy(Duration::from_secs(10));
    eprintln!(
        "resumed master {master} rejoined in {:.2?}",
        resumed.elapsed()
    );
    // It learnt that its slots moved on and follows the promoted replica now.
    assert_eq!(
        cluster.replicas_of(replica),
        [master],
        "{:#?}",
        cluster.nodes()
    );
    let role: (String, String, u16, String, i64) = redis::cmd("ROLE")
        .query(&mut node_con(&cluster, master))
        .unwrap();
    assert_eq!((role.0.as_str(), role.2), ("slave", replica), "{role:?}");
    assert_eq!(cluster.masters().len(), 3);
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` for stopped, ...), `None` once the
/// process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`; comm may contain spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The helpers of a cluster that speaks TLS only or requires a password: the cluster client,
/// `node_for_key` (the owner holds the key, read directly), pause/resume with `wait_healthy`,
/// and drop stopping every node.
async fn helpers_work_on(cluster: RedisCluster, prefix: &str) {
    let mut con = cluster.connection().await;
    for (key, owner) in keys_on_every_master(&cluster, prefix) {
        set_get(&mut con, &key, "v").await.unwrap();
        let got: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut node_con(&cluster, owner))
            .unwrap();
        assert_eq!(got.as_deref(), Some("v"), "{key} on {owner}");
    }
    let mut cluster = cluster;
    let replica = cluster.replicas()[0];
    cluster.pause_node(replica);
    cluster.resume_node(replica);
    cluster.wait_healthy(Duration::from_secs(15));
    let ports = cluster.ports();
    drop(cluster);
    assert!(ports.iter().all(|&p| !accepts_connections(p)), "{ports:?}");
}

#[tokio::test]
async fn a_tls_cluster_speaks_tls_only_and_every_helper_reaches_it() {
    init_tracing();
    let cluster = RedisCluster::start_tls();
    assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")));
    // No plain client gets an answer: the client port speaks TLS.
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.ports()[0])).unwrap();
    assert!(plain
        .get_connection_with_timeout(Duration::from_secs(1))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_err());
    helpers_work_on(cluster, "tls").await;
}

#[tokio::test]
async fn a_password_cluster_refuses_clients_without_it_and_every_helper_reaches_it() {
    init_tracing();
    let cluster = RedisCluster::start_with_password("supp0rt-pw");
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.ports()[0])).unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut plain.get_connection().unwrap())
        .unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err:?}");
    helpers_work_on(cluster, "pw").await;
}
