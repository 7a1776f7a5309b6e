//! End to end: a real `redis-server`, the built `gallery` binary on a free port with a small
//! temporary database, the demo walk (every step asserted, Redis killed near the end), and the
//! randomized freshness check (after every write, each affected cached read equals a fresh one).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cache_tests::RedisServer;
use gallery::demo::{self, DemoOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

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
        .env_remove("REDIS_CLUSTER_URLS")
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

/// `FUZZ_CASES` (default 256).
fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

/// A query parameter value: numbers of every size and sign, empty, garbage, encoded bytes, the
/// values the filters know.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        (0u32..=120).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{15,40}",
        proptest::sample::select(vec![
            "",
            "-0",
            "+5",
            " 5",
            "5.0",
            "1e3",
            "abc",
            "%FF",
            "%00",
            "%35",
            "4294967295",
            "4294967296",
            "10001",
            "18446744073709551616",
            "image",
            "video",
            "audio",
            "text",
            "hologram",
            "recent",
            "popular",
            "manual",
            "auto",
            "cat",
            "Cats",
            "%20cats%20",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9%+._~-]{0,8}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(vec![
        "page", "limit", "type", "tag", "sort", "user", "source", "page", "limit", "x",
    ]);
    proptest::collection::vec((name, value()), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A list endpoint, and the `X-User-Id` to send (the owner's routes need the path's user).
fn list_endpoint() -> impl Strategy<Value = (String, Option<String>)> {
    let id = prop_oneof![
        (1i64..=5).prop_map(|n| n.to_string()),
        proptest::sample::select(vec![
            "0",
            "-1",
            "9223372036854775807",
            "99999999999999999999",
            "abc"
        ])
        .prop_map(str::to_owned),
    ];
    (0usize..7, id, any::<bool>()).prop_map(|(which, id, as_owner)| {
        let user = as_owner.then(|| id.clone());
        match which {
            0 => ("/gallery".to_owned(), None),
            1 => ("/content".to_owned(), None),
            2 => ("/tags".to_owned(), None),
            3 => (format!("/users/{id}/content_items"), user),
            4 => (format!("/users/{id}/content_items_auto"), user),
            5 => (format!("/users/{id}/gallery"), user),
            _ => ("/generation-types".to_owned(), None),
        }
    })
}

/// No query of a list endpoint answers 5xx or drops the connection, and every 4xx says why
/// (proptest, `FUZZ_CASES` cases against the binary).
#[test]
fn list_queries_never_answer_5xx() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_gallery, base) = spawn_gallery(&[
        ("ADDR", "127.0.0.1:0".into()),
        (
            "GALLERY_DB",
            dir.path().join("g.sqlite3").display().to_string(),
        ),
        ("GALLERY_SEED_ITEMS", "500".into()),
        ("GALLERY_SEED_USERS", "20".into()),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let config = ProptestConfig {
        cases: fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&(list_endpoint(), query()), |((endpoint, user), query)| {
        let url = format!("{base}{endpoint}?{query}");
        let (status, text) = rt.block_on(async {
            let mut req = client.get(&url);
            if let Some(user) = &user {
                req = req.header("x-user-id", user);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("GET {url}: {e}")))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Ok::<_, TestCaseError>((status, text))
        })?;
        prop_assert!(!status.is_server_error(), "GET {url}: {status} {text}");
        if status.is_client_error() {
            prop_assert!(
                !text.trim().is_empty(),
                "GET {url}: {status} with an empty body"
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
