//! The load test behind `gallery-load`: a realistic request mix replayed with fixed concurrency
//! against a cached and an uncached gallery, one after the other, reported side by side.
//!
//! The mix (reads 95% by default): the community gallery (`/gallery`, pages Zipf-distributed),
//! tag lists (`/content?tag=..`, tags Zipf over the vocabulary ranked by use, `recent` or
//! `popular`, a few pages), type lists, single items (ids Zipf over a fixed permutation), users'
//! own lists and merged views (users Zipf), tags and generation types; writes are creates (70%),
//! tag updates (20%) and deletes (10%) of items the worker created, as real users edit their own
//! recent items.
//!
//! Loopback only: [`check_loopback`] refuses any other target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::Value;

use crate::db::Zipf;
use crate::model::GENERATION_TYPES;

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Measured time per side.
    pub duration: Duration,
    /// Unmeasured warm-up per side (steady state: a running service has a warm cache).
    pub warmup: Duration,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Percentage of writes.
    pub write_percent: u32,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            concurrency: 32,
            write_percent: 5,
            seed: 2024,
        }
    }
}

/// Refuses targets that are not on the loopback interface.
///
/// # Errors
/// A message naming the host.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ok = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{url}: the load test only targets loopback addresses (127.0.0.0/8, ::1, localhost)"
        ))
    }
}

/// The route groups reported.
const GROUPS: [&str; 8] = [
    "gallery list",
    "content list",
    "content item",
    "user lists",
    "merged view",
    "tags/types",
    "writes",
    "all",
];

#[derive(Debug, Clone, Copy)]
struct Sample {
    group: usize,
    micros: u32,
    ok: bool,
    /// 0 none, 1 hit, 2 miss, 3 other (bypass/skip)
    cache: u8,
}

/// The figures of one route group.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Transport failures and 5xx.
    pub errors: u64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 95th percentile (ms).
    pub p95_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Requests per second.
    pub rps: f64,
    /// Hits over hits + misses (from `X-Cache-Status`), `None` without such responses.
    pub hit_rate: Option<f64>,
}

/// One side's report.
#[derive(Debug, Clone, Default)]
pub struct SideReport {
    /// Per route group (and `all`).
    pub groups: BTreeMap<&'static str, GroupReport>,
    /// Measured seconds.
    pub seconds: f64,
}

struct Workload {
    tags: Vec<String>,
    tag_zipf: Zipf,
    users: i64,
    user_zipf: Zipf,
    user_perm: Vec<i64>,
    item_perm: Vec<i64>,
    item_zipf: Zipf,
    page_zipf: Zipf,
}

impl Workload {
    async fn discover(client: &Client, base: &str, seed: u64) -> Result<Workload, String> {
        let get = |path: String| {
            let client = client.clone();
            async move {
                client
                    .get(path)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json::<Value>()
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let info = get(format!("{base}/")).await?;
        let tags = get(format!("{base}/tags?cache_bypass=1")).await?;
        let tags: Vec<String> = tags
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if tags.is_empty() {
            return Err("no tags: is the database seeded?".into());
        }
        let users = info["users"].as_i64().unwrap_or(0).max(1);
        let max_id = info["max_item_id"].as_i64().unwrap_or(0).max(1);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut user_perm: Vec<i64> = (1..=users).collect();
        rng.shuffle(&mut user_perm);
        let mut item_perm: Vec<i64> = (1..=max_id).collect();
        rng.shuffle(&mut item_perm);
        Ok(Workload {
            tag_zipf: Zipf::new(tags.len(), 1.0),
            tags,
            users,
            user_zipf: Zipf::new(users as usize, 1.0),
            user_perm,
            item_zipf: Zipf::new(max_id as usize, 1.0),
            item_perm,
            page_zipf: Zipf::new(20, 1.2),
        })
    }

    fn user(&self, rng: &mut fastrand::Rng) -> i64 {
        self.user_perm[self.user_zipf.sample(rng)].min(self.users)
    }
}

struct Req {
    group: usize,
    method: Method,
    path: String,
    user: Option<i64>,
    body: Option<Value>,
    /// For writes: what to remember.
    kind: WriteKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    None,
    Create,
    Update,
    Delete,
}

fn next_request(
    w: &Workload,
    rng: &mut fastrand::Rng,
    write_percent: u32,
    mine: &mut Vec<(i64, i64)>,
) -> Req {
    let get = |group: usize, path: String, user: Option<i64>| Req {
        group,
        method: Method::GET,
        path,
        user,
        body: None,
        kind: WriteKind::None,
    };
    if rng.u32(0..100) < write_percent {
        let roll = rng.u32(0..100);
        if roll >= 70 && !mine.is_empty() {
            let i = rng.usize(..mine.len());
            let (id, owner) = mine[i];
            if roll < 90 {
                let tags: Vec<&String> = (0..3).map(|_| &w.tags[w.tag_zipf.sample(rng)]).collect();
                return Req {
                    group: 6,
                    method: Method::PUT,
                    path: format!("/content/{id}/tags"),
                    user: Some(owner),
                    body: Some(serde_json::json!({ "tags": tags })),
                    kind: WriteKind::Update,
                };
            }
            mine.swap_remove(i);
            return Req {
                group: 6,
                method: Method::DELETE,
                path: format!("/content/{id}"),
                user: Some(owner),
                body: None,
                kind: WriteKind::Delete,
            };
        }
        let owner = w.user(rng);
        let tags: Vec<&String> = (0..1 + rng.usize(..4))
            .map(|_| &w.tags[w.tag_zipf.sample(rng)])
            .collect();
        return Req {
            group: 6,
            method: Method::POST,
            path: "/content".into(),
            user: Some(owner),
            body: Some(serde_json::json!({
                "title": format!("Load item {}", rng.u32(..)),
                "generation_type": GENERATION_TYPES[rng.usize(..4)].0,
                "tags": tags,
                "auto": rng.u32(0..100) < 40,
            })),
            kind: WriteKind::Create,
        };
    }
    let page = w.page_zipf.sample(rng) + 1;
    match rng.u32(0..100) {
        0..=34 => get(
            0,
            if page == 1 {
                "/gallery".into()
            } else {
                format!("/gallery?page={page}")
            },
            None,
        ),
        35..=54 => {
            let tag = &w.tags[w.tag_zipf.sample(rng)];
            let sort = if rng.bool() { "recent" } else { "popular" };
            let page = page.min(5);
            get(
                1,
                format!("/content?tag={tag}&sort={sort}&page={page}"),
                None,
            )
        }
        55..=64 => {
            let gt = GENERATION_TYPES[rng.usize(..4)].0;
            get(
                1,
                format!("/content?type={gt}&sort=popular&page={}", page.min(5)),
                None,
            )
        }
        65..=79 => get(
            2,
            format!("/content/{}", w.item_perm[w.item_zipf.sample(rng)]),
            None,
        ),
        80..=87 => {
            let u = w.user(rng);
            let which = if rng.bool() {
                "content_items"
            } else {
                "content_items_auto"
            };
            get(3, format!("/users/{u}/{which}"), Some(u))
        }
        88..=94 => {
            let u = w.user(rng);
            get(4, format!("/users/{u}/gallery"), Some(u))
        }
        95..=97 => get(5, "/tags".into(), None),
        _ => get(5, "/generation-types".into(), None),
    }
}

async fn worker(
    client: Client,
    base: String,
    w: std::sync::Arc<Workload>,
    opts: LoadOptions,
    index: usize,
    start: Instant,
) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(opts.seed.wrapping_add(index as u64 * 7919));
    let mut mine: Vec<(i64, i64)> = Vec::new();
    let mut samples = Vec::with_capacity(8192);
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let req = next_request(&w, &mut rng, opts.write_percent, &mut mine);
        let mut rb = client.request(req.method.clone(), format!("{base}{}", req.path));
        if let Some(u) = req.user {
            rb = rb.header("x-user-id", u.to_string());
        }
        if let Some(b) = &req.body {
            rb = rb.json(b);
        }
        let t0 = Instant::now();
        let result = rb.send().await;
        let (ok, cache, created) = match result {
            Ok(resp) => {
                let status = resp.status();
                let cache = match resp
                    .headers()
                    .get("x-cache-status")
                    .and_then(|v| v.to_str().ok())
                {
                    None => 0,
                    Some("HIT" | "STALE") => 1,
                    Some("MISS") => 2,
                    Some(_) => 3,
                };
                let body = resp.bytes().await;
                let created = if req.kind == WriteKind::Create && status.as_u16() == 201 {
                    body.as_ref()
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                        .and_then(|v| Some((v["id"].as_i64()?, v["owner_id"].as_i64()?)))
                } else {
                    None
                };
                (body.is_ok() && !status.is_server_error(), cache, created)
            }
            Err(_) => (false, 0, None),
        };
        let micros = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        if let Some(c) = created {
            mine.push(c);
        }
        if t0 >= measure_from {
            samples.push(Sample {
                group: req.group,
                micros,
                ok,
                cache,
            });
        }
    }
    samples
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

fn summarize(samples: &[Sample], seconds: f64) -> SideReport {
    let mut report = SideReport {
        groups: BTreeMap::new(),
        seconds,
    };
    for (gi, name) in GROUPS.iter().enumerate() {
        let in_group = |s: &&Sample| *name == "all" || s.group == gi;
        let mut lat: Vec<u32> = samples.iter().filter(in_group).map(|s| s.micros).collect();
        lat.sort_unstable();
        let errors = samples.iter().filter(in_group).filter(|s| !s.ok).count() as u64;
        let hits = samples
            .iter()
            .filter(in_group)
            .filter(|s| s.cache == 1)
            .count();
        let misses = samples
            .iter()
            .filter(in_group)
            .filter(|s| s.cache == 2)
            .count();
        report.groups.insert(
            name,
            GroupReport {
                requests: lat.len() as u64,
                errors,
                p50_ms: percentile(&lat, 0.50),
                p95_ms: percentile(&lat, 0.95),
                p99_ms: percentile(&lat, 0.99),
                rps: lat.len() as f64 / seconds.max(1e-9),
                hit_rate: (hits + misses > 0).then(|| hits as f64 * 100.0 / (hits + misses) as f64),
            },
        );
    }
    report
}

/// Replays the mix against `base` for `opts.warmup + opts.duration`.
///
/// # Errors
/// When the target is not on loopback or cannot be discovered.
pub async fn run_side(base: &str, opts: &LoadOptions) -> Result<SideReport, String> {
    check_loopback(base)?;
    let base = base.trim_end_matches('/').to_owned();
    let client = Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let w = std::sync::Arc::new(Workload::discover(&client, &base, opts.seed).await?);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(opts.concurrency);
    for i in 0..opts.concurrency {
        tasks.push(tokio::spawn(worker(
            client.clone(),
            base.clone(),
            w.clone(),
            opts.clone(),
            i,
            start,
        )));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())?);
    }
    Ok(summarize(&all, opts.duration.as_secs_f64()))
}

/// Formats the two sides as a table.
pub fn format_table(uncached: &SideReport, cached: &SideReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<13} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}\n",
        "route", "side", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "hit rate"
    ));
    for name in GROUPS {
        for (side, r) in [("uncached", uncached), ("cached", cached)] {
            let Some(g) = r.groups.get(name) else {
                continue;
            };
            out.push_str(&format!(
                "{:<13} {:<9} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>9}\n",
                name,
                side,
                g.requests,
                g.rps,
                g.p50_ms,
                g.p95_ms,
                g.p99_ms,
                g.errors,
                g.hit_rate
                    .map(|h| format!("{h:.1}%"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
    }
    out
}
