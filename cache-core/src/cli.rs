//! The `annocache` operator CLI (feature `cli`): look into and act on a cache's Redis from a
//! shell, with the library's own configuration and rules.
//!
//! ```text
//! annocache [--namespace NS] [--redis-url URL] [--json] <COMMAND>
//!
//!   stats                      server figures (keys, memory, keyspace hits/misses, clients) and health
//!   keys [--limit N]           the namespace's keys counted per resource (SCAN, never KEYS)
//!   inspect KEY                one entry's envelope: age, TTL, windows, tags, size, format
//!   invalidate TAG...          invalidate tags (every instance's L1 too)
//!   flush --pattern P          delete the entries matching P (relative to `{ns}:v{G}:`)
//!   flush --namespace NS       delete every entry of the namespace NS
//!         [--dry-run]          count what would be deleted, delete nothing
//!   warm NAME --admin-url URL  run a service's warmer NAME now (its admin endpoint
//!        [--token T]           `POST {URL}/warm/NAME`; token also from CACHE_ADMIN_TOKEN)
//!   top [--window 5m|1h|1d]    routes by traffic and latency, from the route analytics
//!       [--by requests|p95|time] [--limit N]
//!   advisor [--window W]       the advisor's ranking: what to cache, with which TTL and scope
//!       [--limit N]
//! ```
//!
//! `top` and `advisor` read the route analytics the services record on the same Redis (see
//! [`crate::analytics`]; `--window` is one of `5m`, `1h`, `1d`, default `5m`). `top --by time`
//! orders routes by the time they took in total (requests x mean latency): where the service
//! spends its time.
//!
//! Warmers live in the service's process (see [`crate::warm`]), so `warm` asks the service,
//! through the admin router / scope it mounts (`cache_axum::admin_router`,
//! `cache_actix::admin_scope`), and prints the run's report; it needs no Redis settings.
//!
//! Redis is configured like the library ([`CacheBuilder::from_env`]): `REDIS_URL`,
//! `REDIS_CLUSTER_URLS`, the `REDIS_TLS_*` files, `REDIS_USERNAME` / `REDIS_PASSWORD`, and
//! `CACHE_NAMESPACE`; `--redis-url` and `--namespace` win over them. Without any Redis the CLI
//! refuses to run (the embedded in-memory store belongs to the service's process). Passwords
//! never appear in its output.
//!
//! `--json` prints one JSON document per command on standard output, for scripts. Exit
//! status: 0 done, 1 failed (Redis unreachable, refused, entry not found), 2 bad usage. Long
//! scans show a progress counter on standard error when it is a terminal.
//!
//! Install it with `cargo install cache-core --features cli` (or run it from a checkout:
//! `cargo run -p cache-core --features cli --bin annocache -- stats`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::{Cache, CacheBuilder, CacheError};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "annocache",
    version,
    about = "Look into and act on the Redis of an annotated cache"
)]
struct Cli {
    /// The cache namespace (default: `CACHE_NAMESPACE`, else `cache`).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// The Redis URL (default: `REDIS_URL`; `REDIS_CLUSTER_URLS` for a cluster).
    #[arg(long)]
    redis_url: Option<String>,
    /// Print JSON for scripts (anywhere on the line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server figures (keys, memory, keyspace hits and misses, clients) and health.
    Stats,
    /// The namespace's keys counted per resource, with a few examples (SCAN, never KEYS).
    Keys {
        /// Stop after this many keys (the counts are then a sample).
        #[arg(long, default_value_t = 1_000_000)]
        limit: u64,
    },
    /// One entry's envelope: age, TTL, windows, tags, size, format.
    Inspect {
        /// The full key, e.g. `gallery:v1:content_item:5`.
        key: String,
    },
    /// Invalidate tags: their entries are deleted, on every instance's L1 too.
    Invalidate {
        /// The tags, e.g. `content_item:5`.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Delete entries matching a pattern, or a whole namespace.
    Flush(Flush),
    /// Run a service's warmer now, through its admin endpoint, and print the run's report.
    Warm {
        /// The warmer's name.
        name: String,
        /// The service's admin base URL, e.g. `http://127.0.0.1:3000/admin/cache`.
        #[arg(long)]
        admin_url: String,
        /// The admin bearer token (default: `CACHE_ADMIN_TOKEN`).
        #[arg(long)]
        token: Option<String>,
    },
    /// Routes by traffic and latency, from the route analytics.
    Top {
        /// The window: 5m, 1h or 1d.
        #[arg(long, default_value = "5m", value_parser = parse_window)]
        window: crate::analytics::Window,
        /// Order: requests, p95 (latency), or time (requests x mean latency).
        #[arg(long, default_value = "requests", value_parser = ["requests", "p95", "time"])]
        by: String,
        /// Routes shown at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The advisor's ranking: which routes to cache, with which TTL and scope, and why.
    Advisor {
        /// The window: 5m, 1h or 1d.
        #[arg(long, default_value = "5m", value_parser = parse_window)]
        window: crate::analytics::Window,
        /// Suggestions shown at most.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

fn parse_window(s: &str) -> Result<crate::analytics::Window, String> {
    crate::analytics::Window::parse(s).ok_or_else(|| "the window is one of 5m, 1h, 1d".to_owned())
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct FlushTarget {
    /// A Redis glob relative to the keyspace prefix `{namespace}:v{version}:`, e.g. `trig:*`.
    #[arg(long)]
    pattern: Option<String>,
    /// Delete every entry (all schema versions) and tag index of this namespace.
    #[arg(long = "namespace")]
    namespace: Option<String>,
}

#[derive(Debug, Args)]
struct Flush {
    #[command(flatten)]
    target: FlushTarget,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the CLI with the process's arguments and environment, printing to standard output and
/// standard error; returns the exit status.
pub async fn main() -> i32 {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let progress = std::io::stderr().is_terminal();
    run(
        std::env::args_os(),
        |name| std::env::var(name).ok(),
        progress,
        &mut out,
        &mut err,
    )
    .await
}

/// Runs the CLI with `args` (the first is the program name) and the environment `env`, writing
/// to `out` and `err`; returns the exit status (0 done, 1 failed, 2 bad usage). `progress`
/// shows a progress counter on `err` during long scans.
pub async fn run<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<String>,
    progress: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let text = e.render();
            let _ = if code == 0 {
                write!(out, "{text}")
            } else {
                write!(err, "{text}")
            };
            return code;
        }
    };
    if let Command::Warm {
        name,
        admin_url,
        token,
    } = &cli.command
    {
        let token = token.clone().or_else(|| env("CACHE_ADMIN_TOKEN"));
        return finish(&cli, warm(name, admin_url, token).await, out, err);
    }
    let cache = match connect(&cli, &env) {
        Ok(cache) => cache,
        Err(message) => {
            let _ = writeln!(err, "annocache: {message}");
            return 2;
        }
    };
    let progress = progress && !cli.json;
    finish(&cli, execute(&cli, &cache, progress).await, out, err)
}

/// Prints a command's outcome; its exit status.
fn finish(
    cli: &Cli,
    outcome: Result<(Value, String), CacheError>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match outcome {
        Ok((value, text)) => {
            let _ = if cli.json {
                writeln!(out, "{value}")
            } else {
                write!(out, "{text}")
            };
            if value.get("found") == Some(&Value::Bool(false)) {
                1
            } else {
                0
            }
        }
        Err(e) => {
            if cli.json {
                let _ = writeln!(out, "{}", json!({ "error": e.to_string() }));
            }
            let _ = writeln!(err, "annocache: {e}");
            1
        }
    }
}

/// The cache the command acts on: the library's environment configuration, with the options.
fn connect(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Cache, String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if cli.redis_url.is_none() && set("REDIS_URL").is_none() && set("REDIS_CLUSTER_URLS").is_none()
    {
        return Err(
            "no Redis to talk to: set REDIS_URL (or REDIS_CLUSTER_URLS), or pass --redis-url"
                .into(),
        );
    }
    let mut builder = CacheBuilder::from_env_with(env).map_err(|e| e.to_string())?;
    if let Some(url) = &cli.redis_url {
        builder = builder.redis_url(url.clone());
    }
    // `flush --namespace NS` acts on NS.
    let namespace = match &cli.command {
        Command::Flush(Flush {
            target:
                FlushTarget {
                    namespace: Some(ns),
                    ..
                },
            ..
        }) => Some(ns),
        _ => cli.namespace.as_ref(),
    };
    if let Some(ns) = namespace {
        builder = builder.namespace(ns.clone());
    }
    // Operator commands wait for Redis, as the admin endpoints do.
    builder
        .command_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

/// Runs the command: its JSON document and its text.
async fn execute(cli: &Cli, cache: &Cache, progress: bool) -> Result<(Value, String), CacheError> {
    match &cli.command {
        Command::Stats => stats(cache).await,
        Command::Keys { limit } => keys(cache, *limit, progress).await,
        Command::Inspect { key } => inspect(cache, key).await,
        Command::Invalidate { tags } => {
            let n = cache.invalidate_tags(tags).await?;
            Ok((
                json!({ "invalidated": n, "tags": tags }),
                format!("invalidated {n} entries of {}\n", tags.join(", ")),
            ))
        }
        Command::Flush(flush) => flush_cmd(cache, flush).await,
        Command::Warm { .. } => unreachable!("run by `run` without a cache"),
        Command::Top { window, by, limit } => top(cache, *window, by, *limit).await,
        Command::Advisor { window, limit } => advisor(cache, *window, *limit).await,
    }
}

/// `top`: the routes of the window, ordered.
async fn top(
    cache: &Cache,
    window: crate::analytics::Window,
    by: &str,
    limit: usize,
) -> Result<(Value, String), CacheError> {
    let mut routes = cache.analytics().routes(window).await?;
    let time = |r: &crate::analytics::RouteStats| r.requests as f64 * r.latency.mean_ms;
    match by {
        "p95" => routes.sort_by(|a, b| b.latency.p95_ms.total_cmp(&a.latency.p95_ms)),
        "time" => routes.sort_by(|a, b| time(b).total_cmp(&time(a))),
        _ => {}
    }
    routes.truncate(limit);
    let mut text = format!(
        "routes over {} by {by}\n\n{:<40} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
        window.as_str(),
        "route",
        "requests",
        "req/s",
        "hit%",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "bytes",
        "err%"
    );
    for r in &routes {
        text.push_str(&format!(
            "{:<40} {:>8} {:>8.1} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {:>6.1}\n",
            format!("{} {}", r.method, r.route),
            r.requests,
            r.per_second,
            r.hit_rate
                .map_or("-".to_owned(), |h| format!("{:.0}", h * 100.0)),
            r.latency.p50_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.bytes_mean,
            r.error_rate * 100.0,
        ));
    }
    if routes.is_empty() {
        text.push_str("(no traffic recorded in the window)\n");
    }
    let value = json!({ "window": window.as_str(), "by": by, "routes": routes });
    Ok((value, text))
}

/// `advisor`: the ranking of the window.
async fn advisor(
    cache: &Cache,
    window: crate::analytics::Window,
    limit: usize,
) -> Result<(Value, String), CacheError> {
    let mut suggestions = cache
        .analytics()
        .advise(window, &crate::advisor::AdvisorSettings::default())
        .await?;
    suggestions.truncate(limit);
    let mut text = format!(
        "what to cache, from the traffic of the last {}\n\n",
        window.as_str()
    );
    for (i, s) in suggestions.iter().enumerate() {
        text.push_str(&format!("{:>2}. {}\n", i + 1, s.why));
    }
    if suggestions.is_empty() {
        text.push_str("(no GET route with enough traffic, or none slower than a hit)\n");
    }
    let value = json!({ "window": window.as_str(), "suggestions": suggestions });
    Ok((value, text))
}

/// `POST {admin_url}/warm/{name}`: the warmer's report.
async fn warm(
    name: &str,
    admin_url: &str,
    token: Option<String>,
) -> Result<(Value, String), CacheError> {
    let url = format!(
        "{}/warm/{}",
        admin_url.trim_end_matches('/'),
        name.replace('%', "%25")
            .replace('/', "%2F")
            .replace(' ', "%20")
    );
    let fail = |m: String| CacheError::InvalidArgument(m);
    let (status, body) = tokio::task::spawn_blocking(move || {
        let mut req = ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build();
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let mut resp = req.send_empty().map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(fail)?;
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if status != 200 {
        let message = value["error"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        return Err(fail(format!("the service answered {status}: {message}")));
    }
    let text = format!(
        "warmer {}: {} keys, {} loaded, {} already cached, {} failed, in {} ms\n",
        value["name"].as_str().unwrap_or(name),
        value["keys"],
        value["loaded"],
        value["present"],
        value["failed"],
        value["duration_ms"],
    );
    Ok((value, text))
}

async fn stats(cache: &Cache) -> Result<(Value, String), CacheError> {
    let mut body = crate::admin::stats(cache).await.body;
    // The engine's counters are this process's: nothing to see from a CLI.
    if let Some(map) = body.as_object_mut() {
        for key in ["counters", "resources", "l1"] {
            map.remove(key);
        }
        map.insert("namespace".into(), json!(cache.keyspace().namespace()));
    }
    let field = |name: &str| match &body[name] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let text = format!(
        "backend       {}\nnamespace     {}\nhealth        {}\ntotal keys    {}\nmemory        {}\n\
         keyspace      {} hits, {} misses ({}% hits)\nclients       {}\n",
        field("backend"),
        field("namespace"),
        body["health"]["status"].as_str().unwrap_or("-"),
        field("total_keys"),
        field("memory_used_human"),
        field("keyspace_hits"),
        field("keyspace_misses"),
        field("hit_rate_percent"),
        field("connected_clients"),
    );
    if body["health"]["status"] == "down" {
        let detail = body["health"]["detail"]
            .as_str()
            .or_else(|| body["health"]["last_error"].as_str())
            .unwrap_or("the backend does not answer")
            .to_owned();
        return Err(CacheError::InvalidArgument(format!(
            "Redis is down: {detail}"
        )));
    }
    Ok((body, text))
}

async fn keys(cache: &Cache, limit: u64, progress: bool) -> Result<(Value, String), CacheError> {
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("keys scanned");
        bar
    });
    let census = cache
        .key_census(limit, |n| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let census = census?;
    let mut text = format!(
        "{} keys scanned in namespace {}{}\n\n{:<32} {:>10}  example\n",
        census.scanned,
        census.namespace,
        if census.complete {
            String::new()
        } else {
            format!(" (stopped at --limit {limit}: a sample)")
        },
        "resource",
        "entries"
    );
    for (resource, r) in &census.resources {
        text.push_str(&format!(
            "{resource:<32} {:>10}  {}\n",
            r.entries,
            r.examples.first().map_or("", String::as_str)
        ));
    }
    text.push_str(&format!(
        "\ntag bookkeeping {}, versions {}, other {}\n",
        census.tag_keys, census.version_keys, census.other_keys
    ));
    let value = serde_json::to_value(&census).unwrap_or(Value::Null);
    Ok((value, text))
}

async fn inspect(cache: &Cache, key: &str) -> Result<(Value, String), CacheError> {
    let Some(e) = cache.inspect(key).await? else {
        return Ok((
            json!({ "key": key, "found": false }),
            format!("{key}: no such entry\n"),
        ));
    };
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let text = format!(
        "key           {}\nstate         {}\nage           {}\nttl           {} (fresh for {})\n\
         windows       stale-while-revalidate {}, stale-if-error {}\ntags          {}\n\
         size          {} bytes\nformat        {}{}\netag          {}\n",
        e.key,
        e.state,
        secs(e.age_ms),
        secs(e.ttl_ms),
        secs(e.fresh_for_ms),
        secs(e.stale_while_revalidate_ms),
        secs(e.stale_if_error_ms),
        if e.tags.is_empty() {
            "-".to_owned()
        } else {
            e.tags.join(", ")
        },
        e.bytes,
        e.content_type,
        if e.compressed { " (lz4)" } else { "" },
        e.etag,
    );
    let mut value = serde_json::to_value(&e).unwrap_or(Value::Null);
    value["found"] = json!(true);
    Ok((value, text))
}

async fn flush_cmd(cache: &Cache, flush: &Flush) -> Result<(Value, String), CacheError> {
    let (what, n) = match (&flush.target.pattern, flush.dry_run) {
        (Some(p), true) => (format!("pattern {p}"), cache.count_pattern(p).await?),
        (Some(p), false) => (format!("pattern {p}"), cache.delete_pattern(p).await?),
        (None, true) => (
            format!("namespace {}", cache.keyspace().namespace()),
            cache.count_namespace().await?,
        ),
        (None, false) => (
            format!("namespace {}", cache.keyspace().namespace()),
            cache.clear().await?,
        ),
    };
    let value = json!({
        "dry_run": flush.dry_run,
        "pattern": flush.target.pattern,
        "namespace": cache.keyspace().namespace(),
        if flush.dry_run { "would_delete" } else { "deleted" }: n,
    });
    let text = if flush.dry_run {
        format!("{what}: would delete {n} keys (dry run, nothing deleted)\n")
    } else {
        format!("{what}: deleted {n} keys\n")
    };
    Ok((value, text))
}
