//! End to end: a real `redis-server`, the built `gallery` binary on a free port with a small
//! temporary database, the demo walk (every step asserted, Redis killed near the end), and the
//! randomized freshness check (after every write, each affected cached read equals a fresh one).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cache_tests::RedisServer;
use gallery::demo::{self, DemoOptions};

/// Kills the child process when dropped (also when the test panics).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns the gallery and waits for its `listening on http://...` line (the signal that it is
/// ready); returns the guard and the base URL.
fn spawn_gallery(envs: &[(&str, String)]) -> (ChildGuard, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gallery"));
    cmd.env_remove("REDIS_URL")
        .env_remove("CACHE_ENABLED")
        .env_remove("CACHE_NAMESPACE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the gallery binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the gallery printed no `listening on` line within 60 s");
    (guard, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walk_and_fresh_reads_on_redis() {
    let mut redis = RedisServer::start_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "e2e-token".to_owned();
    let (_gallery, base) = spawn_gallery(&[
        ("REDIS_URL", redis.url()),
        ("ADDR", "127.0.0.1:0".into()),
        (
            "GALLERY_DB",
            dir.path().join("g.sqlite3").display().to_string(),
        ),
        ("GALLERY_SEED_ITEMS", "4000".into()),
        ("GALLERY_SEED_USERS", "80".into()),
        ("ADMIN_TOKEN", token.clone()),
    ]);

    // Writes first, while Redis is up: after each, every affected cached read is fresh.
    let compared = demo::freshness_check(&base, 12, 1)
        .await
        .unwrap_or_else(|e| panic!("stale read: {e}"));
    assert!(compared >= 12 * 10, "only {compared} reads compared");

    let opts = DemoOptions {
        base,
        admin_token: token,
        print: true,
    };
    let stop = || {
        redis.kill();
        async { Ok(()) }
    };
    let summary = demo::run(&opts, Some(stop))
        .await
        .unwrap_or_else(|e| panic!("demo step failed: {e}"));
    assert_eq!(summary.backend, "redis");
    assert!(summary.redis_stopped, "the Redis-down step did not run");
    assert!(summary.steps >= 45, "only {} steps", summary.steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_off_is_a_plain_pass_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_gallery, base) = spawn_gallery(&[
        ("CACHE_ENABLED", "false".into()),
        ("ADDR", "127.0.0.1:0".into()),
        (
            "GALLERY_DB",
            dir.path().join("g.sqlite3").display().to_string(),
        ),
        ("GALLERY_SEED_ITEMS", "500".into()),
        ("GALLERY_SEED_USERS", "20".into()),
    ]);
    let api = demo::Api::new(&base, false);
    for _ in 0..2 {
        let r = api.get("/content?sort=popular", &[]).await.unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.cache_status(), "SKIP");
        let r = api
            .get("/users/1/gallery", &[("x-user-id", "1".into())])
            .await
            .unwrap();
        assert_eq!((r.status.as_u16(), r.cache_status()), (200, "SKIP"));
    }
    let r = api.get("/gallery", &[]).await.unwrap();
    assert_eq!(r.status.as_u16(), 200);
    assert_ne!(r.cache_status(), "HIT");
    let r = api.get("/gallery", &[]).await.unwrap();
    assert_ne!(r.cache_status(), "HIT", "caching is off: never a hit");
}
