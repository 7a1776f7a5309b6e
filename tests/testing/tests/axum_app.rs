//! What a user's integration test looks like: a real `redis-server` from `cache-testing`, an Axum
//! app with a `#[cached]` handler on a `Cache` pointed at that server, two requests, the second a
//! `HIT` with the handler's body. The crate docs' quick start is this test.
//!
//! Run it: `cargo test -p cache-testing --test axum_app` (needs `redis-server`, see the crate
//! docs).

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::{routing::get, Json, Router};
use cache_axum::CacheContextLayer;
use cache_core::{cached, Cache};
use cache_testing::{unique_namespace, RedisServer};
use tower::ServiceExt; // `oneshot`

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(resource = "greeting", ttl = "1m", cache = &cache)]
async fn greeting(State(cache): State<Cache>, Path(name): Path<String>) -> Json<String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Json(format!("hello {name}"))
}

#[tokio::test]
async fn the_second_request_is_a_hit_served_from_the_test_redis() {
    let server = RedisServer::start(); // a new redis-server, or the one of REDIS_URL
    let cache = Cache::builder()
        .redis_url(server.url())
        .namespace(unique_namespace("myapp")) // no collisions on a shared REDIS_URL server
        .build()
        .expect("a cache on the test server");
    assert_eq!(cache.backend_kind(), "redis");
    let app = Router::new()
        .route("/greetings/{name}", get(greeting))
        .with_state(cache)
        .layer(CacheContextLayer::builder().build());

    let mut bodies = Vec::new();
    for expected in ["MISS", "HIT"] {
        let request = Request::get("/greetings/ann").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-cache-status"], expected);
        bodies.push(to_bytes(response.into_body(), usize::MAX).await.unwrap());
    }
    assert_eq!(bodies[0], "\"hello ann\"", "what the handler returns");
    assert_eq!(bodies[1], bodies[0], "the hit: the same body, from Redis");
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the handler ran once");
    assert!(server.dbsize().await > 0, "the entry is in the test server");
}

/// Whether the process `pid` is gone and nothing listens on `address` any more.
fn assert_stopped(pid: u32, address: &str) {
    if cfg!(target_os = "linux") {
        let proc = format!("/proc/{pid}");
        assert!(
            !std::path::Path::new(&proc).exists(),
            "redis-server {pid} still runs"
        );
    }
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "{address} still accepts"
    );
}

#[test]
fn a_dropped_server_is_stopped_and_its_directory_removed() {
    let server = RedisServer::start_owned();
    let address = server.address();
    let pid = server.pid().expect("an owned server has a process");
    let dir = server.log_path().unwrap().parent().unwrap().to_owned();
    assert!(std::net::TcpStream::connect(&address).is_ok());
    drop(server);
    assert_stopped(pid, &address);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn a_server_is_stopped_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing_test = std::thread::spawn(move || {
        let server = RedisServer::start_owned();
        tx.send((server.pid().unwrap(), server.address())).unwrap();
        panic!("the test fails while its server runs");
    });
    assert!(failing_test.join().is_err(), "the thread panicked");
    let (pid, address) = rx.recv().unwrap();
    assert_stopped(pid, &address);
}
