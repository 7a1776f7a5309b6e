//! Tests of the test-support library itself: a real `redis-server` is
//! spawned, killed, paused, resumed and restarted.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cache_tests::{init_tracing, unique_namespace, RedisServer};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// Connects with short timeouts so that failures show up quickly.
async fn connect(server: &RedisServer) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(None);
    server
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn ping(con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    redis::cmd("PING").query_async(con).await
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[tokio::test]
async fn start_answers_ping_and_counts_keys() {
    init_tracing();
    let server = RedisServer::start();
    assert!(server.url().starts_with("redis://"), "{}", server.url());
    if !server.is_external() {
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert!(server.pid().is_some());
    }

    let mut con = connect(&server).await.expect("connect");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");

    let ns = unique_namespace("support");
    let before = server.dbsize().await;
    redis::cmd("SET")
        .arg(format!("{ns}:k"))
        .arg("v")
        .query_async::<()>(&mut con)
        .await
        .expect("SET");
    assert_eq!(server.dbsize().await, before + 1);

    if !server.is_external() {
        server.flushall().await;
        assert_eq!(server.dbsize().await, 0);
    }
}

#[tokio::test]
async fn owned_servers_get_distinct_ports_and_no_persistence() {
    let a = RedisServer::start_owned();
    let b = RedisServer::start_owned();
    assert!(!a.is_external());
    assert_ne!(a.port(), b.port());

    let mut con = a.connection().await;
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(&mut con)
        .await
        .expect("CONFIG GET save");
    assert_eq!(save, ["save", ""]);
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut con)
        .await
        .expect("CONFIG GET appendonly");
    assert_eq!(aof, ["appendonly", "no"]);
    assert!(a.log_path().expect("owned server has a log").exists());
}

#[tokio::test]
async fn kill_then_restart_on_the_same_port() {
    let mut server = RedisServer::start_owned();
    let port = server.port();
    let url = server.url();
    let mut con = connect(&server).await.expect("connect");
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut con)
        .await
        .expect("SET");

    server.kill();
    assert!(server.pid().is_none());
    assert!(
        !accepts_connections(port),
        "port {port} still open after kill"
    );
    assert!(
        ping(&mut con).await.is_err(),
        "PING on the old connection should fail"
    );
    assert!(
        connect(&server).await.is_err(),
        "connecting to a killed server should fail"
    );
    server.kill(); // idempotent

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.url(), url);
    let mut con = connect(&server).await.expect("connect after restart");
    assert_eq!(ping(&mut con).await.expect("PING after restart"), "PONG");
    assert_eq!(server.dbsize().await, 0, "a restarted server starts empty");

    // Restarting a running server works too.
    server.restart();
    let mut con = connect(&server)
        .await
        .expect("connect after second restart");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");
}

#[tokio::test]
async fn pause_hangs_and_resume_answers() {
    let mut server = RedisServer::start_owned();
    let mut con = connect(&server).await.expect("connect");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");

    server.pause();
    let hung = tokio::time::timeout(Duration::from_millis(200), ping(&mut con)).await;
    assert!(
        hung.is_err(),
        "PING to a paused server should time out, got {hung:?}"
    );

    server.resume();
    let answer = tokio::time::timeout(Duration::from_secs(5), ping(&mut con))
        .await
        .expect("PING after resume timed out")
        .expect("PING after resume");
    assert_eq!(answer, "PONG");
    let mut fresh = connect(&server).await.expect("new connection after resume");
    assert_eq!(ping(&mut fresh).await.expect("PING"), "PONG");
}

#[tokio::test]
async fn kill_while_paused() {
    let mut server = RedisServer::start_owned();
    server.pause();
    server.kill();
    assert!(!accepts_connections(server.port()));
    server.restart();
    let mut con = connect(&server).await.expect("connect after restart");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");
}

#[tokio::test]
async fn drop_stops_the_process() {
    let server = RedisServer::start_owned();
    let port = server.port();
    let pid = server.pid().expect("pid");
    let dir = server
        .log_path()
        .expect("log")
        .parent()
        .map(ToOwned::to_owned);
    assert!(accepts_connections(port));

    drop(server);
    assert!(
        !accepts_connections(port),
        "port {port} still open after drop"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists after drop"
    );
    assert!(
        dir.is_some_and(|d| !d.exists()),
        "temporary directory not removed"
    );
}

#[test]
fn unique_namespaces_differ() {
    let a = unique_namespace("t");
    let b = unique_namespace("t");
    assert_ne!(a, b);
    assert!(a.starts_with("t-"));
    assert!(!a.contains(['*', '?', '[', ']']));
}

#[test]
fn init_tracing_is_idempotent() {
    init_tracing();
    init_tracing();
    tracing::info!("tracing works in tests");
}

#[tokio::test]
#[should_panic(expected = "fault tests must use RedisServer::start_owned()")]
async fn fault_injection_on_external_server_panics() {
    let owned = RedisServer::start_owned();
    let mut external = RedisServer::external(&owned.url());
    assert!(external.is_external());
    assert_eq!(external.url(), owned.url());
    assert_eq!(external.port(), owned.port());
    assert!(external.pid().is_none());
    let mut con = connect(&external).await.expect("connect");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");
    external.kill();
}
