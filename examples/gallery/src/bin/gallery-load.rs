//! The load test: the same realistic mix against an uncached and a cached gallery, side by side.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p gallery --bin gallery-load -- \
//!     [--duration 10] [--warmup 2] [--concurrency 32] [--writes 5] \
//!     [--cached-url URL --uncached-url URL]
//! ```
//!
//! Without `--cached-url`/`--uncached-url` it starts two `gallery` processes (the binary next to
//! this one; build it with `cargo build --release -p gallery`) on free loopback ports: a cached
//! one on `REDIS_URL` (in-memory when unset) and one with `CACHE_ENABLED=false`, both on the same
//! database (`GALLERY_DB`, seeded by the first). Environment: `LOAD_DURATION`, `LOAD_WARMUP`
//! (seconds), `LOAD_CONCURRENCY`, `LOAD_WRITE_PERCENT`, `ADMIN_TOKEN`.
//!
//! Loopback only: other targets are refused. Reports p50/p95/p99 latency, throughput, errors
//! and hit rate per route group, the targets (cached gallery list p95 < 5 ms and at least 10x
//! lower than uncached), and memory per cached entry (Redis `used_memory` delta over the entries
//! of the namespace, counted with `SCAN`, and the engine's bytes written per set).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gallery::load::{self, LoadOptions};
use gallery::server::DEFAULT_ADMIN_TOKEN;
use serde_json::Value;

/// A spawned gallery, killed on drop.
struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &PathBuf, envs: &[(&str, String)], remove: &[&str]) -> Result<Instance, String> {
    let mut cmd = Command::new(bin);
    cmd.env("ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "{}: {e} (build it: cargo build --release -p gallery)",
            bin.display()
        )
    })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
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
    let mut inst = Instance {
        child,
        base: String::new(),
    };
    inst.base = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "the gallery did not print its `listening on` line".to_string())?;
    Ok(inst)
}

fn arg_or_env(args: &[String], flag: &str, env: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn num<T: std::str::FromStr>(v: Option<String>, default: T) -> T {
    v.and_then(|s| s.parse().ok()).unwrap_or(default)
}

async fn redis_memory(con: &mut redis::aio::MultiplexedConnection) -> Option<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Counts keys matching `pattern` with `SCAN` (never `KEYS`).
async fn scan_count(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Option<u64> {
    let mut cursor: u64 = 0;
    let mut n = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .ok()?;
        n += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            return Some(n);
        }
    }
}

async fn admin(base: &str, token: &str, method: reqwest::Method, path: &str) -> Option<Value> {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("gallery-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: gallery-load [--duration S] [--warmup S] [--concurrency N] [--writes PCT] [--cached-url URL --uncached-url URL]");
        println!("       gallery-load --advisor [--uncached RESOURCES] [--duration S] ...");
        return Ok(true);
    }
    let opts = LoadOptions {
        duration: Duration::from_secs_f64(num(
            arg_or_env(&args, "--duration", "LOAD_DURATION"),
            10.0,
        )),
        warmup: Duration::from_secs_f64(num(arg_or_env(&args, "--warmup", "LOAD_WARMUP"), 2.0)),
        concurrency: num(
            arg_or_env(&args, "--concurrency", "LOAD_CONCURRENCY"),
            32usize,
        )
        .max(1),
        write_percent: num(arg_or_env(&args, "--writes", "LOAD_WRITE_PERCENT"), 5u32).min(100),
        seed: 2024,
    };
    let token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| DEFAULT_ADMIN_TOKEN.into());
    let redis_url = std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty());
    if let Some(url) = &redis_url {
        load::check_loopback(&url.replacen("redis://", "http://", 1).replacen(
            "rediss://",
            "http://",
            1,
        ))?;
    }

    if args.iter().any(|a| a == "--advisor") {
        let bin = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name(format!("gallery{}", std::env::consts::EXE_SUFFIX));
        let off = arg_or_env(&args, "--uncached", "LOAD_UNCACHED")
            .unwrap_or_else(|| "content_item,content_list".into());
        return advisor_experiment(&bin, redis_url, &token, &opts, &off).await;
    }

    let given = (
        arg_or_env(&args, "--cached-url", "LOAD_CACHED_URL"),
        arg_or_env(&args, "--uncached-url", "LOAD_UNCACHED_URL"),
    );
    let mut _instances = Vec::new();
    let (cached_url, uncached_url) = match given {
        (Some(c), Some(u)) => (c, u),
        (None, None) => {
            let bin = std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name(format!("gallery{}", std::env::consts::EXE_SUFFIX));
            let mut cached_env = vec![("ADMIN_TOKEN", token.clone())];
            if let Some(url) = &redis_url {
                cached_env.push(("REDIS_URL", url.clone()));
            }
            println!(
                "starting the cached gallery ({}) ...",
                if redis_url.is_some() {
                    "Redis"
                } else {
                    "in-memory cache: set REDIS_URL for Redis"
                }
            );
            let cached = spawn(&bin, &cached_env, &["CACHE_ENABLED"])?;
            println!("starting the uncached gallery (CACHE_ENABLED=false) ...");
            let uncached = spawn(
                &bin,
                &[
                    ("CACHE_ENABLED", "false".into()),
                    ("ADMIN_TOKEN", token.clone()),
                ],
                &["REDIS_URL"],
            )?;
            let urls = (cached.base.clone(), uncached.base.clone());
            _instances.push(cached);
            _instances.push(uncached);
            urls
        }
        _ => return Err("give both --cached-url and --uncached-url, or neither".into()),
    };
    load::check_loopback(&cached_url)?;
    load::check_loopback(&uncached_url)?;
    println!(
        "mix: ~{}% reads / {}% writes, {} connections, {:?} warm-up + {:?} measured per side",
        100 - opts.write_percent,
        opts.write_percent,
        opts.concurrency,
        opts.warmup,
        opts.duration
    );

    println!("uncached side: {uncached_url}");
    let uncached = load::run_side(&uncached_url, &opts).await?;

    // Memory: flush the namespace, then measure Redis before and after the cached side.
    let mut redis_con = match &redis_url {
        Some(url) => redis::Client::open(url.as_str())
            .map_err(|e| e.to_string())?
            .get_multiplexed_async_connection()
            .await
            .ok(),
        None => None,
    };
    admin(&cached_url, &token, reqwest::Method::DELETE, "/admin/cache").await;
    admin(
        &cached_url,
        &token,
        reqwest::Method::POST,
        "/admin/cache/reset-stats",
    )
    .await;
    let mem_before = match redis_con.as_mut() {
        Some(c) => redis_memory(c).await,
        None => None,
    };
    println!("cached side: {cached_url}");
    let cached = load::run_side(&cached_url, &opts).await?;
    let stats = admin(
        &cached_url,
        &token,
        reqwest::Method::GET,
        "/admin/cache/stats",
    )
    .await;

    println!();
    print!("{}", load::format_table(&uncached, &cached));
    println!();

    let g_u = &uncached.groups["gallery list"];
    let g_c = &cached.groups["gallery list"];
    let ratio = g_u.p95_ms / g_c.p95_ms.max(1e-6);
    let p95_ok = g_c.p95_ms < 5.0;
    let ratio_ok = ratio >= 10.0;
    println!(
        "target: cached gallery list p95 < 5 ms: {:.2} ms -> {}",
        g_c.p95_ms,
        if p95_ok { "PASS" } else { "FAIL" }
    );
    println!(
        "target: uncached / cached gallery list p95 >= 10x: {ratio:.1}x -> {}",
        if ratio_ok { "PASS" } else { "FAIL" }
    );
    let all_u = &uncached.groups["all"];
    let all_c = &cached.groups["all"];
    println!(
        "overall: throughput {:.0} -> {:.0} req/s ({:.1}x), p95 {:.2} -> {:.2} ms",
        all_u.rps,
        all_c.rps,
        all_c.rps / all_u.rps.max(1e-9),
        all_u.p95_ms,
        all_c.p95_ms
    );

    if let Some(s) = &stats {
        let c = &s["counters"];
        let sets = c["sets"].as_u64().unwrap_or(0);
        let bytes = c["bytes_written"].as_u64().unwrap_or(0);
        let hits = c["hits"].as_u64().unwrap_or(0);
        let misses = c["misses"].as_u64().unwrap_or(0);
        println!(
            "engine stats (cached side): hits {hits}, misses {misses} ({:.1}% hit rate), sets {sets}, invalidations {}, errors {}, avg encoded entry {} bytes",
            hits as f64 * 100.0 / (hits + misses).max(1) as f64,
            c["invalidations"],
            c["errors"],
            bytes.checked_div(sets).unwrap_or(0)
        );
    }
    if let (Some(con), Some(before)) = (redis_con.as_mut(), mem_before) {
        let ns = std::env::var("CACHE_NAMESPACE").unwrap_or_else(|_| "gallery".into());
        let after = redis_memory(con).await.unwrap_or(before);
        let entries = scan_count(con, &format!("{ns}:v*")).await.unwrap_or(0);
        let tag_keys = scan_count(con, &format!("{ns}:t:*")).await.unwrap_or(0);
        let delta = after.saturating_sub(before);
        println!(
            "redis memory: used_memory {before} -> {after} bytes (+{delta}); {entries} live entries, {tag_keys} tag-index keys; {} bytes per entry (tag indexes included)",
            delta.checked_div(entries).unwrap_or(0)
        );
    }
    Ok(p95_ok && ratio_ok)
}

/// The resource `GALLERY_UNCACHED` names for a route the advisor ranks.
fn resource_of_route(route: &str) -> Option<&'static str> {
    Some(match route {
        "GET /generation-types" => "generation_types",
        "GET /tags" => "tags",
        "GET /gallery" => "gallery",
        "GET /content" => "content_list",
        "GET /content/{id}" => "content_item",
        "GET /users/{id}/content_items" => "user_content_items",
        "GET /users/{id}/content_items_auto" => "user_content_items_auto",
        "GET /users/{id}/gallery" => "user_gallery",
        _ => return None,
    })
}

/// One phase of the experiment: a cached gallery (namespace `ns`, `off` not cached) under the
/// mix; the report, the service's route analytics and the advisor's answer.
async fn phase(
    bin: &PathBuf,
    redis_url: &Option<String>,
    token: &str,
    opts: &LoadOptions,
    ns: &str,
    off: &[&str],
) -> Result<(load::SideReport, Value, Value), String> {
    let inst = start_phase(bin, redis_url, token, ns, off, false)?;
    let report = load::run_side(&inst.base, opts).await?;
    let get = |path: &'static str| admin(&inst.base, token, reqwest::Method::GET, path);
    let analytics = get("/admin/cache/analytics?window=5m")
        .await
        .ok_or("no analytics from the service")?;
    let advisor = get("/admin/cache/advisor?window=5m")
        .await
        .ok_or("no advisor answer from the service")?;
    Ok((report, analytics, advisor))
}

/// A cached gallery for a phase: namespace `ns`, `off` not cached, warming from analytics on
/// or off.
fn start_phase(
    bin: &PathBuf,
    redis_url: &Option<String>,
    token: &str,
    ns: &str,
    off: &[&str],
    warm: bool,
) -> Result<Instance, String> {
    let mut env = vec![
        ("ADMIN_TOKEN", token.to_owned()),
        ("CACHE_NAMESPACE", ns.to_owned()),
        ("GALLERY_UNCACHED", off.join(",")),
        ("GALLERY_WARM", if warm { "1" } else { "0" }.to_owned()),
    ];
    if let Some(url) = redis_url {
        env.push(("REDIS_URL", url.clone()));
    }
    let inst = spawn(bin, &env, &["CACHE_ENABLED"])?;
    println!(
        "  gallery on {} (namespace {ns}), not cached: {}, warming from analytics: {}",
        inst.base,
        if off.is_empty() {
            "-".to_owned()
        } else {
            off.join(", ")
        },
        if warm { "on" } else { "off" }
    );
    Ok(inst)
}

/// Phase C: a service that ran the mix is flushed (a deploy that drops the cache), then the
/// mix runs again, measured: with `warm`, the warmer replays the analytics' top targets after
/// the flush and before the measured run. The report of the measured run, and the warmer's.
async fn after_flush(
    bin: &PathBuf,
    redis_url: &Option<String>,
    token: &str,
    opts: &LoadOptions,
    ns: &str,
    warm: bool,
) -> Result<(load::SideReport, Option<Value>), String> {
    let inst = start_phase(bin, redis_url, token, ns, &[], warm)?;
    load::run_side(&inst.base, opts).await?;
    let runs = |stats: &Option<Value>| -> (u64, Option<Value>) {
        let w = stats.as_ref().and_then(|s| {
            s["warmers"]
                .as_array()?
                .iter()
                .find(|w| w["name"] == "from-analytics")
                .cloned()
        });
        w.map_or((0, None), |w| {
            (w["runs"].as_u64().unwrap_or(0), Some(w["last"].clone()))
        })
    };
    let stats = || {
        admin(
            &inst.base,
            token,
            reqwest::Method::GET,
            "/admin/cache/stats",
        )
    };
    let (before, _) = runs(&stats().await);
    // A flush runs the warmer (after_flush): wait for that run to finish.
    admin(&inst.base, token, reqwest::Method::DELETE, "/admin/cache").await;
    let mut report = None;
    if warm {
        for _ in 0..600 {
            let (n, last) = runs(&stats().await);
            if n > before {
                report = last;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let side = load::run_side(&inst.base, opts).await?;
    Ok((side, report))
}

/// The route's mean latency (ms) and requests per second in an analytics answer.
fn route_figures(analytics: &Value, route: &str) -> Option<(f64, f64)> {
    analytics["routes"].as_array()?.iter().find_map(|r| {
        let name = format!("{} {}", r["method"].as_str()?, r["route"].as_str()?);
        (name == route).then(|| {
            // The rate over the time the phase ran (the window is longer).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let since = r["since_ms"].as_u64().unwrap_or(now);
            let secs = (now.saturating_sub(since) as f64 / 1000.0).max(1.0);
            (
                r["latency"]["mean_ms"].as_f64().unwrap_or(0.0),
                r["requests"].as_f64().unwrap_or(0.0) / secs,
            )
        })
    })
}

/// `--advisor`: the advisor validated on the load mix. Phase A runs the mix with caching off
/// for `off` (comma-separated resources) and asks the service's advisor for its ranking;
/// phase B caches the first suggestion's resource too and runs the same mix: the time that
/// route saved (its mean handler latency before minus after, times its request rate) is
/// printed next to what the advisor predicted.
async fn advisor_experiment(
    bin: &PathBuf,
    redis_url: Option<String>,
    token: &str,
    opts: &LoadOptions,
    off: &str,
) -> Result<bool, String> {
    let off: Vec<&str> = off
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    println!(
        "advisor experiment: ~{}% reads / {}% writes, {} connections, {:?} warm-up + {:?} measured per phase",
        100 - opts.write_percent,
        opts.write_percent,
        opts.concurrency,
        opts.warmup,
        opts.duration
    );
    let run = std::process::id();
    println!("phase A: caching off for {}", off.join(", "));
    let (a, analytics_a, advisor_a) = phase(
        bin,
        &redis_url,
        token,
        opts,
        &format!("advisor-a-{run}"),
        &off,
    )
    .await?;
    let suggestions = advisor_a["suggestions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!("\nthe advisor's ranking after phase A:");
    for (i, s) in suggestions.iter().enumerate() {
        println!(
            "{:>3}. score {:>10.3}  {}",
            i + 1,
            s["score"].as_f64().unwrap_or(0.0),
            s["why"].as_str().unwrap_or("")
        );
    }
    let ranked: Vec<&str> = suggestions
        .iter()
        .filter_map(|s| s["route"].as_str().and_then(resource_of_route))
        .collect();
    let top_are_off =
        ranked.len() >= off.len() && ranked[..off.len()].iter().all(|r| off.contains(r));
    println!(
        "\nthe routes whose caching was off rank at the top: {}",
        if top_are_off { "yes" } else { "no" }
    );
    let Some(first) = suggestions.first() else {
        return Err("the advisor suggested nothing".into());
    };
    let route = first["route"].as_str().unwrap_or("").to_owned();
    let predicted = first["saved_ms_per_s"].as_f64().unwrap_or(0.0);
    let Some(resource) = resource_of_route(&route) else {
        return Err(format!("{route}: no resource to turn on"));
    };
    let rest: Vec<&str> = off.iter().copied().filter(|r| *r != resource).collect();
    println!("\nphase B: the first suggestion applied: {route} ({resource}) cached");
    let (b, analytics_b, _) = phase(
        bin,
        &redis_url,
        token,
        opts,
        &format!("advisor-b-{run}"),
        &rest,
    )
    .await?;
    println!();
    print!(
        "{}",
        load::format_table(&a, &b)
            .replace("uncached ", "phase A  ")
            .replace("cached   ", "phase B  ")
    );
    let before = route_figures(&analytics_a, &route);
    let after = route_figures(&analytics_b, &route);
    if let (Some((mean_a, _)), Some((mean_b, rate_b))) = (before, after) {
        let measured = (mean_a - mean_b) * rate_b;
        println!(
            "\n{route}: mean handler latency {mean_a:.2} ms -> {mean_b:.2} ms at {rate_b:.1} req/s: \
             saved {measured:.0} ms/s measured, {predicted:.0} ms/s predicted (ratio {:.2})",
            measured / predicted.max(1e-9)
        );
        let all_a = &a.groups["all"];
        let all_b = &b.groups["all"];
        println!(
            "all routes: p95 {:.2} -> {:.2} ms, throughput {:.0} -> {:.0} req/s",
            all_a.p95_ms, all_b.p95_ms, all_a.rps, all_b.rps
        );
    }

    println!(
        "\nphase C: every resource cached; the mix, a flush, then the mix measured: cold, then warmed from analytics"
    );
    let (cold, _) = after_flush(
        bin,
        &redis_url,
        token,
        opts,
        &format!("advisor-c-{run}"),
        false,
    )
    .await?;
    let (warm, report) = after_flush(
        bin,
        &redis_url,
        token,
        opts,
        &format!("advisor-w-{run}"),
        true,
    )
    .await?;
    if let Some(r) = &report {
        println!(
            "  warmer from-analytics after the flush: {} targets, {} loaded, {} already cached, {} failed, {} ms",
            r["keys"], r["loaded"], r["present"], r["failed"], r["duration_ms"]
        );
    }
    println!();
    print!(
        "{}",
        load::format_table(&cold, &warm)
            .replace("uncached ", "cold     ")
            .replace("cached   ", "warmed   ")
    );
    Ok(top_are_off)
}
