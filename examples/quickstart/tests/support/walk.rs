//! The README's walk of the quickstart, shared by both quickstarts' tests (`quickstart` on Axum,
//! `quickstart-actix`): the same requests, the same answers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// A running service and its base URL; killed when dropped, also when the test panics.
pub(crate) struct Service(Child, pub(crate) String);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns the service `bin` on a free port and waits for its `listening on` line.
pub(crate) fn spawn(bin: &str, redis_url: Option<String>) -> Service {
    let mut cmd = Command::new(bin);
    cmd.env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env_remove("CACHE_ENABLED")
        .env_remove("CACHE_NAMESPACE")
        .env_remove("ADMIN_TOKEN")
        .env("ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = redis_url {
        cmd.env("REDIS_URL", url);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let base = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let base = base.unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Service(child, base)
}

/// Status, `X-Cache-Status` and JSON body of a request.
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let cache = resp
        .headers()
        .get("x-cache-status")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, cache, body)
}

pub(crate) async fn readme_walk(base: &str) {
    let http = Client::new();
    let trig = |logs: u32| json!({ "id": 1, "name": "Trig 1", "logs": logs });
    let get = || http.get(format!("{base}/trigs/1"));
    assert_eq!(send(get()).await, (StatusCode::OK, "MISS".into(), trig(0)));
    let hit = get().send().await.expect("hit");
    for header in ["x-cache-age", "x-cache-ttl", "x-cache-key", "etag"] {
        assert!(
            hit.headers().contains_key(header),
            "{header}: {:?}",
            hit.headers()
        );
    }
    assert_eq!(hit.headers()["x-cache-status"], "HIT");
    assert_eq!(
        hit.headers()["x-cache-key"],
        "cache:v1:trig:1",
        "the README's key"
    );
    assert_eq!(hit.json::<Value>().await.expect("json"), trig(0));

    // Bypass: only the admin token may; the public's request is an ordinary hit.
    let bypass = || http.get(format!("{base}/trigs/1?cache_bypass=1"));
    assert_eq!(
        send(bypass()).await,
        (StatusCode::OK, "HIT".into(), trig(0))
    );
    let admin = bypass().bearer_auth("dev-admin-token");
    assert_eq!(
        send(admin).await,
        (StatusCode::OK, "BYPASS".into(), trig(0))
    );

    // A write answers 201 with the new row and invalidates `trig:1`: the next read is fresh.
    let write = http.post(format!("{base}/trigs/1/logs"));
    assert_eq!(
        send(write).await,
        (StatusCode::CREATED, String::new(), trig(1))
    );
    assert_eq!(send(get()).await, (StatusCode::OK, "MISS".into(), trig(1)));
    assert_eq!(send(get()).await, (StatusCode::OK, "HIT".into(), trig(1)));
    // A failed write invalidates nothing.
    let failed = http.post(format!("{base}/trigs/999/logs"));
    assert_eq!(send(failed).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(get()).await, (StatusCode::OK, "HIT".into(), trig(1)));
    // An unknown id is a 404 every time, never cached.
    for _ in 0..2 {
        let missing = http.get(format!("{base}/trigs/999"));
        assert_eq!(
            send(missing).await,
            (StatusCode::NOT_FOUND, "MISS".into(), Value::Null)
        );
    }

    // The admin API (behind the token) and the metrics.
    let stats = || http.get(format!("{base}/admin/cache/stats"));
    assert_eq!(send(stats()).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(stats().bearer_auth("dev-admin-token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("cache_hits_total"), "{text}");
}
