#![allow(missing_docs)]
//! The `annocache` operator CLI against real Redis servers (one node, a password server, a
//! cluster): every subcommand, its `--json` output parsed and checked against what the cache
//! stored, its exit status, and what it must never do (`KEYS`, print a password).
//!
//! The CLI runs in process through [`cache_core::cli::run`] (the binary's `main` calls the same
//! function with the process's arguments and environment), with an environment of its own.

use std::time::Duration;

use cache_core::{Cache, Policy};
use cache_tests::{unique_namespace, RedisCluster, RedisServer};
use serde_json::Value;

/// Runs the CLI with `args` and the variables `env`: (exit status, stdout, stderr).
async fn cli(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("annocache").chain(args.iter().copied());
    let code = cache_core::cli::run(
        argv,
        |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()),
        false,
        &mut out,
        &mut err,
    )
    .await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Runs the CLI with `--json`, expecting status `code`; the parsed output.
async fn cli_json(env: &[(&str, String)], args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (got, out, err) = cli(env, &all).await;
    assert_eq!(got, code, "annocache {args:?}: stdout {out} stderr {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A cache in `ns` on `url`, with entries of two resources: `trig` 1..=3 (tagged `trig:<id>`
/// and `trigs`) and `user` 1..=2.
async fn fill(url: &str, ns: &str) -> Cache {
    let cache = Cache::builder()
        .namespace(ns)
        .redis_url(url)
        .command_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for id in 1..=3u32 {
        let key = cache.key("trig").id(id).build();
        let policy = Policy::ttl(Duration::from_secs(60))
            .tag(format!("trig:{id}"))
            .tag("trigs");
        let _: String = cache
            .get_or_load(&key, policy, || async move { format!("trig {id}") })
            .await;
    }
    for id in 1..=2u32 {
        let key = cache.key("user").id(id).build();
        let _: String = cache
            .get_or_load(&key, Duration::from_secs(60), || async move {
                format!("user {id}")
            })
            .await;
    }
    cache
}

/// Whether the server ever ran `KEYS`.
async fn ran_keys(server: &RedisServer) -> bool {
    let mut con = server.connection().await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    stats.contains("cmdstat_keys:")
}

fn env(url: &str, ns: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", url.to_owned()),
        ("CACHE_NAMESPACE", ns.to_owned()),
    ]
}

#[tokio::test]
async fn cli_stats_reports_the_servers_figures_and_health_as_json() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_stats");
    fill(&server.url(), &ns).await;
    let v = cli_json(&env(&server.url(), &ns), &["stats"], 0).await;
    assert_eq!(v["backend"], "redis");
    assert_eq!(v["namespace"], ns.as_str());
    assert_eq!(v["health"]["status"], "up");
    assert_eq!(v["total_keys"].as_u64(), Some(server.dbsize().await));
    assert!(v["memory_used_bytes"].as_u64().unwrap() > 0);
    // Text form.
    let (code, out, _) = cli(&env(&server.url(), &ns), &["stats"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("health        up"), "{out}");
}

#[tokio::test]
async fn cli_keys_counts_entries_per_resource_with_scan_never_keys() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_keys");
    let cache = fill(&server.url(), &ns).await;
    let v = cli_json(&env(&server.url(), &ns), &["keys"], 0).await;
    assert_eq!(v["namespace"], ns.as_str());
    assert_eq!(v["complete"], true);
    assert_eq!(v["resources"]["trig"]["entries"], 3);
    assert_eq!(v["resources"]["user"]["entries"], 2);
    assert_eq!(
        v["resources"].as_object().unwrap().len(),
        2,
        "only the two resources: {v}"
    );
    let example = v["resources"]["trig"]["examples"][0].as_str().unwrap();
    assert!(
        (1..=3).any(|id| example == cache.key("trig").id(id).build().as_str()),
        "{example}"
    );
    // Four tags (`trig:1..3`, `trigs`): an index each (versions appear once invalidated).
    assert_eq!(v["tag_keys"], 4);
    assert_eq!(v["scanned"].as_u64(), Some(server.dbsize().await));
    // A limit makes it a sample.
    let v = cli_json(&env(&server.url(), &ns), &["keys", "--limit", "2"], 0).await;
    assert_eq!(v["complete"], false);
    assert_eq!(v["scanned"], 2);
    assert!(!ran_keys(&server).await, "the server never ran KEYS");
}

#[tokio::test]
async fn cli_inspect_shows_an_entrys_envelope_and_says_when_there_is_none() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_inspect");
    let cache = fill(&server.url(), &ns).await;
    let key = cache.key("trig").id(2).build();
    let v = cli_json(&env(&server.url(), &ns), &["inspect", key.as_str()], 0).await;
    assert_eq!(v["found"], true);
    assert_eq!(v["key"], key.as_str());
    assert_eq!(v["state"], "fresh");
    assert_eq!(v["ttl_ms"], 60_000);
    assert!(v["age_ms"].as_u64().unwrap() < 60_000);
    assert_eq!(v["content_type"], "application/json");
    let mut tags: Vec<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["trig:2", "trigs"]);
    let stored: usize = redis::cmd("STRLEN")
        .arg(key.as_str())
        .query_async(&mut server.connection().await)
        .await
        .unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(stored as u64));
    // The payload is the loader's value.
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("trig 2"));

    let missing = cache.key("trig").id(99).build();
    let v = cli_json(&env(&server.url(), &ns), &["inspect", missing.as_str()], 1).await;
    assert_eq!(v["found"], false);

    let (code, _, err) = cli(&env(&server.url(), &ns), &["inspect", "other:v1:trig:1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("is not a key of the namespace"), "{err}");
}

#[tokio::test]
async fn cli_invalidate_deletes_the_entries_of_the_tags() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_invalidate");
    let cache = fill(&server.url(), &ns).await;
    let v = cli_json(
        &env(&server.url(), &ns),
        &["invalidate", "trig:1", "trig:3"],
        0,
    )
    .await;
    assert_eq!(v["invalidated"], 2);
    for (id, gone) in [(1, true), (2, false), (3, true)] {
        let key = cache.key("trig").id(id).build();
        assert_eq!(cache.get::<String>(&key).await.is_none(), gone, "trig {id}");
    }
    // `--json` is accepted after the subcommand too.
    let (code, out, _) = cli(&env(&server.url(), &ns), &["invalidate", "trigs", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["invalidated"], 1, "trig 2 was the last of `trigs`");
}

#[tokio::test]
async fn cli_flush_dry_run_counts_and_deletes_nothing_then_flush_deletes() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_flush");
    let cache = fill(&server.url(), &ns).await;
    let e = env(&server.url(), &ns);

    let v = cli_json(&e, &["flush", "--pattern", "trig:*", "--dry-run"], 0).await;
    assert_eq!(v["would_delete"], 3);
    assert_eq!(v["dry_run"], true);
    let before = server.dbsize().await;
    let v = cli_json(&e, &["flush", "--namespace", &ns, "--dry-run"], 0).await;
    assert_eq!(
        v["would_delete"],
        5 + 4,
        "five entries and the four tag indexes"
    );
    assert_eq!(server.dbsize().await, before, "a dry run deletes nothing");

    let v = cli_json(&e, &["flush", "--pattern", "trig:*"], 0).await;
    assert_eq!(v["deleted"], 3);
    for id in 1..=3 {
        assert!(cache
            .get::<String>(&cache.key("trig").id(id).build())
            .await
            .is_none());
    }
    assert!(cache
        .get::<String>(&cache.key("user").id(1).build())
        .await
        .is_some());

    let v = cli_json(&e, &["flush", "--namespace", &ns], 0).await;
    assert!(v["deleted"].as_u64().unwrap() >= 2);
    let v = cli_json(&e, &["keys"], 0).await;
    assert_eq!(v["resources"].as_object().unwrap().len(), 0, "{v}");
    assert!(!ran_keys(&server).await, "the server never ran KEYS");

    // `flush` needs a target.
    let (code, _, err) = cli(&e, &["flush"]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn cli_without_redis_refuses_and_with_redis_down_fails_with_status_1() {
    let (code, _, err) = cli(&[], &["stats"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("REDIS_URL"), "{err}");

    let mut server = RedisServer::start_owned();
    let url = server.url();
    server.kill();
    let v = cli_json(&env(&url, "down"), &["stats"], 1).await;
    assert!(v["error"].as_str().unwrap().contains("down"), "{v}");
    let v = cli_json(&env(&url, "down"), &["keys"], 1).await;
    assert!(v["error"].is_string(), "{v}");
}

#[tokio::test]
async fn cli_never_prints_the_redis_password() {
    let secret = "cli-s3cret-password";
    let server = RedisServer::start_with_password(secret);
    let url = server.url();
    assert!(url.contains(secret), "the test URL carries the password");
    let ns = unique_namespace("cli_password");
    fill(&url, &ns).await;
    let e = env(&url, &ns);
    for args in [
        &["stats"][..],
        &["keys"],
        &["--json", "stats"],
        &["--json", "keys"],
        &["flush", "--pattern", "x*", "--dry-run"],
    ] {
        let (code, out, err) = cli(&e, args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.contains(secret) && !err.contains(secret), "{args:?}");
    }
    // A wrong password: status 1, and still no secret.
    let wrong = url.replace(secret, "wrong-password");
    let (code, out, err) = cli(&env(&wrong, &ns), &["stats"]).await;
    assert_eq!(code, 1);
    assert!(!out.contains("wrong-password") && !err.contains("wrong-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_inspect_and_flush_work_on_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let ns = unique_namespace("cli_cluster");
    let cache = Cache::builder()
        .namespace(ns.clone())
        .redis_cluster(cluster.urls())
        .command_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for id in 0..40u32 {
        let key = cache.key("trig").id(id).build();
        let _: String = cache
            .get_or_load(
                &key,
                Policy::ttl(Duration::from_secs(60)).tag("trigs"),
                || async move { format!("trig {id}") },
            )
            .await;
    }
    let e = vec![
        ("REDIS_CLUSTER_URLS", cluster.urls().join(",")),
        ("CACHE_NAMESPACE", ns.clone()),
    ];
    let v = cli_json(&e, &["keys"], 0).await;
    assert_eq!(
        v["resources"]["trig"]["entries"], 40,
        "every master scanned"
    );
    let example = v["resources"]["trig"]["examples"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        example.starts_with(&format!("{ns}:v1:trig:")),
        "logical keys: {example}"
    );
    let v = cli_json(&e, &["inspect", &example], 0).await;
    assert_eq!(v["found"], true);
    assert_eq!(v["tags"][0], "trigs");
    let v = cli_json(&e, &["flush", "--pattern", "trig:*", "--dry-run"], 0).await;
    assert_eq!(v["would_delete"], 40);
    let v = cli_json(&e, &["flush", "--pattern", "trig:*"], 0).await;
    assert_eq!(v["deleted"], 40);
    assert!(cache
        .get::<String>(&cache.key("trig").id(7).build())
        .await
        .is_none());
}

#[tokio::test]
async fn key_census_counts_the_memory_backend_like_redis() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("census");
    let on_redis = fill(&server.url(), &ns).await;
    let memory = Cache::builder().namespace(ns.clone()).build().unwrap();
    for id in 1..=3u32 {
        let key = memory.key("trig").id(id).build();
        let policy = Policy::ttl(Duration::from_secs(60))
            .tag(format!("trig:{id}"))
            .tag("trigs");
        let _: String = memory
            .get_or_load(&key, policy, || async move { format!("trig {id}") })
            .await;
    }
    for id in 1..=2u32 {
        let key = memory.key("user").id(id).build();
        let _: String = memory
            .get_or_load(&key, Duration::from_secs(60), || async move {
                format!("user {id}")
            })
            .await;
    }
    let a = on_redis.key_census(u64::MAX, |_| {}).await.unwrap();
    let b = memory.key_census(u64::MAX, |_| {}).await.unwrap();
    // The memory backend keeps its bookkeeping beside the entries, not as keys: entries only.
    assert_eq!(
        (a.resources.len(), a.complete),
        (b.resources.len(), b.complete)
    );
    assert_eq!(b.tag_keys + b.version_keys, 0);
    for (resource, keys) in &a.resources {
        assert_eq!(keys.entries, b.resources[resource].entries, "{resource}");
    }
    assert_eq!(memory.count_pattern("trig:*").await.unwrap(), 3);
    assert_eq!(memory.delete_pattern("trig:*").await.unwrap(), 3);
    assert_eq!(memory.count_pattern("trig:*").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_warm_runs_a_services_warmer_through_its_admin_endpoint() {
    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_warm");
    let cache = Cache::builder()
        .namespace(ns.clone())
        .redis_url(server.url())
        .build()
        .unwrap();
    cache.register_warmer(
        "trigs",
        cache_core::warm::WarmSchedule::new().at_start(false),
        |warm| async move {
            for id in 1..=4u32 {
                let key = warm.cache().key("trig").id(id).build();
                warm.load(key, Duration::from_secs(60), move || async move {
                    format!("trig {id}")
                })
                .await;
            }
        },
    );
    let app = axum::Router::new().nest(
        "/admin",
        cache_axum::admin_router(cache.clone(), cache_axum::AdminGuard::bearer("s3cret")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = format!("http://{}/admin", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    // The token from the environment.
    let e = vec![("CACHE_ADMIN_TOKEN", "s3cret".to_owned())];
    let v = cli_json(&e, &["warm", "trigs", "--admin-url", &admin], 0).await;
    assert_eq!(
        (v["keys"].as_u64(), v["loaded"].as_u64()),
        (Some(4), Some(4))
    );
    for id in 1..=4u32 {
        let key = cache.key("trig").id(id).build();
        assert_eq!(cache.get::<String>(&key).await, Some(format!("trig {id}")));
    }
    // Again: every key present now.
    let (code, out, _) = cli(&e, &["warm", "trigs", "--admin-url", &admin]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("4 keys, 0 loaded, 4 already cached, 0 failed"),
        "{out}"
    );
    // Unknown warmer, wrong token: status 1 with the service's answer.
    let (code, _, err) = cli(&e, &["warm", "nope", "--admin-url", &admin]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = cli(
        &[],
        &["warm", "trigs", "--admin-url", &admin, "--token", "wrong"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    serving.abort();
}

/// `top` and `advisor` read the route analytics a service recorded on the same Redis: the
/// routes ordered by requests, p95 or total time; the advisor's ranking with its reasons.
#[tokio::test]
async fn cli_top_and_advisor_read_the_analytics_the_services_recorded() {
    use cache_core::analytics::{Event, Outcome};

    let server = RedisServer::start_owned();
    let ns = unique_namespace("cli_top");
    let service = Cache::builder()
        .namespace(&ns)
        .redis_url(server.url())
        .build()
        .unwrap();
    let a = service.analytics();
    // `/busy`: 40 quick requests over 2 targets; `/slow/{id}`: 25 slow ones over 5 targets.
    let record = |route: &str, n: u32, ms: u64, targets: u32| {
        for i in 0..n {
            let mut e = Event::new("GET", route, a.now_ms());
            e.latency = Duration::from_millis(ms);
            e.outcome = Outcome::None;
            e.bytes = 500;
            e.target = Some(format!("/t/{}", i % targets));
            a.record(e);
        }
    };
    record("/busy", 40, 2, 2);
    record("/slow/{id}", 25, 80, 5);
    a.flush().await;
    let env = env(&server.url(), &ns);

    let v = cli_json(&env, &["top"], 0).await;
    let order = |v: &Value| -> Vec<String> {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["route"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(order(&v), ["/busy", "/slow/{id}"]);
    assert_eq!(v["routes"][0]["requests"], 40);
    let v = cli_json(&env, &["top", "--by", "p95", "--window", "1h"], 0).await;
    assert_eq!(
        (v["window"].as_str(), v["by"].as_str()),
        (Some("1h"), Some("p95"))
    );
    assert_eq!(order(&v), ["/slow/{id}", "/busy"]);
    let v = cli_json(&env, &["top", "--by", "time", "--limit", "1"], 0).await;
    assert_eq!(order(&v), ["/slow/{id}"]);
    let (code, out, _) = cli(&env, &["top"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("GET /slow/{id}"), "{out}");

    let v = cli_json(&env, &["advisor"], 0).await;
    let s = v["suggestions"].as_array().unwrap();
    // `/busy` at 2 ms is slower than the assumed 1 ms hit: both are ranked, slow first.
    assert_eq!(s[0]["route"], "GET /slow/{id}");
    assert!(s[0]["why"].as_str().unwrap().contains("over 5 keys"), "{v}");
    let (code, out, _) = cli(&env, &["advisor"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(" 1. GET /slow/{id}"), "{out}");
    let (code, _, err) = cli(&env, &["top", "--window", "2w"]).await;
    assert_eq!(code, 2, "{err}");
}
