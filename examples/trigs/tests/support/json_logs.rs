//! `LOG_FORMAT=json` checked on a built example binary, shared by the trigs and gallery tests:
//! the service logs one JSON object per line, and every cache event carries its name in an
//! `event` field (`{"event":"cache_hit","key":"trigs:v1:trig:1",...}`), the key the response's
//! `X-Cache-Key` names.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the service when dropped, also when the test panics.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The events of the log file so far, each line parsed as JSON (a line that is not JSON fails).
fn events(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .expect("read the log")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs `bin` with `LOG_FORMAT=json`, `env` (its database and seed) and admin token
/// `logs-token`; reads `path` twice (MISS, HIT), invalidates `tag` through the admin API, and
/// checks the JSON events `cache_miss_stored`, `cache_hit` (with the response's key) and
/// `cache_invalidated` (with the tag).
pub(crate) async fn json_logs_name_each_cache_event(
    bin: &str,
    env: &[(&str, String)],
    path: &str,
    tag: &str,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("service.log");
    let mut cmd = Command::new(bin);
    cmd.env_remove("CACHE_ENABLED")
        .env_remove("CACHE_NAMESPACE")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info,cache_core=debug")
        .env("ADDR", "127.0.0.1:0")
        .env("ADMIN_TOKEN", "logs-token")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    for (k, v) in env {
        cmd.env(k, v.replace("{dir}", &dir.path().display().to_string()));
    }
    let mut child = Kill(cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}")));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let base = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let walk = async {
        let base = base.unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let http = reqwest::Client::new();
        let url = format!("{base}{path}");
        let first = http.get(&url).send().await.expect("first read");
        assert_eq!(first.headers()["x-cache-status"], "MISS");
        let second = http.get(&url).send().await.expect("second read");
        assert_eq!(second.headers()["x-cache-status"], "HIT");
        let key = second.headers()["x-cache-key"]
            .to_str()
            .expect("key")
            .to_owned();
        let invalidated = http
            .post(format!("{base}/admin/cache/invalidate"))
            .bearer_auth("logs-token")
            .json(&serde_json::json!({ "tags": [tag] }))
            .send()
            .await
            .expect("invalidate");
        assert!(
            invalidated.status().is_success(),
            "{}",
            invalidated.status()
        );
        // The events are written as they happen; wait (bounded) until the last one is there.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = events(&log);
            let named = |name: &str| events.iter().find(|e| e["event"] == name).cloned();
            if let (Some(stored), Some(hit), Some(invalidated)) = (
                named("cache_miss_stored"),
                named("cache_hit"),
                named("cache_invalidated"),
            ) {
                assert_eq!(stored["key"], key.as_str(), "{stored}");
                assert_eq!(hit["key"], key.as_str(), "{hit}");
                assert!(hit["age_ms"].is_u64(), "{hit}");
                assert_eq!(hit["level"], "DEBUG", "{hit}");
                assert!(invalidated["tags"]
                    .as_str()
                    .is_some_and(|t| t.contains(tag)));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no cache_miss_stored, cache_hit and cache_invalidated events in {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), walk)
        .await
        .expect("the walk finished within 60 s");
    drop(child);
}
