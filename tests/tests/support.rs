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

// ------------------------------------------------------------------ faults through commands

/// A blocking connection with a reply timeout, for probing a faulty server.
fn probe_connection(server: &RedisServer, reply_timeout: Duration) -> redis::Connection {
    let con = server
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("connect");
    con.set_read_timeout(Some(reply_timeout)).expect("timeout");
    con
}

#[test]
fn debug_sleep_blocks_the_server_for_its_duration() {
    let server = RedisServer::start_owned();
    let mut con = probe_connection(&server, Duration::from_secs(5));
    let block = server.debug_sleep(Duration::from_millis(400));
    let sent = block.started();
    // A command sent meanwhile is answered only after the sleep.
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "PING answered after {waited:?} during DEBUG SLEEP 0.4"
    );
    let answered = block.wait();
    assert!(answered.duration_since(sent) < Duration::from_secs(3));
}

#[test]
fn client_pause_write_holds_writes_and_answers_reads() {
    let server = RedisServer::start_owned();
    let mut con = probe_connection(&server, Duration::from_secs(5));
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut con)
        .expect("SET");

    server.client_pause(Duration::from_millis(400), cache_tests::PauseMode::Write);
    let t = std::time::Instant::now();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
    assert_eq!(v, "v");
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "GET waited {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    redis::cmd("SET")
        .arg("k")
        .arg("w")
        .query::<()>(&mut con)
        .expect("SET after pause");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "SET answered after {:?} during CLIENT PAUSE 400 WRITE",
        t.elapsed()
    );

    server.client_pause(Duration::from_millis(400), cache_tests::PauseMode::All);
    let t = std::time::Instant::now();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut con)
        .expect("GET after pause");
    assert_eq!(v, "w");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "GET answered after {:?} during CLIENT PAUSE 400 ALL",
        t.elapsed()
    );
}

#[test]
fn fill_to_maxmemory_noeviction_refuses_writes_until_reset() {
    let server = RedisServer::start_owned();
    let mut con = probe_connection(&server, Duration::from_secs(2));
    redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query::<()>(&mut con)
        .expect("SET");

    let report = server.fill_to_maxmemory(cache_tests::EvictionPolicy::NoEviction);
    assert!(report.full, "{report:?}");
    assert!(
        report.oom_errors >= 1 && report.filler_keys > 0,
        "{report:?}"
    );
    let err = redis::cmd("SET")
        .arg("other")
        .arg(vec![b'y'; 8192])
        .query::<()>(&mut con)
        .expect_err("a write on a full noeviction server");
    assert_eq!(err.code(), Some("OOM"), "{err}");
    // Reads and deletes still work.
    let v: String = redis::cmd("GET").arg("mine").query(&mut con).expect("GET");
    assert_eq!(v, "1");

    let deleted = server.reset_memory();
    assert_eq!(deleted, report.filler_keys);
    redis::cmd("SET")
        .arg("other")
        .arg(vec![b'y'; 8192])
        .query::<()>(&mut con)
        .expect("SET after reset");
    assert_eq!(server.info_field("memory", "maxmemory"), 0);
}

#[test]
fn fill_to_maxmemory_allkeys_lru_evicts() {
    let server = RedisServer::start_owned();
    let mut con = probe_connection(&server, Duration::from_secs(2));
    for i in 0..50 {
        redis::cmd("SET")
            .arg(format!("mine:{i}"))
            .arg(vec![b'z'; 1024])
            .query::<()>(&mut con)
            .expect("SET");
    }
    let report = server.fill_to_maxmemory(cache_tests::EvictionPolicy::AllKeysLru);
    assert!(report.full && report.evicted_keys > 0, "{report:?}");
    assert_eq!(report.oom_errors, 0, "{report:?}");
    // Writes still succeed: Redis makes room.
    redis::cmd("SET")
        .arg("other")
        .arg(vec![b'y'; 8192])
        .query::<()>(&mut con)
        .expect("SET on a full allkeys-lru server");
    server.reset_memory();
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut con)
        .expect("CONFIG GET");
    assert_eq!(policy, ["maxmemory-policy", "noeviction"]);
}

#[tokio::test]
async fn kill_clients_drops_connections() {
    let server = RedisServer::start_owned();
    let mut con = connect(&server).await.expect("connect");
    assert_eq!(ping(&mut con).await.expect("PING"), "PONG");
    let mut sync_con = probe_connection(&server, Duration::from_secs(1));
    redis::cmd("PING")
        .query::<String>(&mut sync_con)
        .expect("PING");

    let killed = server.kill_clients();
    assert!(killed >= 2, "killed {killed}");
    assert!(
        redis::cmd("PING").query::<String>(&mut sync_con).is_err(),
        "the killed connection still answers"
    );
    // The server itself is fine: new connections work.
    let mut fresh = connect(&server).await.expect("connect after CLIENT KILL");
    assert_eq!(ping(&mut fresh).await.expect("PING"), "PONG");
}

#[test]
#[should_panic(expected = "fault tests must use RedisServer::start_owned()")]
fn command_faults_on_external_server_panic() {
    let owned = RedisServer::start_owned();
    let external = RedisServer::external(&owned.url());
    external.kill_clients();
}

// ------------------------------------------------------------------ the HTTP client

/// A tiny HTTP/1.1 server on loopback: answers each request on a connection with `200` and
/// the request line as body, and closes every connection after `per_connection` requests
/// without saying so (like an idle timeout). Returns its address.
async fn closing_server(per_connection: usize) -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                for _ in 0..per_connection {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        stream.read_line(&mut line).await.expect("header");
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().expect("length");
                        }
                    }
                    let mut body = vec![0u8; length];
                    stream.read_exact(&mut body).await.expect("body");
                    let text = request_line.trim();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nx-cache-status: HIT\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    stream
                        .get_mut()
                        .write_all(reply.as_bytes())
                        .await
                        .expect("write");
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn http_client_keeps_alive_and_resends_idempotent_requests_on_closed_connections() {
    use cache_tests::http::HttpClient;
    let addr = closing_server(2).await;
    let mut client = HttpClient::new(addr);
    for i in 0..5 {
        let r = client.get(&format!("/r/{i}")).await.expect("GET");
        assert_eq!(r.status, 200);
        assert_eq!(r.cache_status(), Some("HIT"));
        assert_eq!(r.text(), format!("GET /r/{i} HTTP/1.1"));
    }
    let r = client
        .request(
            "PUT",
            "/w",
            &[("content-type", "application/json")],
            Some(b"{\"a\":1}"),
        )
        .await
        .expect("PUT");
    assert_eq!(r.text(), "PUT /w HTTP/1.1");
    // A POST on a connection the server closed is not resent: the caller sees the error.
    let addr = closing_server(1).await;
    let mut client = HttpClient::new(addr);
    client.get("/first").await.expect("GET");
    assert!(client.request("POST", "/p", &[], Some(b"x")).await.is_err());
    let r = client
        .request("POST", "/p", &[], Some(b"x"))
        .await
        .expect("POST on a new connection");
    assert_eq!(r.text(), "POST /p HTTP/1.1");
}
