//! The README's walk of the quickstart on Actix-web (`quickstart-actix`), on the built binary: in memory (no
//! `REDIS_URL`, the README's first command) and on a real `redis-server`. Every body is
//! compared with what the handler returns for that request at that moment.

#[path = "../../quickstart/tests/support/walk.rs"]
mod walk;

use cache_tests::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walk_in_memory_without_redis() {
    let service = walk::spawn(env!("CARGO_BIN_EXE_quickstart-actix"), None);
    walk::readme_walk(&service.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walk_on_redis() {
    let redis = RedisServer::start();
    let service = walk::spawn(env!("CARGO_BIN_EXE_quickstart-actix"), Some(redis.url()));
    walk::readme_walk(&service.1).await;
}
