//! End to end: the `trigs` binary against a real `redis-server`, driven over HTTP.
//!
//! The walk: a trig read misses then hits with the same body; the `X-Cache-*` headers are
//! there; bypass works; a log write makes every read that shows it fresh (never stale) while
//! unrelated entries stay cached; photos and log deletion; a failed write invalidates nothing;
//! the admin API is guarded; `/metrics` is served; and with Redis killed the service still
//! answers correctly from SQLite.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use cache_tests::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// The running service; killed (and its log shown, if the test failed) when dropped.
struct Service {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Spawns the binary with a fresh small database, `ADDR=127.0.0.1:0` and `env`, and waits
    /// for its `listening on` line.
    fn start(env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("trigs.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_trigs"))
            .env_remove("CACHE_ENABLED")
            .env_remove("CACHE_NAMESPACE")
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_URLS")
            .envs(env.iter().copied())
            .env("ADDR", "127.0.0.1:0")
            .env("TRIGS_DB", dir.path().join("trigs.sqlite3"))
            .env("TRIGS_SEED_TRIGS", "300")
            .env("TRIGS_SEED_USERS", "40")
            .env("TRIGS_SEED_LOGS", "3000")
            .env("ADMIN_TOKEN", "e2e-token")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn the trigs binary");
        // The readiness signal: the one stdout line, written after the socket is bound.
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read stdout");
        let mut service = Service {
            child,
            base: String::new(),
            log,
            _dir: dir,
        };
        assert!(n > 0, "trigs exited before listening");
        service.base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let base = &service.base;
        assert!(
            base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
            "{base}"
        );
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        service
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&self.log) {
                let _ = f.read_to_string(&mut text);
            }
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- trigs log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One reply: status, `X-Cache-Status`, all headers, JSON body (`Null` if not JSON).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    cache: String,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Api {
    client: Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Reply {
            status,
            cache: headers
                .get("x-cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, None).await
    }

    /// GET, asserting 200 and the cache status.
    async fn expect(&self, path: &str, cache: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {:?}", r.body);
        assert_eq!(r.cache, cache, "GET {path}");
        r.body
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body), None).await
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walk() {
    // An owned server (not `REDIS_URL`'s): the test kills it at the end.
    let mut redis = RedisServer::start_owned();
    let service = Service::start(&[("REDIS_URL", &redis.url())]);
    let api = Api {
        client: Client::new(),
        base: service.base.clone(),
    };

    // 1. A trig read: MISS, then HIT with the same body and the cache headers.
    let first = api.get("/v1/trigs/7").await;
    assert_eq!(
        (first.status, first.cache.as_str()),
        (StatusCode::OK, "MISS")
    );
    assert!(
        first.header("x-cache-key").unwrap().ends_with(":trig:7"),
        "{:?}",
        first.headers
    );
    let hit = api.get("/v1/trigs/7").await;
    assert_eq!(hit.cache, "HIT");
    assert_eq!(hit.body, first.body);
    assert_eq!(hit.header("x-cache-key"), first.header("x-cache-key"));
    let ttl: u64 = hit
        .header("x-cache-ttl")
        .expect("X-Cache-TTL")
        .parse()
        .unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "24 h TTL, got {ttl}");
    assert!(hit.header("x-cache-age").is_some());
    let trig = first.body;
    assert_eq!(trig["id"], 7);

    // 2. Bypass: the query parameter and the request header.
    let r = api.get("/v1/trigs/7?cache_bypass=1").await;
    assert_eq!((r.cache.as_str(), &r.body), ("BYPASS", &trig));
    let r = api
        .client
        .get(format!("{}/v1/trigs/7", api.base))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache-status"], "BYPASS");

    // 3. Warm every read a log write touches, and two it must not touch.
    let user_id = 3;
    let reads = [
        "/v1/stats/site".to_owned(),
        "/v1/trigs/7/logs".to_owned(),
        format!("/v1/users/{user_id}"),
        format!("/v1/users/{user_id}/logs"),
        "/v1/logs".to_owned(),
        "/v1/trigs".to_owned(),
        "/v1/users".to_owned(),
        "/v1/trigs/8".to_owned(),
    ];
    let mut before = Vec::new();
    for path in &reads {
        before.push(api.expect(path, "MISS").await);
        api.expect(path, "HIT").await;
    }
    let [stats, trig_logs, user, user_logs, logs, _trigs, users, trig8] =
        before.try_into().unwrap();

    // 4. A failed write invalidates nothing.
    let bad = api
        .post(
            "/v1/trigs/7/logs",
            json!({"user_id": user_id, "text": "x", "condition": "Shiny"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.expect("/v1/trigs/7", "HIT").await, trig);

    // 5. A log write: every read that shows it is fresh at once.
    let created = api
        .post(
            "/v1/trigs/7/logs",
            json!({"user_id": user_id, "text": "e2e visit", "condition": "Good"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let log = created.body;
    let log_id = n(&log, "id");
    assert_eq!(
        (log["trig_id"].as_u64(), log["user_id"].as_u64()),
        (Some(7), Some(user_id))
    );

    let s = api.expect("/v1/stats/site", "MISS").await;
    assert_eq!(n(&s, "logs"), n(&stats, "logs") + 1);
    let t = api.expect("/v1/trigs/7", "MISS").await;
    assert_eq!(n(&t, "log_count"), n(&trig, "log_count") + 1);
    let tl = api.expect("/v1/trigs/7/logs", "MISS").await;
    assert_eq!(n(&tl, "total"), n(&trig_logs, "total") + 1);
    assert_eq!(tl["items"][0], log, "the new log heads the trig's logs");
    let u = api.expect(&format!("/v1/users/{user_id}"), "MISS").await;
    assert_eq!(n(&u, "log_count"), n(&user, "log_count") + 1);
    let ul = api
        .expect(&format!("/v1/users/{user_id}/logs"), "MISS")
        .await;
    assert_eq!(n(&ul, "total"), n(&user_logs, "total") + 1);
    assert_eq!(ul["items"][0], log);
    let l = api.expect("/v1/logs", "MISS").await;
    assert_eq!(n(&l, "total"), n(&logs, "total") + 1);
    assert_eq!(l["items"][0], log);
    api.expect("/v1/trigs", "MISS").await;
    // ...and the fresh values are cached again.
    assert_eq!(api.expect("/v1/trigs/7", "HIT").await, t);
    assert_eq!(api.expect("/v1/stats/site", "HIT").await, s);
    // Entries with other tags were not touched.
    assert_eq!(api.expect("/v1/trigs/8", "HIT").await, trig8);
    assert_eq!(api.expect("/v1/users", "HIT").await, users);

    // 6. A photo on the new log: the log, the trig, its photo list, the stats are fresh.
    let detail = api.expect(&format!("/v1/logs/{log_id}"), "MISS").await;
    assert_eq!(detail["photos"], json!([]));
    api.expect("/v1/trigs/7/photos", "MISS").await;
    let photo = api
        .post(
            &format!("/v1/logs/{log_id}/photos"),
            json!({"caption": "The pillar", "url": "https://photos.example.invalid/e2e.jpg"}),
        )
        .await;
    assert_eq!(photo.status, StatusCode::CREATED, "{:?}", photo.body);
    let photo = photo.body;
    let photo_id = n(&photo, "id");
    let detail = api.expect(&format!("/v1/logs/{log_id}"), "MISS").await;
    assert_eq!(detail["photos"], json!([photo]));
    let t2 = api.expect("/v1/trigs/7", "MISS").await;
    assert_eq!(n(&t2, "photo_count"), n(&t, "photo_count") + 1);
    let tp = api.expect("/v1/trigs/7/photos", "MISS").await;
    assert_eq!(tp["items"][0], photo);
    let s2 = api.expect("/v1/stats/site", "MISS").await;
    assert_eq!(n(&s2, "photos"), n(&s, "photos") + 1);
    api.expect(&format!("/v1/photos/{photo_id}"), "MISS").await;
    api.expect(&format!("/v1/photos/{photo_id}"), "HIT").await;

    // 7. Deleting the log: its entry, its photo's entry and the counts are fresh.
    let del = api
        .call(Method::DELETE, &format!("/v1/logs/{log_id}"), None, None)
        .await;
    assert_eq!(del.status, StatusCode::OK, "{:?}", del.body);
    assert_eq!(del.body, log);
    assert_eq!(
        api.get(&format!("/v1/logs/{log_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/v1/photos/{photo_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let t3 = api.expect("/v1/trigs/7", "MISS").await;
    assert_eq!(
        (n(&t3, "log_count"), n(&t3, "photo_count")),
        (n(&trig, "log_count"), n(&trig, "photo_count"))
    );
    assert_eq!(api.expect("/v1/stats/site", "MISS").await, stats);

    // 8. A registration: the user list and the stats are fresh.
    let new_user = api.post("/v1/users", json!({"name": "e2e-walker"})).await;
    assert_eq!(new_user.status, StatusCode::CREATED, "{:?}", new_user.body);
    let us = api.expect("/v1/users", "MISS").await;
    assert_eq!(n(&us, "total"), n(&users, "total") + 1);
    let s3 = api.expect("/v1/stats/site", "MISS").await;
    assert_eq!(n(&s3, "users"), n(&stats, "users") + 1);
    assert_eq!(
        api.post("/v1/users", json!({"name": "e2e-walker"}))
            .await
            .status,
        StatusCode::CONFLICT
    );

    // 9. The admin API is guarded; the metrics are served.
    let r = api.get("/admin/cache/stats").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(Method::GET, "/admin/cache/stats", None, Some("wrong"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call(Method::GET, "/admin/cache/stats", None, Some("e2e-token"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["backend"], "redis", "{}", r.body);
    let m = api.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.body.as_str().expect("metrics are text");
    assert!(text.contains("cache_hits_total"), "{text}");
    assert!(text.contains("resource=\"trig\""), "{text}");

    // 10. Redis dies: the service answers from SQLite, with correct data.
    redis.kill();
    let r = api.get("/v1/trigs/7").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(["SKIP", "MISS"].contains(&r.cache.as_str()), "{}", r.cache);
    assert_eq!(r.body, t3);
    let after = api
        .post(
            "/v1/trigs/7/logs",
            json!({"user_id": user_id, "text": "no redis", "condition": "Good"}),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "writes still succeed");
    let r = api.get("/v1/trigs/7").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(["SKIP", "MISS"].contains(&r.cache.as_str()), "{}", r.cache);
    assert_eq!(n(&r.body, "log_count"), n(&t3, "log_count") + 1);
    let r = api.get("/v1/stats/site").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(n(&r.body, "logs"), n(&stats, "logs") + 1);
}

/// `cargo run -p trigs` with no Redis: the in-memory backend, the same headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_by_default() {
    let service = Service::start(&[]);
    let api = Api {
        client: Client::new(),
        base: service.base.clone(),
    };
    let miss = api.expect("/v1/users/2", "MISS").await;
    assert_eq!(api.expect("/v1/users/2", "HIT").await, miss);
    let r = api
        .call(Method::GET, "/admin/cache/stats", None, Some("e2e-token"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["backend"], "memory", "{}", r.body);
}

/// `CACHE_ENABLED=false`: every read goes to SQLite (`SKIP`), writes still work, reads are
/// always current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_disabled() {
    let service = Service::start(&[("CACHE_ENABLED", "false")]);
    let api = Api {
        client: Client::new(),
        base: service.base.clone(),
    };
    let trig = api.expect("/v1/trigs/3", "SKIP").await;
    assert_eq!(api.expect("/v1/trigs/3", "SKIP").await, trig);
    let created = api
        .post(
            "/v1/trigs/3/logs",
            json!({"user_id": 1, "text": "uncached", "condition": "Good"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let t = api.expect("/v1/trigs/3", "SKIP").await;
    assert_eq!(n(&t, "log_count"), n(&trig, "log_count") + 1);
}

/// Concurrent writes never answer 500. `DELETE /v1/logs/{id}` reads the log and its photos,
/// then deletes: in a deferred transaction the first delete had to upgrade a read snapshot to
/// the write lock, which SQLite refuses at once ("database is locked") when another connection
/// committed meanwhile. Every write now takes the write lock at `BEGIN` (`BEGIN IMMEDIATE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_never_fail() {
    let service = Service::start(&[("CACHE_ENABLED", "false")]);
    let client = Client::new();
    const TASKS: usize = 16;
    const ROUNDS: usize = 12;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let api = Api {
            client: client.clone(),
            base: service.base.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for r in 0..ROUNDS {
                let trig = 1 + ((t * 7 + r) % 50) as i64;
                let created = api
                    .post(
                        &format!("/v1/trigs/{trig}/logs"),
                        json!({"user_id": 1 + (t % 40) as i64, "text": "busy", "condition": "Good"}),
                    )
                    .await;
                if created.status != StatusCode::CREATED {
                    failures.push(format!("create: {} {}", created.status, created.body));
                    continue;
                }
                let id = created.body["id"].as_i64().expect("log id");
                let photo = api
                    .post(
                        &format!("/v1/logs/{id}/photos"),
                        json!({"caption": "c", "url": "https://example.com/p.jpg"}),
                    )
                    .await;
                if photo.status != StatusCode::CREATED {
                    failures.push(format!("photo: {} {}", photo.status, photo.body));
                }
                let deleted = api
                    .call(Method::DELETE, &format!("/v1/logs/{id}"), None, None)
                    .await;
                if deleted.status != StatusCode::OK {
                    failures.push(format!("delete: {} {}", deleted.status, deleted.body));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.expect("task"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} writes failed, first: {:?}",
        failures.len(),
        TASKS * ROUNDS * 3,
        &failures[..failures.len().min(5)]
    );
}

/// Bad inputs of the list and item endpoints are 400s whose JSON `error` names what is wrong;
/// values in range still work.
///
/// Regression: `GET /v1/trigs?page=4294967295` overflowed `u32` in `db::bounds` (`(page - 1) *
/// per_page`): a panic on the blocking pool, answered 500. `page=0` and `per_page=0` or `101`
/// were silently replaced, and a bad query or path got Actix's plain-text 400 / 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_400s_naming_the_parameter() {
    let service = Service::start(&[]);
    let api = Api {
        client: Client::new(),
        base: service.base.clone(),
    };
    let page_range = "expected a whole number from 1 to 100000";
    let per_page_range = "expected a whole number from 1 to 100";
    let cases: Vec<(String, String)> = [
        (
            "/v1/trigs?page=4294967295",
            format!("page=\"4294967295\": {page_range}"),
        ),
        (
            "/v1/trigs?page=100001",
            format!("page=\"100001\": {page_range}"),
        ),
        ("/v1/trigs?page=0", format!("page=\"0\": {page_range}")),
        ("/v1/trigs?page=-1", format!("page=\"-1\": {page_range}")),
        ("/v1/trigs?page=", format!("page=\"\": {page_range}")),
        ("/v1/trigs?page=abc", format!("page=\"abc\": {page_range}")),
        (
            "/v1/trigs?page=99999999999999999999",
            format!("page=\"99999999999999999999\": {page_range}"),
        ),
        (
            "/v1/trigs?per_page=0",
            format!("per_page=\"0\": {per_page_range}"),
        ),
        (
            "/v1/trigs?per_page=101",
            format!("per_page=\"101\": {per_page_range}"),
        ),
        (
            "/v1/users?page=4294967295",
            format!("page=\"4294967295\": {page_range}"),
        ),
        (
            "/v1/logs?page=4294967295&per_page=100",
            format!("page=\"4294967295\": {page_range}"),
        ),
        (
            "/v1/trigs/1/logs?page=4294967295",
            format!("page=\"4294967295\": {page_range}"),
        ),
        (
            "/v1/trigs/1/photos?page=4294967295",
            format!("page=\"4294967295\": {page_range}"),
        ),
        (
            "/v1/users/1/logs?per_page=-5",
            format!("per_page=\"-5\": {per_page_range}"),
        ),
        (
            "/v1/trigs?page=1&page=2",
            "invalid query string: duplicate field `page`".to_owned(),
        ),
        ("/v1/trigs/abc", "invalid path: ".to_owned()),
        (
            "/v1/trigs/99999999999999999999",
            "invalid path: ".to_owned(),
        ),
        ("/v1/users/1.5/logs", "invalid path: ".to_owned()),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m))
    .collect();
    for (path, message) in &cases {
        let r = api.get(path).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "GET {path}: {:?}",
            r.body
        );
        let error = r.body["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(message.as_str()),
            "GET {path}: error {error:?}, expected it to start with {message:?}"
        );
    }
    // The bounds themselves are fine: the last page number is an empty page, 100 rows a page.
    let last = api.get("/v1/trigs?page=100000&per_page=100").await;
    assert_eq!(last.status, StatusCode::OK, "{:?}", last.body);
    assert_eq!(
        (
            last.body["page"].as_u64(),
            last.body["items"].as_array().map(Vec::len)
        ),
        (Some(100_000), Some(0))
    );
    let first = api.get("/v1/trigs?page=1&per_page=1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(1));
    // An unknown id is still a 404; a body the JSON extractor refuses is a JSON 400.
    assert_eq!(api.get("/v1/trigs/-1").await.status, StatusCode::NOT_FOUND);
    let bad = api
        .client
        .post(format!("{}/v1/users", api.base))
        .header("content-type", "application/json")
        .body("{\"name\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid body: ")),
        "{body}"
    );
}

/// `FUZZ_CASES` (default 256).
fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

/// A query parameter value: numbers of every size and sign, empty, garbage, encoded bytes.
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
            "5 ",
            "5.0",
            "1e3",
            "0x10",
            "abc",
            "%FF",
            "%00",
            "%35",
            "4294967295",
            "4294967296",
            "100000",
            "100001",
            "18446744073709551616",
            "-2147483649",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9%+._~-]{0,8}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(vec!["page", "per_page", "page", "per_page", "x", "PAGE"]);
    proptest::collection::vec((name, value()), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn list_endpoint() -> impl Strategy<Value = String> {
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
    (0usize..6, id).prop_map(|(which, id)| match which {
        0 => "/v1/trigs".to_owned(),
        1 => "/v1/users".to_owned(),
        2 => "/v1/logs".to_owned(),
        3 => format!("/v1/trigs/{id}/logs"),
        4 => format!("/v1/trigs/{id}/photos"),
        _ => format!("/v1/users/{id}/logs"),
    })
}

/// No query of a list endpoint answers 5xx or drops the connection; every 4xx carries a JSON
/// `error` (proptest, `FUZZ_CASES` cases against the binary).
#[test]
fn list_queries_never_answer_5xx() {
    let service = Service::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new();
    let config = ProptestConfig {
        cases: fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&(list_endpoint(), query()), |(endpoint, query)| {
        let url = format!("{}{endpoint}?{query}", service.base);
        let (status, text) = rt.block_on(async {
            let resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("GET {url}: {e}")))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Ok::<_, TestCaseError>((status, text))
        })?;
        prop_assert!(!status.is_server_error(), "GET {url}: {status} {text}");
        if status.is_client_error() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            prop_assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "GET {url}: {status} without a JSON error: {text}"
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
